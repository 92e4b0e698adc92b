//! Wiring only: settings → tracing → the chosen subcommand.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

/// glibc's allocator, bounded for serving. The variables only work from the start, so `serve`
/// execs itself once with them set (same process, same pid); an operator's own values are left
/// alone.
///
/// - `MALLOC_ARENA_MAX`: glibc gives each thread that allocates an arena of its own, up to eight
///   per core, and keeps what is freed in it: under many concurrent copies the blocking
///   threads' arenas alone held a large share of the memory (the 64-reader benchmark). One
///   arena per core (two at least) bounds that.
/// - `MALLOC_MMAP_THRESHOLD_`: glibc raises its threshold for mapping a block on its own each
///   time such a block is freed, so after the first few 1 MiB copies every large buffer came
///   from the arenas, and what the copies' buffers left there stayed: after a run of copies
///   and intakes, 64 readers peaked far above idle. Fixed at 512 KiB (intake's 200 KiB
///   buffers stay in the arenas, where they are fast), a larger block is its own mapping,
///   returned when freed, and the peak fell markedly at the same copy rates. The
///   copies' buffers are kept for reuse anyway (`records::copy_buffers`), within their budget.
fn bound_malloc() {
    use std::os::unix::process::CommandExt;
    let serving = std::env::args_os().nth(1).is_some_and(|a| a == "serve");
    let arenas = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
    let settings = [
        ("MALLOC_ARENA_MAX", arenas.to_string()),
        ("MALLOC_MMAP_THRESHOLD_", (512 * 1024).to_string()),
    ];
    let unset: Vec<_> = settings
        .into_iter()
        .filter(|(name, _)| std::env::var_os(name).is_none())
        .collect();
    if !serving || unset.is_empty() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let err = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .envs(unset)
        .exec();
    // Only reached when exec failed: serve anyway, with glibc's defaults.
    eprintln!("hoso: could not bound malloc ({err}); serving with glibc's defaults");
}

fn main() -> ExitCode {
    bound_malloc();
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => {
            let code = runtime.block_on(run());
            // Its tasks (and the key store they hold) end before the PKCS#11 module does.
            drop(runtime);
            hoso::crypto::pkcs11::finalize_all();
            code
        }
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
