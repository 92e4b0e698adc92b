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
