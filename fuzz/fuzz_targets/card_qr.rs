//! The CCCD QR field parser: any text gives fields or "not recognised", never a panic; what it
//! reads always fits the card's shape (a 12-digit number, NFC text, years 1900–2100).
#![no_main]

use hoso::card::fields::{MAX_TEXT_BYTES, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(card) = parse(text) {
            assert!(text.len() <= MAX_TEXT_BYTES);
            assert_eq!(card.number.expose().len(), 12);
            assert!(!card.name.trim().is_empty());
            assert!(!card.name.chars().any(char::is_control));
            for date in [Some(card.birth_date), Some(card.issued_on), card.expires_on].into_iter().flatten() {
                assert!((1900..=2100).contains(&date.year()));
            }
        }
    }
});
