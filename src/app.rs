//! Shared state: the settings and the records service they open. The router that serves it is
//! [`crate::http::app`]; `serve` lives in the CLI; tests build the same router and drive it.

use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::audit::checkpoints::{CheckpointPolicy, Publisher};
use crate::auth::TokenPolicy;
use crate::blob::BlobStore;
use crate::config::{DatabaseUrl, Settings, StorageUrl};
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

/// Why the vault could not start, by what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// A setting that cannot be used as given.
    #[error("{0}")]
    Setting(String),
    /// The key files (missing, unreadable, too open).
    #[error("keys: {0}")]
    Keys(String),
    /// Opening, migrating or first writing the database.
    #[error("{0}")]
    Database(#[from] crate::db::DbError),
    /// Setting up the object store.
    #[error("{0}")]
    Storage(#[from] crate::blob::BlobError),
    /// A file or directory whose mode could not be made owner-only.
    #[error("{0}")]
    Files(String),
    /// The database holds objects hoso did not make (a planted trigger, view, rule…), or lacks
    /// ones it did: nothing is served from it.
    #[error(
        "the database's schema is not the one hoso makes, so it may act behind hoso's back: {}; \
         remove what is not hoso's (or restore a clean backup) before starting",
        .0.join("; ")
    )]
    Schema(Vec<String>),
    /// The audit log could not be brought up to date (its Merkle tree).
    #[error("the audit log: {0}")]
    AuditLog(String),
    /// The erasure ledger could not be read or re-applied: a vault that might serve an erased
    /// document does not serve at all.
    #[error(
        "the erasure ledger could not be re-applied, so erased documents might be served: {0}; \
         nothing is served until it can be"
    )]
    Ledger(String),
}

impl App {
    /// Opens keys, database (migrated) and object store. `create` makes missing keys, which only
    /// `serve` and `init` may do.
    pub async fn open(settings: Settings, create: bool) -> Result<Self, StartupError> {
        if settings.test_fault.is_some() && !cfg!(debug_assertions) {
            return Err(StartupError::Setting(
                "HOSO_TEST_FAULT is for tests only; unset it".into(),
            ));
        }
        check_modes(&settings)?;
        let hsm = match settings.hsm().map_err(StartupError::Setting)? {
            Some(hsm) => Some(Arc::new(
                crate::crypto::pkcs11::Hsm::open(&hsm, &settings.keys_dir, create)
                    .map_err(|e| StartupError::Keys(e.to_string()))?,
            )),
            None => None,
        };
        let keys = Keyring::open_with(&settings.keys_dir, create, hsm)
            .map_err(|e| StartupError::Keys(e.to_string()))?;
        let db = open_database(&settings, &keys).await?;
        let blobs = BlobStore::from_url(&settings.storage_url, &s3_limits(&settings))?;
        let metrics = Arc::new(Metrics::default());
        let checkpoints = open_audit_log(&settings, &db, &blobs, &keys, &metrics).await?;
        let sign_in = crate::records::sign_in::SignIn::from_settings(&settings.sign_in)
            .map_err(StartupError::Setting)?;
        let (retention, deadlines) = citizen_rights(&settings)?;
        let opened = Opened {
            db,
            blobs,
            keys,
            metrics,
            checkpoints,
            sign_in,
            retention,
            deadlines,
        };
        let vault = vault(&settings, opened);
        if create {
            // `serve` (and `init`): every erasure in the ledger holds before the first request.
            let done =
                crate::records::erasure::reapply(&vault, crate::records::erasure::Source::Live)
                    .await
                    .map_err(|e| StartupError::Ledger(e.for_operator()))?;
            if let Some(why) = done.unreadable() {
                return Err(StartupError::Ledger(why));
            }
        }
        Ok(Self {
            settings,
            vault,
            lifecycle: Lifecycle::default(),
        })
    }
}

