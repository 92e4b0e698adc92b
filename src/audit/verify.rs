//! Verifying the log: one walk of the chain and the tree it builds, checked against the signed
//! head, the signed heads kept every [`SIGNED_HEAD_EVERY`] entries, the database's checkpoints
//! and every trusted checkpoint from outside the database (the object store's, a witness's).

use serde::Serialize;

use super::append::SIGNED_HEAD_EVERY;
use super::chain::{chain_message, head_signature_valid};
use super::{checkpoints, merkle, note, tree};
use crate::crypto::keyring::Keyring;
use crate::db::audit::{self as store, Head};
use crate::db::{Db, DbError};
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

/// Walks the whole chain and the Merkle tree it builds, and checks them against the signed
/// head, the signed heads, the database's checkpoints and every `trusted` checkpoint (the object store's, a
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
    let walking = tokio::task::spawn_blocking(move || walk_chain(received, &chain_key, &sorted));
    let checking = check_signatures(public.to_vec(), signed_heads);
    let ((), walked, checked) = tokio::join!(store::read_chain(db, last, pages), walking, checking);
    let walked = walked.map_err(|e| ApiError::Internal(format!("the log walk stopped: {e}")))?;
    let (signed_heads, signed) =
        checked.map_err(|e| ApiError::Internal(format!("the signature check stopped: {e}")))?;
    let walk = match walked? {
        Ok(walk) => walk,
        Err(bad) => return Ok(bad),
    };
    if let Err(bad) = check_walk(&walk, &trusted, (&signed_heads, &signed), public, &head) {
        return Ok(bad);
    }
    if let Some((size, at)) = future {
        return Ok(walk.bad(
            size,
            format!(
                "the database's checkpoint of {size} entries is dated {}, in the future: its \
                 clock was set ahead (to stop time-based checkpoints)",
                crate::domain::format_rfc3339(at)
            ),
        ));
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
        grants: Vec::new(),
    })
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
    snapshot: &mut crate::db::Tx,
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
) -> Result<Result<Walk, Report>, ApiError> {
    let mut walker = Walker {
        walk: Walk {
            entries: 0,
            last: [0; 32],
            root: merkle::empty_root(),
            at_signed_heads: std::collections::HashMap::new(),
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
        e: &store::ChainEntry<'_>,
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
