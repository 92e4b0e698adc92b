//! A read's receipt: a C2SP `tlog-proof` that one entry is in the log, checkable offline with
//! the log's verifier key. Written by the vault (a citizen's access-log proof) and read by
//! `hoso audit verify-receipt`, here in one module so the format has one home.
//!
//! ```text
//! c2sp.org/tlog-proof@v1
//! extra <base64 leaf hash of the entry, as it is stored now>
//! index <leaf index, = seq - 1>
//! <base64 hash>            (the inclusion proof, nearest the leaf first; RFC 9162 §2.1.3)
//! …
//!                          (a blank line)
//! <the signed checkpoint the proof is made in, a C2SP signed note>
//! ```

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use super::merkle::{self, Hash};
use super::note;

const HEADER: &str = "c2sp.org/tlog-proof@v1";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// The entry's leaf index (its `seq` - 1).
    pub index: u64,
    /// The entry's leaf hash.
    pub leaf: Hash,
    /// The inclusion proof in the checkpoint's tree.
    pub hashes: Vec<Hash>,
    /// The signed checkpoint, as its note's text.
    pub checkpoint: String,
}

/// A hash in the receipt's base64.
pub fn decode_hash(text: &str) -> Result<Hash, String> {
    B64.decode(text.trim())
        .ok()
        .and_then(|h| h.try_into().ok())
        .ok_or_else(|| format!("not a base64 SHA-256 hash: {text:?}"))
}

impl Receipt {
    pub fn write(&self) -> String {
        let mut out = format!(
            "{HEADER}\nextra {}\nindex {}\n",
            B64.encode(self.leaf),
            self.index
        );
        for hash in &self.hashes {
            out.push_str(&B64.encode(hash));
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&self.checkpoint);
        out
    }

    /// Parses the layout above; checks nothing cryptographic (see [`Receipt::check`]).
    pub fn parse(text: &str) -> Result<Self, String> {
        let (head, checkpoint) = text
            .split_once("\n\n")
            .ok_or("not a tlog-proof: no blank line before the checkpoint")?;
        let mut lines = head.lines();
        if lines.next() != Some(HEADER) {
            return Err(format!("not a {HEADER}"));
        }
        let (mut extra, mut index, mut hashes) = (None, None, Vec::new());
        for line in lines {
            if let Some(e) = line.strip_prefix("extra ") {
                extra = Some(decode_hash(e)?);
            } else if let Some(i) = line.strip_prefix("index ") {
                index = Some(i.parse::<u64>().map_err(|_| "the index is not a number")?);
            } else {
                hashes.push(decode_hash(line)?);
            }
        }
        Ok(Self {
            index: index.ok_or("the proof has no index")?,
            leaf: extra.ok_or("the proof carries no leaf hash (extra)")?,
            hashes,
            checkpoint: checkpoint.to_owned(),
        })
    }

    /// Checks the checkpoint's signature against the verifier key `key` and the entry's
    /// inclusion in it; with `leaf` (from the read's `hoso-audit-receipt` header), also that
    /// the proof is for that entry. Returns the checkpoint's size.
    pub fn check(&self, key: &str, leaf: Option<&Hash>) -> Result<u64, String> {
        if leaf.is_some_and(|given| *given != self.leaf) {
            return Err("the receipt's leaf hash is not the one this proof is for".into());
        }
        let (name, public) = note::parse_verifier_key(key)?;
        let signed = note::open(&self.checkpoint, &name, &public)?;
        if !merkle::verify_inclusion(
            self.index,
            signed.size,
            &self.leaf,
            &self.hashes,
            &signed.root,
        ) {
            return Err(format!(
                "entry {} is not in the signed log of {} entries as it stands (edited or removed)",
                self.index + 1,
                signed.size
            ));
        }
        Ok(signed.size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::signing::SigningKey;

    /// Three leaves, a signed checkpoint of them, and the receipt of the middle one.
    fn receipt() -> (Receipt, String) {
        let key = SigningKey::from_pkcs8(&SigningKey::generate_pkcs8(), "audit").unwrap();
        let leaves: Vec<Hash> = [b"a", b"b", b"c"].map(|d| merkle::leaf_hash(d)).to_vec();
        let mut range = merkle::CompactRange::default();
        leaves.iter().for_each(|l| range.push(*l));
        let checkpoint = note::Checkpoint {
            origin: "test.hoso/log".into(),
            size: 3,
            root: range.root(),
        };
        // The proof for leaf 1 of 3: its sibling leaf 0, then leaf 2.
        let receipt = Receipt {
            index: 1,
            leaf: leaves[1],
            hashes: vec![leaves[0], leaves[2]],
            checkpoint: note::sign(&key, &checkpoint).unwrap(),
        };
        let verifier = note::verifier_key("test.hoso/log", key.public_key());
        (receipt, verifier)
    }

    #[test]
    fn a_written_receipt_reads_back_the_same_and_checks() {
        let (receipt, key) = receipt();
        let text = receipt.write();
        assert!(text.starts_with("c2sp.org/tlog-proof@v1\nextra "), "{text}");
        let back = Receipt::parse(&text).unwrap();
        assert_eq!(back, receipt);
        assert_eq!(back.check(&key, Some(&receipt.leaf)), Ok(3));
    }

    #[test]
    fn a_receipt_for_another_entry_or_with_a_changed_proof_is_refused() {
        let (receipt, key) = receipt();
        let mut moved = receipt.clone();
        moved.index = 2;
        assert!(
            moved
                .check(&key, None)
                .unwrap_err()
                .contains("not in the signed log")
        );
        let mut altered = receipt.clone();
        altered.hashes[0][0] ^= 1;
        assert!(altered.check(&key, None).is_err());
        assert!(receipt.check(&key, Some(&[7; 32])).is_err());
        let text = receipt.write().replace("index 1", "index one");
        assert_eq!(
            Receipt::parse(&text),
            Err("the index is not a number".into())
        );
    }
}
