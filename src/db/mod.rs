//! The metadata database. One set of queries serves SQLite and PostgreSQL through sqlx's `Any`
//! driver: SQL here is the common dialect (`$n` parameters, no `FOR UPDATE`, integers for times
//! and flags), and transactions that read then write start with a write, which takes SQLite's
//! write lock and a PostgreSQL row lock alike.

pub mod audit;
pub mod copy;
pub mod documents;
pub mod erasure;
pub mod grants;
pub mod holds;
pub mod kek_usage;
pub mod requests;
pub mod restrictions;
pub mod revoked_tokens;
pub mod schema;
pub mod script;
pub mod sessions;
pub mod sign_in_flows;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Connection, Executor};

use crate::config::DatabaseUrl;
use script::{Rows, Script};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Db {
    pub pool: AnyPool,
    pub backend: Backend,
    /// The SQLite database file (none for PostgreSQL, whose disk is the server's).
    file: Option<std::path::PathBuf>,
    /// Where the database is, for a connection of its own outside the pool (PostgreSQL's
    /// `COPY`, which sqlx's `Any` driver cannot run).
    url: DatabaseUrl,
    /// SQLite has one writer at a time and makes the others sleep-poll for its lock (long waits
    /// under a handful of clients). Queuing writers here instead, in process,
    /// hands the lock over at once. PostgreSQL queues on row locks itself: no gate.
    write_gate: Option<Arc<tokio::sync::Mutex<()>>>,
}

/// A write transaction on a connection of its own. It derefs to the connection, so queries run
/// on `&mut **tx`; on SQLite it also holds this process's writer gate until it ends.
///
/// `BEGIN`/`COMMIT` are issued here rather than by sqlx's transaction tracking, because after a
/// failed `COMMIT` (a full disk) SQLite may or may not have rolled back, and a tracker that
/// guesses wrong hands the next request a connection still inside the old transaction, where
/// its "commit" is only a savepoint release. So a transaction that did not commit never returns
/// its connection to the pool: the connection is closed, which rolls back whatever is left.
pub struct Tx {
    conn: sqlx::pool::PoolConnection<sqlx::Any>,
    backend: Backend,
    open: bool,
    _gate: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl std::ops::Deref for Tx {
    type Target = sqlx::AnyConnection;
    fn deref(&self) -> &sqlx::AnyConnection {
        &self.conn
    }
}

impl std::ops::DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut sqlx::AnyConnection {
        &mut self.conn
    }
}

impl Tx {
    /// A script for this transaction's database.
    pub fn script<'q>(&self) -> Script<'q> {
        Script::new(self.backend)
    }

    /// Runs `script` in this transaction, on SQLite in one hand-off to the connection's thread.
    /// If a statement fails, those before it stay done: the caller fails the transaction, whose
    /// connection is then discarded (see the type's doc).
    pub async fn run(
        &mut self,
        script: Script<'_>,
        fail: impl Fn(sqlx::Error) -> DbError,
    ) -> Result<Rows, DbError> {
        script.run(&mut self.conn).await.map_err(fail)
    }

    /// Commits. On failure the connection is discarded (see the type's doc) and nothing of the
    /// transaction is kept.
    pub async fn commit(self, context: &'static str) -> Result<(), DbError> {
        let script = self.script();
        self.commit_after(script, db_err(context)).await.map(|_| ())
    }

    /// Runs `script` and commits, on SQLite in one hand-off to the connection's thread. If any
    /// statement fails the connection is discarded and nothing of the transaction is kept.
    /// (A commit script should return no rows: a row that could not be read would be reported
    /// as a failure, though the commit after it ran.)
    pub async fn commit_after(
        mut self,
        mut script: Script<'_>,
        fail: impl Fn(sqlx::Error) -> DbError,
    ) -> Result<Rows, DbError> {
        script.push("COMMIT");
        match script.run(&mut self.conn).await {
            Ok(rows) => {
                self.open = false;
                Ok(rows)
            }
            Err(e) => {
                // Best effort; the connection is closed on drop either way (`open` stays set).
                let _ = self.conn.execute("ROLLBACK").await;
                Err(fail(e))
            }
        }
    }

