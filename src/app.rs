//! Shared state: the settings and the records service they open. The router that serves it is
//! [`crate::http::app`]; `serve` lives in the CLI; tests build the same router and drive it.

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::auth::TokenPolicy;
use crate::blob::BlobStore;
use crate::config::Settings;
use crate::crypto::keyring::{KeyCache, Keyring};
use crate::db::Db;
use crate::metrics::Metrics;
use crate::records::{Limits, Vault};

pub struct App {
    /// Everything read from `HOSO_*`.
    pub settings: Settings,
    /// The records service and everything it works with.
    pub vault: Vault,
    /// Serving or draining for shutdown, and how many requests are in flight.
    pub lifecycle: Lifecycle,
}

/// A process's life as its balancer sees it. On SIGTERM it starts draining: `/readyz` answers
/// 503 at once, new requests are refused with 503, requests in flight are given the grace
/// period to finish.
#[derive(Default)]
pub struct Lifecycle {
    draining: AtomicBool,
    in_flight: AtomicUsize,
}

impl Lifecycle {
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Counts one request as in flight until the guard is dropped.
    pub fn enter(state: &AppState) -> InFlight {
        state.lifecycle.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(state.clone())
    }
}

/// One request in flight (see [`Lifecycle::enter`]).
pub struct InFlight(AppState);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.lifecycle.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
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
        check_modes(&settings)?;
        let keys = Keyring::open(&settings.keys_dir, create).map_err(|e| e.to_string())?;
        let db = Db::connect(
            settings.database_url.expose(),
            std::time::Duration::from_secs(settings.db_acquire_timeout_seconds),
        )
        .await?;
        for version in keys.kek_versions() {
            crate::db::kek_usage::register_kek(&db.pool, i64::from(version))
                .await
                .map_err(|e| format!("registering key versions: {e}"))?;
        }
        let s3_limits = crate::blob::S3Limits {
            timeout: std::time::Duration::from_secs(settings.s3_timeout_seconds),
            connect_timeout: std::time::Duration::from_secs(settings.s3_connect_timeout_seconds),
            retries: settings.s3_retries,
            retry_timeout: std::time::Duration::from_secs(settings.s3_retry_timeout_seconds),
        };
        let blobs = BlobStore::from_url(&settings.storage_url, &s3_limits)?;
        let metrics = Arc::new(Metrics::default());
        let built = crate::audit::build_missing_tree(&db, &metrics)
            .await
            .map_err(|e| format!("building the audit log's Merkle tree: {e}"))?;
        if built > 0 {
            tracing::info!(
                entries = built,
                "built the audit Merkle tree for earlier entries"
            );
        }
        let log = crate::audit::writer::LogWriter::start(db.clone(), metrics.clone());
        let vault = Vault {
            log,
            db,
            blobs,
            keys: KeyCache::new(&settings.keys_dir, keys),
            token_policy: TokenPolicy {
                issuer: settings.token_issuer.clone(),
                audience: settings.token_audience.clone(),
            },
            verified_tokens: crate::auth::VerifiedTokens::default(),
            limits: Limits {
                max_upload_bytes: settings.max_upload_bytes,
            },
            metrics,
            copy_buffers: crate::records::copy_buffers::CopyBuffers::new(
                settings.read_memory_bytes,
            ),
            refusals: crate::records::RefusalLimiter::new(settings.refusals_per_minute),
            console_url: settings.console_url(),
            checkpoints: crate::audit::checkpoints::CheckpointPolicy {
                origin: settings.audit_origin.clone(),
                every: settings.checkpoint_every,
                seconds: settings.checkpoint_seconds,
            },
            test_fault: settings.test_fault,
        };
        Ok(Self {
            settings,
            vault,
            lifecycle: Lifecycle::default(),
        })
    }
}

/// Refuses key files others can read (as ssh does), and tightens what hoso made too loosely
/// before (an older version, a hand-made `keys/`, a restore): the keys directory, the SQLite
/// file and the local storage directory become owner-only, with a warning naming each.
fn check_modes(settings: &Settings) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &std::path::Path| {
        std::fs::metadata(path)
            .ok()
            .map(|m| m.permissions().mode() & 0o777)
    };
    if let Ok(entries) = std::fs::read_dir(&settings.keys_dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_file() && mode(&path).is_some_and(|m| m & 0o077 != 0) {
                return Err(format!(
                    "{} can be read by other users (mode {:o}); a key file must be 0600: \
                     run `chmod 600 {}` and consider the key exposed",
                    path.display(),
                    mode(&path).unwrap_or_default(),
                    path.display()
                ));
            }
        }
    }
    let mut loose = vec![(settings.keys_dir.clone(), 0o700)];
    if let Ok(crate::config::DatabaseUrl::Sqlite { file, .. }) =
        crate::config::DatabaseUrl::parse(settings.database_url.expose())
    {
        loose.push((file, 0o600));
    }
    if let Ok(crate::config::StorageUrl::Local(dir)) =
        crate::config::StorageUrl::parse(&settings.storage_url)
    {
        loose.push((dir, 0o700));
    }
    for (path, wanted) in loose {
        if let Some(m) = mode(&path).filter(|m| m & 0o077 != 0) {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(wanted)).map_err(
                |e| {
                    format!(
                        "{} has mode {m:o} and cannot be tightened: {e}",
                        path.display()
                    )
                },
            )?;
            tracing::warn!(path = %path.display(), was = format!("{m:o}"), now = format!("{wanted:o}"), "tightened a mode others could read through");
        }
    }
    Ok(())
}
