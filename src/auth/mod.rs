//! Who is calling. Staff, citizens and grant holders present an EdDSA JWT signed by the vault's
//! token key; [`Caller`] is what a handler gets once the token has passed every check.
//!
//! One algorithm only (EdDSA): `alg: none`, HS256 and anything else fail at the header. `iss`,
//! `aud`, `exp`, `nbf` and `sub` are required and checked; claims of the wrong JSON type fail
//! deserialisation; a revoked `jti` is refused until the token expires.

pub mod oidc;

use jsonwebtoken::{Algorithm, Header, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::crypto::CitizenIndex;
use crate::crypto::keyring::Keyring;
use crate::db::Db;
use crate::domain::{Code, NOT_APPLICABLE, NationalId, Role, SignInKind};
use crate::error::ApiError;

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECONDS: u64 = 30;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub office: Option<String>,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub jti: String,
    /// Set only on grant tokens: the grant this token is a handle for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<String>,
    /// Set only on tokens given at a sign-in through an identity provider: which one (its
    /// end-session endpoint is where signing out sends the browser next).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<SignInKind>,
}

/// The settings a token is checked against.
#[derive(Clone, Debug)]
pub struct TokenPolicy {
    pub issuer: String,
    pub audience: String,
}

/// What a token asks for when it is issued.
pub struct TokenRequest<'a> {
    pub role: Role,
    pub sub: &'a str,
    pub office: Option<&'a str>,
    pub ttl_seconds: i64,
    pub grant: Option<Uuid>,
    /// The identity provider the person signed in through, if any.
    pub via: Option<SignInKind>,
}

pub fn issue(
    keys: &Keyring,
    policy: &TokenPolicy,
    req: TokenRequest<'_>,
) -> Result<(String, Claims), ApiError> {
    let now = crate::db::now_ms() / 1000;
    let claims = Claims {
        iss: policy.issuer.clone(),
        aud: policy.audience.clone(),
        sub: req.sub.to_owned(),
        role: req.role,
        office: req.office.map(str::to_owned),
        iat: now,
        nbf: now,
        exp: now + req.ttl_seconds,
        jti: Uuid::now_v7().to_string(),
        grant: req.grant.map(|g| g.to_string()),
        via: req.via,
    };
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(keys.token.kid().to_owned());
    let token = keys.token.jws(&header, &claims)?;
    Ok((token, claims))
}

/// Checks signature, algorithm and the registered claims. Does not consult revocation.
pub fn decode(keys: &Keyring, policy: &TokenPolicy, token: &str) -> Result<Claims, ApiError> {
    decode_with(keys, policy, token, true)
}

fn decode_with(
    keys: &Keyring,
    policy: &TokenPolicy,
    token: &str,
    check_signature: bool,
) -> Result<Claims, ApiError> {
    let mut validation = Validation::new(Algorithm::EdDSA);
    if !check_signature {
        validation.insecure_disable_signature_validation();
    }
    validation.set_issuer(&[&policy.issuer]);
    validation.set_audience(&[&policy.audience]);
    validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.leeway = LEEWAY_SECONDS;
    match jsonwebtoken::decode::<Claims>(token, &keys.token.decoding_key(), &validation) {
        Ok(data) => Ok(data.claims),
        Err(e) if matches!(e.kind(), ErrorKind::ExpiredSignature) => Err(ApiError::TokenExpired),
        Err(e) => {
            // The reason helps an operator; the token itself never goes to the log.
            // Escaped: the reason can quote the client's own header (an `alg` with a newline
            // and an escape sequence must not forge a log line or drive the terminal).
            tracing::info!(reason = %e.to_string().escape_debug(), "token refused");
            Err(ApiError::Unauthenticated("the token is not valid".into()))
        }
    }
}

/// An authenticated caller.
#[derive(Clone, Debug)]
pub struct Caller {
    pub role: Role,
    /// Staff id, or the citizen's own national ID for `citizen`.
    sub: String,
    pub office: String,
    pub grant: Option<Uuid>,
    /// When the token expires, in seconds since the epoch (the console signs out then).
    pub expires_at: i64,
    /// The token's id, which signing out revokes.
    pub jti: String,
    /// The identity provider the caller signed in through, if any.
    pub via: Option<SignInKind>,
    /// A citizen's blind index, computed once when the token is checked (the key may be in a
    /// token that has to be asked).
    citizen_idx: Option<CitizenIndex>,
}

impl Caller {
    fn from_claims(claims: Claims, keys: &Keyring) -> Result<Self, ApiError> {
        let invalid = || ApiError::Unauthenticated("the token's claims are not valid".into());
        let citizen_idx = match claims.role {
            Role::Citizen => {
                let id = NationalId::parse(&claims.sub).map_err(|_| invalid())?;
                Some(keys.citizen_index(&id)?)
            }
            _ => {
                Code::parse(&claims.sub, "sub").map_err(|_| invalid())?;
                None
            }
        };
        let office = match &claims.office {
            Some(office) => Code::parse(office, "office")
                .map_err(|_| invalid())?
                .to_string(),
            None => NOT_APPLICABLE.to_owned(),
        };
        let grant = match &claims.grant {
            Some(g) if claims.role == Role::Officer => {
                Some(Uuid::parse_str(g).map_err(|_| invalid())?)
            }
            Some(_) => return Err(invalid()),
            None => None,
        };
        Ok(Self {
            role: claims.role,
            sub: claims.sub,
            office,
            grant,
            expires_at: claims.exp,
            jti: claims.jti,
            via: claims.via,
            citizen_idx,
        })
    }

