//! Issuing staff and citizen tokens (`hoso token issue`) and refusing one before it expires
//! (`hoso token revoke`). Both are logged: who may act as whom is part of what auditors check.

use super::Vault;
use crate::audit::{AuditAction, Entry};
use crate::auth::{self, Caller, Claims, TokenRequest};
use crate::db::revoked_tokens;
use crate::db::sessions::{self, SessionRow};
use crate::domain::{NOT_APPLICABLE, NationalId, Role, SessionVia};
use crate::error::ApiError;

/// A link that signs its holder in to the console at `console_url`. The token rides in the
/// URL *fragment*, which browsers never send to a server, so it reaches no access log or
/// proxy; the console moves it to `sessionStorage` and removes it from the address bar.
pub fn sign_in_link(console_url: &str, token: &str) -> String {
    format!("{console_url}/#token={token}")
}

/// Issues a token, logged first. Staff tokens name an office (every read a staff member makes
/// is logged as from it); officers get tokens only through grants.
pub async fn issue(vault: &Vault, request: TokenRequest<'_>) -> Result<String, ApiError> {
    let keys = vault.keys();
    let mut e = Entry::operator(AuditAction::TokenIssue);
    match request.role {
        Role::Officer => {
            return Err(ApiError::InvalidRequest(
                "officers get tokens through grants (POST /v1/grants)".into(),
            ));
        }
        Role::Citizen => {
            // The citizen is named by their blind index, never their number.
            let id = NationalId::parse(request.sub)?;
            e.citizen_idx = Some(keys.citizen_index(&id)?);
            e.reason = Some(format!("citizen token, {} s", request.ttl_seconds));
        }
        role => {
            let Some(office) = request.office else {
                return Err(ApiError::InvalidRequest(format!(
                    "a {role} token names the office it acts for: add --office"
                )));
            };
            e.reason = Some(format!(
                "{role} token for {} at {office}, {} s",
                request.sub, request.ttl_seconds
            ));
        }
    }
    let (token, claims) = auth::issue(&keys, &vault.token_policy, request)?;
    e.reason = e.reason.map(|r| format!("{r}, jti {}", claims.jti));
    // A citizen's index was computed above, for the entry.
    let actor = match (claims.role, &e.citizen_idx) {
        (Role::Citizen, Some(idx)) => super::access::citizen_actor(idx),
        _ => claims.sub.clone(),
    };
    record_session(vault, &claims, actor, SessionVia::Link, e).await?;
    Ok(token)
}

/// Records a session just issued (for the admin's list) with its log entry, in one
/// transaction: a session nobody logged was never handed out.
pub(super) async fn record_session(
    vault: &Vault,
    claims: &Claims,
    actor: String,
    via: SessionVia,
    e: Entry,
) -> Result<(), ApiError> {
    let row = SessionRow {
        jti: claims.jti.clone(),
        role: claims.role,
        actor,
        office: claims
            .office
            .clone()
            .unwrap_or_else(|| NOT_APPLICABLE.to_owned()),
        via,
        issued_at: claims.iat,
        expires_at: claims.exp,
    };
    let now = claims.iat;
    vault
        .change(move |tx| {
            Box::pin(async move {
                sessions::insert(tx, &row, now).await?;
                Ok((Some(e), ()))
            })
        })
        .await
}

/// Most sessions the admin's list shows.
pub const SESSIONS_LIMIT: i64 = 500;

/// A live session as the admin sees it: who (as the log names them), role, office, how they
/// signed in, since and until when. Never the token itself.
#[derive(Debug, serde::Serialize)]
pub struct SessionView {
    pub jti: String,
    pub role: Role,
    pub actor: String,
    pub office: String,
    pub via: SessionVia,
    pub issued_at: String,
    pub expires_at: String,
}

/// The sessions hoso issued that are still live (not expired, not revoked), newest first; for
/// admins, logged (who is signed in is for auditors to see asked).
pub async fn live(vault: &Vault, caller: &Caller) -> Result<Vec<SessionView>, ApiError> {
    let e = super::entry(caller, AuditAction::SessionList);
    super::require_role(vault, &e, caller, &[Role::Admin]).await?;
    let now = crate::db::now_ms() / 1000;
    let rows = sessions::live(&vault.db.pool, now, SESSIONS_LIMIT).await?;
    vault.record(e).await?;
    Ok(rows
        .into_iter()
        .map(|s| SessionView {
            jti: s.jti,
            role: s.role,
            actor: s.actor,
            office: s.office,
            via: s.via,
            issued_at: crate::domain::format_rfc3339(s.issued_at * 1000),
            expires_at: crate::domain::format_rfc3339(s.expires_at * 1000),
        })
        .collect())
}

/// Ends a live session at once (an admin's act): its `jti` is refused from now on, logged as a
/// revocation naming whose session it was.
pub async fn end(vault: &Vault, caller: &Caller, jti: &str) -> Result<(), ApiError> {
    let mut e = super::entry(caller, AuditAction::TokenRevoke);
    super::require_role(vault, &e, caller, &[Role::Admin]).await?;
    let Some(session) = sessions::get(&vault.db.pool, jti).await? else {
        return Err(super::refuse(vault, e, ApiError::NotFound).await);
    };
    e.reason = Some(format!(
        "ended the {} session of {} at {}, jti {}",
        session.role, session.actor, session.office, session.jti
    ));
    revoke_logged(vault, session.jti, session.expires_at, e).await
}

/// Puts the token's `jti` on the revocation list, after checking the token is one this vault
/// issued (a forged or foreign token cannot fill the list). Returns the `jti`.
///
/// The revocation and its entry commit together: a revocation that is not in the log did not
/// happen, and a logged one is in force.
pub async fn revoke(vault: &Vault, token: &str) -> Result<String, ApiError> {
    let keys = vault.keys();
    let claims = auth::decode(&keys, &vault.token_policy, token.trim())?;
    let mut e = Entry::operator(AuditAction::TokenRevoke);
    e.reason = Some(match claims.role {
        Role::Citizen => "citizen token".to_owned(),
        role => format!("{role} token for {}", claims.sub),
    });
    if claims.role == Role::Citizen {
        e.citizen_idx = Some(keys.citizen_index(&NationalId::parse(&claims.sub)?)?);
    }
    e.grant_id = claims.grant.clone();
    e.reason = e.reason.map(|r| format!("{r}, jti {}", claims.jti));
    revoke_logged(vault, claims.jti.clone(), claims.exp, e).await?;
    Ok(claims.jti)
}

/// Puts `jti` on the revocation list (until `exp`) and appends `e`, in one transaction: a
/// revocation that is not in the log did not happen, and a logged one is in force.
pub(super) async fn revoke_logged(
    vault: &Vault,
    jti: String,
    exp: i64,
    e: Entry,
) -> Result<(), ApiError> {
    vault
        .change(move |tx| {
            Box::pin(async move {
                revoked_tokens::revoke_token(&mut **tx, &jti, exp).await?;
                Ok((Some(e), ()))
            })
        })
        .await
}
