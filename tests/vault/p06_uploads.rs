//! Promise 6: uploads over the limit get 413 without being read into memory; a file whose bytes
//! are not an allowed format gets 415 whatever its name or declared type; user input never
//! becomes a storage path.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use bytes::Bytes;

use crate::common::*;

const LIMIT: u64 = 1024 * 1024;

async fn small_vault() -> TestVault {
    TestVault::with(|s| s.max_upload_bytes = LIMIT).await
}

/// Nothing of the refused intakes is stored: no object but the audit log's checkpoints (the
/// refusals are logged, and each batch of the log is checkpointed).
async fn assert_nothing_left(vault: &TestVault) {
    let mut keys = vault.stored_keys().await;
    keys.retain(|k| !k.starts_with("audit/checkpoints/"));
    assert!(keys.is_empty(), "objects left behind: {keys:?}");
    if backend() == Backend::SqliteLocal {
        // Nor any staging file of the local store.
        let mut stack = vec![vault.storage().join("bodies")];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = entry.path();
                assert!(path.is_dir(), "file left behind: {}", path.display());
                stack.push(path);
            }
        }
    }
}

#[tokio::test]
async fn an_upload_declared_over_the_limit_is_refused_before_reading() {
    let vault = small_vault().await;
    let pulled = Arc::new(AtomicU64::new(0));
    let counter = pulled.clone();
    // Claims 100 MiB; the server must answer from the header alone.
    let stream = futures_util::stream::iter((0..1600).map(move |_| {
        counter.fetch_add(65_536, Ordering::SeqCst);
        Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; 65_536]))
    }));
    let request = Request::post(format!("/v1/citizens/{CITIZEN_A}/documents"))
        .header(header::AUTHORIZATION, format!("Bearer {}", vault.clerk()))
        .header(
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .header(header::CONTENT_LENGTH, 100 * 1024 * 1024)
        .body(Body::from_stream(stream))
        .unwrap();
    let reply = vault.send(request).await;
    reply.expect_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    assert_eq!(
        pulled.load(Ordering::SeqCst),
        0,
        "not one byte of the body was read"
    );
    assert_nothing_left(&vault).await;
}

#[tokio::test]
async fn a_streamed_upload_over_the_limit_is_cut_off_while_streaming() {
    let vault = small_vault().await;
    let pulled = Arc::new(AtomicU64::new(0));
    let counter = pulled.clone();
    let first = open_intake_body();
    // 64 MiB of file with no Content-Length: only counting while streaming can stop it.
    let body = futures_util::stream::once(async move { Ok::<_, std::io::Error>(first) })
        .chain_with(1024, move || {
            counter.fetch_add(65_536, Ordering::SeqCst);
            Bytes::from(vec![7u8; 65_536])
        });
    let request = streaming_intake(&vault, Body::from_stream(body));
    let reply = vault.send(request).await;
    reply.expect_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    let read = pulled.load(Ordering::SeqCst);
    assert!(
        read <= LIMIT + 512 * 1024,
        "read {read} bytes of a 64 MiB upload with a 1 MiB limit"
    );
    assert_nothing_left(&vault).await;
    assert_eq!(vault.count("SELECT COUNT(*) FROM intake_intents").await, 0);
    assert_eq!(vault.count("SELECT COUNT(*) FROM documents").await, 0);
}

/// A stream of `n` chunks made on demand, after a first item.
trait ChainWith:
    futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Sized + Send + 'static
{
    fn chain_with(
        self,
        n: usize,
        mut make: impl FnMut() -> Bytes + Send + 'static,
    ) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
        use futures_util::StreamExt;
        self.chain(futures_util::stream::iter(0..n).map(move |_| Ok(make())))
    }
}
impl<S: futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Sized + Send + 'static>
    ChainWith for S
{
}

