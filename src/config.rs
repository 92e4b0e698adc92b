//! Typed settings. Every subcommand reads the same `HOSO_*` variables (or the matching flags), so
//! `hoso serve` and `hoso keys rewrap` can never disagree about where the vault lives.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

/// A string that never prints: database URLs may carry a password.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl FromStr for SecretString {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

pub const MIB: u64 = 1024 * 1024;

/// `HOSO_DATABASE_URL`, by scheme: parsed once, with the settings. The one place a database
/// URL is taken apart.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// `sqlite://PATH[?options]`; `url` is what sqlx opens (creating the file unless the URL
    /// says otherwise), `file` the database file.
    Sqlite { url: String, file: PathBuf },
    /// `postgres://…` or `postgresql://…`, passed to sqlx as it is (it may carry a password).
    Postgres(SecretString),
}

impl DatabaseUrl {
    pub fn parse(url: &str) -> Result<Self, String> {
        if let Some(rest) = url.strip_prefix("sqlite://") {
            let file = PathBuf::from(rest.split('?').next().unwrap_or(rest));
            let url = if rest.contains('?') {
                url.to_owned()
            } else {
                format!("{url}?mode=rwc")
            };
            Ok(Self::Sqlite { url, file })
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres(SecretString(url.to_owned())))
        } else {
            Err("HOSO_DATABASE_URL must start with sqlite:// or postgres://".into())
        }
    }

    /// The URL sqlx opens. It may carry a password: never log it.
    pub fn expose(&self) -> &str {
        match self {
            Self::Sqlite { url, .. } => url,
            Self::Postgres(url) => url.expose(),
        }
    }
}

impl FromStr for DatabaseUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(s)
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite { url, .. } => write!(f, "DatabaseUrl({url})"),
            Self::Postgres(_) => f.write_str("DatabaseUrl(postgres://<redacted>)"),
        }
    }
}

/// `HOSO_STORAGE_URL`, by scheme: parsed once, with the settings. The one place a storage URL
/// is taken apart; it prints back as it was given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageUrl {
    /// `file://DIR`, relative or absolute.
    Local(PathBuf),
    /// `s3://BUCKET[/PREFIX]`.
    S3 { bucket: String, prefix: String },
}

impl StorageUrl {
    pub fn parse(url: &str) -> Result<Self, String> {
        if let Some(dir) = url.strip_prefix("file://") {
            Ok(Self::Local(PathBuf::from(dir)))
        } else if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err("HOSO_STORAGE_URL s3://BUCKET[/PREFIX] needs a bucket".into());
            }
            Ok(Self::S3 {
                bucket: bucket.to_owned(),
                prefix: prefix.to_owned(),
            })
        } else {
            Err(format!(
                "HOSO_STORAGE_URL {url:?} is not supported; use file://DIR or s3://BUCKET[/PREFIX]"
            ))
        }
    }
}

impl FromStr for StorageUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(s)
    }
}

impl fmt::Display for StorageUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local(dir) => write!(f, "file://{}", dir.display()),
            Self::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            Self::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

