//! Signed checkpoints of the audit tree, published where the database's administrators cannot
//! rewind them: each is written once to the object store (`audit/checkpoints/<size>`, never
//! overwritten) and kept in the database for serving; witnesses fetch them and keep what they
//! saw.
//!
//! What is published comes from this process's own high-water mark ([`Mark`]: the size and root
//! the log writer committed last), never from what the database says now, so a database rolled
//! back under a running vault cannot make it sign the rolled-back log; when the database's head
//! is found behind the mark, or its tree differs at the mark, the [`Publisher`] raises an alarm
//! (error log, `hoso_audit_rollbacks_total`, `/readyz`) and the writer appends nothing more.
//!
//! When a checkpoint is made:
//! - strict (`HOSO_AUDIT_STRICT`, the default): after every batch the writer commits, before any
//!   request in it is answered, so no document byte or personal field leaves before a
//!   checkpoint covering its entry is in the object store (one write per batch, shared by
//!   every request in it);
//! - and in any mode, by `hoso serve`'s checkpointer once [`CheckpointPolicy::every`] entries or
//!   [`CheckpointPolicy::seconds`] (on the process's monotonic clock) have passed, which also
//!   keeps the database's copy for proofs, and a last one when the process drains.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::merkle::Hash;
use super::note::{self, Checkpoint};
use super::tree;
use crate::blob::{BlobError, BlobStore};
use crate::crypto::keyring::Keyring;
use crate::db::audit::{self as store, NoteRow};
use crate::db::{Db, Tx, now_ms};
use crate::error::ApiError;
use crate::metrics::Metrics;

/// Where checkpoints live in the object store.
pub const PREFIX: &str = "audit/checkpoints";

/// How checkpoints are made.
#[derive(Clone, Debug)]
pub struct CheckpointPolicy {
    /// The log's name: the first line of every checkpoint and the signing key's name.
    pub origin: String,
    /// At most this many entries between the checkpointer's checkpoints.
    pub every: u64,
    /// At most this many seconds between a logged entry and a checkpointer's checkpoint.
    pub seconds: u64,
    /// A checkpoint after every batch the writer commits, before its requests are answered.
    pub strict: bool,
}

pub fn object_key(size: u64) -> String {
    format!("{PREFIX}/{size:020}")
}

/// The size a checkpoint object's key names ([`object_key`]), if it is one.
pub fn size_of_key(key: &str) -> Option<u64> {
    key.strip_prefix(PREFIX)?.strip_prefix('/')?.parse().ok()
}

/// The log as this process last committed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mark {
    pub size: u64,
    pub root: Hash,
}

fn rewritten(size: u64) -> String {
    format!(
        "the database's tree at {size} entries is not the one committed and published: the log \
         was rewritten"
    )
}

fn behind(head: u64, mark: Mark) -> String {
    format!(
        "the database's log has {head} entries, but {} were committed before",
        mark.size
    )
}

/// The process's checkpoint publisher: its high-water mark, what it published last and when
/// (monotonic), and the rollback alarm.
pub struct Publisher {
    pub policy: CheckpointPolicy,
    metrics: std::sync::Arc<Metrics>,
    state: Mutex<State>,
    alarm: Mutex<Option<String>>,
}

#[derive(Default)]
struct State {
    mark: Option<Mark>,
    /// Size of the checkpointer's last checkpoint and when (the database's copy was made then).
    kept: Option<(u64, Instant)>,
    /// Size of the last checkpoint this process put in the object store.
    published: u64,
}