    /// A caller an agency system is, by an access token its staff provider issued (RFC 9068),
    /// once [`crate::records::sign_in::agency_caller`] has checked it.
    pub fn agency(
        role: Role,
        staff_id: String,
        office: String,
        expires_at: i64,
        jti: String,
    ) -> Self {
        Self {
            role,
            sub: staff_id,
            office,
            grant: None,
            expires_at,
            jti,
            via: None,
            citizen_idx: None,
        }
    }

    /// The subject as the token names it: a staff id, or for a citizen their own national ID.
    /// Only for answering the caller about themself (`GET /v1/me`), never for a log.
    pub fn subject(&self) -> &str {
        &self.sub
    }

    /// The blind index of the citizen behind a citizen token.
    pub fn citizen_index(&self) -> Option<&CitizenIndex> {
        self.citizen_idx.as_ref()
    }

    /// The citizen behind a citizen token.
    pub fn citizen(&self) -> Option<NationalId> {
        match self.role {
            Role::Citizen => NationalId::parse(&self.sub).ok(),
            _ => None,
        }
    }

    /// The staff id, for staff roles. A citizen's national ID is never returned here, so it
    /// cannot end up in an audit entry or a log line.
    pub fn staff_id(&self) -> Option<&str> {
        match self.role {
            Role::Citizen => None,
            _ => Some(&self.sub),
        }
    }

    /// [`Caller::staff_id`] for a record that always names someone ("-" for a citizen).
    pub fn staff_or_none(&self) -> &str {
        self.staff_id().unwrap_or(NOT_APPLICABLE)
    }

    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "the {} role may not do this",
                self.role
            )))
        }
    }
}

/// Tokens whose signature this process has already checked, each by the SHA-256 of its whole
/// text, under the token key that checked them. An officer's screen presents the same token on
/// every request, and the Ed25519 check was the largest cost of a small copy after the
/// database (`perf` on `scripts/bench`). Only the signature is
/// remembered: algorithm, `iss`, `aud`, `exp`, `nbf` and the claims are checked on every
/// request, and revocation is asked of the database every time. A different token key (a
/// rotation) empties the memory, so every token is checked afresh.
#[derive(Default)]
pub struct VerifiedTokens {
    /// The token key the remembered tokens were checked with, and their digests.
    seen: std::sync::Mutex<(Vec<u8>, std::collections::HashSet<[u8; 32]>)>,
}

impl VerifiedTokens {
    /// Enough for every token in use at a busy office; beyond it the memory starts afresh.
    const MOST: usize = 10_000;

    fn decode(
        &self,
        keys: &Keyring,
        policy: &TokenPolicy,
        token: &str,
    ) -> Result<Claims, ApiError> {
        let digest = crate::crypto::sha256(token.as_bytes());
        let key = keys.token.public_key();
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.0 != key {
            *seen = (key.to_vec(), Default::default());
        }
        let known = seen.1.contains(&digest);
        drop(seen);
        let claims = decode_with(keys, policy, token, !known)?;
        if !known {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            if seen.1.len() >= Self::MOST {
                seen.1.clear();
            }
            // Only if the key is still the one that checked it.
            if seen.0 == key {
                seen.1.insert(digest);
            }
        }
        Ok(claims)
    }
}

/// Why a token was refused. One the vault itself issued, refused only because it expired or
/// was revoked, names its holder: such a refusal is logged like any other (see
/// `records::refuse_token`). A token that is not the vault's names nobody.
#[derive(Debug)]
pub enum Refusal {
    Invalid(ApiError),
    Expired(Caller),
    Revoked(Caller),
}

/// Checks a bearer token completely: signature (once per token, see [`VerifiedTokens`]) and
/// claims, then the revocation list.
pub async fn authenticate(
    keys: &Keyring,
    policy: &TokenPolicy,
    verified: &VerifiedTokens,
    db: &Db,
    token: &str,
) -> Result<Caller, Refusal> {
    let claims = match verified.decode(keys, policy, token) {
        Ok(claims) => claims,
        Err(ApiError::TokenExpired) => {
            return Err(match expired_caller(keys, policy, token) {
                Some(caller) => Refusal::Expired(caller),
                None => Refusal::Invalid(ApiError::TokenExpired),
            });
        }
        Err(e) => return Err(Refusal::Invalid(e)),
    };
    let revoked = crate::db::revoked_tokens::is_token_revoked(&db.pool, &claims.jti)
        .await
        .map_err(|e| Refusal::Invalid(e.into()))?;
    let caller = Caller::from_claims(claims, keys).map_err(Refusal::Invalid)?;
    if revoked {
        return Err(Refusal::Revoked(caller));
    }
    Ok(caller)
}

/// Who holds an expired token that is otherwise the vault's own: signature, algorithm, issuer,
/// audience and claims all checked, only `exp` not.
fn expired_caller(keys: &Keyring, policy: &TokenPolicy, token: &str) -> Option<Caller> {
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_issuer(&[&policy.issuer]);
    validation.set_audience(&[&policy.audience]);
    validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
    validation.validate_exp = false;
    validation.validate_nbf = true;
    validation.leeway = LEEWAY_SECONDS;
    let data =
        jsonwebtoken::decode::<Claims>(token, &keys.token.decoding_key(), &validation).ok()?;
    Caller::from_claims(data.claims, keys).ok()
}
