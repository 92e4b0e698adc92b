//! Ed25519 signing keys (ring). One key per purpose — staff tokens, attestations, audit
//! checkpoints — so a leak of one cannot forge the others. Each is published in the JWKS under a
//! `kid` derived from its public key.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use zeroize::Zeroizing;

pub struct SigningKey {
    pair: Ed25519KeyPair,
    pkcs8: Zeroizing<Vec<u8>>,
    kid: String,
}

impl SigningKey {
    pub fn generate_pkcs8() -> Zeroizing<Vec<u8>> {
        let rng = ring::rand::SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng).expect("the OS random number generator");
        Zeroizing::new(doc.as_ref().to_vec())
    }

    pub fn from_pkcs8(pkcs8: &[u8], purpose: &str) -> Result<Self, String> {
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8)
            .map_err(|_| format!("{purpose} key is not an Ed25519 PKCS#8 document"))?;
        let kid = format!(
            "{purpose}-{}",
            &hex::encode(super::sha256(pair.public_key().as_ref()))[..16]
        );
        Ok(Self {
            pair,
            pkcs8: Zeroizing::new(pkcs8.to_vec()),
            kid,
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn public_key(&self) -> &[u8] {
        self.pair.public_key().as_ref()
    }

    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.pair.sign(message).as_ref().to_vec()
    }

    pub fn encoding_key(&self) -> jsonwebtoken::EncodingKey {
        jsonwebtoken::EncodingKey::from_ed_der(&self.pkcs8)
    }

    pub fn decoding_key(&self) -> jsonwebtoken::DecodingKey {
        jsonwebtoken::DecodingKey::from_ed_der(self.public_key())
    }

    /// The public half as a JWK (RFC 8037, `OKP` / `Ed25519`).
    pub fn jwk(&self) -> serde_json::Value {
        serde_json::json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "alg": "EdDSA",
            "use": "sig",
            "kid": self.kid,
            "x": URL_SAFE_NO_PAD.encode(self.public_key()),
        })
    }
}

/// Checks an Ed25519 signature against a raw 32-byte public key.
pub fn signature_is_valid(public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    UnparsedPublicKey::new(&ED25519, public_key)
        .verify(message, signature)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_only_for_their_message_and_key() {
        let key = SigningKey::from_pkcs8(&SigningKey::generate_pkcs8(), "t").unwrap();
        let other = SigningKey::from_pkcs8(&SigningKey::generate_pkcs8(), "t").unwrap();
        let sig = key.sign(b"checkpoint");
        assert!(signature_is_valid(key.public_key(), b"checkpoint", &sig));
        assert!(!signature_is_valid(key.public_key(), b"checkpoinT", &sig));
        assert!(!signature_is_valid(other.public_key(), b"checkpoint", &sig));
        assert_ne!(key.kid(), other.kid());
    }
}
