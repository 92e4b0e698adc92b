//! Appending to the log inside a transaction: the chain's lock, the entries, the tree's new
//! nodes, a signed head every [`SIGNED_HEAD_EVERY`] entries and the signed head after the last.
//!
//! Fail closed: an entry is written in the same transaction as the change it records; if it
//! cannot be written the change is not made. Every change a request makes goes through the
//! process's log writer ([`super::writer`], which counts its requests' failures); [`begin`]
//! takes the chain's lock for the writer and for the one-off tree build at start-up.

use super::chain::{entry_hash, entry_leaf, head_message};
use super::{Entry, tree};
use crate::crypto::keyring::Keyring;
use crate::db::audit::{self as store, EntryRow, Head};
use crate::db::script::{Rows, Script, Slot};
use crate::db::{Db, DbError, Tx};
use crate::error::ApiError;
use crate::metrics::Metrics;

/// A signed head is kept every this many entries (`audit_signed_heads`), so a log cut off past
/// one is found even if the latest signed head was rewritten. Not the C2SP checkpoints
/// ([`super::checkpoints`]), which are published outside the database.
pub const SIGNED_HEAD_EVERY: i64 = 256;

/// Begins a transaction that will append to the log, taking the chain's lock first.
pub async fn begin(db: &Db, metrics: &Metrics) -> Result<Tx, ApiError> {
    counted(metrics, open(db)).await
}

/// [`begin`], uncounted.
async fn open(db: &Db) -> Result<Tx, ApiError> {
    let mut tx = db.begin().await.map_err(DbError::into_unavailable)?;
    store::lock_head(&mut tx).await?;
    Ok(tx)
}

/// Where an appended entry sits: its `seq` (leaf index `seq - 1`) and leaf hash — a read's
/// receipt.
#[derive(Clone, Copy, Debug)]
pub struct Appended {
    pub seq: i64,
    pub leaf: super::merkle::Hash,
}

/// Commits a transaction from [`begin`]: the change and its entry become durable together, or
/// neither does.
async fn commit(tx: Tx, metrics: &Metrics) -> Result<(), ApiError> {
    counted(metrics, close(tx)).await
}

/// [`commit`], uncounted (for the writer, which counts per request).
async fn close(tx: Tx) -> Result<(), ApiError> {
    tx.commit("audit log (commit)")
        .await
        .map_err(|e| ApiError::from(e.into_unavailable()))
}

async fn counted<T>(
    metrics: &Metrics,
    work: impl Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    work.await
        .inspect_err(|_| Metrics::inc(&metrics.audit_failures))
}

/// Appends entries inside one transaction from [`begin`]: the head and the tree's right edge are
/// read once, each entry is chained, hashed into the tree and its head signed every
/// [`SIGNED_HEAD_EVERY`] in memory, and [`Appender::finish`] stores the entries, the new tree
/// nodes, those signed heads and the
/// signed head in a few statements. What commits is the same chain, tree and signed head as one
/// entry at a time; a batch just costs one head signature and a handful of round trips.
pub struct Appender {
    /// When every entry of this append is dated.
    at: i64,
    started: i64,
    /// The root of the log as this appender found it, from the tree's right edge (`None` if a
    /// node of the edge was never stored).
    start_root: Option<super::merkle::Hash>,
    seq: i64,
    hash: String,
    tree: tree::Frontier,
    rows: Vec<EntryRow>,
    signed_heads: Vec<(Head, i64)>,
}

/// The statements that open an append, in the script that begins its transaction; read back
/// by [`Appender::opened`].
pub struct Opening {
    head: Slot,
    edge: tree::EdgeQuery,
}

impl Appender {
    /// Adds to `script`, just begun ([`crate::db::Db::script_begin`]), the log's lock, its head
    /// and the tree's right edge as of `expected` entries: the size this process last committed,
    /// right unless another process appended since (then [`Appender::opened`] reads the edge
    /// again). On SQLite the whole opening is one hand-off to the database's thread.
    pub fn push_open(script: &mut Script, expected: u64) -> Opening {
        Opening {
            head: store::push_lock_and_head(script),
            edge: tree::Frontier::push_load(script, expected),
        }
    }

    /// The appender, from the rows of the script [`Appender::push_open`] added to. Every entry
    /// it appends is dated `at`.
    pub async fn opened(
        tx: &mut Tx,
        opening: Opening,
        rows: &Rows,
        at: i64,
    ) -> Result<Self, ApiError> {
        let head = store::head_from(rows.of(opening.head))?;
        let size = head.seq as u64;
        let tree = if opening.edge.size() == size {
            tree::Frontier::loaded(opening.edge, rows)?
        } else {
            tree::Frontier::load(tx, size).await?
        };
        Ok(Self {
            at,
            start_root: tree.root(size),
            started: head.seq,
            seq: head.seq,
            hash: head.hash,
            tree,
            rows: Vec::new(),
            signed_heads: Vec::new(),
        })
    }

