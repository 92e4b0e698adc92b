//! hoso as a relying party of an OpenID Connect provider (an agency's SSO, the national eID):
//! the provider's metadata and keys, the authorization request (code flow with PKCE S256), the
//! code's redemption, and the complete check of the ID token it returns. Nothing here decides
//! who may do what in hoso; [`crate::records::sign_in`] maps the checked claims to a role.
//!
//! Every call to the provider goes through one HTTP client: a timeout on every request, no
//! redirect followed, answers of at most [`MAX_ANSWER`] bytes, and only to `https://` URLs (or
//! `http://` on a loopback address, a provider on the same machine).
//!
//! The ID token check (OpenID Connect Core §3.1.3.7): the header's `alg` must be one of
//! [`ALGORITHMS`] (public-key signatures only: no `none`, no HMAC, so a provider's public key
//! can never be used as an HMAC secret); the key is the provider's JWKS entry with the token's
//! `kid` (the JWKS is fetched again when a `kid` is unknown, at most once a minute, so a
//! rotated key is found and a flood of made-up `kid`s cannot hammer the provider); a key that
//! names its own `alg` must name the token's; `iss` exactly the issuer; `aud` contains the
//! client id and, when it names several, `azp` is the client id; `exp` and `iat` with hoso's
//! own leeway; `nonce` exactly the one this sign-in sent.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::LEEWAY_SECONDS;
use crate::config::{SecretString, allowed_url};

/// The signature algorithms an ID token may use.
pub const ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// The largest answer read from a provider (metadata, keys, tokens are a few kilobytes).
pub const MAX_ANSWER: usize = 256 * 1024;

/// How long the provider's metadata is used before it is read again.
const METADATA_FOR: Duration = Duration::from_secs(3600);

/// After a read of the provider failed, how long requests are answered "not answering" at once
/// instead of each waiting for the timeout (one lock is held across a read).
const FAILED_FOR: Duration = Duration::from_secs(10);

/// The least time between two reads of the provider's keys for a `kid` they lack.
const JWKS_AT_MOST_EVERY: Duration = Duration::from_secs(60);

/// Why talking to a provider, or a token it gave, did not end in checked claims.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// No answer in time, or no connection at all.
    #[error("the identity provider did not answer: {0}")]
    Unreachable(String),
    /// An answer that cannot be used (wrong issuer in its metadata, not JSON, an error status).
    #[error("the identity provider's answer cannot be used: {0}")]
    BadAnswer(String),
    /// A token that failed a check: forged, for someone else, expired, replayed.
    #[error("{0}")]
    Invalid(String),
}

/// hoso's registration at one provider.
#[derive(Clone, Debug)]
pub struct Registration {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: SecretString,
    pub scopes: String,
}

/// What the provider says about itself (OpenID Connect Discovery 1.0), as far as hoso uses it.
#[derive(Clone, Debug, Deserialize)]
pub struct Metadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    #[serde(default)]
    pub end_session_endpoint: Option<String>,
    #[serde(default)]
    pub userinfo_endpoint: Option<String>,
    /// RFC 9207: the provider adds `iss` to its answer on the redirect URI.
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
}

/// What the token endpoint answers, as far as hoso uses it.
#[derive(Deserialize)]
pub struct Tokens {
    pub id_token: String,
    #[serde(default)]
    pub access_token: Option<String>,
}

/// One authorization request's secrets, made fresh for each sign-in.
pub struct Secrets {
    pub state: String,
    pub nonce: String,
    pub code_verifier: String,
}

impl Secrets {
    pub fn fresh() -> Self {
        let random = || URL_SAFE_NO_PAD.encode(crate::crypto::random_bytes::<32>());
        Self {
            state: random(),
            nonce: random(),
            code_verifier: random(),
        }
    }
}

/// RFC 7636 S256: BASE64URL(SHA-256(ASCII(code_verifier))).
pub fn code_challenge(code_verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(crate::crypto::sha256(code_verifier.as_bytes()))
}

#[derive(Default)]
struct Cache {
    metadata: Option<(Arc<Metadata>, Instant)>,
    /// When a read of the provider last failed: for [`FAILED_FOR`] no request waits on it again.
    failed_at: Option<Instant>,
    /// The keys, and when they were read (read again after [`METADATA_FOR`], so a key the
    /// provider withdrew stops being trusted).
    jwks: Option<(JwkSet, Instant)>,
    /// When the keys were last read because a token named a `kid` they lacked.
    unknown_kid_read_at: Option<Instant>,
}

