//! The erasure ledger: one record per erased document, kept outside the database so that a
//! restored database backup (which still holds the wrapped key, and whose own log predates the
//! erasure) cannot bring a document back. It lives in the object store under [`PREFIX`], one
//! object per document named by its id, written before the erasure's transaction and never
//! removed; `hoso retention ledger export` copies it to a file kept beside `keys/`.
//!
//! A record's object key is `ledger/erasures/{document id}`; its body is one JSON object (the
//! [`Record`] below) whose `seal` is HMAC-SHA-256 under `keys/erasure-ledger.key` of
//! `"hoso/erasure-ledger/v1"` followed by the record's other fields as JSON, in the order below.
//! A record whose seal does not check was not written by this vault (someone with the bucket
//! wrote it) and erases nothing. An exported ledger is the same records, one per line, in id
//! order. Each erasure is also a `document.erase` entry in the audit log, which the checkpoints
//! cover and witnesses hold: a record removed from the ledger is found missing by start-up,
//! `hoso doctor` and every retention run, and written again if the log has the erasure.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::blob::BlobStore;
use crate::crypto::keyring::Keyring;
use crate::domain::{DocType, EraseReason};
use crate::error::ApiError;

/// Everything the ledger keeps: its records and its key's check value.
pub const ROOT: &str = "ledger";
pub const PREFIX: &str = "ledger/erasures";

/// The ledger key's check value: hex HMAC-SHA-256 under `keys/erasure-ledger.key` of
/// `"hoso/erasure-ledger/v1"` followed by [`KEY_CHECK_TEXT`] (no record is that text: a record
/// is a JSON object). Written by the first re-application; a key that does not make it is not
/// the key that sealed the ledger.
pub const KEY_CHECK: &str = "ledger/key-check";
const KEY_CHECK_TEXT: &[u8] = b"the erasure ledger's key";

/// What the ledger says of one erased document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub document_id: Uuid,
    pub doc_type: DocType,
    /// The citizen's blind index (hex), as the database names them.
    pub citizen_idx: String,
    /// RFC 3339.
    pub erased_at: String,
    pub reason: EraseReason,
    /// The rule, request or order, in words.
    pub detail: String,
    pub by: String,
    /// Hex HMAC-SHA-256 of the fields above (see the module's doc).
    pub seal: String,
}

/// The fields a seal covers, in their order.
#[derive(Serialize)]
struct Sealed<'r> {
    document_id: &'r Uuid,
    doc_type: &'r DocType,
    citizen_idx: &'r str,
    erased_at: &'r str,
    reason: &'r EraseReason,
    detail: &'r str,
    by: &'r str,
}

impl Record {
    fn sealed_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&Sealed {
            document_id: &self.document_id,
            doc_type: &self.doc_type,
            citizen_idx: &self.citizen_idx,
            erased_at: &self.erased_at,
            reason: &self.reason,
            detail: &self.detail,
            by: &self.by,
        })
        .expect("a record serialises")
    }

    /// The record with its seal set.
    pub fn seal(mut self, keys: &Keyring) -> Self {
        self.seal = hex::encode(keys.seal_ledger_record(&self.sealed_bytes()));
        self
    }

    /// Whether this vault's ledger key sealed it as it stands.
    pub fn is_sealed(&self, keys: &Keyring) -> bool {
        hex::decode(&self.seal)
            .is_ok_and(|seal| keys.ledger_record_is_sealed(&self.sealed_bytes(), &seal))
    }
}

fn key(id: Uuid) -> String {
    format!("{PREFIX}/{id}")
}

/// Writes a sealed record, durably, before the erasure it announces.
pub async fn put(blobs: &BlobStore, record: &Record) -> Result<(), ApiError> {
    let json = serde_json::to_vec(record).map_err(|e| ApiError::internal("ledger record", e))?;
    blobs
        .put_all(&key(record.document_id), Bytes::from(json))
        .await?;
    Ok(())
}

/// Whether `keys` hold the key that sealed this ledger: its check value (see [`KEY_CHECK`]) is
/// what the key makes, or there is none yet and this key's is written now.
pub async fn key_is_the_ledgers(blobs: &BlobStore, keys: &Keyring) -> Result<bool, ApiError> {
    let held = match blobs.get_all(KEY_CHECK).await {
        Ok(held) => held,
        Err(crate::blob::BlobError::Missing(_)) => {
            let ours = hex::encode(keys.seal_ledger_record(KEY_CHECK_TEXT));
            blobs.put_all(KEY_CHECK, Bytes::from(ours)).await?;
            return Ok(true);
        }
        Err(e) => return Err(e.into()),
    };
    Ok(hex::decode(held.trim_ascii())
        .is_ok_and(|seal| keys.ledger_record_is_sealed(KEY_CHECK_TEXT, &seal)))
}