#[derive(clap::Args, Clone, Debug)]
pub struct Settings {
    /// Metadata database: `sqlite://PATH` (created if missing) or `postgres://…`.
    #[arg(
        long,
        env = "HOSO_DATABASE_URL",
        hide_env_values = true,
        default_value = "sqlite://hoso.db",
        global = true
    )]
    pub database_url: DatabaseUrl,

    /// Where sealed document bodies go: `file://DIR` (a local directory, relative or absolute)
    /// or `s3://BUCKET[/PREFIX]` (endpoint and credentials from `AWS_*` or `HOSO_S3_*`).
    #[arg(
        long,
        env = "HOSO_STORAGE_URL",
        default_value = "file://storage",
        global = true
    )]
    pub storage_url: StorageUrl,

    /// Directory of key files (created with mode 0700, files 0600).
    #[arg(long, env = "HOSO_KEYS_DIR", default_value = "keys", global = true)]
    pub keys_dir: PathBuf,

    /// Address `hoso serve` listens on.
    #[arg(
        long,
        env = "HOSO_LISTEN",
        default_value = "127.0.0.1:8080",
        global = true
    )]
    pub listen: SocketAddr,

    /// Largest accepted scan, in bytes; enforced while the upload streams in.
    #[arg(long, env = "HOSO_MAX_UPLOAD_BYTES", default_value_t = 50 * MIB, global = true)]
    pub max_upload_bytes: u64,

    /// `iss` of staff tokens this vault issues and accepts.
    #[arg(long, env = "HOSO_TOKEN_ISSUER", default_value = "hoso", global = true)]
    pub token_issuer: String,

    /// `aud` of staff tokens this vault issues and accepts.
    #[arg(
        long,
        env = "HOSO_TOKEN_AUDIENCE",
        default_value = "hoso",
        global = true
    )]
    pub token_audience: String,

    /// Objects of intakes that never committed are deleted once older than this many seconds.
    #[arg(
        long,
        env = "HOSO_SWEEP_GRACE_SECONDS",
        default_value_t = 3600,
        global = true
    )]
    pub sweep_grace_seconds: u64,

    /// How long each type of document is kept (a JSON file; see config/retention.json, which
    /// is the built-in default when this is not set). Checked at start-up.
    #[arg(long, env = "HOSO_RETENTION_FILE", global = true)]
    pub retention_file: Option<PathBuf>,

    /// `hoso serve` runs retention this often (one run at a time across the fleet); 0: never
    /// (run `hoso retention run` yourself).
    #[arg(
        long,
        env = "HOSO_RETENTION_EVERY_HOURS",
        default_value_t = 24,
        global = true
    )]
    pub retention_every_hours: u64,

    /// Public holidays on which a citizen's request's working days do not count (a JSON file;
    /// see config/holidays-vn.json, the built-in default for 2026-2027). Checked at start-up.
    #[arg(long, env = "HOSO_HOLIDAYS_FILE", global = true)]
    pub holidays_file: Option<PathBuf>,

    /// Working days to give a citizen's request its first answer (Decree 356/2025).
    #[arg(
        long,
        env = "HOSO_REQUEST_ANSWER_DAYS",
        default_value_t = 2,
        global = true
    )]
    pub request_answer_days: u32,

    /// Working days to carry out (or refuse) a citizen's request.
    #[arg(
        long,
        env = "HOSO_REQUEST_CARRY_OUT_DAYS",
        default_value_t = 15,
        global = true
    )]
    pub request_carry_out_days: u32,

    /// Working days one extension of a request adds (one extension at most).
    #[arg(
        long,
        env = "HOSO_REQUEST_EXTENSION_DAYS",
        default_value_t = 15,
        global = true
    )]
    pub request_extension_days: u32,

    /// An upload that sends nothing for this many seconds is cut off (slow-loris clients).
    #[arg(
        long,
        env = "HOSO_UPLOAD_STALL_SECONDS",
        default_value_t = 30,
        global = true
    )]
    pub upload_stall_seconds: u64,

    /// `/readyz` says not ready (`disk_full`) when less than this many bytes are free under
    /// the SQLite file or the local storage directory: a vault that cannot write its audit
    /// log cannot serve, so the balancer should stop sending it traffic before writes fail.
    #[arg(
        long,
        env = "HOSO_MIN_FREE_BYTES",
        default_value_t = 64 * MIB,
        global = true
    )]
    pub min_free_bytes: u64,

    /// After SIGTERM, requests in flight get this many seconds to finish (new ones are refused
    /// with 503 and `/readyz` says not ready); then they are cut and the process exits.
    #[arg(
        long,
        env = "HOSO_SHUTDOWN_GRACE_SECONDS",
        default_value_t = 10,
        global = true
    )]
    pub shutdown_grace_seconds: u64,

    /// A request waits at most this many seconds for a database connection before it fails
    /// with 503 (the database is down or overloaded); also bounds reconnecting after a restart.
    #[arg(
        long,
        env = "HOSO_DB_ACQUIRE_TIMEOUT_SECONDS",
        default_value_t = 2,
        global = true
    )]
    pub db_acquire_timeout_seconds: u64,

    /// An S3 request (connect, send, read the whole answer) that takes longer than this many
    /// seconds is abandoned: a stalled store fails the request with 503 instead of holding it.
    #[arg(
        long,
        env = "HOSO_S3_TIMEOUT_SECONDS",
        default_value_t = 4,
        global = true
    )]
    pub s3_timeout_seconds: u64,

    /// Connecting to the S3 endpoint gives up after this many seconds.
    #[arg(
        long,
        env = "HOSO_S3_CONNECT_TIMEOUT_SECONDS",
        default_value_t = 1,
        global = true
    )]
    pub s3_connect_timeout_seconds: u64,

    /// How many times a failed S3 request is retried (connection reset, 5xx)…
    #[arg(long, env = "HOSO_S3_RETRIES", default_value_t = 2, global = true)]
    pub s3_retries: usize,

    /// …as long as this many seconds have not passed since the first try.
    #[arg(
        long,
        env = "HOSO_S3_RETRY_TIMEOUT_SECONDS",
        default_value_t = 2,
        global = true
    )]
    pub s3_retry_timeout_seconds: u64,

    /// Decrypted copies (each up to 8 MiB) held in memory, in bytes, their buffers kept for the
    /// next copies within the same bound; beyond it a copy streams in flat memory (it is then
    /// read twice from storage). Bounds the server's memory under many concurrent reads.
    #[arg(
        long,
        env = "HOSO_READ_MEMORY_BYTES",
        default_value_t = 40 * MIB,
        global = true
    )]
    pub read_memory_bytes: u64,

    /// A client must send its request's headers within this many seconds, or the connection
    /// is closed (half-open connections cannot pile up).
    #[arg(
        long,
        env = "HOSO_HEADER_READ_TIMEOUT_SECONDS",
        default_value_t = 10,
        global = true
    )]
    pub header_read_timeout_seconds: u64,

    /// A connection with no traffic either way for this many seconds is closed.
    #[arg(
        long,
        env = "HOSO_IDLE_TIMEOUT_SECONDS",
        default_value_t = 60,
        global = true
    )]
    pub idle_timeout_seconds: u64,

    /// Connections served at once; more wait to be accepted. Keep it below the process's
    /// open-file limit (`ulimit -n`), leaving room for the database and stored files.
    #[arg(
        long,
        env = "HOSO_MAX_CONNECTIONS",
        default_value_t = 512,
        global = true
    )]
    pub max_connections: usize,

    /// Serve `/metrics` to anyone (default: an admin or auditor token, whoever asks; a peer's
    /// address proves nothing behind a proxy).
    #[arg(
        long,
        env = "HOSO_METRICS_PUBLIC",
        default_value_t = false,
        global = true
    )]
    pub metrics_public: bool,

    /// Refusals of one actor logged one by one each minute; beyond, one entry notes the limit
    /// and further refused requests that minute answer 429 unlogged.
    #[arg(
        long,
        env = "HOSO_REFUSALS_PER_MINUTE",
        default_value_t = 120,
        global = true
    )]
    pub refusals_per_minute: u32,

    /// The audit log's name: the first line of every signed checkpoint and its key's name.
    /// Set it once, before the first checkpoint; witnesses pin it.
    #[arg(long, env = "HOSO_AUDIT_ORIGIN", default_value = "hoso.local/audit", global = true,
          value_parser = parse_origin)]
    pub audit_origin: String,

    /// A signed audit checkpoint at least every this many entries...
    #[arg(long, env = "HOSO_CHECKPOINT_EVERY", default_value_t = 256, global = true,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub checkpoint_every: u64,

    /// ...and at most this many seconds after an entry is logged (while entries arrive).
    #[arg(long, env = "HOSO_CHECKPOINT_SECONDS", default_value_t = 10, global = true,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub checkpoint_seconds: u64,

    /// Publish a checkpoint after every batch of the audit log, before any request in it is
    /// answered: no document byte or personal field leaves before a checkpoint covering its
    /// entry is in the object store, so no read can be rolled back unseen (one object write per
    /// batch, shared by its requests). `false` leaves a window of up to
    /// HOSO_CHECKPOINT_SECONDS in which a database holder can roll reads back unseen.
    #[arg(long, env = "HOSO_AUDIT_STRICT", default_value_t = true, global = true,
          action = clap::ArgAction::Set)]
    pub audit_strict: bool,

    /// The address people open the console at, for sign-in links (`hoso token issue --link`,
    /// a grant's officer link), e.g. `https://hoso.haichau.danang.gov.vn`. Default: `http://`
    /// and the listen address.
    #[arg(long, env = "HOSO_PUBLIC_URL", global = true, value_parser = parse_public_url)]
    pub public_url: Option<String>,

    /// Largest scan `POST /v1/scans/read-card` takes, in bytes.
    #[arg(long, env = "HOSO_CARD_MAX_BYTES", default_value_t = 20 * MIB, global = true)]
    pub card_max_bytes: u64,

    /// Most pixels an image may have for its card QR to be read (a decompression bomb declares
    /// billions; a 300-dpi A4 scan has about 8.7 million).
    #[arg(
        long,
        env = "HOSO_CARD_MAX_PIXELS",
        default_value_t = 40_000_000,
        global = true
    )]
    pub card_max_pixels: u64,

    /// Seconds a card QR read may take, its wait for a free reader (one per core) included,
    /// before the clerk is told it could not be read.
    #[arg(long, env = "HOSO_CARD_READ_SECONDS", default_value_t = 10, global = true,
          value_parser = clap::value_parser!(u64).range(1..=120))]
    pub card_read_seconds: u64,

    /// Where the master keys (KEKs) live: `files` (keys/, the default) or `pkcs11` (a hardware
    /// security module; the other keys stay in keys/).
    #[arg(long, env = "HOSO_KEY_STORE", value_enum, default_value_t = KeyStoreKind::Files, global = true)]
    pub key_store: KeyStoreKind,

    /// The PKCS#11 module (a shared library) of the HSM, with HOSO_KEY_STORE=pkcs11.
    #[arg(long, env = "HOSO_PKCS11_MODULE", global = true)]
    pub pkcs11_module: Option<PathBuf>,

    /// The label of the HSM token the master keys live in.
    #[arg(long, env = "HOSO_PKCS11_TOKEN_LABEL", global = true)]
    pub pkcs11_token_label: Option<String>,

    /// A file holding the token's user PIN (read once at start; never logged or shown).
    #[arg(long, env = "HOSO_PKCS11_PIN_FILE", global = true)]
    pub pkcs11_pin_file: Option<PathBuf>,

    /// What the labels of this vault's keys in the token start with (`{prefix}-kek-000001`).
    /// Default: `hoso-` and a random name made once and kept in keys/, so two vaults on one
    /// token never share a key.
    #[arg(long, env = "HOSO_PKCS11_LABEL_PREFIX", global = true)]
    pub pkcs11_label_prefix: Option<String>,

    /// How long a request waits for the token to answer one operation before it fails with 503
    /// `unavailable` (and `/readyz` says `"keys": false`), in milliseconds.
    #[arg(
        long,
        env = "HOSO_PKCS11_TIMEOUT_MS",
        default_value_t = 5000,
        global = true
    )]
    pub pkcs11_timeout_ms: u64,

    /// Signing in through identity providers (OpenID Connect), for staff and for citizens.
    #[command(flatten)]
    pub sign_in: SignInSettings,

    /// Test-only: make intakes stop dead at this point, leaving storage and database exactly as
    /// a crash there would. Never set in production.
    #[arg(long, env = "HOSO_TEST_FAULT", hide = true, global = true)]
    pub test_fault: Option<FaultPoint>,
}

