//! The `documents` and `intake_intents` tables.

use sqlx::any::AnyRow;
use uuid::Uuid;

use super::{Columns, DbError, Tx, col, db_err, parse_col};
use crate::crypto::CitizenIndex;
use crate::domain::{DocStatus, DocType};

/// One stored document, as the database holds it (personal fields still sealed).
#[derive(Clone, Debug)]
pub struct DocumentRow {
    pub id: Uuid,
    pub citizen_idx: CitizenIndex,
    pub doc_type: DocType,
    pub status: DocStatus,
    pub content_type: String,
    pub size_bytes: i64,
    pub sha256: String,
    pub object_key: String,
    pub format_version: i64,
    pub wrapped_key: Vec<u8>,
    pub kek_version: i64,
    pub sealed_fields: Vec<u8>,
    pub verified_against_original: bool,
    pub intake_by: String,
    pub intake_office: String,
    pub intake_at: i64,
    pub verified_by: Option<String>,
    pub verified_office: Option<String>,
    pub verified_at: Option<i64>,
    pub attestation: Option<String>,
    pub supersedes: Option<Uuid>,
    pub status_changed_by: Option<String>,
    pub status_changed_at: Option<i64>,
    /// A tombstone's when, by whom and why (`reason: detail`).
    pub erased_at: Option<i64>,
    pub erased_by: Option<String>,
    pub erase_reason: Option<String>,
}

pub(super) const COLUMNS: &str = "id, citizen_idx, doc_type, status, content_type, size_bytes, sha256, \
    object_key, format_version, wrapped_key, kek_version, sealed_fields, \
    verified_against_original, intake_by, intake_office, intake_at, verified_by, \
    verified_office, verified_at, attestation, supersedes, status_changed_by, status_changed_at, erased_at, erased_by, erase_reason";

fn parse_uuid(text: &str) -> Result<Uuid, DbError> {
    Uuid::parse_str(text).map_err(|e| DbError::Corrupt(format!("stored document id: {e}")))
}

fn from_row(row: &AnyRow) -> Result<DocumentRow, DbError> {
    from_columns(&Columns::new(row, 0))
}

/// The row from `c` (its columns from `COLUMNS`, wherever they start in a joined query).
pub(super) fn from_columns(c: &Columns<'_>) -> Result<DocumentRow, DbError> {
    Ok(DocumentRow {
        id: parse_uuid(&c.get::<String>("id")?)?,
        citizen_idx: super::citizen_index(&c.get::<String>("citizen_idx")?)?,
        doc_type: parse_col(&c.get::<String>("doc_type")?)?,
        status: parse_col(&c.get::<String>("status")?)?,
        content_type: c.get("content_type")?,
        size_bytes: c.get("size_bytes")?,
        sha256: c.get("sha256")?,
        object_key: c.get("object_key")?,
        format_version: c.get("format_version")?,
        wrapped_key: c.get("wrapped_key")?,
        kek_version: c.get("kek_version")?,
        sealed_fields: c.get("sealed_fields")?,
        verified_against_original: c.get::<i64>("verified_against_original")? != 0,
        intake_by: c.get("intake_by")?,
        intake_office: c.get("intake_office")?,
        intake_at: c.get("intake_at")?,
        verified_by: c.get("verified_by")?,
        verified_office: c.get("verified_office")?,
        verified_at: c.get("verified_at")?,
        attestation: c.get("attestation")?,
        supersedes: c
            .get::<Option<String>>("supersedes")?
            .map(|s| parse_uuid(&s))
            .transpose()?,
        status_changed_by: c.get("status_changed_by")?,
        status_changed_at: c.get("status_changed_at")?,
        erased_at: c.get("erased_at")?,
        erased_by: c.get("erased_by")?,
        erase_reason: c.get("erase_reason")?,
    })
}

/// Inserts a new document. [`Constraint::DocumentsOneCurrentScan`](super::Constraint) means the
/// same scan is already current for this citizen and type; the caller answers with that one.
pub async fn insert(tx: &mut Tx, d: &DocumentRow) -> Result<(), DbError> {
    sqlx::query(&format!(
        "INSERT INTO documents ({COLUMNS}) VALUES \
         ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, \
          $20, $21, $22, $23, $24, $25, $26)"
    ))
    .bind(d.id.to_string())
    .bind(d.citizen_idx.to_hex())
    .bind(d.doc_type.as_str())
    .bind(d.status.as_str())
    .bind(&d.content_type)
    .bind(d.size_bytes)
    .bind(&d.sha256)
    .bind(&d.object_key)
    .bind(d.format_version)
    .bind(&d.wrapped_key)
    .bind(d.kek_version)
    .bind(&d.sealed_fields)
    .bind(i64::from(d.verified_against_original))
    .bind(&d.intake_by)
    .bind(&d.intake_office)
    .bind(d.intake_at)
    .bind(d.verified_by.clone())
    .bind(d.verified_office.clone())
    .bind(d.verified_at)
    .bind(d.attestation.clone())
    .bind(d.supersedes.map(|u| u.to_string()))
    .bind(d.status_changed_by.clone())
    .bind(d.status_changed_at)
    .bind(d.erased_at)
    .bind(d.erased_by.clone())
    .bind(d.erase_reason.clone())
    .execute(&mut **tx)
    .await
    .map_err(db_err("insert document"))?;
    Ok(())
}

