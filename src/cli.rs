//! The `hoso` command line. Every subcommand reads the same `HOSO_*` settings.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::app::{App, AppState};
use crate::auth::{self, TokenRequest};
use crate::config::Settings;
use crate::crypto::keyring::Keyring;
use crate::domain::{Code, NationalId, Role};
use crate::records;

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
    Token(TokenCommand),
    /// Master-key (KEK) rotation, rewrapping and retirement.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Check the audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Check every document against its stored object (present, authenticates, size and
    /// SHA-256 match) and the audit chain; exit 1 naming every problem.
    Doctor,
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
    /// which must be empty or absent. Then run `hoso doctor`.
    Restore {
        /// The backup directory.
        dir: PathBuf,
    },
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
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Print a signed token, and nothing else, on standard output.
    Issue {
        /// admin, clerk, auditor or citizen (officers get tokens through grants).
        #[arg(long)]
        role: Role,
        /// Staff id; for `citizen`, the 12-digit national ID.
        #[arg(long)]
        sub: String,
        /// Office code, e.g. UBND-HAICHAU.
        #[arg(long)]
        office: Option<String>,
        /// Lifetime: 90s, 30m, 8h, 2d.
        #[arg(long, default_value = "8h")]
        ttl: String,
    },
    /// Refuse a token from now until it expires.
    Revoke {
        /// The token to revoke.
        token: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Add a new master-key version and make it current.
    Rotate,
    /// Rewrap every data key under the current master key (bodies are not touched).
    Rewrap,
    /// Show master-key versions and how many data keys each wraps.
    Status,
    /// Delete a master-key version; refused while any data key uses it.
    Retire {
        #[arg(long)]
        version: u32,
    },
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Check the chain and signatures; exit 0 when intact, 1 naming the first bad entry.
    Verify,
}

/// An error as an operator should read it: the message, and for server-side failures the cause
/// (the CLI is the operator's own terminal, not a client).
fn cli_error(e: impl Into<crate::error::ApiError>) -> String {
    use crate::error::ApiError::{InsufficientStorage, Integrity, Internal, Unavailable};
    match e.into() {
        Internal(cause) | Integrity(cause) | Unavailable(cause) | InsufficientStorage(cause) => {
            cause
        }
        other => other.to_string(),
    }
}

/// Parses `90s`, `30m`, `8h`, `2d` or a plain number of seconds.
pub fn parse_ttl(text: &str) -> Result<i64, String> {
    let (digits, unit) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&text[..i], c),
        _ => (text, 's'),
    };
    let n: i64 = digits
        .parse()
        .map_err(|_| format!("cannot read the duration {text:?}"))?;
    let scale = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return Err(format!("unknown unit in {text:?}; use s, m, h or d")),
    };
    match n.checked_mul(scale) {
        Some(s) if s > 0 && s <= 30 * 86_400 => Ok(s),
        _ => Err("a token lives between 1 second and 30 days".into()),
    }
}