/// Signing in through an OpenID Connect provider: staff through their agency's, citizens through
/// the national eID. A kind of person whose issuer is not set signs in only by a link from
/// `hoso token issue --link` (the embedded default, and the break-glass way in).
#[derive(clap::Args, Clone, Debug)]
pub struct SignInSettings {
    /// Staff provider's issuer URL (its metadata is read from
    /// ISSUER/.well-known/openid-configuration); https, or http on loopback only.
    #[arg(long, env = "HOSO_OIDC_STAFF_ISSUER", global = true, value_parser = parse_issuer)]
    pub oidc_staff_issuer: Option<String>,

    /// hoso's client id at the staff provider.
    #[arg(long, env = "HOSO_OIDC_STAFF_CLIENT_ID", global = true)]
    pub oidc_staff_client_id: Option<String>,

    /// File holding hoso's client secret at the staff provider (mode 0600; read at start-up,
    /// never logged).
    #[arg(long, env = "HOSO_OIDC_STAFF_CLIENT_SECRET_FILE", global = true)]
    pub oidc_staff_client_secret_file: Option<PathBuf>,

    /// The claim carrying a staff member's hoso role: clerk, officer, auditor or admin.
    #[arg(
        long,
        env = "HOSO_OIDC_STAFF_ROLE_CLAIM",
        default_value = "hoso_role",
        global = true
    )]
    pub oidc_staff_role_claim: String,

    /// The claim carrying a staff member's office code, e.g. UBND-HAICHAU.
    #[arg(
        long,
        env = "HOSO_OIDC_STAFF_OFFICE_CLAIM",
        default_value = "hoso_office",
        global = true
    )]
    pub oidc_staff_office_claim: String,

    /// The claim that becomes the staff id in hoso (grants name officers by it), e.g.
    /// `preferred_username`; letters, digits and .-_/:@ only.
    #[arg(
        long,
        env = "HOSO_OIDC_STAFF_ID_CLAIM",
        default_value = "sub",
        global = true
    )]
    pub oidc_staff_id_claim: String,

    /// The national eID's issuer URL (VNeID through the National Public Service Portal, or any
    /// OpenID provider).
    #[arg(long, env = "HOSO_OIDC_CITIZEN_ISSUER", global = true, value_parser = parse_issuer)]
    pub oidc_citizen_issuer: Option<String>,

    /// hoso's client id at the national eID.
    #[arg(long, env = "HOSO_OIDC_CITIZEN_CLIENT_ID", global = true)]
    pub oidc_citizen_client_id: Option<String>,

    /// File holding hoso's client secret at the national eID (mode 0600, never logged).
    #[arg(long, env = "HOSO_OIDC_CITIZEN_CLIENT_SECRET_FILE", global = true)]
    pub oidc_citizen_client_secret_file: Option<PathBuf>,

    /// The claim carrying the citizen's 12-digit personal identification number.
    #[arg(
        long,
        env = "HOSO_OIDC_CITIZEN_ID_CLAIM",
        default_value = "national_id",
        global = true
    )]
    pub oidc_citizen_id_claim: String,

    /// The assurance levels (`acr`) a citizen's sign-in must have, comma-separated, the lowest
    /// first, e.g. `vneid-2,vneid-3`; asked of the provider as `acr_values`. Unset: any.
    #[arg(
        long,
        env = "HOSO_OIDC_CITIZEN_ACR",
        global = true,
        value_delimiter = ','
    )]
    pub oidc_citizen_acr: Vec<String>,

    /// Scopes asked of both providers.
    #[arg(
        long,
        env = "HOSO_OIDC_SCOPES",
        default_value = "openid profile",
        global = true
    )]
    pub oidc_scopes: String,

    /// How long a session made by signing in through a provider lasts, in hours (1 to 24); the
    /// console signs out by itself then.
    #[arg(long, env = "HOSO_SESSION_HOURS", default_value_t = 8, global = true,
          value_parser = clap::value_parser!(u64).range(1..=24))]
    pub session_hours: u64,

    /// Sign-ins this process starts a minute, at most (each keeps a row for ten minutes): past
    /// it, a start is answered "too many, wait a minute" instead of filling the table.
    #[arg(long, env = "HOSO_SIGN_IN_STARTS_PER_MINUTE", default_value_t = 600, global = true,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub sign_in_starts_per_minute: u32,

    /// Seconds to wait for an identity provider's answer before telling the person it is not
    /// answering.
    #[arg(long, env = "HOSO_OIDC_TIMEOUT_SECONDS", default_value_t = 5, global = true,
          value_parser = clap::value_parser!(u64).range(1..=60))]
    pub oidc_timeout_seconds: u64,
}

