//! Master-key maintenance: rewrap every data key under the current KEK (bodies untouched), and
//! retire a KEK version once nothing uses it.

use super::Vault;
use crate::audit::{AuditAction, Entry};
use crate::crypto::envelope::WrapFormat;
use crate::crypto::keyring::Keyring;
use crate::db::{self, documents, now_ms};
use crate::error::ApiError;

/// Rewraps, a page at a time, every data key not under the current KEK. Calls `progress` with
/// (done so far) after each page. Returns how many keys were rewrapped.
pub async fn rewrap(vault: &Vault, mut progress: impl FnMut(u64)) -> Result<u64, ApiError> {
    let keys = vault.keys();
    let current = keys.current_kek();
    let mut done = 0u64;
    loop {
        let page =
            documents::page_to_rewrap(&vault.db.pool, i64::from(current.version), 200).await?;
        if page.is_empty() {
            break;
        }
        for doc in page {
            let data_key = super::data_key(vault, &doc)?;
            let binding = super::binding(&doc)?;
            let mut tx = vault.db.begin().await?;
            if !db::kek_usage::count_wrap(&mut tx, i64::from(current.version)).await? {
                return Err(ApiError::Unavailable(format!(
                    "master key version {} may wrap no more data keys; rotate again",
                    current.version
                )));
            }
            // Rewrapping also brings a format-1 row to format 2 (the type bound in).
            let format = WrapFormat::V2 {
                doc_type: doc.doc_type,
            };
            let wrapped = current.wrap(&data_key, &binding, format)?;
            // If the row changed meanwhile (another rewrap), the next page picks it up again.
            documents::replace_wrapped_key(&mut tx, &doc, i64::from(current.version), &wrapped)
                .await?;
            tx.commit("commit rewrap").await?;
            done += 1;
            vault.fault(crate::config::FaultPoint::RewrapMidway)?;
        }
        progress(done);
    }
    let mut e = Entry::operator(AuditAction::KeysRewrap);
    e.reason = Some(format!(
        "{done} data keys now under version {}",
        current.version
    ));
    vault.record(e).await?;
    Ok(done)
}

/// Deletes KEK `version` after proving no data key and no pending intake uses it.
pub async fn retire(vault: &Vault, version: u32) -> Result<(), ApiError> {
    let keys: std::sync::Arc<Keyring> = vault.keys();
    if keys.kek(version).is_none() {
        return Err(ApiError::NotFound);
    }
    if keys.current_kek().version == version {
        return Err(ApiError::Conflict(format!(
            "version {version} is current; rotate first"
        )));
    }
    let mut tx = vault.db.begin().await?;
    // Mark it retired first (a write, so this transaction holds the lock), then count users:
    // an intake that counted a wrap under it before this point shows up in the count below.
    db::kek_usage::mark_retired(&mut tx, i64::from(version), now_ms()).await?;
    let in_use = documents::count_by_kek(&mut *tx)
        .await?
        .into_iter()
        .find(|(v, _)| *v == i64::from(version))
        .map_or(0, |(_, n)| n);
    if in_use > 0 {
        // Roll back now: the retired mark must not linger while the connection idles.
        tx.rollback().await?;
        return Err(ApiError::Conflict(format!(
            "version {version} still wraps {in_use} data keys; run `hoso keys rewrap` first"
        )));
    }
    tx.commit("commit retire").await?;
    keys.retire(version)
        .map_err(|e| ApiError::internal("delete key file", e))?;
    let mut e = Entry::operator(AuditAction::KeysRetire);
    e.reason = Some(format!("version {version} retired"));
    vault.record(e).await
}

/// One master-key version as `hoso keys status` shows it.
#[derive(Debug)]
pub struct KekStatus {
    pub version: i64,
    pub current: bool,
    /// Data keys it wraps now.
    pub in_use: i64,
    /// Data keys it has ever wrapped (its nonce budget spent).
    pub wraps: i64,
    pub state: KekState,
}

#[derive(Debug, PartialEq, Eq)]
pub enum KekState {
    Available,
    Retired,
    /// Registered in the database but its key file is not in the keys directory.
    MissingFile,
}

/// Every version any process has registered, with its use.
pub async fn status(vault: &Vault) -> Result<Vec<KekStatus>, ApiError> {
    let keys = vault.keys();
    let counts = documents::count_by_kek(&vault.db.pool).await?;
    let usage = db::kek_usage::usage(&vault.db.pool).await?;
    Ok(usage
        .into_iter()
        .map(|u| {
            let on_disk = u32::try_from(u.version)
                .ok()
                .and_then(|v| keys.kek(v))
                .is_some();
            KekStatus {
                version: u.version,
                current: i64::from(keys.current_kek().version) == u.version,
                in_use: counts
                    .iter()
                    .find(|(v, _)| *v == u.version)
                    .map_or(0, |(_, n)| *n),
                wraps: u.wraps,
                state: match (u.retired_at, on_disk) {
                    (Some(_), _) => KekState::Retired,
                    (None, true) => KekState::Available,
                    (None, false) => KekState::MissingFile,
                },
            }
        })
        .collect())
}
