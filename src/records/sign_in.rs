//! Signing in through an identity provider: staff through their agency's OpenID Connect
//! provider, citizens through the national eID. The provider says who the person is; hoso
//! checks its ID token completely ([`crate::auth::oidc`]), maps its claims to a hoso role,
//! office and subject by the rules of that kind of sign-in, and issues its own short token, so
//! the API keeps one way to authenticate. Every sign-in, refusal and sign-out is logged first.
//!
//! A flow's state is single-use, expires in [`FLOW_SECONDS`] and is bound to the browser that
//! started it (the SHA-256 of a random cookie set at the start): a link with someone else's
//! state, a replayed callback or one from another browser ends in a refusal, logged.

use std::time::Duration;

use super::Vault;
use super::access::refuse_because;
use crate::audit::{AuditAction, Entry};
use crate::auth::oidc::{Metadata, OidcError, Provider, Registration, Secrets};
use crate::auth::{self, Caller, TokenRequest};
use crate::config::{SecretString, SignInSettings};
use crate::db::sign_in_flows::{self, Flow};
use crate::domain::{Code, NOT_APPLICABLE, NationalId, Role, SignInKind};
use crate::error::ApiError;

/// How long a started sign-in may take, provider's login page included.
pub const FLOW_SECONDS: i64 = 600;

/// How a kind of person's claims become a hoso identity.
pub enum Rules {
    Staff {
        role_claim: String,
        office_claim: String,
        id_claim: String,
    },
    Citizen {
        id_claim: String,
        /// Accepted `acr` values, the lowest first; empty: any.
        acr: Vec<String>,
    },
}

/// One kind of sign-in: its provider and its rules.
pub struct Desk {
    pub provider: Provider,
    pub rules: Rules,
}

/// The sign-ins this vault offers; a kind without a provider signs in by link only.
pub struct SignIn {
    pub staff: Option<Desk>,
    pub citizen: Option<Desk>,
    /// Lifetime of the token a sign-in gives.
    pub session_seconds: i64,
    /// Sign-ins this process started this minute (each writes a flow row): a flood of
    /// `/auth/*/login` requests, which anyone can send, is answered 429 past the limit instead
    /// of filling `sign_in_flows`. The same per-minute count as refusals.
    starts: super::RefusalLimiter,
}

impl SignIn {
    /// From the settings, reading each client secret file (which must be 0600).
    pub fn from_settings(s: &SignInSettings) -> Result<Self, String> {
        let timeout = Duration::from_secs(s.oidc_timeout_seconds);
        let desk = |kind: SignInKind,
                    issuer: &Option<String>,
                    id: &Option<String>,
                    secret: &Option<std::path::PathBuf>,
                    rules: Rules|
         -> Result<Option<Desk>, String> {
            let (Some(issuer), Some(client_id), Some(secret)) = (issuer, id, secret) else {
                if issuer.is_some() || id.is_some() || secret.is_some() {
                    return Err(format!(
                        "{kind} sign-in needs all three of HOSO_OIDC_{0}_ISSUER, \
                         HOSO_OIDC_{0}_CLIENT_ID and HOSO_OIDC_{0}_CLIENT_SECRET_FILE",
                        kind.as_str().to_uppercase()
                    ));
                }
                return Ok(None);
            };
            let registration = Registration {
                issuer: issuer.clone(),
                client_id: client_id.clone(),
                client_secret: read_secret(secret)?,
                scopes: s.oidc_scopes.clone(),
            };
            Ok(Some(Desk {
                provider: Provider::new(registration, timeout)?,
                rules,
            }))
        };
        Ok(Self {
            staff: desk(
                SignInKind::Staff,
                &s.oidc_staff_issuer,
                &s.oidc_staff_client_id,
                &s.oidc_staff_client_secret_file,
                Rules::Staff {
                    role_claim: s.oidc_staff_role_claim.clone(),
                    office_claim: s.oidc_staff_office_claim.clone(),
                    id_claim: s.oidc_staff_id_claim.clone(),
                },
            )?,
            citizen: desk(
                SignInKind::Citizen,
                &s.oidc_citizen_issuer,
                &s.oidc_citizen_client_id,
                &s.oidc_citizen_client_secret_file,
                Rules::Citizen {
                    id_claim: s.oidc_citizen_id_claim.clone(),
                    acr: s.oidc_citizen_acr.clone(),
                },
            )?,
            session_seconds: i64::try_from(s.session_hours * 3600).unwrap_or(8 * 3600),
            starts: super::RefusalLimiter::new(s.sign_in_starts_per_minute),
        })
    }

