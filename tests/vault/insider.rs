//! The insider of issue 22, each attack reproduced and then refused or named: a database holder
//! edits a grant row, resets its count of uses, plants a trigger; a restore follows a link; the
//! log is rolled back just before a stop or inside a checkpoint interval.

use axum::http::StatusCode;
use serde_json::Value;

use crate::common::*;

async fn verify(vault: &TestVault) -> Value {
    let reply = vault.get("/v1/audit/verify", &vault.auditor()).await;
    reply.expect(StatusCode::OK);
    reply.json()
}

/// `hoso audit verify` and `hoso doctor` both exit 1 and name `grant` with `problem`.
async fn cli_names_grant(vault: &TestVault, grant: &str, problem: &str) {
    for command in [&["audit", "verify"][..], &["doctor"][..]] {
        let out = hoso_cli(vault, command).await;
        let said = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{command:?}: {said}");
        assert!(
            said.lines()
                .any(|l| l.contains(&format!("grant {grant}")) && l.contains(problem)),
            "{command:?} names grant {grant}: {said}"
        );
    }
}

fn citizen_hex(vault: &TestVault, national_id: &str) -> String {
    let id = hoso::domain::NationalId::parse(national_id).unwrap();
    vault
        .state
        .vault
        .keys()
        .citizen_index(&id)
        .unwrap()
        .to_hex()
}

#[tokio::test]
async fn a_grant_row_widened_or_moved_in_the_database_reads_nothing_and_is_named() {
    let vault = TestVault::new().await;
    let a_cccd = vault.take_in(CITIZEN_A, "cccd", &pdf(60, 3000)).await;
    let a_birth = vault
        .take_in(CITIZEN_A, "birth_certificate", &pdf(61, 3000))
        .await;
    let b_cccd = vault.take_in(CITIZEN_B, "cccd", &pdf(62, 3000)).await;
    let content = |id: &str| format!("/v1/documents/{id}/content");

    // A used-up cccd-only grant, widened to birth certificates with its uses reset.
    let (widened, officer) = vault.grant(CITIZEN_A, &["cccd"], "officer.binh", 1).await;
    vault
        .get(&content(&a_cccd), &officer)
        .await
        .expect(StatusCode::OK);
    vault
        .sql(&format!(
            "UPDATE grants SET doc_types = 'cccd,birth_certificate', uses = 0 WHERE id = '{widened}'"
        ))
        .await;
    for id in [&a_birth, &a_cccd] {
        vault
            .get(&content(id), &officer)
            .await
            .expect_error(StatusCode::INTERNAL_SERVER_ERROR, "integrity_error");
    }
    vault
        .get(&format!("/v1/documents/{a_birth}"), &officer)
        .await
        .expect_error(StatusCode::INTERNAL_SERVER_ERROR, "integrity_error");

    // Another grant moved to citizen B.
    let (moved, officer) = vault.grant(CITIZEN_A, &["cccd"], "officer.binh", 3).await;
    vault
        .sql(&format!(
            "UPDATE grants SET citizen_idx = '{}' WHERE id = '{moved}'",
            citizen_hex(&vault, CITIZEN_B)
        ))
        .await;
    for path in [content(&b_cccd), format!("/v1/documents/{b_cccd}")] {
        vault
            .get(&path, &officer)
            .await
            .expect_error(StatusCode::INTERNAL_SERVER_ERROR, "integrity_error");
    }

    // A third whose seal is copied from a wider grant's row, and a fourth with none.
    let (wide, _) = vault
        .grant(CITIZEN_A, &["cccd", "birth_certificate"], "officer.binh", 3)
        .await;
    let (copied, officer) = vault.grant(CITIZEN_A, &["cccd"], "officer.binh", 3).await;
    vault
        .sql(&format!(
            "UPDATE grants SET doc_types = 'cccd,birth_certificate', \
             seal = (SELECT seal FROM grants WHERE id = '{wide}') WHERE id = '{copied}'"
        ))
        .await;
    vault
        .get(&content(&a_birth), &officer)
        .await
        .expect_error(StatusCode::INTERNAL_SERVER_ERROR, "integrity_error");
    let (unsealed, officer) = vault.grant(CITIZEN_A, &["cccd"], "officer.binh", 3).await;
    vault
        .sql(&format!(
            "UPDATE grants SET seal = NULL WHERE id = '{unsealed}'"
        ))
        .await;
    vault
        .get(&content(&a_cccd), &officer)
        .await
        .expect_error(StatusCode::INTERNAL_SERVER_ERROR, "integrity_error");

    // A grant left alone still reads.
    let (_, honest) = vault.grant(CITIZEN_A, &["cccd"], "officer.binh", 1).await;
    vault
        .get(&content(&a_cccd), &honest)
        .await
        .expect(StatusCode::OK);

    let report = verify(&vault).await;
    assert_eq!(report["ok"], false, "{report}");
    assert!(
        report["first_bad_seq"].is_null(),
        "the log itself is intact: {report}"
    );
    let named: Vec<&str> = report["grants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["grant_id"].as_str().unwrap())
        .collect();
    for grant in [&widened, &moved, &copied, &unsealed] {
        assert!(named.contains(&grant.as_str()), "{grant} in {report}");
    }
    assert_eq!(named.len(), 4, "{report}");
    cli_names_grant(&vault, &widened, "seal does not check").await;
}

#[tokio::test]
async fn a_count_of_uses_reset_in_the_database_is_named_by_verify_and_doctor() {
    let vault = TestVault::new().await;
    let id = vault.take_in(CITIZEN_A, "cccd", &pdf(63, 3000)).await;
    let (grant, officer) = vault.grant(CITIZEN_A, &["cccd"], "officer.binh", 3).await;
    let path = format!("/v1/documents/{id}/content");
    for _ in 0..2 {
        vault.get(&path, &officer).await.expect(StatusCode::OK);
    }
    assert_eq!(verify(&vault).await["ok"], true);
    vault
        .sql(&format!("UPDATE grants SET uses = 0 WHERE id = '{grant}'"))
        .await;
    let report = verify(&vault).await;
    assert_eq!(report["ok"], false, "{report}");
    assert_eq!(report["grants"][0]["grant_id"], grant.as_str(), "{report}");
    cli_names_grant(
        &vault,
        &grant,
        "0 uses spent, but the log holds 2 content reads",
    )
    .await;
}

/// A trigger that puts every grant's uses back to 0, as an insider would plant it.
fn reset_trigger() -> &'static str {
    match backend() {
        Backend::SqliteLocal => {
            "CREATE TRIGGER keep_uses AFTER UPDATE OF uses ON grants \
             BEGIN UPDATE grants SET uses = 0 WHERE id = NEW.id; END"
        }
        Backend::PostgresS3 => {
            "CREATE FUNCTION keep_uses() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN NEW.uses := 0; RETURN NEW; END $$; \
             CREATE TRIGGER keep_uses BEFORE UPDATE ON grants FOR EACH ROW EXECUTE FUNCTION keep_uses()"
        }
    }
}

