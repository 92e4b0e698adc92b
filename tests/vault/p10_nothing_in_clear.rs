//! Promise 10: the database holds no plaintext national ID, name or document number.

use axum::http::StatusCode;
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn the_database_files_hold_no_national_id_name_or_document_number() {
    let vault = TestVault::new().await;
    let national_id = "048187000123";
    let name = "Phạm Nguyễn Quỳnh Như";
    let doc_number = "B7654321";
    let scan = pdf(100, 4000);
    let meta = json!({
        "doc_type": "passport", "doc_number": doc_number, "holder_name": name,
        "issued_on": "2020-02-02", "issued_by": "Cục Quản lý xuất nhập cảnh", "expires_on": "2030-02-02",
        "verified_against_original": true,
    });
    let reply = vault
        .intake(&vault.clerk(), national_id, &meta, &scan)
        .await;
    reply.expect(StatusCode::CREATED);
    let id = reply.json()["id"].as_str().unwrap().to_owned();
    // Exercise every path that writes: grant, officer read, citizen views, audit queries.
    let (_, officer) = vault
        .grant(national_id, &["passport"], "officer.binh", 3)
        .await;
    vault
        .get(&format!("/v1/documents/{id}/content"), &officer)
        .await
        .expect(StatusCode::OK);
    vault
        .get(
            &format!("/v1/citizens/{national_id}/documents"),
            &vault.citizen(national_id),
        )
        .await
        .expect(StatusCode::OK);
    vault
        .get(
            &format!("/v1/citizens/{national_id}/access-log"),
            &vault.citizen(national_id),
        )
        .await
        .expect(StatusCode::OK);
    vault
        .get(
            &format!("/v1/audit?national_id={national_id}"),
            &vault.auditor(),
        )
        .await
        .expect(StatusCode::OK);
    // An unauthorised citizen's attempt is logged too.
    vault
        .get(
            &format!("/v1/citizens/{national_id}/documents"),
            &vault.citizen(CITIZEN_B),
        )
        .await
        .expect(StatusCode::FORBIDDEN);

    // The API gives the fields back exactly.
    let shown = vault
        .get(&format!("/v1/documents/{id}"), &vault.clerk())
        .await
        .json();
    assert_eq!(shown["holder_name"], name);
    assert_eq!(shown["doc_number"], doc_number);

    let bytes = vault.database_bytes();
    assert!(bytes.len() > 4096, "read the database");
    assert!(
        contains(&bytes, b"officer.binh"),
        "the scan is sound: staff ids are stored in clear"
    );
    for (what, needle) in [
        ("national ID", national_id.as_bytes().to_vec()),
        ("other national ID", CITIZEN_B.as_bytes().to_vec()),
        ("holder name", name.as_bytes().to_vec()),
        ("surname and given name", "Quỳnh Như".as_bytes().to_vec()),
        ("document number", doc_number.as_bytes().to_vec()),
        ("scan content", scan[9..41].to_vec()),
    ] {
        assert!(
            !contains(&bytes, &needle),
            "the database holds the {what} in clear"
        );
        // A dump shows bytea as hex: the needle must not appear that way either.
        let hex = hex::encode(&needle);
        assert!(
            !contains(&bytes, hex.as_bytes()),
            "the database holds the {what} (hex)"
        );
    }
    for key in vault.stored_keys().await {
        let stored = vault.raw_object(&key).await;
        assert!(
            !contains(&stored, &scan[9..41]),
            "the object store holds the scan in clear"
        );
    }
}
