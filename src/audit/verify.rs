//! Verifying the log: one walk of the chain and the tree it builds, checked against the signed
//! head, the signed heads kept every [`SIGNED_HEAD_EVERY`] entries, the database's checkpoints
//! and every trusted checkpoint from outside the database (the object store's, a witness's).

use serde::Serialize;

use super::append::SIGNED_HEAD_EVERY;
use super::chain::{chain_message, head_signature_valid};
use super::{AuditAction, Outcome, checkpoints, merkle, note, tree};
use crate::crypto::keyring::Keyring;
use crate::db::audit::{self as store, ChainEntry, Head};
use crate::db::{Db, DbError, Tx};
use crate::error::ApiError;

#[derive(Debug, Serialize)]
pub struct Report {
    pub ok: bool,
    pub entries: i64,
    pub head: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_bad_seq: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    /// Grants whose row disagrees with the vault's seal or with the log (see
    /// `records::oversight::check_grants`); any makes the report not ok.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub grants: Vec<GrantProblem>,
}

/// A grant row that is not what the vault wrote.
#[derive(Clone, Debug, Serialize)]
pub struct GrantProblem {
    pub grant_id: String,
    pub problem: String,
}

/// The content reads the log holds as allowed through one grant, as the walk counted them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GrantReads {
    /// How many: what the grant's count of uses spent must equal, since a read spends its use
    /// in the transaction that logs it.
    pub count: i64,
    /// When the last was logged (ms).
    pub last_at: i64,
    /// How many were logged after the grant's revocation entry.
    pub after_revocation: i64,
    /// Whether the walk has passed the grant's revocation entry.
    revoked: bool,
}

/// The grants whose reads a walk counts, by id as the log writes it (hyphenated, lower case),
/// and what it counted. Only the grants watched are counted: the check compares grant rows with
/// the log, so memory follows the rows, not the log (a log of one-read grants names as many
/// grants as it holds reads).
#[derive(Debug, Default)]
pub struct GrantTally(std::collections::HashMap<[u8; 36], GrantReads>);

impl GrantTally {
    /// Counts the reads through the grant whose id is stored as `id`. Reads name their grant as
    /// the vault writes ids, so an id stored in another spelling is counted none: its uses, if
    /// any, then disagree with the log, as they did when the check joined the two as text.
    pub fn watch(&mut self, id: &str) {
        if let Ok(key) = <[u8; 36]>::try_from(id.as_bytes()) {
            self.0.insert(key, GrantReads::default());
        }
    }

    /// What the walk counted through grant `id` (nothing, for a grant not watched).
    pub fn reads(&self, id: uuid::Uuid) -> GrantReads {
        self.0.get(&tally_key(id)).copied().unwrap_or_default()
    }

    /// Counts `e` if it is an allowed content read, or the revocation, of a watched grant.
    fn see(&mut self, e: &ChainEntry<'_>) {
        // Indices in the chain message's fields (see `super::chain`).
        const ACTION: usize = 3;
        const OUTCOME: usize = 4;
        const GRANT_ID: usize = 7;
        if self.0.is_empty() || e.fields[OUTCOME] != Some(Outcome::Allowed.as_str().as_bytes()) {
            return;
        }
        let watched = e.fields[GRANT_ID]
            .and_then(|id| <[u8; 36]>::try_from(id).ok())
            .and_then(|id| self.0.get_mut(&id));
        let (Some(reads), Some(action)) = (watched, e.fields[ACTION]) else {
            return;
        };
        if action == AuditAction::DocumentContent.as_str().as_bytes() {
            reads.count += 1;
            reads.last_at = reads.last_at.max(e.at);
            reads.after_revocation += i64::from(reads.revoked);
        } else if action == AuditAction::GrantRevoke.as_str().as_bytes() {
            reads.revoked = true;
        }
    }
}

fn tally_key(id: uuid::Uuid) -> [u8; 36] {
    let mut key = [0u8; 36];
    id.hyphenated().encode_lower(&mut key);
    key
}

/// What [`verify_log`] found.
pub struct Verified {
    pub report: Report,
    /// The reads the walk counted through the watched grants; `None` when the walk stopped
    /// before the log's end (its counts would be partial).
    pub grants: Option<GrantTally>,
}