    pub fn desk(&self, kind: SignInKind) -> Option<&Desk> {
        match kind {
            SignInKind::Staff => self.staff.as_ref(),
            SignInKind::Citizen => self.citizen.as_ref(),
        }
    }
}

/// A client secret from its file: owner-only, trimmed, not empty.
fn read_secret(path: &std::path::Path) -> Result<SecretString, String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("the client secret file {}: {e}", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "the client secret file {} can be read by other users; run `chmod 600 {}`",
            path.display(),
            path.display()
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("the client secret file {}: {e}", path.display()))?;
    let secret = text.trim();
    if secret.is_empty() {
        return Err(format!(
            "the client secret file {} is empty",
            path.display()
        ));
    }
    Ok(secret.parse().unwrap_or_else(|never| match never {}))
}

/// Why a sign-in did not end in a session: what the person is told, by a stable code.
#[derive(Debug)]
pub enum SignInError {
    /// This kind of sign-in has no provider here.
    NotConfigured,
    /// The provider did not answer in time.
    Unreachable,
    /// The provider answered something unusable.
    ProviderFault,
    /// The person cancelled, or the provider refused them (`error=` on the callback).
    Cancelled,
    /// The sign-in's state is unknown, used, expired or from another browser.
    Expired,
    /// The provider's token failed a check (forged, for another client, another issuer…).
    Invalid,
    /// The person is who they say, but hoso cannot give them a session.
    Refused(Refusal),
    /// Too many refusals this minute.
    TooMany,
    /// The vault itself failed (database, audit log).
    Vault(ApiError),
}

/// Why a checked identity gets no session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    NoRole,
    UnknownRole,
    BadOffice,
    BadStaffId,
    BadNationalId,
    /// The lowest accepted assurance level.
    AcrTooLow(String),
}

impl SignInError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotConfigured => "not_configured",
            Self::Unreachable => "provider_unreachable",
            Self::ProviderFault => "provider_error",
            Self::Cancelled => "cancelled",
            Self::Expired => "sign_in_expired",
            Self::Invalid => "sign_in_invalid",
            Self::Refused(Refusal::NoRole) => "no_role",
            Self::Refused(Refusal::UnknownRole) => "unknown_role",
            Self::Refused(Refusal::BadOffice) => "bad_office",
            Self::Refused(Refusal::BadStaffId) => "bad_staff_id",
            Self::Refused(Refusal::BadNationalId) => "bad_national_id",
            Self::Refused(Refusal::AcrTooLow(_)) => "acr_too_low",
            Self::TooMany => "too_many_requests",
            Self::Vault(_) => "unavailable",
        }
    }
}

impl From<OidcError> for SignInError {
    fn from(e: OidcError) -> Self {
        match e {
            OidcError::Unreachable(_) => Self::Unreachable,
            OidcError::BadAnswer(_) => Self::ProviderFault,
            OidcError::Invalid(_) => Self::Invalid,
        }
    }
}

fn hash_hex(text: &str) -> String {
    hex::encode(crate::crypto::sha256(text.as_bytes()))
}

/// Where the provider sends the browser back for this kind.
pub fn redirect_uri(vault: &Vault, kind: SignInKind) -> String {
    format!("{}/auth/{kind}/callback", vault.console_url)
}

/// Starts a sign-in for the browser whose sign-in cookie is `browser`: keeps the flow and
/// answers the provider's URL to send it to.
pub async fn start(vault: &Vault, kind: SignInKind, browser: &str) -> Result<String, SignInError> {
    let desk = vault.sign_in.desk(kind).ok_or(SignInError::NotConfigured)?;
    if !vault.sign_in.starts.within("sign-in starts") {
        return Err(SignInError::TooMany);
    }
    let metadata = desk.provider.metadata().await.map_err(|e| {
        tracing::warn!(%kind, error = %e, "sign-in could not start");
        SignInError::from(e)
    })?;
    let secrets = Secrets::fresh();
    let now = crate::db::now_ms();
    let flow = Flow {
        kind,
        browser_hash: hash_hex(browser),
        nonce: secrets.nonce.clone(),
        code_verifier: secrets.code_verifier.clone(),
        expires_at: now + FLOW_SECONDS * 1000,
    };
    let keep = async {
        let mut tx = vault.db.begin().await?;
        sign_in_flows::insert(&mut tx, &hash_hex(&secrets.state), &flow, now).await?;
        tx.commit("keep a sign-in").await
    };
    keep.await
        .map_err(|e| SignInError::Vault(ApiError::from(e)))?;
    let acr = match &desk.rules {
        Rules::Citizen { acr, .. } => acr.as_slice(),
        Rules::Staff { .. } => &[],
    };
    Ok(desk
        .provider
        .authorization_url(&metadata, &redirect_uri(vault, kind), &secrets, acr)?)
}