/// The database, migrated, checked to hold hoso's schema only, and brought up to the keys.
async fn open_database(settings: &Settings, keys: &Keyring) -> Result<Db, StartupError> {
    let db = Db::connect(
        &settings.database_url,
        Duration::from_secs(settings.db_acquire_timeout_seconds),
    )
    .await?;
    let foreign = crate::db::schema::differences(&db).await?;
    if !foreign.is_empty() {
        return Err(StartupError::Schema(foreign));
    }
    for version in keys.kek_versions() {
        crate::db::kek_usage::register_kek(&db.pool, i64::from(version)).await?;
    }
    let newest = keys.current_kek().version;
    let registered = crate::db::kek_usage::usage(&db.pool).await?;
    if let Some(u) = registered
        .iter()
        .find(|u| u.retired_at.is_none() && u.version > i64::from(newest))
    {
        // Numbering a new version from what this process sees would make a second key of
        // the same version: one store's rows would not open under the other's.
        return Err(StartupError::Keys(format!(
            "master key version {} is in use but not among these keys (is it in a hardware \
             security module? set HOSO_KEY_STORE=pkcs11 and its HOSO_PKCS11_* settings)",
            u.version
        )));
    }
    if keys.grants_await_seal {
        seal_earlier_grants(&db, keys).await?;
    }
    Ok(db)
}

/// The audit log's Merkle tree completed, and its checkpoint publisher started from the
/// database's head (raising the rollback alarm if the published checkpoints are ahead).
async fn open_audit_log(
    settings: &Settings,
    db: &Db,
    blobs: &BlobStore,
    keys: &Keyring,
    metrics: &Arc<Metrics>,
) -> Result<Arc<Publisher>, StartupError> {
    let built = crate::audit::build_missing_tree(db, metrics)
        .await
        .map_err(|e| StartupError::AuditLog(format!("building its Merkle tree: {e}")))?;
    if built > 0 {
        tracing::info!(
            entries = built,
            "built the audit Merkle tree for earlier entries"
        );
    }
    let checkpoints = Arc::new(Publisher::new(
        CheckpointPolicy {
            origin: settings.audit_origin.clone(),
            every: settings.checkpoint_every,
            seconds: settings.checkpoint_seconds,
            strict: settings.audit_strict,
        },
        metrics.clone(),
    ));
    checkpoints
        .start_from(db, blobs, keys)
        .await
        .map_err(|e| StartupError::AuditLog(format!("reading its head: {e}")))?;
    Ok(checkpoints)
}

/// The retention rules and the deadlines of citizens' requests, from their settings and files.
fn citizen_rights(
    settings: &Settings,
) -> Result<
    (
        crate::records::retention::Rules,
        crate::records::requests::Deadlines,
    ),
    StartupError,
> {
    let retention = crate::records::retention::Rules::load(settings.retention_file.as_deref())
        .map_err(StartupError::Setting)?;
    let deadlines = crate::records::requests::Deadlines {
        holidays: crate::records::calendar::Holidays::load(settings.holidays_file.as_deref())
            .map_err(StartupError::Setting)?,
        answer_days: settings.request_answer_days,
        carry_out_days: settings.request_carry_out_days,
        extension_days: settings.request_extension_days,
    };
    Ok((retention, deadlines))
}

/// Seals the grants of a vault from before grants were sealed, as they are, once: only while
/// the marker made with the grant-seal key is there (it goes once they are sealed), so a seal
/// removed later by someone holding the database is never restored here; that grant stays
/// refused.
async fn seal_earlier_grants(db: &Db, keys: &Keyring) -> Result<(), StartupError> {
    let mut tx = db.begin().await?;
    let sealed = crate::db::grants::seal_unsealed(&mut tx, keys).await?;
    tx.commit("seal earlier grants").await?;
    keys.grants_sealed()
        .map_err(|e| StartupError::Keys(e.to_string()))?;
    if sealed > 0 {
        tracing::warn!(
            grants = sealed,
            "sealed the grants made before grants were sealed"
        );
    }
    Ok(())
}

