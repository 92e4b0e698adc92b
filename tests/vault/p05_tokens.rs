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
    jsonwebtoken::encode(&header, claims, &keys.token.encoding_key()).unwrap()
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