/// `https://…`, or `http://` to a loopback host (127.0.0.1, [::1], localhost): the only URLs
/// hoso calls an identity provider at.
pub fn allowed_url(text: &str) -> bool {
    let Ok(url) = url::Url::parse(text) else {
        return false;
    };
    match (url.scheme(), url.host()) {
        ("https", Some(_)) => true,
        ("http", Some(url::Host::Ipv4(ip))) => ip.is_loopback(),
        ("http", Some(url::Host::Ipv6(ip))) => ip.is_loopback(),
        ("http", Some(url::Host::Domain(d))) => d.eq_ignore_ascii_case("localhost"),
        _ => false,
    }
}

/// An issuer is an https URL, or http on a loopback address (a provider on the same machine);
/// no query or fragment (OpenID Connect Discovery §3).
pub fn parse_issuer(text: &str) -> Result<String, String> {
    if !allowed_url(text) || text.contains(['?', '#']) {
        return Err(format!(
            "the issuer {text:?} must be an https:// URL (http:// only on 127.0.0.1, ::1 or \
             localhost) without ? or #"
        ));
    }
    Ok(text.trim_end_matches('/').to_owned())
}

/// A log origin is a key name in signed notes: printable, no spaces, no `+`.
fn parse_origin(text: &str) -> Result<String, String> {
    let ok = !text.is_empty()
        && text.len() <= 128
        && text.chars().all(|c| c.is_ascii_graphic() && c != '+');
    if ok {
        Ok(text.to_owned())
    } else {
        Err("the audit origin is printable ASCII without spaces or '+', e.g. hoso.danang.gov.vn/audit".into())
    }
}