/// Whether the ledger holds an object for `id` (sealed or not).
pub async fn holds(blobs: &BlobStore, id: Uuid) -> Result<bool, ApiError> {
    Ok(blobs.exists(&key(id)).await?)
}

/// The record for `id` as the store holds it, if it parses and its seal checks; `Ok(None)`
/// when it is not the vault's (logged).
pub async fn read(blobs: &BlobStore, keys: &Keyring, id: Uuid) -> Result<Option<Record>, ApiError> {
    let bytes = blobs.get_all(&key(id)).await?;
    let record = serde_json::from_slice::<Record>(&bytes)
        .ok()
        .filter(|r| r.document_id == id && r.is_sealed(keys));
    if record.is_none() {
        tracing::error!(document = %id, "an erasure ledger record this vault did not seal; it erases nothing");
    }
    Ok(record)
}

/// The ids the ledger's objects are named by, sorted (each record still to be read and its
/// seal checked before it erases anything).
pub async fn erased_ids(blobs: &BlobStore) -> Result<Vec<Uuid>, ApiError> {
    let mut ids = Vec::new();
    for k in blobs.list_under(PREFIX).await? {
        let id = k
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.strip_prefix('/'))
            .and_then(|name| Uuid::parse_str(name).ok());
        match id {
            Some(id) => ids.push(id),
            None => {
                tracing::error!(key = %k, "the erasure ledger holds an object that is not hoso's")
            }
        }
    }
    ids.sort();
    Ok(ids)
}

/// Every sealed record, in id order, as an exported ledger: one JSON object per line.
pub async fn export(
    blobs: &BlobStore,
    keys: &Keyring,
    mut progress: impl FnMut(usize),
) -> Result<String, ApiError> {
    let mut out = String::new();
    for (n, id) in erased_ids(blobs).await?.into_iter().enumerate() {
        if let Some(record) = read(blobs, keys, id).await? {
            let line =
                serde_json::to_string(&record).map_err(|e| ApiError::internal("ledger", e))?;
            out.push_str(&line);
            out.push('\n');
        }
        progress(n + 1);
    }
    Ok(out)
}

/// The records of an exported ledger, each line checked, its seal included; an error names the
/// line.
pub fn parse_export(text: &str, keys: &Keyring) -> Result<Vec<Record>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| {
            let record = serde_json::from_str::<Record>(line).map_err(|e| {
                format!(
                    "line {}: not an erasure ledger record ({e}); give the file `hoso retention \
                     ledger export` wrote",
                    n + 1
                )
            })?;
            if !record.is_sealed(keys) {
                return Err(format!(
                    "line {}: its seal does not check with this vault's keys: it was changed, or \
                     comes from another vault",
                    n + 1
                ));
            }
            Ok(record)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exported_ledger_reads_back_and_a_bad_or_edited_line_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Keyring::open(dir.path(), true).unwrap();
        let record = Record {
            document_id: Uuid::now_v7(),
            doc_type: DocType::Cccd,
            citizen_idx: "ab".repeat(32),
            erased_at: "2026-12-06T10:00:00Z".into(),
            reason: EraseReason::Retention,
            detail: "cccd: 1825 days after it stopped being current".into(),
            by: "hoso-retention".into(),
            seal: String::new(),
        }
        .seal(&keys);
        let line = serde_json::to_string(&record).unwrap();
        assert_eq!(
            parse_export(&format!("{line}\n\n"), &keys).unwrap(),
            vec![record.clone()]
        );
        let err = parse_export(&format!("{line}\n{{\"document_id\": 1}}\n"), &keys).unwrap_err();
        assert!(err.starts_with("line 2: "), "{err}");
        let mut other = record;
        other.document_id = Uuid::now_v7();
        let forged = serde_json::to_string(&other).unwrap();
        let err = parse_export(&format!("{line}\n{forged}\n"), &keys).unwrap_err();
        assert!(err.starts_with("line 2: its seal"), "{err}");
    }
}