#[tokio::test]
async fn an_upload_at_the_limit_is_accepted() {
    let vault = small_vault().await;
    let scan = pdf(60, LIMIT as usize);
    vault
        .intake(&vault.clerk(), CITIZEN_A, &metadata("cccd"), &scan)
        .await
        .expect(StatusCode::CREATED);
    let over = pdf(61, LIMIT as usize + 1);
    vault
        .intake(&vault.clerk(), CITIZEN_A, &metadata("passport"), &over)
        .await
        .expect_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    assert_eq!(vault.stored_keys().await.len(), 1);
}

#[tokio::test]
async fn a_file_is_judged_by_its_bytes_not_its_name_or_declared_type() {
    let vault = TestVault::new().await;
    let disguised: Vec<(&str, Vec<u8>)> = vec![
        (
            "a Windows executable named scan.pdf",
            b"MZ\x90\0\x03\0\0\0\x04\0\0\0\xff\xff".to_vec(),
        ),
        (
            "HTML declared as application/pdf",
            b"<html><script>alert(1)</script></html>".to_vec(),
        ),
        ("a ZIP", b"PK\x03\x04\x14\0\0\0\x08\0".to_vec()),
        (
            "text mentioning %PDF- later",
            b"hello %PDF-1.7 world".to_vec(),
        ),
        ("four bytes", b"%PDF".to_vec()),
        ("empty", Vec::new()),
    ];
    for (what, bytes) in disguised {
        let reply = vault
            .intake(&vault.clerk(), CITIZEN_A, &metadata("cccd"), &bytes)
            .await;
        assert_eq!(reply.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{what}");
        assert_eq!(reply.code(), "unsupported_media_type", "{what}");
    }
    assert_nothing_left(&vault).await;
    for (bytes, mime) in [
        (b"%PDF-1.4\n%...".to_vec(), "application/pdf"),
        (b"\xff\xd8\xff\xe0\0\x10JFIF\0".to_vec(), "image/jpeg"),
        (png(62, 100), "image/png"),
        (b"II*\0\x08\0\0\0rest".to_vec(), "image/tiff"),
        (b"MM\0*\0\0\0\x08rest".to_vec(), "image/tiff"),
    ] {
        // The declared type in the multipart part is always application/pdf; the bytes decide.
        let reply = vault
            .intake(&vault.clerk(), CITIZEN_A, &metadata("other"), &bytes)
            .await;
        reply.expect(StatusCode::CREATED);
        assert_eq!(reply.json()["content_type"], mime);
        let id = reply.json()["id"].as_str().unwrap().to_owned();
        let copy = vault
            .get(&format!("/v1/documents/{id}/content"), &vault.clerk())
            .await;
        assert_eq!(copy.headers[header::CONTENT_TYPE], mime);
    }
}

#[tokio::test]
async fn user_input_never_becomes_a_storage_path() {
    let vault = TestVault::new().await;
    let id = vault.take_in(CITIZEN_A, "cccd", &pdf(63, 1000)).await;
    for path in [
        "/v1/documents/..%2F..%2Fkeys%2Fkek-000001.key/content",
        "/v1/documents/../../keys/content",
        "/v1/documents/%2e%2e/content",
        &format!("/v1/documents/{id}%00/content"),
        "/v1/documents/bodies%2F0000/content",
    ] {
        let reply = vault.get(path, &vault.clerk()).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
    }
    for national_id in ["..%2F..%2Fetc", "00109901234%2F", "001099012345%00"] {
        let reply = vault
            .intake(
                &vault.clerk(),
                national_id,
                &metadata("cccd"),
                &pdf(64, 100),
            )
            .await;
        assert!(
            matches!(reply.status.as_u16(), 404 | 422),
            "{national_id}: {}",
            reply.status
        );
    }
    // Every stored object sits at bodies/<4 hex>/<uuid>, named by the vault alone.
    for rel in vault.stored_keys().await {
        let parts: Vec<&str> = rel.split('/').collect();
        assert_eq!(parts.len(), 3, "{rel}");
        assert_eq!(parts[0], "bodies");
        assert!(uuid::Uuid::parse_str(parts[2]).is_ok(), "{rel}");
    }
}

#[tokio::test]
async fn malformed_intakes_get_clear_errors_and_leave_nothing() {
    let vault = TestVault::new().await;
    let clerk = vault.clerk();
    let scan = pdf(65, 500);
    let send = |parts: Vec<(&'static str, Vec<u8>)>| {
        let parts: Vec<(&str, Vec<u8>, &str)> = parts
            .into_iter()
            .map(|(n, b)| (n, b, "application/octet-stream"))
            .collect();
        let borrowed: Vec<(&str, &[u8], &str)> = parts
            .iter()
            .map(|(n, b, t)| (*n, b.as_slice(), *t))
            .collect();
        let (ct, body) = multipart(&borrowed);
        Request::post(format!("/v1/citizens/{CITIZEN_A}/documents"))
            .header(header::AUTHORIZATION, format!("Bearer {clerk}"))
            .header(header::CONTENT_TYPE, ct)
            .body(Body::from(body))
            .unwrap()
    };
    let meta = || metadata("cccd").to_string().into_bytes();
    let cases = vec![
        (
            "no file",
            send(vec![("metadata", meta())]),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "no metadata",
            send(vec![("file", scan.clone())]),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "two files",
            send(vec![
                ("metadata", meta()),
                ("file", scan.clone()),
                ("file", scan.clone()),
            ]),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "an unknown part",
            send(vec![
                ("metadata", meta()),
                ("extra", b"x".to_vec()),
                ("file", scan.clone()),
            ]),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "metadata not JSON",
            send(vec![
                ("metadata", b"{nope".to_vec()),
                ("file", scan.clone()),
            ]),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_metadata",
        ),
        (
            "metadata not UTF-8",
            send(vec![
                ("metadata", b"{\"doc_type\":\"\xff\"}".to_vec()),
                ("file", scan.clone()),
            ]),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_metadata",
        ),
        (
            "gigantic metadata",
            send(vec![
                ("metadata", vec![b' '; 1024 * 1024]),
                ("file", scan.clone()),
            ]),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_metadata",
        ),
    ];
    for (what, request, status, code) in cases {
        let reply = vault.send(request).await;
        assert_eq!(
            reply.status,
            status,
            "{what}: {}",
            String::from_utf8_lossy(&reply.body)
        );
        assert_eq!(reply.code(), code, "{what}");
    }
    let not_multipart = Request::post(format!("/v1/citizens/{CITIZEN_A}/documents"))
        .header(header::AUTHORIZATION, format!("Bearer {clerk}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{}"))
        .unwrap();
    vault
        .send(not_multipart)
        .await
        .expect_error(StatusCode::BAD_REQUEST, "invalid_request");

    let bad_metadata = [
        ("doc_type", serde_json::json!("visa")),
        ("issued_on", serde_json::json!("2023-02-29")),
        ("issued_on", serde_json::json!("2999-01-01")),
        ("expires_on", serde_json::json!("2001-01-01")),
        ("holder_name", serde_json::json!("")),
        ("holder_name", serde_json::json!("a\u{7}b")),
        ("doc_number", serde_json::json!("x".repeat(65))),
        ("supersedes", serde_json::json!("../etc")),
        ("unexpected", serde_json::json!("field")),
    ];
    for (field, value) in bad_metadata {
        let mut m = metadata("cccd");
        m[field] = value.clone();
        let reply = vault.intake(&clerk, CITIZEN_A, &m, &scan).await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{field} = {value}"
        );
        assert_eq!(reply.code(), "invalid_metadata", "{field} = {value}");
    }
    vault
        .intake(&clerk, "12345", &metadata("cccd"), &scan)
        .await
        .expect_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_national_id");
    assert_nothing_left(&vault).await;
    assert_eq!(vault.count("SELECT COUNT(*) FROM intake_intents").await, 0);
}