/// Walks the whole chain and the Merkle tree it builds, and checks them against the signed
/// head, the signed heads, the database's checkpoints and every `trusted` checkpoint (the object store's, a
/// witness's). Reports the first entry at which the log stops being the one the vault wrote —
/// including a log rolled back to an earlier state, which no database-only check can see. On
/// the way it counts the reads through each grant in `grants`; `beside` reads the snapshot
/// while the log is walked (the walk reads the entries on a connection of its own), and its
/// answer is returned with the walk's.
///
/// Every read is in `snapshot` ([`Db::snapshot`]): entries appended while the check runs are not
/// half-seen (a head read before them and a walk that finds them would cry tampering on any
/// busy day), and rows read from the same snapshot agree with the entries walked. `trusted`
/// must be read *before* the snapshot's first read, which then holds at least every entry those
/// checkpoints cover, however busy the vault.
pub async fn verify_log<T>(
    db: &Db,
    snapshot: &mut Tx,
    keys: &Keyring,
    trusted: &[checkpoints::Trusted],
    grants: GrantTally,
    beside: impl AsyncFnOnce(&mut Tx) -> Result<T, ApiError>,
) -> Result<(Verified, T), ApiError> {
    let public = keys.audit.public_key();
    let signed_heads = store::signed_heads(&mut **snapshot).await?;
    let head = store::head(&mut **snapshot).await?;
    let (notes, future) = db_notes(snapshot, public).await?;
    let last = store::last_seq(&mut **snapshot).await?;
    let mut trusted: Vec<checkpoints::Trusted> = trusted.iter().cloned().chain(notes).collect();
    trusted.sort_by_key(|t| t.size);
    // The entries are read (up to the snapshot's last) while another core hashes them.
    let (pages, received) = tokio::sync::mpsc::channel(4);
    let chain_key = crate::crypto::HmacSha256::new(keys.audit_chain_key());
    let sorted = trusted.clone();
    let walking =
        tokio::task::spawn_blocking(move || walk_chain(received, &chain_key, &sorted, grants));
    let checking = check_signatures(public.to_vec(), signed_heads);
    let ((), walked, checked, beside) = tokio::join!(
        store::read_chain(db, last, pages),
        walking,
        checking,
        beside(snapshot)
    );
    let beside = beside?;
    let walked = walked.map_err(|e| ApiError::Internal(format!("the log walk stopped: {e}")))?;
    let (signed_heads, signed) =
        checked.map_err(|e| ApiError::Internal(format!("the signature check stopped: {e}")))?;
    let mut walk = match walked? {
        Ok(walk) => walk,
        Err(bad) => {
            let verified = Verified {
                report: bad,
                grants: None,
            };
            return Ok((verified, beside));
        }
    };
    let grants = Some(std::mem::take(&mut walk.grants));
    let report = match check_walk(&walk, &trusted, (&signed_heads, &signed), public, &head) {
        Err(bad) => bad,
        Ok(()) => check_rest(snapshot, &walk, future).await,
    };
    Ok((Verified { report, grants }, beside))
}

/// What a whole walk must still agree with in the database: no checkpoint dated in the future
/// (`future`: the first one's size and time), and the stored Merkle tree.
async fn check_rest(snapshot: &mut Tx, walk: &Walk, future: Option<(i64, i64)>) -> Report {
    if let Some((size, at)) = future {
        return walk.bad(
            size,
            format!(
                "the database's checkpoint of {size} entries is dated {}, in the future: its \
                 clock was set ahead (to stop time-based checkpoints)",
                crate::domain::format_rfc3339(at)
            ),
        );
    }
    // The stored tree (what proofs are made from) must be the one the entries make.
    let stored = tree::root(snapshot, walk.entries as u64).await;
    if stored.as_ref().ok() != Some(&walk.root) {
        return walk.bad(
            walk.entries,
            "the stored Merkle tree does not match the entries (proofs would not verify)".into(),
        );
    }
    Report {
        ok: true,
        entries: walk.entries,
        head: walk.last_hash(),
        first_bad_seq: None,
        problem: None,
        grants: Vec::new(),
    }
}

