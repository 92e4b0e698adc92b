//! Promise 1: a flipped bit, a truncation or an extension anywhere in a stored body or wrapped
//! key gives `integrity_error` and not one byte of plaintext.

use axum::http::StatusCode;

use crate::common::*;

async fn assert_refused_without_plaintext(
    vault: &TestVault,
    id: &str,
    plaintext: &[u8],
    what: &str,
) {
    let reply = vault
        .get(&format!("/v1/documents/{id}/content"), &vault.clerk())
        .await;
    assert_eq!(
        reply.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{what}: {}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(reply.code(), "integrity_error", "{what}");
    assert!(
        !contains(&reply.body, &plaintext[..16]),
        "{what}: plaintext leaked"
    );
    assert!(
        reply.body.len() < 200,
        "{what}: the error body is small and says nothing more"
    );
}

#[tokio::test]
async fn a_flipped_bit_anywhere_in_a_stored_body_gives_integrity_error_and_no_plaintext() {
    let vault = TestVault::new().await;
    // Three segments: a full one, another full one, and a short last one.
    let scan = png(1, 2 * 65_536 + 5_000);
    let id = vault.take_in(CITIZEN_A, "cccd", &scan).await;
    let original = vault.object(&id).await;
    let seg = 65_536 + 16;
    // Header bytes, first/middle/last bytes of each segment's ciphertext and of each tag.
    let mut positions = vec![0, 4, 5, 8, 9, 15];
    for s in 0..3 {
        let start = 16 + s * seg;
        let end = (start + seg).min(original.len());
        positions.extend([start, start + 1000, end - 17, end - 16, end - 1]);
    }
    for pos in positions {
        let mut bad = original.clone();
        bad[pos] ^= 0x04;
        vault.set_object(&id, bad).await;
        assert_refused_without_plaintext(&vault, &id, &scan, &format!("bit flip at byte {pos}"))
            .await;
    }
    vault.set_object(&id, original.clone()).await;
    let ok = vault
        .get(&format!("/v1/documents/{id}/content"), &vault.clerk())
        .await;
    ok.expect(StatusCode::OK);
    assert_eq!(ok.body.as_ref(), scan.as_slice());
}

#[tokio::test]
async fn a_truncated_or_extended_body_gives_integrity_error_and_no_plaintext() {
    let vault = TestVault::new().await;
    let scan = pdf(2, 2 * 65_536 + 100);
    let id = vault.take_in(CITIZEN_A, "cccd", &scan).await;
    let original = vault.object(&id).await;
    let boundary = 16 + 2 * (65_536 + 16);
    let cases: Vec<(String, Vec<u8>)> = vec![
        (
            "cut one byte".into(),
            original[..original.len() - 1].to_vec(),
        ),
        (
            "cut at the last segment boundary".into(),
            original[..boundary].to_vec(),
        ),
        ("cut to the header".into(), original[..16].to_vec()),
        ("empty".into(), Vec::new()),
        (
            "one byte appended".into(),
            [original.as_slice(), &[0]].concat(),
        ),
        (
            "a whole segment appended".into(),
            [original.as_slice(), &original[16..16 + 65_552]].concat(),
        ),
    ];
    for (what, bytes) in cases {
        vault.set_object(&id, bytes).await;
        assert_refused_without_plaintext(&vault, &id, &scan, &what).await;
    }
}

#[tokio::test]
async fn tampering_with_a_large_body_is_caught_before_the_first_byte_is_sent() {
    // Over 8 MiB takes the streaming path: authenticate everything, then decrypt again.
    let vault = TestVault::new().await;
    let scan = pdf(3, 9 * 1024 * 1024 + 123);
    let id = vault
        .take_in(CITIZEN_A, "land_use_certificate", &scan)
        .await;
    let original = vault.object(&id).await;
    let mut bad = original.clone();
    let last = bad.len() - 3;
    bad[last] ^= 1;
    vault.set_object(&id, bad).await;
    assert_refused_without_plaintext(
        &vault,
        &id,
        &scan,
        "flip in the last segment of a large body",
    )
    .await;
    vault.set_object(&id, original.clone()).await;
    let ok = vault
        .get(&format!("/v1/documents/{id}/content"), &vault.clerk())
        .await;
    ok.expect(StatusCode::OK);
    assert!(
        ok.body.as_ref() == scan.as_slice(),
        "large body reads back byte for byte"
    );
}

#[tokio::test]
async fn a_flipped_bit_in_a_wrapped_key_or_sealed_fields_gives_integrity_error() {
    let vault = TestVault::new().await;
    let scan = pdf(4, 3000);
    let id = vault.take_in(CITIZEN_A, "cccd", &scan).await;
    let wrapped = vault
        .fetch_blob("SELECT wrapped_key FROM documents WHERE id = $1", &id)
        .await;
    for pos in [0, 11, 12, 30, 43, 44, 59] {
        let mut bad = wrapped.clone();
        bad[pos] ^= 0x10;
        vault
            .sql_blob(
                "UPDATE documents SET wrapped_key = $1 WHERE id = $2",
                bad,
                &id,
            )
            .await;
        assert_refused_without_plaintext(&vault, &id, &scan, &format!("wrapped key bit {pos}"))
            .await;
    }
    for bad in [wrapped[..59].to_vec(), [wrapped.as_slice(), &[1]].concat()] {
        vault
            .sql_blob(
                "UPDATE documents SET wrapped_key = $1 WHERE id = $2",
                bad,
                &id,
            )
            .await;
        assert_refused_without_plaintext(&vault, &id, &scan, "wrapped key of the wrong length")
            .await;
    }
    vault
        .sql_blob(
            "UPDATE documents SET wrapped_key = $1 WHERE id = $2",
            wrapped,
            &id,
        )
        .await;

    let sealed = vault
        .fetch_blob("SELECT sealed_fields FROM documents WHERE id = $1", &id)
        .await;
    let mut bad = sealed.clone();
    bad[20] ^= 1;
    vault
        .sql_blob(
            "UPDATE documents SET sealed_fields = $1 WHERE id = $2",
            bad,
            &id,
        )
        .await;
    let reply = vault
        .get(&format!("/v1/documents/{id}"), &vault.clerk())
        .await;
    reply.expect_error(StatusCode::INTERNAL_SERVER_ERROR, "integrity_error");
    assert!(!contains(&reply.body, "Tuyết".as_bytes()));
}