/// What the provider sent back on the redirect URI.
#[derive(Debug, Default, serde::Deserialize)]
pub struct Callback {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    pub iss: Option<String>,
}

/// Who a checked ID token names, in hoso's terms.
struct Person {
    role: Role,
    sub: String,
    office: Option<String>,
    citizen: Option<NationalId>,
}

/// Ends a sign-in: takes its flow, redeems the code, checks the ID token, maps its claims and
/// issues hoso's token, logged first. Every refusal is logged too (see the module's notes).
pub async fn finish(
    vault: &Vault,
    kind: SignInKind,
    browser: Option<&str>,
    callback: Callback,
) -> Result<String, SignInError> {
    let desk = vault.sign_in.desk(kind).ok_or(SignInError::NotConfigured)?;
    let attempt = Attempt {
        vault,
        kind,
        issuer: &desk.provider.registration.issuer,
    };
    let flow = match flow_fits(
        take_flow(vault, callback.state.as_deref()).await?,
        kind,
        browser,
    ) {
        Ok(flow) => flow,
        Err(why) => return Err(attempt.refuse(None, why, SignInError::Expired).await),
    };
    if let Some(error) = &callback.error {
        let error =
            Code::parse(error, "error").map_or("(unreadable)".to_owned(), |c| c.to_string());
        let why = format!("the provider answered error={error}");
        return Err(attempt.refuse(None, &why, SignInError::Cancelled).await);
    }
    let metadata = desk.provider.metadata().await?;
    let code = match answer_fits(&callback, &metadata) {
        Ok(code) => code,
        Err(why) => return Err(attempt.refuse(None, why, SignInError::Invalid).await),
    };
    let claims = attempt.identify(desk, &metadata, code, &flow).await?;
    let acr = text(&claims, "acr").unwrap_or("-").to_owned();
    match person(&desk.rules, &claims) {
        Ok(person) => attempt.session(person, &acr).await,
        Err((refusal, known)) => {
            let why = format!("{refusal:?}, acr {acr}");
            Err(attempt
                .refuse(Some(known), &why, SignInError::Refused(refusal))
                .await)
        }
    }
}

/// The ID token's claims, completed from the provider's userinfo when a claim the rules need is
/// missing (some providers keep profile claims out of ID tokens). Userinfo only adds claims the
/// ID token lacks, and only when it names the same `sub`.
async fn with_userinfo(
    desk: &Desk,
    metadata: &Metadata,
    mut claims: Claims,
    access_token: Option<&str>,
) -> Result<Claims, OidcError> {
    let needed: Vec<&str> = match &desk.rules {
        Rules::Staff {
            role_claim,
            office_claim,
            id_claim,
        } => {
            vec![role_claim, office_claim, id_claim]
        }
        Rules::Citizen { id_claim, .. } => vec![id_claim],
    };
    let (Some(access_token), Some(_)) = (access_token, &metadata.userinfo_endpoint) else {
        return Ok(claims);
    };
    if needed.iter().all(|c| claims.contains_key(*c)) {
        return Ok(claims);
    }
    let info = desk.provider.userinfo(metadata, access_token).await?;
    if info.get("sub") != claims.get("sub") {
        return Err(OidcError::Invalid(
            "the provider's userinfo names another sub than its ID token".into(),
        ));
    }
    for (name, value) in info {
        claims.entry(name).or_insert(value);
    }
    Ok(claims)
}

/// Takes the flow named by the callback's state, if any: it is gone afterwards either way.
async fn take_flow(vault: &Vault, state: Option<&str>) -> Result<Option<Flow>, SignInError> {
    let Some(state) = state else {
        return Ok(None);
    };
    let take = async {
        let mut tx = vault.db.begin().await?;
        let flow = sign_in_flows::take(&mut tx, &hash_hex(state)).await?;
        tx.commit("take a sign-in").await?;
        Ok::<_, crate::db::DbError>(flow)
    };
    take.await.map_err(|e| SignInError::Vault(e.into()))
}

