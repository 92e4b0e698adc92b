//! Promise 3: the same scan taken in twice encrypts differently (fresh key and nonce) but is
//! stored once.

use axum::http::StatusCode;

use crate::common::*;

#[tokio::test]
async fn the_same_scan_for_the_same_citizen_and_type_is_stored_once() {
    let vault = TestVault::new().await;
    let scan = pdf(30, 70_000);
    let first = vault
        .intake(&vault.clerk(), CITIZEN_A, &metadata("cccd"), &scan)
        .await;
    first.expect(StatusCode::CREATED);
    let again = vault
        .intake(&vault.clerk(), CITIZEN_A, &metadata("cccd"), &scan)
        .await;
    again.expect(StatusCode::OK);
    assert_eq!(first.json()["id"], again.json()["id"]);
    let keys = vault.stored_keys().await;
    assert_eq!(keys.len(), 1, "one object: {keys:?}");
    assert_eq!(vault.count("SELECT COUNT(*) FROM documents").await, 1);
    assert_eq!(vault.count("SELECT COUNT(*) FROM intake_intents").await, 0);
}

#[tokio::test]
async fn the_same_scan_encrypts_differently_each_time_it_is_stored() {
    let vault = TestVault::new().await;
    let scan = pdf(31, 70_000);
    let a = vault.take_in(CITIZEN_A, "cccd", &scan).await;
    let b = vault.take_in(CITIZEN_B, "cccd", &scan).await;
    // Revoke and take in again for the same citizen and type: a new document, new ciphertext.
    vault
        .post(
            &format!("/v1/documents/{a}/revoke"),
            &vault.clerk(),
            serde_json::json!({}),
        )
        .await
        .expect(StatusCode::OK);
    let c = vault.take_in(CITIZEN_A, "cccd", &scan).await;
    let bodies = [
        vault.object(&a).await,
        vault.object(&b).await,
        vault.object(&c).await,
    ];
    assert_ne!(bodies[0], bodies[1]);
    assert_ne!(bodies[0], bodies[2]);
    assert_ne!(bodies[0][9..16], bodies[2][9..16], "fresh nonce prefix");
    let keys: Vec<Vec<u8>> = futures_util::future::join_all(
        [&a, &b, &c]
            .iter()
            .map(|id| vault.fetch_blob("SELECT wrapped_key FROM documents WHERE id = $1", id)),
    )
    .await;
    assert_ne!(keys[0], keys[2]);
    for id in [&a, &b, &c] {
        let copy = vault
            .get(&format!("/v1/documents/{id}/content"), &vault.clerk())
            .await;
        if id == &a {
            copy.expect_error(StatusCode::CONFLICT, "conflict");
        } else {
            assert_eq!(copy.body.as_ref(), scan.as_slice());
        }
    }
}
