//! The `rights_requests` table: a citizen's requests under Law 91/2025 and their deadlines.

use uuid::Uuid;

use super::{DbError, Tx, col, db_err, parse_col};
use crate::crypto::CitizenIndex;
use crate::domain::{RequestKind, RequestState, Role};

#[derive(Clone, Debug)]
pub struct RequestRow {
    pub id: Uuid,
    pub citizen_idx: CitizenIndex,
    pub kind: RequestKind,
    pub document_id: Option<Uuid>,
    pub filed_by: String,
    pub filed_role: Role,
    pub filed_office: String,
    pub received_at: i64,
    /// The first answer is due by then (the request leaves `received`).
    pub answer_due_at: i64,
    /// It is carried out (or refused) by then; an extension moves it, once.
    pub due_at: i64,
    pub state: RequestState,
    pub state_reason: Option<String>,
    pub answered_at: Option<i64>,
    pub extended: bool,
    pub closed_at: Option<i64>,
    pub updated_by: String,
    pub updated_at: i64,
}

impl RequestRow {
    /// Past a deadline and not met: the first answer, or the request itself.
    pub fn overdue(&self, now: i64) -> bool {
        self.state.is_open()
            && (self.due_at < now || (self.answered_at.is_none() && self.answer_due_at < now))
    }
}

const COLUMNS: &str = "id, citizen_idx, kind, document_id, filed_by, filed_role, filed_office, \
    received_at, answer_due_at, due_at, state, state_reason, answered_at, extended, closed_at, \
    updated_by, updated_at";

fn uuid(text: &str) -> Result<Uuid, DbError> {
    Uuid::parse_str(text).map_err(|e| DbError::Corrupt(format!("stored id: {e}")))
}

fn from_row(r: &sqlx::any::AnyRow) -> Result<RequestRow, DbError> {
    Ok(RequestRow {
        id: uuid(&col::<String>(r, "id")?)?,
        citizen_idx: super::citizen_index(&col::<String>(r, "citizen_idx")?)?,
        kind: parse_col(&col::<String>(r, "kind")?)?,
        document_id: col::<Option<String>>(r, "document_id")?
            .map(|d| uuid(&d))
            .transpose()?,
        filed_by: col(r, "filed_by")?,
        filed_role: parse_col(&col::<String>(r, "filed_role")?)?,
        filed_office: col(r, "filed_office")?,
        received_at: col(r, "received_at")?,
        answer_due_at: col(r, "answer_due_at")?,
        due_at: col(r, "due_at")?,
        state: parse_col(&col::<String>(r, "state")?)?,
        state_reason: col(r, "state_reason")?,
        answered_at: col(r, "answered_at")?,
        extended: col::<i64>(r, "extended")? != 0,
        closed_at: col(r, "closed_at")?,
        updated_by: col(r, "updated_by")?,
        updated_at: col(r, "updated_at")?,
    })
}

pub async fn insert(tx: &mut Tx, q: &RequestRow) -> Result<(), DbError> {
    sqlx::query(&format!(
        "INSERT INTO rights_requests ({COLUMNS}) VALUES \
         ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
    ))
    .bind(q.id.to_string())
    .bind(q.citizen_idx.to_hex())
    .bind(q.kind.as_str())
    .bind(q.document_id.map(|d| d.to_string()))
    .bind(&q.filed_by)
    .bind(q.filed_role.as_str())
    .bind(&q.filed_office)
    .bind(q.received_at)
    .bind(q.answer_due_at)
    .bind(q.due_at)
    .bind(q.state.as_str())
    .bind(q.state_reason.clone())
    .bind(q.answered_at)
    .bind(i64::from(q.extended))
    .bind(q.closed_at)
    .bind(&q.updated_by)
    .bind(q.updated_at)
    .execute(&mut **tx)
    .await
    .map_err(db_err("file a request"))?;
    Ok(())
}

/// Writes `next` over the row, only if the row is still as `was` left it (no lost update).
pub async fn update(tx: &mut Tx, was: &RequestRow, next: &RequestRow) -> Result<bool, DbError> {
    let done = sqlx::query(
        "UPDATE rights_requests SET state = $1, state_reason = $2, answered_at = $3, \
         due_at = $4, extended = $5, closed_at = $6, updated_by = $7, updated_at = $8 \
         WHERE id = $9 AND state = $10 AND updated_at = $11",
    )
    .bind(next.state.as_str())
    .bind(next.state_reason.clone())
    .bind(next.answered_at)
    .bind(next.due_at)
    .bind(i64::from(next.extended))
    .bind(next.closed_at)
    .bind(&next.updated_by)
    .bind(next.updated_at)
    .bind(was.id.to_string())
    .bind(was.state.as_str())
    .bind(was.updated_at)
    .execute(&mut **tx)
    .await
    .map_err(db_err("update a request"))?;
    Ok(done.rows_affected() == 1)
}

pub async fn get<'e, E>(executor: E, id: Uuid) -> Result<Option<RequestRow>, DbError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM rights_requests WHERE id = $1"
    ))
    .bind(id.to_string())
    .fetch_optional(executor)
    .await
    .map_err(db_err("read a request"))?;
    row.as_ref().map(from_row).transpose()
}

/// The open requests, the nearest deadline each still has first: the first answer's while it
/// is not given (and falls before the carrying out's, as with the default settings), else the
/// carrying out's.
pub async fn open<'e, E>(executor: E, limit: i64) -> Result<Vec<RequestRow>, DbError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM rights_requests WHERE closed_at IS NULL \
         ORDER BY CASE WHEN answered_at IS NULL AND answer_due_at < due_at \
         THEN answer_due_at ELSE due_at END, id \
         LIMIT $1"
    ))
    .bind(limit)
    .fetch_all(executor)
    .await
    .map_err(db_err("list open requests"))?;
    rows.iter().map(from_row).collect()
}

/// A citizen's requests, newest first.
pub async fn for_citizen<'e, E>(
    executor: E,
    citizen: &CitizenIndex,
    limit: i64,
) -> Result<Vec<RequestRow>, DbError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM rights_requests WHERE citizen_idx = $1 \
         ORDER BY received_at DESC, id DESC LIMIT $2"
    ))
    .bind(citizen.to_hex())
    .bind(limit)
    .fetch_all(executor)
    .await
    .map_err(db_err("list a citizen's requests"))?;
    rows.iter().map(from_row).collect()
}

/// How many requests are open, and how many of them are past a deadline at `now`.
pub async fn counts<'e, E>(executor: E, now: i64) -> Result<(i64, i64), DbError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row = sqlx::query(
        "SELECT COUNT(*) AS open, COALESCE(SUM(CASE WHEN due_at < $1 \
         OR (answered_at IS NULL AND answer_due_at < $1) THEN 1 ELSE 0 END), 0) AS overdue \
         FROM rights_requests WHERE closed_at IS NULL",
    )
    .bind(now)
    .fetch_one(executor)
    .await
    .map_err(db_err("count requests"))?;
    Ok((col(&row, "open")?, col(&row, "overdue")?))
}
