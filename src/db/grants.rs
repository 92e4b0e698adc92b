//! The `grants` table.

use sqlx::any::AnyRow;
use uuid::Uuid;

use super::documents::DocumentRow;
use super::script::Slot;
use super::{Columns, DbError, Tx, col, db_err};
use crate::crypto::CitizenIndex;
use crate::crypto::grant_seal::GrantScope;
use crate::crypto::keyring::Keyring;
use crate::domain::{DocType, GrantState};

#[derive(Clone, Debug)]
pub struct GrantRow {
    pub id: Uuid,
    pub citizen_idx: CitizenIndex,
    pub doc_types: Vec<DocType>,
    pub case_ref: String,
    pub purpose: String,
    pub grantee: String,
    /// The officer's office, recorded with every read through the grant.
    pub grantee_office: String,
    pub created_by: String,
    pub office: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub max_uses: i64,
    pub uses: i64,
    pub revoked_at: Option<i64>,
}

impl GrantRow {
    /// What the grant's seal covers: everything but the uses spent and the revocation.
    pub fn scope(&self) -> GrantScope<'_> {
        GrantScope {
            id: self.id,
            citizen: &self.citizen_idx,
            doc_types: &self.doc_types,
            case_ref: &self.case_ref,
            purpose: &self.purpose,
            grantee: &self.grantee,
            grantee_office: &self.grantee_office,
            created_by: &self.created_by,
            office: &self.office,
            created_at: self.created_at,
            expires_at: self.expires_at,
            max_uses: self.max_uses,
        }
    }

    /// Where the grant stands at `now` (ms).
    pub fn state(&self, now: i64) -> GrantState {
        GrantState::at(
            self.revoked_at.is_some(),
            self.expires_at,
            self.uses,
            self.max_uses,
            now,
        )
    }
}

/// A grant row as the database holds it. Its scope is trusted only once its seal checks
/// ([`StoredGrant::open`]): nothing here hands out a grant row otherwise.
pub struct StoredGrant {
    row: GrantRow,
    seal: Option<String>,
}

impl StoredGrant {
    pub fn id(&self) -> Uuid {
        self.row.id
    }

    /// The row, if its seal is the vault's seal of its scope; [`DbError::Tampered`] otherwise
    /// (an edited scope, a seal removed or copied from another grant).
    pub fn open(self, keys: &Keyring) -> Result<GrantRow, DbError> {
        match &self.seal {
            Some(seal) if keys.grant_is_sealed(&self.row.scope(), seal) => Ok(self.row),
            _ => Err(DbError::Tampered(format!("grant {}", self.row.id))),
        }
    }
}

const COLUMNS: &str = "id, citizen_idx, doc_types, case_ref, purpose, grantee, grantee_office, \
    created_by, office, created_at, expires_at, max_uses, uses, revoked_at, seal";

fn from_row(row: &AnyRow) -> Result<StoredGrant, DbError> {
    from_columns(&Columns::new(row, 0))
}

/// The row from `c` (its columns from `COLUMNS`, wherever they start in a joined query).
pub(super) fn from_columns(c: &Columns<'_>) -> Result<StoredGrant, DbError> {
    Ok(StoredGrant {
        row: row_from_columns(c)?,
        seal: c.get("seal")?,
    })
}

fn row_from_columns(c: &Columns<'_>) -> Result<GrantRow, DbError> {
    let types: String = c.get("doc_types")?;
    Ok(GrantRow {
        id: Uuid::parse_str(&c.get::<String>("id")?)
            .map_err(|e| DbError::Corrupt(format!("stored grant id: {e}")))?,
        citizen_idx: super::citizen_index(&c.get::<String>("citizen_idx")?)?,
        doc_types: types
            .split(',')
            .map(super::parse_col)
            .collect::<Result<_, _>>()?,
        case_ref: c.get("case_ref")?,
        purpose: c.get("purpose")?,
        grantee: c.get("grantee")?,
        grantee_office: c.get("grantee_office")?,
        created_by: c.get("created_by")?,
        office: c.get("office")?,
        created_at: c.get("created_at")?,
        expires_at: c.get("expires_at")?,
        max_uses: c.get("max_uses")?,
        uses: c.get("uses")?,
        revoked_at: c.get("revoked_at")?,
    })
}

