//! Validated newtypes. Each has one `parse` that is the only way to build it from input, so a
//! value of the type is always valid. Nothing here knows about HTTP or SQL.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime};

/// What a record says where a staff id or an office does not apply (a citizen acting for
/// themself, the operator at the vault's shell).
pub const NOT_APPLICABLE: &str = "-";

/// Input that is not a valid domain value. Each kind becomes its own stable code at the HTTP
/// edge ([`crate::error`]); the message says in plain words what a valid value looks like.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DomainError {
    #[error("the national ID must be exactly 12 digits")]
    InvalidNationalId,
    /// A malformed identifier in the request itself (a code, a staff id).
    #[error("{0}")]
    InvalidInput(String),
    /// A field of a document's metadata.
    #[error("{0}")]
    InvalidMetadata(String),
}

/// The 12-digit personal identification number printed on the CCCD.
///
/// `Debug` is redacted so that a stray `{:?}` never puts it in a log; the only way to see the
/// digits is [`NationalId::expose`], used for hashing it into the blind index.
#[derive(Clone, PartialEq, Eq)]
pub struct NationalId(String);

impl NationalId {
    pub fn parse(input: &str) -> Result<Self, DomainError> {
        if input.len() == 12 && input.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(input.to_owned()))
        } else {
            Err(DomainError::InvalidNationalId)
        }
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for NationalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NationalId(<redacted>)")
    }
}

macro_rules! string_enum {
    ($(#[$doc:meta])* $name:ident, $what:literal { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum $name { $(#[serde(rename = $text)] $variant),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &[Self] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(input: &str) -> Option<Self> {
                match input { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                Self::parse(s).ok_or_else(|| format!(concat!("unknown ", $what, " {:?}"), s))
            }
        }
    };
}

string_enum!(
    /// The kinds of paper the vault keeps.
    DocType, "document type" {
        Cccd = "cccd",
        Passport = "passport",
        BirthCertificate = "birth_certificate",
        MarriageCertificate = "marriage_certificate",
        ResidenceConfirmation = "residence_confirmation",
        HouseholdRegistration = "household_registration",
        LandUseCertificate = "land_use_certificate",
        DrivingLicence = "driving_licence",
        Diploma = "diploma",
        Other = "other",
    }
);

string_enum!(
    /// A document's life: `pending` until a clerk checks it against the original; `erased`
    /// is a tombstone, its secrets and body gone.
    DocStatus, "status" {
        Pending = "pending",
        Verified = "verified",
        Superseded = "superseded",
        Revoked = "revoked",
        Erased = "erased",
    }
);

impl DocStatus {
    /// Current documents are the ones a procedure may rely on.
    pub fn is_current(self) -> bool {
        matches!(self, Self::Pending | Self::Verified)
    }

    /// The statuses that are current.
    pub fn current() -> impl Iterator<Item = Self> {
        Self::ALL.iter().copied().filter(|s| s.is_current())
    }
}

string_enum!(
    /// Who the caller is, as far as the vault's rules go.
    Role, "role" {
        Admin = "admin",
        Clerk = "clerk",
        Officer = "officer",
        Auditor = "auditor",
        Citizen = "citizen",
    }
);

string_enum!(
    /// Where a grant stands; when several hold, the first of revoked, expired, used up is the
    /// one a person is told (the order they would ask in).
    GrantState, "grant state" {
        Active = "active",
        Revoked = "revoked",
        Expired = "expired",
        UsedUp = "used_up",
    }
);

impl GrantState {
    /// The state at `now` (ms) of a grant with these fields.
    pub fn at(revoked: bool, expires_at: i64, uses: i64, max_uses: i64, now: i64) -> Self {
        if revoked {
            Self::Revoked
        } else if expires_at <= now {
            Self::Expired
        } else if uses >= max_uses {
            Self::UsedUp
        } else {
            Self::Active
        }
    }
}

string_enum!(
    /// Who signs in through an identity provider: staff through their agency's, citizens
    /// through the national eID. Each has its own provider, client and rules.
    SignInKind, "sign-in kind" {
        Staff = "staff",
        Citizen = "citizen",
    }
);