impl Cache {
    /// Fails at once while a failed read is recent.
    fn recently_failed(&self) -> Result<(), OidcError> {
        match self.failed_at {
            Some(at) if at.elapsed() < FAILED_FOR => Err(OidcError::Unreachable(
                "it did not answer a moment ago".into(),
            )),
            _ => Ok(()),
        }
    }

    /// Remembers whether a read failed because the provider did not answer.
    fn note<T>(&mut self, read: Result<T, OidcError>) -> Result<T, OidcError> {
        self.failed_at = match &read {
            Err(OidcError::Unreachable(_)) => Some(Instant::now()),
            _ => None,
        };
        read
    }
}

/// One provider: its registration, the HTTP client and what was read from it.
pub struct Provider {
    pub registration: Registration,
    http: reqwest::Client,
    cache: tokio::sync::Mutex<Cache>,
}

impl Provider {
    pub fn new(registration: Registration, timeout: Duration) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("the HTTP client for the identity provider: {e}"))?;
        Ok(Self {
            registration,
            http,
            cache: Default::default(),
        })
    }

    /// The provider's metadata, read again after an hour. Its `issuer` must be exactly the
    /// configured one, and every endpoint an allowed URL.
    pub async fn metadata(&self) -> Result<Arc<Metadata>, OidcError> {
        let mut cache = self.cache.lock().await;
        if let Some((metadata, at)) = &cache.metadata
            && at.elapsed() < METADATA_FOR
        {
            return Ok(metadata.clone());
        }
        cache.recently_failed()?;
        let issuer = &self.registration.issuer;
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let metadata: Metadata =
            cache.note(async { parse(&self.get(&url).await?, "metadata") }.await)?;
        if &metadata.issuer != issuer {
            return Err(OidcError::BadAnswer(format!(
                "its metadata names the issuer {:?}, not {issuer:?}",
                metadata.issuer
            )));
        }
        let endpoints = [
            Some(&metadata.authorization_endpoint),
            Some(&metadata.token_endpoint),
            Some(&metadata.jwks_uri),
            metadata.end_session_endpoint.as_ref(),
            metadata.userinfo_endpoint.as_ref(),
        ];
        if let Some(bad) = endpoints.into_iter().flatten().find(|u| !allowed_url(u)) {
            return Err(OidcError::BadAnswer(format!(
                "its metadata names an endpoint that is neither https nor loopback: {bad:?}"
            )));
        }
        let metadata = Arc::new(metadata);
        cache.metadata = Some((metadata.clone(), Instant::now()));
        Ok(metadata)
    }

    /// The URL the browser is sent to: the authorization code flow with PKCE S256.
    pub fn authorization_url(
        &self,
        metadata: &Metadata,
        redirect_uri: &str,
        secrets: &Secrets,
        acr_values: &[String],
    ) -> Result<String, OidcError> {
        let mut url = url::Url::parse(&metadata.authorization_endpoint)
            .map_err(|e| OidcError::BadAnswer(format!("its authorization endpoint: {e}")))?;
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("response_type", "code")
                .append_pair("client_id", &self.registration.client_id)
                .append_pair("redirect_uri", redirect_uri)
                .append_pair("scope", &self.registration.scopes)
                .append_pair("state", &secrets.state)
                .append_pair("nonce", &secrets.nonce)
                .append_pair("code_challenge", &code_challenge(&secrets.code_verifier))
                .append_pair("code_challenge_method", "S256");
            if !acr_values.is_empty() {
                query.append_pair("acr_values", &acr_values.join(" "));
            }
        }
        Ok(url.into())
    }

    /// Redeems an authorization code at the token endpoint (client_secret_basic) for the ID
    /// token, returned unchecked (see [`Provider::check_id_token`]), and the access token.
    pub async fn redeem(
        &self,
        metadata: &Metadata,
        code: &str,
        code_verifier: &str,
        redirect_uri: &str,
    ) -> Result<Tokens, OidcError> {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "authorization_code")
            .append_pair("code", code)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("code_verifier", code_verifier)
            .finish();
        // RFC 6749 §2.3.1: the id and secret are form-encoded before Basic encoding.
        let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect();
        let user: String = encode(&self.registration.client_id);
        let password: String = encode(self.registration.client_secret.expose());
        let request = self
            .http
            .post(&metadata.token_endpoint)
            .basic_auth(user, Some(password))
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(reqwest::header::ACCEPT, "application/json")
            .body(body);
        parse(&send(request).await?, "token answer")
    }

    /// The provider's userinfo for an access token (OpenID Connect Core §5.3), for claims a
    /// provider keeps out of its ID tokens. Its `sub` must be the ID token's (§5.3.2): the
    /// caller checks that.
    pub async fn userinfo(
        &self,
        metadata: &Metadata,
        access_token: &str,
    ) -> Result<Map<String, Value>, OidcError> {
        let Some(endpoint) = metadata.userinfo_endpoint.as_deref() else {
            return Ok(Map::new());
        };
        if !allowed_url(endpoint) {
            return Err(OidcError::BadAnswer(format!(
                "{endpoint:?} is neither https nor loopback"
            )));
        }
        let request = self
            .http
            .get(endpoint)
            .bearer_auth(access_token)
            .header(reqwest::header::ACCEPT, "application/json");
        parse(&send(request).await?, "userinfo")
    }

    /// Checks an ID token completely (see the module's documentation) and returns its claims.
    pub async fn check_id_token(
        &self,
        metadata: &Metadata,
        token: &str,
        nonce: &str,
    ) -> Result<Map<String, Value>, OidcError> {
        let client_id = &self.registration.client_id;
        let claims = self
            .check_jwt(
                metadata,
                token,
                client_id,
                &["exp", "iat", "iss", "aud", "sub"],
            )
            .await?;
        let audiences = match claims.get("aud") {
            Some(Value::Array(list)) => list.len(),
            _ => 1,
        };
        match claims.get("azp") {
            Some(Value::String(azp)) if azp != client_id => {
                return Err(OidcError::Invalid(
                    "the ID token was issued to another client (azp)".into(),
                ));
            }
            None if audiences > 1 => {
                return Err(OidcError::Invalid(
                    "the ID token names several audiences and no azp".into(),
                ));
            }
            Some(Value::String(_)) | None => {}
            Some(_) => return Err(OidcError::Invalid("the ID token's azp is not text".into())),
        }
        if claims.get("nonce").and_then(Value::as_str) != Some(nonce) {
            return Err(OidcError::Invalid(
                "the ID token's nonce is not the one this sign-in sent".into(),
            ));
        }
        Ok(claims)
    }

    /// Checks a JWT the provider signed: algorithm, key, signature, `iss`, `aud`, `exp`, `nbf`,
    /// `iat` and the `required` claims.
    pub async fn check_jwt(
        &self,
        metadata: &Metadata,
        token: &str,
        audience: &str,
        required: &[&str],
    ) -> Result<Map<String, Value>, OidcError> {
        let invalid = |why: String| OidcError::Invalid(why);
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| invalid(format!("the token's header cannot be read: {e}")))?;
        if !ALGORITHMS.contains(&header.alg) {
            return Err(invalid(format!(
                "the token is signed with {:?}, which is not accepted",
                header.alg
            )));
        }
        let key = self
            .key(metadata, header.kid.as_deref(), header.alg)
            .await?;
        let mut validation = Validation::new(header.alg);
        validation.algorithms = vec![header.alg];
        validation.set_issuer(&[&metadata.issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(required);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECONDS;
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation)
            .map_err(|e| invalid(format!("the token is not valid: {e}")))?;
        // jsonwebtoken checks only the registered claims it knows (`exp`, `nbf`, `iss`, `aud`,
        // `sub`); `iat` is checked here, present and not in the future.
        let now = crate::db::now_ms() / 1000;
        let Some(iat) = data.claims.get("iat").and_then(Value::as_i64) else {
            return Err(invalid("the token has no iat".into()));
        };
        if iat > now + LEEWAY_SECONDS as i64 {
            return Err(invalid("the token was issued in the future (iat)".into()));
        }
        Ok(data.claims)
    }

    /// The provider's key for a token: by `kid` (or the one key that fits when the token names
    /// none), reading the JWKS again if the `kid` is unknown (a rotated key) and no such read
    /// was made in the last minute (made-up `kid`s cannot make hoso hammer the provider). A key
    /// that names its algorithm must name the token's.
    async fn key(
        &self,
        metadata: &Metadata,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<DecodingKey, OidcError> {
        let mut cache = self.cache.lock().await;
        let known = cache
            .jwks
            .as_ref()
            .is_some_and(|(set, _)| pick(set, kid, alg).is_some());
        let expired = cache
            .jwks
            .as_ref()
            .is_none_or(|(_, at)| at.elapsed() >= METADATA_FOR);
        // A read for an unknown `kid` (a rotated key) at most once a minute.
        let may_read_again = cache
            .unknown_kid_read_at
            .is_none_or(|at| at.elapsed() >= JWKS_AT_MOST_EVERY);
        if expired || (!known && may_read_again) {
            if !expired {
                cache.unknown_kid_read_at = Some(Instant::now());
            }
            cache.recently_failed()?;
            let read = async { parse(&self.get(&metadata.jwks_uri).await?, "keys") }.await;
            let set: JwkSet = cache.note(read)?;
            cache.jwks = Some((set, Instant::now()));
        }
        let jwk = cache
            .jwks
            .as_ref()
            .and_then(|(set, _)| pick(set, kid, alg))
            .ok_or_else(|| {
                OidcError::Invalid(format!(
                    "the token's key {kid:?} is not among the provider's keys"
                ))
            })?;
        DecodingKey::from_jwk(jwk)
            .map_err(|e| OidcError::Invalid(format!("the provider's key cannot be used: {e}")))
    }

    async fn get(&self, url: &str) -> Result<Vec<u8>, OidcError> {
        if !allowed_url(url) {
            return Err(OidcError::BadAnswer(format!(
                "{url:?} is neither https nor loopback"
            )));
        }
        send(
            self.http
                .get(url)
                .header(reqwest::header::ACCEPT, "application/json"),
        )
        .await
    }
}