/// Inserts a new grant, sealed with `keys`.
pub async fn insert(tx: &mut Tx, g: &GrantRow, keys: &Keyring) -> Result<(), DbError> {
    let types: Vec<&str> = g.doc_types.iter().map(|t| t.as_str()).collect();
    sqlx::query(&format!(
        "INSERT INTO grants ({COLUMNS}) VALUES \
         ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
    ))
    .bind(g.id.to_string())
    .bind(g.citizen_idx.to_hex())
    .bind(types.join(","))
    .bind(&g.case_ref)
    .bind(&g.purpose)
    .bind(&g.grantee)
    .bind(&g.grantee_office)
    .bind(&g.created_by)
    .bind(&g.office)
    .bind(g.created_at)
    .bind(g.expires_at)
    .bind(g.max_uses)
    .bind(g.uses)
    .bind(g.revoked_at)
    .bind(keys.seal_grant(&g.scope()))
    .execute(&mut **tx)
    .await
    .map_err(db_err("insert grant"))?;
    Ok(())
}

pub async fn get<'e, E>(executor: E, id: Uuid) -> Result<Option<StoredGrant>, DbError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM grants WHERE id = $1"))
        .bind(id.to_string())
        .fetch_optional(executor)
        .await
        .map_err(db_err("get grant"))?;
    row.as_ref().map(from_row).transpose()
}

/// A grant and, in the same statement, a document and the restriction in force on the grant's
/// citizen: an officer's read looks all three up in one round trip, not three. `None` when the
/// grant is gone; the document is `None` when there is no such document, the restriction when
/// none is in force.
pub async fn get_with_document<'e, E>(
    executor: E,
    grant: Uuid,
    document: Uuid,
) -> Result<Option<GrantWithDocument>, DbError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    static SQL: std::sync::LazyLock<(String, usize)> =
        std::sync::LazyLock::new(grant_with_document_sql);
    let (sql, document_at) = &*SQL;
    let row = sqlx::query(sql)
        .bind(document.to_string())
        .bind(grant.to_string())
        .fetch_optional(executor)
        .await
        .map_err(db_err("get grant and document"))?;
    let Some(row) = row else { return Ok(None) };
    let grant = from_row(&row)?;
    let columns = Columns::new(&row, *document_at);
    let document = match columns.get::<Option<String>>("id")? {
        Some(_) => Some(super::documents::from_columns(&columns)?),
        None => None,
    };
    Ok(Some(GrantWithDocument {
        grant,
        document,
        restriction: restriction_in(&row)?,
    }))
}

/// [`get_with_document`]'s statement, and where the document's columns start in its rows
/// (after the grant's).
fn grant_with_document_sql() -> (String, usize) {
    let each = |table: &str, columns: &str| {
        columns
            .split(", ")
            .map(|c| format!("{table}.{c} AS {c}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    // The earliest restriction in force, as `restrictions::in_force` finds it.
    let restriction = |column: &str| {
        format!(
            "(SELECT r.{column} FROM restrictions r WHERE r.citizen_idx = g.citizen_idx \
             AND r.lifted_at IS NULL ORDER BY r.placed_at, r.id LIMIT 1) AS restriction_{column}"
        )
    };
    let sql = format!(
        "SELECT {}, {}, {}, {} FROM grants g LEFT JOIN documents d ON d.id = $1 \
         WHERE g.id = $2",
        each("g", COLUMNS),
        each("d", super::documents::COLUMNS),
        restriction("request_id"),
        restriction("placed_at"),
    );
    (sql, COLUMNS.split(", ").count())
}

/// The restriction columns of [`get_with_document`]'s row.
fn restriction_in(
    row: &sqlx::any::AnyRow,
) -> Result<Option<super::restrictions::InForce>, DbError> {
    match (
        col::<Option<String>>(row, "restriction_request_id")?,
        col::<Option<i64>>(row, "restriction_placed_at")?,
    ) {
        (Some(request), Some(since)) => Ok(Some(super::restrictions::InForce {
            request_id: Uuid::parse_str(&request)
                .map_err(|e| DbError::Corrupt(format!("stored id: {e}")))?,
            placed_at: since,
        })),
        _ => Ok(None),
    }
}

/// What an officer's read looks up in one statement ([`get_with_document`]).
pub struct GrantWithDocument {
    pub grant: StoredGrant,
    pub document: Option<DocumentRow>,
    pub restriction: Option<super::restrictions::InForce>,
}

/// A citizen's grants, newest first (at most `limit`).
pub async fn list_for_citizen<'e, E>(
    executor: E,
    citizen_idx: &CitizenIndex,
    limit: i64,
) -> Result<Vec<StoredGrant>, DbError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM grants WHERE citizen_idx = $1 ORDER BY created_at DESC, id DESC LIMIT $2"
    ))
    .bind(citizen_idx.to_hex())
    .bind(limit)
    .fetch_all(executor)
    .await
    .map_err(db_err("list grants"))?;
    rows.iter().map(from_row).collect()
}

