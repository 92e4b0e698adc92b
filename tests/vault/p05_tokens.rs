//! Promise 5: tokens with `alg: none`, a wrong key, wrong `aud`/`iss`, expired, `nbf` in the
//! future, or claims of the wrong JSON type are refused.

use axum::http::{StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::common::*;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn good_claims() -> Value {
    json!({
        "iss": "hoso", "aud": "hoso", "sub": "clerk.lan", "role": "clerk", "office": "UBND-HAICHAU",
        "iat": now(), "nbf": now(), "exp": now() + 600, "jti": "8f0c9d6e-test",
    })
}

fn sign(vault: &TestVault, claims: &Value) -> String {
    let keys = vault.state.vault.keys();
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(keys.token.kid().to_owned());
    keys.token.jws(&header, claims).unwrap()
}

fn with(change: &[(&str, Value)]) -> Value {
    let mut claims = good_claims();
    for (k, v) in change {
        if v.is_null() {
            claims.as_object_mut().unwrap().remove(*k);
        } else {
            claims[*k] = v.clone();
        }
    }
    claims
}

#[tokio::test]
async fn a_correct_token_is_accepted() {
    let vault = TestVault::new().await;
    let token = sign(&vault, &good_claims());
    vault
        .get(&format!("/v1/citizens/{CITIZEN_A}/documents"), &token)
        .await
        .expect(StatusCode::OK);
}

#[tokio::test]
async fn forged_malformed_and_out_of_date_tokens_are_refused() {
    let vault = TestVault::new().await;
    let other = TestVault::new().await;
    let path = format!("/v1/citizens/{CITIZEN_A}/documents");

    let payload = URL_SAFE_NO_PAD.encode(good_claims().to_string());
    let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let good = sign(&vault, &good_claims());
    let good_sig = good.rsplit('.').next().unwrap();
    // HS256 keyed with the public key: the classic algorithm-confusion forgery.
    let hs256 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &good_claims(),
        &EncodingKey::from_secret(vault.state.vault.keys().token.public_key()),
    )
    .unwrap();
    let tampered = {
        let mut parts: Vec<&str> = good.split('.').collect();
        let admin = URL_SAFE_NO_PAD.encode(with(&[("role", json!("admin"))]).to_string());
        parts[1] = &admin;
        parts.join(".")
    };

    let cases: Vec<(&str, String, &str)> = vec![
        (
            "alg none, no signature",
            format!("{none_header}.{payload}."),
            "unauthenticated",
        ),
        (
            "alg none, a real signature",
            format!("{none_header}.{payload}.{good_sig}"),
            "unauthenticated",
        ),
        ("HS256 with the public key", hs256, "unauthenticated"),
        (
            "signed by another vault",
            sign(&other, &good_claims()),
            "unauthenticated",
        ),
        ("payload changed after signing", tampered, "unauthenticated"),
        (
            "wrong aud",
            sign(&vault, &with(&[("aud", json!("other-vault"))])),
            "unauthenticated",
        ),
        (
            "wrong iss",
            sign(&vault, &with(&[("iss", json!("evil"))])),
            "unauthenticated",
        ),
        (
            "expired",
            sign(
                &vault,
                &with(&[("exp", json!(now() - 3600)), ("nbf", json!(now() - 7200))]),
            ),
            "token_expired",
        ),
        (
            "nbf in the future",
            sign(&vault, &with(&[("nbf", json!(now() + 3600))])),
            "unauthenticated",
        ),
        (
            "exp as a string",
            sign(&vault, &with(&[("exp", json!((now() + 600).to_string()))])),
            "unauthenticated",
        ),
        (
            "nbf as a string",
            sign(&vault, &with(&[("nbf", json!(now().to_string()))])),
            "unauthenticated",
        ),
        (
            "role as a number",
            sign(&vault, &with(&[("role", json!(2))])),
            "unauthenticated",
        ),
        (
            "unknown role",
            sign(&vault, &with(&[("role", json!("superuser"))])),
            "unauthenticated",
        ),
        (
            "aud as a list of strangers",
            sign(&vault, &with(&[("aud", json!(["x", "y"]))])),
            "unauthenticated",
        ),
        (
            "no exp",
            sign(&vault, &with(&[("exp", Value::Null)])),
            "unauthenticated",
        ),
        (
            "no nbf",
            sign(&vault, &with(&[("nbf", Value::Null)])),
            "unauthenticated",
        ),
        (
            "no iss",
            sign(&vault, &with(&[("iss", Value::Null)])),
            "unauthenticated",
        ),
        (
            "citizen whose sub is not a national ID",
            sign(
                &vault,
                &with(&[("role", json!("citizen")), ("sub", json!("someone"))]),
            ),
            "unauthenticated",
        ),
        ("garbage", "not.a.token".into(), "unauthenticated"),
    ];
    for (what, token, code) in cases {
        let reply = vault.get(&path, &token).await;
        assert_eq!(
            reply.status,
            StatusCode::UNAUTHORIZED,
            "{what}: {}",
            String::from_utf8_lossy(&reply.body)
        );
        assert_eq!(reply.code(), code, "{what}");
        assert!(
            reply.headers.get(header::WWW_AUTHENTICATE).is_some(),
            "{what}: WWW-Authenticate"
        );
    }
    let missing = vault
        .send(
            axum::http::Request::get(&path)
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await;
    missing.expect_error(StatusCode::UNAUTHORIZED, "unauthenticated");
}

/// The vault remembers which tokens' signatures it has checked; a token it accepted, altered in
/// any byte, is another token and is checked afresh.
#[tokio::test]
async fn a_token_accepted_before_and_then_altered_is_refused() {
    let vault = TestVault::new().await;
    let path = format!("/v1/citizens/{CITIZEN_A}/documents");
    let good = sign(&vault, &good_claims());
    for _ in 0..2 {
        vault.get(&path, &good).await.expect(StatusCode::OK);
    }
    let parts: Vec<&str> = good.split('.').collect();
    let admin = URL_SAFE_NO_PAD.encode(with(&[("role", json!("admin"))]).to_string());
    let later = URL_SAFE_NO_PAD.encode(with(&[("exp", json!(now() + 86_400))]).to_string());
    // The signature's first character carries whole bits (the last may be padding only).
    let first = if parts[2].starts_with('A') { "B" } else { "A" };
    let other_signature = format!("{first}{}", &parts[2][1..]);
    for altered in [
        format!("{}.{admin}.{}", parts[0], parts[2]),
        format!("{}.{later}.{}", parts[0], parts[2]),
        format!("{}.{}.{other_signature}", parts[0], parts[1]),
    ] {
        vault
            .get(&path, &altered)
            .await
            .expect_error(StatusCode::UNAUTHORIZED, "unauthenticated");
    }
    vault.get(&path, &good).await.expect(StatusCode::OK);
}

#[tokio::test]
async fn a_revoked_token_is_refused_until_it_expires() {
    let vault = TestVault::new().await;
    let token = vault.clerk();
    let path = format!("/v1/citizens/{CITIZEN_A}/documents");
    vault.get(&path, &token).await.expect(StatusCode::OK);
    let out = hoso_cli(&vault, &["token", "revoke", &token]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    vault
        .get(&path, &token)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "unauthenticated");
}

#[tokio::test]
async fn tokens_signed_with_the_attestation_or_audit_key_are_refused() {
    let vault = TestVault::new().await;
    let keys = vault.state.vault.keys();
    let path = format!("/v1/citizens/{CITIZEN_A}/documents");
    for key in [&keys.attestation, &keys.audit] {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(keys.token.kid().to_owned());
        let token = key.jws(&header, &good_claims()).unwrap();
        vault
            .get(&path, &token)
            .await
            .expect_error(StatusCode::UNAUTHORIZED, "unauthenticated");
    }
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let vault = TestVault::new().await;
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let request = axum::http::Request::get(format!("/v1/citizens/{CITIZEN_A}/documents"))
            .header("authorization", format!("{scheme} {}", vault.clerk()))
            .body(axum::body::Body::empty())
            .unwrap();
        vault.send(request).await.expect(StatusCode::OK);
    }
}

