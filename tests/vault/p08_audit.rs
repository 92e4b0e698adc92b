//! Promise 8: the audit log fails closed, and any edit, deletion or reordering of it is detected.

use axum::http::StatusCode;

use crate::common::*;

async fn busy_vault() -> (TestVault, String) {
    let vault = TestVault::new().await;
    let id = vault.take_in(CITIZEN_A, "cccd", &pdf(80, 2000)).await;
    for _ in 0..6 {
        vault
            .get(&format!("/v1/documents/{id}"), &vault.clerk())
            .await
            .expect(StatusCode::OK);
    }
    (vault, id)
}

async fn report(vault: &TestVault) -> serde_json::Value {
    let reply = vault.get("/v1/audit/verify", &vault.auditor()).await;
    reply.expect(StatusCode::OK);
    reply.json()
}

/// Both the API and the CLI find the log broken, first at `seq`.
async fn found_at(vault: &TestVault, seq: i64) {
    let r = report(vault).await;
    assert_eq!(
        (r["ok"].clone(), r["first_bad_seq"].clone()),
        (false.into(), seq.into()),
        "{r}"
    );
    let (ok, out) = vault.cli_verify().await;
    assert!(!ok, "{out}");
    assert!(out.contains(&format!("first bad entry is {seq}")), "{out}");
}

/// A busy log edited by `edit` is found broken, first at `seq`, by the API and the CLI.
async fn edit_found_at(edit: &str, seq: i64) {
    let (vault, _) = busy_vault().await;
    vault.sql(edit).await;
    found_at(&vault, seq).await;
}

#[tokio::test]
async fn an_untouched_log_verifies() {
    let (vault, _) = busy_vault().await;
    let r = report(&vault).await;
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["entries"], 7);
    let (ok, out) = vault.cli_verify().await;
    assert!(ok, "{out}");
    assert!(out.contains("intact"), "{out}");
}

#[tokio::test]
async fn an_edited_entry_is_found() {
    edit_found_at(
        "UPDATE audit_entries SET actor = 'someone.else' WHERE seq = 4",
        4,
    )
    .await;
}

#[tokio::test]
async fn an_edited_outcome_or_time_is_found() {
    edit_found_at("UPDATE audit_entries SET at = at + 1 WHERE seq = 6", 6).await;
}

/// An absent field and an empty one hash differently, as the layout says (`F(absent)` is
/// 0xFFFFFFFF, `F("")` a zero length): emptying a field, or blanking one out, is an edit.
#[tokio::test]
async fn a_field_emptied_or_blanked_out_is_found() {
    edit_found_at(
        "UPDATE audit_entries SET reason = '' WHERE seq = 5 AND reason IS NULL",
        5,
    )
    .await;
    edit_found_at(
        "UPDATE audit_entries SET document_id = NULL WHERE seq = 3",
        3,
    )
    .await;
}

/// Every 256th entry's head is kept signed (`audit_signed_heads`); verify checks each signature
/// (beside the walk) and each hash against the chain. A signature that is not the key's is
/// found at its signed head's seq, by name.
#[tokio::test]
async fn a_kept_signed_head_with_a_bad_signature_is_found() {
    let (vault, id) = busy_vault().await;
    let path = format!("/v1/documents/{id}");
    let clerk = vault.clerk();
    while vault.count("SELECT COUNT(*) FROM audit_signed_heads").await < 2 {
        for reply in futures_util::future::join_all((0..32).map(|_| vault.get(&path, &clerk))).await
        {
            reply.expect(StatusCode::OK);
        }
    }
    assert_eq!(report(&vault).await["ok"], true);
    // The signature of the second signed head put on the first: valid hex, valid Ed25519 bytes,
    // not a signature of the first's head.
    vault
        .sql(
            "UPDATE audit_signed_heads SET signature = \
             (SELECT signature FROM audit_signed_heads WHERE seq = 512) WHERE seq = 256",
        )
        .await;
    found_at(&vault, 256).await;
    let (_, out) = vault.cli_verify().await;
    assert!(out.contains("signed head signature is invalid"), "{out}");
}

