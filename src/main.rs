//! Wiring only: settings → tracing → the chosen subcommand.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
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
