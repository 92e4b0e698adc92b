//! What the QR code on the face of a chip CCCD (2021–) says, parsed by position:
//!
//! ```text
//! CCCD number (12 digits) | old CMND (9 digits, may be empty) | full name | date of birth
//! | sex (Nam / Nữ) | permanent address | issue date [ | expiry date ]
//! ```
//!
//! UTF-8, dates `ddmmyyyy` (some cards and readers give `yyyymmdd`). Anything that does not fit
//! this with certainty — the 2024 *thẻ căn cước*'s unpublished layout, another QR, a field out
//! of shape, a date that could be read two ways, a control or bidi character — is "not
//! recognised": a field is never filled from a guess. The QR is not signed, so what it says
//! catches typing mistakes; it proves nothing about the card.

use time::{Date, Month};
use unicode_normalization::UnicodeNormalization;

use crate::domain::NationalId;

/// The longest QR text read: a chip CCCD's is a few hundred bytes.
pub const MAX_TEXT_BYTES: usize = 1024;

/// Sex as the card prints it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Sex {
    Male,
    Female,
}

/// A chip CCCD's QR, parsed. Text fields are in Unicode NFC, so they compare with what a
/// clerk types whichever form either came in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CardFields {
    pub number: NationalId,
    pub old_number: Option<String>,
    pub name: String,
    pub birth_date: Date,
    pub sex: Option<Sex>,
    pub address: String,
    pub issued_on: Date,
    pub expires_on: Option<Date>,
}

/// Why a QR's text is not a chip CCCD's, for the log line (never shown with the text itself).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a chip CCCD QR: {0}")]
pub struct NotRecognised(pub &'static str);

/// Parses a chip CCCD's QR text, or says it is not one.
pub fn parse(text: &str) -> Result<CardFields, NotRecognised> {
    if text.len() > MAX_TEXT_BYTES {
        return Err(NotRecognised("longer than any CCCD's QR"));
    }
    // Bidi controls and other invisible characters: a name carrying them could display as
    // something else than it is, and intake refuses them anyway.
    if text
        .chars()
        .any(|c| c.is_control() || crate::domain::is_hidden(c))
    {
        return Err(NotRecognised("control, bidi or hidden characters"));
    }
    let fields: Vec<&str> = text.split('|').collect();
    if !(7..=8).contains(&fields.len()) {
        return Err(NotRecognised("not 7 or 8 fields"));
    }
    let number =
        NationalId::parse(fields[0]).map_err(|_| NotRecognised("the number is not 12 digits"))?;
    let old_number = match fields[1] {
        "" => None,
        old if old.len() == 9 && old.bytes().all(|b| b.is_ascii_digit()) => Some(old.to_owned()),
        _ => return Err(NotRecognised("the old number is not 9 digits")),
    };
    let name: String = fields[2].nfc().collect();
    if name.trim().is_empty() || name.chars().count() > 200 {
        return Err(NotRecognised("no name, or too long a name"));
    }
    let sex = match fields[4].nfc().collect::<String>().as_str() {
        "" => None,
        "Nam" => Some(Sex::Male),
        "Nữ" => Some(Sex::Female),
        _ => return Err(NotRecognised("sex is neither Nam nor Nữ")),
    };
    let expires_on = match fields.get(7) {
        None | Some(&"") => None,
        Some(text) => Some(date(text)?),
    };
    Ok(CardFields {
        number,
        old_number,
        name,
        birth_date: date(fields[3])?,
        sex,
        address: fields[5].nfc().collect(),
        issued_on: date(fields[6])?,
        expires_on,
    })
}

/// An 8-digit date, `ddmmyyyy` or `yyyymmdd`, with a year from 1900 to 2100. Read only when
/// exactly one of the two readings is a real date.
fn date(text: &str) -> Result<Date, NotRecognised> {
    if text.len() != 8 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(NotRecognised("a date is not 8 digits"));
    }
    let n = |range: std::ops::Range<usize>| text[range].parse::<u16>().unwrap_or(0);
    let make = |year: u16, month: u16, day: u16| {
        let month = Month::try_from(u8::try_from(month).ok()?).ok()?;
        let day = u8::try_from(day).ok()?;
        (1900..=2100)
            .contains(&year)
            .then(|| Date::from_calendar_date(i32::from(year), month, day).ok())
            .flatten()
    };
    let day_first = make(n(4..8), n(2..4), n(0..2));
    let year_first = make(n(0..4), n(4..6), n(6..8));
    match (day_first, year_first) {
        (Some(d), None) | (None, Some(d)) => Ok(d),
        (Some(_), Some(_)) => Err(NotRecognised("a date that reads two ways")),
        (None, None) => Err(NotRecognised("a date that is not a real date")),
    }
}

/// Text as compared with the card: NFC, spaces collapsed, case kept (a name's case is part of
/// how it is written, but not of who it is).
pub fn comparable(text: &str) -> String {
    let nfc: String = text.nfc().collect();
    nfc.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    const CARD: &str =
        "048090001234|201234567|Phạm Văn An|01021990|Nam|12 Lê Duẩn, Hải Châu, Đà Nẵng|15032021";

    #[test]
    fn a_chip_cccd_qr_is_read_by_position() {
        let f = parse(CARD).unwrap();
        assert_eq!(f.number.expose(), "048090001234");
        assert_eq!(f.old_number.as_deref(), Some("201234567"));
        assert_eq!(f.name, "Phạm Văn An");
        assert_eq!(f.birth_date, date!(1990 - 02 - 01));
        assert_eq!(f.sex, Some(Sex::Male));
        assert_eq!(f.issued_on, date!(2021 - 03 - 15));
        assert_eq!(f.expires_on, None);
    }

    #[test]
    fn the_eighth_field_empties_and_year_first_dates_are_read() {
        let f = parse("048090001234||Lê Thị Hoa|19900201|Nữ||20210315|20360201").unwrap();
        assert_eq!(f.old_number, None);
        assert_eq!(f.sex, Some(Sex::Female));
        assert_eq!(f.birth_date, date!(1990 - 02 - 01));
        assert_eq!(f.expires_on, Some(date!(2036 - 02 - 01)));
    }

    #[test]
    fn nfd_names_become_nfc() {
        let nfd: String = "Phạm Văn An".nfd().collect();
        let f = parse(&CARD.replace("Phạm Văn An", &nfd)).unwrap();
        assert_eq!(f.name, "Phạm Văn An");
        assert_eq!(comparable(&nfd), comparable("phạm  văn an"));
    }

    #[test]
    fn anything_else_is_not_recognised() {
        for text in [
            "",
            "https://dichvucong.gov.vn",
            "not|a|card",
            "04809000123|201234567|A|01021990|Nam|x|15032021",
            "048090001234|2012|A|01021990|Nam|x|15032021",
            "048090001234||A|01021990|Male|x|15032021",
            "048090001234||A|31021990|Nam|x|15032021",
            "048090001234||A|01021990|Nam|x|15032021|x|y",
            "048090001234||Ph\u{202E}am|01021990|Nam|x|15032021",
            "048090001234||A\u{7}|01021990|Nam|x|15032021",
            "048090001234|| |01021990|Nam|x|15032021",
        ] {
            assert!(parse(text).is_err(), "{text:?}");
        }
        assert!(parse(&"9".repeat(10_000)).is_err());
    }
}