#[tokio::test]
async fn the_vault_refuses_to_start_on_a_database_with_a_planted_trigger_view_or_table() {
    let vault = TestVault::new().await;
    let settings = vault.state.settings.clone();
    for (plant, named) in [
        (reset_trigger(), "trigger keep_uses"),
        (
            "CREATE VIEW every_grant AS SELECT * FROM grants",
            "view every_grant",
        ),
        ("CREATE TABLE notes_of_mine (x TEXT)", "notes_of_mine"),
    ] {
        vault.sql(plant).await;
        let refused = hoso::app::App::open(settings.clone(), false).await;
        let message = refused.err().expect("refused to start").to_string();
        assert!(
            message.contains("schema is not the one hoso makes"),
            "{message}"
        );
        assert!(message.contains(named), "{named} named: {message}");
        let out = hoso_cli(&vault, &["doctor"]).await;
        assert_eq!(out.status.code(), Some(2), "the CLI refuses too");
        assert!(String::from_utf8_lossy(&out.stderr).contains(named));
        // Removed, the vault starts again.
        let drop = match plant.split_whitespace().nth(1) {
            Some("TRIGGER") | Some("FUNCTION") => match backend() {
                Backend::SqliteLocal => "DROP TRIGGER keep_uses".to_owned(),
                Backend::PostgresS3 => {
                    "DROP TRIGGER keep_uses ON grants; DROP FUNCTION keep_uses()".to_owned()
                }
            },
            Some(kind) => format!("DROP {kind} {}", plant.split_whitespace().nth(2).unwrap()),
            None => unreachable!(),
        };
        vault.sql(&drop).await;
        assert!(hoso::app::App::open(settings.clone(), false).await.is_ok());
    }
}

