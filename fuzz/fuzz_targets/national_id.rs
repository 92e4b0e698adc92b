//! The national-ID parser accepts exactly twelve ASCII digits.
#![no_main]

use hoso::domain::NationalId;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let ok = NationalId::parse(text).is_ok();
        assert_eq!(ok, text.len() == 12 && text.bytes().all(|b| b.is_ascii_digit()));
    }
});