/// Checks the signed heads' signatures on a thread of their own: they do not depend on the
/// walk, so they run in the time the reading thread leaves (run after the walk, one Ed25519
/// check per 256 entries was a noticeable share of a verify). What each means is decided after
/// the walk, in order. Returns the heads and, for each, whether its signature is valid.
fn check_signatures(
    public: Vec<u8>,
    heads: Vec<Head>,
) -> tokio::task::JoinHandle<(Vec<Head>, Vec<bool>)> {
    tokio::task::spawn_blocking(move || {
        let valid = heads
            .iter()
            .map(|h| head_signature_valid(&public, h))
            .collect();
        (heads, valid)
    })
}

/// What an unbroken walk must still agree with: no trusted checkpoint beyond its end, every
/// kept signed head (with whether its signature is valid), and the signed head.
fn check_walk(
    walk: &Walk,
    trusted: &[checkpoints::Trusted],
    (heads, valid): (&[Head], &[bool]),
    public: &[u8],
    head: &Head,
) -> Result<(), Report> {
    // The largest, which says how much is missing (`trusted` is sorted by size).
    if let Some(t) = trusted.iter().rev().find(|t| t.size > walk.entries as u64) {
        return Err(walk.bad(
            walk.entries + 1,
            format!(
                "{} holds a signed checkpoint of {} entries, but the log has only {}: entries \
                 were removed (a rollback or a cut-off tail)",
                t.source, t.size, walk.entries
            ),
        ));
    }
    check_signed_heads(heads, valid, walk)?;
    check_head(public, head, walk)
}

/// How far in the future a checkpoint's time may be (clocks of several machines disagree a
/// little); beyond, someone set it ahead to stop time-based checkpoints.
const CLOCK_SKEW_MS: i64 = 5 * 60 * 1000;