/// On PostgreSQL a table can run someone else's code without a trigger: a check or a default
/// that calls a function. Both are named; so is a table inheriting from hoso's (its rows would
/// show in hoso's reads).
#[tokio::test]
async fn a_check_a_default_or_an_inheriting_table_planted_on_postgresql_is_refused() {
    if backend() != Backend::PostgresS3 {
        println!("checks and defaults are part of SQLite's table text, compared above");
        return;
    }
    let vault = TestVault::new().await;
    let settings = vault.state.settings.clone();
    for (plant, named, undo) in [
        (
            "ALTER TABLE grants ADD CONSTRAINT sneaky CHECK (uses >= 0)",
            "constraint sneaky",
            "ALTER TABLE grants DROP CONSTRAINT sneaky",
        ),
        (
            "ALTER TABLE grants ALTER COLUMN revoked_at SET DEFAULT 0",
            "column grants.revoked_at",
            "ALTER TABLE grants ALTER COLUMN revoked_at DROP DEFAULT",
        ),
        (
            "CREATE SCHEMA elsewhere; CREATE TABLE elsewhere.more_grants () INHERITS (grants)",
            "inheriting table",
            "DROP SCHEMA elsewhere CASCADE",
        ),
    ] {
        vault.sql(plant).await;
        let message = hoso::app::App::open(settings.clone(), false)
            .await
            .err()
            .expect("refused to start")
            .to_string();
        assert!(message.contains(named), "{named} named: {message}");
        vault.sql(undo).await;
        assert!(hoso::app::App::open(settings.clone(), false).await.is_ok());
    }
}

/// A backup of `vault` (SQLite + files) in `vault`'s directory.
async fn backup_of(vault: &TestVault) -> std::path::PathBuf {
    let backup = vault.path().join("backup");
    let out = hoso_cli(vault, &["backup", backup.to_str().unwrap()]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    backup
}

/// The settings of `vault` pointed at a fresh, empty place (the same keys).
fn elsewhere(vault: &TestVault, place: &std::path::Path) -> hoso::config::Settings {
    let mut s = vault.state.settings.clone();
    s.database_url = format!("sqlite://{}", place.join("hoso.db").display())
        .parse()
        .unwrap();
    s.storage_url = format!("file://{}", place.join("storage").display())
        .parse()
        .unwrap();
    s
}

async fn restore(backup: &std::path::Path, s: &hoso::config::Settings) -> Result<u64, String> {
    hoso::records::backup::restore(backup, &s.database_url, &s.storage_url).await
}

#[tokio::test]
async fn a_body_swapped_for_a_link_while_restore_runs_is_never_followed() {
    if backend() != Backend::SqliteLocal {
        println!("backup/restore cover the embedded default: nothing to test on this pair");
        return;
    }
    let vault = TestVault::new().await;
    for seed in 0..8 {
        vault
            .take_in(CITIZEN_A, "other", &pdf(70 + seed, 4000))
            .await;
    }
    let backup = backup_of(&vault).await;
    let key_path = vault.state.settings.keys_dir.join("audit-chain.key");
    let key = std::fs::read(&key_path).unwrap();
    let bodies = hoso::blob::files_under(&backup.join("storage")).unwrap();
    let body = bodies
        .iter()
        .find(|p| p.to_string_lossy().contains("bodies"))
        .unwrap()
        .clone();
    let aside = body.with_extension("aside");
    // The attacker's thread: the body and a link to the key file take turns at its name.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapper = {
        let (stop, body, aside, key_path) = (stop.clone(), body.clone(), aside.clone(), key_path);
        std::thread::spawn(move || {
            let mut swaps = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::fs::rename(&body, &aside).unwrap();
                std::os::unix::fs::symlink(&key_path, &body).unwrap();
                std::fs::remove_file(&body).unwrap();
                std::fs::rename(&aside, &body).unwrap();
                swaps += 1;
            }
            swaps
        })
    };
    let (mut refused, mut restored) = (0, 0);
    for _ in 0..40 {
        let place = tempfile::tempdir().unwrap();
        match restore(&backup, &elsewhere(&vault, place.path())).await {
            Ok(_) => {
                restored += 1;
                for file in hoso::blob::files_under(&place.path().join("storage")).unwrap() {
                    assert!(
                        !contains(&std::fs::read(&file).unwrap(), &key[..16]),
                        "{} holds the key file",
                        file.display()
                    );
                }
            }
            Err(e) => {
                refused += 1;
                assert!(
                    e.contains("refusing to restore") || e.contains("No such file"),
                    "{e}"
                );
                assert!(!place.path().join("hoso.db").exists(), "nothing left: {e}");
                assert!(!place.path().join("storage").exists(), "nothing left: {e}");
            }
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    println!("40 restores during {swaps} swaps: {restored} restored, {refused} refused");
    assert!(swaps > 0);
}

#[tokio::test]
async fn a_restore_refuses_a_backup_whose_database_holds_a_trigger() {
    if backend() != Backend::SqliteLocal {
        println!("backup/restore cover the embedded default: nothing to test on this pair");
        return;
    }
    let vault = TestVault::new().await;
    vault.take_in(CITIZEN_A, "cccd", &pdf(80, 3000)).await;
    let backup = backup_of(&vault).await;
    // Planted in hoso.db itself (not in a write-ahead log beside it, which restore never reads).
    let conn = rusqlite::Connection::open(backup.join("hoso.db")).unwrap();
    conn.pragma_update(None, "journal_mode", "DELETE").unwrap();
    conn.execute_batch(reset_trigger()).unwrap();
    drop(conn);
    let place = tempfile::tempdir().unwrap();
    let refused = restore(&backup, &elsewhere(&vault, place.path()))
        .await
        .unwrap_err();
    assert!(refused.contains("trigger keep_uses"), "{refused}");
    assert!(!place.path().join("hoso.db").exists(), "nothing restored");
    assert!(!place.path().join("storage").exists(), "nothing restored");
}

#[tokio::test]
async fn a_restored_vault_still_finds_its_log_wiped_from_the_checkpoints_its_backup_carried() {
    if backend() != Backend::SqliteLocal {
        println!("backup/restore cover the embedded default: nothing to test on this pair");
        return;
    }
    let vault = TestVault::with(|s| s.checkpoint_every = 1).await;
    let id = vault.take_in(CITIZEN_A, "cccd", &pdf(81, 3000)).await;
    for _ in 0..3 {
        vault
            .get(&format!("/v1/documents/{id}"), &vault.clerk())
            .await
            .expect(StatusCode::OK);
    }
    vault.publish_checkpoint().await;
    let backup = backup_of(&vault).await;
    let place = tempfile::tempdir().unwrap();
    let settings = elsewhere(&vault, place.path());
    restore(&backup, &settings).await.unwrap();
    let restored = TestVault::open(place, settings).await;
    assert_eq!(verify(&restored).await["ok"], true, "restored intact");
    restored
        .sql(
            "DELETE FROM audit_entries; DELETE FROM audit_tree; DELETE FROM audit_notes; \
             DELETE FROM audit_signed_heads; \
             UPDATE audit_head SET seq = 0, hash = '0000000000000000000000000000000000000000000000000000000000000000', signature = ''",
        )
        .await;
    let restored = restored.noticed_then_restarted().await;
    let (ok, said) = restored.cli_verify().await;
    assert!(!ok, "{said}");
    assert!(said.contains("entries were removed"), "{said}");
}

/// A `hoso serve` on `vault`'s database and store, never checkpointing on its own schedule
/// (`HOSO_CHECKPOINT_EVERY` and `_SECONDS` far off), strict or not.
async fn quiet_server(vault: &TestVault, strict: &str) -> crate::processes::Fleet {
    let env = [
        ("HOSO_AUDIT_STRICT", strict),
        ("HOSO_CHECKPOINT_EVERY", "100000"),
        ("HOSO_CHECKPOINT_SECONDS", "86400"),
        ("HOSO_SHUTDOWN_GRACE_SECONDS", "2"),
    ];
    crate::processes::start_fleet_with(vault, 1, &env).await
}

/// Stops the server with `signal` and waits for it to exit.
fn stop(fleet: &mut crate::processes::Fleet, signal: &str) {
    let child = &mut fleet.0[0].0;
    let pid = child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap()
            .success()
    );
    child.wait().unwrap();
}