    pub async fn rollback(mut self) -> Result<(), DbError> {
        self.conn
            .execute("ROLLBACK")
            .await
            .map_err(db_err("rollback"))?;
        self.open = false;
        Ok(())
    }
}

impl Drop for Tx {
    fn drop(&mut self) {
        if self.open {
            self.conn.close_on_drop();
        }
    }
}

/// One dialect's migrations, embedded in the binary. Applied versions are never edited; a change
/// is a new file in every dialect with the same number.
const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "initial",
        include_str!("../../migrations/sqlite/0001_initial.sql"),
    ),
    (
        2,
        "grantee_office",
        include_str!("../../migrations/sqlite/0002_grantee_office.sql"),
    ),
    (
        3,
        "grants_by_citizen",
        include_str!("../../migrations/sqlite/0003_grants_by_citizen.sql"),
    ),
    (
        4,
        "audit_tree",
        include_str!("../../migrations/sqlite/0004_audit_tree.sql"),
    ),
    (
        5,
        "signed_heads",
        include_str!("../../migrations/sqlite/0005_signed_heads.sql"),
    ),
    (
        6,
        "grant_seals",
        include_str!("../../migrations/sqlite/0006_grant_seals.sql"),
    ),
    (
        7,
        "sign_in",
        include_str!("../../migrations/sqlite/0007_sign_in.sql"),
    ),
    (
        8,
        "citizen_rights",
        include_str!("../../migrations/sqlite/0008_citizen_rights.sql"),
    ),
];
const POSTGRES_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "initial",
        include_str!("../../migrations/postgres/0001_initial.sql"),
    ),
    (
        2,
        "grantee_office",
        include_str!("../../migrations/postgres/0002_grantee_office.sql"),
    ),
    (
        3,
        "grants_by_citizen",
        include_str!("../../migrations/postgres/0003_grants_by_citizen.sql"),
    ),
    (
        4,
        "audit_tree",
        include_str!("../../migrations/postgres/0004_audit_tree.sql"),
    ),
    (
        5,
        "signed_heads",
        include_str!("../../migrations/postgres/0005_signed_heads.sql"),
    ),
    (
        6,
        "grant_seals",
        include_str!("../../migrations/postgres/0006_grant_seals.sql"),
    ),
    (
        7,
        "sign_in",
        include_str!("../../migrations/postgres/0007_sign_in.sql"),
    ),
    (
        8,
        "citizen_rights",
        include_str!("../../migrations/postgres/0008_citizen_rights.sql"),
    ),
];

/// Applies every migration not applied yet on `conn`, recording each in `hoso_migrations`. The
/// one way a schema is made: the live database's, and the expected one [`schema`] compares it
/// with.
async fn apply_migrations(
    conn: &mut sqlx::AnyConnection,
    migrations: &[(i64, &str, &str)],
) -> Result<(), sqlx::Error> {
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
    Ok(())
}

