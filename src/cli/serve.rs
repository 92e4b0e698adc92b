//! `hoso serve` and `hoso init`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use super::CliError;
use crate::app::{App, AppState};
use crate::config::Settings;
use crate::records;

/// Makes keys, database and storage, then exits.
pub async fn init(settings: Settings) -> Result<ExitCode, CliError> {
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

pub async fn run(settings: Settings) -> Result<ExitCode, CliError> {
    let listen = settings.listen;
    let grace_ms = settings.sweep_grace_ms();
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
            // A row put back in the database behind the vault's back is erased again within
            // this period, not only at the next start.
            let ledger = records::erasure::Source::Live;
            if let Err(e) = records::erasure::reapply(&sweeper.vault, ledger).await {
                tracing::warn!(error = %e.for_operator(), "re-applying the erasure ledger failed; will retry");
            }
            tokio::time::sleep(Duration::from_secs(600)).await;
        }
    });
    // Every second: the database's log checked against what this process committed (the
    // rollback alarm), and a checkpoint published from it when HOSO_CHECKPOINT_EVERY entries or
    // HOSO_CHECKPOINT_SECONDS have passed.
    let checkpointer = state.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            checkpoint_step(&checkpointer.vault).await;
        }
    });
    if state.settings.retention_every_hours > 0 {
        let every = Duration::from_secs(state.settings.retention_every_hours.saturating_mul(3600));
        tokio::spawn(retention_daily(state.clone(), every));
    }
    tracing::info!(%listen, "hoso is listening");
    say_how_to_sign_in(&state.vault);
    let grace = Duration::from_secs(state.settings.shutdown_grace_seconds);
    let limits = crate::http::server::ConnectionLimits {
        header_read_timeout: Duration::from_secs(state.settings.header_read_timeout_seconds),
        idle_timeout: Duration::from_secs(state.settings.idle_timeout_seconds),
        max_connections: state.settings.max_connections,
    };
    let app = crate::http::app(state.clone());
    let server = tokio::spawn(crate::http::server::serve(listener, app, limits));
    tokio::select! {
        ended = server => {
            ended.map_err(|e| format!("server task: {e}"))?;
            return Ok(ExitCode::SUCCESS);
        }
        () = shutdown_signal() => {}
    }
    drain(&state, grace).await;
    Ok(ExitCode::SUCCESS)
}

/// Where people sign in: through their identity provider where one is set, and by a link from
/// the command line always.
fn say_how_to_sign_in(vault: &records::Vault) {
    let sign_in = &vault.sign_in;
    for (kind, offered) in [
        ("staff", sign_in.staff.is_some()),
        ("citizen", sign_in.citizen.is_some()),
    ] {
        if offered {
            tracing::info!(
                "{kind} sign in through their identity provider at {}/",
                vault.console_url
            );
        }
    }
    tracing::info!(
        "get a token with: cargo run --release -- token issue --role clerk --sub YOUR-STAFF-ID \
         --office YOUR-OFFICE (or --role admin, auditor; a citizen's --sub is their national ID)"
    );
}

/// Retention, a minute after start and then every `every`; a run another process holds is
/// left to it.
async fn retention_daily(state: AppState, every: Duration) {
    tokio::time::sleep(Duration::from_secs(60)).await;
    loop {
        let vault = &state.vault;
        let now = crate::db::now_ms();
        let progress = |checked, erased| {
            tracing::info!(checked, erased, "retention run in progress");
        };
        match records::retention::run(vault, &vault.retention, now, false, progress).await {
            Ok(report) => tracing::info!(
                due = report.due.len(),
                erased = report.erased,
                held = report.held.len(),
                "retention run"
            ),
            Err(records::retention::RunError::Busy) => {
                tracing::info!("retention: another process is running it")
            }
            Err(records::retention::RunError::Failed(e)) => {
                tracing::warn!(error = %e.for_operator(), "retention run failed; will retry")
            }
        }
        tokio::time::sleep(every).await;
    }
}

/// One round of the checkpointer (see [`crate::audit::checkpoints`]).
async fn checkpoint_step(vault: &records::Vault) {
    let checkpoints = &vault.checkpoints;
    if let Err(e) = checkpoints.check_tree(&vault.db).await {
        tracing::warn!(error = ?e, "the audit log could not be checked against this process's mark");
        return;
    }
    if let Err(e) = checkpoints
        .publish_if_due(&vault.db, &vault.blobs, &vault.keys())
        .await
    {
        tracing::warn!(error = ?e, "could not publish an audit checkpoint; will retry");
    }
}

/// Publishes a checkpoint of everything this process committed, so no read it served is left
/// uncovered when it stops (the last of a drain).
async fn final_checkpoint(vault: &records::Vault) {
    let Some(mark) = vault.checkpoints.mark() else {
        return;
    };
    match vault
        .checkpoints
        .keep(&vault.db, &vault.blobs, &vault.keys(), mark)
        .await
    {
        Ok(()) => tracing::info!(entries = mark.size, "published the last checkpoint"),
        Err(e) => tracing::error!(error = ?e, "could not publish the last checkpoint"),
    }
}

/// Refuses new work (`/readyz` 503) and waits for requests in flight, at most `grace`; then
/// publishes a checkpoint of everything this process committed. What is still running then is
/// cut when the process exits: an intake cut midway commits nothing, and its object, if any,
/// is left to the sweeper.
async fn drain(state: &AppState, grace: Duration) {
    state.lifecycle.start_draining();
    let deadline = tokio::time::Instant::now() + grace;
    tracing::info!(
        in_flight = state.lifecycle.in_flight(),
        grace_seconds = grace.as_secs(),
        "draining: new requests are refused"
    );
    while state.lifecycle.in_flight() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cut = state.lifecycle.in_flight();
    if cut > 0 {
        tracing::warn!(cut, "grace period over: cutting requests still in flight");
    }
    final_checkpoint(&state.vault).await;
    tracing::info!("shut down");
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
}
