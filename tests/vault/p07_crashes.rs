//! Promise 7: a crash at any instant of an intake leaves no row pointing to a missing object;
//! leftover objects are swept; a retried intake does not duplicate.

use axum::http::StatusCode;
use hoso::config::FaultPoint;

use crate::common::*;

/// Every document row's object exists and decrypts to its recorded digest.
async fn every_row_reads(vault: &TestVault) -> usize {
    use sqlx::Row;
    let rows = sqlx::query("SELECT id, sha256 FROM documents")
        .fetch_all(&vault.state.vault.db.pool)
        .await
        .unwrap();
    for row in &rows {
        let id: String = row.get(0);
        let sha: String = row.get(1);
        let copy = vault
            .get(&format!("/v1/documents/{id}/content"), &vault.clerk())
            .await;
        copy.expect(StatusCode::OK);
        assert_eq!(hex::encode(hoso::crypto::sha256(&copy.body)), sha);
    }
    rows.len()
}

#[tokio::test]
async fn a_crash_at_any_point_of_an_intake_leaves_no_dangling_row_and_a_retry_stores_one_document()
{
    let scan = pdf(70, 3 * 65_536 + 10);
    for fault in [
        FaultPoint::BeforeObject,
        FaultPoint::MidObject,
        FaultPoint::AfterObject,
        FaultPoint::BeforeCommit,
    ] {
        // A big body makes MidObject fire after part of it has reached storage.
        let scan = if fault == FaultPoint::MidObject {
            pdf(71, 20 * 1024 * 1024)
        } else {
            scan.clone()
        };
        let vault = TestVault::with(|s| s.test_fault = Some(fault)).await;
        assert_eq!(vault.fault(), Some(fault));
        let reply = vault
            .intake(&vault.clerk(), CITIZEN_A, &metadata("cccd"), &scan)
            .await;
        assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR, "{fault:?}");
        assert_eq!(
            vault.count("SELECT COUNT(*) FROM documents").await,
            0,
            "{fault:?}: no row committed"
        );
        assert_eq!(
            vault.count("SELECT COUNT(*) FROM intake_intents").await,
            1,
            "{fault:?}: the intent survives the crash"
        );
        // A cut-off multipart write is not an object; a finished one is left behind.
        let left_behind = usize::from(matches!(
            fault,
            FaultPoint::AfterObject | FaultPoint::BeforeCommit
        ));
        assert_eq!(vault.stored_keys().await.len(), left_behind, "{fault:?}");

        // Restart without the fault; the sweeper (grace 0) removes what the crash left.
        let vault = vault
            .restart(|s| {
                s.test_fault = None;
                s.sweep_grace_seconds = 0;
            })
            .await;
        let swept = hoso::records::maintenance::sweep_abandoned(&vault.state.vault, 0, true)
            .await
            .unwrap();
        // Only objects that exist are reported; an intent without one is just cleared.
        assert_eq!(swept.objects.len(), left_behind, "{fault:?}");
        assert_eq!(
            swept.objects.len() + swept.intents_without_object,
            1,
            "{fault:?}"
        );
        // Listing shows whole objects only; a local staging file of a body cut off mid-write
        // is not an object (removing those is the consistency checker's job).
        let leftovers = vault.stored_keys().await;
        assert!(leftovers.is_empty(), "{fault:?}: {leftovers:?}");
        assert_eq!(vault.count("SELECT COUNT(*) FROM intake_intents").await, 0);

        // The clerk retries: one document; retrying again changes nothing.
        vault
            .intake(&vault.clerk(), CITIZEN_A, &metadata("cccd"), &scan)
            .await
            .expect(StatusCode::CREATED);
        vault
            .intake(&vault.clerk(), CITIZEN_A, &metadata("cccd"), &scan)
            .await
            .expect(StatusCode::OK);
        assert_eq!(vault.count("SELECT COUNT(*) FROM documents").await, 1);
        assert_eq!(every_row_reads(&vault).await, 1);
    }
}

