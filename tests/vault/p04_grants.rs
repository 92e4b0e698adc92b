//! Promise 4: a grant for citizen A never reads citizen B; a grant for `cccd` never reads
//! `birth_certificate`; expired, revoked or used-up grants are refused; each refusal is in the
//! audit log.

use axum::http::StatusCode;
use hoso::auth::{self, TokenRequest};
use hoso::domain::Role;

use crate::common::*;

struct Setup {
    vault: TestVault,
    a_cccd: String,
    a_birth: String,
    b_cccd: String,
    scan: Vec<u8>,
}

async fn setup() -> Setup {
    let vault = TestVault::new().await;
    let scan = pdf(40, 3000);
    let a_cccd = vault.take_in(CITIZEN_A, "cccd", &scan).await;
    let a_birth = vault
        .take_in(CITIZEN_A, "birth_certificate", &pdf(41, 3000))
        .await;
    let b_cccd = vault.take_in(CITIZEN_B, "cccd", &pdf(42, 3000)).await;
    Setup {
        vault,
        a_cccd,
        a_birth,
        b_cccd,
        scan,
    }
}

async fn denials(vault: &TestVault, reason: &str) -> i64 {
    vault
        .count(&format!(
            "SELECT COUNT(*) FROM audit_entries WHERE outcome = 'denied' AND reason = '{reason}'"
        ))
        .await
}

#[tokio::test]
async fn a_grant_reads_only_its_citizen_and_its_types_and_each_refusal_is_logged() {
    let Setup {
        vault,
        a_cccd,
        a_birth,
        b_cccd,
        scan,
    } = setup().await;
    let (grant_id, officer) = vault.grant(CITIZEN_A, &["cccd"], "officer.binh", 5).await;

    let copy = vault
        .get(&format!("/v1/documents/{a_cccd}/content"), &officer)
        .await;
    copy.expect(StatusCode::OK);
    assert_eq!(copy.body.as_ref(), scan.as_slice());

    for other in [&a_birth, &b_cccd] {
        vault
            .get(&format!("/v1/documents/{other}/content"), &officer)
            .await
            .expect_error(StatusCode::NOT_FOUND, "not_found");
        vault
            .get(&format!("/v1/documents/{other}"), &officer)
            .await
            .expect_error(StatusCode::NOT_FOUND, "not_found");
    }
    vault
        .get(&format!("/v1/citizens/{CITIZEN_B}/documents"), &officer)
        .await
        .expect_error(StatusCode::FORBIDDEN, "scope_denied");
    let listed = vault
        .get(
            &format!("/v1/citizens/{CITIZEN_A}/documents?include=all"),
            &officer,
        )
        .await;
    listed.expect(StatusCode::OK);
    let docs = listed.json()["documents"].as_array().unwrap().clone();
    assert_eq!(docs.len(), 1, "only the granted type: {docs:?}");
    assert_eq!(docs[0]["id"], a_cccd.as_str());

    assert_eq!(denials(&vault, "not_found").await, 4);
    assert_eq!(denials(&vault, "scope_denied").await, 1);
    // Allowed reads carry the grant and the case.
    let logged = vault.count(&format!(
        "SELECT COUNT(*) FROM audit_entries WHERE action = 'document.content' AND outcome = 'allowed' \
         AND grant_id = '{grant_id}' AND case_ref = '000.00.31.H40-261124-0001'"
    )).await;
    assert_eq!(logged, 1);
}

