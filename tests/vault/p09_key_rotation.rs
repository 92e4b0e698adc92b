//! Promise 9: after key rotation and rewrap every document still reads; a retired key is refused
//! while used.

use axum::http::StatusCode;

use crate::common::*;

async fn all_read(vault: &TestVault, docs: &[(String, Vec<u8>)]) {
    for (id, scan) in docs {
        let copy = vault
            .get(&format!("/v1/documents/{id}/content"), &vault.clerk())
            .await;
        copy.expect(StatusCode::OK);
        assert_eq!(copy.body.as_ref(), scan.as_slice());
        vault
            .get(&format!("/v1/documents/{id}"), &vault.clerk())
            .await
            .expect(StatusCode::OK);
    }
}

#[tokio::test]
async fn after_rotate_and_rewrap_every_document_reads_and_a_used_key_cannot_be_retired() {
    let vault = TestVault::new().await;
    let mut docs = Vec::new();
    for (i, t) in ["cccd", "passport", "diploma"].iter().enumerate() {
        let scan = pdf(90 + i as u64, 70_000);
        docs.push((vault.take_in(CITIZEN_A, t, &scan).await, scan));
    }
    let mut bodies_before = Vec::new();
    for (id, _) in &docs {
        bodies_before.push(vault.object(id).await);
    }

    // Rotate through the CLI, as an operator would, while this vault keeps running.
    let out = hoso_cli(&vault, &["keys", "rotate"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let scan = pdf(99, 1000);
    let newest = vault.take_in(CITIZEN_B, "cccd", &scan).await;
    docs.push((newest.clone(), scan));
    assert_eq!(
        vault
            .count(&format!(
                "SELECT kek_version FROM documents WHERE id = '{newest}'"
            ))
            .await,
        2,
        "the running vault picked up the rotation"
    );
    all_read(&vault, &docs).await;

    // Version 1 still wraps three data keys: retiring it is refused, through the API and the CLI.
    let refused = hoso::records::master_keys::retire(&vault.state.vault, 1)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), "conflict", "{refused:?}");
    let out = hoso_cli(&vault, &["keys", "retire", "--version", "1"]).await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("still wraps 3"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        vault.state.vault.keys.reload().unwrap().kek(1).is_some(),
        "version 1 is kept"
    );
    // The refusal marked nothing retired for good: the failed transaction rolled back.
    assert_eq!(
        vault
            .count("SELECT COUNT(*) FROM kek_usage WHERE retired_at IS NOT NULL")
            .await,
        0
    );

    let out = hoso_cli(&vault, &["keys", "rewrap"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("3 data keys rewrapped"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        vault
            .count("SELECT COUNT(*) FROM documents WHERE kek_version = 1")
            .await,
        0
    );
    let mut bodies_after = Vec::new();
    for (id, _) in &docs[..3] {
        bodies_after.push(vault.object(id).await);
    }
    assert_eq!(bodies_before, bodies_after, "rewrap does not touch bodies");
    all_read(&vault, &docs).await;

    let out = hoso_cli(&vault, &["keys", "retire", "--version", "1"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        vault.state.vault.keys.reload().unwrap().kek(1).is_none(),
        "version 1 is gone"
    );
    let status = hoso_cli(&vault, &["keys", "status"]).await;
    let status = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(status.contains("retired"), "{status}");

    // After a restart with only version 2 on disk, everything still reads.
    let vault = vault.restart(|_| {}).await;
    assert_eq!(vault.state.vault.keys().kek_versions(), vec![2]);
    all_read(&vault, &docs).await;
    assert_eq!(
        vault.get("/v1/audit/verify", &vault.auditor()).await.json()["ok"],
        true
    );
}

/// Documents taken in before row format 2 (their key bound to document and citizen only) still
/// read, and `keys rewrap` brings them to format 2, after which a relabel fails closed.
#[tokio::test]
async fn rows_of_format_1_still_read_and_rewrap_binds_their_type() {
    use hoso::crypto::envelope::{Binding, WrapFormat};
    let vault = TestVault::new().await;
    let scan = pdf(91, 30_000);
    let id = vault.take_in(CITIZEN_A, "passport", &scan).await;

    // Turn the row into one written before format 2: same data key, wrapped the old way.
    let keys = vault.state.vault.keys();
    let kek = keys.current_kek();
    let binding = Binding {
        document_id: uuid::Uuid::parse_str(&id).unwrap(),
        citizen: keys
            .citizen_index(&hoso::domain::NationalId::parse(CITIZEN_A).unwrap())
            .unwrap(),
    };
    let wrapped = vault
        .fetch_blob("SELECT wrapped_key FROM documents WHERE id = $1", &id)
        .await;
    let passport = WrapFormat::V2 {
        doc_type: hoso::domain::DocType::Passport,
    };
    let data_key = kek.unwrap(&wrapped, &binding, passport).unwrap();
    let old = kek.wrap(&data_key, &binding, WrapFormat::V1).unwrap();
    vault
        .sql_blob(
            "UPDATE documents SET wrapped_key = $1, format_version = 1 WHERE id = $2",
            old,
            &id,
        )
        .await;
    let path = format!("/v1/documents/{id}/content");
    let copy = vault.get(&path, &vault.clerk()).await;
    copy.expect(StatusCode::OK);
    assert_eq!(copy.body.as_ref(), scan.as_slice(), "a format-1 row reads");

    let done = hoso::records::master_keys::rewrap(&vault.state.vault, |_| {})
        .await
        .unwrap();
    assert_eq!(done, 1, "rewrap brings the format-1 row to format 2");
    assert_eq!(
        vault
            .count(&format!(
                "SELECT format_version FROM documents WHERE id = '{id}'"
            ))
            .await,
        2
    );
    let copy = vault.get(&path, &vault.clerk()).await;
    copy.expect(StatusCode::OK);
    assert_eq!(copy.body.as_ref(), scan.as_slice());
    vault
        .sql(&format!(
            "UPDATE documents SET doc_type = 'cccd' WHERE id = '{id}'"
        ))
        .await;
    vault
        .get(&path, &vault.clerk())
        .await
        .expect_error(StatusCode::INTERNAL_SERVER_ERROR, "integrity_error");
}