string_enum!(
    /// How a session was handed out: by signing in through the staff provider or the national
    /// eID, or by a link from `hoso token issue`.
    SessionVia, "session origin" {
        Staff = "staff",
        Citizen = "citizen",
        Link = "link",
    }
);

impl From<SignInKind> for SessionVia {
    fn from(kind: SignInKind) -> Self {
        match kind {
            SignInKind::Staff => Self::Staff,
            SignInKind::Citizen => Self::Citizen,
        }
    }
}

string_enum!(
    /// Why a document is erased: its type's retention rule ran out, the citizen asked (Law
    /// 91/2025, where no law requires keeping it), or a court ordered it.
    EraseReason, "erasure reason" {
        Retention = "retention",
        CitizenRequest = "citizen_request",
        CourtOrder = "court_order",
    }
);

string_enum!(
    /// What a citizen asks of the vault under Law 91/2025 (Art. 4): to see their data
    /// (`access`), to be given a copy to take away (`provide`), to have it corrected, to restrict
    /// its processing, to object to it, to withdraw consent, to have it erased.
    RequestKind, "request kind" {
        Access = "access",
        Provide = "provide",
        Correct = "correct",
        Restrict = "restrict",
        Object = "object",
        WithdrawConsent = "withdraw_consent",
        Erase = "erase",
    }
);

impl RequestKind {
    /// Carried out, these stop the processing of the citizen's records (a restriction).
    pub fn restricts(self) -> bool {
        matches!(self, Self::Restrict | Self::Object | Self::WithdrawConsent)
    }
}

string_enum!(
    /// Where a citizen's request stands. `extended` (once, with a reason) moves its deadline;
    /// `done` and `refused` (with the legal reason) close it.
    RequestState, "request state" {
        Received = "received",
        InProgress = "in_progress",
        Extended = "extended",
        Done = "done",
        Refused = "refused",
    }
);

impl RequestState {
    pub fn is_open(self) -> bool {
        !matches!(self, Self::Done | Self::Refused)
    }
}

string_enum!(
    /// What an audit entry says happened to the act it records.
    Outcome, "outcome" {
        Allowed = "allowed",
        Denied = "denied",
        Error = "error",
    }
);

string_enum!(
    /// Every act the audit log records: the log's vocabulary, stored as its stable string (the
    /// string is hashed into the chain, so a variant's text never changes once released).
    AuditAction, "audit action" {
        DocumentIntake = "document.intake",
        DocumentList = "document.list",
        DocumentRead = "document.read",
        DocumentContent = "document.content",
        DocumentVerify = "document.verify",
        DocumentRevoke = "document.revoke",
        GrantCreate = "grant.create",
        GrantRevoke = "grant.revoke",
        GrantList = "grant.list",
        GrantRead = "grant.read",
        AuditQuery = "audit.query",
        AuditVerify = "audit.verify",
        AccessLogRead = "access_log.read",
        AccessLogProof = "access_log.proof",
        TokenIssue = "token.issue",
        TokenRevoke = "token.revoke",
        TokenRefused = "token.refused",
        RefusalsLimited = "refusals.limited",
        KeysRewrap = "keys.rewrap",
        KeysRetire = "keys.retire",
        SessionSignIn = "session.sign_in",
        SessionSignOut = "session.sign_out",
        SessionList = "session.list",
        DocumentErase = "document.erase",
        HoldPlace = "hold.place",
        HoldLift = "hold.lift",
        HoldList = "hold.list",
        RequestFile = "request.file",
        RequestUpdate = "request.update",
        RequestList = "request.list",
        RestrictionLift = "restriction.lift",
        CitizenExport = "citizen.export",
    }
);

impl AuditAction {
    /// The acts a citizen's access log lists when someone other than the citizen did them and
    /// was allowed: every way of seeing a citizen's records.
    pub const READS: &[Self] = &[
        Self::DocumentList,
        Self::DocumentRead,
        Self::DocumentContent,
    ];
}

/// The formats the vault accepts, decided by the file's own first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaType {
    Pdf,
    Jpeg,
    Png,
    Tiff,
}

