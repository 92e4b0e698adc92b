//! `hoso serve` and `hoso init`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::app::{App, AppState};
use crate::config::Settings;
use crate::records;

/// Makes keys, database and storage, then exits.
pub async fn init(settings: Settings) -> Result<ExitCode, String> {
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

pub async fn run(settings: Settings) -> Result<ExitCode, String> {
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