    pub fn append(&mut self, keys: &Keyring, entry: Entry) -> Result<Appended, ApiError> {
        let mut row = EntryRow {
            seq: self.seq + 1,
            at: self.at,
            actor: entry.actor,
            role: entry.role,
            office: entry.office,
            action: entry.action,
            outcome: entry.outcome,
            document_id: entry.document_id,
            citizen_idx: entry.citizen_idx,
            grant_id: entry.grant_id,
            case_ref: entry.case_ref,
            reason: entry.reason,
            prev_hash: std::mem::take(&mut self.hash),
            hash: String::new(),
        };
        row.hash = entry_hash(keys.audit_chain_key(), &row)
            .map_err(|e| ApiError::Internal(format!("audit head is corrupt: {e}")))?;
        let leaf =
            entry_leaf(&row).map_err(|e| ApiError::Internal(format!("audit entry leaf: {e}")))?;
        self.tree.add_leaf((row.seq - 1) as u64, leaf)?;
        self.seq = row.seq;
        self.hash = row.hash.clone();
        if self.seq % SIGNED_HEAD_EVERY == 0 {
            self.signed_heads.push((self.signed(keys)?, row.at));
        }
        self.rows.push(row);
        Ok(Appended {
            seq: self.seq,
            leaf,
        })
    }

    /// The log's size when this appender started (the database's head then).
    pub fn started_at(&self) -> u64 {
        self.started as u64
    }

    /// The log's root when this appender started, if the loaded edge gives it.
    pub fn start_root(&self) -> Option<super::merkle::Hash> {
        self.start_root
    }

    fn signed(&self, keys: &Keyring) -> Result<Head, ApiError> {
        Ok(Head {
            seq: self.seq,
            hash: self.hash.clone(),
            signature: hex::encode(keys.audit.sign(&head_message(self.seq, &self.hash))?),
        })
    }

    /// Stores what was appended (entries, tree nodes, signed heads) and the signed head after
    /// the last entry, and commits: on SQLite one hand-off to the database's thread.
    ///
    /// Returns the log as it is now committed (`None` if nothing was appended). The root comes
    /// from the tree's right edge in memory, or, if a node of it was never loaded, from the tree
    /// just stored; a tree that cannot give one fails the batch: what is appended is always
    /// covered by what the process can publish.
    pub async fn finish(
        mut self,
        mut tx: Tx,
        keys: &Keyring,
    ) -> Result<Option<super::checkpoints::Mark>, ApiError> {
        if self.rows.is_empty() {
            close(tx).await?;
            return Ok(None);
        }
        let made = self.tree.take_made();
        let head = self.signed(keys)?;
        let mut script = tx.script();
        store::push_entries(&mut script, &self.rows);
        store::push_nodes(&mut script, &made);
        for (head, at) in &self.signed_heads {
            store::push_signed_head(&mut script, head, *at);
        }
        store::push_set_head(&mut script, &head);
        let size = self.seq as u64;
        let root = match self.tree.root(size) {
            Some(root) => root,
            None => {
                let stored = std::mem::replace(&mut script, tx.script());
                tx.run(
                    stored,
                    DbError::unavailable("audit log unavailable (append)"),
                )
                .await?;
                tree::root(&mut tx, size).await?
            }
        };
        tx.commit_after(script, DbError::unavailable("audit log (commit)"))
            .await?;
        Ok(Some(super::checkpoints::Mark { size, root }))
    }
}

/// Builds the Merkle tree for entries logged before the tree existed (migration 4), under the
/// log's lock, so appends find every left sibling. A no-op once the tree has every entry.
pub async fn build_missing_tree(db: &Db, metrics: &Metrics) -> Result<u64, ApiError> {
    let leaves = store::leaf_count(&db.pool).await?;
    if leaves >= store::head(&db.pool).await?.seq {
        return Ok(0);
    }
    let mut tx = begin(db, metrics).await?;
    let mut done = store::leaf_count(&mut *tx).await?;
    let mut tree = tree::Frontier::load(&mut tx, done as u64).await?;
    let mut added = 0;
    loop {
        let page = store::page(&mut *tx, done, 1000).await?;
        if page.is_empty() {
            break;
        }
        for e in page {
            let leaf = entry_leaf(&e)
                .map_err(|err| ApiError::Internal(format!("audit entry {}: {err}", e.seq)))?;
            tree.add_leaf((e.seq - 1) as u64, leaf)?;
            done = e.seq;
            added += 1;
        }
        tree.store(&mut tx).await?;
    }
    commit(tx, metrics).await?;
    Ok(added)
}
