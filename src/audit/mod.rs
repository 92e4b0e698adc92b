//! The audit log: append-only, hash-chained, with a signed head.
//!
//! # Chain layout (version 1)
//!
//! ```text
//! hash_n = HMAC-SHA-256(audit-chain key,
//!            "hoso/audit/v1" | seq u64 BE | at i64 BE (ms) | F(actor) | F(role) | F(office)
//!            | F(action) | F(outcome) | F(document_id) | F(citizen_idx) | F(grant_id)
//!            | F(case_ref) | F(reason) | prev_hash (32 bytes))
//! F(text)  = len u32 BE | UTF-8 bytes;   F(absent) = 0xFFFFFFFF
//! hash_0   = 32 zero bytes (the empty chain)
//!
//! head signature = Ed25519(audit signing key, "hoso/audit-head/v1" | seq u64 BE | hash_seq)
//! ```
//!
//! Every field is in the hash, and so is `seq`, so editing, deleting or reordering rows breaks
//! the chain at the first bad entry. The keyed hash means someone with only database access
//! cannot recompute a consistent chain; the signed head and the checkpoints kept every
//! [`CHECKPOINT_EVERY`] entries catch a cut-off tail. Appends are serialised by a lock on the
//! head row taken as the first statement of the transaction ([`crate::db::audit::lock_head`]).
//!
//! Fail closed: an entry is written in the same transaction as the change it records, and
//! reads commit their entry before any document byte is sent; if the entry cannot be written
//! the request fails.

pub mod checkpoints;
pub mod group;
pub mod merkle;
pub mod note;
pub mod tree;
pub mod witness;

use serde::Serialize;

use crate::crypto::keyring::Keyring;
use crate::crypto::{hmac_sha256, signing};
use crate::db::audit::{self as store, EntryRow, Head};
use crate::db::{Db, DbError, Tx, now_ms};
use crate::error::ApiError;
use crate::metrics::Metrics;

pub const CHECKPOINT_EVERY: i64 = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Allowed,
    Denied,
    Error,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Denied => "denied",
            Self::Error => "error",
        }
    }
}

/// What a caller records. `seq`, `at` and the hashes are filled in by [`append`].
#[derive(Clone, Debug, Default)]
pub struct Entry {
    pub actor: String,
    pub role: String,
    pub office: String,
    pub action: &'static str,
    pub outcome: Option<Outcome>,
    pub document_id: Option<String>,
    pub citizen_idx: Option<String>,
    pub grant_id: Option<String>,
    pub case_ref: Option<String>,
    pub reason: Option<String>,
}

fn field(out: &mut Vec<u8>, value: Option<&[u8]>) {
    match value {
        Some(text) => {
            let len = u32::try_from(text.len()).expect("audit fields are short");
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(text);
        }
        None => out.extend_from_slice(&u32::MAX.to_be_bytes()),
    }
}

/// The documented hash of one entry.
pub fn entry_hash(key: &[u8], e: &EntryRow) -> Result<String, &'static str> {
    Ok(hex::encode(hmac_sha256(key, &[&entry_message(e)?])))
}

/// The entry's leaf in the Merkle tree: its canonical bytes (the chain message above) followed
/// by its keyed hash, so the leaf binds every field and only the vault could have made it.
///
/// ```text
/// leaf data = chain message | hash_n (32 bytes);   leaf hash = SHA-256(0x00 | leaf data)
/// ```
pub fn entry_leaf(e: &EntryRow) -> Result<merkle::Hash, &'static str> {
    Ok(merkle::leaf_hash(&entry_leaf_data(e)?))
}

/// The leaf data of [`entry_leaf`].
pub fn entry_leaf_data(e: &EntryRow) -> Result<Vec<u8>, &'static str> {
    let mut data = entry_message(e)?;
    let mut hash = [0u8; 32];
    hex::decode_to_slice(&e.hash, &mut hash).map_err(|_| "hash is not 32 hex bytes")?;
    data.extend_from_slice(&hash);
    Ok(data)
}

