//! The audit log: append-only, hash-chained, a Merkle tree with signed checkpoints published
//! outside the database. One file per job:
//!
//! - [`chain`]: the byte layout every entry, leaf and signed head is hashed over;
//! - [`append`]: appending inside a transaction (the chain's lock, signed heads);
//! - [`writer`]: the process's group-committed log writer, the usual way in;
//! - [`verify`]: walking the log against everything that vouches for it;
//! - [`merkle`] and [`tree`]: RFC 9162 hashing and the stored tree, proofs;
//! - [`note`]: the C2SP signed note; [`checkpoints`]: publishing them to the object store;
//! - [`receipt`]: a read's receipt (C2SP `tlog-proof`), written and read;
//! - [`witness`]: a witness that fetches and checks checkpoints.
//!
//! "Checkpoint" means only the C2SP note. The signed heads kept in the database every
//! [`SIGNED_HEAD_EVERY`] entries are signed heads.
//!
//! Every field of an entry is in its keyed hash, and so is `seq`, so editing, deleting or
//! reordering rows breaks the chain at the first bad entry. The keyed hash means someone with
//! only database access cannot recompute a consistent chain; the signed heads catch a cut-off
//! tail, and the published checkpoints a rollback. Appends are serialised by a lock on the head
//! row taken as the first statement of the transaction ([`crate::db::audit::lock_head`]).
//!
//! Fail closed: an entry is written in the same transaction as the change it records, and
//! reads commit their entry before any document byte is sent; if the entry cannot be written
//! the request fails.

pub mod append;
pub mod chain;
pub mod checkpoints;
pub mod merkle;
pub mod note;
pub mod receipt;
pub mod tree;
pub mod verify;
pub mod witness;
pub mod writer;

pub use append::{Appended, Appender, SIGNED_HEAD_EVERY, begin, build_missing_tree};
pub use chain::{entry_hash, entry_leaf, entry_leaf_data};
pub use verify::{GrantTally, Report, verify_log};

use crate::crypto::CitizenIndex;
pub use crate::domain::{AuditAction, Outcome};
use crate::domain::{NOT_APPLICABLE, Role};

/// What a caller records. `seq`, `at` and the hashes are filled in by [`append`].
#[derive(Clone, Debug)]
pub struct Entry {
    pub actor: String,
    pub role: Role,
    pub office: String,
    pub action: AuditAction,
    pub outcome: Outcome,
    pub document_id: Option<String>,
    pub citizen_idx: Option<CitizenIndex>,
    pub grant_id: Option<String>,
    pub case_ref: Option<String>,
    pub reason: Option<String>,
}

impl Entry {
    /// An allowed act, to be completed by the caller.
    pub fn new(actor: String, role: Role, office: String, action: AuditAction) -> Self {
        Self {
            actor,
            role,
            office,
            action,
            outcome: Outcome::Allowed,
            document_id: None,
            citizen_idx: None,
            grant_id: None,
            case_ref: None,
            reason: None,
        }
    }

    /// An act of the operator at the vault's shell (`hoso token …`, `hoso keys …`).
    pub fn operator(action: AuditAction) -> Self {
        Self::new(
            "hoso-cli".into(),
            Role::Admin,
            NOT_APPLICABLE.into(),
            action,
        )
    }
}
