//! Promise 8, against the insider: the log is a Merkle tree whose signed checkpoints live in the
//! object store and with witnesses, so a database administrator who rolls the log back, wipes
//! it, or rewrites it and regrows it is found out; receipts prove a read was logged.

use axum::http::StatusCode;
use base64::Engine;
use serde_json::Value;

use crate::common::*;
use crate::processes::*;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A vault that checkpoints after every entry, so each test decides exactly what is signed.
async fn vault() -> TestVault {
    TestVault::with(|s| s.checkpoint_every = 1).await
}

async fn read_a_few(vault: &TestVault, id: &str, n: usize) {
    for _ in 0..n {
        vault
            .get(&format!("/v1/documents/{id}"), &vault.clerk())
            .await
            .expect(StatusCode::OK);
    }
}

/// Publishes a checkpoint of the log as it is now; returns its size.
async fn checkpoint(vault: &TestVault) -> u64 {
    vault.publish_checkpoint().await;
    let reply = vault.get("/v1/audit/checkpoint", "").await;
    reply.expect(StatusCode::OK);
    let note = String::from_utf8(reply.body.to_vec()).unwrap();
    note.lines().nth(1).unwrap().parse().unwrap()
}

async fn verify(vault: &TestVault) -> Value {
    let reply = vault.get("/v1/audit/verify", &vault.auditor()).await;
    reply.expect(StatusCode::OK);
    reply.json()
}

async fn size(vault: &TestVault) -> i64 {
    vault.count("SELECT seq FROM audit_head").await
}

#[tokio::test]
async fn a_rollback_in_the_database_is_found_from_the_object_stores_checkpoints() {
    let vault = vault().await;
    let id = vault.take_in(CITIZEN_A, "cccd", &pdf(90, 2000)).await;
    read_a_few(&vault, &id, 2).await;
    checkpoint(&vault).await;
    let keep = size(&vault).await;
    let head = saved_head(&vault).await;
    // The insider's reads, logged and checkpointed like any other.
    read_a_few(&vault, &id, 2).await;
    assert_eq!(checkpoint(&vault).await as i64, keep + 2);
    assert_eq!(verify(&vault).await["ok"], true);

    // Strict mode published every batch: the last checkpoint covers the whole log.
    let before = size(&vault).await;
    roll_back(&vault, keep, &head).await;
    let vault = vault.noticed_then_restarted().await;
    let (ok, said) = vault.cli_verify().await;
    assert!(!ok, "{said}");
    assert!(
        said.contains(&format!("NOT intact: first bad entry is {}", keep + 1)),
        "{said}"
    );
    assert!(
        said.contains("the object store") && said.contains(&format!("{before} entries")),
        "{said}"
    );
    // The restarted vault finds the published checkpoints past its log at once: it refuses to
    // append (which would fork the published log), and says why.
    vault
        .get(&format!("/v1/documents/{id}"), &vault.clerk())
        .await
        .expect_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    let ready = vault.get("/readyz", "").await.json();
    let alarm = ready["audit_log_rolled_back"].as_str().unwrap_or_default();
    assert!(
        alarm.contains(&format!("has {keep} entries, but {before} were committed")),
        "{ready}"
    );
}

