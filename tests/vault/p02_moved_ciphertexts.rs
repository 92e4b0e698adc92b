//! Promise 2: a body or wrapped key moved to another document does not decrypt.

use axum::http::StatusCode;

use crate::common::*;

#[tokio::test]
async fn a_body_copied_onto_another_document_does_not_decrypt() {
    let vault = TestVault::new().await;
    let scan_a = pdf(10, 5000);
    let scan_b = pdf(11, 5000);
    let a = vault.take_in(CITIZEN_A, "cccd", &scan_a).await;
    let b = vault.take_in(CITIZEN_A, "birth_certificate", &scan_b).await;
    let other_citizen = vault.take_in(CITIZEN_B, "cccd", &pdf(12, 5000)).await;
    for target in [&b, &other_citizen] {
        vault.set_object(target, vault.object(&a).await).await;
        let reply = vault
            .get(&format!("/v1/documents/{target}/content"), &vault.clerk())
            .await;
        reply.expect_error(StatusCode::INTERNAL_SERVER_ERROR, "integrity_error");
        assert!(!contains(&reply.body, &scan_a[..16]));
    }
}

#[tokio::test]
async fn a_wrapped_key_or_sealed_fields_copied_onto_another_document_do_not_decrypt() {
    let vault = TestVault::new().await;
    let a = vault.take_in(CITIZEN_A, "cccd", &pdf(20, 4000)).await;
    let b = vault.take_in(CITIZEN_B, "cccd", &pdf(21, 4000)).await;
    let key_a = vault
        .fetch_blob("SELECT wrapped_key FROM documents WHERE id = $1", &a)
        .await;
    let fields_a = vault
        .fetch_blob("SELECT sealed_fields FROM documents WHERE id = $1", &a)
        .await;
    vault
        .sql_blob(
            "UPDATE documents SET wrapped_key = $1 WHERE id = $2",
            key_a.clone(),
            &b,
        )
        .await;
    let reply = vault
        .get(&format!("/v1/documents/{b}/content"), &vault.clerk())
        .await;
    reply.expect_error(StatusCode::INTERNAL_SERVER_ERROR, "integrity_error");

    // Even moving the key, the fields and the body together fails: all are bound to a's id.
    vault
        .sql_blob(
            "UPDATE documents SET sealed_fields = $1 WHERE id = $2",
            fields_a,
            &b,
        )
        .await;
    vault.set_object(&b, vault.object(&a).await).await;
    vault
        .get(&format!("/v1/documents/{b}/content"), &vault.clerk())
        .await
        .expect_error(StatusCode::INTERNAL_SERVER_ERROR, "integrity_error");
    vault
        .get(&format!("/v1/documents/{b}"), &vault.clerk())
        .await
        .expect_error(StatusCode::INTERNAL_SERVER_ERROR, "integrity_error");

    // Moving a document to another citizen (rewriting its blind index) breaks it the same way.
    let idx_b: String = {
        use sqlx::Row;
        sqlx::query("SELECT citizen_idx FROM documents WHERE id = $1")
            .bind(b.clone())
            .fetch_one(&vault.state.vault.db.pool)
            .await
            .unwrap()
            .get(0)
    };
    vault
        .sql(&format!(
            "UPDATE documents SET citizen_idx = '{idx_b}' WHERE id = '{a}'"
        ))
        .await;
    vault
        .get(&format!("/v1/documents/{a}/content"), &vault.clerk())
        .await
        .expect_error(StatusCode::INTERNAL_SERVER_ERROR, "integrity_error");
}
