//! The `hoso` command line: one module per subcommand, each turning settings and flags into one
//! call of the records service (or the key ring) and its answer into words for the operator.
//! Every subcommand reads the same `HOSO_*` settings.

mod audit;
mod backup;
mod doctor;
mod keys;
mod retention;
mod serve;
mod sweep;
mod token;
mod verify_copy;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::app::{App, StartupError};
use crate::config::Settings;

pub use token::parse_ttl;

#[derive(Parser, Debug)]
#[command(
    name = "hoso",
    version,
    about = "hoso: a once-only records vault for public services",
    long_about = "hoso keeps citizens' identity papers, scanned once at a one-stop desk, encrypted in \
                  object storage, and serves verified copies to officers through scoped grants. \
                  With no settings it runs on ./hoso.db (SQLite), ./storage and ./keys."
)]
pub struct Cli {
    #[command(flatten)]
    pub settings: Settings,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the vault's HTTP API (makes keys, database and storage on first run).
    Serve,
    /// Make the keys, the database and the storage directory, then exit.
    Init,
    /// Issue or revoke staff and citizen tokens.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Master-key (KEK) rotation, rewrapping and retirement.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Check the audit log.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Re-apply the erasure ledger, then check every document against its stored object
    /// (present, authenticates, size and SHA-256 match) and the audit chain; exit 1 naming every
    /// problem.
    Doctor {
        /// Also re-apply an exported erasure ledger (`hoso retention ledger export`), after
        /// restoring PostgreSQL or the bucket with their own tools.
        #[arg(long)]
        ledger: Option<PathBuf>,
    },
    /// List objects no document will ever point to (intakes that died midway, orphans, cut-off
    /// local writes) older than the grace period; remove them only with --delete.
    Sweep {
        /// Actually delete; without it, only report.
        #[arg(long)]
        delete: bool,
    },
    /// Snapshot the embedded default (SQLite + storage/) into DIR while the vault serves.
    /// Keys are not included: back up the keys directory separately.
    Backup {
        /// An empty or new directory.
        dir: PathBuf,
    },
    /// Put a backup made by `hoso backup` in place for HOSO_DATABASE_URL / HOSO_STORAGE_URL,
    /// which must be empty or absent, and re-erase every document the erasure ledger names
    /// (a backup still holds what was erased after it). Then run `hoso doctor`.
    Restore {
        /// The backup directory.
        dir: PathBuf,
        /// The erasure ledger exported with `hoso retention ledger export` (kept beside the
        /// keys): documents erased after the backup stay erased.
        #[arg(
            long,
            required_unless_present = "no_ledger",
            conflicts_with = "no_ledger"
        )]
        ledger: Option<PathBuf>,
        /// Restore without an exported ledger: only the erasures the backup itself knew are
        /// re-applied. Say so only if nothing was erased since the backup.
        #[arg(long)]
        no_ledger: bool,
    },
    /// Retention by document type (HOSO_RETENTION_FILE), and the erasure ledger.
    #[command(subcommand)]
    Retention(retention::RetentionCommand),
    /// Check a copy of a document against its attestation, offline.
    VerifyCopy {
        /// The copy to check (as served by GET /v1/documents/{id}/content).
        #[arg(long)]
        file: PathBuf,
        /// The attestation: the compact JWS itself, or a file holding it.
        #[arg(long)]
        attestation: String,
        /// A JWKS file (as served at /.well-known/jwks.json). Default: this vault's own keys.
        #[arg(long)]
        jwks: Option<PathBuf>,
    },
    /// Check a citizen's export (GET /v1/citizens/{id}/export) offline: the manifest's signature
    /// by the vault's export key, and every file in the archive against the manifest.
    VerifyExport {
        /// The ZIP file.
        file: PathBuf,
        /// A JWKS file (as served at /.well-known/jwks.json). Default: this vault's own keys.
        #[arg(long)]
        jwks: Option<PathBuf>,
    },
}

pub async fn run(cli: Cli) -> Result<ExitCode, CliError> {
    let settings = cli.settings;
    match cli.command {
        Command::Serve => serve::run(settings).await,
        Command::Init => serve::init(settings).await,
        Command::Token(command) => token::run(settings, command).await,
        Command::Keys(command) => keys::run(settings, command).await,
        Command::Audit(command) => audit::run(settings, command).await,
        Command::Doctor { ledger } => doctor::run(settings, ledger.as_deref()).await,
        Command::Sweep { delete } => sweep::run(settings, delete).await,
        Command::Backup { dir } => backup::backup(settings, &dir).await,
        Command::Restore {
            dir,
            ledger,
            no_ledger: _,
        } => {
            let given = match &ledger {
                Some(file) => backup::LedgerGiven::File(file),
                None => backup::LedgerGiven::None,
            };
            backup::restore(settings, &dir, given).await
        }
        Command::Retention(command) => retention::run(settings, command).await,
        Command::VerifyCopy {
            file,
            attestation,
            jwks,
        } => verify_copy::run(&settings, &file, &attestation, jwks.as_deref()),
        Command::VerifyExport { file, jwks } => {
            verify_copy::verify_export(&settings, &file, jwks.as_deref())
        }
    }
}

/// Opens the vault an operator's command works on (never creating keys: only `serve` and
/// `init` do).
async fn open(settings: Settings) -> Result<App, StartupError> {
    App::open(settings, false).await
}

/// The keys as the settings say (the master keys in the HSM with `HOSO_KEY_STORE=pkcs11`),
/// for commands that do not open the whole vault.
fn keyring(settings: &Settings) -> Result<crate::crypto::keyring::Keyring, CliError> {
    let hsm = match settings.hsm()? {
        Some(hsm) => Some(std::sync::Arc::new(
            crate::crypto::pkcs11::Hsm::open(&hsm, &settings.keys_dir, false)
                .map_err(|e| e.to_string())?,
        )),
        None => None,
    };
    crate::crypto::keyring::Keyring::open_with(&settings.keys_dir, false, hsm)
        .map_err(|e| CliError::Failed(format!("keys: {e}")))
}

/// Why an operator's command failed: printed as `hoso: <message>`, exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The vault could not be opened.
    #[error(transparent)]
    Startup(#[from] StartupError),
    /// The command itself failed; the message says why, causes included (see [`cli_error`]).
    #[error("{0}")]
    Failed(String),
}

impl From<String> for CliError {
    fn from(message: String) -> Self {
        Self::Failed(message)
    }
}

impl From<&str> for CliError {
    fn from(message: &str) -> Self {
        Self::Failed(message.to_owned())
    }
}

/// An error as an operator should read it: the message, and for server-side failures the cause
/// (the CLI is the operator's own terminal, not a client).
pub(crate) fn cli_error(e: impl Into<crate::error::ApiError>) -> String {
    e.into().for_operator()
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