impl MediaType {
    /// How many leading bytes [`MediaType::sniff`] needs.
    pub const SNIFF_LEN: usize = 8;

    /// Decides the type from magic numbers; a name or a declared `Content-Type` is never trusted.
    pub fn sniff(head: &[u8]) -> Option<Self> {
        if head.starts_with(b"%PDF-") {
            Some(Self::Pdf)
        } else if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(Self::Jpeg)
        } else if head.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(Self::Png)
        } else if head.starts_with(b"II*\0") || head.starts_with(b"MM\0*") {
            Some(Self::Tiff)
        } else {
            None
        }
    }

    /// Whether it is a picture (what a card's QR can be read from), not a document.
    pub fn is_image(self) -> bool {
        !matches!(self, Self::Pdf)
    }

    pub fn as_mime(self) -> &'static str {
        match self {
            Self::Pdf => "application/pdf",
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
            Self::Tiff => "image/tiff",
        }
    }
}

/// A short identifier: staff ids, office codes, case references (dossier codes such as
/// `000.00.31.H40-241124-0001`). ASCII letters, digits and `.-_/:@`, 1 to 64 characters, so it
/// can sit in a log line or a header without escaping.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Code(String);

impl Code {
    pub fn parse(input: &str, what: &str) -> Result<Self, DomainError> {
        let ok = (1..=64).contains(&input.len())
            && input
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-_/:@".contains(&b));
        if ok {
            Ok(Self(input.to_owned()))
        } else {
            Err(DomainError::InvalidInput(format!(
                "{what} must be 1-64 characters of letters, digits and .-_/:@"
            )))
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Free text typed by people (names, issuing authorities, purposes): any Unicode, kept exactly as
/// given (Vietnamese diacritics must round-trip byte for byte, so nothing is normalised), with no
/// control characters and a bounded length.
pub fn parse_text(input: &str, what: &str, max_chars: usize) -> Result<String, DomainError> {
    let count = input.chars().count();
    if count == 0 || input.trim().is_empty() {
        return Err(DomainError::InvalidMetadata(format!(
            "{what} must not be empty"
        )));
    }
    if count > max_chars {
        return Err(DomainError::InvalidMetadata(format!(
            "{what} must be at most {max_chars} characters"
        )));
    }
    if input.chars().any(char::is_control) {
        return Err(DomainError::InvalidMetadata(format!(
            "{what} must not contain control characters"
        )));
    }
    if input.chars().any(is_hidden) {
        return Err(DomainError::InvalidMetadata(format!(
            "{what} must not contain invisible characters (formatting marks such as bidirectional \
             overrides or zero-width spaces, line or paragraph separators, private-use or \
             unassigned code points, Hangul fillers)"
        )));
    }
    Ok(input.to_owned())
}

/// Characters that change how text displays, or display as nothing, without being seen: by
/// Unicode general category, every format character (Cf: bidirectional embeddings, overrides
/// and isolates, which can make "Nguyễn" read as another name on a screen or a printed receipt;
/// zero-width spaces and joiners; the soft hyphen; tag characters; the byte-order mark), line
/// and paragraph separators (Zl, Zp), private-use (Co), surrogate (Cs) and unassigned (Cn)
/// code points; and the Hangul fillers, letters that draw as blank space. Control characters
/// (Cc) are refused before, with their own message. `console/rules.js` refuses the same set.
pub fn is_hidden(c: char) -> bool {
    use unicode_general_category::{GeneralCategory as G, get_general_category};
    matches!(
        get_general_category(c),
        G::Format
            | G::LineSeparator
            | G::ParagraphSeparator
            | G::PrivateUse
            | G::Surrogate
            | G::Unassigned
    ) || matches!(c, '\u{115F}' | '\u{1160}' | '\u{3164}' | '\u{FFA0}')
}

/// A calendar date written `YYYY-MM-DD`; 2023-02-30 is refused. The shape is checked first:
/// the `time` parser alone also takes signed and five-digit years ("-2022-05-01", found by the
/// metadata fuzz target), which no paper carries and which would not print back the same.
pub fn parse_date(input: &str, what: &str) -> Result<Date, DomainError> {
    let invalid = || DomainError::InvalidMetadata(format!("{what} must be a real date YYYY-MM-DD"));
    let shaped = input.len() == 10
        && input.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            _ => b.is_ascii_digit(),
        });
    if !shaped {
        return Err(invalid());
    }
    Date::parse(input, format_description!("[year]-[month]-[day]")).map_err(|_| invalid())
}

pub fn format_date(date: Date) -> String {
    date.format(format_description!("[year]-[month]-[day]"))
        .expect("a Date always formats")
}

/// The personal fields of a document. They are sealed with the document's data key and never
/// stored in clear.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonalFields {
    pub doc_number: String,
    pub holder_name: String,
    pub issued_on: String,
    pub issued_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_on: Option<String>,
    /// For a CCCD whose scan's QR was read at intake: whether the typed fields matched it, or
    /// the clerk confirmed them over it. Absent: not checked (another type, no readable QR, an
    /// earlier version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card_check: Option<CardCheck>,
}