impl Publisher {
    pub fn new(policy: CheckpointPolicy, metrics: std::sync::Arc<Metrics>) -> Self {
        Self {
            policy,
            metrics,
            state: Mutex::default(),
            alarm: Mutex::default(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("checkpoint publisher state")
    }

    pub fn mark(&self) -> Option<Mark> {
        self.state().mark
    }

    /// Records what the writer just committed. The mark only grows.
    pub fn advance(&self, mark: Mark) {
        let mut state = self.state();
        if state.mark.is_none_or(|m| m.size < mark.size) {
            state.mark = Some(mark);
        }
    }

    /// Nothing is appended or published once the alarm is raised: either would build on, or
    /// sign, a log that is not the one published.
    fn refuse_if_alarmed(&self) -> Result<(), ApiError> {
        match self.alarm() {
            Some(problem) => Err(ApiError::Unavailable(format!(
                "the audit log cannot be trusted: {problem}"
            ))),
            None => Ok(()),
        }
    }

    /// Why the log cannot be trusted any more, if an alarm was raised.
    pub fn alarm(&self) -> Option<String> {
        self.alarm.lock().expect("alarm").clone()
    }

    /// Raises the rollback alarm (once per problem), and returns the refusal to answer with.
    pub fn raise(&self, problem: String) -> ApiError {
        let mut alarm = self.alarm.lock().expect("alarm");
        if alarm.as_ref() != Some(&problem) {
            tracing::error!(%problem, "ALARM: the audit log in the database went backwards");
            Metrics::inc(&self.metrics.audit_rollbacks);
            *alarm = Some(problem.clone());
        }
        ApiError::Unavailable(format!("the audit log cannot be trusted: {problem}"))
    }

    /// The writer's check, in the batch's transaction (under the log's lock) before it appends:
    /// the log found there (`head` entries, root `start_root` when known) must hold what this
    /// process committed. See [`Publisher::check_against`].
    pub async fn check_log(
        &self,
        tx: &mut Tx,
        head: u64,
        start_root: Option<Hash>,
    ) -> Result<(), ApiError> {
        self.check_against(tx, head, start_root, self.mark()).await
    }

    /// The checkpointer's check, every second, so a rollback or rewrite is found even while no
    /// batch comes. The mark is read before the snapshot: a mark only advances after its
    /// commit, so the snapshot holds at least its entries unless they were removed.
    pub async fn check_tree(&self, db: &Db) -> Result<(), ApiError> {
        let mark = self.mark();
        let mut snapshot = db.snapshot().await?;
        let head = store::head(&mut *snapshot).await?.seq as u64;
        let checked = self.check_against(&mut snapshot, head, None, mark).await;
        snapshot.rollback().await?;
        checked
    }

    /// Whether the log in `tx` (`head` entries, root `start_root` when known) holds `mark`: as
    /// many entries at least, and the same root at the mark's size. Else it was rolled back, or
    /// rewritten with its head kept, and appending would build on (and strict mode sign) a
    /// forked log: the alarm is raised. Refuses too while an alarm is raised.
    async fn check_against(
        &self,
        tx: &mut Tx,
        head: u64,
        start_root: Option<Hash>,
        mark: Option<Mark>,
    ) -> Result<(), ApiError> {
        self.refuse_if_alarmed()?;
        let Some(mark) = mark else {
            return Ok(());
        };
        if head < mark.size {
            return Err(self.raise(behind(head, mark)));
        }
        let root = match start_root {
            Some(root) if head == mark.size => root,
            _ => tree::root(tx, mark.size).await?,
        };
        if root == mark.root {
            return Ok(());
        }
        Err(self.raise(rewritten(mark.size)))
    }

    /// Puts a checkpoint of `mark` in the object store (strict mode, after each batch).
    pub async fn publish(
        &self,
        blobs: &BlobStore,
        keys: &Keyring,
        mark: Mark,
    ) -> Result<String, ApiError> {
        self.refuse_if_alarmed()?;
        let signed = self.sign(keys, mark)?;
        // A different checkpoint of the same size already published: the log this process
        // appended to is not the one published before (rolled back, then grown again).
        write_once(blobs, &object_key(mark.size), signed.as_bytes())
            .await
            .map_err(|e| match e {
                ApiError::Conflict(problem) => self.raise(problem),
                other => other,
            })?;
        let mut state = self.state();
        state.published = state.published.max(mark.size);
        Ok(signed)
    }

    /// Makes sure a checkpoint covering `mark` is in the object store: done already when this
    /// process has published one at least as large (it covers every entry below its size),
    /// else published now.
    pub async fn publish_covering(
        &self,
        blobs: &BlobStore,
        keys: &Keyring,
        mark: Mark,
    ) -> Result<(), ApiError> {
        self.refuse_if_alarmed()?;
        if self.state().published >= mark.size {
            return Ok(());
        }
        self.publish(blobs, keys, mark).await.map(|_| ())
    }

    fn sign(&self, keys: &Keyring, mark: Mark) -> Result<String, ApiError> {
        let checkpoint = Checkpoint {
            origin: self.policy.origin.clone(),
            size: mark.size,
            root: mark.root,
        };
        Ok(note::sign(&keys.audit, &checkpoint)?)
    }

    /// The checkpointer's step: when [`CheckpointPolicy::every`] entries or
    /// [`CheckpointPolicy::seconds`] have passed since its last (monotonic clock), publishes the
    /// mark and keeps the database's copy (for proofs). The object is written before the
    /// database row, so the database never holds a checkpoint the object store lacks. Several
    /// processes may race: the note for a size is deterministic, so they write the same bytes;
    /// different bytes under an existing key are a fork and fail loudly.
    pub async fn publish_if_due(
        &self,
        db: &Db,
        blobs: &BlobStore,
        keys: &Keyring,
    ) -> Result<Option<Mark>, ApiError> {
        let Some(mark) = self.mark() else {
            return Ok(None);
        };
        let due = match self.state().kept {
            None => mark.size > 0,
            Some((size, at)) => {
                let behind = mark.size.saturating_sub(size);
                behind > 0
                    && (behind >= self.policy.every
                        || at.elapsed() >= Duration::from_secs(self.policy.seconds))
            }
        };
        if !due {
            return Ok(None);
        }
        self.keep(db, blobs, keys, mark).await?;
        Ok(Some(mark))
    }

    /// Publishes `mark` and keeps the database's copy of it, now.
    pub async fn keep(
        &self,
        db: &Db,
        blobs: &BlobStore,
        keys: &Keyring,
        mark: Mark,
    ) -> Result<(), ApiError> {
        // The object may be out already (strict mode published it after its batch).
        let signed = if self.state().published == mark.size {
            self.sign(keys, mark)?
        } else {
            self.publish(blobs, keys, mark).await?
        };
        // A write like any other: through the write gate, so on SQLite it queues behind the log
        // writer instead of sleep-polling for the lock.
        let mut tx = db.begin().await?;
        store::insert_note(
            &mut *tx,
            &NoteRow {
                size: mark.size as i64,
                root: hex::encode(mark.root),
                note: signed,
                made_at: now_ms(),
            },
        )
        .await?;
        tx.commit("keep audit checkpoint").await?;
        self.state().kept = Some((mark.size, Instant::now()));
        Ok(())
    }

    /// Starts from the log as the database has it at start-up (the only time the mark is read
    /// from the database: a process that has committed nothing knows no better), checked
    /// against the largest checkpoint published: a log shorter than it, or different at its
    /// size, was rolled back while no process was watching, and the alarm is raised.
    pub async fn start_from(
        &self,
        db: &Db,
        blobs: &BlobStore,
        keys: &Keyring,
    ) -> Result<(), ApiError> {
        // Only checkpoints at or past the database's head are listed (strict mode writes one
        // per batch: listing them all at every start would grow with the log).
        let head = store::head(&db.pool).await?.seq as u64;
        let published = match largest_published(blobs, keys, &self.policy.origin, head).await? {
            Ok(published) => published,
            Err(problem) => {
                self.raise(problem);
                None
            }
        };
        let mut snapshot = db.snapshot().await?;
        let size = store::head(&mut *snapshot).await?.seq as u64;
        // The largest published checkpoint is what was committed before this process, whoever
        // committed it. A mismatch raises the alarm (the vault starts, refusing to append, and
        // `/readyz` says why); only a failure to read is an error here.
        let published = published.map(|c| Mark {
            size: c.size,
            root: c.root,
        });
        if let Err(e) = self
            .check_against(&mut snapshot, size, None, published)
            .await
            && self.alarm().is_none()
        {
            return Err(e);
        }
        let root = tree::root(&mut snapshot, size).await;
        snapshot.rollback().await?;
        self.advance(Mark { size, root: root? });
        Ok(())
    }
}

/// Writes `bytes` under `key`, never over other bytes: an existing key is compared, not
/// written (the same checkpoint from another process, or this one's checkpointer, is fine; other
/// bytes are a fork). Asked with a HEAD, which carries no body, so a read waits for at most one
/// body going through the store, its own. The put itself refuses an existing key where the store
/// can (`O_EXCL` locally; `If-None-Match: *` on S3, which some S3 stores, Garage among them,
/// ignore), so a put refused because another process got there first is compared too.
async fn write_once(blobs: &BlobStore, key: &str, bytes: &[u8]) -> Result<(), ApiError> {
    if blobs.exists(key).await? {
        if same_or_absent(blobs, key, bytes).await? {
            return Ok(());
        }
        // There for the HEAD, gone for the GET: a store that does not agree with itself.
        return Err(ApiError::Unavailable(format!(
            "{key} was there and then not: the object store is not answering consistently"
        )));
    }
    if let Err(e) = blobs.put_all(key, Bytes::copy_from_slice(bytes)).await {
        return match same_or_absent(blobs, key, bytes).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(e.into()),
            Err(conflict) => Err(conflict),
        };
    }
    Ok(())
}

/// `true` if `key` holds `bytes`, `false` if it holds nothing; a fork if it holds anything else.
async fn same_or_absent(blobs: &BlobStore, key: &str, bytes: &[u8]) -> Result<bool, ApiError> {
    match blobs.get_all(key).await {
        Ok(existing) if existing == bytes => Ok(true),
        Ok(_) => Err(ApiError::Conflict(format!(
            "{key} already holds a different checkpoint of the same size: the audit log in \
             the database is not the one published (rolled back and regrown); nothing was \
             overwritten"
        ))),
        Err(BlobError::Missing(_)) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The largest checkpoint in the object store of at least `from` entries (keys sort by size),
/// checked against the key.
async fn largest_published(
    blobs: &BlobStore,
    keys: &Keyring,
    origin: &str,
    from: u64,
) -> Result<Result<Option<Checkpoint>, String>, ApiError> {
    let listed = blobs
        .list_under_after(PREFIX, &object_key(from.saturating_sub(1)))
        .await?;
    let largest = listed
        .into_iter()
        .filter(|k| size_of_key(k).is_some())
        .max();
    open_largest(blobs, keys, origin, largest).await
}

/// The checkpoint stored under `key` (the largest of a listing), opened with the audit key.
async fn open_largest(
    blobs: &BlobStore,
    keys: &Keyring,
    origin: &str,
    key: Option<String>,
) -> Result<Result<Option<Checkpoint>, String>, ApiError> {
    let Some(key) = key else {
        return Ok(Ok(None));
    };
    let text = String::from_utf8_lossy(&blobs.get_all(&key).await?).into_owned();
    Ok(note::open(&text, origin, keys.audit.public_key())
        .map(Some)
        .map_err(|e| format!("the checkpoint {key} does not verify: {e}")))
}

/// A checkpoint someone outside the database vouches for: the object store's, or a witness's.
#[derive(Clone, Debug)]
pub struct Trusted {
    pub size: u64,
    pub root: Hash,
    /// Where it came from, for the report: "the object store", "the witness state".
    pub source: String,
}

/// The largest checkpoint in the object store, opened with the audit key: it alone says
/// whether the log was rolled back (it is longer than the log) or rewritten (the log's root at
/// its size differs), whatever smaller ones say, and strict mode writes one per batch, so
/// reading them all would grow with the log. The keys are all listed: one that does not name a
/// checkpoint, or a largest note that does not open (forged, or signed by another key), is an
/// error naming its object.
pub async fn published(
    blobs: &BlobStore,
    keys: &Keyring,
    origin: &str,
) -> Result<Result<Vec<Trusted>, String>, ApiError> {
    let listed = blobs.list_under(PREFIX).await?;
    if let Some(stray) = listed.iter().find(|k| size_of_key(k).is_none()) {
        return Ok(Err(format!(
            "{stray} in the checkpoints' place is not a checkpoint"
        )));
    }
    // Keys name sizes with leading zeros: the largest name is the largest size.
    let largest = listed.into_iter().max();
    Ok(open_largest(blobs, keys, origin, largest).await?.map(|c| {
        c.map(|c| Trusted {
            size: c.size,
            root: c.root,
            source: format!("the object store ({})", object_key(c.size)),
        })
        .into_iter()
        .collect()
    }))
}