/// Takes a scan in through the server and reads it twice; returns the log's size and head as
/// they were before the two reads, for the insider to roll back to.
async fn two_reads_through(
    vault: &TestVault,
    addr: std::net::SocketAddr,
) -> (i64, (String, String)) {
    let clerk = vault.clerk();
    let (status, doc) =
        crate::processes::intake(addr, &clerk, CITIZEN_A, "cccd", pdf(85, 3000)).await;
    assert_eq!(status, 201, "{doc}");
    let keep = vault.count("SELECT seq FROM audit_head").await;
    let head = saved_head(vault).await;
    let path = format!("/v1/documents/{}/content", doc["id"].as_str().unwrap());
    for _ in 0..2 {
        let (status, _) = crate::processes::call(addr, "GET", &path, Some(&clerk), None)
            .await
            .unwrap();
        assert_eq!(status, 200);
    }
    (keep, head)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_just_before_a_graceful_stop_cannot_be_rolled_back_unseen() {
    // Without strict mode only the drain's last checkpoint covers the two reads; with it (the
    // default) every batch was covered already. Either way the rollback is found.
    for strict in ["false", "true"] {
        let vault = TestVault::new().await;
        let mut server = quiet_server(&vault, strict).await;
        let (keep, head) = two_reads_through(&vault, server.0[0].1).await;
        stop(&mut server, "-TERM");
        roll_back(&vault, keep, &head).await;
        let (ok, said) = vault.cli_verify().await;
        assert!(!ok, "strict={strict}: {said}");
        assert!(
            said.contains("entries were removed"),
            "strict={strict}: {said}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_inside_a_checkpoint_interval_cannot_be_rolled_back_unseen_in_strict_mode() {
    let vault = TestVault::new().await;
    let mut server = quiet_server(&vault, "true").await;
    let (keep, head) = two_reads_through(&vault, server.0[0].1).await;
    // The server keeps running; the insider rolls the reads back under it.
    roll_back(&vault, keep, &head).await;
    let (ok, said) = vault.cli_verify().await;
    assert!(!ok, "{said}");
    assert!(said.contains("entries were removed"), "{said}");
    stop(&mut server, "-KILL");

    // The window strict mode closes: without it, and with the process killed before any
    // checkpoint, the same rollback goes unseen (what `HOSO_AUDIT_STRICT=false` risks).
    let vault = TestVault::new().await;
    let mut server = quiet_server(&vault, "false").await;
    let (keep, head) = two_reads_through(&vault, server.0[0].1).await;
    stop(&mut server, "-KILL");
    roll_back(&vault, keep, &head).await;
    let (ok, said) = vault.cli_verify().await;
    assert!(ok, "unseen without strict mode: {said}");
}

#[tokio::test]
async fn a_checkpoint_clock_set_ahead_in_the_database_stops_no_checkpoint_and_is_flagged() {
    let vault = TestVault::with(|s| {
        s.audit_strict = false;
        s.checkpoint_every = 100_000;
        s.checkpoint_seconds = 1;
    })
    .await;
    let id = vault.take_in(CITIZEN_A, "cccd", &pdf(86, 3000)).await;
    vault.publish_checkpoint().await;
    let ten_years = 10 * 365 * 24 * 3600 * 1000_i64;
    vault
        .sql(&format!(
            "UPDATE audit_notes SET made_at = made_at + {ten_years}"
        ))
        .await;
    let path = format!("/v1/documents/{id}/content");
    for _ in 0..2 {
        vault
            .get(&path, &vault.clerk())
            .await
            .expect(StatusCode::OK);
    }
    let published = vault
        .state
        .vault
        .blobs
        .list_under("audit/checkpoints")
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    vault.publish_checkpoint().await;
    let now = vault
        .state
        .vault
        .blobs
        .list_under("audit/checkpoints")
        .await
        .unwrap();
    assert_eq!(
        now.len(),
        published.len() + 1,
        "due by the process's own clock: {now:?}"
    );
    let (ok, said) = vault.cli_verify().await;
    assert!(!ok, "{said}");
    assert!(said.contains("in the future"), "{said}");
}

#[tokio::test]
async fn a_revoked_or_expired_token_is_refused_and_logged_and_a_grant_token_past_expiry_is_grant_expired()
 {
    let vault = TestVault::new().await;
    let id = vault.take_in(CITIZEN_A, "cccd", &pdf(87, 3000)).await;
    let clerk = vault.clerk();
    let path = format!("/v1/citizens/{CITIZEN_A}/documents");
    hoso::records::tokens::revoke(&vault.state.vault, &clerk)
        .await
        .unwrap();
    vault
        .get(&path, &clerk)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "unauthenticated");

    let (grant, _) = vault
        .grant_for(CITIZEN_A, &["cccd"], "officer.binh", 3, 1)
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    // The grant's token as it is once its expiry and the clock-skew leeway have passed.
    let keys = vault.state.vault.keys();
    let policy = &vault.state.vault.token_policy;
    let now = hoso::db::now_ms() / 1000;
    let claims = hoso::auth::Claims {
        iss: policy.issuer.clone(),
        aud: policy.audience.clone(),
        sub: "officer.binh".into(),
        role: hoso::domain::Role::Officer,
        office: Some("STP-DANANG".into()),
        iat: now - 3600,
        nbf: now - 3600,
        exp: now - hoso::auth::LEEWAY_SECONDS as i64 - 60,
        jti: uuid::Uuid::now_v7().to_string(),
        grant: Some(grant.clone()),
        via: None,
    };
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some(keys.token.kid().to_owned());
    let officer = keys.token.jws(&header, &claims).unwrap();
    vault
        .get(&format!("/v1/documents/{id}/content"), &officer)
        .await
        .expect_error(StatusCode::FORBIDDEN, "grant_expired");

    let refused = |reason: &str, extra: &str| {
        format!(
            "SELECT COUNT(*) FROM audit_entries WHERE action = 'token.refused' \
             AND outcome = 'denied' AND reason = '{reason}' {extra}"
        )
    };
    assert_eq!(
        vault
            .count(&refused("token_revoked", "AND actor = 'clerk.lan'"))
            .await,
        1
    );
    assert_eq!(
        vault
            .count(&refused(
                "grant_expired",
                &format!("AND grant_id = '{grant}' AND actor = 'officer.binh'")
            ))
            .await,
        1
    );
    // A token that is not the vault's names nobody: refused, not logged.
    let before = vault.count("SELECT COUNT(*) FROM audit_entries").await;
    vault
        .get(&path, "not.a.token")
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "unauthenticated");
    assert_eq!(
        vault.count("SELECT COUNT(*) FROM audit_entries").await,
        before
    );
}

#[tokio::test]
async fn invisible_characters_are_refused_in_every_free_text_field() {
    let vault = TestVault::new().await;
    for sneaky in [
        "Hồ\u{2028}sơ",
        "soft\u{AD}hyphen",
        "tag\u{E0041}",
        "\u{3164}",
        "pua\u{E000}",
    ] {
        let reply = vault
            .post(
                "/v1/grants",
                &vault.clerk(),
                serde_json::json!({
                    "national_id": CITIZEN_A, "doc_types": ["cccd"],
                    "case_ref": "000.00.31.H40-261124-0001", "purpose": sneaky,
                    "grantee": "officer.binh", "grantee_office": "STP-DANANG",
                    "ttl_seconds": 60, "max_uses": 1,
                }),
            )
            .await;
        reply.expect_error(StatusCode::BAD_REQUEST, "invalid_request");
        let mut meta = metadata("cccd");
        meta["holder_name"] = format!("Nguyễn{sneaky}").into();
        vault
            .intake(&vault.clerk(), CITIZEN_A, &meta, &pdf(88, 3000))
            .await
            .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_metadata");
    }
}

#[tokio::test]
async fn a_read_never_leaves_unpublished_when_the_trees_edge_is_removed() {
    let vault = TestVault::new().await;
    let id = vault.take_in(CITIZEN_A, "cccd", &pdf(89, 3000)).await;
    let path = format!("/v1/documents/{id}/content");
    for _ in 0..3 {
        vault
            .get(&path, &vault.clerk())
            .await
            .expect(StatusCode::OK);
    }
    // The subtree over the first four entries, which the next append's root needs.
    vault.sql("DELETE FROM audit_tree WHERE level = 2").await;
    let read = vault.get(&path, &vault.clerk()).await;
    assert!(read.status.is_server_error(), "{:?}", read.status);
    assert!(
        !contains(&read.body, &pdf(89, 3000)[..1024]),
        "no byte sent"
    );
}

#[tokio::test]
async fn a_tree_rewritten_under_a_running_vault_raises_the_alarm_and_stops_the_writer() {
    let vault = TestVault::new().await;
    let id = vault.take_in(CITIZEN_A, "cccd", &pdf(90, 3000)).await;
    let path = format!("/v1/documents/{id}");
    vault
        .get(&path, &vault.clerk())
        .await
        .expect(StatusCode::OK);
    let v = &vault.state.vault;
    v.checkpoints.check_tree(&v.db).await.unwrap();
    vault
        .sql(&format!(
            "UPDATE audit_tree SET hash = '{}'",
            "ab".repeat(32)
        ))
        .await;
    // The next batch finds it before it appends (under the log's lock), not a second later.
    vault
        .get(&path, &vault.clerk())
        .await
        .expect_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    // And so does the checkpointer, every second; nothing more is published.
    assert!(v.checkpoints.check_tree(&v.db).await.is_err());
    let mark = v.checkpoints.mark().unwrap();
    assert!(
        v.checkpoints
            .publish(&v.blobs, &v.keys(), mark)
            .await
            .is_err()
    );
    let ready = vault.get("/readyz", "").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        ready.json()["audit_log_rolled_back"]
            .as_str()
            .unwrap()
            .contains("rewritten")
    );
}