pub async fn get<'e, E>(executor: E, id: Uuid) -> Result<Option<DocumentRow>, DbError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM documents WHERE id = $1"))
        .bind(id.to_string())
        .fetch_optional(executor)
        .await
        .map_err(db_err("get document"))?;
    row.as_ref().map(from_row).transpose()
}

/// `statuses` as an SQL list of literals: the vocabulary's own words, never input.
fn statuses(statuses: impl Iterator<Item = DocStatus>) -> String {
    statuses
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The current document holding this exact scan for this citizen and type, if any.
pub async fn find_current_scan<'e, E>(
    executor: E,
    citizen_idx: &CitizenIndex,
    doc_type: DocType,
    sha256: &str,
) -> Result<Option<DocumentRow>, DbError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM documents WHERE citizen_idx = $1 AND doc_type = $2 \
         AND sha256 = $3 AND status IN ({})",
        statuses(DocStatus::current())
    ))
    .bind(citizen_idx.to_hex())
    .bind(doc_type.as_str())
    .bind(sha256)
    .fetch_optional(executor)
    .await
    .map_err(db_err("find scan"))?;
    row.as_ref().map(from_row).transpose()
}

pub async fn list_for_citizen<'e, E>(
    executor: E,
    citizen_idx: &CitizenIndex,
    include_all: bool,
) -> Result<Vec<DocumentRow>, DbError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let filter = if include_all {
        String::new()
    } else {
        format!(" AND status IN ({})", statuses(DocStatus::current()))
    };
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM documents WHERE citizen_idx = $1{filter} ORDER BY id"
    ))
    .bind(citizen_idx.to_hex())
    .fetch_all(executor)
    .await
    .map_err(db_err("list documents"))?;
    rows.iter().map(from_row).collect()
}

/// Moves a document from `from` to `to`. Returns false when it was not in `from` any more, which
/// is how a lost race shows (two clerks revoking at once, a supersede of a revoked document).
pub async fn change_status(
    tx: &mut Tx,
    id: Uuid,
    from: &[DocStatus],
    to: DocStatus,
    by: &str,
    at: i64,
) -> Result<bool, DbError> {
    let result = sqlx::query(&format!(
        "UPDATE documents SET status = $1, status_changed_by = $2, status_changed_at = $3 \
         WHERE id = $4 AND status IN ({})",
        statuses(from.iter().copied())
    ))
    .bind(to.as_str())
    .bind(by)
    .bind(at)
    .bind(id.to_string())
    .execute(&mut **tx)
    .await
    .map_err(db_err("change status"))?;
    Ok(result.rows_affected() == 1)
}

pub async fn mark_verified(
    tx: &mut Tx,
    id: Uuid,
    by: &str,
    office: &str,
    at: i64,
    attestation: &str,
) -> Result<bool, DbError> {
    let result = sqlx::query(
        "UPDATE documents SET status = $6, verified_by = $1, verified_office = $2, \
         verified_at = $3, attestation = $4 WHERE id = $5 AND status = $7",
    )
    .bind(by)
    .bind(office)
    .bind(at)
    .bind(attestation)
    .bind(id.to_string())
    .bind(DocStatus::Verified.as_str())
    .bind(DocStatus::Pending.as_str())
    .execute(&mut **tx)
    .await
    .map_err(db_err("verify document"))?;
    Ok(result.rows_affected() == 1)
}

/// Documents whose data key is wrapped by a KEK other than `current`, a page at a time.
/// Documents whose key is not under KEK `current` or not in the current row format.
pub async fn page_to_rewrap<'e, E>(
    executor: E,
    current: i64,
    limit: i64,
) -> Result<Vec<DocumentRow>, DbError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM documents WHERE (kek_version <> $1 OR format_version <> $2) \
         AND status <> 'erased' ORDER BY id LIMIT $3"
    ))
    .bind(current)
    .bind(i64::from(crate::crypto::envelope::FORMAT_VERSION))
    .bind(limit)
    .fetch_all(executor)
    .await
    .map_err(db_err("list documents to rewrap"))?;
    rows.iter().map(from_row).collect()
}

