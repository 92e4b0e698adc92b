//! Shared state and the router. `serve` lives in the CLI; tests build the same router and drive
//! it directly.

use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;

use crate::auth::TokenPolicy;
use crate::blob::BlobStore;
use crate::config::Settings;
use crate::crypto::keyring::Keyring;
use crate::db::Db;

pub struct App {
    /// Everything read from `HOSO_*`.
    pub settings: Settings,
    /// Metadata: documents, grants, audit log.
    pub db: Db,
    /// Sealed bodies.
    pub blobs: BlobStore,
    /// The key files, reloaded when another process rotates the master key.
    keys: RwLock<Arc<Keyring>>,
    /// `iss`/`aud` every token must carry.
    pub token_policy: TokenPolicy,
    /// Counters for `/metrics`.
    pub metrics: Metrics,
}

#[derive(Clone)]
pub struct AppState(pub Arc<App>);

impl Deref for AppState {
    type Target = App;
    fn deref(&self) -> &App {
        &self.0
    }
}

impl App {
    /// Opens keys, database (migrated) and object store. `create` makes missing keys, which only
    /// `serve` and `init` may do.
    pub async fn open(settings: Settings, create: bool) -> Result<Self, String> {
        if settings.test_fault.is_some() && !cfg!(debug_assertions) {
            return Err("HOSO_TEST_FAULT is for tests only; unset it".into());
        }
        let keys = Keyring::open(&settings.keys_dir, create).map_err(|e| e.to_string())?;
        let db = Db::connect(settings.database_url.expose()).await?;
        for version in keys.kek_versions() {
            crate::db::keys::register_kek(&db.pool, i64::from(version))
                .await
                .map_err(|e| format!("registering key versions: {e:?}"))?;
        }
        let blobs = BlobStore::from_url(&settings.storage_url)?;
        Ok(Self {
            token_policy: TokenPolicy {
                issuer: settings.token_issuer.clone(),
                audience: settings.token_audience.clone(),
            },
            settings,
            db,
            blobs,
            keys: RwLock::new(Arc::new(keys)),
            metrics: Metrics::default(),
        })
    }

    pub fn keys(&self) -> Arc<Keyring> {
        self.keys.read().expect("keyring lock").clone()
    }

    /// Re-reads the key files (after a rotation made by another process).
    pub fn reload_keys(&self) -> Result<Arc<Keyring>, String> {
        let fresh =
            Arc::new(Keyring::open(&self.settings.keys_dir, false).map_err(|e| e.to_string())?);
        *self.keys.write().expect("keyring lock") = fresh.clone();
        Ok(fresh)
    }
}

#[derive(Default)]
pub struct Metrics {
    pub responses_2xx: AtomicU64,
    pub responses_4xx: AtomicU64,
    pub responses_5xx: AtomicU64,
    pub documents_taken_in: AtomicU64,
    pub copies_served: AtomicU64,
    pub integrity_errors: AtomicU64,
    pub audit_failures: AtomicU64,
}

impl Metrics {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Prometheus text exposition format.
    pub fn render(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "# TYPE hoso_http_responses_total counter\n\
             hoso_http_responses_total{{class=\"2xx\"}} {}\n\
             hoso_http_responses_total{{class=\"4xx\"}} {}\n\
             hoso_http_responses_total{{class=\"5xx\"}} {}\n\
             # TYPE hoso_documents_taken_in_total counter\n\
             hoso_documents_taken_in_total {}\n\
             # TYPE hoso_copies_served_total counter\n\
             hoso_copies_served_total {}\n\
             # TYPE hoso_integrity_errors_total counter\n\
             hoso_integrity_errors_total {}\n\
             # TYPE hoso_audit_failures_total counter\n\
             hoso_audit_failures_total {}\n",
            get(&self.responses_2xx),
            get(&self.responses_4xx),
            get(&self.responses_5xx),
            get(&self.documents_taken_in),
            get(&self.copies_served),
            get(&self.integrity_errors),
            get(&self.audit_failures),
        )
    }
}

async fn count_responses(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let m = &state.metrics;
    match response.status().as_u16() {
        200..=299 => Metrics::inc(&m.responses_2xx),
        400..=499 => Metrics::inc(&m.responses_4xx),
        500..=599 => Metrics::inc(&m.responses_5xx),
        _ => {}
    }
    response
}

pub fn router(state: AppState) -> Router {
    crate::http::router(state.clone())
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_responses,
        ))
        .with_state(state)
}