#[tokio::test]
async fn a_log_rolled_back_while_no_vault_ran_raises_the_alarm_at_start() {
    let vault = TestVault::new().await;
    let id = vault.take_in(CITIZEN_A, "cccd", &pdf(91, 3000)).await;
    let keep = vault.count("SELECT seq FROM audit_head").await;
    let head = saved_head(&vault).await;
    for _ in 0..2 {
        vault
            .get(&format!("/v1/documents/{id}"), &vault.clerk())
            .await
            .expect(StatusCode::OK);
    }
    // The vault is stopped; the insider rolls the database back; the vault starts again.
    let stopped = vault.restart(|_| {}).await;
    roll_back(&stopped, keep, &head).await;
    let started = stopped.restart(|_| {}).await;
    let ready = started.get("/readyz", "").await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    let alarm = ready.json()["audit_log_rolled_back"].clone();
    assert!(
        alarm.as_str().unwrap().contains("were committed before"),
        "{alarm}"
    );
    started
        .get(&format!("/v1/documents/{id}"), &started.clerk())
        .await
        .expect_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
}

#[tokio::test]
async fn reads_a_grant_never_allowed_are_named_even_when_its_row_is_put_back() {
    let vault = TestVault::new().await;
    let id = vault.take_in(CITIZEN_A, "cccd", &pdf(92, 3000)).await;
    let path = format!("/v1/documents/{id}/content");
    let (grant, officer) = vault.grant(CITIZEN_A, &["cccd"], "officer.binh", 3).await;
    vault.get(&path, &officer).await.expect(StatusCode::OK);
    vault
        .delete(&format!("/v1/grants/{grant}"), &vault.clerk())
        .await
        .expect(StatusCode::NO_CONTENT);
    // The revocation undone for one read, then put back, uses and all.
    vault
        .sql(&format!(
            "UPDATE grants SET revoked_at = NULL WHERE id = '{grant}'"
        ))
        .await;
    vault.get(&path, &officer).await.expect(StatusCode::OK);
    vault
        .sql(&format!(
            "UPDATE grants SET revoked_at = 1 WHERE id = '{grant}'"
        ))
        .await;
    let report = verify(&vault).await;
    assert_eq!(report["ok"], false, "{report}");
    let problem = report["grants"][0]["problem"].as_str().unwrap();
    assert!(problem.contains("after it was revoked"), "{report}");
}