/// A console address is `http://` or `https://` and a host, with no query or fragment (the
/// sign-in link's fragment is appended to it).
fn parse_public_url(text: &str) -> Result<String, String> {
    let rest = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"))
        .ok_or("the public URL starts with https:// (or http:// on one machine)")?;
    if rest.is_empty() || rest.starts_with('/') || rest.contains(['?', '#', ' ']) {
        return Err(
            "the public URL is a scheme and a host, e.g. https://hoso.example.gov.vn".into(),
        );
    }
    Ok(text.to_owned())
}

impl Settings {
    /// Where the console is, without a trailing slash.
    pub fn console_url(&self) -> String {
        match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("http://{}", self.listen),
        }
    }

    /// The sweep's grace period in milliseconds (saturating: a huge setting means "never").
    pub fn sweep_grace_ms(&self) -> i64 {
        i64::try_from(self.sweep_grace_seconds.saturating_mul(1000)).unwrap_or(i64::MAX)
    }

    /// The embedded default (SQLite + a local directory + key files) rooted at `dir`, listening
    /// on a free loopback port, with every other setting at its default. The one constructor
    /// tests, benchmarks and fuzz targets share; change a field of the result for anything else.
    ///
    /// The defaults are the flags' own (`#[arg(default_value…)]` above, written once); the
    /// process's `HOSO_*` variables are not read.
    pub fn embedded_in(dir: &std::path::Path) -> Self {
        use clap::{Args, FromArgMatches};
        let command =
            Self::augment_args(clap::Command::new("hoso")).mut_args(|arg| arg.env(None::<&str>));
        let matches = command
            .try_get_matches_from(["hoso"])
            .expect("every setting has a default or is optional");
        let mut settings = Self::from_arg_matches(&matches).expect("the defaults parse");
        settings.database_url =
            DatabaseUrl::parse(&format!("sqlite://{}", dir.join("hoso.db").display()))
                .expect("a sqlite URL");
        settings.storage_url = StorageUrl::Local(dir.join("storage"));
        settings.keys_dir = dir.join("keys");
        settings.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        settings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_default_takes_every_other_setting_from_the_flags_defaults() {
        let s = Settings::embedded_in(std::path::Path::new("/srv/v"));
        assert_eq!(s.storage_url, StorageUrl::Local("/srv/v/storage".into()));
        assert_eq!(s.keys_dir, PathBuf::from("/srv/v/keys"));
        assert_eq!(s.listen.port(), 0);
        assert_eq!(s.max_upload_bytes, 50 * MIB);
        assert_eq!(s.checkpoint_every, 256);
        assert!(s.audit_strict);
        assert_eq!(s.audit_origin, "hoso.local/audit");
        assert_eq!(s.public_url, None);
        assert_eq!(s.test_fault, None);
    }

    #[test]
    fn urls_are_taken_apart_by_scheme() {
        assert_eq!(
            DatabaseUrl::parse("sqlite://data/hoso.db"),
            Ok(DatabaseUrl::Sqlite {
                url: "sqlite://data/hoso.db?mode=rwc".into(),
                file: "data/hoso.db".into()
            })
        );
        let postgres = DatabaseUrl::parse("postgresql://hoso:s3cret@db/hoso").unwrap();
        assert!(matches!(postgres, DatabaseUrl::Postgres(_)));
        assert!(
            !format!("{postgres:?}").contains("s3cret"),
            "no password in Debug"
        );
        assert!(DatabaseUrl::parse("mysql://db").is_err());
        assert_eq!(
            StorageUrl::parse("s3://bodies/ward-1"),
            Ok(StorageUrl::S3 {
                bucket: "bodies".into(),
                prefix: "ward-1".into()
            })
        );
        assert_eq!(
            StorageUrl::parse("file:///srv/hoso"),
            Ok(StorageUrl::Local("/srv/hoso".into()))
        );
        assert!(StorageUrl::parse("s3:///x").is_err());
        for url in [
            "s3://bodies/ward-1",
            "s3://bodies",
            "file://storage",
            "file:///srv/hoso",
        ] {
            assert_eq!(StorageUrl::parse(url).unwrap().to_string(), url);
        }
        assert!(StorageUrl::parse("/srv/hoso").is_err());
    }
}