string_enum!(
    /// How a CCCD's typed fields stood against its QR code at intake.
    CardCheck, "card check" {
        Matched = "matched",
        Overridden = "overridden",
    }
);

/// The `metadata` part of an intake, as sent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntakeMetadataInput {
    pub doc_type: String,
    pub doc_number: String,
    pub holder_name: String,
    pub issued_on: String,
    pub issued_by: String,
    #[serde(default)]
    pub expires_on: Option<String>,
    #[serde(default)]
    pub supersedes: Option<String>,
    #[serde(default)]
    pub verified_against_original: bool,
    /// The clerk's reason for keeping typed fields the card's QR disagrees with.
    #[serde(default)]
    pub card_override: Option<String>,
}

/// The `metadata` part of an intake, validated.
#[derive(Clone, Debug)]
pub struct IntakeMetadata {
    pub doc_type: DocType,
    pub fields: PersonalFields,
    pub supersedes: Option<uuid::Uuid>,
    pub verified_against_original: bool,
    pub card_override: Option<String>,
}

impl IntakeMetadata {
    pub fn parse(json: &[u8], today: Date) -> Result<Self, DomainError> {
        let input: IntakeMetadataInput = serde_json::from_slice(json)
            .map_err(|e| DomainError::InvalidMetadata(format!("metadata is not valid: {e}")))?;
        let doc_type = DocType::parse(&input.doc_type).ok_or_else(|| {
            DomainError::InvalidMetadata(format!("unknown doc_type {:?}", input.doc_type))
        })?;
        let issued_on = parse_date(&input.issued_on, "issued_on")?;
        if issued_on > today {
            return Err(DomainError::InvalidMetadata(
                "issued_on is in the future".into(),
            ));
        }
        let expires_on = match &input.expires_on {
            Some(text) => {
                let date = parse_date(text, "expires_on")?;
                if date < issued_on {
                    return Err(DomainError::InvalidMetadata(
                        "expires_on is before issued_on".into(),
                    ));
                }
                Some(format_date(date))
            }
            None => None,
        };
        let supersedes = match &input.supersedes {
            Some(text) => Some(uuid::Uuid::parse_str(text).map_err(|_| {
                DomainError::InvalidMetadata("supersedes must be a document id".into())
            })?),
            None => None,
        };
        Ok(Self {
            doc_type,
            fields: PersonalFields {
                doc_number: parse_text(&input.doc_number, "doc_number", 64)?,
                holder_name: parse_text(&input.holder_name, "holder_name", 200)?,
                issued_on: format_date(issued_on),
                issued_by: parse_text(&input.issued_by, "issued_by", 200)?,
                expires_on,
                card_check: None,
            },
            supersedes,
            verified_against_original: input.verified_against_original,
            card_override: input
                .card_override
                .as_deref()
                .map(|reason| parse_text(reason, "card_override", 500))
                .transpose()?,
        })
    }
}