/// The intent commits while the body arrives; the object must still wait for it. With the log's
/// lock held elsewhere (as another process's writer would hold it) the intent cannot commit, so
/// the body arrives and is sealed — and still nothing is stored until the lock is let go: not a
/// small body's one put, nor the first part of a body over one part (a local store's cut-off
/// part would be a staging file).
#[tokio::test]
async fn an_intakes_object_reaches_the_store_only_after_its_intent_is_committed() {
    for (seed, len) in [(72, 3 * 65_536 + 10), (73, 20 * 1024 * 1024)] {
        let vault = TestVault::new().await;
        let scan = pdf(seed, len);
        let vault_ref = &vault.state.vault;
        let lock = hoso::audit::begin(&vault_ref.db, &vault_ref.metrics)
            .await
            .unwrap();
        let (clerk, meta) = (vault.clerk(), metadata("cccd"));
        let intake = vault.intake(&clerk, CITIZEN_A, &meta, &scan);
        let held = async {
            // Long enough for a small body to arrive and be sealed many times over, and for a
            // big one to reach its first part.
            tokio::time::sleep(std::time::Duration::from_millis(700)).await;
            let while_held = (
                vault.stored_keys().await,
                vault_ref.blobs.local_staging_files(),
                vault.count("SELECT COUNT(*) FROM intake_intents").await,
            );
            lock.rollback().await.unwrap();
            while_held
        };
        let (reply, (stored, staging, intents)) = tokio::join!(intake, held);
        assert!(
            stored.is_empty() && staging.is_empty(),
            "{len} bytes: something was stored before the intent committed: {stored:?} {staging:?}"
        );
        assert_eq!(
            intents, 0,
            "the intent cannot have committed under the lock"
        );
        reply.expect(StatusCode::CREATED);
        assert_eq!(vault.stored_keys().await.len(), 1);
        assert_eq!(vault.count("SELECT COUNT(*) FROM intake_intents").await, 0);
        assert_eq!(every_row_reads(&vault).await, 1);
    }
}

#[tokio::test]
async fn the_sweeper_leaves_young_intakes_and_committed_documents_alone() {
    let vault = TestVault::with(|s| s.test_fault = Some(FaultPoint::AfterObject)).await;
    vault
        .intake(&vault.clerk(), CITIZEN_A, &metadata("cccd"), &pdf(72, 1000))
        .await;
    let vault = vault.restart(|s| s.test_fault = None).await;
    let id = vault.take_in(CITIZEN_A, "passport", &pdf(73, 1000)).await;
    // Within the grace period an intent may belong to an intake still running elsewhere.
    assert_eq!(
        hoso::records::maintenance::sweep_abandoned(&vault.state.vault, 3_600_000, true)
            .await
            .unwrap()
            .objects
            .len(),
        0
    );
    assert_eq!(vault.stored_keys().await.len(), 2);
    assert_eq!(
        hoso::records::maintenance::sweep_abandoned(&vault.state.vault, 0, true)
            .await
            .unwrap()
            .objects
            .len(),
        1
    );
    assert_eq!(vault.stored_keys().await.len(), 1);
    vault
        .get(&format!("/v1/documents/{id}/content"), &vault.clerk())
        .await
        .expect(StatusCode::OK);
}

#[tokio::test]
async fn a_crash_after_the_commit_keeps_the_document_and_a_retry_finds_it() {
    let scan = pdf(74, 70_000);
    let vault = TestVault::with(|s| s.test_fault = Some(FaultPoint::AfterCommit)).await;
    let reply = vault
        .intake(&vault.clerk(), CITIZEN_A, &metadata("cccd"), &scan)
        .await;
    assert_eq!(
        reply.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "the client never heard back"
    );
    let vault = vault.restart(|_| {}).await;
    assert_eq!(vault.count("SELECT COUNT(*) FROM intake_intents").await, 0);
    let again = vault
        .intake(&vault.clerk(), CITIZEN_A, &metadata("cccd"), &scan)
        .await;
    again.expect(StatusCode::OK);
    assert_eq!(vault.count("SELECT COUNT(*) FROM documents").await, 1);
    assert_eq!(every_row_reads(&vault).await, 1);
}

#[tokio::test]
async fn a_rewrap_that_dies_midway_leaves_every_document_readable_and_finishes_when_rerun() {
    let vault = TestVault::new().await;
    let mut docs = Vec::new();
    for (i, t) in ["cccd", "passport", "diploma", "other"].iter().enumerate() {
        docs.push(
            vault
                .take_in(CITIZEN_A, t, &pdf(75 + i as u64, 9_000))
                .await,
        );
    }
    let out = hoso_cli(&vault, &["keys", "rotate"]).await;
    assert!(out.status.success());
    let vault = vault
        .restart(|s| s.test_fault = Some(FaultPoint::RewrapMidway))
        .await;
    assert!(
        hoso::records::master_keys::rewrap(&vault.state.vault, |_| {})
            .await
            .is_err()
    );
    assert_eq!(
        vault
            .count("SELECT COUNT(*) FROM documents WHERE kek_version = 2")
            .await,
        1
    );
    assert_eq!(every_row_reads(&vault).await, 4);
    let vault = vault.restart(|_| {}).await;
    assert_eq!(
        hoso::records::master_keys::rewrap(&vault.state.vault, |_| {})
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        vault
            .count("SELECT COUNT(*) FROM documents WHERE kek_version = 1")
            .await,
        0
    );
    assert_eq!(every_row_reads(&vault).await, 4);
}
