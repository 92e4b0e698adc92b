//! The `sessions` table: tokens hoso issued to people (sign-ins and `hoso token issue`), for the
//! admin's list of live sessions. Whether a token is refused is `revoked_tokens`' alone.

use super::{DbError, Tx, col, db_err, parse_col};
use crate::domain::{Role, SessionVia};

/// One issued session. `actor` is as the audit log names the person.
pub struct SessionRow {
    pub jti: String,
    pub role: Role,
    pub actor: String,
    pub office: String,
    pub via: SessionVia,
    pub issued_at: i64,
    pub expires_at: i64,
}

/// Records an issued session, and forgets those that have expired.
pub async fn insert(tx: &mut Tx, s: &SessionRow, now: i64) -> Result<(), DbError> {
    sqlx::query("DELETE FROM sessions WHERE expires_at < $1")
        .bind(now)
        .execute(&mut **tx)
        .await
        .map_err(db_err("forget expired sessions"))?;
    sqlx::query(
        "INSERT INTO sessions (jti, role, actor, office, via, issued_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&s.jti)
    .bind(s.role.as_str())
    .bind(&s.actor)
    .bind(&s.office)
    .bind(s.via.as_str())
    .bind(s.issued_at)
    .bind(s.expires_at)
    .execute(&mut **tx)
    .await
    .map_err(db_err("record a session"))?;
    Ok(())
}

const COLUMNS: &str = "jti, role, actor, office, via, issued_at, expires_at";

fn from_row(r: &sqlx::any::AnyRow) -> Result<SessionRow, DbError> {
    Ok(SessionRow {
        jti: col(r, "jti")?,
        role: parse_col(&col::<String>(r, "role")?)?,
        actor: col(r, "actor")?,
        office: col(r, "office")?,
        via: parse_col(&col::<String>(r, "via")?)?,
        issued_at: col(r, "issued_at")?,
        expires_at: col(r, "expires_at")?,
    })
}

/// The sessions not expired (at `now`, seconds) and not revoked, newest first.
pub async fn live<'e, E>(executor: E, now: i64, limit: i64) -> Result<Vec<SessionRow>, DbError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM sessions WHERE expires_at > $1 \
         AND jti NOT IN (SELECT jti FROM revoked_tokens) \
         ORDER BY issued_at DESC, jti DESC LIMIT $2"
    ))
    .bind(now)
    .bind(limit)
    .fetch_all(executor)
    .await
    .map_err(db_err("list sessions"))?;
    rows.iter().map(from_row).collect()
}

pub async fn get<'e, E>(executor: E, jti: &str) -> Result<Option<SessionRow>, DbError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM sessions WHERE jti = $1"))
        .bind(jti)
        .fetch_optional(executor)
        .await
        .map_err(db_err("read a session"))?;
    row.as_ref().map(from_row).transpose()
}
