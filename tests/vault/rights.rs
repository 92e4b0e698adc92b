//! The citizen's requests under Law 91/2025: filed by the citizen or at the desk, due in working
//! days, moved on by a clerk, carried out (an erasure with what was kept and why, a restriction
//! that stops grants until lifted, a correction linked to its document), every step logged; and
//! the destruction receipt a citizen can check offline.

use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::common::*;

fn ms(rfc3339: &Value) -> i64 {
    let t = time::OffsetDateTime::parse(
        rfc3339.as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

async fn file(vault: &TestVault, token: &str, nid: &str, body: Value) -> crate::common::Reply {
    vault
        .post(&format!("/v1/citizens/{nid}/requests"), token, body)
        .await
}

async fn update(vault: &TestVault, id: &str, body: Value) -> crate::common::Reply {
    vault
        .post(&format!("/v1/requests/{id}"), &vault.clerk(), body)
        .await
}

#[tokio::test]
async fn a_request_is_due_in_working_days_and_moves_through_its_states() {
    let vault = TestVault::new().await;
    let citizen = vault.citizen(CITIZEN_A);
    let filed = file(&vault, &citizen, CITIZEN_A, json!({"kind": "access"})).await;
    filed.expect(StatusCode::CREATED);
    let q = filed.json();
    assert_eq!(q["state"], "received");
    assert_eq!(q["filed_role"], "citizen");
    // The deadlines are the working days the built-in holidays give (unit tests cover
    // weekends and holidays; here, that the settings reach the register).
    let holidays = hoso::records::calendar::Holidays::load(None).unwrap();
    let received = ms(&q["received_at"]);
    assert_eq!(
        ms(&q["answer_due"]) / 1000,
        holidays.due(received, 2) / 1000
    );
    assert_eq!(ms(&q["due"]) / 1000, holidays.due(received, 15) / 1000);
    let id = q["id"].as_str().unwrap().to_owned();

    // Bad input changes nothing.
    for (token, nid, body, status, code) in [
        (
            citizen.clone(),
            CITIZEN_A,
            json!({"kind": "forget_me"}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            citizen.clone(),
            CITIZEN_B,
            json!({"kind": "access"}),
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
        (
            vault.clerk(),
            CITIZEN_B,
            json!({"kind": "erase"}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            vault.auditor(),
            CITIZEN_B,
            json!({"kind": "erase", "identity_checked": true}),
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
        (
            citizen.clone(),
            "12345",
            json!({"kind": "access"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_national_id",
        ),
    ] {
        file(&vault, &token, nid, body)
            .await
            .expect_error(status, code);
    }
    assert_eq!(vault.count("SELECT COUNT(*) FROM rights_requests").await, 1);
    // At the desk, with the CCCD checked.
    let desk = file(
        &vault,
        &vault.clerk(),
        CITIZEN_B,
        json!({"kind": "provide", "identity_checked": true}),
    )
    .await;
    desk.expect(StatusCode::CREATED);
    assert_eq!(desk.json()["filed_role"], "clerk");

    update(&vault, &id, json!({"state": "extended"}))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_request");
    update(&vault, &id, json!({"state": "in_progress"}))
        .await
        .expect(StatusCode::OK);
    let extended = update(
        &vault,
        &id,
        json!({"state": "extended", "reason": "Cần xác minh với cơ quan khác"}),
    )
    .await;
    extended.expect(StatusCode::OK);
    let moved = ms(&extended.json()["due"]);
    assert_eq!(
        moved / 1000,
        holidays.due(holidays.due(received, 15), 15) / 1000
    );
    update(&vault, &id, json!({"state": "extended", "reason": "again"}))
        .await
        .expect_error(StatusCode::CONFLICT, "conflict");
    update(&vault, &id, json!({"state": "refused"}))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_request");
    update(&vault, &id, json!({"state": "done"}))
        .await
        .expect(StatusCode::OK);
    update(&vault, &id, json!({"state": "in_progress"}))
        .await
        .expect_error(StatusCode::CONFLICT, "conflict");

    // The queue: open requests, the next deadline each still has soonest first (the first
    // answer's until it is given, then the carrying out's); one made overdue shows so, and in
    // /metrics. Ordered by the carrying out alone, the answered one would come first here.
    let desk_id = desk.json()["id"].as_str().unwrap().to_owned();
    let answered = file(
        &vault,
        &vault.clerk(),
        CITIZEN_A,
        json!({"kind": "provide", "identity_checked": true}),
    )
    .await;
    answered.expect(StatusCode::CREATED);
    let answered_id = answered.json()["id"].as_str().unwrap().to_owned();
    update(&vault, &answered_id, json!({"state": "in_progress"}))
        .await
        .expect(StatusCode::OK);
    let soon = hoso::db::now_ms() + 86_400_000;
    vault
        .sql(&format!(
            "UPDATE rights_requests SET answer_due_at = 1000, due_at = {soon} + 1000 \
             WHERE id = '{desk_id}'"
        ))
        .await;
    // The answered one's first-answer deadline, long past, counts no more: not first, not
    // overdue.
    vault
        .sql(&format!(
            "UPDATE rights_requests SET answer_due_at = 500, due_at = {soon} \
             WHERE id = '{answered_id}'"
        ))
        .await;
    let queue = vault.get("/v1/requests", &vault.auditor()).await;
    queue.expect(StatusCode::OK);
    let list = queue.json()["requests"].as_array().unwrap().clone();
    let order: Vec<&str> = list.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(order, [desk_id.as_str(), answered_id.as_str()], "{list:?}");
    assert_eq!(list[0]["overdue"], true);
    assert_eq!(list[1]["overdue"], false);
    let metrics = vault.get("/metrics", &vault.admin()).await;
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    assert!(text.contains("hoso_requests_open 2\n"), "{text}");
    assert!(text.contains("hoso_requests_overdue 1\n"), "{text}");
    for action in ["request.file", "request.update", "request.list"] {
        assert!(
            vault
                .count(&format!(
                    "SELECT COUNT(*) FROM audit_entries WHERE action = '{action}'"
                ))
                .await
                >= 1,
            "{action}"
        );
    }
    // The citizen sees their own, not another's.
    let mine = vault
        .get(&format!("/v1/citizens/{CITIZEN_A}/requests"), &citizen)
        .await;
    let mine = mine.json()["requests"].as_array().unwrap().clone();
    let state_of = |want: &str| {
        mine.iter()
            .find(|r| r["id"] == want)
            .map(|r| r["state"].clone())
    };
    assert_eq!(state_of(&id), Some(json!("done")), "{mine:?}");
    assert_eq!(state_of(&answered_id), Some(json!("in_progress")));
    vault
        .get(&format!("/v1/citizens/{CITIZEN_B}/requests"), &citizen)
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");
}

#[tokio::test]
async fn a_restriction_refuses_grants_and_their_reads_until_it_is_lifted() {
    let vault = TestVault::new().await;
    let id = vault.take_in(CITIZEN_A, "cccd", &pdf(60, 5_000)).await;
    let (_, officer) = vault.grant(CITIZEN_A, &["cccd"], "CB-01", 5).await;
    let content = format!("/v1/documents/{id}/content");
    vault.get(&content, &officer).await.expect(StatusCode::OK);

    let q = file(
        &vault,
        &vault.citizen(CITIZEN_A),
        CITIZEN_A,
        json!({"kind": "withdraw_consent"}),
    )
    .await;
    let request = q.json()["id"].as_str().unwrap().to_owned();
    update(&vault, &request, json!({"state": "done"}))
        .await
        .expect(StatusCode::OK);

    let refused = vault.get(&content, &officer).await;
    refused.expect_error(StatusCode::FORBIDDEN, "restricted");
    assert!(
        refused.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&request)
    );
    vault
        .get(&format!("/v1/citizens/{CITIZEN_A}/documents"), &officer)
        .await
        .expect_error(StatusCode::FORBIDDEN, "restricted");
    let grant = vault
        .post(
            "/v1/grants",
            &vault.clerk(),
            json!({"national_id": CITIZEN_A, "doc_types": ["cccd"], "case_ref": "000.00.31.H40-261124-0002",
                   "purpose": "x", "grantee": "CB-02", "grantee_office": "STP", "ttl_seconds": 60, "max_uses": 1}),
        )
        .await;
    grant.expect_error(StatusCode::FORBIDDEN, "restricted");
    assert_eq!(
        vault
            .count(&format!(
                "SELECT COUNT(*) FROM audit_entries WHERE outcome = 'denied' \
                 AND reason LIKE 'restricted: restriction {request}%'"
            ))
            .await,
        3,
        "each refusal is logged with the restriction"
    );
    // Another citizen's grants are untouched.
    vault.take_in(CITIZEN_B, "cccd", &pdf(61, 5_000)).await;
    vault.grant(CITIZEN_B, &["cccd"], "CB-01", 1).await;

    let lift = format!("/v1/restrictions/{request}/lift");
    vault
        .post(&lift, &vault.auditor(), json!({}))
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");
    vault
        .post(&lift, &vault.clerk(), json!({}))
        .await
        .expect(StatusCode::NO_CONTENT);
    vault
        .post(&lift, &vault.clerk(), json!({}))
        .await
        .expect_error(StatusCode::CONFLICT, "conflict");
    vault.get(&content, &officer).await.expect(StatusCode::OK);
    assert_eq!(vault.count("SELECT COUNT(*) FROM audit_entries WHERE action = 'restriction.lift' AND outcome = 'allowed'").await, 1);
}

#[tokio::test]
async fn an_erasure_request_erases_what_nothing_keeps_and_the_citizen_can_prove_it() {
    let vault = TestVault::with(|s| s.checkpoint_every = 1).await;
    let cccd = vault.take_in(CITIZEN_A, "cccd", &pdf(70, 5_000)).await;
    let land = vault
        .take_in(CITIZEN_A, "land_use_certificate", &pdf(71, 5_000))
        .await;
    let diploma = vault.take_in(CITIZEN_A, "diploma", &pdf(72, 5_000)).await;
    let other = vault
        .take_in(CITIZEN_B, "land_use_certificate", &pdf(73, 5_000))
        .await;
    vault
        .post(
            "/v1/holds",
            &vault.admin(),
            json!({"document_id": diploma, "reason": "Thanh tra", "case_ref": "TT-9"}),
        )
        .await
        .expect(StatusCode::CREATED);
    let q = file(
        &vault,
        &vault.citizen(CITIZEN_A),
        CITIZEN_A,
        json!({"kind": "erase"}),
    )
    .await;
    let request = q.json()["id"].as_str().unwrap().to_owned();
    let done = update(&vault, &request, json!({"state": "done"})).await;
    done.expect(StatusCode::OK);
    let outcome = done.json()["outcome"].clone();
    // The built-in rules keep a current CCCD; land-use certificates have no rule; the hold
    // keeps the diploma.
    assert_eq!(outcome["erased"], json!([land]));
    let kept: Vec<(String, String)> = outcome["kept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["document_id"].as_str().unwrap().to_owned(),
                k["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert!(kept.iter().any(|(id, why)| *id == cccd
        && why.contains("retention rule for cccd")
        && why.contains("while it is current")));
    assert!(
        kept.iter()
            .any(|(id, why)| *id == diploma && why.contains("TT-9"))
    );
    let status = |id: String| {
        let vault = &vault;
        async move {
            vault
                .get(&format!("/v1/documents/{id}"), &vault.clerk())
                .await
                .json()["status"]
                .clone()
        }
    };
    assert_eq!(status(land.clone()).await, "erased");
    assert_eq!(
        status(other.clone()).await,
        "pending",
        "another citizen's is untouched"
    );

    // The destruction receipt: the erasure is in the citizen's access log, with a proof.
    let citizen = vault.citizen(CITIZEN_A);
    let log = vault
        .get(&format!("/v1/citizens/{CITIZEN_A}/access-log"), &citizen)
        .await
        .json();
    let erase = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "document.erase" && e["document_id"] == land.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("the erasure is in the citizen's log: {log}"));
    let seq = erase["seq"].as_i64().unwrap();
    vault.publish_checkpoint().await;
    let proof = vault
        .get(
            &format!("/v1/citizens/{CITIZEN_A}/access-log/{seq}/proof"),
            &citizen,
        )
        .await;
    proof.expect(StatusCode::OK);
    let dir = tempfile::tempdir().unwrap();
    let file_path = dir.path().join("destruction.proof");
    std::fs::write(&file_path, &proof.body).unwrap();
    let key = String::from_utf8(hoso_cli(&vault, &["audit", "key"]).await.stdout)
        .unwrap()
        .trim()
        .to_owned();
    let out = hoso_cli(
        &vault,
        &[
            "audit",
            "verify-receipt",
            "--proof",
            file_path.to_str().unwrap(),
            "--key",
            &key,
        ],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // And by Go's sumdb/tlog, which nobody here wrote.
    let note =
        String::from_utf8(vault.get("/v1/audit/checkpoint", "").await.body.to_vec()).unwrap();
    let input = crate::interop::tlog_input(&vault, &key, (&note, &note), seq, json!([])).await;
    let (ok, said) = crate::interop::go_check(&input);
    assert!(
        ok && said == "ok",
        "Go's tlog refused the destruction receipt: {said}"
    );
}

#[tokio::test]
async fn a_correction_is_done_by_naming_the_document_that_supersedes_the_old_one() {
    let vault = TestVault::new().await;
    let old = vault.take_in(CITIZEN_A, "cccd", &pdf(80, 5_000)).await;
    let q = file(
        &vault,
        &vault.citizen(CITIZEN_A),
        CITIZEN_A,
        json!({"kind": "correct", "document_id": old}),
    )
    .await;
    q.expect(StatusCode::CREATED);
    let request = q.json()["id"].as_str().unwrap().to_owned();
    update(&vault, &request, json!({"state": "done"}))
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_request");
    update(
        &vault,
        &request,
        json!({"state": "done", "document_id": old}),
    )
    .await
    .expect_error(StatusCode::BAD_REQUEST, "invalid_request");
    let mut corrected = metadata("cccd");
    corrected["supersedes"] = json!(old);
    let new = vault
        .intake(&vault.clerk(), CITIZEN_A, &corrected, &pdf(81, 5_000))
        .await;
    let new = new.json()["id"].as_str().unwrap().to_owned();
    update(
        &vault,
        &request,
        json!({"state": "done", "document_id": new}),
    )
    .await
    .expect(StatusCode::OK);
    assert_eq!(
        vault
            .count(&format!(
                "SELECT COUNT(*) FROM audit_entries WHERE action = 'request.update' AND document_id = '{new}' AND case_ref = '{request}'"
            ))
            .await,
        1
    );
    // A request about another citizen's document is not theirs to file.
    let foreign = vault.take_in(CITIZEN_B, "cccd", &pdf(82, 5_000)).await;
    file(
        &vault,
        &vault.citizen(CITIZEN_A),
        CITIZEN_A,
        json!({"kind": "erase", "document_id": foreign}),
    )
    .await
    .expect_error(StatusCode::NOT_FOUND, "not_found");
}

/// Checks an export with Python's zipfile and `cryptography` (nobody here wrote either): the
/// manifest's Ed25519 signature by the JWKS key it names, and every file's SHA-256 and size.
fn python_check(zip: &std::path::Path, jwks: &std::path::Path) -> (bool, String) {
    const SCRIPT: &str = r#"
import base64, hashlib, json, sys, zipfile
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
def b64(s): return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
z = zipfile.ZipFile(sys.argv[1])
signed = z.read("manifest.json")
sig = json.loads(z.read("manifest.sig"))
key = next(k for k in json.load(open(sys.argv[2]))["keys"] if k["kid"] == sig["kid"])
assert sig["kid"].startswith("export-"), sig["kid"]
Ed25519PublicKey.from_public_bytes(b64(key["x"])).verify(b64(sig["signature"]), signed)
manifest = json.loads(signed)
names = {f["name"] for f in manifest["files"]}
assert names == set(z.namelist()) - {"manifest.json", "manifest.sig"}, names
for f in manifest["files"]:
    data = z.read(f["name"])
    assert hashlib.sha256(data).hexdigest() == f["sha256"] and len(data) == f["size"], f["name"]
print("ok")
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", SCRIPT])
        .arg(zip)
        .arg(jwks)
        .output()
        .expect("python3 runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success() && said.trim() == "ok", said)
}

/// The export `bytes` with `documents.json` changed, as a valid archive (Python rewrites it).
fn edited(bytes: &[u8], dir: &std::path::Path) -> std::path::PathBuf {
    let from = dir.join("original.zip");
    let to = dir.join("edited.zip");
    std::fs::write(&from, bytes).unwrap();
    let script = r#"
import sys, zipfile
src, dst = zipfile.ZipFile(sys.argv[1]), zipfile.ZipFile(sys.argv[2], "w")
for name in src.namelist():
    data = src.read(name)
    if name == "documents.json":
        data = data.replace(b"pending", b"verified")
    dst.writestr(name, data)
dst.close()
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(&from)
        .arg(&to)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    to
}

#[tokio::test]
async fn an_export_verifies_offline_and_an_edited_one_does_not() {
    let vault = TestVault::with(|s| s.checkpoint_every = 1).await;
    let scan = pdf(90, 150_000);
    let cccd = vault.take_in(CITIZEN_A, "cccd", &scan).await;
    vault
        .post(
            &format!("/v1/documents/{cccd}/verify"),
            &vault.clerk(),
            json!({}),
        )
        .await
        .expect(StatusCode::OK);
    let passport = vault.take_in(CITIZEN_A, "passport", &pdf(91, 2_000)).await;
    let (_, officer) = vault.grant(CITIZEN_A, &["cccd"], "CB-03", 2).await;
    vault
        .get(&format!("/v1/documents/{cccd}/content"), &officer)
        .await
        .expect(StatusCode::OK);
    vault.publish_checkpoint().await;

    let path = format!("/v1/citizens/{CITIZEN_A}/export?scans=true");
    let reply = vault.get(&path, &vault.citizen(CITIZEN_A)).await;
    reply.expect(StatusCode::OK);
    assert_eq!(reply.headers["content-type"], "application/zip");
    let files = hoso::zip::read(&reply.body).unwrap();
    let file = |name: &str| {
        files
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, d)| d.clone())
            .unwrap_or_else(|| panic!("{name}"))
    };
    assert_eq!(file(&format!("scans/{cccd}.pdf")), scan, "the scan itself");
    assert!(
        files
            .iter()
            .any(|(n, _)| *n == format!("scans/{cccd}.attestation.jws"))
    );
    assert!(
        files
            .iter()
            .any(|(n, _)| *n == format!("scans/{passport}.pdf"))
    );
    let log: Value = serde_json::from_slice(&file("access-log.json")).unwrap();
    let read = log
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["entry"]["action"] == "document.content")
        .unwrap();
    assert!(
        read["receipt"]
            .as_str()
            .unwrap()
            .starts_with("c2sp.org/tlog-proof@v1\n"),
        "{read}"
    );

    let dir = tempfile::tempdir().unwrap();
    let zip = dir.path().join("export.zip");
    std::fs::write(&zip, &reply.body).unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, &vault.get("/.well-known/jwks.json", "").await.body).unwrap();
    let verify = |zip: &std::path::Path| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_hoso"))
            .arg("verify-export")
            .arg(zip)
            .arg("--jwks")
            .arg(&jwks)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, said) = verify(&zip);
    assert_eq!(code, Some(0), "{said}");
    assert!(said.starts_with("VERIFIED"), "{said}");
    let (ok, said) = python_check(&zip, &jwks);
    assert!(ok, "Python's check of the export: {said}");

    let changed = edited(&reply.body, dir.path());
    let (code, said) = verify(&changed);
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains("documents.json is NOT as the signed manifest says"),
        "{said}"
    );
    let (ok, said) = python_check(&changed, &jwks);
    assert!(!ok && said.contains("documents.json"), "{said}");

    // A clerk exports only to fulfil an open access or provide request; another citizen never.
    let clerk_path = format!("/v1/citizens/{CITIZEN_A}/export");
    vault
        .get(&clerk_path, &vault.clerk())
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");
    let q = file_request(&vault, json!({"kind": "provide", "identity_checked": true})).await;
    vault
        .get(&format!("{clerk_path}?request={q}"), &vault.clerk())
        .await
        .expect(StatusCode::OK);
    vault
        .get(&clerk_path, &vault.citizen(CITIZEN_B))
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(
        vault.count("SELECT COUNT(*) FROM audit_entries WHERE action = 'citizen.export' AND outcome = 'allowed'").await,
        2
    );
}

/// A request filed at the desk for citizen A; its id.
async fn file_request(vault: &TestVault, body: Value) -> String {
    let reply = file(vault, &vault.clerk(), CITIZEN_A, body).await;
    reply.expect(StatusCode::CREATED);
    reply.json()["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn an_erasure_filed_at_the_desk_is_carried_out_by_another_clerk() {
    let vault = TestVault::new().await;
    let id = vault
        .take_in(CITIZEN_A, "land_use_certificate", &pdf(85, 5_000))
        .await;
    let request = file_request(&vault, json!({"kind": "erase", "identity_checked": true})).await;
    // The clerk who filed it (the test's clerk) may not carry it out; the refusal is logged.
    update(&vault, &request, json!({"state": "done"}))
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(
        vault
            .count(&format!(
                "SELECT COUNT(*) FROM audit_entries WHERE action = 'request.update' \
                 AND outcome = 'denied' AND case_ref = '{request}'"
            ))
            .await,
        1
    );
    let other = vault.token(hoso::domain::Role::Clerk, "CB-0099", Some("UBND-HAICHAU"));
    let done = vault
        .post(
            &format!("/v1/requests/{request}"),
            &other,
            json!({"state": "done"}),
        )
        .await;
    done.expect(StatusCode::OK);
    assert_eq!(done.json()["outcome"]["erased"], json!([id]));
}
