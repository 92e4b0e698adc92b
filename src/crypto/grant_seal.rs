//! The seal on a grant's row: an HMAC over its fixed scope under a key of its own purpose
//! (`grant-seal.key`), so a database holder who edits a grant's citizen, types, dossier, expiry
//! or use limit makes a row the vault refuses, as it refuses a tampered body. The count of uses
//! spent changes with every read and is not sealed; `hoso audit verify` checks it against the
//! grant's logged reads instead.
//!
//! # Layout (version 1)
//!
//! ```text
//! seal = HMAC-SHA-256(grant-seal key,
//!          "hoso/grant/v1" | id (16 bytes) | citizen index (32 bytes) | F(doc types, joined ",")
//!          | F(case_ref) | F(purpose) | F(grantee) | F(grantee_office) | F(created_by)
//!          | F(office) | created_at i64 BE (ms) | expires_at i64 BE (ms) | max_uses i64 BE)
//! F(text) = len u32 BE | UTF-8 bytes
//! ```
//!
//! Stored as lower-case hex in `grants.seal`.

use uuid::Uuid;

use super::{CitizenIndex, HmacSha256};
use crate::domain::DocType;

/// A grant's fixed scope: everything the seal covers.
pub struct GrantScope<'a> {
    pub id: Uuid,
    pub citizen: &'a CitizenIndex,
    pub doc_types: &'a [DocType],
    pub case_ref: &'a str,
    pub purpose: &'a str,
    pub grantee: &'a str,
    pub grantee_office: &'a str,
    pub created_by: &'a str,
    pub office: &'a str,
    pub created_at: i64,
    pub expires_at: i64,
    pub max_uses: i64,
}

/// The grant-seal key.
pub struct GrantSealKey(HmacSha256);

impl GrantSealKey {
    pub fn new(key: &[u8; 32]) -> Self {
        Self(HmacSha256::new(key))
    }

    /// The seal of `scope`, in hex.
    pub fn seal(&self, scope: &GrantScope<'_>) -> String {
        hex::encode(self.0.sign(&[&message(scope)]))
    }

    /// Whether `seal` (hex, as stored) is this key's seal of `scope`; compared in constant time.
    pub fn is_sealed(&self, scope: &GrantScope<'_>, seal: &str) -> bool {
        let mut given = [0u8; 32];
        if hex::decode_to_slice(seal, &mut given).is_err() {
            return false;
        }
        self.0.verify(&message(scope), &given)
    }
}

fn message(s: &GrantScope<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"hoso/grant/v1");
    out.extend_from_slice(s.id.as_bytes());
    out.extend_from_slice(&s.citizen.0);
    let types: Vec<&str> = s.doc_types.iter().map(|t| t.as_str()).collect();
    for text in [
        types.join(",").as_str(),
        s.case_ref,
        s.purpose,
        s.grantee,
        s.grantee_office,
        s.created_by,
        s.office,
    ] {
        let len = u32::try_from(text.len()).expect("grant fields are short");
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(text.as_bytes());
    }
    for number in [s.created_at, s.expires_at, s.max_uses] {
        out.extend_from_slice(&number.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope<'a>(citizen: &'a CitizenIndex, types: &'a [DocType]) -> GrantScope<'a> {
        GrantScope {
            id: Uuid::from_bytes([0xA0; 16]),
            citizen,
            doc_types: types,
            case_ref: "000.00.31.H40-261124-0042",
            purpose: "Đăng ký kết hôn",
            grantee: "officer.binh",
            grantee_office: "UBND-HAICHAU",
            created_by: "lan.nguyen",
            office: "UBND-HAICHAU",
            created_at: 1_764_547_200_000,
            expires_at: 1_764_550_800_000,
            max_uses: 2,
        }
    }

    /// `docs/known_answers.py` computes this from the layout documented above.
    #[test]
    fn known_answer_a_grant_seal_has_the_documented_bytes() {
        let citizen = CitizenIndex([0x42; 32]);
        let types = [DocType::Cccd, DocType::BirthCertificate];
        assert_eq!(
            GrantSealKey::new(&[0x55; 32]).seal(&scope(&citizen, &types)),
            "6e877fef34f87cc11cf1bd2bb33eea95b5ac98af6af1900ecc9b44ed25926179"
        );
    }

    #[test]
    fn any_change_to_the_scope_or_the_key_breaks_the_seal() {
        let key = GrantSealKey::new(&[0x55; 32]);
        let (a, b) = (CitizenIndex([0x42; 32]), CitizenIndex([0x43; 32]));
        let cccd = [DocType::Cccd];
        let wider = [DocType::Cccd, DocType::BirthCertificate];
        let seal = key.seal(&scope(&a, &cccd));
        assert!(key.is_sealed(&scope(&a, &cccd), &seal));
        assert!(!key.is_sealed(&scope(&b, &cccd), &seal), "another citizen");
        assert!(!key.is_sealed(&scope(&a, &wider), &seal), "more types");
        let mut more_uses = scope(&a, &cccd);
        more_uses.max_uses = 3;
        assert!(!key.is_sealed(&more_uses, &seal), "more uses");
        let mut later = scope(&a, &cccd);
        later.expires_at += 1;
        assert!(!key.is_sealed(&later, &seal), "a later expiry");
        assert!(
            !GrantSealKey::new(&[0x56; 32]).is_sealed(&scope(&a, &cccd), &seal),
            "another key"
        );
        assert!(!key.is_sealed(&scope(&a, &cccd), "not hex"));
        assert!(!key.is_sealed(&scope(&a, &cccd), ""));
    }
}
