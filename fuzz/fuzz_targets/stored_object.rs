//! The stored-object decoder: any bytes, cut anywhere, must give plaintext only for segments
//! that authenticate, and never panic.
#![no_main]

use hoso::crypto::CitizenIndex;
use hoso::crypto::envelope::{Binding, BodyOpener, BodySealer, DataKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let binding = Binding { document_id: uuid::Uuid::from_bytes([7; 16]), citizen: CitizenIndex([9; 32]) };
    let cut = data.first().map_or(0, |b| *b as usize).min(data.len());
    let mut opener = BodyOpener::new(DataKey::from_bytes([1; 32]), binding);
    let mut out = Vec::new();
    let opened = opener
        .push(&data[..cut], &mut out)
        .and_then(|()| opener.push(&data[cut..], &mut out))
        .and_then(|()| opener.finish(&mut out));
    // Bytes not sealed under this key never authenticate (forging a GCM tag is out of reach).
    assert!(opened.is_err());

    // And what the sealer writes always opens back to the input.
    let key = DataKey::from_bytes([2; 32]);
    let mut sealer = BodySealer::new(&key, &binding);
    let mut sealed = Vec::new();
    sealer.push(data, &mut sealed);
    sealer.finish(&mut sealed);
    let mut opener = BodyOpener::new(DataKey::from_bytes([2; 32]), binding);
    let mut plain = Vec::new();
    opener.push(&sealed, &mut plain).unwrap();
    opener.finish(&mut plain).unwrap();
    assert_eq!(plain, data);
});