fn entry_message(e: &EntryRow) -> Result<Vec<u8>, &'static str> {
    let mut msg = Vec::with_capacity(256);
    let required =
        [&e.actor, &e.role, &e.office, &e.action, &e.outcome].map(|t| Some(t.as_bytes()));
    let optional = [
        &e.document_id,
        &e.citizen_idx,
        &e.grant_id,
        &e.case_ref,
        &e.reason,
    ]
    .map(|t| t.as_deref().map(str::as_bytes));
    let mut fields = [None; 10];
    fields[..5].copy_from_slice(&required);
    fields[5..].copy_from_slice(&optional);
    let mut prev = [0u8; 32];
    hex::decode_to_slice(&e.prev_hash, &mut prev).map_err(|_| "prev_hash is not 32 hex bytes")?;
    chain_message(&mut msg, e.seq, e.at, &fields, &prev);
    Ok(msg)
}

/// Appends the chain message of the layout above to `out`: `fields` are `actor` to `reason`
/// in that order.
fn chain_message(
    out: &mut Vec<u8>,
    seq: i64,
    at: i64,
    fields: &[Option<&[u8]>; 10],
    prev: &[u8; 32],
) {
    out.extend_from_slice(b"hoso/audit/v1");
    out.extend_from_slice(&(seq as u64).to_be_bytes());
    out.extend_from_slice(&at.to_be_bytes());
    for value in fields {
        field(out, *value);
    }
    out.extend_from_slice(prev);
}

fn head_message(seq: i64, hash: &str) -> Vec<u8> {
    let mut msg = b"hoso/audit-head/v1".to_vec();
    msg.extend_from_slice(&(seq as u64).to_be_bytes());
    msg.extend_from_slice(&hex::decode(hash).unwrap_or_default());
    msg
}

/// Begins a transaction that will append to the log, taking the chain's lock first.
///
/// Every way of writing to the log (this, [`append`], [`commit`], [`record`]) counts its own
/// failures in `metrics`, so `hoso_audit_failures_total` sees every request that failed closed.
pub async fn begin(db: &Db, metrics: &Metrics) -> Result<Tx, ApiError> {
    counted(metrics, async {
        let mut tx = db.begin().await.map_err(DbError::into_unavailable)?;
        store::lock_head(&mut tx).await?;
        Ok(tx)
    })
    .await
}

/// Where an appended entry sits: its `seq` (leaf index `seq - 1`) and leaf hash — a read's
/// receipt.
#[derive(Clone, Copy, Debug)]
pub struct Appended {
    pub seq: i64,
    pub leaf: merkle::Hash,
}

/// Appends an entry inside a transaction from [`begin`].
pub async fn append(
    tx: &mut Tx,
    keys: &Keyring,
    metrics: &Metrics,
    entry: Entry,
) -> Result<Appended, ApiError> {
    counted(metrics, append_row(tx, keys, entry)).await
}

/// Commits a transaction from [`begin`]: the change and its entry become durable together, or
/// neither does.
pub async fn commit(tx: Tx, metrics: &Metrics) -> Result<(), ApiError> {
    counted(metrics, async {
        tx.commit("audit log (commit)")
            .await
            .map_err(|e| ApiError::from(e.into_unavailable()))
    })
    .await
}

/// Appends one entry through the process's group-committed writer ([`group`]) and waits until
/// the transaction carrying it has committed.
pub async fn record(
    log: &group::GroupCommit,
    keys: &std::sync::Arc<Keyring>,
    metrics: &Metrics,
    entry: Entry,
) -> Result<(), ApiError> {
    counted(metrics, log.record(keys.clone(), entry)).await?;
    Ok(())
}

async fn counted<T>(
    metrics: &Metrics,
    work: impl Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    work.await
        .inspect_err(|_| Metrics::inc(&metrics.audit_failures))
}

async fn append_row(tx: &mut Tx, keys: &Keyring, entry: Entry) -> Result<Appended, ApiError> {
    let mut appender = Appender::start(tx).await?;
    let appended = appender.append(keys, entry)?;
    appender.finish(tx, keys).await?;
    Ok(appended)
}

/// Appends entries inside one transaction from [`begin`]: the head and the tree's right edge are
/// read once, each entry is chained, hashed into the tree and signed at checkpoints in memory,
/// and [`Appender::finish`] stores the entries, the new tree nodes, the checkpoints and the
/// signed head in a few statements. What commits is the same chain, tree and signed head as one
/// entry at a time; a batch just costs one head signature and a handful of round trips.
pub struct Appender {
    seq: i64,
    hash: String,
    tree: tree::Frontier,
    rows: Vec<EntryRow>,
    checkpoints: Vec<(Head, i64)>,
}