#[tokio::test]
async fn a_deleted_entry_is_found() {
    let (vault, _) = busy_vault().await;
    vault.sql("DELETE FROM audit_entries WHERE seq = 3").await;
    let r = report(&vault).await;
    assert_eq!(r["first_bad_seq"], 3, "{r}");
    let (ok, out) = vault.cli_verify().await;
    assert!(!ok && out.contains("first bad entry is 3"), "{out}");
}

#[tokio::test]
async fn a_deleted_tail_is_found() {
    let (vault, _) = busy_vault().await;
    vault.sql("DELETE FROM audit_entries WHERE seq >= 6").await;
    let r = report(&vault).await;
    assert_eq!(r["ok"], false, "{r}");
    assert_eq!(r["first_bad_seq"], 6, "{r}");
}

#[tokio::test]
async fn reordered_entries_are_found() {
    let (vault, _) = busy_vault().await;
    // Swap entries 2 and 5 by renumbering them.
    vault.sql("UPDATE audit_entries SET seq = -2 WHERE seq = 2; UPDATE audit_entries SET seq = 2 WHERE seq = 5; UPDATE audit_entries SET seq = 5 WHERE seq = -2;").await;
    let r = report(&vault).await;
    assert_eq!(r["first_bad_seq"], 2, "{r}");
}

#[tokio::test]
async fn a_rewritten_chain_without_the_keys_is_found() {
    let (vault, _) = busy_vault().await;
    // Copy entry 2's hashes onto 3: a chain that looks linked but was not written by the vault.
    vault.sql("UPDATE audit_entries SET prev_hash = (SELECT prev_hash FROM audit_entries WHERE seq = 2), hash = (SELECT hash FROM audit_entries WHERE seq = 2) WHERE seq = 3").await;
    assert_eq!(report(&vault).await["first_bad_seq"], 3);
}

#[tokio::test]
async fn when_the_audit_log_cannot_be_written_reads_fail_and_send_no_bytes() {
    let vault = TestVault::new().await;
    let scan = pdf(81, 5000);
    let id = vault.take_in(CITIZEN_A, "cccd", &scan).await;
    let (_, officer) = vault.grant(CITIZEN_A, &["cccd"], "officer.binh", 5).await;
    vault.break_audit_log().await;

    for token in [vault.clerk(), officer.clone()] {
        let reply = vault
            .get(&format!("/v1/documents/{id}/content"), &token)
            .await;
        reply.expect_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
        assert!(!contains(&reply.body, &scan[..16]));
        assert!(
            !String::from_utf8_lossy(&reply.body).contains("disk full"),
            "the cause stays in the log"
        );
    }
    vault
        .get(&format!("/v1/documents/{id}"), &vault.clerk())
        .await
        .expect_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    vault
        .get(
            &format!("/v1/citizens/{CITIZEN_A}/documents"),
            &vault.clerk(),
        )
        .await
        .expect_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    // A failed log write spends no grant use and commits no intake.
    assert_eq!(vault.count("SELECT uses FROM grants").await, 0);
    vault
        .intake(
            &vault.clerk(),
            CITIZEN_A,
            &metadata("passport"),
            &pdf(82, 100),
        )
        .await
        .expect_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    assert_eq!(vault.count("SELECT COUNT(*) FROM documents").await, 1);
    // Refusals fail closed too.
    vault
        .get(&format!("/v1/documents/{id}/content"), &vault.auditor())
        .await
        .expect_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable");

    vault.mend_audit_log().await;
    let copy = vault
        .get(&format!("/v1/documents/{id}/content"), &officer)
        .await;
    copy.expect(StatusCode::OK);
    assert_eq!(copy.body.as_ref(), scan.as_slice());
    assert_eq!(report(&vault).await["ok"], true);
}
