//! Ed25519 signing keys (ring). One key per purpose — staff tokens, attestations, audit
//! checkpoints — so a leak of one cannot forge the others. Each is published in the JWKS under a
//! `kid` derived from its public key.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use zeroize::Zeroizing;

use super::KeyUnavailable;
use super::pkcs11::Hsm;

/// A signing key whose private half is in a file (read into memory) or in a PKCS#11 token
/// (used there, never read). Both make the same signatures: Ed25519 is deterministic.
pub struct SigningKey {
    private: Private,
    public: [u8; 32],
    kid: String,
}

enum Private {
    File(Ed25519KeyPair),
    Token { hsm: Arc<Hsm>, purpose: String },
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
        let public: [u8; 32] = pair.public_key().as_ref().try_into().expect("32 bytes");
        Ok(Self::with(Private::File(pair), public, purpose))
    }

    /// The `purpose` key kept in the token, whose public half is `public`.
    pub fn in_token(hsm: Arc<Hsm>, purpose: &str, public: [u8; 32]) -> Self {
        let private = Private::Token {
            hsm,
            purpose: purpose.to_owned(),
        };
        Self::with(private, public, purpose)
    }

    fn with(private: Private, public: [u8; 32], purpose: &str) -> Self {
        let kid = format!("{purpose}-{}", &hex::encode(super::sha256(&public))[..16]);
        Self {
            private,
            public,
            kid,
        }
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn public_key(&self) -> &[u8] {
        &self.public
    }

    pub fn is_in_token(&self) -> bool {
        matches!(self.private, Private::Token { .. })
    }

    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyUnavailable> {
        match &self.private {
            Private::File(pair) => Ok(pair.sign(message).as_ref().to_vec()),
            Private::Token { hsm, purpose } => hsm
                .sign(purpose, message)
                .map_err(|e| KeyUnavailable(e.to_string())),
        }
    }

    /// A compact JWS (RFC 7515) of `claims` under `header`, the key's `EdDSA` signature over
    /// `base64url(header) . base64url(claims)`, as `jsonwebtoken::encode` lays it out.
    pub fn jws(
        &self,
        header: &impl serde::Serialize,
        claims: &impl serde::Serialize,
    ) -> Result<String, KeyUnavailable> {
        // Structs of strings and numbers: serialising them cannot fail.
        let header = serde_json::to_vec(header).expect("a JOSE header serialises");
        let claims = serde_json::to_vec(claims).expect("claims serialise");
        let mut text = URL_SAFE_NO_PAD.encode(header);
        text.push('.');
        text.push_str(&URL_SAFE_NO_PAD.encode(claims));
        let signature = self.sign(text.as_bytes())?;
        text.push('.');
        text.push_str(&URL_SAFE_NO_PAD.encode(signature));
        Ok(text)
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

/// The 32-byte seed (RFC 8032's private key) of an Ed25519 PKCS#8 document (RFC 8410/5958
/// `OneAsymmetricKey`): `30 len 02 01 v 30 05 06 03 2B 65 70 04 22 04 20` seed, then (v = 1,
/// as ring writes it) `81 21 00` public key. For `hoso keys migrate`, which puts a file's key
/// into the token.
pub fn pkcs8_seed(pkcs8: &[u8]) -> Option<Zeroizing<[u8; 32]>> {
    const ALGORITHM_AND_SEED: [u8; 11] = [
        0x30, 0x05, 0x06, 0x03, 0x2B, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
    ];
    let well_formed = pkcs8.len() >= 48
        && pkcs8[0] == 0x30
        && usize::from(pkcs8[1]) == pkcs8.len() - 2
        && pkcs8[2..4] == [0x02, 0x01]
        && pkcs8[4] <= 1
        && pkcs8[5..16] == ALGORITHM_AND_SEED;
    if !well_formed {
        return None;
    }
    let mut seed = Zeroizing::new([0u8; 32]);
    seed.copy_from_slice(&pkcs8[16..48]);
    Some(seed)
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
        let sig = key.sign(b"checkpoint").unwrap();
        assert!(signature_is_valid(key.public_key(), b"checkpoint", &sig));
        assert!(!signature_is_valid(key.public_key(), b"checkpoinT", &sig));
        assert!(!signature_is_valid(other.public_key(), b"checkpoint", &sig));
        assert_ne!(key.kid(), other.kid());
    }

    #[test]
    fn a_jws_is_laid_out_as_jsonwebtoken_lays_it_out() {
        let pkcs8 = SigningKey::generate_pkcs8();
        let key = SigningKey::from_pkcs8(&pkcs8, "token").unwrap();
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some(key.kid().to_owned());
        let claims = serde_json::json!({"sub": "a", "exp": 4_000_000_000u64});
        let theirs = jsonwebtoken::encode(
            &header,
            &claims,
            &jsonwebtoken::EncodingKey::from_ed_der(&pkcs8),
        )
        .unwrap();
        assert_eq!(key.jws(&header, &claims).unwrap(), theirs);
    }

    #[test]
    fn the_seed_read_from_pkcs8_makes_the_same_key() {
        let pkcs8 = SigningKey::generate_pkcs8();
        let key = SigningKey::from_pkcs8(&pkcs8, "audit").unwrap();
        let seed = pkcs8_seed(&pkcs8).unwrap();
        let again = Ed25519KeyPair::from_seed_unchecked(seed.as_ref()).unwrap();
        assert_eq!(again.public_key().as_ref(), key.public_key());
        assert_eq!(
            again.sign(b"m").as_ref(),
            key.sign(b"m").unwrap().as_slice()
        );
        assert!(pkcs8_seed(&pkcs8[..40]).is_none());
        let mut other = pkcs8.to_vec();
        other[9] = 0x71; // Ed448's OID
        assert!(pkcs8_seed(&other).is_none());
    }
}