impl Db {
    /// Connects by URL (`sqlite://PATH` creates the file; `postgres://…`) and migrates.
    pub async fn connect(url: &DatabaseUrl, acquire_timeout: Duration) -> Result<Self, DbError> {
        install_default_drivers();
        let (backend, file) = match url {
            DatabaseUrl::Sqlite { file, .. } => (Backend::Sqlite, Some(file.clone())),
            DatabaseUrl::Postgres(_) => (Backend::Postgres, None),
        };
        let options = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 8 } else { 16 })
            // sqlx pings a connection each time it leaves the pool, to find one the server has
            // dropped. A SQLite connection is a file handle on a worker thread, which no server
            // can drop: the ping was a second round trip to that thread on every query (a
            // third of a small copy's thread hand-offs, `perf` on `scripts/bench`).
            .test_before_acquire(backend != Backend::Sqlite)
            .acquire_timeout(acquire_timeout);
        let options = if backend == Backend::Sqlite {
            options.after_connect(|conn, _meta| {
                Box::pin(async move {
                    // WAL lets reads run beside the one writer; FULL makes a commit survive power
                    // loss, which an acknowledged intake must.
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA synchronous = FULL").await?;
                    conn.execute("PRAGMA busy_timeout = 10000").await?;
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                    // What a statement overwrites or deletes is zeroed in the file, not just
                    // unlinked: an erased document's wrapped key must not linger in free pages.
                    conn.execute("PRAGMA secure_delete = ON").await?;
                    Ok(())
                })
            })
        } else {
            options
        };
        let pool = options
            .connect(url.expose())
            .await
            .map_err(DbError::unavailable("open the database"))?;
        let write_gate =
            (backend == Backend::Sqlite).then(|| Arc::new(tokio::sync::Mutex::new(())));
        let db = Self {
            pool,
            backend,
            file,
            url: url.clone(),
            write_gate,
        };
        db.migrate().await?;
        Ok(db)
    }

    async fn migrate(&self) -> Result<(), DbError> {
        let migrations = self.migrations();
        let fail = db_err("migrate the database");
        let mut conn = self.pool.acquire().await.map_err(&fail)?;
        // Several processes may start at once on one PostgreSQL database: one migrates, the
        // others wait here and then find every version applied. (SQLite serialises writers.)
        if self.backend == Backend::Postgres {
            conn.execute("SELECT pg_advisory_lock(7301730173)")
                .await
                .map_err(&fail)?;
        }
        let result = apply_migrations(&mut conn, migrations).await;
        if self.backend == Backend::Postgres {
            conn.execute("SELECT pg_advisory_unlock(7301730173)")
                .await
                .map_err(&fail)?;
        }
        result.map_err(&fail)
    }

    /// The migrations of this database's dialect.
    fn migrations(&self) -> &'static [(i64, &'static str, &'static str)] {
        match self.backend {
            Backend::Sqlite => SQLITE_MIGRATIONS,
            Backend::Postgres => POSTGRES_MIGRATIONS,
        }
    }

    /// After an erasure: on SQLite, every change is checkpointed into the database file and
    /// the write-ahead log emptied, so the pages that held the erased secrets (zeroed there by
    /// `secure_delete`) are not kept in the log either. Best effort: a busy database is tried
    /// again after the next erasure. PostgreSQL keeps old row versions until `VACUUM` reuses
    /// their space, which it does not zero: docs/design.md says so.
    pub async fn purge_freed(&self) {
        if self.backend != Backend::Sqlite {
            return;
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.pool)
            .await
        {
            tracing::warn!(error = %e, "could not empty the write-ahead log after an erasure");
        }
    }

    /// Begins a write transaction (every transaction here writes). On SQLite `BEGIN IMMEDIATE`
    /// takes the write lock at once, so a transaction never has to upgrade a stale read.
    pub async fn begin(&self) -> Result<Tx, DbError> {
        let (tx, _) = self
            .begin_with(self.script_begin(), db_err("begin transaction"))
            .await?;
        Ok(tx)
    }

    /// A script that begins a write transaction ([`Db::begin`]'s statement first), for
    /// [`Db::begin_with`] to run with the statements added to it.
    pub fn script_begin<'q>(&self) -> Script<'q> {
        let mut script = Script::new(self.backend);
        script.push(match self.backend {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN",
        });
        script
    }

    /// Begins a write transaction with the statements of `script` (from [`Db::script_begin`])
    /// run in it, on SQLite in one hand-off. If any fails, the connection is discarded.
    pub async fn begin_with(
        &self,
        script: Script<'_>,
        fail: impl Fn(sqlx::Error) -> DbError,
    ) -> Result<(Tx, Rows), DbError> {
        assert!(script.begins_transaction(), "a script from script_begin");
        let gate = match &self.write_gate {
            Some(gate) => Some(gate.clone().lock_owned().await),
            None => None,
        };
        let mut conn = self.pool.acquire().await.map_err(&fail)?;
        match script.run(&mut conn).await {
            Ok(rows) => Ok((
                Tx {
                    conn,
                    backend: self.backend,
                    open: true,
                    _gate: gate,
                },
                rows,
            )),
            Err(e) => {
                conn.close_on_drop();
                Err(fail(e))
            }
        }
    }

    /// A read-only transaction that sees the database as of its first read, whatever commits
    /// meanwhile (SQLite's WAL snapshot; PostgreSQL's REPEATABLE READ). For checks that read
    /// many rows that must agree with each other, such as the audit log's verification. It
    /// takes no write lock. End it with [`Tx::rollback`].
    pub async fn snapshot(&self) -> Result<Tx, DbError> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(db_err("begin snapshot"))?;
        let begin = match self.backend {
            Backend::Sqlite => "BEGIN DEFERRED",
            Backend::Postgres => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        };
        if let Err(e) = conn.execute(begin).await {
            conn.close_on_drop();
            return Err(DbError::classify("begin snapshot", e));
        }
        Ok(Tx {
            conn,
            backend: self.backend,
            open: true,
            _gate: None,
        })
    }

    /// A PostgreSQL connection of its own, outside the pool, made within the pool's acquire
    /// timeout (`None` on SQLite). Close it when done.
    pub async fn postgres_connection(&self) -> Option<Result<sqlx::PgConnection, DbError>> {
        let DatabaseUrl::Postgres(_) = &self.url else {
            return None;
        };
        let limit = self.pool.options().get_acquire_timeout();
        let connect = sqlx::PgConnection::connect(self.url.expose());
        Some(match tokio::time::timeout(limit, connect).await {
            Ok(connected) => connected.map_err(db_err("connect to the database")),
            Err(_) => Err(DbError::classify(
                "connect to the database",
                sqlx::Error::PoolTimedOut,
            )),
        })
    }

    /// The SQLite database file (`None` for PostgreSQL).
    pub fn sqlite_file(&self) -> Option<&std::path::Path> {
        self.file.as_deref()
    }

    /// Bytes free to this process on the filesystem holding the SQLite file (`None` for
    /// PostgreSQL, or when it cannot be told).
    pub fn free_bytes(&self) -> Option<u64> {
        let file = self.file.as_ref()?;
        let dir = match file.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => std::path::Path::new("."),
        };
        crate::blob::free_bytes(dir)
    }

    /// Whether the database answers within a second (`/readyz` must answer fast even when the
    /// database does not).
    pub async fn ping(&self) -> bool {
        let query = sqlx::query("SELECT 1").execute(&self.pool);
        matches!(
            tokio::time::timeout(Duration::from_secs(1), query).await,
            Ok(Ok(_))
        )
    }
}

