//! Checkpoints as C2SP `tlog-checkpoint`, signed as C2SP `signed-note` with Ed25519 — the
//! format of Go's checksum database and Sigsum, so independent tools can check them.
//!
//! ```text
//! checkpoint body = origin "\n" tree-size (decimal) "\n" base64(root hash) "\n"
//! signed note     = body "\n" "— " key-name " " base64(key-id (4 bytes) | Ed25519 sig) "\n"
//! key id          = SHA-256(key-name | "\n" | 0x01 | public key (32 bytes))[0..4]
//! signature       = Ed25519(audit key, body)
//! verifier key    = key-name "+" hex(key id) "+" base64(0x01 | public key)
//! ```
//!
//! The key name is the log's origin. Base64 is the standard alphabet, padded.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use super::merkle::Hash;
use crate::crypto::KeyUnavailable;
use crate::crypto::sha256;
use crate::crypto::signing::{SigningKey, signature_is_valid};

/// What a checkpoint commits to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl Checkpoint {
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        )
    }

    fn parse_body(body: &str) -> Result<Self, String> {
        let mut lines = body.split('\n');
        let origin = lines
            .next()
            .filter(|o| !o.is_empty())
            .ok_or("no origin line")?;
        let size = lines
            .next()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or("the second line is not a tree size")?;
        let root: Hash = lines
            .next()
            .and_then(|r| B64.decode(r).ok())
            .and_then(|r| r.try_into().ok())
            .ok_or("the third line is not a 32-byte base64 root hash")?;
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
        })
    }
}

fn key_id(name: &str, public_key: &[u8]) -> [u8; 4] {
    let mut msg = Vec::with_capacity(name.len() + 34);
    msg.extend_from_slice(name.as_bytes());
    msg.push(b'\n');
    msg.push(0x01);
    msg.extend_from_slice(public_key);
    let hash = sha256(&msg);
    [hash[0], hash[1], hash[2], hash[3]]
}

/// The verifier key a witness or `note.NewVerifier` takes.
pub fn verifier_key(name: &str, public_key: &[u8]) -> String {
    let mut key = vec![0x01];
    key.extend_from_slice(public_key);
    format!(
        "{name}+{}+{}",
        hex::encode(key_id(name, public_key)),
        B64.encode(key)
    )
}

/// A verifier key taken apart: name and Ed25519 public key (its id is checked).
pub fn parse_verifier_key(text: &str) -> Result<(String, Vec<u8>), String> {
    let bad = || format!("not a note verifier key (name+id+key): {text:?}");
    let mut parts = text.trim().splitn(3, '+');
    let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    let key = B64.decode(key).map_err(|_| bad())?;
    if key.len() != 33 || key[0] != 0x01 {
        return Err("the verifier key is not an Ed25519 key".into());
    }
    if hex::encode(key_id(name, &key[1..])) != id {
        return Err("the verifier key's id does not match its key".into());
    }
    Ok((name.to_owned(), key[1..].to_vec()))
}

/// Signs a checkpoint into a note, with the log's origin as the key name.
pub fn sign(key: &SigningKey, checkpoint: &Checkpoint) -> Result<String, KeyUnavailable> {
    let body = checkpoint.body();
    let mut sig = key_id(&checkpoint.origin, key.public_key()).to_vec();
    sig.extend_from_slice(&key.sign(body.as_bytes())?);
    Ok(format!(
        "{body}\n\u{2014} {} {}\n",
        checkpoint.origin,
        B64.encode(sig)
    ))
}

/// Opens a signed checkpoint: it must carry a valid signature by `name`'s `public_key` (other
/// signatures, such as witnesses' cosignatures, are ignored) and name `name` as its origin.
pub fn open(note: &str, name: &str, public_key: &[u8]) -> Result<Checkpoint, String> {
    let split = note
        .find("\n\n")
        .ok_or("not a signed note: no blank line before the signatures")?;
    let (body, signatures) = (&note[..=split], &note[split + 2..]);
    if body.chars().any(|c| c.is_control() && c != '\n') {
        return Err("the note has control characters".into());
    }
    let id = key_id(name, public_key);
    let mut signed = false;
    for line in signatures.lines() {
        let Some(rest) = line.strip_prefix("\u{2014} ") else {
            return Err(format!("not a signature line: {line:?}"));
        };
        let Some((signer, sig)) = rest.split_once(' ') else {
            return Err(format!("not a signature line: {line:?}"));
        };
        let Ok(sig) = B64.decode(sig) else {
            return Err(format!("the signature of {signer} is not base64"));
        };
        if signer == name && sig.len() == 68 && sig[..4] == id {
            if !signature_is_valid(public_key, body.as_bytes(), &sig[4..]) {
                return Err(format!("the signature of {name} does not verify"));
            }
            signed = true;
        }
    }
    if !signed {
        return Err(format!("the note is not signed by {name}"));
    }
    let checkpoint = Checkpoint::parse_body(body)?;
    if checkpoint.origin != name {
        return Err(format!(
            "the checkpoint is for {:?}, not {name:?}",
            checkpoint.origin
        ));
    }
    Ok(checkpoint)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        SigningKey::from_pkcs8(&SigningKey::generate_pkcs8(), "audit").unwrap()
    }

    #[test]
    fn a_signed_checkpoint_opens_and_any_change_is_refused() {
        let signer = key();
        let checkpoint = Checkpoint {
            origin: "hoso.example/audit".into(),
            size: 42,
            root: [7; 32],
        };
        let note = sign(&signer, &checkpoint).unwrap();
        assert!(note.starts_with("hoso.example/audit\n42\nBwcH"));
        assert_eq!(
            open(&note, "hoso.example/audit", signer.public_key()),
            Ok(checkpoint)
        );
        let edited = note.replace("\n42\n", "\n41\n");
        assert!(open(&edited, "hoso.example/audit", signer.public_key()).is_err());
        // Another key's name-alike signature is not the log's.
        assert!(open(&note, "hoso.example/audit", key().public_key()).is_err());
        let (name, public) =
            parse_verifier_key(&verifier_key("hoso.example/audit", signer.public_key())).unwrap();
        assert_eq!(
            (name.as_str(), public.as_slice()),
            ("hoso.example/audit", signer.public_key())
        );
    }
}
