//! The metadata database. One set of queries serves SQLite and PostgreSQL through sqlx's `Any`
//! driver: SQL here is the common dialect (`$n` parameters, no `FOR UPDATE`, integers for times
//! and flags), and transactions that read then write start with a write, which takes SQLite's
//! write lock and a PostgreSQL row lock alike.

pub mod audit;
pub mod documents;
pub mod grants;
pub mod keys;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Connection, Executor};

use crate::error::ApiError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Db {
    pub pool: AnyPool,
    pub backend: Backend,
    /// SQLite has one writer at a time and makes the others sleep-poll for its lock (waits of
    /// over a second were measured under 8 clients). Queuing writers here instead, in process,
    /// hands the lock over at once. PostgreSQL queues on row locks itself: no gate.
    write_gate: Option<Arc<tokio::sync::Mutex<()>>>,
}

/// A write transaction. It derefs to the connection, so queries run on `&mut **tx`; on SQLite
/// it also holds this process's writer gate until it commits, rolls back or is dropped.
pub struct Tx {
    inner: sqlx::Transaction<'static, sqlx::Any>,
    _gate: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl std::ops::Deref for Tx {
    type Target = sqlx::AnyConnection;
    fn deref(&self) -> &sqlx::AnyConnection {
        &self.inner
    }
}

impl std::ops::DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut sqlx::AnyConnection {
        &mut self.inner
    }
}

impl Tx {
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.inner.commit().await
    }

    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        self.inner.rollback().await
    }
}

/// One dialect's migrations, embedded in the binary. Applied versions are never edited; a change
/// is a new file in every dialect with the same number.
const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "initial",
    include_str!("../../migrations/sqlite/0001_initial.sql"),
)];
const POSTGRES_MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "initial",
    include_str!("../../migrations/postgres/0001_initial.sql"),
)];

impl Db {
    /// Connects by URL (`sqlite://PATH` creates the file; `postgres://…`) and migrates.
    pub async fn connect(url: &str) -> Result<Self, String> {
        install_default_drivers();
        let (backend, url) = if let Some(rest) = url.strip_prefix("sqlite:") {
            let url = if rest.contains('?') {
                url.to_owned()
            } else {
                format!("sqlite:{rest}?mode=rwc")
            };
            (Backend::Sqlite, url)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, url.to_owned())
        } else {
            return Err("HOSO_DATABASE_URL must start with sqlite:// or postgres://".into());
        };
        let options = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 8 } else { 16 })
            .acquire_timeout(Duration::from_secs(10));
        let options = if backend == Backend::Sqlite {
            options.after_connect(|conn, _meta| {
                Box::pin(async move {
                    // WAL lets reads run beside the one writer; FULL makes a commit survive power
                    // loss, which an acknowledged intake must.
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA synchronous = FULL").await?;
                    conn.execute("PRAGMA busy_timeout = 10000").await?;
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                    Ok(())
                })
            })
        } else {
            options
        };
        let pool = options
            .connect(&url)
            .await
            .map_err(|e| format!("cannot open the database: {e}"))?;
        let write_gate =
            (backend == Backend::Sqlite).then(|| Arc::new(tokio::sync::Mutex::new(())));
        let db = Self {
            pool,
            backend,
            write_gate,
        };
        db.migrate().await?;
        Ok(db)
    }

    async fn migrate(&self) -> Result<(), String> {
        let migrations = match self.backend {
            Backend::Sqlite => SQLITE_MIGRATIONS,
            Backend::Postgres => POSTGRES_MIGRATIONS,
        };
        let fail = |e: sqlx::Error| format!("migration failed: {e}");
        let mut conn = self.pool.acquire().await.map_err(fail)?;
        // Several processes may start at once on one PostgreSQL database: one migrates, the
        // others wait here and then find every version applied. (SQLite serialises writers.)
        if self.backend == Backend::Postgres {
            conn.execute("SELECT pg_advisory_lock(7301730173)")
                .await
                .map_err(fail)?;
        }
        let result = async {
            conn.execute(
                "CREATE TABLE IF NOT EXISTS hoso_migrations \
                 (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
            )
            .await?;
            for (version, name, sql) in migrations {
                let mut tx = conn.begin().await?;
                let claimed = sqlx::query(
                    "INSERT INTO hoso_migrations (version, name, applied_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (version) DO NOTHING",
                )
                .bind(*version)
                .bind(*name)
                .bind(now_ms())
                .execute(&mut *tx)
                .await?;
                if claimed.rows_affected() == 1 {
                    tx.execute(sqlx::raw_sql(sql)).await?;
                }
                tx.commit().await?;
            }
            Ok::<(), sqlx::Error>(())
        }
        .await;
        if self.backend == Backend::Postgres {
            conn.execute("SELECT pg_advisory_unlock(7301730173)")
                .await
                .map_err(fail)?;
        }
        result.map_err(fail)
    }

    /// Begins a write transaction (every transaction here writes).
    pub async fn begin(&self) -> Result<Tx, ApiError> {
        let gate = match &self.write_gate {
            Some(gate) => Some(gate.clone().lock_owned().await),
            None => None,
        };
        let inner = self
            .pool
            .begin()
            .await
            .map_err(db_err("begin transaction"))?;
        Ok(Tx { inner, _gate: gate })
    }

    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }
}

/// Maps a database failure to the error the client sees: unreachable means 503, anything else a
/// 500. Both keep the cause for the log only.
pub fn db_err(context: &'static str) -> impl Fn(sqlx::Error) -> ApiError {
    move |e| match e {
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
            ApiError::unavailable(context, e)
        }
        other => ApiError::internal(context, other),
    }
}

pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .is_some_and(|e| e.is_unique_violation())
}

pub fn now_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970");
    i64::try_from(now.as_millis()).expect("milliseconds fit in i64")
}

/// Reads a column in the one way every query module needs: a missing or mistyped column is a
/// programming error surfaced as a 500, not a panic.
pub fn col<T>(row: &sqlx::any::AnyRow, name: &str) -> Result<T, ApiError>
where
    T: for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    use sqlx::Row;
    row.try_get::<T, _>(name)
        .map_err(|e| ApiError::internal("decode column", e))
}

/// Parses a stored enum, treating an unknown value as corruption.
pub fn parse_col<T: FromStr>(text: &str) -> Result<T, ApiError> {
    text.parse()
        .map_err(|_| ApiError::Internal(format!("unknown stored value {text:?}")))
}
