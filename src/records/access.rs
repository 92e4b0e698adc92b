//! Who is asking, in the terms the audit log records, and refusals that are logged before they
//! are answered.

use super::Vault;
use crate::audit::{self, Entry, Outcome};
use crate::auth::Caller;
use crate::crypto::keyring::Keyring;
use crate::domain::Role;
use crate::error::ApiError;

/// Who did it, for the audit log. A citizen is named by their blind index, never their number.
pub fn actor(keys: &Keyring, caller: &Caller) -> String {
    match (caller.staff_id(), caller.citizen()) {
        (Some(staff), _) => staff.to_owned(),
        (None, Some(id)) => format!("citizen:{}", &keys.citizen_index(&id).to_hex()[..16]),
        (None, None) => "unknown".to_owned(),
    }
}

/// An audit entry for `caller` doing `action`, to be completed by the caller of this function.
pub fn entry(keys: &Keyring, caller: &Caller, action: &'static str) -> Entry {
    Entry {
        actor: actor(keys, caller),
        role: caller.role.as_str().to_owned(),
        office: caller.office.clone(),
        action,
        grant_id: caller.grant.map(|g| g.to_string()),
        ..Entry::default()
    }
}

/// Records a refusal and returns the error to send. If even the refusal cannot be recorded, the
/// request fails as unavailable: the log fails closed for refusals too.
pub async fn refuse(vault: &Vault, mut entry: Entry, err: ApiError) -> ApiError {
    entry.outcome = Some(Outcome::Denied);
    entry.reason = Some(err.code().to_owned());
    match audit::record(&vault.db, &vault.keys(), &vault.metrics, entry).await {
        Ok(()) => err,
        Err(audit_err) => audit_err,
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