/// The taken flow, if it may end here: this kind, in time, from the browser that started it.
fn flow_fits(
    flow: Option<Flow>,
    kind: SignInKind,
    browser: Option<&str>,
) -> Result<Flow, &'static str> {
    let Some(flow) = flow else {
        return Err("the sign-in's state is unknown or already used");
    };
    if flow.expires_at <= crate::db::now_ms() {
        return Err("the sign-in expired");
    }
    if flow.kind != kind || browser.map(hash_hex).as_deref() != Some(flow.browser_hash.as_str()) {
        return Err("the sign-in was started in another browser or for another kind");
    }
    Ok(flow)
}

/// The code from the provider's answer, once its `iss` fits. RFC 9207: an `iss` on the
/// callback must be the issuer, and is required when the provider says it sends one (a mix-up
/// attack swaps providers' answers).
fn answer_fits<'a>(callback: &'a Callback, metadata: &Metadata) -> Result<&'a str, &'static str> {
    match &callback.iss {
        Some(iss) if iss != &metadata.issuer => return Err("the callback's iss is another issuer"),
        None if metadata.authorization_response_iss_parameter_supported => {
            return Err("the callback has no iss though the provider sends one");
        }
        _ => {}
    }
    callback.code.as_deref().ok_or("the callback has no code")
}

/// What is known of the person at a refusal, for its log entry.
#[derive(Default)]
struct Known {
    role: Option<Role>,
    staff_id: Option<String>,
    office: Option<String>,
    citizen: Option<NationalId>,
}

/// One sign-in attempt, for its log entries.
struct Attempt<'a> {
    vault: &'a Vault,
    kind: SignInKind,
    issuer: &'a str,
}

impl Attempt<'_> {
    /// The entry for this attempt. A refused staff member whose role is unknown is recorded as
    /// `officer`, the role with no standing rights; the reason says why they were refused.
    fn entry(&self, known: &Known) -> Result<Entry, ApiError> {
        let keys = self.vault.keys();
        let citizen_idx = known
            .citizen
            .as_ref()
            .map(|id| keys.citizen_index(id))
            .transpose()?;
        let actor = match (&known.staff_id, &citizen_idx) {
            (Some(staff), _) => staff.clone(),
            (None, Some(idx)) => super::access::citizen_actor(idx),
            (None, None) => "unknown".to_owned(),
        };
        let role = known.role.unwrap_or(match self.kind {
            SignInKind::Citizen => Role::Citizen,
            SignInKind::Staff => Role::Officer,
        });
        let office = known
            .office
            .clone()
            .unwrap_or_else(|| NOT_APPLICABLE.to_owned());
        let mut e = Entry::new(actor, role, office, AuditAction::SessionSignIn);
        e.citizen_idx = citizen_idx;
        Ok(e)
    }

    /// Redeems the code and checks what the provider says of the person (the ID token,
    /// completed from userinfo): their claims, or a logged refusal.
    async fn identify(
        &self,
        desk: &Desk,
        metadata: &Metadata,
        code: &str,
        flow: &Flow,
    ) -> Result<Claims, SignInError> {
        let redirect = redirect_uri(self.vault, self.kind);
        let tokens = match desk
            .provider
            .redeem(metadata, code, &flow.code_verifier, &redirect)
            .await
        {
            Ok(tokens) => tokens,
            // A code the provider refuses (replayed, stolen, another verifier) is a refusal.
            Err(OidcError::BadAnswer(why)) => {
                let why = format!("the provider would not redeem the code: {why}");
                return Err(self.refuse(None, &why, SignInError::ProviderFault).await);
            }
            Err(e) => {
                tracing::warn!(kind = %self.kind, error = %e, "sign-in: the code could not be redeemed");
                return Err(e.into());
            }
        };
        let checked = async {
            let claims = desk
                .provider
                .check_id_token(metadata, &tokens.id_token, &flow.nonce)
                .await?;
            with_userinfo(desk, metadata, claims, tokens.access_token.as_deref()).await
        };
        match checked.await {
            Ok(claims) => Ok(claims),
            Err(OidcError::Invalid(why)) => {
                Err(self.refuse(None, &why, SignInError::Invalid).await)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Issues the person's session, logged first.
    async fn session(&self, person: Person, acr: &str) -> Result<String, SignInError> {
        let vault = self.vault;
        let (token, claims) = auth::issue(
            &vault.keys(),
            &vault.token_policy,
            TokenRequest {
                role: person.role,
                sub: &person.sub,
                office: person.office.as_deref(),
                ttl_seconds: vault.sign_in.session_seconds,
                grant: None,
                via: Some(self.kind),
            },
        )
        .map_err(SignInError::Vault)?;
        let mut e = self
            .entry(&Known {
                role: Some(person.role),
                staff_id: person.citizen.is_none().then(|| person.sub.clone()),
                office: person.office.clone(),
                citizen: person.citizen.clone(),
            })
            .map_err(SignInError::Vault)?;
        e.reason = Some(format!(
            "{} sign-in via {}, acr {acr}, jti {}",
            self.kind, self.issuer, claims.jti
        ));
        let actor = e.actor.clone();
        super::tokens::record_session(vault, &claims, actor, self.kind.into(), e)
            .await
            .map_err(SignInError::Vault)?;
        Ok(token)
    }

    /// Logs a refused sign-in and returns what the person is told.
    async fn refuse(&self, known: Option<Known>, why: &str, err: SignInError) -> SignInError {
        let e = match self.entry(&known.unwrap_or_default()) {
            Ok(e) => e,
            Err(unavailable) => return SignInError::Vault(unavailable),
        };
        let reason = format!("{} sign-in via {}: {why}", self.kind, self.issuer);
        tracing::info!(kind = %self.kind, reason = %why.escape_debug(), "sign-in refused");
        match refuse_because(self.vault, e, ApiError::Forbidden(why.to_owned()), reason).await {
            ApiError::TooManyRequests => SignInError::TooMany,
            ApiError::Forbidden(_) => err,
            other => SignInError::Vault(other),
        }
    }
}

/// A claim as text, if it is one.
fn text<'a>(claims: &'a Claims, name: &str) -> Option<&'a str> {
    claims.get(name).and_then(|v| v.as_str())
}

