//! Working days, for the legal deadlines of a citizen's requests (Decree 356/2025): Monday to
//! Friday, minus the public holidays in a file the operator keeps (`HOSO_HOLIDAYS_FILE`;
//! `config/holidays-vn.json` is built in). Days are Vietnam's (UTC+7): a request received at
//! 23:00 on a Friday in Hà Nội was received on the Friday.
//!
//! A deadline of `n` working days ends at the end of the `n`-th working day after the day of
//! receipt (the day itself never counts, even if it is a working day): received Friday, two
//! working days are due at the end of Tuesday.

use std::collections::BTreeSet;
use std::path::Path;

use serde::Deserialize;
use time::{Date, Duration, OffsetDateTime, UtcOffset, Weekday};

/// Vietnam's offset from UTC (no daylight saving).
const VIETNAM: UtcOffset = match UtcOffset::from_hms(7, 0, 0) {
    Ok(offset) => offset,
    Err(_) => panic!("UTC+7 is a valid offset"),
};

pub const DEFAULT: &str = include_str!("../../config/holidays-vn.json");

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HolidaysFile {
    #[serde(default)]
    #[allow(dead_code)]
    about: Option<String>,
    holidays: Vec<String>,
}

/// The public holidays working days skip.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Holidays(BTreeSet<Date>);

impl Holidays {
    /// The holidays in `path`, or the built-in default. An error names the file and line.
    pub fn load(path: Option<&Path>) -> Result<Self, String> {
        let (name, text) = match path {
            Some(p) => (
                p.display().to_string(),
                std::fs::read_to_string(p).map_err(|e| {
                    format!("HOSO_HOLIDAYS_FILE {}: cannot be read: {e}", p.display())
                })?,
            ),
            None => (
                "the built-in config/holidays-vn.json".to_owned(),
                DEFAULT.to_owned(),
            ),
        };
        Self::parse(&text).map_err(|e| format!("HOSO_HOLIDAYS_FILE {name}: {e}"))
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let file: HolidaysFile = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let mut days = BTreeSet::new();
        for day in &file.holidays {
            let date = crate::domain::parse_date(day, "a holiday").map_err(|e| {
                // The line the date is written on, for the person fixing the file.
                let quoted = format!("\"{day}\"");
                let line = text
                    .find(&quoted)
                    .map_or(0, |at| text[..at].matches('\n').count() + 1);
                format!("{quoted} on line {line}: {e}")
            })?;
            days.insert(date);
        }
        Ok(Self(days))
    }

    pub fn is_working_day(&self, day: Date) -> bool {
        !matches!(day.weekday(), Weekday::Saturday | Weekday::Sunday) && !self.0.contains(&day)
    }

    /// The last moment (ms) of the `n`-th working day after the day `from` (ms) falls on in
    /// Vietnam.
    pub fn due(&self, from_ms: i64, n: u32) -> i64 {
        let mut day = vietnam_day(from_ms);
        let mut left = n;
        while left > 0 {
            day = day.next_day().expect("a date before the year 9999");
            if self.is_working_day(day) {
                left -= 1;
            }
        }
        let next_midnight = day
            .next_day()
            .expect("a date before the year 9999")
            .midnight()
            .assume_offset(VIETNAM);
        (next_midnight.unix_timestamp_nanos() / 1_000_000) as i64 - 1
    }
}

/// The date in Vietnam at `ms`.
fn vietnam_day(ms: i64) -> Date {
    let utc = OffsetDateTime::UNIX_EPOCH + Duration::milliseconds(ms);
    utc.to_offset(VIETNAM).date()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

    fn ms(t: OffsetDateTime) -> i64 {
        (t.unix_timestamp_nanos() / 1_000_000) as i64
    }

    fn due_date(h: &Holidays, received: OffsetDateTime, n: u32) -> Date {
        vietnam_day(h.due(ms(received), n))
    }

    #[test]
    fn working_days_skip_the_weekend_and_public_holidays() {
        let h = Holidays::load(None).unwrap();
        // Received Friday 2026-11-27: two working days end on Tuesday, at 23:59:59.999 +07.
        let friday = datetime!(2026-11-27 10:00 +07);
        assert_eq!(due_date(&h, friday, 2), date!(2026 - 12 - 01));
        assert_eq!(
            h.due(ms(friday), 2),
            ms(datetime!(2026-12-02 00:00 +07)) - 1
        );
        // 23:30 UTC on Thursday is already Friday in Vietnam.
        assert_eq!(
            due_date(&h, datetime!(2026-11-26 23:30 UTC), 2),
            date!(2026 - 12 - 01)
        );
        // Received Wednesday 2026-04-29: Thursday 30/4 and Friday 1/5 are holidays, then the
        // weekend: two working days end on Tuesday 5/5.
        assert_eq!(
            due_date(&h, datetime!(2026-04-29 09:00 +07), 2),
            date!(2026 - 05 - 05)
        );
        // Received on a Sunday: Monday is the first working day.
        assert_eq!(
            due_date(&h, datetime!(2026-11-29 09:00 +07), 1),
            date!(2026 - 11 - 30)
        );
        // Fifteen working days from Friday 2026-12-18 cross New Year's Day.
        assert_eq!(
            due_date(&h, datetime!(2026-12-18 09:00 +07), 15),
            date!(2027 - 01 - 11)
        );
    }

    #[test]
    fn a_bad_holidays_file_is_refused_naming_its_line() {
        let err =
            Holidays::parse("{\"holidays\": [\n\"2026-01-01\",\n\"2026-02-30\"]}").unwrap_err();
        assert!(err.contains("line 3"), "{err}");
        let err = Holidays::parse("{\"holiday\": []}").unwrap_err();
        assert!(err.contains("line 1"), "{err}");
    }
}