/// The grant and the document are read in one statement: a grant in force with no such
/// document answers 404 like any document out of scope, logs the refusal and spends no use.
#[tokio::test]
async fn a_live_grant_asking_for_no_such_document_is_refused_and_spends_nothing() {
    let Setup { vault, a_cccd, .. } = setup().await;
    let (grant_id, officer) = vault.grant(CITIZEN_A, &["cccd"], "officer.binh", 1).await;
    let missing = uuid::Uuid::now_v7();
    for path in [
        format!("/v1/documents/{missing}/content"),
        format!("/v1/documents/{missing}"),
    ] {
        vault
            .get(&path, &officer)
            .await
            .expect_error(StatusCode::NOT_FOUND, "not_found");
    }
    assert_eq!(denials(&vault, "not_found").await, 2);
    let refused = vault
        .count(&format!(
            "SELECT COUNT(*) FROM audit_entries WHERE outcome = 'denied' \
             AND document_id = '{missing}' AND case_ref = '000.00.31.H40-261124-0001'"
        ))
        .await;
    assert_eq!(
        refused, 2,
        "each refusal names the document and the grant's case"
    );
    // The one use is still there.
    vault
        .get(&format!("/v1/documents/{a_cccd}/content"), &officer)
        .await
        .expect(StatusCode::OK);
    let uses = vault
        .count(&format!("SELECT uses FROM grants WHERE id = '{grant_id}'"))
        .await;
    assert_eq!(uses, 1);
}

#[tokio::test]
async fn a_used_up_grant_is_refused_after_exactly_its_uses() {
    let Setup { vault, a_cccd, .. } = setup().await;
    let (_, officer) = vault.grant(CITIZEN_A, &["cccd"], "officer.binh", 2).await;
    let path = format!("/v1/documents/{a_cccd}/content");
    let metadata = format!("/v1/documents/{a_cccd}");
    let list = format!("/v1/citizens/{CITIZEN_A}/documents");
    // Metadata reads do not spend uses.
    vault.get(&metadata, &officer).await.expect(StatusCode::OK);
    vault.get(&path, &officer).await.expect(StatusCode::OK);
    vault.get(&path, &officer).await.expect(StatusCode::OK);
    // Used up, the grant reads nothing more: no copy, and no number or name either.
    for path in [&path, &metadata, &list] {
        vault
            .get(path, &officer)
            .await
            .expect_error(StatusCode::FORBIDDEN, "grant_exhausted");
    }
    assert_eq!(denials(&vault, "grant_exhausted").await, 3);
    assert_eq!(vault.count("SELECT uses FROM grants").await, 2);
}

#[tokio::test]
async fn concurrent_reads_never_spend_more_uses_than_the_grant_allows() {
    let Setup { vault, a_cccd, .. } = setup().await;
    let (_, officer) = vault.grant(CITIZEN_A, &["cccd"], "officer.binh", 3).await;
    let path = format!("/v1/documents/{a_cccd}/content");
    let replies = futures_util::future::join_all((0..10).map(|_| vault.get(&path, &officer))).await;
    let ok = replies
        .iter()
        .filter(|r| r.status == StatusCode::OK)
        .count();
    let exhausted = replies
        .iter()
        .filter(|r| r.status == StatusCode::FORBIDDEN && r.code() == "grant_exhausted")
        .count();
    assert_eq!((ok, exhausted), (3, 7));
}

/// Reads arriving together spend their grants' uses in one transaction (a statement per round of
/// uses): each read beyond a grant's uses is refused and logged, and a grant used up beside
/// another still in force takes nothing from it.
#[tokio::test]
async fn reads_spent_together_refuse_and_log_exactly_the_reads_beyond_each_grant() {
    let Setup { vault, a_cccd, .. } = setup().await;
    let (two_id, two) = vault.grant(CITIZEN_A, &["cccd"], "officer.binh", 2).await;
    let (five_id, five) = vault.grant(CITIZEN_A, &["cccd"], "officer.binh", 5).await;
    let path = format!("/v1/documents/{a_cccd}/content");
    let reads = (0..6)
        .map(|_| vault.get(&path, &two))
        .chain((0..4).map(|_| vault.get(&path, &five)));
    let replies = futures_util::future::join_all(reads).await;
    let ok = |r: &[Reply]| r.iter().filter(|r| r.status == StatusCode::OK).count();
    assert_eq!(ok(&replies[..6]), 2, "the grant of two reads");
    assert_eq!(ok(&replies[6..]), 4, "the grant of five, beside it");
    for r in replies.iter().filter(|r| r.status != StatusCode::OK) {
        r.expect_error(StatusCode::FORBIDDEN, "grant_exhausted");
    }
    assert_eq!(denials(&vault, "grant_exhausted").await, 4);
    assert_eq!(
        vault
            .count(
                "SELECT COUNT(*) FROM audit_entries WHERE action = 'document.content' \
                 AND outcome = 'allowed'"
            )
            .await,
        6
    );
    let uses = |id: &str| format!("SELECT uses FROM grants WHERE id = '{id}'");
    assert_eq!(vault.count(&uses(&two_id)).await, 2);
    assert_eq!(vault.count(&uses(&five_id)).await, 4);
}

