//! Wiring only: settings → tracing → the chosen subcommand.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

/// glibc gives each thread that allocates an arena of its own, up to eight per core, and keeps
/// what is freed in it: under many concurrent copies the blocking threads' arenas alone held
/// tens of MiB (the 64-reader benchmark, `scripts/bench`). One arena per core (two at least)
/// bounds that; the variable only works from the start, so `serve` execs itself once with it
/// set (same process, same pid). An operator's own `MALLOC_ARENA_MAX` is left alone.
fn bound_malloc_arenas() {
    use std::os::unix::process::CommandExt;
    let serving = std::env::args_os().nth(1).is_some_and(|a| a == "serve");
    if !serving || std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let arenas = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
    let err = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env("MALLOC_ARENA_MAX", arenas.to_string())
        .exec();
    // Only reached when exec failed: serve anyway, with glibc's defaults.
    eprintln!("hoso: could not bound malloc arenas ({err}); serving with glibc's defaults");
}

fn main() -> ExitCode {
    bound_malloc_arenas();
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(run()),
        Err(e) => {
            eprintln!("hoso: cannot start the async runtime: {e}");
            ExitCode::from(1)
        }
    }
}

async fn run() -> ExitCode {
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
