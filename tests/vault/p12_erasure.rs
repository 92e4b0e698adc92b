//! Promise 12: an erased document cannot be read back from the live store, the database, or a
//! restored backup; a document under a legal hold is never erased. Retention by type with an
//! injected clock, holds, erasure on request, the ledger through backup and restore.

use axum::http::StatusCode;
use serde_json::json;

use hoso::domain::{DocType, EraseReason};
use hoso::records::retention::{Report, Rule, Rules};

use crate::common::*;

const DAY_MS: i64 = 86_400_000;

fn rules(list: &[(DocType, Option<u32>, Option<u32>)]) -> Rules {
    Rules(
        list.iter()
            .map(|(t, not_current, unread)| {
                (
                    *t,
                    Rule {
                        after_not_current_days: *not_current,
                        after_last_read_days: *unread,
                    },
                )
            })
            .collect(),
    )
}

async fn run_at(vault: &TestVault, rules: &Rules, days_from_now: i64, dry_run: bool) -> Report {
    let now = hoso::db::now_ms() + days_from_now * DAY_MS;
    hoso::records::retention::run(&vault.state.vault, rules, now, dry_run, |_, _| {})
        .await
        .unwrap()
}

async fn status(vault: &TestVault, id: &str) -> String {
    let reply = vault
        .get(&format!("/v1/documents/{id}"), &vault.clerk())
        .await;
    reply.expect(StatusCode::OK);
    reply.json()["status"].as_str().unwrap().to_owned()
}

async fn revoke(vault: &TestVault, id: &str) {
    vault
        .post(
            &format!("/v1/documents/{id}/revoke"),
            &vault.clerk(),
            json!({}),
        )
        .await
        .expect(StatusCode::OK);
}

fn ids(report: &Report) -> Vec<String> {
    let mut ids: Vec<String> = report.due.iter().map(|(id, _)| id.to_string()).collect();
    ids.sort();
    ids
}