fn s3_limits(settings: &Settings) -> crate::blob::S3Limits {
    crate::blob::S3Limits {
        timeout: Duration::from_secs(settings.s3_timeout_seconds),
        connect_timeout: Duration::from_secs(settings.s3_connect_timeout_seconds),
        retries: settings.s3_retries,
        retry_timeout: Duration::from_secs(settings.s3_retry_timeout_seconds),
    }
}

/// What [`App::open`] opened and read, for the records service.
struct Opened {
    db: Db,
    blobs: BlobStore,
    keys: Keyring,
    metrics: Arc<Metrics>,
    checkpoints: Arc<Publisher>,
    sign_in: crate::records::sign_in::SignIn,
    retention: crate::records::retention::Rules,
    deadlines: crate::records::requests::Deadlines,
}

/// The records service over what [`App::open`] opened, with the settings it enforces.
fn vault(settings: &Settings, o: Opened) -> Vault {
    Vault {
        log: crate::audit::writer::LogWriter::start(crate::audit::writer::Sink {
            db: o.db.clone(),
            metrics: o.metrics.clone(),
            checkpoints: o.checkpoints.clone(),
            blobs: o.blobs.clone(),
        }),
        db: o.db,
        blobs: o.blobs,
        keys: KeyCache::new(&settings.keys_dir, o.keys),
        token_policy: TokenPolicy {
            issuer: settings.token_issuer.clone(),
            audience: settings.token_audience.clone(),
        },
        verified_tokens: crate::auth::VerifiedTokens::default(),
        limits: Limits {
            max_upload_bytes: settings.max_upload_bytes,
            card_max_bytes: settings.card_max_bytes,
            card: crate::card::CardLimits {
                max_pixels: settings.card_max_pixels,
                ..Default::default()
            },
            card_read: Duration::from_secs(settings.card_read_seconds),
        },
        metrics: o.metrics,
        copy_buffers: crate::records::copy_buffers::CopyBuffers::new(settings.read_memory_bytes),
        refusals: crate::records::RefusalLimiter::new(settings.refusals_per_minute),
        console_url: settings.console_url(),
        card_reads: Arc::new(tokio::sync::Semaphore::new(
            std::thread::available_parallelism().map_or(1, |n| n.get()),
        )),
        sign_in: o.sign_in,
        checkpoints: o.checkpoints,
        retention: Arc::new(o.retention),
        deadlines: o.deadlines,
        test_fault: settings.test_fault,
    }
}

/// Refuses key files others can read (as ssh does), and tightens what hoso made too loosely
/// before (an older version, a hand-made `keys/`, a restore): the keys directory, the SQLite
/// file and the local storage directory become owner-only, with a warning naming each.
fn check_modes(settings: &Settings) -> Result<(), StartupError> {
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
                return Err(StartupError::Keys(format!(
                    "{} can be read by other users (mode {:o}); a key file must be 0600: \
                     run `chmod 600 {}` and consider the key exposed",
                    path.display(),
                    mode(&path).unwrap_or_default(),
                    path.display()
                )));
            }
        }
    }
    let mut loose = vec![(settings.keys_dir.clone(), 0o700)];
    if let DatabaseUrl::Sqlite { file, .. } = &settings.database_url {
        loose.push((file.clone(), 0o600));
    }
    if let StorageUrl::Local(dir) = &settings.storage_url {
        loose.push((dir.clone(), 0o700));
    }
    for (path, wanted) in loose {
        if let Some(m) = mode(&path).filter(|m| m & 0o077 != 0) {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(wanted)).map_err(
                |e| {
                    StartupError::Files(format!(
                        "{} has mode {m:o} and cannot be tightened: {e}",
                        path.display()
                    ))
                },
            )?;
            tracing::warn!(path = %path.display(), was = format!("{m:o}"), now = format!("{wanted:o}"), "tightened a mode others could read through");
        }
    }
    Ok(())
}