#[tokio::test]
async fn grants_from_before_seals_are_sealed_once_and_a_seal_removed_later_stays_refused() {
    let vault = TestVault::new().await;
    let id = vault.take_in(CITIZEN_A, "cccd", &pdf(93, 3000)).await;
    let (grant, officer) = vault.grant(CITIZEN_A, &["cccd"], "officer.binh", 5).await;
    // As a vault from before seals: no key, no seals.
    let keys_dir = vault.state.settings.keys_dir.clone();
    std::fs::remove_file(keys_dir.join("grant-seal.key")).unwrap();
    vault.sql("UPDATE grants SET seal = NULL").await;
    let vault = vault.restart(|_| {}).await;
    assert!(
        !keys_dir.join("grant-seal.pending").exists(),
        "sealed, marker gone"
    );
    let path = format!("/v1/documents/{id}/content");
    vault.get(&path, &officer).await.expect(StatusCode::OK);
    // Later, a database holder strips the seal: no restart seals it again.
    vault
        .sql(&format!(
            "UPDATE grants SET seal = NULL WHERE id = '{grant}'"
        ))
        .await;
    let vault = vault.restart(|_| {}).await;
    vault
        .get(&path, &officer)
        .await
        .expect_error(StatusCode::INTERNAL_SERVER_ERROR, "integrity_error");
}