/// The database's own copies of the checkpoints, as trusted checkpoints if they verify (one
/// that does not is reported by its size, with a root nothing matches); and the first one whose
/// time is in the future, if any (size and time).
async fn db_notes(
    snapshot: &mut Tx,
    public: &[u8],
) -> Result<(Vec<checkpoints::Trusted>, Option<(i64, i64)>), ApiError> {
    let mut out = Vec::new();
    let mut future = None;
    let mut after = -1;
    let now = crate::db::now_ms();
    loop {
        let rows = store::notes_after(&mut **snapshot, after, 1000).await?;
        let Some(last) = rows.last() else {
            return Ok((out, future));
        };
        after = last.size;
        for row in rows {
            if row.made_at > now + CLOCK_SKEW_MS && future.is_none() {
                future = Some((row.size, row.made_at));
            }
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
    /// The hash at every seq a signed head is kept at.
    at_signed_heads: std::collections::HashMap<i64, String>,
    /// The reads through the watched grants, counted as the walk passes them.
    grants: GrantTally,
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
            grants: Vec::new(),
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
    grants: GrantTally,
) -> Result<Result<Walk, Report>, ApiError> {
    let mut walker = Walker {
        walk: Walk {
            entries: 0,
            last: [0; 32],
            root: merkle::empty_root(),
            at_signed_heads: std::collections::HashMap::new(),
            grants,
        },
        tree: merkle::CompactRange::default(),
        message: Vec::with_capacity(512),
        last_hex: [b'0'; 64],
    };
    let mut pending = trusted.iter().peekable();
    while let Some(page) = pages.blocking_recv() {
        for e in page?.entries() {
            if let Err(bad) = walker.step(&e, chain_key) {
                return Ok(Err(bad));
            }
            let (walk, tree) = (&walker.walk, &walker.tree);
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
    walker.walk.root = walker.tree.root();
    Ok(Ok(walker.walk))
}

/// A walk in progress: what it found so far, the tree of the entries walked, and buffers kept
/// from one entry to the next.
struct Walker {
    walk: Walk,
    tree: merkle::CompactRange,
    message: Vec<u8>,
    /// The last entry's hash as stored (hex).
    last_hex: [u8; 64],
}

impl Walker {
    /// Checks that `e` is the next entry, follows the last one and hashes to what it says, then
    /// adds it to the walk and the tree.
    fn step(
        &mut self,
        e: &ChainEntry<'_>,
        chain_key: &crate::crypto::HmacSha256,
    ) -> Result<(), Report> {
        let walk = &mut self.walk;
        let expected_seq = walk.entries + 1;
        if e.seq != expected_seq {
            let problem = format!(
                "entry {expected_seq} is missing (next present is {})",
                e.seq
            );
            return Err(walk.bad(expected_seq, problem));
        }
        if e.prev_hash != self.last_hex {
            return Err(walk.bad(e.seq, "does not follow the previous entry".into()));
        }
        // prev_hash is the previous entry's hash, checked: its bytes are `walk.last`.
        self.message.clear();
        chain_message(&mut self.message, e.seq, e.at, &e.fields, &walk.last);
        let hash = chain_key.sign(&[&self.message]);
        let mut computed = [0u8; 64];
        hex::encode_to_slice(hash, &mut computed).expect("64 hex digits");
        if e.hash != computed {
            return Err(walk.bad(e.seq, "content was altered".into()));
        }
        // The stored hash is the computed one, so the leaf takes the computed bytes.
        self.tree
            .push(merkle::leaf_hash_of(&[&self.message, &hash]));
        walk.last = hash;
        self.last_hex = computed;
        if e.seq % SIGNED_HEAD_EVERY == 0 {
            walk.at_signed_heads.insert(e.seq, walk.last_hash());
        }
        walk.entries = e.seq;
        walk.grants.see(e);
        Ok(())
    }
}

/// Every kept signed head must be signed (`signed`: whether each one's signature is valid)
/// and match the chain at its seq.
fn check_signed_heads(heads: &[Head], signed: &[bool], walk: &Walk) -> Result<(), Report> {
    for (cp, &valid) in heads.iter().zip(signed) {
        if !valid {
            return Err(walk.bad(cp.seq, "signed head signature is invalid".into()));
        }
        match walk.at_signed_heads.get(&cp.seq) {
            Some(hash) if *hash == cp.hash => {}
            Some(_) => {
                return Err(walk.bad(cp.seq, "differs from its signed head".into()));
            }
            None => {
                return Err(walk.bad(
                    walk.entries + 1,
                    format!(
                        "the log ends at {} but a signed head covers {}",
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

#[cfg(test)]
mod tests {
    use super::*;

    /// An entry as the walk sees it, with only what the tally reads filled in.
    fn seen(tally: &mut GrantTally, at: i64, action: AuditAction, outcome: Outcome, grant: &str) {
        let mut fields: [Option<&[u8]>; 10] = [None; 10];
        fields[3] = Some(action.as_str().as_bytes());
        fields[4] = Some(outcome.as_str().as_bytes());
        fields[7] = Some(grant.as_bytes());
        tally.see(&ChainEntry {
            seq: at,
            at,
            fields,
            prev_hash: b"",
            hash: b"",
        });
    }

    #[test]
    fn the_walk_counts_allowed_reads_of_watched_grants_and_those_after_their_revocation() {
        let (watched, other) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
        let (w, o) = (watched.to_string(), other.to_string());
        let mut tally = GrantTally::default();
        tally.watch(&w);
        use AuditAction::{DocumentContent as Read, DocumentRead as Metadata, GrantRevoke};
        use Outcome::{Allowed, Denied};
        seen(&mut tally, 10, Read, Allowed, &w);
        seen(&mut tally, 11, Read, Denied, &w);
        seen(&mut tally, 12, Metadata, Allowed, &w);
        seen(&mut tally, 13, Read, Allowed, &o);
        seen(&mut tally, 14, Read, Allowed, &w.to_uppercase());
        seen(&mut tally, 15, Read, Allowed, &w);
        seen(&mut tally, 16, GrantRevoke, Denied, &w);
        seen(&mut tally, 17, Read, Allowed, &w);
        seen(&mut tally, 18, GrantRevoke, Allowed, &w);
        seen(&mut tally, 19, Read, Allowed, &w);
        seen(&mut tally, 20, Read, Denied, &w);
        let reads = tally.reads(watched);
        assert_eq!(
            (reads.count, reads.last_at, reads.after_revocation),
            (4, 19, 1)
        );
        // A grant not watched is not counted, whatever the log holds through it.
        assert_eq!(tally.reads(other), GrantReads::default());
    }
}