/// Where the PKCS#11 store is: the module, the token, the PIN file, and the prefix of its
/// objects' labels (one token may serve several vaults, or tests, each its own prefix).
#[derive(Clone, Debug)]
pub struct HsmSettings {
    pub module: PathBuf,
    pub token_label: String,
    pub pin_file: PathBuf,
    /// None: the vault's own, from keys/ ([`crate::crypto::pkcs11::Hsm::open`]).
    pub label_prefix: Option<String>,
    /// The longest a caller waits for one token operation.
    pub timeout: std::time::Duration,
}

/// Where the master keys (KEKs) live.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum KeyStoreKind {
    /// Files in keys/ (mode 0600): the embedded default.
    Files,
    /// A hardware security module through PKCS#11 (SoftHSM2 in the tests).
    Pkcs11,
}

impl Settings {
    /// Where the PKCS#11 store is, when it is the store; each missing setting named.
    pub fn hsm(&self) -> Result<Option<HsmSettings>, String> {
        if self.key_store != KeyStoreKind::Pkcs11 {
            return Ok(None);
        }
        let missing = |name: &str| format!("HOSO_KEY_STORE=pkcs11 needs {name}");
        Ok(Some(HsmSettings {
            module: self
                .pkcs11_module
                .clone()
                .ok_or_else(|| missing("HOSO_PKCS11_MODULE"))?,
            token_label: self
                .pkcs11_token_label
                .clone()
                .ok_or_else(|| missing("HOSO_PKCS11_TOKEN_LABEL"))?,
            pin_file: self
                .pkcs11_pin_file
                .clone()
                .ok_or_else(|| missing("HOSO_PKCS11_PIN_FILE"))?,
            label_prefix: self.pkcs11_label_prefix.clone(),
            timeout: std::time::Duration::from_millis(self.pkcs11_timeout_ms.max(1)),
        }))
    }
}

/// Points in an intake where a test can make it stop as if the process died.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FaultPoint {
    /// The intent is committed; not one byte of the object is written.
    BeforeObject,
    /// The intent is committed and the body partly written (mid-multipart for large bodies).
    MidObject,
    /// The object is durable; no row yet.
    AfterObject,
    /// The row is inserted but its transaction is never committed.
    BeforeCommit,
    /// Everything is committed; the client never hears back.
    AfterCommit,
    /// `keys rewrap` stops after rewrapping its first data key.
    RewrapMidway,
}