/// A time in milliseconds since the epoch, written as RFC 3339 (UTC).
pub fn format_rfc3339(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// An RFC 3339 time from a request, in milliseconds since the epoch.
pub fn parse_rfc3339(text: &str, what: &str) -> Result<i64, DomainError> {
    let t = OffsetDateTime::parse(text, &Rfc3339).map_err(|_| {
        DomainError::InvalidInput(format!(
            "{what} must be an RFC 3339 time such as 2026-11-24T08:00:00Z"
        ))
    })?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| DomainError::InvalidInput(format!("{what} is out of range")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rules' shared cases (`tests/rules_cases.json`), which the console's rules also pass
    /// (`crate::http::console`'s tests run them under node).
    #[test]
    fn the_shared_rule_cases_hold_for_the_api() {
        let cases: serde_json::Value =
            serde_json::from_str(include_str!("../tests/rules_cases.json")).unwrap();
        let cases = cases["cases"].as_array().unwrap();
        assert!(cases.len() > 30, "the table is there");
        for case in cases {
            let input = case["input"].as_str().unwrap();
            let valid = match case["rule"].as_str().unwrap() {
                "national_id" => NationalId::parse(input).is_ok(),
                "code" => Code::parse(input, "code").is_ok(),
                "text" => {
                    let max = case["max"].as_u64().unwrap() as usize;
                    parse_text(input, "text", max).is_ok()
                }
                other => panic!("unknown rule {other}"),
            };
            assert_eq!(valid, case["valid"].as_bool().unwrap(), "{case}");
        }
    }

    #[test]
    fn national_id_accepts_twelve_digits_only() {
        assert!(NationalId::parse("001099012345").is_ok());
        for bad in [
            "",
            "00109901234",
            "0010990123456",
            "00109901234a",
            "００１０９９０１２３４５",
        ] {
            assert!(NationalId::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn national_id_debug_never_shows_the_digits() {
        let id = NationalId::parse("001099012345").unwrap();
        assert!(!format!("{id:?}").contains("0123"));
    }

    #[test]
    fn text_fields_refuse_bidi_overrides_and_zero_width_characters() {
        assert!(parse_text("Nguyễn Thị Hồng", "holder_name", 200).is_ok());
        for sneaky in [
            "Nguy\u{202E}nêyug",
            "Lan\u{200B}",
            "\u{2066}Lan\u{2069}",
            "\u{FEFF}Lan",
        ] {
            assert!(
                parse_text(sneaky, "holder_name", 200).is_err(),
                "{sneaky:?} is refused"
            );
        }
    }

    #[test]
    fn dates_must_be_real() {
        assert!(parse_date("2024-02-29", "d").is_ok());
        assert!(parse_date("2023-02-29", "d").is_err());
        assert!(parse_date("2023-13-01", "d").is_err());
        assert!(parse_date("01/02/2023", "d").is_err());
    }

    /// Regression: fuzz/corpus/metadata/regression-signed-year.
    #[test]
    fn dates_have_four_digit_unsigned_years() {
        for bad in [
            "-2022-05-01",
            "+2022-05-01",
            "12022-05-01",
            "2022-5-01",
            "２０２２-05-01",
        ] {
            assert!(parse_date(bad, "d").is_err(), "{bad:?} accepted");
        }
        let today = Date::from_calendar_date(2026, time::Month::November, 24).unwrap();
        let json = br#"{"doc_type":"cccd","doc_number":"12344","holder_name":"94","issued_on":"-2022-05-01","issued_by":"Cf )e"}"#;
        assert!(IntakeMetadata::parse(json, today).is_err());
    }

    #[test]
    fn sniffing_ignores_everything_but_the_bytes() {
        assert_eq!(MediaType::sniff(b"%PDF-1.7\n"), Some(MediaType::Pdf));
        assert_eq!(MediaType::sniff(b"\x89PNG\r\n\x1a\n"), Some(MediaType::Png));
        assert_eq!(MediaType::sniff(b"MZ\x90\0"), None);
        assert_eq!(MediaType::sniff(b"<html>"), None);
    }

    #[test]
    fn vietnamese_text_is_kept_exactly() {
        let name = "Nguyễn Thị Hồng Nhung";
        assert_eq!(parse_text(name, "n", 200).unwrap(), name);
        assert!(parse_text("a\u{0}b", "n", 200).is_err());
    }
}