/// The grants in force made for one officer at one office, newest first: not revoked, not
/// expired, uses left.
pub async fn list_for_grantee<'e, E>(
    executor: E,
    grantee: &str,
    office: &str,
    now: i64,
    limit: i64,
) -> Result<Vec<StoredGrant>, DbError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM grants WHERE grantee = $1 AND grantee_office = $2 \
         AND revoked_at IS NULL AND expires_at > $3 AND uses < max_uses \
         ORDER BY created_at DESC, id DESC LIMIT $4"
    ))
    .bind(grantee)
    .bind(office)
    .bind(now)
    .bind(limit)
    .fetch_all(executor)
    .await
    .map_err(db_err("list an officer's grants"))?;
    rows.iter().map(from_row).collect()
}

/// Spends one use of each of `ids` that is still in force (not revoked, not expired, uses left)
/// at this instant; returns the ones spent. The check and the increment are one statement, so
/// concurrent readers (in one process or many) can never spend more uses than a grant allows.
pub async fn consume_uses(tx: &mut Tx, ids: &[Uuid], now: i64) -> Result<Vec<Uuid>, DbError> {
    // One parameter a grant; 500 stays far below every backend's limit. Every chunk goes in one
    // script (one hand-off on SQLite).
    let mut script = tx.script();
    let slots: Vec<Slot> = ids
        .chunks(500)
        .map(|chunk| {
            let list: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
            let slot = script.push(&format!(
                "UPDATE grants SET uses = uses + 1 WHERE id IN ({}) AND revoked_at IS NULL \
                 AND expires_at > $1 AND uses < max_uses RETURNING id",
                list.join(", ")
            ));
            script.bind(now);
            for id in chunk {
                script.bind(id.to_string());
            }
            slot
        })
        .collect();
    let rows = tx.run(script, db_err("consume grant uses")).await?;
    slots
        .iter()
        .flat_map(|&slot| rows.of(slot))
        .map(|r| {
            Uuid::parse_str(&col::<String>(r, "id")?)
                .map_err(|_| DbError::Corrupt("a grant id is not a UUID".into()))
        })
        .collect()
}

pub async fn revoke(tx: &mut Tx, id: Uuid, by: &str, now: i64) -> Result<bool, DbError> {
    let result = sqlx::query(
        "UPDATE grants SET revoked_at = $1, revoked_by = $2 WHERE id = $3 AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(by)
    .bind(id.to_string())
    .execute(&mut **tx)
    .await
    .map_err(db_err("revoke grant"))?;
    Ok(result.rows_affected() == 1)
}

/// Seals every grant stored without a seal, as it is: run once, by the process that made the
/// grant-seal key (grants from before seals existed). Returns how many were sealed.
pub async fn seal_unsealed(tx: &mut Tx, keys: &Keyring) -> Result<u64, DbError> {
    let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM grants WHERE seal IS NULL"))
        .fetch_all(&mut **tx)
        .await
        .map_err(db_err("list unsealed grants"))?;
    for row in &rows {
        let g = row_from_columns(&Columns::new(row, 0))?;
        sqlx::query("UPDATE grants SET seal = $1 WHERE id = $2")
            .bind(keys.seal_grant(&g.scope()))
            .bind(g.id.to_string())
            .execute(&mut **tx)
            .await
            .map_err(db_err("seal a grant"))?;
    }
    Ok(rows.len() as u64)
}

/// Every grant's id as stored, a page at a time after `after` (the last id of the page before,
/// as stored: an id edited to another spelling of the same UUID must not send the paging back or
/// past rows): what `hoso audit verify` counts reads through while it reads the rows themselves
/// ([`page`]) beside the log's walk.
pub async fn ids_page<'e, E>(executor: E, after: &str, limit: i64) -> Result<Vec<String>, DbError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let rows = sqlx::query("SELECT id FROM grants WHERE id > $1 ORDER BY id LIMIT $2")
        .bind(after)
        .bind(limit)
        .fetch_all(executor)
        .await
        .map_err(db_err("page grant ids"))?;
    rows.iter().map(|r| col::<String>(r, "id")).collect()
}

/// Every grant, a page at a time after `after` (by id), as stored: for `hoso audit verify` and
/// `doctor`, which check each seal and each count of uses. With the rows, the last one's id as
/// stored, for the next page's `after` (see [`ids_page`]).
pub async fn page<'e, E>(
    executor: E,
    after: &str,
    limit: i64,
) -> Result<(Vec<StoredGrant>, Option<String>), DbError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM grants WHERE id > $1 ORDER BY id LIMIT $2"
    ))
    .bind(after)
    .bind(limit)
    .fetch_all(executor)
    .await
    .map_err(db_err("page grants"))?;
    let last = rows.last().map(|r| col::<String>(r, "id")).transpose()?;
    Ok((rows.iter().map(from_row).collect::<Result<_, _>>()?, last))
}
