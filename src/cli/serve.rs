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
            tokio::time::sleep(Duration::from_secs(600)).await;
        }
    });
    // Signed checkpoints of the audit log, published to the object store: checked every
    // second, made when HOSO_CHECKPOINT_EVERY entries or HOSO_CHECKPOINT_SECONDS have passed.
    let checkpointer = state.clone();
    tokio::spawn(async move {
        let vault = &checkpointer.vault;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if let Err(e) = crate::audit::checkpoints::publish_if_due(
                &vault.db,
                &vault.blobs,
                &vault.keys(),
                &vault.checkpoints,
            )
            .await
            {
                tracing::warn!(error = ?e, "could not publish an audit checkpoint; will retry");
            }
        }
    });
    tracing::info!(%listen, "hoso is listening");
    tracing::info!(
        "get a token with: cargo run --release -- token issue --role clerk --sub YOUR-STAFF-ID \
         --office YOUR-OFFICE (or --role admin, auditor; a citizen's --sub is their national ID)"
    );
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

/// Refuses new work (`/readyz` 503) and waits for requests in flight, at most `grace`. What is
/// still running then is cut when the process exits: an intake cut midway commits nothing, and
/// its object, if any, is left to the sweeper.
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