#[tokio::test]
async fn a_wiped_log_and_a_forged_checkpoint_are_found() {
    let vault = vault().await;
    let id = vault.take_in(CITIZEN_A, "cccd", &pdf(91, 2000)).await;
    read_a_few(&vault, &id, 3).await;
    let signed = checkpoint(&vault).await;
    vault.sql("DELETE FROM audit_entries; DELETE FROM audit_tree; DELETE FROM audit_notes; DELETE FROM audit_signed_heads").await;
    vault
        .sql(&format!(
            "UPDATE audit_head SET seq = 0, hash = '{}', signature = ''",
            "0".repeat(64)
        ))
        .await;
    let vault = vault.noticed_then_restarted().await;
    let (ok, said) = vault.cli_verify().await;
    assert!(!ok, "a wipe: {said}");
    assert!(said.contains(&format!("{signed} entries")), "{said}");

    // A checkpoint signed by some other key, dropped into the bucket.
    let vault = self::vault().await;
    vault.take_in(CITIZEN_A, "cccd", &pdf(92, 2000)).await;
    checkpoint(&vault).await;
    let other = hoso::crypto::signing::SigningKey::from_pkcs8(
        &hoso::crypto::signing::SigningKey::generate_pkcs8(),
        "audit",
    )
    .unwrap();
    let forged = hoso::audit::note::sign(
        &other,
        &hoso::audit::note::Checkpoint {
            origin: "hoso.local/audit".into(),
            size: 1,
            root: [0; 32],
        },
    )
    .unwrap();
    vault
        .put_raw_object(
            &hoso::audit::checkpoints::object_key(999),
            forged.into_bytes(),
        )
        .await;
    let r = verify(&vault).await;
    assert_eq!(r["ok"], false, "{r}");
    assert!(
        r["problem"].as_str().unwrap().contains("does not verify"),
        "{r}"
    );
}

async fn witness_once(vault: &TestVault, url: &str, state: &str) -> std::process::Output {
    hoso_cli(
        vault,
        &["audit", "witness", "--url", url, "--state", state, "--once"],
    )
    .await
}

#[tokio::test]
async fn a_rollback_that_also_deletes_the_published_checkpoints_and_regrows_is_caught_by_a_witness()
{
    let vault = vault().await;
    let fleet = start_fleet_with(&vault, 1, &[("HOSO_CHECKPOINT_EVERY", "1")]).await;
    let url = format!("http://{}", fleet.0[0].1);
    let witness = tempfile::tempdir().unwrap();
    let state = witness.path().join("state");
    let state_arg = state.to_str().unwrap();
    let id = vault.take_in(CITIZEN_A, "cccd", &pdf(93, 2000)).await;
    read_a_few(&vault, &id, 2).await;
    checkpoint(&vault).await;
    let first = witness_once(&vault, &url, state_arg).await;
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(String::from_utf8_lossy(&first.stdout).contains("first checkpoint kept"));
    let keep = size(&vault).await;
    let head = saved_head(&vault).await;
    read_a_few(&vault, &id, 3).await;
    checkpoint(&vault).await;
    let second = witness_once(&vault, &url, state_arg).await;
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert!(String::from_utf8_lossy(&second.stdout).contains("consistent"));

    // The insider rolls the database back and deletes every checkpoint object past it.
    roll_back(&vault, keep, &head).await;
    for key in vault
        .state
        .vault
        .blobs
        .list_under("audit/checkpoints")
        .await
        .unwrap()
    {
        let size: i64 = key.rsplit('/').next().unwrap().parse().unwrap();
        if size > keep {
            vault.state.vault.blobs.delete(&key).await.unwrap();
        }
    }
    let vault = vault.noticed_then_restarted().await;
    // Without a witness, nothing outside the database remembers: the log looks intact...
    assert_eq!(verify(&vault).await["ok"], true);
    // ...but the witness does.
    let out = hoso_cli(&vault, &["audit", "verify", "--witness-state", state_arg]).await;
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("the witness state"), "{said}");

    // The insider then regrows the log past what the witness saw, with a different history.
    read_a_few(&vault, &id, 6).await;
    checkpoint(&vault).await;
    let caught = witness_once(&vault, &url, state_arg).await;
    assert_eq!(
        caught.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&caught.stdout)
    );
    let said = String::from_utf8_lossy(&caught.stderr);
    assert!(
        said.contains("AUDIT LOG INCONSISTENT") && said.contains("does not extend"),
        "{said}"
    );
    drop(fleet);
}