/// Maps checked claims to a person by `rules`; a refusal comes with what is known of them.
fn person(rules: &Rules, claims: &Claims) -> Result<Person, (Refusal, Known)> {
    match rules {
        Rules::Staff {
            role_claim,
            office_claim,
            id_claim,
        } => staff(claims, role_claim, office_claim, id_claim),
        Rules::Citizen { id_claim, acr } => citizen(claims, id_claim, acr),
    }
}

type Claims = serde_json::Map<String, serde_json::Value>;

/// A staff member: a hoso staff role (a staff provider cannot make citizens: their sign-in is
/// the national eID's), a staff id and an office code that parse.
fn staff(
    claims: &Claims,
    role_claim: &str,
    office_claim: &str,
    id_claim: &str,
) -> Result<Person, (Refusal, Known)> {
    let staff_id = text(claims, id_claim).and_then(|s| Code::parse(s, "staff id").ok());
    let office = text(claims, office_claim).and_then(|s| Code::parse(s, "office").ok());
    let role = text(claims, role_claim).map(Role::parse);
    let known = Known {
        role: role.flatten().filter(|r| *r != Role::Citizen),
        staff_id: staff_id.as_ref().map(Code::to_string),
        office: office.as_ref().map(Code::to_string),
        citizen: None,
    };
    let role = match role {
        None => return Err((Refusal::NoRole, known)),
        Some(None) | Some(Some(Role::Citizen)) => return Err((Refusal::UnknownRole, known)),
        Some(Some(role)) => role,
    };
    let Some(staff_id) = staff_id else {
        return Err((Refusal::BadStaffId, known));
    };
    let Some(office) = office else {
        return Err((Refusal::BadOffice, known));
    };
    Ok(Person {
        role,
        sub: staff_id.to_string(),
        office: Some(office.to_string()),
        citizen: None,
    })
}

/// A citizen: a national ID that parses and, when levels are set, an accepted `acr`.
fn citizen(claims: &Claims, id_claim: &str, acr: &[String]) -> Result<Person, (Refusal, Known)> {
    let mut known = Known {
        role: Some(Role::Citizen),
        ..Known::default()
    };
    let Some(id) = text(claims, id_claim).and_then(|s| NationalId::parse(s).ok()) else {
        return Err((Refusal::BadNationalId, known));
    };
    known.citizen = Some(id.clone());
    if let Some(lowest) = acr.first()
        && !text(claims, "acr").is_some_and(|a| acr.iter().any(|ok| ok == a))
    {
        return Err((Refusal::AcrTooLow(lowest.clone()), known));
    }
    Ok(Person {
        role: Role::Citizen,
        sub: id.expose().to_owned(),
        office: None,
        citizen: Some(id),
    })
}