async fn place_hold(vault: &TestVault, body: serde_json::Value) -> String {
    let reply = vault.post("/v1/holds", &vault.auditor(), body).await;
    reply.expect(StatusCode::CREATED);
    reply.json()["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn retention_erases_exactly_what_is_past_its_rule_and_nothing_under_a_hold() {
    let vault = TestVault::new().await;
    let old_cccd = vault.take_in(CITIZEN_A, "cccd", &pdf(1, 5_000)).await;
    let mut newer = metadata("cccd");
    newer["supersedes"] = json!(old_cccd);
    let reply = vault
        .intake(&vault.clerk(), CITIZEN_A, &newer, &pdf(2, 5_000))
        .await;
    reply.expect(StatusCode::CREATED);
    let new_cccd = reply.json()["id"].as_str().unwrap().to_owned();
    let passport = vault.take_in(CITIZEN_A, "passport", &pdf(3, 5_000)).await;
    revoke(&vault, &passport).await;
    let land = vault
        .take_in(CITIZEN_A, "land_use_certificate", &pdf(4, 5_000))
        .await;
    revoke(&vault, &land).await;
    let diploma = vault.take_in(CITIZEN_A, "diploma", &pdf(5, 5_000)).await;
    let held = vault.take_in(CITIZEN_B, "cccd", &pdf(6, 5_000)).await;
    revoke(&vault, &held).await;
    let hold = place_hold(
        &vault,
        json!({"national_id": CITIZEN_B, "reason": "Toà án yêu cầu giữ hồ sơ", "case_ref": "TA-2026-17"}),
    )
    .await;

    let rules = rules(&[
        (DocType::Cccd, Some(30), None),
        (DocType::Passport, Some(30), None),
        (DocType::Diploma, None, Some(40)),
    ]);
    // Before any period has run out nothing is due; a dry run erases nothing.
    assert!(run_at(&vault, &rules, 29, false).await.due.is_empty());
    let dry = run_at(&vault, &rules, 31, true).await;
    let mut expected = vec![old_cccd.clone(), passport.clone(), held.clone()];
    expected.sort();
    assert_eq!(ids(&dry), expected);
    assert_eq!(dry.erased, 0);
    assert_eq!(status(&vault, &old_cccd).await, "superseded");

    let report = run_at(&vault, &rules, 31, false).await;
    assert_eq!(ids(&report), expected);
    assert_eq!(report.erased, 2, "{report:?}");
    assert_eq!(report.held.len(), 1);
    assert_eq!(report.held[0].0.to_string(), held);
    for id in [&old_cccd, &passport] {
        assert_eq!(status(&vault, id).await, "erased");
    }
    // The current cccd, the land-use certificate (no rule), the held one and the diploma
    // (read recently enough) are whole.
    for id in [&land, &held] {
        assert_eq!(status(&vault, id).await, "revoked", "{id}");
    }
    for id in [&new_cccd, &diploma] {
        assert_ne!(status(&vault, id).await, "erased", "{id}");
        vault
            .get(&format!("/v1/documents/{id}/content"), &vault.clerk())
            .await
            .expect(StatusCode::OK);
    }
    // The diploma was copied just now: 35 days on it is kept, 41 days on it has not been
    // copied for 40 days.
    let later = run_at(&vault, &rules, 35, false).await;
    assert_eq!(later.erased, 0, "copied 35 days before: {later:?}");
    assert_eq!(later.held.len(), 1);
    let diploma_unread = run_at(&vault, &rules, 41, false).await;
    assert_eq!(diploma_unread.erased, 1);
    assert_eq!(status(&vault, &diploma).await, "erased");

    // The refusal is in the log, with the hold; lifting the hold lets the rule act.
    assert!(
        vault
            .count(&format!(
                "SELECT COUNT(*) FROM audit_entries WHERE action = 'document.erase' \
                 AND outcome = 'denied' AND document_id = '{held}' AND reason LIKE '%{hold}%'"
            ))
            .await
            >= 1
    );
    vault
        .post(&format!("/v1/holds/{hold}/lift"), &vault.admin(), json!({}))
        .await
        .expect(StatusCode::OK);
    assert_eq!(run_at(&vault, &rules, 31, false).await.erased, 1);
    assert_eq!(status(&vault, &held).await, "erased");
    assert_eq!(
        vault
            .count(
                "SELECT COUNT(*) FROM audit_entries WHERE action = 'document.erase' \
                 AND outcome = 'allowed' AND reason LIKE 'retention: retention rule for %'"
            )
            .await,
        4
    );
}

#[tokio::test]
async fn an_erased_document_leaves_nothing_readable_in_the_store_or_the_database() {
    let vault = TestVault::new().await;
    let scan = pdf(10, 70_000);
    let id = vault.take_in(CITIZEN_A, "cccd", &scan).await;
    let wrapped = vault
        .fetch_blob("SELECT wrapped_key FROM documents WHERE id = $1", &id)
        .await;
    let sealed = vault
        .fetch_blob("SELECT sealed_fields FROM documents WHERE id = $1", &id)
        .await;
    let body = vault.object(&id).await;
    // Rotate, so that two master-key versions exist: neither may find anything to unwrap.
    let rotated = hoso_cli(&vault, &["keys", "rotate"]).await;
    assert!(
        rotated.status.success(),
        "keys rotate: {}",
        String::from_utf8_lossy(&rotated.stderr)
    );

    let reply = vault
        .post(
            &format!("/v1/documents/{id}/erase"),
            &vault.admin(),
            json!({"reason": "court_order", "reference": "QĐ-2026-0042/TA"}),
        )
        .await;
    reply.expect(StatusCode::OK);
    assert_eq!(reply.json()["status"], "erased");

    let in_db = vault.database_bytes();
    for secret in [&wrapped, &sealed] {
        assert!(!contains(&in_db, secret), "the database still holds it");
        assert!(!contains(&in_db, hex::encode(secret).as_bytes()));
    }
    assert!(
        !vault.stored_keys().await.iter().any(|k| k.ends_with(&id)),
        "the body object is gone"
    );
    assert!(!contains(&in_db, &body[..64]));
    // The tombstone: what, whose, when, why; and the ledger record outside the database.
    let tomb = vault
        .get(&format!("/v1/documents/{id}"), &vault.clerk())
        .await
        .json();
    assert_eq!(tomb["status"], "erased");
    assert_eq!(tomb["doc_type"], "cccd");
    assert!(tomb.get("holder_name").is_none(), "{tomb}");
    assert_eq!(tomb["erased"]["reason"], "court_order: QĐ-2026-0042/TA");
    let record = vault.raw_object(&format!("ledger/erasures/{id}")).await;
    let record: serde_json::Value = serde_json::from_slice(&record).unwrap();
    assert_eq!(record["reason"], "court_order");
    vault
        .get(&format!("/v1/documents/{id}/content"), &vault.clerk())
        .await
        .expect_error(StatusCode::GONE, "erased");
    // The key versions no longer count it, so the old one can be retired.
    let retired = hoso_cli(&vault, &["keys", "retire", "--version", "1"]).await;
    assert!(
        retired.status.success(),
        "{}",
        String::from_utf8_lossy(&retired.stderr)
    );
    let (ok, out) = vault.cli_verify().await;
    assert!(ok, "{out}");
}

#[tokio::test]
async fn a_hold_beats_an_erasure_request_and_bad_input_changes_nothing() {
    let vault = TestVault::new().await;
    let id = vault.take_in(CITIZEN_A, "passport", &pdf(20, 5_000)).await;
    let erase = |reason: &'static str| json!({"reason": reason, "reference": "QĐ-123/2026/TA"});
    for (body, code) in [
        (
            json!({"document_id": id, "case_ref": "TA-1"}),
            "invalid_request",
        ),
        (
            json!({"document_id": id, "reason": " ", "case_ref": "TA-1"}),
            "invalid_request",
        ),
        (
            json!({"document_id": id, "national_id": CITIZEN_A, "reason": "x", "case_ref": "TA-1"}),
            "invalid_request",
        ),
        (
            json!({"document_id": id, "reason": "x", "case_ref": "TA-1", "until": "2020-01-01T00:00:00Z"}),
            "invalid_request",
        ),
        (
            json!({"national_id": "12", "reason": "x", "case_ref": "TA-1"}),
            "invalid_national_id",
        ),
    ] {
        let reply = vault.post("/v1/holds", &vault.admin(), body.clone()).await;
        assert_eq!(reply.code(), code, "{body}");
    }
    vault
        .post(
            "/v1/holds",
            &vault.clerk(),
            json!({"document_id": id, "reason": "x", "case_ref": "TA-1"}),
        )
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(vault.count("SELECT COUNT(*) FROM legal_holds").await, 0);

    let hold = place_hold(
        &vault,
        json!({"document_id": id, "reason": "Vụ án hình sự số 12", "case_ref": "VKS-2026-12"}),
    )
    .await;
    let refused = vault
        .post(
            &format!("/v1/documents/{id}/erase"),
            &vault.admin(),
            erase("court_order"),
        )
        .await;
    refused.expect_error(StatusCode::CONFLICT, "legal_hold");
    assert!(
        refused.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("VKS-2026-12")
    );
    assert_eq!(status(&vault, &id).await, "pending");
    for (who, body, code) in [
        (vault.clerk(), erase("court_order"), "forbidden"),
        (vault.admin(), erase("retention"), "invalid_request"),
        (vault.admin(), erase("citizen_request"), "invalid_request"),
        (
            vault.admin(),
            json!({"reason": "because", "reference": "x"}),
            "invalid_request",
        ),
    ] {
        let reply = vault
            .post(&format!("/v1/documents/{id}/erase"), &who, body)
            .await;
        assert_eq!(reply.code(), code);
    }
    let listed = vault.get("/v1/holds", &vault.auditor()).await;
    listed.expect(StatusCode::OK);
    assert_eq!(listed.json()["holds"][0]["id"], hold.as_str());
    assert_eq!(listed.json()["holds"][0]["in_force"], true);

    let lift = format!("/v1/holds/{hold}/lift");
    vault
        .post(&lift, &vault.auditor(), json!({}))
        .await
        .expect(StatusCode::OK);
    vault
        .post(&lift, &vault.auditor(), json!({}))
        .await
        .expect_error(StatusCode::CONFLICT, "conflict");
    assert!(
        vault.get("/v1/holds", &vault.auditor()).await.json()["holds"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    vault
        .post(
            &format!("/v1/documents/{id}/erase"),
            &vault.admin(),
            erase("court_order"),
        )
        .await
        .expect(StatusCode::OK);
    for action in ["hold.place", "hold.lift", "hold.list"] {
        assert!(
            vault
                .count(&format!(
                    "SELECT COUNT(*) FROM audit_entries WHERE action = '{action}'"
                ))
                .await
                >= 1,
            "{action} is logged"
        );
    }
    assert_eq!(
        vault
            .count(
                "SELECT COUNT(*) FROM audit_entries WHERE action = 'document.erase' \
                    AND outcome = 'denied' AND reason LIKE 'legal_hold: legal hold %'"
            )
            .await,
        1
    );
}

/// Erases `id` on a court order, as an admin.
async fn erase_on_request(vault: &TestVault, id: &str) {
    vault
        .post(
            &format!("/v1/documents/{id}/erase"),
            &vault.admin(),
            json!({"reason": "court_order", "reference": "YC-7"}),
        )
        .await
        .expect(StatusCode::OK);
}

/// The row of `id` as a restored vault holds it: its status and whether a wrapped key is left.
async fn row_of(vault: &TestVault, id: &str) -> (String, usize) {
    let status = vault
        .fetch_text(&format!("SELECT status FROM documents WHERE id = '{id}'"))
        .await;
    let key = vault
        .fetch_blob("SELECT wrapped_key FROM documents WHERE id = $1", id)
        .await;
    (status, key.len())
}

#[tokio::test]
async fn a_restored_backup_does_not_bring_an_erased_document_back() {
    if backend() == Backend::PostgresS3 {
        println!("backup/restore cover the embedded default; PostgreSQL: see the next test");
        return;
    }
    let vault = TestVault::new().await;
    let gone = vault.take_in(CITIZEN_A, "cccd", &pdf(30, 40_000)).await;
    let kept = vault.take_in(CITIZEN_A, "passport", &pdf(31, 40_000)).await;
    let backup = vault.path().join("backup");
    let out = hoso_cli(&vault, &["backup", backup.to_str().unwrap()]).await;
    assert!(out.status.success());
    erase_on_request(&vault, &gone).await;
    let exported = export_ledger(&vault).await;

    // Into a fresh place, database and storage both from the backup, the ledger exported.
    let fresh = tempfile::tempdir().unwrap();
    // The same keys (files or token), a fresh database and storage.
    let mut s = vault.state.settings.clone();
    let empty = hoso::config::Settings::embedded_in(fresh.path());
    s.database_url = empty.database_url;
    s.storage_url = empty.storage_url;
    let restore = |extra: &[&str]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_hoso"));
        command
            .arg("restore")
            .arg(&backup)
            .args(extra)
            .env("HOSO_DATABASE_URL", s.database_url.expose())
            .env("HOSO_STORAGE_URL", s.storage_url.to_string())
            .env("HOSO_KEYS_DIR", &s.keys_dir)
            .env("HOSO_LOG", "warn");
        pkcs11_env(&mut command, &s);
        command.output().unwrap()
    };
    let refused = restore(&[]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--ledger"));
    // keys/ with another erasure-ledger.key: the restore is refused, and removed.
    let key = s.keys_dir.join("erasure-ledger.key");
    let aside = fresh.path().join("ledger-key-aside");
    std::fs::rename(&key, &aside).unwrap();
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut other = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&key)
            .unwrap();
        other.write_all(&[7u8; 32]).unwrap();
    }
    let refused = restore(&["--no-ledger"]);
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{said}");
    assert!(
        said.contains("erasure-ledger.key is not the key that sealed it")
            && said.contains("the restore was removed"),
        "{said}"
    );
    assert!(!fresh.path().join("hoso.db").exists(), "nothing restored");
    std::fs::rename(&aside, &key).unwrap();
    let bad = fresh.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"document_id\": 3}\n").unwrap();
    let refused = restore(&["--ledger", bad.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("line 1"));
    assert!(!fresh.path().join("hoso.db").exists(), "nothing restored");
    let out = restore(&["--ledger", exported.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("re-erased 1 documents"));
    let restored = TestVault::open(fresh, s).await;
    assert_eq!(row_of(&restored, &gone).await, ("erased".into(), 0));
    restored
        .get(&format!("/v1/documents/{gone}/content"), &restored.clerk())
        .await
        .expect_error(StatusCode::GONE, "erased");
    restored
        .get(&format!("/v1/documents/{kept}/content"), &restored.clerk())
        .await
        .expect(StatusCode::OK);

    // The database alone put back beside the live store: start-up reads the live ledger.
    let dir = vault.path();
    let settings = vault.state.settings.clone();
    vault.state.vault.db.pool.close().await;
    let vault_dir = vault.dir;
    for f in ["hoso.db", "hoso.db-wal", "hoso.db-shm"] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    std::fs::copy(backup.join("hoso.db"), dir.join("hoso.db")).unwrap();
    // The checkpoints published after the backup make it a rollback: the vault does not start
    // (and so serves nothing) until the operator moves them aside, as the README says.
    let refused = hoso::app::App::open(settings.clone(), true).await;
    let Err(hoso::app::StartupError::Ledger(why)) = refused else {
        panic!("a restored database beside later checkpoints must not start");
    };
    assert!(why.contains("audit log"), "{why}");
    let published = dir.join("storage/audit/checkpoints");
    let kept = backup.join("storage/audit/checkpoints");
    let aside = dir.join("moved-aside");
    std::fs::create_dir(&aside).unwrap();
    for entry in std::fs::read_dir(&published).unwrap().flatten() {
        if !kept.join(entry.file_name()).exists() {
            std::fs::rename(entry.path(), aside.join(entry.file_name())).unwrap();
        }
    }
    refused_without_the_ledger_key(&settings).await;
    let reopened = TestVault::open(vault_dir, settings).await;
    assert_eq!(row_of(&reopened, &gone).await, ("erased".into(), 0));
    assert!(!contains(
        &reopened.database_bytes(),
        &pdf(30, 40_000)[..32]
    ));
}

#[tokio::test]
async fn a_postgresql_database_restored_from_a_dump_is_re_erased_at_start_up() {
    if backend() != Backend::PostgresS3 {
        println!("the SQLite pair is covered by the backup/restore test above");
        return;
    }
    let vault = TestVault::new().await;
    let gone = vault.take_in(CITIZEN_A, "cccd", &pdf(40, 40_000)).await;
    let dumped_size = vault.count("SELECT seq FROM audit_head").await as u64;
    let url = vault.state.settings.database_url.expose().to_owned();
    let dump = std::process::Command::new("pg_dump")
        .args(["--no-owner", &url])
        .output()
        .unwrap();
    assert!(dump.status.success());
    erase_on_request(&vault, &gone).await;

    // The dump, taken before the erasure, restored into a new database beside the live bucket.
    let (server, _) = url.rsplit_once('/').unwrap();
    let name = format!("hoso_t_{}", uuid::Uuid::now_v7().simple());
    let psql = |db: &str, input: &[u8]| {
        use std::io::Write;
        let mut child = std::process::Command::new("psql")
            .args(["-q", "-v", "ON_ERROR_STOP=1", &format!("{server}/{db}")])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        assert!(child.wait().unwrap().success());
    };
    let exported = export_ledger(&vault).await;
    psql("postgres", format!("CREATE DATABASE {name};").as_bytes());
    psql(&name, &dump.stdout);
    let mut settings = vault.state.settings.clone();
    settings.database_url = format!("{server}/{name}").parse().unwrap();
    // Refused while the checkpoints published after the dump are in the bucket (a rollback);
    // the operator moves them aside (README), and the restored database is re-erased.
    let refused = hoso::app::App::open(settings.clone(), true).await;
    assert!(matches!(refused, Err(hoso::app::StartupError::Ledger(_))));
    let blobs = &vault.state.vault.blobs;
    for key in blobs
        .list_under(hoso::audit::checkpoints::PREFIX)
        .await
        .unwrap()
    {
        if hoso::audit::checkpoints::size_of_key(&key).is_some_and(|n| n > dumped_size) {
            blobs.delete(&key).await.unwrap();
        }
    }
    refused_without_the_ledger_key(&settings).await;
    // The live ledger's record lost as well: `hoso doctor --ledger` (restores at scale, with
    // the database's own tools) re-erases from the exported copy.
    blobs
        .delete(&format!("ledger/erasures/{gone}"))
        .await
        .unwrap();
    let mut doctor = std::process::Command::new(env!("CARGO_BIN_EXE_hoso"));
    doctor
        .args(["doctor", "--ledger", exported.to_str().unwrap()])
        .env("HOSO_DATABASE_URL", settings.database_url.expose())
        .env("HOSO_STORAGE_URL", settings.storage_url.to_string())
        .env("HOSO_KEYS_DIR", &settings.keys_dir)
        .env("HOSO_LOG", "warn");
    pkcs11_env(&mut doctor, &settings);
    let out = doctor.output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("1 documents erased again"),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    // The exported record is the live ledger's again.
    assert!(
        !vault
            .raw_object(&format!("ledger/erasures/{gone}"))
            .await
            .is_empty()
    );
    let dir = tempfile::tempdir().unwrap();
    let restored = TestVault::open(dir, settings).await;
    assert_eq!(row_of(&restored, &gone).await, ("erased".into(), 0));
}

#[tokio::test]
async fn a_lost_ledger_record_is_written_again_from_the_tombstone() {
    let vault = TestVault::new().await;
    let id = vault.take_in(CITIZEN_A, "cccd", &pdf(50, 5_000)).await;
    erase_on_request(&vault, &id).await;
    let key = format!("ledger/erasures/{id}");
    vault.state.vault.blobs.delete(&key).await.unwrap();
    let done =
        hoso::records::erasure::reapply(&vault.state.vault, hoso::records::erasure::Source::Live)
            .await
            .unwrap();
    assert_eq!(done.rewritten, 1);
    let record: serde_json::Value = serde_json::from_slice(&vault.raw_object(&key).await).unwrap();
    assert_eq!(record["reason"], EraseReason::CourtOrder.as_str());
    assert_eq!(record["detail"], "YC-7");
}

/// `hoso retention ledger export` of `vault`'s ledger, into a file in its directory.
async fn export_ledger(vault: &TestVault) -> std::path::PathBuf {
    let exported = vault.path().join("ledger.jsonl");
    let out = hoso_cli(
        vault,
        &["retention", "ledger", "export", exported.to_str().unwrap()],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    exported
}

/// keys/ restored without its `erasure-ledger.key`, beside a database that holds a document
/// whole that the ledger erased: the key made in its place seals none of the ledger's records,
/// and a vault that went on would serve the document. It does not start until the key that
/// sealed them is back (which this puts back).
async fn refused_without_the_ledger_key(settings: &hoso::config::Settings) {
    let key = settings.keys_dir.join("erasure-ledger.key");
    let aside = settings.keys_dir.with_extension("ledger-key-aside");
    std::fs::rename(&key, &aside).unwrap();
    for attempt in ["the key missing", "a new key made in its place"] {
        let refused = hoso::app::App::open(settings.clone(), true).await;
        let Err(hoso::app::StartupError::Ledger(why)) = refused else {
            panic!("a vault started with {attempt}");
        };
        assert!(
            why.contains("erasure-ledger.key is not the key that sealed it"),
            "{attempt}: {why}"
        );
    }
    std::fs::rename(&aside, &key).unwrap();
}

/// Whether document `id` is whole (its key, fields and body there, the fields opening) or fully
/// erased (no key, no fields, no body); anything else is half.
async fn whole_or_erased(vault: &TestVault, id: &str) -> &'static str {
    let (status, key) = row_of(vault, id).await;
    let fields = vault
        .fetch_blob("SELECT sealed_fields FROM documents WHERE id = $1", id)
        .await;
    let body_left = vault.stored_keys().await.iter().any(|k| k.ends_with(id));
    if status == "erased" {
        assert_eq!(
            (key, fields.len(), body_left),
            (0, 0, false),
            "{id} is half erased"
        );
        return "erased";
    }
    assert!(key > 0 && !fields.is_empty(), "{id} lost its key");
    // The fields open with the key (the metadata read); the body's bytes are checked by
    // `doctor` at the end (a revoked document gives no copy).
    let meta = vault
        .get(&format!("/v1/documents/{id}"), &vault.clerk())
        .await;
    meta.expect(StatusCode::OK);
    assert!(body_left, "{id} lost its body");
    "whole"
}

/// Takes in `n` diplomas for citizen A, revoked three days ago (due under a one-day rule).
async fn due_diplomas(vault: &TestVault, seed: u64, n: u64) -> Vec<String> {
    let mut ids = Vec::new();
    for k in 0..n {
        let id = vault
            .take_in(CITIZEN_A, "diploma", &pdf(seed + k, 3_000))
            .await;
        revoke(vault, &id).await;
        ids.push(id);
    }
    let three_days_ago = hoso::db::now_ms() - 3 * DAY_MS;
    vault
        .sql(&format!(
            "UPDATE documents SET status_changed_at = {three_days_ago} WHERE status = 'revoked'"
        ))
        .await;
    ids
}

/// `hoso retention run` on `vault` with `extra` arguments, under a rule that makes diplomas due
/// a day after they stop being current (the rules file written once, in the vault's directory).
fn retention_run(vault: &TestVault, extra: &[&str]) -> std::process::Command {
    let rules = vault.path().join("retention.json");
    if !rules.exists() {
        std::fs::write(
            &rules,
            r#"{"rules": {"diploma": {"after_not_current_days": 1}}}"#,
        )
        .unwrap();
    }
    let s = &vault.state.settings;
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_hoso"));
    command
        .args(["retention", "run"])
        .args(extra)
        .env("HOSO_DATABASE_URL", s.database_url.expose())
        .env("HOSO_STORAGE_URL", s.storage_url.to_string())
        .env("HOSO_KEYS_DIR", &s.keys_dir)
        .env("HOSO_RETENTION_FILE", &rules);
    pkcs11_env(&mut command, s);
    command
}

/// `hoso retention run` as an operator runs it: one run at a time (a lease another holds
/// refuses it, saying why), a dry run lists what is due and erases nothing, the run erases it.
#[tokio::test]
async fn retention_run_on_the_command_line_is_one_at_a_time_and_its_dry_run_erases_nothing() {
    let vault = TestVault::new().await;
    let mut due = due_diplomas(&vault, 900, 2).await;
    due.sort();
    let current = vault.take_in(CITIZEN_A, "diploma", &pdf(910, 3_000)).await;
    let run = |extra: &[&str]| {
        let out = retention_run(&vault, extra)
            .env("HOSO_LOG", "warn")
            .output()
            .unwrap();
        let said = format!(
            "{}\n[{}] {}",
            String::from_utf8_lossy(&out.stdout),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), said)
    };

    let in_ten_minutes = hoso::db::now_ms() + 600_000;
    vault
        .sql(&format!(
            "UPDATE retention_lease SET holder = 'another-server', until_at = {in_ten_minutes}"
        ))
        .await;
    let (ok, said) = run(&[]);
    assert!(!ok, "{said}");
    assert!(
        said.contains("another retention run holds the lease"),
        "{said}"
    );
    for id in &due {
        assert_eq!(
            status(&vault, id).await,
            "revoked",
            "erased under another's lease"
        );
    }
    let holder = vault
        .fetch_text("SELECT holder FROM retention_lease WHERE id = 1")
        .await;
    assert_eq!(holder, "another-server");
    vault.sql("UPDATE retention_lease SET until_at = 0").await;

    let (ok, said) = run(&["--dry-run"]);
    assert!(ok, "{said}");
    for id in &due {
        assert!(
            said.contains(&format!("would erase {id} (diploma)")),
            "{said}"
        );
        assert_eq!(status(&vault, id).await, "revoked");
    }
    assert!(
        said.contains("2 documents past their retention rule: would erase 2, 0 kept"),
        "{said}"
    );
    assert!(!said.contains(&current), "{said}");

    let (ok, said) = run(&[]);
    assert!(ok, "{said}");
    for id in &due {
        assert!(said.contains(&format!("erased {id} (diploma)")), "{said}");
        assert_eq!(row_of(&vault, id).await, ("erased".into(), 0));
    }
    assert!(
        said.contains("2 documents past their retention rule: erased 2, 0 kept"),
        "{said}"
    );
    assert_eq!(
        status(&vault, &current).await,
        "pending",
        "not due, not erased"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_a_retention_run_leaves_every_document_whole_or_fully_erased() {
    let vault = TestVault::new().await;
    let run = || {
        retention_run(&vault, &[])
            .env("HOSO_LOG", "off")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    // How long a run takes here with nothing to erase (starting up), and over one batch: the
    // kills land between the two, while it erases.
    let timed = || {
        let started = std::time::Instant::now();
        assert!(run().wait().unwrap().success());
        started.elapsed().as_millis() as u64
    };
    let start_up = timed();
    let mut ids = due_diplomas(&vault, 100, BATCH).await;
    let span = timed();
    let erasing = span.saturating_sub(start_up).max(4);
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    const BATCH: u64 = 60;
    const ERASED: &str = "SELECT COUNT(*) FROM documents WHERE status = 'erased'";
    const ROUNDS: u64 = 10;
    let (mut kills, mut partial, mut ledger_ahead) = (0, 0, 0);
    for round in 1..=ROUNDS {
        ids.extend(due_diplomas(&vault, 1000 + round * BATCH, BATCH).await);
        let mut child = run();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        // Once its first erasure of this batch shows, the run is killed a random moment later.
        let before = round * BATCH;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while vault.count(ERASED).await as u64 <= before
            && child.try_wait().unwrap().is_none()
            && std::time::Instant::now() < deadline
        {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(
            seed % (erasing / 2).max(2),
        ))
        .await;
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL: no clean-up of any kind
            kills += 1;
        }
        child.wait().unwrap();
        let erased = vault.count(ERASED).await as u64;
        if erased > round * BATCH && erased < (round + 1) * BATCH {
            partial += 1;
        }
        // Killed between an erasure's ledger record and its transaction.
        let records = hoso::records::ledger::erased_ids(&vault.state.vault.blobs)
            .await
            .unwrap()
            .len() as u64;
        ledger_ahead += u64::from(records > erased);
        // The lease of a killed run lapses after ten minutes; the operator's next run here
        // stands in for that wait.
        vault.sql("UPDATE retention_lease SET until_at = 0").await;
        // Before anything else runs, the ledger is re-applied (as serve and doctor do): every
        // document is then whole or fully erased, never half.
        hoso::records::erasure::reapply(&vault.state.vault, hoso::records::erasure::Source::Live)
            .await
            .unwrap();
        for id in &ids {
            whole_or_erased(&vault, id).await;
        }
    }
    let out = run().wait_with_output().unwrap();
    assert!(out.status.success());
    for id in &ids {
        assert_eq!(whole_or_erased(&vault, id).await, "erased");
    }
    let report = hoso::records::maintenance::doctor(&vault.state.vault, |_, _| {})
        .await
        .unwrap();
    assert!(report.healthy(), "{report:?}");
    assert!(
        partial >= 3,
        "only {partial} of {ROUNDS} runs were cut off between erasures (a whole run took {span} ms)"
    );
    println!(
        "{kills} of {ROUNDS} retention runs killed, {partial} between two erasures of their \
         batch, {ledger_ahead} between a ledger record and its transaction (a whole run took \
         {span} ms); {} documents whole or fully erased after each",
        ids.len()
    );
}

#[tokio::test]
async fn the_bucket_or_the_database_alone_cannot_erase_or_unerase_a_document() {
    let vault = TestVault::new().await;
    let planted = vault.take_in(CITIZEN_A, "cccd", &pdf(300, 5_000)).await;
    let marked = vault.take_in(CITIZEN_A, "passport", &pdf(301, 5_000)).await;
    let erased = vault.take_in(CITIZEN_A, "diploma", &pdf(302, 5_000)).await;
    let before = hoso::db::documents::get(&vault.state.vault.db.pool, erased.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    erase_on_request(&vault, &erased).await;

    // Someone with the bucket plants a record (a real one's shape, not the vault's seal).
    let mut forged: serde_json::Value =
        serde_json::from_slice(&vault.raw_object(&format!("ledger/erasures/{erased}")).await)
            .unwrap();
    forged["document_id"] = json!(planted);
    forged["doc_type"] = json!("cccd");
    vault
        .put_raw_object(
            &format!("ledger/erasures/{planted}"),
            serde_json::to_vec(&forged).unwrap(),
        )
        .await;
    // Someone with the database marks a row erased, to have its body deleted for them.
    vault
        .sql(&format!(
            "UPDATE documents SET status = 'erased' WHERE id = '{marked}'"
        ))
        .await;
    let done =
        hoso::records::erasure::reapply(&vault.state.vault, hoso::records::erasure::Source::Live)
            .await
            .unwrap();
    assert_eq!(done.refused.len(), 1, "{done:?}");
    assert_eq!(done.refused[0].to_string(), planted);
    assert!(
        done.erased.is_empty() && done.bodies == 0 && done.rewritten == 0,
        "{done:?}"
    );
    assert_eq!(
        status(&vault, &planted).await,
        "pending",
        "the planted record erased nothing"
    );
    let keys = vault.stored_keys().await;
    assert!(
        keys.iter().any(|k| k.ends_with(&marked)),
        "the marked row's body is kept"
    );
    let report = hoso::records::maintenance::doctor(&vault.state.vault, |_, _| {})
        .await
        .unwrap();
    assert_eq!(
        report
            .erased_outside
            .iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>(),
        vec![marked.clone()],
        "doctor names the row marked erased behind the vault's back"
    );
    let out = hoso_cli(&vault, &["doctor"]).await;
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains(&planted) && said.contains(&marked), "{said}");
    // A vault does not start on a ledger it cannot read whole.
    let refused = hoso::app::App::open(vault.state.settings.clone(), true).await;
    let Err(hoso::app::StartupError::Ledger(why)) = refused else {
        panic!("a vault started on a ledger holding a record it did not seal");
    };
    assert!(why.contains(&planted), "{why}");

    // A rewrap that read the row before its erasure cannot put a key back into the tombstone.
    let mut tx = vault.state.vault.db.begin().await.unwrap();
    let replaced =
        hoso::db::documents::replace_wrapped_key(&mut tx, &before, before.kek_version, &[7u8; 60])
            .await
            .unwrap();
    tx.commit("test").await.unwrap();
    assert!(!replaced);
    assert_eq!(row_of(&vault, &erased).await, ("erased".into(), 0));
}

#[tokio::test]
async fn a_malformed_retention_or_holidays_file_stops_start_up_naming_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("retention.json");
    std::fs::write(&rules, "{\"rules\": {\n  \"cccd\": {\"after_not_current_days\": 30},\n  \"pasport\": {\"after_not_current_days\": 30}\n}}\n").unwrap();
    let holidays = dir.path().join("holidays.json");
    std::fs::write(
        &holidays,
        "{\"holidays\": [\n  \"2026-01-01\",\n  \"2026-02-30\"\n]}\n",
    )
    .unwrap();
    for (file, which, line) in [
        (&rules, "HOSO_RETENTION_FILE", "line 3"),
        (&holidays, "HOSO_HOLIDAYS_FILE", "line 3"),
    ] {
        let mut s = settings(dir.path()).await;
        if which == "HOSO_RETENTION_FILE" {
            s.retention_file = Some(file.clone());
        } else {
            s.holidays_file = Some(file.clone());
        }
        let Err(hoso::app::StartupError::Setting(why)) = hoso::app::App::open(s, true).await else {
            panic!("{which}: a malformed file must stop start-up");
        };
        assert!(why.starts_with(which) && why.contains(line), "{why}");
    }
}
