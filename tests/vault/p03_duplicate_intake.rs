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

/// Intakes arriving together are committed together (one transaction of the log writer): the
/// duplicate check still sees the others, and one refused beside them spoils none.
#[tokio::test]
async fn the_same_scan_taken_in_at_once_is_stored_once_and_a_refusal_beside_it_spoils_nothing() {
    let vault = TestVault::new().await;
    let scan = pdf(32, 70_000);
    let mut wrong_target = metadata("cccd");
    wrong_target["supersedes"] = serde_json::json!(uuid::Uuid::now_v7().to_string());
    let clerk = vault.clerk();
    let cccd = metadata("cccd");
    let (scan_33, scan_34) = (pdf(33, 70_000), pdf(34, 70_000));
    let same = (0..8).map(|_| vault.intake(&clerk, CITIZEN_A, &cccd, &scan));
    let (same, refused, other) = tokio::join!(
        futures_util::future::join_all(same),
        vault.intake(&clerk, CITIZEN_A, &wrong_target, &scan_33),
        vault.intake(&clerk, CITIZEN_B, &cccd, &scan_34),
    );
    let created: Vec<_> = same
        .iter()
        .filter(|r| r.status == StatusCode::CREATED)
        .collect();
    assert_eq!(created.len(), 1, "one of the eight stores the scan");
    for reply in &same {
        assert!(
            matches!(reply.status, StatusCode::CREATED | StatusCode::OK),
            "{} {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        );
        assert_eq!(reply.json()["id"], created[0].json()["id"]);
    }
    refused.expect_error(StatusCode::NOT_FOUND, "not_found");
    other.expect(StatusCode::CREATED);

    assert_eq!(vault.count("SELECT COUNT(*) FROM documents").await, 2);
    assert_eq!(vault.count("SELECT COUNT(*) FROM intake_intents").await, 0);
    assert_eq!(
        vault.stored_keys().await.len(),
        2,
        "the others' objects are gone"
    );
    let logged = |outcome: &str, reason: &str| {
        format!(
            "SELECT COUNT(*) FROM audit_entries WHERE action = 'document.intake' \
             AND outcome = '{outcome}' AND reason {reason}"
        )
    };
    assert_eq!(vault.count(&logged("allowed", "IS NULL")).await, 2);
    assert_eq!(vault.count(&logged("allowed", "= 'duplicate'")).await, 7);
    assert_eq!(vault.count(&logged("denied", "= 'not_found'")).await, 1);
    let verified = hoso::records::oversight::verify_all(&vault.state.vault, None)
        .await
        .unwrap();
    assert!(verified.ok, "{verified:?}");
}