/// Whether a bearer token is a JWT access token (RFC 9068 §2.1: `typ` `at+jwt`), which only
/// the staff provider issues to agency systems; anything else is left to hoso's own check.
pub fn is_access_token(token: &str) -> bool {
    jsonwebtoken::decode_header(token).is_ok_and(|h| {
        h.typ.is_some_and(|t| {
            t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt")
        })
    })
}

/// An agency system calling the API with an access token from the staff provider (OAuth 2.0
/// client credentials): checked as an ID token is (signature by the provider's keys, algorithm
/// allow-list, `iss` the staff issuer, `exp`, `nbf`, `iat`) but for hoso's own audience
/// (`HOSO_TOKEN_AUDIENCE`), with RFC 9068's `client_id` and `jti`; role, office and id come
/// from the same claims as a staff member's, and a revoked `jti` is refused.
pub async fn agency_caller(vault: &Vault, token: &str) -> Result<Caller, ApiError> {
    let Some(desk) = vault.sign_in.staff.as_ref() else {
        return Err(ApiError::Unauthenticated(
            "access tokens are accepted only from the staff identity provider, and none is set"
                .into(),
        ));
    };
    let invalid = |why: String| {
        tracing::info!(reason = %why.escape_debug(), "access token refused");
        ApiError::Unauthenticated("the access token is not valid".into())
    };
    let metadata = desk.provider.metadata().await.map_err(|e| match e {
        OidcError::Invalid(why) => invalid(why),
        other => ApiError::Unavailable(other.to_string()),
    })?;
    let required = ["exp", "iat", "iss", "aud", "sub", "client_id", "jti"];
    let claims = desk
        .provider
        .check_jwt(&metadata, token, &vault.token_policy.audience, &required)
        .await
        .map_err(|e| match e {
            OidcError::Invalid(why) => invalid(why),
            other => ApiError::Unavailable(other.to_string()),
        })?;
    let (Some(jti), Some(exp)) = (
        text(&claims, "jti"),
        claims.get("exp").and_then(|v| v.as_i64()),
    ) else {
        return Err(invalid("no jti or exp".into()));
    };
    if text(&claims, "client_id").is_none() {
        return Err(invalid("no client_id".into()));
    }
    let Rules::Staff {
        role_claim,
        office_claim,
        id_claim,
    } = &desk.rules
    else {
        unreachable!("the staff desk has staff rules");
    };
    let person = staff(&claims, role_claim, office_claim, id_claim).map_err(|(refusal, _)| {
        ApiError::Forbidden(format!(
            "the access token's claims give no hoso role and office ({refusal:?})"
        ))
    })?;
    if crate::db::revoked_tokens::is_token_revoked(&vault.db.pool, jti).await? {
        return Err(ApiError::Unauthenticated(
            "the token has been revoked".into(),
        ));
    }
    let office = person.office.unwrap_or_else(|| NOT_APPLICABLE.to_owned());
    Ok(Caller::agency(
        person.role,
        person.sub,
        office,
        exp,
        jti.to_owned(),
    ))
}

/// Signs the caller out: their token is refused from now on, logged with it. Answers where
/// to send the browser next when the caller signed in through a provider that advertises an
/// end-session endpoint (RP-initiated logout, back to the console); a provider that does not
/// answer now only loses that step, the token is revoked all the same.
pub async fn sign_out(vault: &Vault, caller: &Caller) -> Result<Option<String>, ApiError> {
    let mut e = super::entry(caller, AuditAction::SessionSignOut);
    e.reason = Some(format!("jti {}", caller.jti));
    super::tokens::revoke_logged(vault, caller.jti.clone(), caller.expires_at, e).await?;
    let Some(desk) = caller.via.and_then(|kind| vault.sign_in.desk(kind)) else {
        return Ok(None);
    };
    let Ok(metadata) = desk.provider.metadata().await else {
        return Ok(None);
    };
    let Some(end) = metadata.end_session_endpoint.as_deref() else {
        return Ok(None);
    };
    let Ok(mut url) = url::Url::parse(end) else {
        return Ok(None);
    };
    url.query_pairs_mut()
        .append_pair("client_id", &desk.provider.registration.client_id)
        .append_pair(
            "post_logout_redirect_uri",
            &format!("{}/", vault.console_url),
        );
    Ok(Some(url.into()))
}