/// A token whose header carries a newline and an escape sequence cannot forge a log line or
/// drive an operator's terminal: the server's log, captured from a real `hoso serve`, holds the
/// refusal escaped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_client_sends_reaches_the_log_escaped() {
    use base64::Engine;
    let vault = TestVault::new().await;
    let s = &vault.state.settings;
    let addr = crate::processes::free_port();
    let log = vault.path().join("serve.log");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_hoso"))
        .arg("serve")
        .env("HOSO_DATABASE_URL", s.database_url.expose())
        .env("HOSO_STORAGE_URL", s.storage_url.to_string())
        .env("HOSO_KEYS_DIR", &s.keys_dir)
        .env("HOSO_LISTEN", addr.to_string())
        .env("HOSO_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut serving = crate::processes::Fleet(vec![(child, addr)]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !matches!(
        crate::processes::call(addr, "GET", "/readyz", None, None).await,
        Ok((200, _))
    ) {
        assert!(
            std::time::Instant::now() < deadline,
            "hoso serve did not start"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let b64 = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    let header = b64(
        &json!({"alg": "HS256\n2026-12-01T00:00:00Z  INFO hoso: FORGED admin signed in\u{1b}[2J"})
            .to_string(),
    );
    let token = format!("{header}.{}.c2ln", b64("{}"));
    let path = format!("/v1/citizens/{CITIZEN_A}/documents");
    let (status, _) = crate::processes::call(addr, "GET", &path, Some(&token), None)
        .await
        .unwrap();
    assert_eq!(status, 401);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    for (child, _) in &mut serving.0 {
        let _ = child.kill();
        let _ = child.wait();
    }
    let text = std::fs::read(&log).unwrap();
    let text = String::from_utf8_lossy(&text);
    assert!(
        text.contains("token refused"),
        "the refusal is logged: {text}"
    );
    assert!(
        !text.contains('\u{1b}'),
        "no raw escape byte in the log: {text:?}"
    );
    assert!(
        !text.lines().any(|l| l.starts_with("2026-12-01T00:00:00Z")),
        "no forged line: {text}"
    );
}

/// Tokens are accepted up to the clock-skew leeway past `exp`; a revoked one must stay revoked
/// that long too, whatever the sweeper forgets meanwhile.
#[tokio::test]
async fn a_revoked_token_stays_refused_through_the_leeway_after_its_expiry() {
    let vault = TestVault::new().await;
    let token = sign(
        &vault,
        &with(&[("exp", json!(now() - 5)), ("jti", json!("in-the-leeway"))]),
    );
    let path = format!("/v1/citizens/{CITIZEN_A}/documents");
    vault.get(&path, &token).await.expect(StatusCode::OK);
    hoso::records::tokens::revoke(&vault.state.vault, &token)
        .await
        .unwrap();
    hoso::records::maintenance::sweep_abandoned(&vault.state.vault, 0, true)
        .await
        .unwrap();
    vault
        .get(&path, &token)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "unauthenticated");
}