impl Appender {
    pub async fn start(tx: &mut Tx) -> Result<Self, ApiError> {
        let head = store::head(&mut **tx).await?;
        let tree = tree::Frontier::load(tx, head.seq as u64).await?;
        Ok(Self {
            seq: head.seq,
            hash: head.hash,
            tree,
            rows: Vec::new(),
            checkpoints: Vec::new(),
        })
    }

    pub fn append(&mut self, keys: &Keyring, entry: Entry) -> Result<Appended, ApiError> {
        let mut row = EntryRow {
            seq: self.seq + 1,
            at: now_ms(),
            actor: entry.actor,
            role: entry.role,
            office: entry.office,
            action: entry.action.to_owned(),
            outcome: entry
                .outcome
                .unwrap_or(Outcome::Allowed)
                .as_str()
                .to_owned(),
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
        if self.seq % CHECKPOINT_EVERY == 0 {
            self.checkpoints.push((self.signed(keys), row.at));
        }
        self.rows.push(row);
        Ok(Appended {
            seq: self.seq,
            leaf,
        })
    }

    fn signed(&self, keys: &Keyring) -> Head {
        Head {
            seq: self.seq,
            hash: self.hash.clone(),
            signature: hex::encode(keys.audit.sign(&head_message(self.seq, &self.hash))),
        }
    }

    /// Stores what was appended (entries, tree nodes, checkpoints) and the signed head after
    /// the last entry.
    pub async fn finish(mut self, tx: &mut Tx, keys: &Keyring) -> Result<(), ApiError> {
        if self.rows.is_empty() {
            return Ok(());
        }
        store::insert_all(tx, &self.rows).await?;
        self.tree.store(tx).await?;
        for (head, at) in &self.checkpoints {
            store::insert_checkpoint(tx, head, *at).await?;
        }
        store::set_head(tx, &self.signed(keys)).await?;
        Ok(())
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

#[derive(Debug, Serialize)]
pub struct Report {
    pub ok: bool,
    pub entries: i64,
    pub head: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_bad_seq: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// Walks the whole chain and the Merkle tree it builds, and checks them against the signed
/// head, the database's checkpoints and every `trusted` checkpoint (the object store's, a
/// witness's). Reports the first entry at which the log stops being the one the vault wrote —
/// including a log rolled back to an earlier state, which no database-only check can see.
///
/// `trusted` must be read *before* this is called: this reads one database snapshot taken
/// now, which then holds at least every entry those checkpoints cover, however busy the vault.
pub async fn verify_log(
    db: &Db,
    keys: &Keyring,
    trusted: &[checkpoints::Trusted],
) -> Result<Report, ApiError> {
    // One snapshot for every read: entries appended while the check runs are not half-seen
    // (a head read before them and a walk that finds them would cry tampering on any busy day).
    let mut snapshot = db.snapshot().await?;
    let report = verify_in(db, &mut snapshot, keys, trusted).await;
    snapshot.rollback().await?;
    report
}

async fn verify_in(
    db: &Db,
    snapshot: &mut crate::db::Tx,
    keys: &Keyring,
    trusted: &[checkpoints::Trusted],
) -> Result<Report, ApiError> {
    let public = keys.audit.public_key();
    let checkpoints = store::checkpoints(&mut **snapshot).await?;
    let head = store::head(&mut **snapshot).await?;
    let notes = db_notes(snapshot, public).await?;
    let last = store::last_seq(&mut **snapshot).await?;
    let mut trusted: Vec<checkpoints::Trusted> = trusted.iter().cloned().chain(notes).collect();
    trusted.sort_by_key(|t| t.size);
    // The entries are read (up to the snapshot's last) while another core hashes them.
    let (pages, received) = tokio::sync::mpsc::channel(4);
    let chain_key = crate::crypto::HmacSha256::new(keys.audit_chain_key());
    let sorted = trusted.clone();
    let walking = tokio::task::spawn_blocking(move || walk_chain(received, &chain_key, &sorted));
    // The checkpoints' signatures do not depend on the walk: they are checked beside it, in
    // the time the reading thread leaves (one Ed25519 check per 256 entries was a tenth of a
    // verify, run after the walk). What each one means is decided after, in the same order.
    let checking = {
        let public = public.to_vec();
        tokio::task::spawn_blocking(move || {
            let signed = checkpoints
                .iter()
                .map(|cp| head_signature_valid(&public, cp))
                .collect::<Vec<bool>>();
            (checkpoints, signed)
        })
    };
    let ((), walked, checked) = tokio::join!(store::read_chain(db, last, pages), walking, checking);
    let walked = walked.map_err(|e| ApiError::Internal(format!("the log walk stopped: {e}")))?;
    let (checkpoints, signed) =
        checked.map_err(|e| ApiError::Internal(format!("the signature check stopped: {e}")))?;
    let walk = match walked? {
        Ok(walk) => walk,
        Err(bad) => return Ok(bad),
    };
    if let Some(t) = trusted.iter().find(|t| t.size > walk.entries as u64) {
        return Ok(walk.bad(
            walk.entries + 1,
            format!(
                "{} holds a signed checkpoint of {} entries, but the log has only {}: entries \
                 were removed (a rollback or a cut-off tail)",
                t.source, t.size, walk.entries
            ),
        ));
    }
    if let Err(bad) = check_checkpoints(&checkpoints, &signed, &walk) {
        return Ok(bad);
    }
    if let Err(bad) = check_head(public, &head, &walk) {
        return Ok(bad);
    }
    // The stored tree (what proofs are made from) must be the one the entries make.
    let stored = tree::root(snapshot, walk.entries as u64).await;
    if stored.as_ref().ok() != Some(&walk.root) {
        return Ok(walk.bad(
            walk.entries,
            "the stored Merkle tree does not match the entries (proofs would not verify)".into(),
        ));
    }
    Ok(Report {
        ok: true,
        entries: walk.entries,
        head: walk.last_hash(),
        first_bad_seq: None,
        problem: None,
    })
}

/// The database's own copies of the checkpoints, as trusted checkpoints if they verify (one
/// that does not is reported by its size, with a root nothing matches).
async fn db_notes(
    snapshot: &mut crate::db::Tx,
    public: &[u8],
) -> Result<Vec<checkpoints::Trusted>, ApiError> {
    let mut out = Vec::new();
    let mut after = -1;
    loop {
        let rows = store::notes_after(&mut **snapshot, after, 1000).await?;
        let Some(last) = rows.last() else {
            return Ok(out);
        };
        after = last.size;
        for row in rows {
            let origin = row.note.split('\n').next().unwrap_or_default().to_owned();
            let root = match note::open(&row.note, &origin, public) {
                Ok(c) if c.size == row.size as u64 => c.root,
                // A forged or altered note matches no tree: it shows up as a mismatch there.
                _ => [0xff; 32],
            };
            out.push(checkpoints::Trusted {
                size: row.size as u64,
                root,
                source: "the database's checkpoint table".into(),
            });
        }
    }
}

/// What a walk of an unbroken chain found.
struct Walk {
    entries: i64,
    /// The last entry's hash (all zero before the first).
    last: merkle::Hash,
    /// The Merkle root of the entries walked.
    root: merkle::Hash,
    /// The hash at every seq a checkpoint is due at.
    at_checkpoints: std::collections::HashMap<i64, String>,
}

impl Walk {
    fn last_hash(&self) -> String {
        hex::encode(self.last)
    }

    fn bad(&self, seq: i64, problem: String) -> Report {
        Report {
            ok: false,
            entries: self.entries,
            head: self.last_hash(),
            first_bad_seq: Some(seq),
            problem: Some(problem),
        }
    }
}

/// Takes the entries a page at a time in `seq` order, checking that each follows the previous
/// one and hashes to what it says.
/// The tree is built as the entries stream past ([`merkle::CompactRange`], O(log n) hashes), and
/// its root is compared with each trusted checkpoint (sorted by size) as the walk reaches it.
/// Runs on a blocking thread: it is all hashing.
fn walk_chain(
    mut pages: tokio::sync::mpsc::Receiver<Result<store::ChainPage, DbError>>,
    chain_key: &crate::crypto::HmacSha256,
    trusted: &[checkpoints::Trusted],
) -> Result<Result<Walk, Report>, ApiError> {
    let mut walk = Walk {
        entries: 0,
        last: [0; 32],
        root: merkle::empty_root(),
        at_checkpoints: std::collections::HashMap::new(),
    };
    let mut tree = merkle::CompactRange::default();
    let mut pending = trusted.iter().peekable();
    let mut message = Vec::with_capacity(512);
    // The last entry's hash as stored (hex), and this entry's, computed.
    let mut last_hex = [b'0'; 64];
    let (mut computed, mut hash) = ([0u8; 64], [0u8; 32]);
    while let Some(page) = pages.blocking_recv() {
        for e in page?.entries() {
            let expected_seq = walk.entries + 1;
            let problem = if e.seq != expected_seq {
                Some((
                    expected_seq,
                    format!(
                        "entry {expected_seq} is missing (next present is {})",
                        e.seq
                    ),
                ))
            } else if e.prev_hash != last_hex {
                Some((e.seq, "does not follow the previous entry".to_owned()))
            } else {
                // prev_hash is the previous entry's hash, checked: its bytes are `walk.last`.
                message.clear();
                chain_message(&mut message, e.seq, e.at, &e.fields, &walk.last);
                hash = chain_key.sign(&[&message]);
                hex::encode_to_slice(hash, &mut computed).expect("64 hex digits");
                (e.hash != computed).then(|| (e.seq, "content was altered".to_owned()))
            };
            if let Some((seq, problem)) = problem {
                return Ok(Err(walk.bad(seq, problem)));
            }
            // The stored hash is the computed one, so the leaf takes the computed bytes.
            tree.push(merkle::leaf_hash_of(&[&message, &hash]));
            walk.last = hash;
            last_hex = computed;
            if e.seq % CHECKPOINT_EVERY == 0 {
                walk.at_checkpoints.insert(e.seq, walk.last_hash());
            }
            walk.entries = e.seq;
            while let Some(t) = pending.next_if(|t| t.size <= tree.size()) {
                if t.size == tree.size() && t.root != tree.root() {
                    return Ok(Err(walk.bad(
                        e.seq,
                        format!(
                            "the first {} entries differ from what {} signed: the log was \
                             rewritten or rolled back and regrown",
                            t.size, t.source
                        ),
                    )));
                }
            }
        }
    }
    walk.root = tree.root();
    Ok(Ok(walk))
}

/// Every stored checkpoint must be signed (`signed`: whether each one's signature is valid)
/// and match the chain at its seq.
fn check_checkpoints(checkpoints: &[Head], signed: &[bool], walk: &Walk) -> Result<(), Report> {
    for (cp, &valid) in checkpoints.iter().zip(signed) {
        if !valid {
            return Err(walk.bad(cp.seq, "checkpoint signature is invalid".into()));
        }
        match walk.at_checkpoints.get(&cp.seq) {
            Some(hash) if *hash == cp.hash => {}
            Some(_) => {
                return Err(walk.bad(cp.seq, "differs from its signed checkpoint".into()));
            }
            None => {
                return Err(walk.bad(
                    walk.entries + 1,
                    format!(
                        "the log ends at {} but a signed checkpoint covers {}",
                        walk.entries, cp.seq
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The signed head must be signed and name the chain's last entry.
fn check_head(public: &[u8], head: &Head, walk: &Walk) -> Result<(), Report> {
    if head.seq != 0 && !head_signature_valid(public, head) {
        return Err(walk.bad(head.seq, "head signature is invalid".into()));
    }
    if head.seq != walk.entries || head.hash != walk.last_hash() {
        let first = (head.seq.min(walk.entries) + 1).max(1);
        return Err(walk.bad(
            first,
            format!(
                "the signed head says {} entries, the log has {}",
                head.seq, walk.entries
            ),
        ));
    }
    Ok(())
}

fn head_signature_valid(public: &[u8], head: &Head) -> bool {
    signing::signature_is_valid(
        public,
        &head_message(head.seq, &head.hash),
        &hex::decode(&head.signature).unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `docs/known_answers.py` computes this from the layout documented above.
    #[test]
    fn known_answer_an_entry_hash_has_the_documented_bytes() {
        let entry = EntryRow {
            seq: 5,
            at: 1_764_547_200_000,
            actor: "lan.nguyen".into(),
            role: "clerk".into(),
            office: "UBND-HAICHAU".into(),
            action: "document.read".into(),
            outcome: "allowed".into(),
            document_id: Some("0190a4b2-0000-7000-8000-000000000001".into()),
            citizen_idx: Some("42".repeat(32)),
            grant_id: None,
            case_ref: Some("000.00.31.H40-261124-0042".into()),
            reason: None,
            prev_hash: "11".repeat(32),
            hash: String::new(),
        };
        assert_eq!(
            entry_hash(&[0x77; 32], &entry).unwrap(),
            "27bb82ad4a6f23cd69ce02cea377f94468ab005244a51d3e728ed48ffd170c5f"
        );
    }
}