/// What went wrong in the database, in the terms the layers above decide on. The cause stays
/// inside for the log; [`crate::error`] turns each kind into a status.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database cannot be reached, or dropped the connection (a restart): try again later.
    #[error("{context}: the database is unavailable: {source}")]
    Unavailable {
        context: &'static str,
        source: sqlx::Error,
    },
    /// The disk under the database is full: nothing more can be written until space is freed.
    #[error("{context}: the disk is full: {source}")]
    DiskFull {
        context: &'static str,
        source: sqlx::Error,
    },
    /// A named constraint of the schema refused the write.
    #[error("{context}: constraint {constraint} refused the write")]
    Constraint {
        context: &'static str,
        constraint: Constraint,
    },
    /// Anything else the database said.
    #[error("{context}: {source}")]
    Failed {
        context: &'static str,
        source: sqlx::Error,
    },
    /// A sealed row whose seal does not check: someone edited it outside the vault.
    #[error("{0} was altered outside the vault: its seal does not check")]
    Tampered(String),
    /// A stored value no version of hoso writes: the row was altered or is corrupt.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
}

/// The constraints the records service expects to meet and handles by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Constraint {
    /// `documents_one_current_scan`: the same scan is current once per citizen and type.
    DocumentsOneCurrentScan,
    /// Any other constraint (a programming error or a tampered schema).
    Other,
}

impl std::fmt::Display for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::DocumentsOneCurrentScan => "documents_one_current_scan",
            Self::Other => "(other)",
        })
    }
}

impl Constraint {
    /// PostgreSQL names the violated index; SQLite names its columns instead.
    fn of(err: &dyn sqlx::error::DatabaseError) -> Self {
        let by_name = err.constraint() == Some("documents_one_current_scan");
        let by_columns = err.message().contains(
            "UNIQUE constraint failed: documents.citizen_idx, documents.doc_type, documents.sha256",
        );
        if by_name || by_columns {
            Self::DocumentsOneCurrentScan
        } else {
            Self::Other
        }
    }
}

