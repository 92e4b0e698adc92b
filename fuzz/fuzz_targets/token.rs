//! The token decoder: nothing but a token this vault signed is ever accepted, and nothing
//! panics.
#![no_main]

use std::sync::OnceLock;

use hoso::auth::{TokenPolicy, decode};
use hoso::crypto::keyring::Keyring;
use libfuzzer_sys::fuzz_target;

fn keys() -> &'static (Keyring, TokenPolicy) {
    static KEYS: OnceLock<(Keyring, TokenPolicy)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let keys = Keyring::open(&dir.join("keys"), true).unwrap();
        (keys, TokenPolicy { issuer: "hoso".into(), audience: "hoso".into() })
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(token) = std::str::from_utf8(data) {
        let (keys, policy) = keys();
        // The fuzzer cannot forge an Ed25519 signature: every input must be refused.
        assert!(decode(keys, policy, token).is_err());
    }
});