#[tokio::test]
async fn expired_and_revoked_grants_are_refused_and_logged() {
    let Setup { vault, a_cccd, .. } = setup().await;
    let path = format!("/v1/documents/{a_cccd}/content");

    let (_, expired) = vault
        .grant_for(CITIZEN_A, &["cccd"], "officer.binh", 5, 1)
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    vault
        .get(&path, &expired)
        .await
        .expect_error(StatusCode::FORBIDDEN, "grant_expired");
    vault
        .get(&format!("/v1/citizens/{CITIZEN_A}/documents"), &expired)
        .await
        .expect_error(StatusCode::FORBIDDEN, "grant_expired");

    let (revoked_id, revoked) = vault.grant(CITIZEN_A, &["cccd"], "officer.binh", 5).await;
    vault.get(&path, &revoked).await.expect(StatusCode::OK);
    vault
        .delete(&format!("/v1/grants/{revoked_id}"), &vault.clerk())
        .await
        .expect(StatusCode::NO_CONTENT);
    vault
        .get(&path, &revoked)
        .await
        .expect_error(StatusCode::FORBIDDEN, "grant_revoked");
    vault
        .get(&format!("/v1/documents/{a_cccd}"), &revoked)
        .await
        .expect_error(StatusCode::FORBIDDEN, "grant_revoked");

    assert_eq!(denials(&vault, "grant_expired").await, 2);
    assert_eq!(denials(&vault, "grant_revoked").await, 2);
}

#[tokio::test]
async fn roles_without_the_right_are_refused_and_logged() {
    let Setup { vault, a_cccd, .. } = setup().await;
    let path = format!("/v1/documents/{a_cccd}/content");
    // An officer's own staff token, with no grant behind it, reads nothing.
    let bare_officer = auth::issue(
        &vault.state.vault.keys(),
        &vault.state.vault.token_policy,
        TokenRequest {
            role: Role::Officer,
            sub: "officer.binh",
            office: Some("TUPHAP"),
            ttl_seconds: 600,
            grant: None,
            via: None,
        },
    )
    .unwrap()
    .0;
    vault
        .get(&path, &bare_officer)
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");
    vault
        .get(&path, &vault.auditor())
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");
    vault
        .get(&path, &vault.admin())
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");
    vault
        .get(&path, &vault.citizen(CITIZEN_A))
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");
    vault
        .get(
            &format!("/v1/citizens/{CITIZEN_A}/documents"),
            &vault.citizen(CITIZEN_B),
        )
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");
    vault
        .get(
            &format!("/v1/documents/{a_cccd}"),
            &vault.citizen(CITIZEN_B),
        )
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    vault
        .intake(
            &vault.auditor(),
            CITIZEN_A,
            &metadata("cccd"),
            &pdf(43, 100),
        )
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");
    let officer_grant = vault
        .post(
            "/v1/grants",
            &bare_officer,
            serde_json::json!({
                "national_id": CITIZEN_A, "doc_types": ["cccd"], "case_ref": "X", "purpose": "p",
                "grantee": "officer.binh", "grantee_office": "STP-DANANG", "ttl_seconds": 60, "max_uses": 1,
            }),
        )
        .await;
    officer_grant.expect_error(StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(denials(&vault, "forbidden").await, 7);
    assert_eq!(denials(&vault, "not_found").await, 1);
}
