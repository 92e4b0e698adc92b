//! The insider of issue 22, each attack reproduced and then refused or named: a database holder
//! edits a grant row, resets its count of uses, plants a trigger; a restore follows a link; the
//! log is rolled back just before a stop or inside a checkpoint interval.

use axum::http::StatusCode;
use serde_json::Value;

use crate::common::*;

async fn verify(vault: &TestVault) -> Value {
    let reply = vault.get("/v1/audit/verify", &vault.auditor()).await;
    reply.expect(StatusCode::OK);
    reply.json()
}

/// `hoso audit verify` and `hoso doctor` both exit 1 and name `grant` with `problem`.
async fn cli_names_grant(vault: &TestVault, grant: &str, problem: &str) {
    for command in [&["audit", "verify"][..], &["doctor"][..]] {
        let out = hoso_cli(vault, command).await;
        let said = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{command:?}: {said}");
        assert!(
            said.lines()
                .any(|l| l.contains(&format!("grant {grant}")) && l.contains(problem)),
            "{command:?} names grant {grant}: {said}"
        );
    }
}

fn citizen_hex(vault: &TestVault, national_id: &str) -> String {
    let id = hoso::domain::NationalId::parse(national_id).unwrap();
    vault.state.vault.keys().citizen_index(&id).to_hex()
}

#[tokio::test]
async fn a_grant_row_widened_or_moved_in_the_database_reads_nothing_and_is_named() {
    let vault = TestVault::new().await;
    let a_cccd = vault.take_in(CITIZEN_A, "cccd", &pdf(60, 3000)).await;
    let a_birth = vault
        .take_in(CITIZEN_A, "birth_certificate", &pdf(61, 3000))
        .await;
    let b_cccd = vault.take_in(CITIZEN_B, "cccd", &pdf(62, 3000)).await;
    let content = |id: &str| format!("/v1/documents/{id}/content");

    // A used-up cccd-only grant, widened to birth certificates with its uses reset.
    let (widened, officer) = vault.grant(CITIZEN_A, &["cccd"], "officer.binh", 1).await;
    vault
        .get(&content(&a_cccd), &officer)
        .await
        .expect(StatusCode::OK);
    vault
        .sql(&format!(
            "UPDATE grants SET doc_types = 'cccd,birth_certificate', uses = 0 WHERE id = '{widened}'"
        ))
        .await;
    for id in [&a_birth, &a_cccd] {
        vault
            .get(&content(id), &officer)
            .await
            .expect_error(StatusCode::INTERNAL_SERVER_ERROR, "integrity_error");
    }
    vault
        .get(&format!("/v1/documents/{a_birth}"), &officer)
        .await
        .expect_error(StatusCode::INTERNAL_SERVER_ERROR, "integrity_error");

    // Another grant moved to citizen B.
    let (moved, officer) = vault.grant(CITIZEN_A, &["cccd"], "officer.binh", 3).await;
    vault
        .sql(&format!(
            "UPDATE grants SET citizen_idx = '{}' WHERE id = '{moved}'",
            citizen_hex(&vault, CITIZEN_B)
        ))
        .await;
    for path in [content(&b_cccd), format!("/v1/documents/{b_cccd}")] {
        vault
            .get(&path, &officer)
            .await
            .expect_error(StatusCode::INTERNAL_SERVER_ERROR, "integrity_error");
    }

    // A third whose seal is copied from a wider grant's row, and a fourth with none.
    let (wide, _) = vault
        .grant(CITIZEN_A, &["cccd", "birth_certificate"], "officer.binh", 3)
        .await;
    let (copied, officer) = vault.grant(CITIZEN_A, &["cccd"], "officer.binh", 3).await;
    vault
        .sql(&format!(
            "UPDATE grants SET doc_types = 'cccd,birth_certificate', \
             seal = (SELECT seal FROM grants WHERE id = '{wide}') WHERE id = '{copied}'"
        ))
        .await;
    vault
        .get(&content(&a_birth), &officer)
        .await
        .expect_error(StatusCode::INTERNAL_SERVER_ERROR, "integrity_error");
    let (unsealed, officer) = vault.grant(CITIZEN_A, &["cccd"], "officer.binh", 3).await;
    vault
        .sql(&format!(
            "UPDATE grants SET seal = NULL WHERE id = '{unsealed}'"
        ))
        .await;
    vault
        .get(&content(&a_cccd), &officer)
        .await
        .expect_error(StatusCode::INTERNAL_SERVER_ERROR, "integrity_error");

    // A grant left alone still reads.
    let (_, honest) = vault.grant(CITIZEN_A, &["cccd"], "officer.binh", 1).await;
    vault
        .get(&content(&a_cccd), &honest)
        .await
        .expect(StatusCode::OK);

    let report = verify(&vault).await;
    assert_eq!(report["ok"], false, "{report}");
    assert!(
        report["first_bad_seq"].is_null(),
        "the log itself is intact: {report}"
    );
    let named: Vec<&str> = report["grants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["grant_id"].as_str().unwrap())
        .collect();
    for grant in [&widened, &moved, &copied, &unsealed] {
        assert!(named.contains(&grant.as_str()), "{grant} in {report}");
    }
    assert_eq!(named.len(), 4, "{report}");
    cli_names_grant(&vault, &widened, "seal does not check").await;
}

#[tokio::test]
async fn a_count_of_uses_reset_in_the_database_is_named_by_verify_and_doctor() {
    let vault = TestVault::new().await;
    let id = vault.take_in(CITIZEN_A, "cccd", &pdf(63, 3000)).await;
    let (grant, officer) = vault.grant(CITIZEN_A, &["cccd"], "officer.binh", 3).await;
    let path = format!("/v1/documents/{id}/content");
    for _ in 0..2 {
        vault.get(&path, &officer).await.expect(StatusCode::OK);
    }
    assert_eq!(verify(&vault).await["ok"], true);
    vault
        .sql(&format!("UPDATE grants SET uses = 0 WHERE id = '{grant}'"))
        .await;
    let report = verify(&vault).await;
    assert_eq!(report["ok"], false, "{report}");
    assert_eq!(report["grants"][0]["grant_id"], grant.as_str(), "{report}");
    cli_names_grant(
        &vault,
        &grant,
        "0 uses spent, but the log holds 2 content reads",
    )
    .await;
}
