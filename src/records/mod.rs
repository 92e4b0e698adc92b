//! The records service: the only place that combines database, object store, crypto and audit.
//! Handlers call one function here per request; every function decides who may do what, writes
//! the audit entry (refusals included) and only then touches document bytes.

/// Who is asking, and the audit entries of their requests, refusals included.
mod access;
/// Snapshot and restore of the embedded default.
pub mod backup;
/// Working days, for the deadlines of a citizen's requests.
pub mod calendar;
/// The CCCD's QR, read from a scan at the desk.
pub mod card;
/// The buffers copies are decrypted in, kept for the next copy.
pub mod copy_buffers;
/// A stored document opened for its reader: data key, personal fields, attestation.
mod document;
/// Erasing a document (crash-safe, hold-aware), and re-applying the erasure ledger.
pub mod erasure;
/// A citizen's export: one signed ZIP of everything hoso keeps about them.
pub mod export;
/// Sharing a citizen's documents for one dossier.
pub mod grants;
/// Legal holds: placed, lifted, listed.
pub mod holds;
/// Taking a scan in, streamed.
pub mod intake;
/// The erasure ledger, kept outside the database.
pub mod ledger;
/// `doctor` and `sweep`.
pub mod maintenance;
/// Master-key rewrap, retirement and status.
pub mod master_keys;
/// The audit log read back: the auditor's query and verification, the citizen's access log.
pub mod oversight;
/// Reading documents: list, metadata, content.
pub mod read;
/// A citizen's requests under Law 91/2025, with their deadlines; restrictions.
pub mod requests;
/// Retention rules and the run that erases what is due.
pub mod retention;
/// Signing in through an identity provider, and signing out.
pub mod sign_in;
/// Verify and revoke.
pub mod status;
/// Token revocation.
pub mod tokens;
/// What the service works with.
pub mod vault;

pub use access::{RefusalLimiter, refuse_token};
use access::{entry, refuse, require_own_records, require_role};
pub use document::{DocumentView, Stamp, attest, binding, data_key};
use document::{fields, view};
pub use vault::{Limits, Vault};
