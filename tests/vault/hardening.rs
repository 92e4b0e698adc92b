//! Holes found by attacking the running vault, each closed and kept closed here.

use axum::http::StatusCode;
use serde_json::json;

use crate::common::*;

fn entries(action: &str) -> String {
    format!("SELECT COUNT(*) FROM audit_entries WHERE action = '{action}'")
}

#[tokio::test]
async fn verifying_a_verified_document_again_is_logged_first_and_fails_closed() {
    let vault = TestVault::new().await;
    let id = vault.take_in(CITIZEN_A, "cccd", &pdf(1, 4000)).await;
    let path = format!("/v1/documents/{id}/verify");
    vault
        .post(&path, &vault.clerk(), json!({}))
        .await
        .expect(StatusCode::OK);
    let before = vault.count(&entries("document.verify")).await;
    // The answer carries the holder's name and number: it is logged like any read.
    vault
        .post(&path, &vault.clerk(), json!({}))
        .await
        .expect(StatusCode::OK);
    assert_eq!(vault.count(&entries("document.verify")).await, before + 1);
    vault.break_audit_log().await;
    vault
        .post(&path, &vault.clerk(), json!({}))
        .await
        .expect_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    vault.mend_audit_log().await;
}

#[tokio::test]
async fn a_revoke_answers_with_the_status_only_and_a_repeat_is_logged() {
    let vault = TestVault::new().await;
    let id = vault.take_in(CITIZEN_A, "cccd", &pdf(2, 4000)).await;
    let path = format!("/v1/documents/{id}/revoke");
    for _ in 0..2 {
        let reply = vault.post(&path, &vault.admin(), json!({})).await;
        reply.expect(StatusCode::OK);
        assert_eq!(reply.json(), json!({"id": id, "status": "revoked"}));
        assert!(!String::from_utf8_lossy(&reply.body).contains("holder_name"));
    }
    assert_eq!(vault.count(&entries("document.revoke")).await, 2);
    vault.break_audit_log().await;
    vault
        .post(&path, &vault.clerk(), json!({}))
        .await
        .expect_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    vault.mend_audit_log().await;
}

#[tokio::test]
async fn only_a_document_of_the_same_type_supersedes() {
    let vault = TestVault::new().await;
    let cccd = vault.take_in(CITIZEN_A, "cccd", &pdf(3, 4000)).await;
    let mut meta = metadata("diploma");
    meta["supersedes"] = json!(cccd);
    vault
        .intake(&vault.clerk(), CITIZEN_A, &meta, &pdf(4, 4000))
        .await
        .expect_error(StatusCode::CONFLICT, "conflict");
    let doc = vault
        .get(&format!("/v1/documents/{cccd}"), &vault.clerk())
        .await;
    assert_eq!(doc.json()["status"], "pending", "the CCCD is still current");
    assert_eq!(vault.count("SELECT COUNT(*) FROM documents").await, 1);
}

fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn hoso_in(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_hoso"))
        .args(args)
        .env(
            "HOSO_DATABASE_URL",
            format!("sqlite://{}", dir.join("hoso.db").display()),
        )
        .env(
            "HOSO_STORAGE_URL",
            format!("file://{}", dir.join("storage").display()),
        )
        .env("HOSO_KEYS_DIR", dir.join("keys"))
        .env("HOSO_LOG", "warn")
        .output()
        .unwrap()
}