#[tokio::test]
async fn a_restore_refuses_a_hard_link_to_a_key_file() {
    if backend() != Backend::SqliteLocal {
        println!("backup/restore cover the embedded default: nothing to test on this pair");
        return;
    }
    let vault = TestVault::new().await;
    vault.take_in(CITIZEN_A, "cccd", &pdf(94, 3000)).await;
    let backup = backup_of(&vault).await;
    let key = vault.state.settings.keys_dir.join("audit-chain.key");
    std::fs::hard_link(&key, backup.join("storage").join("looks-like-a-body")).unwrap();
    let place = tempfile::tempdir().unwrap();
    let refused = restore(&backup, &elsewhere(&vault, place.path()))
        .await
        .unwrap_err();
    assert!(refused.contains("hard link"), "{refused}");
    assert!(!place.path().join("storage").exists(), "nothing restored");
}

/// A checkpoint is written once: publishing another one at a size already published (what a
/// process appending to a rolled-back, regrown log would do) leaves the published one as it is,
/// is refused, and raises the alarm; on every store, including S3 stores that ignore
/// conditional puts.
#[tokio::test]
async fn a_different_checkpoint_is_never_written_over_a_published_one() {
    let vault = TestVault::new().await;
    let id = vault.take_in(CITIZEN_A, "cccd", &pdf(95, 3000)).await;
    vault
        .get(&format!("/v1/documents/{id}"), &vault.clerk())
        .await
        .expect(StatusCode::OK);
    let v = &vault.state.vault;
    let mark = v.checkpoints.mark().unwrap();
    let key = hoso::audit::checkpoints::object_key(mark.size);
    let published = vault.raw_object(&key).await;
    let forked = hoso::audit::checkpoints::Mark {
        size: mark.size,
        root: [9; 32],
    };
    assert!(
        v.checkpoints
            .publish(&v.blobs, &v.keys(), forked)
            .await
            .is_err()
    );
    assert_eq!(vault.raw_object(&key).await, published, "left as it was");
    assert!(
        v.checkpoints
            .alarm()
            .unwrap()
            .contains("different checkpoint")
    );
}

