//! The `legal_holds` table. A hold covers one document, or (no document) every document of a
//! citizen; it is in force until lifted or past its `until_at`.

use uuid::Uuid;

use super::{DbError, Tx, col, db_err};
use crate::crypto::CitizenIndex;

pub struct HoldRow {
    pub id: Uuid,
    pub citizen_idx: CitizenIndex,
    pub document_id: Option<Uuid>,
    pub reason: String,
    pub case_ref: String,
    pub placed_by: String,
    pub placed_office: String,
    pub placed_at: i64,
    pub until_at: Option<i64>,
    pub lifted_by: Option<String>,
    pub lifted_at: Option<i64>,
}

impl HoldRow {
    pub fn in_force(&self, now: i64) -> bool {
        self.lifted_at.is_none() && self.until_at.is_none_or(|until| until > now)
    }
}

const COLUMNS: &str = "id, citizen_idx, document_id, reason, case_ref, placed_by, placed_office, \
    placed_at, until_at, lifted_by, lifted_at";

/// The condition "hold `h` is in force at `$1` and covers the document `d`", for queries that
/// alias the hold `h` and the document `d`.
pub(super) const COVERS: &str = "h.lifted_at IS NULL AND (h.until_at IS NULL OR h.until_at > $1) \
    AND (h.document_id = d.id OR (h.document_id IS NULL AND h.citizen_idx = d.citizen_idx))";

fn uuid(text: &str) -> Result<Uuid, DbError> {
    Uuid::parse_str(text).map_err(|e| DbError::Corrupt(format!("stored id: {e}")))
}

fn from_row(r: &sqlx::any::AnyRow) -> Result<HoldRow, DbError> {
    Ok(HoldRow {
        id: uuid(&col::<String>(r, "id")?)?,
        citizen_idx: super::citizen_index(&col::<String>(r, "citizen_idx")?)?,
        document_id: col::<Option<String>>(r, "document_id")?
            .map(|d| uuid(&d))
            .transpose()?,
        reason: col(r, "reason")?,
        case_ref: col(r, "case_ref")?,
        placed_by: col(r, "placed_by")?,
        placed_office: col(r, "placed_office")?,
        placed_at: col(r, "placed_at")?,
        until_at: col(r, "until_at")?,
        lifted_by: col(r, "lifted_by")?,
        lifted_at: col(r, "lifted_at")?,
    })
}

pub async fn insert(tx: &mut Tx, h: &HoldRow) -> Result<(), DbError> {
    sqlx::query(&format!(
        "INSERT INTO legal_holds ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
    ))
    .bind(h.id.to_string())
    .bind(h.citizen_idx.to_hex())
    .bind(h.document_id.map(|d| d.to_string()))
    .bind(&h.reason)
    .bind(&h.case_ref)
    .bind(&h.placed_by)
    .bind(&h.placed_office)
    .bind(h.placed_at)
    .bind(h.until_at)
    .bind(h.lifted_by.as_deref())
    .bind(h.lifted_at)
    .execute(&mut **tx)
    .await
    .map_err(db_err("place a hold"))?;
    Ok(())
}

/// Lifts a hold still in place. False: there is no such hold, or it was lifted already.
pub async fn lift(tx: &mut Tx, id: Uuid, by: &str, at: i64) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE legal_holds SET lifted_by = $1, lifted_at = $2 WHERE id = $3 AND lifted_at IS NULL",
    )
    .bind(by)
    .bind(at)
    .bind(id.to_string())
    .execute(&mut **tx)
    .await
    .map_err(db_err("lift a hold"))?;
    Ok(done.rows_affected() == 1)
}

pub async fn get<'e, E>(executor: E, id: Uuid) -> Result<Option<HoldRow>, DbError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM legal_holds WHERE id = $1"))
        .bind(id.to_string())
        .fetch_optional(executor)
        .await
        .map_err(db_err("read a hold"))?;
    row.as_ref().map(from_row).transpose()
}

/// Holds, newest first: those in force at `now`, or all of them.
pub async fn list<'e, E>(
    executor: E,
    now: i64,
    in_force_only: bool,
    limit: i64,
) -> Result<Vec<HoldRow>, DbError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let filter = if in_force_only {
        "WHERE lifted_at IS NULL AND (until_at IS NULL OR until_at > $1)"
    } else {
        "WHERE $1 = $1"
    };
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM legal_holds {filter} ORDER BY placed_at DESC, id LIMIT $2"
    ))
    .bind(now)
    .bind(limit)
    .fetch_all(executor)
    .await
    .map_err(db_err("list holds"))?;
    rows.iter().map(from_row).collect()
}

/// The first hold in force at `now` that covers document `id`, if any.
pub async fn holding<'e, E>(executor: E, id: Uuid, now: i64) -> Result<Option<HoldRow>, DbError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let columns = COLUMNS
        .split(", ")
        .map(|c| format!("h.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let row = sqlx::query(&format!(
        "SELECT {columns} FROM legal_holds h JOIN documents d ON d.id = $2 WHERE {COVERS} \
         ORDER BY h.placed_at, h.id LIMIT 1"
    ))
    .bind(now)
    .bind(id.to_string())
    .fetch_optional(executor)
    .await
    .map_err(db_err("find a hold"))?;
    row.as_ref().map(from_row).transpose()
}