#[test]
fn what_hoso_creates_is_for_its_own_user_only_and_loose_key_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = hoso_in(dir.path(), &["init"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(mode(&dir.path().join("hoso.db")), 0o600);
    assert_eq!(mode(&dir.path().join("storage")), 0o700);
    assert_eq!(mode(&dir.path().join("keys")), 0o700);
    for entry in std::fs::read_dir(dir.path().join("keys")).unwrap() {
        assert_eq!(mode(&entry.unwrap().path()), 0o600);
    }
    for wal in ["hoso.db-wal", "hoso.db-shm"] {
        let path = dir.path().join(wal);
        if path.exists() {
            assert_eq!(mode(&path), 0o600, "{wal}");
        }
    }

    // A keys directory opened up by hand is tightened; a key file others can read is refused.
    use std::os::unix::fs::PermissionsExt;
    let set = |p: &std::path::Path, m| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
    };
    set(&dir.path().join("keys"), 0o755);
    set(&dir.path().join("hoso.db"), 0o644);
    let out = hoso_in(dir.path(), &["init"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(mode(&dir.path().join("keys")), 0o700);
    assert_eq!(mode(&dir.path().join("hoso.db")), 0o600);
    let key = dir.path().join("keys").join("token-signing.p8");
    set(&key, 0o644);
    let out = hoso_in(dir.path(), &["init"]);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("token-signing.p8") && said.contains("0600"),
        "{said}"
    );
}

#[tokio::test]
async fn copies_beyond_the_memory_budget_stream_and_arrive_whole() {
    let vault = TestVault::with(|s| s.read_memory_bytes = 3 * 1024 * 1024).await;
    let scan = pdf(9, 2 * 1024 * 1024 + 123);
    let id = vault.take_in(CITIZEN_A, "cccd", &scan).await;
    let path = format!("/v1/documents/{id}/content");
    let clerk = vault.clerk();
    // One fits the budget, the others stream; every copy is the scan, byte for byte.
    let replies = futures_util::future::join_all((0..6).map(|_| vault.get(&path, &clerk))).await;
    for reply in replies {
        reply.expect(StatusCode::OK);
        assert_eq!(reply.body.as_ref(), scan.as_slice());
    }
    assert_eq!(
        vault.state.vault.copy_buffers.lent(),
        0,
        "every buffer is back (kept within the budget) once the copies are gone"
    );
}

/// 140 clients that open a connection, send half a request line and hang, against a vault
/// allowed 128 open files: with a header-read timeout and a connection cap it keeps answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_open_connections_cannot_starve_the_vault() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let vault = TestVault::new().await;
    let s = &vault.state.settings;
    let addr = crate::processes::free_port();
    let hoso = env!("CARGO_BIN_EXE_hoso");
    let child = std::process::Command::new("sh")
        .args(["-c", &format!("ulimit -n 128 && exec {hoso} serve")])
        .env("HOSO_DATABASE_URL", s.database_url.expose())
        .env("HOSO_STORAGE_URL", s.storage_url.to_string())
        .env("HOSO_KEYS_DIR", &s.keys_dir)
        .env("HOSO_LISTEN", addr.to_string())
        .env("HOSO_LOG", "error")
        .env("HOSO_HEADER_READ_TIMEOUT_SECONDS", "1")
        .env("HOSO_IDLE_TIMEOUT_SECONDS", "2")
        .env("HOSO_MAX_CONNECTIONS", "64")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _serving = crate::processes::Fleet(vec![(child, addr)]);
    let healthz = || async {
        crate::processes::call(addr, "GET", "/healthz", None, None)
            .await
            .map(|(status, _)| status)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !matches!(healthz().await, Ok(200)) {
        assert!(
            std::time::Instant::now() < deadline,
            "hoso serve did not start"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // A peer on the same machine (a reverse proxy makes every client look so) needs a token
    // for /metrics like anyone.
    let (status, _) = crate::processes::call(addr, "GET", "/metrics", None, None)
        .await
        .unwrap();
    assert_eq!(status, 401, "/metrics from loopback without a token");

    let mut hanging = Vec::new();
    for _ in 0..140 {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(b"GET /healthz HTT").await.unwrap();
        hanging.push(stream);
    }
    let asked = std::time::Instant::now();
    let answer = tokio::time::timeout(std::time::Duration::from_secs(15), healthz()).await;
    let waited = asked.elapsed();
    assert!(
        matches!(answer, Ok(Ok(200))),
        "/healthz answered {answer:?} with 140 clients hanging"
    );
    println!("/healthz answered in {waited:?} with 140 half-open connections held");

    // The hanging clients were cut off; so is a keep-alive connection left idle (waiting for
    // the next request's headers is a header read too).
    let mut cut = 0;
    for mut stream in hanging {
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut buf));
        if matches!(read.await, Ok(Ok(_) | Err(_))) {
            cut += 1;
        }
    }
    assert_eq!(
        cut, 140,
        "every half-open connection is closed by the server"
    );
    let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: hoso\r\n\r\n")
        .await
        .unwrap();
    let mut reply = vec![0u8; 4096];
    let n = idle.read(&mut reply).await.unwrap();
    assert!(String::from_utf8_lossy(&reply[..n]).starts_with("HTTP/1.1 200"));
    let closed = tokio::time::timeout(std::time::Duration::from_secs(10), idle.read(&mut reply))
        .await
        .expect("the idle connection is closed by the server");
    assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
}

#[tokio::test]
async fn a_json_body_over_its_limit_is_too_large_not_malformed() {
    let vault = TestVault::new().await;
    let purpose = "x".repeat(3 * 1024 * 1024);
    let reply = vault
        .post("/v1/grants", &vault.clerk(), json!({ "purpose": purpose }))
        .await;
    reply.expect_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
}

#[tokio::test]
async fn a_file_too_short_to_be_a_scan_leaves_no_intent_behind() {
    let vault = TestVault::new().await;
    vault
        .intake(&vault.clerk(), CITIZEN_A, &metadata("cccd"), b"%PD")
        .await
        .expect_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    assert_eq!(vault.count("SELECT COUNT(*) FROM intake_intents").await, 0);
    assert!(vault.stored_keys().await.is_empty());
}

#[tokio::test]
async fn a_row_relabelled_in_the_database_fails_closed_instead_of_falling_into_a_grant() {
    let vault = TestVault::new().await;
    let passport = vault.take_in(CITIZEN_A, "passport", &pdf(11, 5000)).await;
    let (_, officer) = vault.grant(CITIZEN_A, &["cccd"], "officer.binh", 5).await;
    vault
        .get(&format!("/v1/documents/{passport}/content"), &officer)
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    // An insider relabels the passport as a CCCD.
    vault
        .sql(&format!(
            "UPDATE documents SET doc_type = 'cccd' WHERE id = '{passport}'"
        ))
        .await;
    let reply = vault
        .get(&format!("/v1/documents/{passport}/content"), &officer)
        .await;
    reply.expect_error(StatusCode::INTERNAL_SERVER_ERROR, "integrity_error");
    assert!(!contains(&reply.body, b"%PDF"), "not one byte of the scan");
    vault
        .get(&format!("/v1/documents/{passport}"), &officer)
        .await
        .expect_error(StatusCode::INTERNAL_SERVER_ERROR, "integrity_error");
}

#[tokio::test]
async fn the_citizens_access_log_names_the_officers_office() {
    let vault = TestVault::new().await;
    let id = vault.take_in(CITIZEN_A, "cccd", &pdf(12, 5000)).await;
    let (_, officer) = vault.grant(CITIZEN_A, &["cccd"], "officer.binh", 2).await;
    vault
        .get(&format!("/v1/documents/{id}/content"), &officer)
        .await
        .expect(StatusCode::OK);
    vault
        .get(&format!("/v1/citizens/{CITIZEN_A}/documents"), &officer)
        .await
        .expect(StatusCode::OK);
    let log = vault
        .get(
            &format!("/v1/citizens/{CITIZEN_A}/access-log"),
            &vault.citizen(CITIZEN_A),
        )
        .await;
    log.expect(StatusCode::OK);
    let reads: Vec<_> = log.json()["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actor"] == "officer.binh")
        .cloned()
        .collect();
    assert_eq!(reads.len(), 2, "{reads:?}");
    for read in reads {
        assert_eq!(read["office"], "STP-DANANG", "{read}");
    }
}