/// Replaces a wrapped key only if it is still the one that was read (no lost update), and never
/// in a tombstone (an erasure that committed since the rewrap read its page).
/// The rewrapped key is in the current row format, [`crate::crypto::envelope::FORMAT_VERSION`].
pub async fn replace_wrapped_key(
    tx: &mut Tx,
    old: &DocumentRow,
    new_version: i64,
    wrapped: &[u8],
) -> Result<bool, DbError> {
    let result = sqlx::query(
        "UPDATE documents SET wrapped_key = $1, kek_version = $2, format_version = $3 \
         WHERE id = $4 AND kek_version = $5 AND format_version = $6 AND status <> 'erased'",
    )
    .bind(wrapped.to_vec())
    .bind(new_version)
    .bind(i64::from(crate::crypto::envelope::FORMAT_VERSION))
    .bind(old.id.to_string())
    .bind(old.kek_version)
    .bind(old.format_version)
    .execute(&mut **tx)
    .await
    .map_err(db_err("rewrap"))?;
    Ok(result.rows_affected() == 1)
}

/// How many data keys each KEK version wraps: stored documents (a tombstone's key is gone)
/// plus intakes still in flight.
pub async fn count_by_kek<'e, E>(executor: E) -> Result<Vec<(i64, i64)>, DbError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let rows = sqlx::query(
        "SELECT kek_version, COUNT(*) AS n FROM (SELECT kek_version FROM documents \
         WHERE status <> 'erased' UNION ALL SELECT kek_version FROM intake_intents) u GROUP BY kek_version ORDER BY kek_version",
    )
    .fetch_all(executor)
    .await
    .map_err(db_err("count by kek"))?;
    rows.iter()
        .map(|r| Ok((col(r, "kek_version")?, col(r, "n")?)))
        .collect()
}

pub async fn insert_intent(
    tx: &mut Tx,
    object_key: &str,
    kek_version: i64,
    at: i64,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO intake_intents (object_key, kek_version, created_at) VALUES ($1, $2, $3)",
    )
    .bind(object_key)
    .bind(kek_version)
    .bind(at)
    .execute(&mut **tx)
    .await
    .map_err(db_err("record intake intent"))?;
    Ok(())
}

pub async fn delete_intent<'e, E>(executor: E, object_key: &str) -> Result<(), DbError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query("DELETE FROM intake_intents WHERE object_key = $1")
        .bind(object_key)
        .execute(executor)
        .await
        .map_err(db_err("clear intake intent"))?;
    Ok(())
}

/// Intents older than `before` whose object no document references: leftovers of intakes that
/// died between writing the object and committing the row.
pub async fn stale_intents<'e, E>(executor: E, before: i64) -> Result<Vec<String>, DbError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let rows = sqlx::query(
        "SELECT object_key FROM intake_intents i WHERE created_at < $1 \
         AND NOT EXISTS (SELECT 1 FROM documents d WHERE d.object_key = i.object_key)",
    )
    .bind(before)
    .fetch_all(executor)
    .await
    .map_err(db_err("list stale intents"))?;
    rows.iter().map(|r| col(r, "object_key")).collect()
}

/// Every document in id order, a page at a time: keyset paging, so memory stays flat and a
/// document taken in meanwhile is either seen once or not at all. The one paging loop for
/// whole-vault passes (`doctor`, `backup`).
pub struct AllDocuments<'p> {
    pool: &'p sqlx::AnyPool,
    after: String,
}

impl<'p> AllDocuments<'p> {
    pub fn new(pool: &'p sqlx::AnyPool) -> Self {
        Self {
            pool,
            after: String::new(),
        }
    }

    /// The next page, or `None` when every document has been seen.
    pub async fn next_page(&mut self) -> Result<Option<Vec<DocumentRow>>, DbError> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM documents WHERE id > $1 ORDER BY id LIMIT 200"
        ))
        .bind(&self.after)
        .fetch_all(self.pool)
        .await
        .map_err(db_err("page documents"))?;
        let page = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
        match page.last() {
            Some(last) => {
                self.after = last.id.to_string();
                Ok(Some(page))
            }
            None => Ok(None),
        }
    }
}

pub async fn count<'e, E>(executor: E) -> Result<i64, DbError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row = sqlx::query("SELECT COUNT(*) AS n FROM documents")
        .fetch_one(executor)
        .await
        .map_err(db_err("count documents"))?;
    col(&row, "n")
}

/// Whether a row or an intake in flight claims this object key (a tombstone's body is
/// deleted, so it claims none).
pub async fn object_claimed<'e, E>(executor: E, object_key: &str) -> Result<bool, DbError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row = sqlx::query(
        "SELECT (SELECT COUNT(*) FROM documents WHERE object_key = $1 AND status <> 'erased') \
         + (SELECT COUNT(*) FROM intake_intents WHERE object_key = $1) AS n",
    )
    .bind(object_key)
    .fetch_one(executor)
    .await
    .map_err(db_err("object claimed"))?;
    Ok(col::<i64>(&row, "n")? > 0)
}
