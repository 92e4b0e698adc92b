//! The erasure ledger: one record per erased document, kept outside the database so that a
//! restored database backup (which still holds the wrapped key, and whose own log predates the
//! erasure) cannot bring a document back. It lives in the object store under [`PREFIX`], one
//! object per document named by its id, written before the erasure's transaction and never
//! removed; `hoso retention ledger export` copies it to a file kept beside `keys/`.
//!
//! A record's object key is `ledger/erasures/{document id}`; its body is one JSON object (the
//! [`Record`] below). An exported ledger is the same records, one per line, in id order.
//! Re-applying the ledger needs only the ids; the rest says what was erased, when and why, for a
//! person reading it. Each erasure is also a `document.erase` entry in the audit log, which the
//! checkpoints cover and witnesses hold: a record removed from the ledger is found missing by
//! start-up, `hoso doctor` and the next retention run, and written again from the tombstone.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::blob::BlobStore;
use crate::error::ApiError;

pub const PREFIX: &str = "ledger/erasures";

/// What the ledger says of one erased document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub document_id: Uuid,
    pub doc_type: crate::domain::DocType,
    /// The citizen's blind index (hex), as the database names them.
    pub citizen_idx: String,
    /// RFC 3339.
    pub erased_at: String,
    pub reason: crate::domain::EraseReason,
    /// The rule, request or order, in words.
    pub detail: String,
    pub by: String,
}

fn key(id: Uuid) -> String {
    format!("{PREFIX}/{id}")
}

/// Writes a record, durably, before the erasure it announces.
pub async fn put(blobs: &BlobStore, record: &Record) -> Result<(), ApiError> {
    let json = serde_json::to_vec(record).map_err(|e| ApiError::internal("ledger record", e))?;
    blobs
        .put_all(&key(record.document_id), Bytes::from(json))
        .await?;
    Ok(())
}

/// Whether the ledger holds a record for `id`.
pub async fn holds(blobs: &BlobStore, id: Uuid) -> Result<bool, ApiError> {
    Ok(blobs.exists(&key(id)).await?)
}

/// The ids of every document the ledger says was erased, sorted.
pub async fn erased_ids(blobs: &BlobStore) -> Result<Vec<Uuid>, ApiError> {
    let mut ids = Vec::new();
    for k in blobs.list_under(PREFIX).await? {
        let id = k
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.strip_prefix('/'))
            .and_then(|name| Uuid::parse_str(name).ok())
            .ok_or_else(|| {
                ApiError::Integrity(format!("the erasure ledger holds {k}, which is not hoso's"))
            })?;
        ids.push(id);
    }
    ids.sort();
    Ok(ids)
}

/// Every record, in id order, as an exported ledger: one JSON object per line.
pub async fn export(
    blobs: &BlobStore,
    mut progress: impl FnMut(usize),
) -> Result<String, ApiError> {
    let mut out = String::new();
    for (n, id) in erased_ids(blobs).await?.into_iter().enumerate() {
        let bytes = blobs.get_all(&key(id)).await?;
        let record: Record = serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::Integrity(format!("the erasure ledger's record for {id}: {e}"))
        })?;
        out.push_str(&serde_json::to_string(&record).map_err(|e| ApiError::internal("ledger", e))?);
        out.push('\n');
        progress(n + 1);
    }
    Ok(out)
}

/// The records of an exported ledger, each line checked; an error names the line.
pub fn parse_export(text: &str) -> Result<Vec<Record>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| {
            serde_json::from_str::<Record>(line).map_err(|e| {
                format!(
                    "line {}: not an erasure ledger record ({e}); give the file `hoso retention \
                     ledger export` wrote",
                    n + 1
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exported_ledger_reads_back_and_a_bad_line_is_named() {
        let record = Record {
            document_id: Uuid::now_v7(),
            doc_type: crate::domain::DocType::Cccd,
            citizen_idx: "ab".repeat(32),
            erased_at: "2026-12-06T10:00:00Z".into(),
            reason: crate::domain::EraseReason::Retention,
            detail: "cccd: 1825 days after it stopped being current".into(),
            by: "hoso-retention".into(),
        };
        let line = serde_json::to_string(&record).unwrap();
        assert_eq!(parse_export(&format!("{line}\n\n")).unwrap(), vec![record]);
        let err = parse_export(&format!("{line}\n{{\"document_id\": 1}}\n")).unwrap_err();
        assert!(err.starts_with("line 2: "), "{err}");
    }
}