pub async fn run(cli: Cli) -> Result<ExitCode, String> {
    let settings = cli.settings;
    match cli.command {
        Command::Serve => serve(settings).await,
        Command::Init => {
            let app = App::open(settings, true).await?;
            println!(
                "keys in {}, database ready, storage in {}",
                app.settings.keys_dir.display(),
                app.vault
                    .blobs
                    .local_root()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Token(TokenCommand::Issue {
            role,
            sub,
            office,
            ttl,
        }) => {
            if role == Role::Officer {
                return Err("officers get tokens through grants (POST /v1/grants)".into());
            }
            if role == Role::Citizen {
                NationalId::parse(&sub)
                    .map_err(|_| "a citizen's --sub is their 12-digit national ID")?;
            } else {
                Code::parse(&sub, "--sub").map_err(|e| e.to_string())?;
            }
            if let Some(office) = &office {
                Code::parse(office, "--office").map_err(|e| e.to_string())?;
            }
            let keys = Keyring::open(&settings.keys_dir, false).map_err(|e| e.to_string())?;
            let policy = auth::TokenPolicy {
                issuer: settings.token_issuer,
                audience: settings.token_audience,
            };
            let request = TokenRequest {
                role,
                sub: &sub,
                office: office.as_deref(),
                ttl_seconds: parse_ttl(&ttl)?,
                grant: None,
            };
            let (token, _) = auth::issue(&keys, &policy, request).map_err(|e| e.to_string())?;
            println!("{token}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Token(TokenCommand::Revoke { token }) => {
            let app = App::open(settings, false).await?;
            let claims = auth::decode(&app.vault.keys(), &app.vault.token_policy, token.trim())
                .map_err(|e| e.to_string())?;
            crate::db::keys::revoke_token(&app.vault.db.pool, &claims.jti, claims.exp)
                .await
                .map_err(cli_error)?;
            eprintln!("token {} refused from now on", claims.jti);
            Ok(ExitCode::SUCCESS)
        }
        Command::Keys(command) => keys(settings, command).await,
        Command::Audit(AuditCommand::Verify) => {
            let app = App::open(settings, false).await?;
            let report = crate::audit::verify(&app.vault.db, &app.vault.keys())
                .await
                .map_err(cli_error)?;
            if report.ok {
                println!(
                    "audit log intact: {} entries, head {}",
                    report.entries, report.head
                );
                Ok(ExitCode::SUCCESS)
            } else {
                println!(
                    "audit log NOT intact: first bad entry is {} ({})",
                    report.first_bad_seq.unwrap_or_default(),
                    report.problem.unwrap_or_default()
                );
                Ok(ExitCode::from(1))
            }
        }
        Command::Doctor => doctor(settings).await,
        Command::Backup { dir } => {
            let app = App::open(settings, false).await?;
            let n = records::backup::backup(&app.vault, &dir, |n| eprintln!("copied {n} bodies…"))
                .await
                .map_err(cli_error)?;
            println!(
                "backup in {}: database snapshot and {n} bodies; back up {} separately",
                dir.display(),
                app.settings.keys_dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Restore { dir } => {
            let n = records::backup::restore(
                &dir,
                settings.database_url.expose(),
                &settings.storage_url,
            )?;
            println!(
                "restored the database and {n} bodies from {}; now run `hoso doctor`",
                dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Sweep { delete } => sweep(settings, delete).await,
        Command::VerifyCopy {
            file,
            attestation,
            jwks,
        } => verify_copy(&settings, &file, &attestation, jwks.as_deref()),
    }
}

async fn keys(settings: Settings, command: KeysCommand) -> Result<ExitCode, String> {
    if let KeysCommand::Rotate = command {
        let version = Keyring::rotate(&settings.keys_dir).map_err(|e| e.to_string())?;
        // Registering it tells running vaults (which check before each intake) to reload.
        let app = App::open(settings, false).await?;
        println!(
            "master key version {version} is now current; run `hoso keys rewrap` to move existing data keys to it"
        );
        drop(app);
        return Ok(ExitCode::SUCCESS);
    }
    let app = App::open(settings, false).await?;
    match command {
        KeysCommand::Rotate => unreachable!("handled above"),
        KeysCommand::Rewrap => {
            let done = records::keys::rewrap(&app.vault, |n| eprintln!("rewrapped {n} data keys…"))
                .await
                .map_err(cli_error)?;
            println!(
                "{done} data keys rewrapped under version {}",
                app.vault.keys().current_kek().version
            );
        }
        KeysCommand::Status => {
            let keys = app.vault.keys();
            let counts = crate::db::documents::count_by_kek(&app.vault.db.pool)
                .await
                .map_err(cli_error)?;
            let usage = crate::db::keys::usage(&app.vault.db.pool)
                .await
                .map_err(cli_error)?;
            println!("version  current  in use  wrapped ever  state");
            for u in usage {
                let in_use = counts
                    .iter()
                    .find(|(v, _)| *v == u.version)
                    .map_or(0, |(_, n)| *n);
                let on_disk = u32::try_from(u.version)
                    .ok()
                    .and_then(|v| keys.kek(v))
                    .is_some();
                let state = match (u.retired_at, on_disk) {
                    (Some(_), _) => "retired",
                    (None, true) => "available",
                    (None, false) => "MISSING FILE",
                };
                let current = if i64::from(keys.current_kek().version) == u.version {
                    "*"
                } else {
                    ""
                };
                println!(
                    "{:>7}  {:>7}  {:>6}  {:>12}  {state}",
                    u.version, current, in_use, u.wraps
                );
            }
        }
        KeysCommand::Retire { version } => {
            records::keys::retire(&app.vault, version)
                .await
                .map_err(cli_error)?;
            println!("master key version {version} retired and deleted");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn doctor(settings: Settings) -> Result<ExitCode, String> {
    let app = App::open(settings, false).await?;
    let report = records::maintenance::doctor(&app.vault, |done, total| {
        eprintln!("checked {done} of {total} documents…");
    })
    .await
    .map_err(cli_error)?;
    for p in &report.problems {
        println!("document {}: {}", p.document_id, p.what);
    }
    println!(
        "{} documents checked, {} with problems; audit log {} ({} entries{})",
        report.documents,
        report.problems.len(),
        if report.audit_ok {
            "intact"
        } else {
            "NOT intact"
        },
        report.audit_entries,
        report
            .audit_problem
            .as_deref()
            .map(|p| format!(", first bad {p}"))
            .unwrap_or_default()
    );
    Ok(if report.healthy() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn sweep(settings: Settings, delete: bool) -> Result<ExitCode, String> {
    let grace_ms =
        i64::try_from(settings.sweep_grace_seconds.saturating_mul(1000)).unwrap_or(i64::MAX);
    let app = App::open(settings, false).await?;
    let report = records::maintenance::sweep(&app.vault, grace_ms, delete)
        .await
        .map_err(cli_error)?;
    let verb = if delete { "removed" } else { "would remove" };
    for key in &report.abandoned_intakes {
        println!("{verb} {key} (an intake that never committed)");
    }
    for key in &report.orphans {
        println!("{verb} {key} (no document points to it)");
    }
    for path in &report.staging_files {
        println!("{verb} {path} (a local write that was cut off)");
    }
    let n = report.abandoned_intakes.len() + report.orphans.len() + report.staging_files.len();
    println!(
        "{n} objects {verb}{}",
        if delete || n == 0 {
            ""
        } else {
            "; run with --delete to remove them"
        }
    );
    Ok(ExitCode::SUCCESS)
}

fn verify_copy(
    settings: &Settings,
    file: &std::path::Path,
    attestation: &str,
    jwks: Option<&std::path::Path>,
) -> Result<ExitCode, String> {
    let jws = match std::fs::read_to_string(attestation) {
        Ok(text) => text.trim().to_owned(),
        Err(_) => attestation.trim().to_owned(),
    };
    let jwks: serde_json::Value = match jwks {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            serde_json::from_str(&text).map_err(|e| format!("{}: not JSON: {e}", path.display()))?
        }
        None => Keyring::open(&settings.keys_dir, false)
            .map_err(|e| e.to_string())?
            .jwks(),
    };
    let keys: Vec<(String, jsonwebtoken::DecodingKey)> = jwks["keys"]
        .as_array()
        .ok_or("the JWKS has no `keys` array")?
        .iter()
        .filter_map(|k| {
            let kid = k["kid"].as_str()?;
            let x = k["x"].as_str()?;
            (k["kty"] == "OKP" && k["crv"] == "Ed25519")
                .then(|| {
                    jsonwebtoken::DecodingKey::from_ed_components(x)
                        .ok()
                        .map(|d| (kid.to_owned(), d))
                })
                .flatten()
        })
        .collect();
    let claims = match crate::crypto::attestation::check(&jws, &keys) {
        Ok(c) => c,
        Err(reason) => {
            println!("NOT VERIFIED: {reason}");
            return Ok(ExitCode::from(1));
        }
    };
    let bytes = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let digest = hex::encode(crate::crypto::sha256(&bytes));
    if digest != claims.sha256 || bytes.len() as i64 != claims.size {
        println!(
            "NOT VERIFIED: {} is not the attested document {} (digest or size differs)",
            file.display(),
            claims.document_id
        );
        return Ok(ExitCode::from(1));
    }
    println!(
        "VERIFIED: {} is document {} ({}), verified by {} at {} on {}",
        file.display(),
        claims.document_id,
        claims.doc_type,
        claims.verified_by,
        claims.office,
        claims.verified_at
    );
    Ok(ExitCode::SUCCESS)
}

async fn serve(settings: Settings) -> Result<ExitCode, String> {
    let listen = settings.listen;
    let grace_ms =
        i64::try_from(settings.sweep_grace_seconds.saturating_mul(1000)).unwrap_or(i64::MAX);
    let state = AppState(Arc::new(App::open(settings, true).await?));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let sweeper = state.clone();
    tokio::spawn(async move {
        loop {
            if let Err(e) =
                records::maintenance::sweep_abandoned(&sweeper.vault, grace_ms, true).await
            {
                tracing::warn!(error = ?e, "sweep failed; will retry");
            }
            tokio::time::sleep(Duration::from_secs(600)).await;
        }
    });
    tracing::info!(%listen, "hoso is listening");
    tracing::info!(
        "get an admin token with: cargo run --release -- token issue --role admin --sub YOUR-STAFF-ID \
         (or a clerk token with --role clerk --office YOUR-OFFICE)"
    );
    axum::serve(listener, crate::http::app(state))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| format!("server error: {e}"))?;
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    use super::parse_ttl;

    #[test]
    fn ttl_accepts_units_and_refuses_nonsense() {
        assert_eq!(parse_ttl("8h"), Ok(8 * 3600));
        assert_eq!(parse_ttl("90"), Ok(90));
        assert_eq!(parse_ttl("2d"), Ok(2 * 86_400));
        assert!(parse_ttl("0s").is_err());
        assert!(parse_ttl("8x").is_err());
        assert!(parse_ttl("365d").is_err());
    }
}
