//! The everyday flows end to end: desk intake, verification, supersede, revoke, the citizen's
//! view, the auditor's view, and the public endpoints.

use axum::http::{StatusCode, header};
use base64::Engine;
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn a_clerk_verifies_a_scan_and_anyone_can_check_the_copy_offline() {
    let vault = TestVault::new().await;
    let scan = pdf(110, 12_345);
    let id = vault.take_in(CITIZEN_A, "birth_certificate", &scan).await;
    let pending = vault
        .get(&format!("/v1/documents/{id}"), &vault.clerk())
        .await
        .json();
    assert_eq!(pending["status"], "pending");
    assert!(pending["attestation"].is_null());

    let verified = vault
        .post(
            &format!("/v1/documents/{id}/verify"),
            &vault.clerk(),
            json!({}),
        )
        .await;
    verified.expect(StatusCode::OK);
    let v = verified.json();
    assert_eq!(v["status"], "verified");
    assert_eq!(v["verified"]["by"], "clerk.lan");

    let copy = vault
        .get(&format!("/v1/documents/{id}/content"), &vault.clerk())
        .await;
    copy.expect(StatusCode::OK);
    assert_eq!(copy.body.as_ref(), scan.as_slice());
    assert_eq!(copy.headers[header::CONTENT_TYPE], "application/pdf");
    let digest = base64::engine::general_purpose::STANDARD.encode(hoso::crypto::sha256(&scan));
    assert_eq!(
        copy.headers["repr-digest"],
        format!("sha-256=:{digest}:").as_str()
    );
    let attestation = copy.headers["hoso-attestation"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(attestation, v["attestation"].as_str().unwrap());

    // Offline check with the published JWKS, as a receiving office would.
    let jwks = vault
        .send(
            axum::http::Request::get("/.well-known/jwks.json")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    jwks.expect(StatusCode::OK);
    let dir = vault.path();
    std::fs::write(dir.join("jwks.json"), &jwks.body).unwrap();
    // Checks `file` against `attestation` with the published keys; true when VERIFIED.
    let check = |file: Vec<u8>, attestation: String| {
        let dir = dir.clone();
        let vault = &vault;
        async move {
            std::fs::write(dir.join("copy.pdf"), &file).unwrap();
            let copy = dir.join("copy.pdf").display().to_string();
            let jwks = dir.join("jwks.json").display().to_string();
            let args = [
                "verify-copy",
                "--file",
                &copy,
                "--attestation",
                &attestation,
                "--jwks",
                &jwks,
            ];
            let out = hoso_cli(vault, &args).await;
            let verified = String::from_utf8_lossy(&out.stdout).starts_with("VERIFIED");
            assert_eq!(
                out.status.success(),
                verified,
                "exit code agrees with the verdict"
            );
            verified
        }
    };
    assert!(
        check(copy.body.to_vec(), attestation.clone()).await,
        "the served copy verifies"
    );

    let mut altered = copy.body.to_vec();
    altered[100] ^= 1;
    assert!(
        !check(altered, attestation.clone()).await,
        "an altered copy does not"
    );
    let other = TestVault::new().await;
    let forged = hoso::records::attest(
        &other.state.vault.keys(),
        "hoso",
        &fake_row(&scan),
        "mallory",
        "X",
        0,
        None,
    )
    .unwrap();
    let out_ok = check(copy.body.to_vec(), forged).await;
    assert!(!out_ok, "an attestation signed by another key is refused");

    // Whoever holds this vault's token key (present wherever tokens are issued) cannot sign a
    // "verified copy": neither under the token key's own kid nor under the attestation kid.
    let keys = vault.state.vault.keys();
    let claims = hoso::crypto::attestation::AttestationClaims {
        iss: "hoso".into(),
        document_id: uuid::Uuid::now_v7().to_string(),
        doc_type: "cccd".into(),
        sha256: hex::encode(hoso::crypto::sha256(&copy.body)),
        size: copy.body.len() as i64,
        verified_by: "mallory".into(),
        office: "X".into(),
        verified_at: "2026-12-01T00:00:00Z".into(),
        iat: 0,
        card_check: None,
    };
    let with_token_kid = hoso::crypto::attestation::sign(&keys.token, &claims).unwrap();
    assert!(
        !check(copy.body.to_vec(), with_token_kid).await,
        "an attestation signed with the token key is refused"
    );
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some(keys.attestation.kid().to_owned());
    header.typ = Some(hoso::crypto::attestation::ATTESTATION_TYPE.to_owned());
    let under_attestation_kid = keys.token.jws(&header, &claims).unwrap();
    assert!(
        !check(copy.body.to_vec(), under_attestation_kid).await,
        "the token key signing under the attestation kid is refused"
    );
}

fn fake_row(scan: &[u8]) -> hoso::db::documents::DocumentRow {
    hoso::db::documents::DocumentRow {
        id: uuid::Uuid::now_v7(),
        citizen_idx: hoso::crypto::CitizenIndex([0; 32]),
        doc_type: hoso::domain::DocType::Cccd,
        status: hoso::domain::DocStatus::Verified,
        content_type: "application/pdf".into(),
        size_bytes: scan.len() as i64,
        sha256: hex::encode(hoso::crypto::sha256(scan)),
        object_key: String::new(),
        format_version: 1,
        wrapped_key: vec![],
        kek_version: 1,
        sealed_fields: vec![],
        verified_against_original: true,
        intake_by: String::new(),
        intake_office: String::new(),
        intake_at: 0,
        verified_by: None,
        verified_office: None,
        verified_at: None,
        attestation: None,
        supersedes: None,
        status_changed_by: None,
        status_changed_at: None,
        erased_at: None,
        erased_by: None,
        erase_reason: None,
    }
}

#[tokio::test]
async fn vietnamese_text_round_trips_exactly() {
    let vault = TestVault::new().await;
    // Precomposed and combining forms must both come back byte for byte, never normalised.
    let precomposed = "Nguyễn Thị Hồng Nhung";
    let combining = "Nguye\u{302}\u{303}n Thi\u{323} Ho\u{302}\u{300}ng";
    for (i, name) in [precomposed, combining].iter().enumerate() {
        let mut meta = metadata("cccd");
        meta["holder_name"] = json!(name);
        meta["issued_by"] = json!("Công an tỉnh Thừa Thiên Huế");
        let reply = vault
            .intake(&vault.clerk(), CITIZEN_A, &meta, &pdf(111 + i as u64, 200))
            .await;
        reply.expect(StatusCode::CREATED);
        let id = reply.json()["id"].as_str().unwrap().to_owned();
        let back = vault
            .get(&format!("/v1/documents/{id}"), &vault.clerk())
            .await
            .json();
        assert_eq!(
            back["holder_name"].as_str().unwrap().as_bytes(),
            name.as_bytes()
        );
        assert_eq!(back["issued_by"], "Công an tỉnh Thừa Thiên Huế");
        vault
            .post(
                &format!("/v1/documents/{id}/revoke"),
                &vault.admin(),
                json!({}),
            )
            .await
            .expect(StatusCode::OK);
    }
}

#[tokio::test]
async fn a_new_scan_supersedes_the_old_one_and_listings_show_only_current_documents() {
    let vault = TestVault::new().await;
    let old = vault.take_in(CITIZEN_A, "cccd", &pdf(120, 900)).await;
    let mut meta = metadata("cccd");
    meta["supersedes"] = json!(old);
    let reply = vault
        .intake(&vault.clerk(), CITIZEN_A, &meta, &pdf(121, 900))
        .await;
    reply.expect(StatusCode::CREATED);
    let new = reply.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(reply.json()["supersedes"], old.as_str());

    let current = vault
        .get(
            &format!("/v1/citizens/{CITIZEN_A}/documents"),
            &vault.clerk(),
        )
        .await
        .json();
    let ids: Vec<&str> = current["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![new.as_str()]);
    let all = vault
        .get(
            &format!("/v1/citizens/{CITIZEN_A}/documents?include=all"),
            &vault.clerk(),
        )
        .await
        .json();
    let statuses: Vec<&str> = all["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, vec!["superseded", "pending"]);

    // A superseded document cannot be superseded again, nor can another citizen's be.
    vault
        .intake(&vault.clerk(), CITIZEN_A, &meta, &pdf(122, 900))
        .await
        .expect_error(StatusCode::CONFLICT, "conflict");
    let b = vault.take_in(CITIZEN_B, "cccd", &pdf(123, 900)).await;
    meta["supersedes"] = json!(b);
    vault
        .intake(&vault.clerk(), CITIZEN_A, &meta, &pdf(124, 900))
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    assert_eq!(vault.count("SELECT COUNT(*) FROM documents").await, 3);
    let leftovers = vault.stored_keys().await.len();
    assert_eq!(leftovers, 3, "refused supersedes leave no object");
}

#[tokio::test]
async fn revoked_documents_are_no_longer_served() {
    let vault = TestVault::new().await;
    let id = vault.take_in(CITIZEN_A, "cccd", &pdf(130, 900)).await;
    let (_, officer) = vault.grant(CITIZEN_A, &["cccd"], "officer.binh", 5).await;
    vault
        .get(&format!("/v1/documents/{id}/content"), &officer)
        .await
        .expect(StatusCode::OK);
    let revoked = vault
        .post(
            &format!("/v1/documents/{id}/revoke"),
            &vault.clerk(),
            json!({}),
        )
        .await;
    assert_eq!(revoked.json()["status"], "revoked");
    vault
        .get(&format!("/v1/documents/{id}/content"), &officer)
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
    vault
        .get(&format!("/v1/documents/{id}/content"), &vault.clerk())
        .await
        .expect_error(StatusCode::CONFLICT, "conflict");
    vault
        .post(
            &format!("/v1/documents/{id}/revoke"),
            &vault.auditor(),
            json!({}),
        )
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");
}

#[tokio::test]
async fn a_citizen_sees_their_documents_and_who_read_them() {
    let vault = TestVault::new().await;
    let id = vault.take_in(CITIZEN_A, "cccd", &pdf(140, 900)).await;
    vault.take_in(CITIZEN_B, "cccd", &pdf(141, 900)).await;
    let (grant_id, officer) = vault.grant(CITIZEN_A, &["cccd"], "officer.binh", 5).await;
    vault
        .get(&format!("/v1/documents/{id}/content"), &officer)
        .await
        .expect(StatusCode::OK);

    let me = vault.citizen(CITIZEN_A);
    let mine = vault
        .get(&format!("/v1/citizens/{CITIZEN_A}/documents"), &me)
        .await;
    mine.expect(StatusCode::OK);
    assert_eq!(mine.json()["documents"].as_array().unwrap().len(), 1);
    vault
        .get(&format!("/v1/documents/{id}"), &me)
        .await
        .expect(StatusCode::OK);

    let log = vault
        .get(&format!("/v1/citizens/{CITIZEN_A}/access-log"), &me)
        .await;
    log.expect(StatusCode::OK);
    let entries = log.json()["entries"].as_array().unwrap().clone();
    let reads: Vec<_> = entries
        .iter()
        .filter(|e| e["action"] == "document.content")
        .collect();
    assert_eq!(reads.len(), 1, "{entries:?}");
    assert_eq!(reads[0]["actor"], "officer.binh");
    assert_eq!(reads[0]["case_ref"], "000.00.31.H40-261124-0001");
    assert_eq!(reads[0]["grant_id"], grant_id.as_str());
    assert!(
        entries.iter().all(|e| e["role"] != "citizen"),
        "the citizen's own reads are not 'who read my records'"
    );

    vault
        .get(&format!("/v1/citizens/{CITIZEN_B}/access-log"), &me)
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");
    vault
        .get(
            &format!("/v1/citizens/{CITIZEN_A}/access-log"),
            &vault.auditor(),
        )
        .await
        .expect(StatusCode::OK);
    vault
        .get(
            &format!("/v1/citizens/{CITIZEN_A}/access-log"),
            &vault.clerk(),
        )
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");
}

#[tokio::test]
async fn an_auditor_pages_through_and_filters_the_log() {
    let vault = TestVault::new().await;
    let id = vault.take_in(CITIZEN_A, "cccd", &pdf(150, 900)).await;
    for _ in 0..4 {
        vault
            .get(&format!("/v1/documents/{id}"), &vault.clerk())
            .await
            .expect(StatusCode::OK);
    }
    vault.take_in(CITIZEN_B, "cccd", &pdf(151, 900)).await;
    let auditor = vault.auditor();
    let first = vault.get("/v1/audit?limit=2", &auditor).await.json();
    assert_eq!(first["entries"].as_array().unwrap().len(), 2);
    assert_eq!(first["entries"][0]["seq"], 1);
    let next = first["next"].as_str().unwrap().to_owned();
    let second = vault
        .get(&format!("/v1/audit?limit=2&cursor={next}"), &auditor)
        .await
        .json();
    assert_eq!(second["entries"][0]["seq"], 3);

    let for_a = vault
        .get(
            &format!("/v1/audit?national_id={CITIZEN_A}&action=document.read"),
            &auditor,
        )
        .await
        .json();
    assert_eq!(for_a["entries"].as_array().unwrap().len(), 4);
    assert!(for_a["next"].is_null());
    let since = vault
        .get("/v1/audit?since=2999-01-01T00:00:00Z", &auditor)
        .await
        .json();
    assert_eq!(since["entries"].as_array().unwrap().len(), 0);

    for bad in [
        "limit=0",
        "limit=100000",
        "cursor=-1",
        "cursor=abc",
        "since=yesterday",
        "national_id=123",
        "bogus=1",
    ] {
        let reply = vault.get(&format!("/v1/audit?{bad}"), &auditor).await;
        assert!(
            matches!(reply.status.as_u16(), 400 | 422),
            "{bad}: {}",
            reply.status
        );
    }
    vault
        .get("/v1/audit", &vault.clerk())
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");
    vault
        .get("/v1/audit/verify", &vault.clerk())
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");
}

#[tokio::test]
async fn health_readiness_metrics_and_keys_are_public() {
    let vault = TestVault::new().await;
    let get = |path: &'static str| {
        vault.send(
            axum::http::Request::get(path)
                .body(axum::body::Body::empty())
                .unwrap(),
        )
    };
    get("/healthz").await.expect(StatusCode::OK);
    let ready = get("/readyz").await;
    ready.expect(StatusCode::OK);
    assert_eq!(ready.json()["ready"], true);
    let jwks = get("/.well-known/jwks.json").await.json();
    let keys = jwks["keys"].as_array().unwrap();
    // One key per purpose: tokens, attestations, audit checkpoints, citizens' exports.
    let kids: Vec<&str> = keys.iter().map(|k| k["kid"].as_str().unwrap()).collect();
    assert_eq!(keys.len(), 4, "{kids:?}");
    for purpose in ["token-", "attestation-", "audit-", "export-"] {
        assert!(kids.iter().any(|k| k.starts_with(purpose)), "{kids:?}");
    }
    assert!(
        keys.iter()
            .all(|k| k["kty"] == "OKP" && k["crv"] == "Ed25519" && k.get("d").is_none())
    );
    vault.take_in(CITIZEN_A, "cccd", &pdf(160, 900)).await;
    // Metrics need an admin or auditor token, whoever asks.
    get("/metrics")
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "unauthenticated");
    vault
        .get("/metrics", &vault.clerk())
        .await
        .expect_error(StatusCode::FORBIDDEN, "forbidden");
    let metrics =
        String::from_utf8(vault.get("/metrics", &vault.auditor()).await.body.to_vec()).unwrap();
    assert!(
        metrics.contains("hoso_documents_taken_in_total 1"),
        "{metrics}"
    );
    get("/no/such/route")
        .await
        .expect_error(StatusCode::NOT_FOUND, "not_found");
}
