//! The intake `metadata` parser: any bytes give a validated value or a 422, never a panic.
#![no_main]

use hoso::domain::IntakeMetadata;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let today = time::Date::from_calendar_date(2026, time::Month::November, 24).unwrap();
    if let Ok(m) = IntakeMetadata::parse(data, today) {
        assert!(!m.fields.holder_name.trim().is_empty());
        assert!(m.fields.issued_on.len() == 10);
    }
});