/// The JWK for a token: the one with its `kid`, or without a `kid`, the only signing key
/// whose algorithm (if it names one) is the token's. Symmetric keys are never used.
fn pick<'a>(
    set: &'a JwkSet,
    kid: Option<&str>,
    alg: Algorithm,
) -> Option<&'a jsonwebtoken::jwk::Jwk> {
    use jsonwebtoken::jwk::{AlgorithmParameters, PublicKeyUse};
    let fits = |jwk: &&jsonwebtoken::jwk::Jwk| {
        let usable = !matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_))
            && !matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption));
        let same_alg = jwk
            .common
            .key_algorithm
            .is_none_or(|a| a.to_string() == format!("{alg:?}"));
        usable && same_alg
    };
    match kid {
        Some(kid) => set
            .keys
            .iter()
            .filter(fits)
            .find(|jwk| jwk.common.key_id.as_deref() == Some(kid)),
        None => {
            let mut candidates = set.keys.iter().filter(fits);
            let only = candidates.next()?;
            candidates.next().is_none().then_some(only)
        }
    }
}

/// Sends a request to the provider and reads a successful answer, bounded in size.
async fn send(request: reqwest::RequestBuilder) -> Result<Vec<u8>, OidcError> {
    let mut response = request.send().await.map_err(|e| {
        if e.is_timeout() || e.is_connect() {
            OidcError::Unreachable(e.without_url().to_string())
        } else {
            OidcError::BadAnswer(e.without_url().to_string())
        }
    })?;
    let status = response.status();
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| OidcError::Unreachable(e.without_url().to_string()))?
    {
        if body.len() + chunk.len() > MAX_ANSWER {
            return Err(OidcError::BadAnswer(format!(
                "an answer over {MAX_ANSWER} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    if !status.is_success() {
        // The provider's own error code helps an operator; it is short and not secret.
        let code = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_default();
        return Err(OidcError::BadAnswer(format!(
            "HTTP {status} {}",
            code.escape_debug()
        )));
    }
    Ok(body)
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, OidcError> {
    serde_json::from_slice(body).map_err(|e| OidcError::BadAnswer(format!("its {what}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_or_loopback_http_is_called() {
        assert!(allowed_url("https://sso.danang.gov.vn/realms/hoso"));
        assert!(allowed_url("http://127.0.0.1:8081"));
        assert!(allowed_url("http://[::1]:8081/x"));
        assert!(allowed_url("http://localhost:9000"));
        assert!(!allowed_url("http://sso.danang.gov.vn"));
        assert!(!allowed_url("http://10.0.0.1"));
        assert!(!allowed_url("ftp://127.0.0.1"));
        assert!(!allowed_url("file:///etc/passwd"));
        assert!(!allowed_url("not a url"));
    }

    #[test]
    fn the_code_challenge_is_rfc_7636_s256() {
        // RFC 7636 Appendix B.
        assert_eq!(
            code_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }
}