#[tokio::test]
async fn a_grant_names_the_officers_office() {
    let vault = TestVault::new().await;
    let reply = vault
        .post(
            "/v1/grants",
            &vault.clerk(),
            json!({
                "national_id": CITIZEN_A, "doc_types": ["cccd"], "case_ref": "000.00.31.H40-261201-0002",
                "purpose": "p", "grantee": "officer.binh", "ttl_seconds": 60, "max_uses": 1,
            }),
        )
        .await;
    reply.expect_error(StatusCode::BAD_REQUEST, "invalid_request");
}

#[tokio::test]
async fn issuing_a_token_is_logged_and_staff_tokens_name_an_office() {
    let vault = TestVault::new().await;
    let refused = hoso_cli(
        &vault,
        &["token", "issue", "--role", "clerk", "--sub", "lan"],
    )
    .await;
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--office"));
    let out = hoso_cli(
        &vault,
        &[
            "token",
            "issue",
            "--role",
            "clerk",
            "--sub",
            "lan",
            "--office",
            "UBND-HAICHAU",
        ],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap();
    assert_eq!(token.trim().lines().count(), 1, "only the token on stdout");
    vault
        .get(&format!("/v1/citizens/{CITIZEN_A}/documents"), token.trim())
        .await
        .expect(StatusCode::OK);
    let out = hoso_cli(
        &vault,
        &["token", "issue", "--role", "citizen", "--sub", CITIZEN_A],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(vault.count(&entries("token.issue")).await, 2);
    assert_eq!(
        vault
            .count(&format!(
                "SELECT COUNT(*) FROM audit_entries WHERE action = 'token.issue' \
                 AND citizen_idx IS NOT NULL AND reason NOT LIKE '%{CITIZEN_A}%'"
            ))
            .await,
        1,
        "the citizen's token is logged by blind index, never by number"
    );
}

#[tokio::test]
async fn revoking_a_token_is_logged_with_its_jti_and_the_citizen_by_blind_index() {
    let vault = TestVault::new().await;
    let clerk = vault.clerk();
    let citizen = vault.citizen(CITIZEN_A);
    for token in [&clerk, &citizen] {
        let out = hoso_cli(&vault, &["token", "revoke", token]).await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(vault.count(&entries("token.revoke")).await, 2);
    let logged = |condition: &str| {
        format!(
            "SELECT COUNT(*) FROM audit_entries WHERE action = 'token.revoke' AND actor = \
             'hoso-cli' AND role = 'admin' AND reason LIKE '%jti %' AND {condition}"
        )
    };
    assert_eq!(
        vault
            .count(&logged(
                "citizen_idx IS NULL AND reason LIKE 'clerk token for %'"
            ))
            .await,
        1
    );
    assert_eq!(
        vault
            .count(&logged(&format!(
                "citizen_idx IS NOT NULL AND reason NOT LIKE '%{CITIZEN_A}%'"
            )))
            .await,
        1,
        "the citizen's revoked token is logged by blind index, never by number"
    );
    let report = vault.get("/v1/audit/verify", &vault.auditor()).await;
    report.expect(StatusCode::OK);
    assert_eq!(report.json()["ok"], true);
}

#[tokio::test]
async fn a_restore_refuses_a_backup_holding_links() {
    if backend() != Backend::SqliteLocal {
        // Backup and restore cover the embedded default; the PostgreSQL pair has its own tools.
        println!("backup/restore cover the embedded default: nothing to test on this pair");
        return;
    }
    let vault = TestVault::new().await;
    vault.take_in(CITIZEN_A, "cccd", &pdf(13, 5000)).await;
    let backup = vault.path().join("backup");
    let out = hoso_cli(&vault, &["backup", backup.to_str().unwrap()]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = vault.state.settings.keys_dir.join("token-signing.p8");
    std::os::unix::fs::symlink(&key, backup.join("storage").join("bodies-key")).unwrap();

    let target = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hoso"))
        .args(["restore", backup.to_str().unwrap(), "--no-ledger"])
        .env(
            "HOSO_DATABASE_URL",
            format!("sqlite://{}", target.path().join("hoso.db").display()),
        )
        .env(
            "HOSO_STORAGE_URL",
            format!("file://{}", target.path().join("storage").display()),
        )
        .env("HOSO_KEYS_DIR", target.path().join("keys"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing to restore"));
    assert!(!target.path().join("hoso.db").exists(), "nothing restored");
}

#[tokio::test]
async fn a_flood_of_refused_requests_cannot_grow_the_log_without_bound() {
    let vault = TestVault::with(|s| s.refusals_per_minute = 5).await;
    let auditor = vault.auditor();
    let path = format!("/v1/citizens/{CITIZEN_A}/documents");
    let mut statuses = Vec::new();
    for _ in 0..30 {
        statuses.push(vault.get(&path, &auditor).await.status);
    }
    assert!(
        statuses[..5].iter().all(|s| *s == StatusCode::FORBIDDEN),
        "{statuses:?}"
    );
    assert!(
        statuses[5..]
            .iter()
            .all(|s| *s == StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    let logged = vault
        .count("SELECT COUNT(*) FROM audit_entries WHERE actor = 'auditor.minh'")
        .await;
    assert_eq!(
        logged, 6,
        "five refusals and one note that the actor is limited"
    );
    assert_eq!(vault.count(&entries("refusals.limited")).await, 1);
    // Others are not limited by one actor's flood.
    vault
        .get(&path, &vault.clerk())
        .await
        .expect(StatusCode::OK);
}
