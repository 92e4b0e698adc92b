//! Signed checkpoints of the audit tree, published where the database's administrators cannot
//! rewind them: each is written once to the object store (`audit/checkpoints/<size>`, never
//! overwritten) and kept in the database for serving. `hoso serve` makes one whenever
//! [`CheckpointPolicy::every`] entries or [`CheckpointPolicy::seconds`] have passed since the
//! last (while entries arrive), so every logged read is under a signed checkpoint within that
//! time; witnesses fetch them and keep what they saw.

use bytes::Bytes;

use super::merkle::Hash;
use super::note::{self, Checkpoint};
use super::tree;
use crate::blob::{BlobError, BlobStore};
use crate::crypto::keyring::Keyring;
use crate::db::audit::{self as store, NoteRow};
use crate::db::{Db, now_ms};
use crate::error::ApiError;

/// Where checkpoints live in the object store.
pub const PREFIX: &str = "audit/checkpoints";

/// How often checkpoints are made.
#[derive(Clone, Debug)]
pub struct CheckpointPolicy {
    /// The log's name: the first line of every checkpoint and the signing key's name.
    pub origin: String,
    /// At most this many entries between checkpoints.
    pub every: u64,
    /// At most this many seconds between a logged entry and a checkpoint covering it.
    pub seconds: u64,
}

pub fn object_key(size: u64) -> String {
    format!("{PREFIX}/{size:020}")
}

/// The size a checkpoint object's key names ([`object_key`]), if it is one.
pub fn size_of_key(key: &str) -> Option<u64> {
    key.strip_prefix(PREFIX)?.strip_prefix('/')?.parse().ok()
}

/// Whether a checkpoint is due for a log of `size` entries, given the latest one made.
pub fn due(policy: &CheckpointPolicy, size: u64, latest: Option<&NoteRow>, now: i64) -> bool {
    match latest {
        None => size > 0,
        Some(n) => {
            let behind = size.saturating_sub(n.size as u64);
            behind > 0
                && (behind >= policy.every
                    || now - n.made_at >= i64::try_from(policy.seconds * 1000).unwrap_or(i64::MAX))
        }
    }
}

/// Makes and publishes a checkpoint of the log as it is now, if one is due. The object is
/// written before the database row, so the database never holds a checkpoint the object store
/// lacks. Several processes may race here: the note for a size is deterministic, so they write
/// the same bytes; different bytes under an existing key are a fork and fail loudly.
pub async fn publish_if_due(
    db: &Db,
    blobs: &BlobStore,
    keys: &Keyring,
    policy: &CheckpointPolicy,
) -> Result<Option<Checkpoint>, ApiError> {
    let mut snapshot = db.snapshot().await?;
    let head = store::head(&mut *snapshot).await?;
    let latest = store::latest_note(&mut *snapshot).await?;
    let size = head.seq as u64;
    if !due(policy, size, latest.as_ref(), now_ms()) {
        snapshot.rollback().await?;
        return Ok(None);
    }
    let root = tree::root(&mut snapshot, size).await?;
    snapshot.rollback().await?;
    let checkpoint = Checkpoint {
        origin: policy.origin.clone(),
        size,
        root,
    };
    let signed = note::sign(&keys.audit, &checkpoint);
    write_once(blobs, &object_key(size), signed.as_bytes()).await?;
    // A write like any other: through the write gate, so on SQLite it queues behind the log
    // writer instead of sleep-polling for the lock.
    let mut tx = db.begin().await?;
    store::insert_note(
        &mut *tx,
        &NoteRow {
            size: size as i64,
            root: hex::encode(root),
            note: signed,
            made_at: now_ms(),
        },
    )
    .await?;
    tx.commit("keep audit checkpoint").await?;
    Ok(Some(checkpoint))
}

async fn write_once(blobs: &BlobStore, key: &str, bytes: &[u8]) -> Result<(), ApiError> {
    match blobs.get_all(key).await {
        Ok(existing) if existing == bytes => return Ok(()),
        Ok(_) => {
            return Err(ApiError::Internal(format!(
                "{key} already holds a different checkpoint of the same size: the audit log \
                 has forked; nothing was overwritten"
            )));
        }
        Err(BlobError::Missing(_)) => {}
        Err(e) => return Err(e.into()),
    }
    blobs.put_all(key, Bytes::copy_from_slice(bytes)).await?;
    Ok(())
}

/// A checkpoint someone outside the database vouches for: the object store's, or a witness's.
#[derive(Clone, Debug)]
pub struct Trusted {
    pub size: u64,
    pub root: Hash,
    /// Where it came from, for the report: "the object store", "the witness state".
    pub source: String,
}

/// Every checkpoint in the object store, opened with the audit key, smallest first. A note that
/// does not open (forged, or signed by another key) is an error naming its object.
pub async fn published(
    blobs: &BlobStore,
    keys: &Keyring,
    origin: &str,
) -> Result<Result<Vec<Trusted>, String>, ApiError> {
    let mut out = Vec::new();
    for key in blobs.list_under(PREFIX).await? {
        let bytes = blobs.get_all(&key).await?;
        let text = String::from_utf8_lossy(&bytes);
        match note::open(&text, origin, keys.audit.public_key()) {
            Ok(c) => out.push(Trusted {
                size: c.size,
                root: c.root,
                source: format!("the object store ({key})"),
            }),
            Err(e) => return Ok(Err(format!("the checkpoint {key} does not verify: {e}"))),
        }
    }
    out.sort_by_key(|t| t.size);
    Ok(Ok(out))
}
