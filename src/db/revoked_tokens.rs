//! The `revoked_tokens` table: `jti`s refused until their token expires.

use super::{DbError, db_err};

pub async fn is_token_revoked<'e, E>(executor: E, jti: &str) -> Result<bool, DbError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row = sqlx::query("SELECT 1 AS one FROM revoked_tokens WHERE jti = $1")
        .bind(jti)
        .fetch_optional(executor)
        .await
        .map_err(db_err("check revoked token"))?;
    Ok(row.is_some())
}

pub async fn revoke_token<'e, E>(executor: E, jti: &str, expires_at: i64) -> Result<(), DbError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query(
        "INSERT INTO revoked_tokens (jti, expires_at) VALUES ($1, $2) ON CONFLICT (jti) DO NOTHING",
    )
    .bind(jti)
    .bind(expires_at)
    .execute(executor)
    .await
    .map_err(db_err("revoke token"))?;
    Ok(())
}

/// A revoked token past its `exp` is refused anyway; its row can go.
pub async fn forget_expired_revocations<'e, E>(executor: E, now_seconds: i64) -> Result<(), DbError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query("DELETE FROM revoked_tokens WHERE expires_at < $1")
        .bind(now_seconds)
        .execute(executor)
        .await
        .map_err(db_err("forget expired revocations"))?;
    Ok(())
}
