//! The `kek_usage` table: every master-key (KEK) version any process has loaded, how many data
//! keys it has ever wrapped (its nonce budget), and when it was retired.

use super::{DbError, Tx, col, db_err};

/// NIST SP 800-38D: a key used with random 96-bit nonces must wrap fewer than 2^32 messages.
pub const MAX_WRAPS_PER_KEK: i64 = (1 << 32) - 1;

pub struct KekUsage {
    pub version: i64,
    pub wraps: i64,
    pub retired_at: Option<i64>,
}

/// Makes sure a KEK version has its counter row (idempotent).
pub async fn register_kek<'e, E>(executor: E, version: i64) -> Result<(), DbError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query(
        "INSERT INTO kek_usage (version, wraps) VALUES ($1, 0) ON CONFLICT (version) DO NOTHING",
    )
    .bind(version)
    .execute(executor)
    .await
    .map_err(db_err("register kek"))?;
    Ok(())
}

/// Counts one wrap under `version` before it happens. False when the version is retired, unknown
/// to the database, or has reached its nonce budget.
pub async fn count_wrap(tx: &mut Tx, version: i64) -> Result<bool, DbError> {
    let result = sqlx::query(
        "UPDATE kek_usage SET wraps = wraps + 1 WHERE version = $1 AND retired_at IS NULL \
         AND wraps < $2",
    )
    .bind(version)
    .bind(MAX_WRAPS_PER_KEK)
    .execute(&mut **tx)
    .await
    .map_err(db_err("count kek wrap"))?;
    Ok(result.rows_affected() == 1)
}

/// The newest KEK version any process has registered: a process that knows only older ones
/// reloads its key files (rotation done through one process is seen by all).
pub async fn newest_version<'e, E>(executor: E) -> Result<i64, DbError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row = sqlx::query(
        "SELECT COALESCE(MAX(version), 0) AS v FROM kek_usage WHERE retired_at IS NULL",
    )
    .fetch_one(executor)
    .await
    .map_err(db_err("newest kek"))?;
    col(&row, "v")
}

pub async fn mark_retired(tx: &mut Tx, version: i64, at: i64) -> Result<(), DbError> {
    sqlx::query("UPDATE kek_usage SET retired_at = $1 WHERE version = $2")
        .bind(at)
        .bind(version)
        .execute(&mut **tx)
        .await
        .map_err(db_err("retire kek"))?;
    Ok(())
}

pub async fn usage<'e, E>(executor: E) -> Result<Vec<KekUsage>, DbError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let rows = sqlx::query("SELECT version, wraps, retired_at FROM kek_usage ORDER BY version")
        .fetch_all(executor)
        .await
        .map_err(db_err("kek usage"))?;
    rows.iter()
        .map(|r| {
            Ok(KekUsage {
                version: col(r, "version")?,
                wraps: col(r, "wraps")?,
                retired_at: col(r, "retired_at")?,
            })
        })
        .collect()
}
