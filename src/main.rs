//! Wiring only: settings → tracing → the chosen subcommand.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    // Everything hoso creates — database and its WAL, backups, stored bodies, keys — is for its
    // own user only: files 0600, directories 0700.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let filter =
        EnvFilter::try_from_env("HOSO_LOG").unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    // Logs go to stderr so that `hoso token issue` prints only the token on stdout.
    // Colours only on a terminal: a log file or journal gets plain text, never escape codes.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
    let cli = hoso::cli::Cli::parse();
    match hoso::cli::run(cli).await {
        Ok(code) => code,
        Err(message) => {
            eprintln!("hoso: {message}");
            ExitCode::from(2)
        }
    }
}
