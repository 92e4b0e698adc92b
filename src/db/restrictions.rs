//! The `restrictions` table: a citizen's records that may not be processed (shared or read
//! through a grant) while a restriction is in force.

use uuid::Uuid;

use super::{DbError, Tx, col, db_err};
use crate::crypto::CitizenIndex;

pub struct RestrictionRow {
    pub id: Uuid,
    pub citizen_idx: CitizenIndex,
    pub request_id: Uuid,
    pub placed_by: String,
    pub placed_at: i64,
    pub lifted_by: Option<String>,
    pub lifted_at: Option<i64>,
}

/// What a refusal names of the restriction in force on a citizen's records.
pub struct InForce {
    pub request_id: Uuid,
    pub placed_at: i64,
}

const COLUMNS: &str = "id, citizen_idx, request_id, placed_by, placed_at, lifted_by, lifted_at";

fn uuid(text: &str) -> Result<Uuid, DbError> {
    Uuid::parse_str(text).map_err(|e| DbError::Corrupt(format!("stored id: {e}")))
}

fn from_row(r: &sqlx::any::AnyRow) -> Result<RestrictionRow, DbError> {
    Ok(RestrictionRow {
        id: uuid(&col::<String>(r, "id")?)?,
        citizen_idx: super::citizen_index(&col::<String>(r, "citizen_idx")?)?,
        request_id: uuid(&col::<String>(r, "request_id")?)?,
        placed_by: col(r, "placed_by")?,
        placed_at: col(r, "placed_at")?,
        lifted_by: col(r, "lifted_by")?,
        lifted_at: col(r, "lifted_at")?,
    })
}

pub async fn insert(tx: &mut Tx, r: &RestrictionRow) -> Result<(), DbError> {
    sqlx::query(&format!(
        "INSERT INTO restrictions ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
    ))
    .bind(r.id.to_string())
    .bind(r.citizen_idx.to_hex())
    .bind(r.request_id.to_string())
    .bind(&r.placed_by)
    .bind(r.placed_at)
    .bind(r.lifted_by.as_deref())
    .bind(r.lifted_at)
    .execute(&mut **tx)
    .await
    .map_err(db_err("place a restriction"))?;
    Ok(())
}

/// Lifts a restriction in force. False: none such, or lifted already.
pub async fn lift(tx: &mut Tx, id: Uuid, by: &str, at: i64) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE restrictions SET lifted_by = $1, lifted_at = $2 WHERE id = $3 AND lifted_at IS NULL",
    )
    .bind(by)
    .bind(at)
    .bind(id.to_string())
    .execute(&mut **tx)
    .await
    .map_err(db_err("lift a restriction"))?;
    Ok(done.rows_affected() == 1)
}

pub async fn get<'e, E>(executor: E, id: Uuid) -> Result<Option<RestrictionRow>, DbError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM restrictions WHERE id = $1"))
        .bind(id.to_string())
        .fetch_optional(executor)
        .await
        .map_err(db_err("read a restriction"))?;
    row.as_ref().map(from_row).transpose()
}

/// The restriction in force on a citizen's records, if any (the earliest).
pub async fn in_force<'e, E>(
    executor: E,
    citizen: &CitizenIndex,
) -> Result<Option<RestrictionRow>, DbError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM restrictions WHERE citizen_idx = $1 AND lifted_at IS NULL \
         ORDER BY placed_at, id LIMIT 1"
    ))
    .bind(citizen.to_hex())
    .fetch_optional(executor)
    .await
    .map_err(db_err("find a restriction"))?;
    row.as_ref().map(from_row).transpose()
}