#[tokio::test]
async fn fifty_verifications_during_intakes_and_reads_raise_no_false_alarm() {
    let vault = vault().await;
    let fleet = start_fleet_with(&vault, 1, &[("HOSO_CHECKPOINT_EVERY", "5")]).await;
    let addr = fleet.0[0].1;
    let id = vault.take_in(CITIZEN_A, "cccd", &pdf(94, 2000)).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (stop, clerk) = (stop.clone(), vault.clerk());
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let path = format!("/v1/documents/{id}");
                let _ = call(addr, "GET", &path, Some(&clerk), None).await;
                let _ = try_intake(addr, &clerk, CITIZEN_A, "other", pdf(10_000 + n, 3_000)).await;
            }
            n
        })
    };
    let auditor = vault.auditor();
    for i in 0..50 {
        let (status, body) = call(addr, "GET", "/v1/audit/verify", Some(&auditor), None)
            .await
            .unwrap();
        assert_eq!(status, 200);
        let report: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(report["ok"], true, "verification {i} under load: {report}");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let rounds = load.await.unwrap();
    assert!(rounds > 5, "the load ran ({rounds} rounds)");
    println!("50 verifications, all intact, during {rounds} rounds of a read and an intake");
    drop(fleet);
}

#[tokio::test]
async fn a_receipt_verifies_offline_and_fails_once_its_entry_is_edited() {
    let vault = vault().await;
    let id = vault.take_in(CITIZEN_A, "cccd", &pdf(95, 2000)).await;
    let (_, officer) = vault.grant(CITIZEN_A, &["cccd"], "CB-XL-07", 2).await;
    let copy = vault
        .get(&format!("/v1/documents/{id}/content"), &officer)
        .await;
    copy.expect(StatusCode::OK);
    let receipt = copy.headers["hoso-audit-receipt"]
        .to_str()
        .unwrap()
        .to_owned();
    let (seq, leaf) = receipt
        .strip_prefix("seq=")
        .and_then(|r| r.split_once("; leaf="))
        .unwrap();
    let seq: i64 = seq.parse().unwrap();

    let citizen = vault.citizen(CITIZEN_A);
    let path = format!("/v1/citizens/{CITIZEN_A}/access-log/{seq}/proof");
    // Until a checkpoint covering the read is published, there is nothing to prove it in.
    vault
        .get(&path, &citizen)
        .await
        .expect_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    vault.publish_checkpoint().await;
    let reply = vault.get(&path, &citizen).await;
    reply.expect(StatusCode::OK);
    let proof = String::from_utf8(reply.body.to_vec()).unwrap();
    assert!(proof.starts_with("c2sp.org/tlog-proof@v1\n"), "{proof}");
    assert!(proof.contains(&format!("\nindex {}\n", seq - 1)), "{proof}");

    let key = {
        let out = hoso_cli(&vault, &["audit", "key"]).await;
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("receipt.proof");
    std::fs::write(&file, &proof).unwrap();
    let check = |leaf: Option<&str>| {
        let mut args = vec![
            "audit".to_owned(),
            "verify-receipt".into(),
            "--proof".into(),
            file.display().to_string(),
            "--key".into(),
            key.clone(),
        ];
        if let Some(leaf) = leaf {
            args.extend(["--leaf".into(), leaf.to_owned()]);
        }
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_hoso"))
            .args(&args)
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    };
    let (code, said) = check(Some(leaf));
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("receipt valid"), "{said}");
    let wrong = B64.encode([9u8; 32]);
    assert_eq!(
        check(Some(&wrong)).0,
        Some(1),
        "another read's leaf is refused"
    );

    // Someone else's entry cannot be proven to this citizen.
    vault
        .get(
            &format!("/v1/citizens/{CITIZEN_B}/access-log/{seq}/proof"),
            &vault.citizen(CITIZEN_B),
        )
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");

    // The insider edits the read's entry: a proof for it as it stands no longer verifies.
    vault
        .sql(&format!(
            "UPDATE audit_entries SET actor = 'nobody' WHERE seq = {seq}"
        ))
        .await;
    let edited = String::from_utf8(vault.get(&path, &citizen).await.body.to_vec()).unwrap();
    std::fs::write(&file, &edited).unwrap();
    let (code, said) = check(None);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("NOT valid"), "{said}");
    assert_eq!(verify(&vault).await["ok"], false);
}
