//! Erasing documents: the tombstone update, what retention finds due, the bodies still to
//! delete, and the lease that keeps retention runs one at a time.

use uuid::Uuid;

use super::{DbError, Tx, col, db_err};
use crate::domain::{DocStatus, DocType};

/// What became of an erasure's update.
pub enum Erased {
    /// The secrets are gone; the row is a tombstone.
    Done,
    /// A hold in force covers the document: nothing changed.
    Held(Box<super::holds::HoldRow>),
    /// It was erased already (another run, or a retry).
    Already,
    /// No such document in this database (a restored backup older than it).
    Missing,
}

/// Turns document `id` into a tombstone unless a hold in force covers it: the wrapped data key
/// and sealed fields are emptied, attestation and SHA-256 cleared, and when, why and by whom
/// recorded. The hold check and the update run in `tx`, which on SQLite holds the write lock.
pub async fn erase(
    tx: &mut Tx,
    id: Uuid,
    at: i64,
    by: &str,
    reason: &str,
) -> Result<Erased, DbError> {
    if let Some(hold) = super::holds::holding(&mut **tx, id, at).await? {
        return Ok(Erased::Held(Box::new(hold)));
    }
    let done = sqlx::query(
        "UPDATE documents SET status = $1, wrapped_key = $2, sealed_fields = $3, sha256 = '', \
         attestation = NULL, erased_at = $4, erased_by = $5, erase_reason = $6 \
         WHERE id = $7 AND status <> $1",
    )
    .bind(DocStatus::Erased.as_str())
    .bind(Vec::<u8>::new())
    .bind(Vec::<u8>::new())
    .bind(at)
    .bind(by)
    .bind(reason)
    .bind(id.to_string())
    .execute(&mut **tx)
    .await
    .map_err(db_err("erase a document"))?;
    if done.rows_affected() == 1 {
        return Ok(Erased::Done);
    }
    let exists = sqlx::query("SELECT COUNT(*) AS n FROM documents WHERE id = $1")
        .bind(id.to_string())
        .fetch_one(&mut **tx)
        .await
        .map_err(db_err("erase a document"))?;
    Ok(if col::<i64>(&exists, "n")? == 0 {
        Erased::Missing
    } else {
        Erased::Already
    })
}

/// Erased documents whose body object has not been deleted yet (a crash came in between).
pub async fn bodies_to_delete<'e, E>(executor: E) -> Result<Vec<Uuid>, DbError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let rows = sqlx::query(
        "SELECT id FROM documents WHERE status = 'erased' AND body_erased_at IS NULL ORDER BY id",
    )
    .fetch_all(executor)
    .await
    .map_err(db_err("list bodies to delete"))?;
    rows.iter()
        .map(|r| uuid(&col::<String>(r, "id")?))
        .collect()
}

/// Whether the audit log holds an allowed erasure of document `id`.
pub async fn erased_in_log<'e, E>(executor: E, id: Uuid) -> Result<bool, DbError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row = sqlx::query(
        "SELECT COUNT(*) AS n FROM audit_entries WHERE document_id = $1 \
         AND action = 'document.erase' AND outcome = 'allowed'",
    )
    .bind(id.to_string())
    .fetch_one(executor)
    .await
    .map_err(db_err("find an erasure in the log"))?;
    Ok(col::<i64>(&row, "n")? > 0)
}

/// Tombstones the audit log does not know of: rows marked erased behind the vault's back.
pub async fn erased_outside_the_vault<'e, E>(executor: E) -> Result<Vec<Uuid>, DbError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let rows = sqlx::query(
        "SELECT d.id FROM documents d WHERE d.status = 'erased' AND NOT EXISTS \
         (SELECT 1 FROM audit_entries a WHERE a.document_id = d.id \
          AND a.action = 'document.erase' AND a.outcome = 'allowed') ORDER BY d.id",
    )
    .fetch_all(executor)
    .await
    .map_err(db_err("find tombstones the log does not know"))?;
    rows.iter()
        .map(|r| uuid(&col::<String>(r, "id")?))
        .collect()
}

pub async fn body_deleted<'e, E>(executor: E, id: Uuid, at: i64) -> Result<(), DbError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query("UPDATE documents SET body_erased_at = $1 WHERE id = $2")
        .bind(at)
        .bind(id.to_string())
        .execute(executor)
        .await
        .map_err(db_err("record a body deleted"))?;
    Ok(())
}

/// Every tombstone's id, sorted.
pub async fn erased_ids<'e, E>(executor: E) -> Result<Vec<Uuid>, DbError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let rows = sqlx::query("SELECT id FROM documents WHERE status = 'erased' ORDER BY id")
        .fetch_all(executor)
        .await
        .map_err(db_err("list tombstones"))?;
    rows.iter()
        .map(|r| uuid(&col::<String>(r, "id")?))
        .collect()
}

fn uuid(text: &str) -> Result<Uuid, DbError> {
    Uuid::parse_str(text).map_err(|e| DbError::Corrupt(format!("stored document id: {e}")))
}

/// A page (ids after `after`, in order) of documents of type `doc_type` that may be due:
/// with `not_current_before`, those superseded or revoked before it; otherwise every document
/// not erased that was taken in before `taken_in_before`.
pub async fn retention_page<'e, E>(
    executor: E,
    doc_type: DocType,
    not_current_before: Option<i64>,
    taken_in_before: i64,
    after: Option<Uuid>,
) -> Result<Vec<Uuid>, DbError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let which = match not_current_before {
        Some(_) => "status IN ('superseded', 'revoked') AND status_changed_at <= $2",
        None => "status <> 'erased'",
    };
    let rows = sqlx::query(&format!(
        "SELECT id FROM documents WHERE doc_type = $1 AND {which} AND intake_at <= $3 \
         AND id > $4 ORDER BY id LIMIT 200"
    ))
    .bind(doc_type.as_str())
    .bind(not_current_before.unwrap_or(0))
    .bind(taken_in_before)
    .bind(after.map(|a| a.to_string()).unwrap_or_default())
    .fetch_all(executor)
    .await
    .map_err(db_err("find documents due"))?;
    rows.iter()
        .map(|r| uuid(&col::<String>(r, "id")?))
        .collect()
}

/// When a copy of document `id` was last served, if ever (from the audit log).
pub async fn last_copy<'e, E>(executor: E, id: Uuid) -> Result<Option<i64>, DbError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row = sqlx::query(
        "SELECT MAX(at) AS last FROM audit_entries WHERE document_id = $1 \
         AND action = 'document.content' AND outcome = 'allowed'",
    )
    .bind(id.to_string())
    .fetch_one(executor)
    .await
    .map_err(db_err("find the last copy"))?;
    col(&row, "last")
}

/// Takes (or renews) the retention lease for `holder` until `until`, unless another holder's
/// lease is still running at `now`. True when `holder` has it.
pub async fn take_lease(tx: &mut Tx, holder: &str, now: i64, until: i64) -> Result<bool, DbError> {
    let taken = sqlx::query(
        "UPDATE retention_lease SET holder = $1, until_at = $2 \
         WHERE id = 1 AND (holder = $1 OR until_at <= $3)",
    )
    .bind(holder)
    .bind(until)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(db_err("take the retention lease"))?;
    Ok(taken.rows_affected() == 1)
}

/// Gives the lease up, if `holder` still has it.
pub async fn release_lease<'e, E>(executor: E, holder: &str) -> Result<(), DbError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query("UPDATE retention_lease SET until_at = 0 WHERE id = 1 AND holder = $1")
        .bind(holder)
        .execute(executor)
        .await
        .map_err(db_err("release the retention lease"))?;
    Ok(())
}
