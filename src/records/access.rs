//! Who is asking, in the terms the audit log records, and refusals that are logged before they
//! are answered.

use super::Vault;
use crate::audit::{AuditAction, Entry, Outcome};
use crate::auth::{Caller, Refusal};
use crate::domain::{NationalId, Role};
use crate::error::ApiError;

/// Who did it, for the audit log. A citizen is named by their blind index, never their number.
pub fn actor(caller: &Caller) -> String {
    match (caller.staff_id(), caller.citizen_index()) {
        (Some(staff), _) => staff.to_owned(),
        (None, Some(idx)) => citizen_actor(idx),
        (None, None) => "unknown".to_owned(),
    }
}

/// A citizen as the log names them: the start of their blind index.
pub fn citizen_actor(idx: &crate::crypto::CitizenIndex) -> String {
    format!("citizen:{}", &idx.to_hex()[..16])
}

/// An audit entry for `caller` doing `action`, to be completed by the caller of this function.
pub fn entry(caller: &Caller, action: AuditAction) -> Entry {
    let mut e = Entry::new(actor(caller), caller.role, caller.office.clone(), action);
    e.grant_id = caller.grant.map(|g| g.to_string());
    e
}

/// Records a refusal and returns the error to send. If even the refusal cannot be recorded, the
/// request fails as unavailable: the log fails closed for refusals too.
///
/// One actor's refusals are logged one by one up to `HOSO_REFUSALS_PER_MINUTE` a minute; past
/// that, one entry says the actor is being limited and further refused requests that minute
/// answer 429 `too_many_requests` unlogged. A 429 carries nothing personal, and a flood of
/// refusals cannot grow the log without bound (it grows at most by the limit plus one entry a
/// minute per actor, in each process).
pub async fn refuse(vault: &Vault, entry: Entry, err: ApiError) -> ApiError {
    // A restriction is logged with which one it was, so an auditor can follow it.
    let reason = match &err {
        ApiError::Restricted(which) => format!("{}: {which}", err.code()),
        _ => err.code().to_owned(),
    };
    refuse_because(vault, entry, err, reason).await
}

/// [`refuse`], with the entry's reason given rather than the error's code.
pub(super) async fn refuse_because(
    vault: &Vault,
    mut entry: Entry,
    err: ApiError,
    reason: String,
) -> ApiError {
    // A failure of the vault itself (database down, disk full) is not a refusal of the caller,
    // and logging it would wait a second time on what just failed: it is answered as it is.
    if err.status().is_server_error() {
        return err;
    }
    match vault.refusals.admit(&entry.actor) {
        Admission::Log => {}
        Admission::LogLimitStarts => {
            let mut limited = entry.clone();
            limited.action = AuditAction::RefusalsLimited;
            limited.outcome = Outcome::Denied;
            limited.reason = Some(format!(
                "over {} refusals a minute; further ones this minute are answered 429 and not logged",
                vault.refusals.per_minute
            ));
            if let Err(audit_err) = vault.record(limited).await {
                return audit_err;
            }
            return ApiError::TooManyRequests;
        }
        Admission::Limited => return ApiError::TooManyRequests,
    }
    entry.outcome = Outcome::Denied;
    entry.reason = Some(reason);
    match vault.record(entry).await {
        Ok(()) => err,
        Err(audit_err) => audit_err,
    }
}

/// The answer to a refused token, logged when the token was the vault's own (it names who
/// holds it) and refused only because it expired or was revoked, like any other refusal (the
/// same per-actor limit). A grant's token past its expiry is the grant expiring: 403
/// `grant_expired`, logged with the grant.
pub async fn refuse_token(vault: &Vault, refusal: Refusal) -> ApiError {
    let (caller, err, reason) = match refusal {
        Refusal::Invalid(err) => return err,
        Refusal::Expired(caller) if caller.grant.is_some() => {
            (caller, ApiError::GrantExpired, "grant_expired")
        }
        Refusal::Expired(caller) => (caller, ApiError::TokenExpired, "token_expired"),
        Refusal::Revoked(caller) => (
            caller,
            ApiError::Unauthenticated("the token has been revoked".into()),
            "token_revoked",
        ),
    };
    let e = entry(&caller, AuditAction::TokenRefused);
    refuse_because(vault, e, err, reason.into()).await
}

/// Counts each actor's refusals in the current minute.
pub struct RefusalLimiter {
    pub per_minute: u32,
    windows: std::sync::Mutex<std::collections::HashMap<String, (u64, u32)>>,
}

pub enum Admission {
    /// Log this refusal as usual.
    Log,
    /// The limit is reached now: log that, and refuse with 429.
    LogLimitStarts,
    /// Over the limit this minute: 429, unlogged.
    Limited,
}

impl RefusalLimiter {
    /// Counts one more for `key` this minute: whether it is within the limit.
    pub(super) fn within(&self, key: &str) -> bool {
        matches!(self.admit(key), Admission::Log)
    }

    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            windows: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    fn admit(&self, actor: &str) -> Admission {
        let minute = u64::try_from(crate::db::now_ms() / 60_000).unwrap_or(0);
        let mut windows = self.windows.lock().expect("refusal counts");
        if windows.len() > 10_000 {
            windows.retain(|_, (m, _)| *m == minute);
        }
        let (m, n) = windows.entry(actor.to_owned()).or_insert((minute, 0));
        if *m != minute {
            (*m, *n) = (minute, 0);
        }
        *n = n.saturating_add(1);
        match (*n).cmp(&self.per_minute) {
            std::cmp::Ordering::Less | std::cmp::Ordering::Equal => Admission::Log,
            _ if *n == self.per_minute + 1 => Admission::LogLimitStarts,
            _ => Admission::Limited,
        }
    }
}

/// Requires one of `roles`, recording the refusal otherwise.
pub async fn require_role(
    vault: &Vault,
    entry: &Entry,
    caller: &Caller,
    roles: &[Role],
) -> Result<(), ApiError> {
    match caller.require(roles) {
        Ok(()) => Ok(()),
        Err(err) => Err(refuse(vault, entry.clone(), err).await),
    }
}

/// A citizen's token reads only that citizen's records (`what`: "access log", "grants"); staff
/// roles pass. The refusal is logged like any other.
pub async fn require_own_records(
    vault: &Vault,
    entry: &Entry,
    caller: &Caller,
    national_id: &NationalId,
    what: &str,
) -> Result<(), ApiError> {
    if caller.role == Role::Citizen && caller.citizen().as_ref() != Some(national_id) {
        let err = ApiError::Forbidden(format!("citizens see only their own {what}"));
        return Err(refuse(vault, entry.clone(), err).await);
    }
    Ok(())
}