/// A revocation and a read through the same grant, in one batch of the log writer: the read's
/// use is spent when the batch starts, before the revocation runs, so its entry comes first in
/// the log, and verify finds the log and the grant row agreeing (else it would name the grant
/// as edited, for a read logged after its revocation).
#[tokio::test]
async fn a_read_and_a_revocation_in_one_batch_are_logged_in_the_order_the_database_saw() {
    use hoso::audit::writer::GrantUse;
    use hoso::audit::{AuditAction, Entry};
    use hoso::domain::Role;
    let vault = TestVault::new().await;
    vault.take_in(CITIZEN_A, "cccd", &pdf(90, 4096)).await;
    let (grant, _) = vault.grant(CITIZEN_A, &["cccd"], "officer.a", 5).await;
    let id: uuid::Uuid = grant.parse().unwrap();
    let v = &vault.state.vault;
    let entry = |action| {
        let mut e = Entry::new(
            "officer.a".into(),
            Role::Officer,
            "STP-DANANG".into(),
            action,
        );
        e.grant_id = Some(grant.clone());
        e
    };
    let revocation = entry(AuditAction::GrantRevoke);
    let revoke = v.log.change(v.keys(), move |tx| {
        Box::pin(async move {
            hoso::db::grants::revoke(tx, id, "clerk.a", hoso::db::now_ms()).await?;
            Ok((Some(revocation), ()))
        })
    });
    let grant_use = GrantUse {
        grant: id,
        refusal: |_, _| hoso::error::ApiError::Forbidden("revoked".into()),
    };
    // Both are queued before the writer runs (one thread: it runs only once both wait).
    let read = v.log.record_read(
        v.keys(),
        entry(AuditAction::DocumentContent),
        Some(grant_use),
    );
    let (revoked, read) = tokio::join!(revoke, read);
    revoked.unwrap();
    let read = read.unwrap();
    let revoked_at = vault
        .count("SELECT seq FROM audit_entries WHERE action = 'grant.revoke'")
        .await;
    assert_eq!(read.seq + 1, revoked_at, "one batch, the read first");
    let report = verify(&vault).await;
    assert_eq!(report["ok"], true, "{report}");
}

/// Verify reads the grant rows and walks the log in one snapshot, so reads that spend their
/// uses while it runs never show as a count of uses the log disagrees with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verify_while_reads_spend_their_uses_finds_every_grant_as_the_vault_wrote_it() {
    let vault = TestVault::new().await;
    let id = vault.take_in(CITIZEN_A, "cccd", &pdf(93, 3000)).await;
    let path = format!("/v1/documents/{id}/content");
    let (_grant, officer) = vault.grant(CITIZEN_A, &["cccd"], "officer.binh", 400).await;
    // Each verify logs an entry of its own after it verified: `before` counts the first one's.
    let before = verify(&vault).await["entries"].as_i64().unwrap() + 1;
    let reading = async {
        for _ in 0..300 {
            vault.get(&path, &officer).await.expect(StatusCode::OK);
        }
    };
    let verifying = async {
        let mut reports = Vec::new();
        for _ in 0..12 {
            reports.push(verify(&vault).await);
        }
        reports
    };
    let ((), reports) = tokio::join!(reading, verifying);
    for report in &reports {
        assert_eq!(report["ok"], true, "{report}");
    }
    // How many reads each verify saw logged (less the verifies' own entries before it): some saw
    // the reads under way, neither none nor all of them.
    let seen: Vec<i64> = (0..)
        .zip(&reports)
        .map(|(i, r)| r["entries"].as_i64().unwrap() - before - i)
        .collect();
    assert!(
        seen.iter().any(|&n| 0 < n && n < 300),
        "verifies ran while reads were logged: {seen:?}"
    );
}

/// A grant id rewritten in the database to another spelling of its UUID (here the URN form,
/// which sorts after every plain id) neither traps verify's paging in a loop nor hides the row:
/// its use is spent, and the log holds no read through that spelling.
#[tokio::test]
async fn a_grant_id_respelled_in_the_database_is_named_and_never_loops_the_check() {
    let vault = TestVault::new().await;
    let id = vault.take_in(CITIZEN_A, "cccd", &pdf(94, 3000)).await;
    let (grant, officer) = vault.grant(CITIZEN_A, &["cccd"], "officer.binh", 3).await;
    vault
        .get(&format!("/v1/documents/{id}/content"), &officer)
        .await
        .expect(StatusCode::OK);
    vault
        .sql(&format!(
            "UPDATE grants SET id = 'urn:uuid:' || id WHERE id = '{grant}'"
        ))
        .await;
    let report = tokio::time::timeout(std::time::Duration::from_secs(60), verify(&vault))
        .await
        .expect("verify ends");
    assert_eq!(report["ok"], false, "{report}");
    assert_eq!(report["grants"][0]["grant_id"], grant.as_str(), "{report}");
    let problem = report["grants"][0]["problem"].as_str().unwrap();
    assert!(
        problem.contains("1 uses spent, but the log holds 0"),
        "{report}"
    );
}
