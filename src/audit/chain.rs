//! The chain's byte layout and hashing: what each entry's keyed hash, its Merkle leaf and the
//! signed head are computed over. Nothing here reads or writes; [`super::append`] and
//! [`super::verify`] both hash through these functions, so the layout has one home.
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
//! `role`, `action` and `outcome` are their vocabulary's stable strings ([`crate::domain`]);
//! `citizen_idx` is the blind index in lower-case hex.

use super::merkle;
use crate::crypto::{hmac_sha256, signing};
use crate::db::audit::{EntryRow, Head};

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
    let citizen_idx = e.citizen_idx.map(|c| c.to_hex());
    let required = [
        e.actor.as_str(),
        e.role.as_str(),
        &e.office,
        e.action.as_str(),
        e.outcome.as_str(),
    ]
    .map(|t| Some(t.as_bytes()));
    let optional = [
        &e.document_id,
        &citizen_idx,
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
pub(super) fn chain_message(
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

pub(super) fn head_message(seq: i64, hash: &str) -> Vec<u8> {
    let mut msg = b"hoso/audit-head/v1".to_vec();
    msg.extend_from_slice(&(seq as u64).to_be_bytes());
    msg.extend_from_slice(&hex::decode(hash).unwrap_or_default());
    msg
}

/// Whether `head` carries the audit key's signature of its seq and hash.
pub(super) fn head_signature_valid(public: &[u8], head: &Head) -> bool {
    signing::signature_is_valid(
        public,
        &head_message(head.seq, &head.hash),
        &hex::decode(&head.signature).unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::CitizenIndex;
    use crate::domain::{AuditAction, Outcome, Role};

    /// `docs/known_answers.py` computes this from the layout documented above.
    #[test]
    fn known_answer_an_entry_hash_has_the_documented_bytes() {
        let entry = EntryRow {
            seq: 5,
            at: 1_764_547_200_000,
            actor: "lan.nguyen".into(),
            role: Role::Clerk,
            office: "UBND-HAICHAU".into(),
            action: AuditAction::DocumentRead,
            outcome: Outcome::Allowed,
            document_id: Some("0190a4b2-0000-7000-8000-000000000001".into()),
            citizen_idx: Some(CitizenIndex([0x42; 32])),
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