impl DbError {
    /// Sorts a failure by what the caller can do about it.
    pub fn classify(context: &'static str, source: sqlx::Error) -> Self {
        if is_disk_full(&source) {
            return Self::DiskFull { context, source };
        }
        match &source {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_) => Self::Unavailable { context, source },
            sqlx::Error::Database(db) if is_connection_lost(db.code().as_deref()) => {
                Self::Unavailable { context, source }
            }
            sqlx::Error::Database(db)
                if db.is_unique_violation()
                    || db.is_foreign_key_violation()
                    || db.is_check_violation() =>
            {
                Self::Constraint {
                    context,
                    constraint: Constraint::of(db.as_ref()),
                }
            }
            _ => Self::Failed { context, source },
        }
    }

    /// For writes whose failure means the dependency is down whatever the cause (the audit
    /// log): everything but a full disk becomes `Unavailable`.
    pub fn unavailable(context: &'static str) -> impl Fn(sqlx::Error) -> Self {
        move |source| {
            if is_disk_full(&source) {
                Self::DiskFull { context, source }
            } else {
                Self::Unavailable { context, source }
            }
        }
    }

    /// The same, for an error already classified.
    pub fn into_unavailable(self) -> Self {
        match self {
            Self::Failed { context, source } => Self::Unavailable { context, source },
            other => other,
        }
    }

    pub fn is_constraint(&self, which: Constraint) -> bool {
        matches!(self, Self::Constraint { constraint, .. } if *constraint == which)
    }
}

/// SQLite says `SQLITE_FULL` (13); PostgreSQL `53100 disk_full`; a file write `ENOSPC` (28).
fn is_disk_full(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) => {
            matches!(db.code().as_deref(), Some("13" | "53100"))
                || db.message().contains("database or disk is full")
        }
        sqlx::Error::Io(io) => io.raw_os_error() == Some(28),
        _ => false,
    }
}

/// PostgreSQL's classes 08 (connection exception) and 57P (operator intervention: shutdown,
/// crash, restart) mean this connection is gone, not that the query was wrong.
fn is_connection_lost(code: Option<&str>) -> bool {
    code.is_some_and(|c| c.starts_with("08") || c.starts_with("57P"))
}

/// Maps a failure of `context` to a [`DbError`] by what it means.
pub fn db_err(context: &'static str) -> impl Fn(sqlx::Error) -> DbError {
    move |e| DbError::classify(context, e)
}

pub fn now_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970");
    i64::try_from(now.as_millis()).expect("milliseconds fit in i64")
}

/// Reads a column in the one way every query module needs: a missing or mistyped column is a
/// programming error surfaced as a 500, not a panic.
pub fn col<T>(row: &sqlx::any::AnyRow, name: &str) -> Result<T, DbError>
where
    T: for<'r> sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    use sqlx::Row;
    row.try_get::<T, _>(name)
        .map_err(|e| DbError::Corrupt(format!("column {name}: {e}")))
}

/// A row's columns by name, from index `at` on: a joined query holds one table's columns after
/// another's, and both tables have an `id`.
pub struct Columns<'r> {
    row: &'r sqlx::any::AnyRow,
    at: usize,
}

impl<'r> Columns<'r> {
    pub fn new(row: &'r sqlx::any::AnyRow, at: usize) -> Self {
        Self { row, at }
    }

    pub fn get<T>(&self, name: &str) -> Result<T, DbError>
    where
        T: for<'v> sqlx::Decode<'v, sqlx::Any> + sqlx::Type<sqlx::Any>,
    {
        use sqlx::{Column, Row};
        let index = self.row.columns()[self.at.min(self.row.len())..]
            .iter()
            .position(|c| c.name() == name)
            .ok_or_else(|| DbError::Corrupt(format!("column {name} is missing")))?;
        self.row
            .try_get::<T, _>(self.at + index)
            .map_err(|e| DbError::Corrupt(format!("column {name}: {e}")))
    }
}

/// Parses a stored enum, treating an unknown value as corruption.
/// A stored blind index (hex); anything else was not written by hoso.
pub fn citizen_index(text: &str) -> Result<crate::crypto::CitizenIndex, DbError> {
    crate::crypto::CitizenIndex::from_hex(text)
        .ok_or_else(|| DbError::Corrupt("a stored citizen index is not 32 hex bytes".into()))
}

pub fn parse_col<T: FromStr>(text: &str) -> Result<T, DbError> {
    text.parse()
        .map_err(|_| DbError::Corrupt(format!("unknown stored value {text:?}")))
}
