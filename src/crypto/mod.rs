//! Cryptography, split as `docs/design.md` says: aes-gcm seals personal fields and wraps data
//! keys; ring seals bodies (the same AES-256-GCM bytes) and does SHA-256, HMAC, Ed25519 and
//! randomness.

pub mod attestation;
pub mod envelope;
pub mod grant_seal;
pub mod keyring;
/// The PKCS#11 key store: master keys in a hardware security module.
pub mod pkcs11;
pub mod signing;

use ring::rand::{SecureRandom, SystemRandom};

/// A key kept in the hardware security module that could not be used now (the token is gone
/// or did not answer in time): the request fails with 503 and may be tried again.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct KeyUnavailable(pub String);

/// The blind index of a citizen: HMAC-SHA-256 of the national ID under the blind-index key.
/// Rows carry this instead of the number, so the database alone cannot be searched by ID.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CitizenIndex(pub [u8; 32]);

impl CitizenIndex {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(text: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).ok()?;
        Some(Self(out))
    }
}

impl std::fmt::Debug for CitizenIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CitizenIndex({}…)", &self.to_hex()[..12])
    }
}

/// Fills `out` from the operating system's CSPRNG.
/// The blind index of a national ID:
/// `HMAC-SHA-256(blind-index key, "hoso/citizen/v1" | the 12 ASCII digits)`.
pub fn blind_index(key: &[u8; 32], id: &crate::domain::NationalId) -> CitizenIndex {
    CitizenIndex(hmac_sha256(key, &[&blind_index_message(id)]))
}

/// What the blind index MACs: `hoso/citizen/v1` then the 12 digits.
pub fn blind_index_message(id: &crate::domain::NationalId) -> Vec<u8> {
    [b"hoso/citizen/v1".as_slice(), id.expose().as_bytes()].concat()
}

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    // SystemRandom only fails when the OS has no entropy source at all; nothing safe can run then.
    SystemRandom::new()
        .fill(&mut out)
        .expect("the operating system's random number generator failed");
    out
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    digest.as_ref().try_into().expect("SHA-256 is 32 bytes")
}

/// HMAC-SHA-256 over the concatenation of `parts`.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    HmacSha256::new(key).sign(parts)
}

/// An HMAC-SHA-256 key prepared once for many messages (the log walk signs millions; preparing
/// the key is two of a short message's seven SHA-256 blocks).
pub struct HmacSha256(ring::hmac::Key);

impl HmacSha256 {
    pub fn new(key: &[u8]) -> Self {
        Self(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key))
    }

    /// Whether `tag` is the MAC of `message`, compared in constant time.
    pub fn verify(&self, message: &[u8], tag: &[u8]) -> bool {
        ring::hmac::verify(&self.0, message, tag).is_ok()
    }

    /// The MAC of the concatenation of `parts`.
    pub fn sign(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut ctx = ring::hmac::Context::with_key(&self.0);
        for part in parts {
            ctx.update(part);
        }
        ctx.sign()
            .as_ref()
            .try_into()
            .expect("HMAC-SHA-256 is 32 bytes")
    }
}

/// Incremental SHA-256, for bodies that stream through.
pub struct Sha256(ring::digest::Context);

impl Default for Sha256 {
    fn default() -> Self {
        Self(ring::digest::Context::new(&ring::digest::SHA256))
    }
}

impl Sha256 {
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    pub fn finish(self) -> [u8; 32] {
        self.0
            .finish()
            .as_ref()
            .try_into()
            .expect("SHA-256 is 32 bytes")
    }
}

#[cfg(test)]
mod tests {
    use crate::domain::NationalId;

    #[test]
    fn known_answer_the_blind_index_has_the_documented_bytes() {
        let id = NationalId::parse("001099012345").unwrap();
        assert_eq!(
            super::blind_index(&[0x33; 32], &id).to_hex(),
            "2babed082cbaaebc4e06683fcbb3e281dc0eb7d02a93765e6bccc552b5b116d4"
        );
    }
}
