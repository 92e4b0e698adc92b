//! The `audit_entries`, `audit_head`, `audit_signed_heads`, `audit_tree` and `audit_notes` tables. The chain logic lives in
//! `crate::audit`; this is only storage.

use sqlx::any::AnyRow;

use super::script::{Script, Slot};
use super::{DbError, Tx, citizen_index, col, db_err, parse_col};
use crate::crypto::CitizenIndex;
use crate::domain::{AuditAction, Outcome, Role};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryRow {
    pub seq: i64,
    pub at: i64,
    pub actor: String,
    pub role: Role,
    pub office: String,
    pub action: AuditAction,
    pub outcome: Outcome,
    pub document_id: Option<String>,
    pub citizen_idx: Option<CitizenIndex>,
    pub grant_id: Option<String>,
    pub case_ref: Option<String>,
    pub reason: Option<String>,
    pub prev_hash: String,
    pub hash: String,
}

const COLUMNS: &str = "seq, at, actor, role, office, action, outcome, document_id, citizen_idx, \
    grant_id, case_ref, reason, prev_hash, hash";

fn from_row(row: &AnyRow) -> Result<EntryRow, DbError> {
    Ok(EntryRow {
        seq: col(row, "seq")?,
        at: col(row, "at")?,
        actor: col(row, "actor")?,
        role: parse_col(&col::<String>(row, "role")?)?,
        office: col(row, "office")?,
        action: parse_col(&col::<String>(row, "action")?)?,
        outcome: parse_col(&col::<String>(row, "outcome")?)?,
        document_id: col(row, "document_id")?,
        citizen_idx: col::<Option<String>>(row, "citizen_idx")?
            .map(|hex| citizen_index(&hex))
            .transpose()?,
        grant_id: col(row, "grant_id")?,
        case_ref: col(row, "case_ref")?,
        reason: col(row, "reason")?,
        prev_hash: col(row, "prev_hash")?,
        hash: col(row, "hash")?,
    })
}

pub struct Head {
    pub seq: i64,
    pub hash: String,
    pub signature: String,
}

/// The chain's lock: a no-op write on the head row. It must be the first statement of the
/// transaction (SQLite then takes its write lock without a stale read snapshot; PostgreSQL locks
/// the row), so appenders in every process queue up here and the chain never forks.
const LOCK_HEAD: &str = "UPDATE audit_head SET seq = seq WHERE id = 1";
const HEAD: &str = "SELECT seq, hash, signature FROM audit_head WHERE id = 1";

/// Takes the chain's lock (see [`LOCK_HEAD`]).
pub async fn lock_head(tx: &mut Tx) -> Result<(), DbError> {
    sqlx::query(LOCK_HEAD)
        .execute(&mut **tx)
        .await
        .map_err(|e| DbError::unavailable("audit log unavailable (lock)")(e))?;
    Ok(())
}

/// The chain's lock and then its head, in a script that has just begun its transaction.
pub fn push_lock_and_head(script: &mut Script) -> Slot {
    assert_eq!(script.len(), 1, "the log's lock right after BEGIN");
    script.push(LOCK_HEAD);
    script.push(HEAD)
}

pub async fn head<'e, E>(executor: E) -> Result<Head, DbError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row = sqlx::query(HEAD)
        .fetch_one(executor)
        .await
        .map_err(|e| DbError::unavailable("audit log unavailable (head)")(e))?;
    head_from(std::slice::from_ref(&row))
}

/// The head from [`push_lock_and_head`]'s rows.
pub fn head_from(rows: &[AnyRow]) -> Result<Head, DbError> {
    let [row] = rows else {
        return Err(DbError::Corrupt(format!(
            "the audit log has {} head rows",
            rows.len()
        )));
    };
    Ok(Head {
        seq: col(row, "seq")?,
        hash: col(row, "hash")?,
        signature: col(row, "signature")?,
    })
}

/// Entries appended by one transaction, in multi-row statements of 64 rows.
pub fn push_entries<'q>(script: &mut Script<'q>, entries: &'q [EntryRow]) {
    // 14 parameters a row; 64 rows stay far below every backend's limit on parameters.
    for rows in entries.chunks(64) {
        script.push(&format!(
            "INSERT INTO audit_entries ({COLUMNS}) VALUES {}",
            placeholders(rows.len(), 14)
        ));
        for e in rows {
            script
                .bind(e.seq)
                .bind(e.at)
                .bind(e.actor.as_str())
                .bind(e.role.as_str())
                .bind(e.office.as_str())
                .bind(e.action.as_str())
                .bind(e.outcome.as_str())
                .bind(e.document_id.as_deref())
                .bind(e.citizen_idx.map(|c| c.to_hex()))
                .bind(e.grant_id.as_deref())
                .bind(e.case_ref.as_deref())
                .bind(e.reason.as_deref())
                .bind(e.prev_hash.as_str())
                .bind(e.hash.as_str());
        }
    }
}

/// `($1, …, $width), ($width+1, …)`: `rows` tuples of numbered placeholders.
fn placeholders(rows: usize, width: usize) -> String {
    let mut out = String::with_capacity(rows * width * 5);
    for r in 0..rows {
        out.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..width {
            if c > 0 {
                out.push_str(", ");
            }
            out.push_str(&format!("${}", r * width + c + 1));
        }
        out.push(')');
    }
    out
}

pub fn push_set_head<'q>(script: &mut Script<'q>, head: &'q Head) {
    script.push("UPDATE audit_head SET seq = $1, hash = $2, signature = $3 WHERE id = 1");
    script
        .bind(head.seq)
        .bind(head.hash.as_str())
        .bind(head.signature.as_str());
}

pub fn push_signed_head<'q>(script: &mut Script<'q>, head: &'q Head, at: i64) {
    script
        .push("INSERT INTO audit_signed_heads (seq, hash, signature, at) VALUES ($1, $2, $3, $4)");
    script
        .bind(head.seq)
        .bind(head.hash.as_str())
        .bind(head.signature.as_str())
        .bind(at);
}

pub async fn signed_heads<'e, E>(executor: E) -> Result<Vec<Head>, DbError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let rows = sqlx::query("SELECT seq, hash, signature FROM audit_signed_heads ORDER BY seq")
        .fetch_all(executor)
        .await
        .map_err(db_err("audit signed heads"))?;
    rows.iter()
        .map(|r| {
            Ok(Head {
                seq: col(r, "seq")?,
                hash: col(r, "hash")?,
                signature: col(r, "signature")?,
            })
        })
        .collect()
}

/// Entries in `seq` order after `after_seq`, a page at a time (for verification).
pub async fn page<'e, E>(executor: E, after_seq: i64, limit: i64) -> Result<Vec<EntryRow>, DbError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM audit_entries WHERE seq > $1 ORDER BY seq LIMIT $2"
    ))
    .bind(after_seq)
    .bind(limit)
    .fetch_all(executor)
    .await
    .map_err(db_err("read audit entries"))?;
    rows.iter().map(from_row).collect()
}

/// The highest `seq` in the log (0 when it is empty).
pub async fn last_seq<'e, E>(executor: E) -> Result<i64, DbError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row = sqlx::query("SELECT COALESCE(MAX(seq), 0) AS n FROM audit_entries")
        .fetch_one(executor)
        .await
        .map_err(db_err("read the log's last seq"))?;
    col(&row, "n")
}

/// Entries as the chain walk reads them: a page of rows whose text columns sit in one buffer,
/// so walking millions of entries allocates per page, not per row or per column.
#[derive(Default)]
pub struct ChainPage {
    text: Vec<u8>,
    rows: Vec<ChainRow>,
}

/// Ranges in [`ChainPage::text`] of one row's text columns, `actor` to `hash` in [`COLUMNS`]
/// order; `None` is NULL.
struct ChainRow {
    seq: i64,
    at: i64,
    texts: [Option<(u32, u32)>; CHAIN_TEXTS],
}

/// `actor, role, office, action, outcome, document_id, citizen_idx, grant_id, case_ref, reason,
/// prev_hash, hash`.
const CHAIN_TEXTS: usize = 12;

/// One entry of a [`ChainPage`], borrowed.
pub struct ChainEntry<'a> {
    pub seq: i64,
    pub at: i64,
    /// `actor` to `reason`, in the chain message's order; `None` is NULL.
    pub fields: [Option<&'a [u8]>; 10],
    pub prev_hash: &'a [u8],
    pub hash: &'a [u8],
}

impl ChainPage {
    const ROWS: usize = 4096;

    fn push<'a>(&mut self, seq: i64, at: i64, texts: impl Iterator<Item = Option<&'a [u8]>>) {
        let mut ranges = [None; CHAIN_TEXTS];
        for (range, text) in ranges.iter_mut().zip(texts) {
            *range = text.map(|t| {
                let start = self.text.len() as u32;
                self.text.extend_from_slice(t);
                (start, self.text.len() as u32)
            });
        }
        self.rows.push(ChainRow {
            seq,
            at,
            texts: ranges,
        });
    }

    fn is_full(&self) -> bool {
        self.rows.len() >= Self::ROWS
    }

    pub fn entries(&self) -> impl Iterator<Item = ChainEntry<'_>> {
        self.rows.iter().map(|row| {
            let text = |i: usize| row.texts[i].map(|(a, b)| &self.text[a as usize..b as usize]);
            ChainEntry {
                seq: row.seq,
                at: row.at,
                fields: std::array::from_fn(text),
                prev_hash: text(10).unwrap_or_default(),
                hash: text(11).unwrap_or_default(),
            }
        })
    }
}

/// Sends the entries with `seq <= upto`, in `seq` order, a page at a time, until they end or
/// `out` is dropped. A failure is sent as the last item.
///
/// On SQLite the rows are read on a blocking thread straight from the file (rusqlite, the same
/// SQLite library as sqlx; see Cargo.toml for why), so that reading and hashing run on two cores;
/// on PostgreSQL in one binary `COPY` on a connection of its own ([`super::copy`]), parsed
/// here while another thread hashes. Each page is read after the caller's snapshot was taken, which
/// holds every entry up to `upto`: entries are never legitimately changed, so a later read sees
/// the same ones, and any that differ were changed by someone.
pub async fn read_chain(
    db: &super::Db,
    upto: i64,
    out: tokio::sync::mpsc::Sender<Result<ChainPage, DbError>>,
) {
    let read = match db.sqlite_file() {
        Some(file) => {
            let (file, sender) = (file.to_owned(), out.clone());
            tokio::task::spawn_blocking(move || read_chain_sqlite(&file, upto, &sender))
                .await
                .unwrap_or_else(|e| {
                    Err(DbError::Failed {
                        context: "read the audit log",
                        source: sqlx::Error::Io(std::io::Error::other(e)),
                    })
                })
        }
        None => read_chain_copy(db, upto, &out).await,
    };
    if let Err(err) = read {
        let _ = out.send(Err(err)).await;
    }
}

async fn read_chain_copy(
    db: &super::Db,
    upto: i64,
    out: &tokio::sync::mpsc::Sender<Result<ChainPage, DbError>>,
) -> Result<(), DbError> {
    use futures_util::TryStreamExt;
    use sqlx::Connection;
    let Some(conn) = db.postgres_connection().await else {
        return Err(DbError::Corrupt("COPY is PostgreSQL's".into()));
    };
    let mut conn = conn?;
    let failed = db_err("read the audit log");
    // The log is read in `seq` order through its primary key. A planner whose statistics lag a
    // grown log can pick a scan of the whole table and a sort instead: hundreds of megabytes
    // sorted on disk (`work_mem` is small), to give back the order the key already has. This
    // connection is the walk's alone and is closed after it.
    sqlx::Executor::execute(&mut conn, "SET enable_sort = off")
        .await
        .map_err(&failed)?;
    // `upto` is an integer: nothing from outside reaches the statement's text.
    let statement = format!(
        "COPY (SELECT {COLUMNS} FROM audit_entries WHERE seq <= {upto} ORDER BY seq) \
         TO STDOUT (FORMAT binary)"
    );
    let mut stream = conn.copy_out_raw(&statement).await.map_err(&failed)?;
    let mut copy = super::copy::BinaryCopy::<{ CHAIN_TEXTS + 2 }>::default();
    let mut chain = ChainPage::default();
    while let Some(bytes) = stream.try_next().await.map_err(&failed)? {
        copy.feed(&bytes, &mut |fields| {
            let seq = super::copy::bigint(fields[0])?;
            let at = super::copy::bigint(fields[1])?;
            chain.push(seq, at, fields[2..].iter().copied());
            Ok(())
        })?;
        if chain.is_full() && out.send(Ok(std::mem::take(&mut chain))).await.is_err() {
            return Ok(());
        }
    }
    copy.finish()?;
    drop(stream);
    if !chain.rows.is_empty() {
        let _ = out.send(Ok(chain)).await;
    }
    let _ = conn.close().await;
    Ok(())
}

fn read_chain_sqlite(
    file: &std::path::Path,
    upto: i64,
    out: &tokio::sync::mpsc::Sender<Result<ChainPage, DbError>>,
) -> Result<(), DbError> {
    use rusqlite::types::ValueRef;
    let failed = |e: rusqlite::Error| DbError::Failed {
        context: "read the audit log",
        source: sqlx::Error::Io(std::io::Error::other(e)),
    };
    let flags =
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = rusqlite::Connection::open_with_flags(file, flags).map_err(failed)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(failed)?;
    // One statement is one read snapshot from its first step to its last.
    let mut statement = conn
        .prepare(&format!(
            "SELECT {COLUMNS} FROM audit_entries WHERE seq <= ?1 ORDER BY seq"
        ))
        .map_err(failed)?;
    let mut rows = statement.query([upto]).map_err(failed)?;
    let mut chain = ChainPage::default();
    let integer = |v: ValueRef<'_>| match v {
        ValueRef::Integer(n) => Ok(n),
        other => Err(DbError::Corrupt(format!(
            "an audit entry's seq or time is {:?}",
            other.data_type()
        ))),
    };
    while let Some(row) = rows.next().map_err(failed)? {
        let seq = integer(row.get_ref(0).map_err(failed)?)?;
        let at = integer(row.get_ref(1).map_err(failed)?)?;
        let mut texts = [None; CHAIN_TEXTS];
        for (i, text) in texts.iter_mut().enumerate() {
            *text = match row.get_ref(i + 2).map_err(failed)? {
                ValueRef::Null => None,
                ValueRef::Text(t) | ValueRef::Blob(t) => Some(t),
                // A number where text belongs hashes as no text at all: the entry fails to verify.
                _ => Some(&b""[..]),
            };
        }
        chain.push(seq, at, texts.into_iter());
        if chain.is_full() && out.blocking_send(Ok(std::mem::take(&mut chain))).is_err() {
            return Ok(());
        }
    }
    if !chain.rows.is_empty() {
        let _ = out.blocking_send(Ok(chain));
    }
    Ok(())
}

/// Filters of an audit query; `None` means "any".
#[derive(Debug, Default)]
pub struct Filter {
    pub citizen_idx: Option<CitizenIndex>,
    pub actor: Option<String>,
    pub action: Option<AuditAction>,
    pub outcome: Option<Outcome>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub after_seq: i64,
    pub limit: i64,
    /// Only what a citizen's access log lists: reads of their records by someone else, and
    /// erasures of their documents (each entry's receipt is then a destruction receipt).
    pub access_log: bool,
}

/// The condition for "someone other than the citizen saw the citizen's records, or one of
/// their documents was erased": literals from the vocabulary's own words, never from input.
fn access_log() -> String {
    let reads = AuditAction::READS
        .iter()
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        " AND outcome = '{}' AND ((role <> '{}' AND action IN ({reads})) OR action = '{}')",
        Outcome::Allowed,
        Role::Citizen,
        AuditAction::DocumentErase
    )
}

pub async fn query<'e, E>(executor: E, f: &Filter) -> Result<Vec<EntryRow>, DbError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let mut sql = format!("SELECT {COLUMNS} FROM audit_entries WHERE seq > $1");
    let mut n = 1;
    let mut clause = |sql: &mut String, text: &str| {
        n += 1;
        sql.push_str(&text.replace('?', &format!("${n}")));
    };
    if f.citizen_idx.is_some() {
        clause(&mut sql, " AND citizen_idx = ?");
    }
    if f.actor.is_some() {
        clause(&mut sql, " AND actor = ?");
    }
    if f.action.is_some() {
        clause(&mut sql, " AND action = ?");
    }
    if f.outcome.is_some() {
        clause(&mut sql, " AND outcome = ?");
    }
    if f.since.is_some() {
        clause(&mut sql, " AND at >= ?");
    }
    if f.until.is_some() {
        clause(&mut sql, " AND at < ?");
    }
    if f.access_log {
        sql.push_str(&access_log());
    }
    clause(&mut sql, " ORDER BY seq LIMIT ?");
    let mut q = sqlx::query(&sql).bind(f.after_seq);
    let words = [
        f.citizen_idx.map(|c| c.to_hex()),
        f.actor.clone(),
        f.action.map(|a| a.as_str().to_owned()),
        f.outcome.map(|o| o.as_str().to_owned()),
    ];
    for value in words.into_iter().flatten() {
        q = q.bind(value);
    }
    for value in [f.since, f.until].into_iter().flatten() {
        q = q.bind(value);
    }
    let rows = q
        .bind(f.limit)
        .fetch_all(executor)
        .await
        .map_err(db_err("query audit log"))?;
    rows.iter().map(from_row).collect()
}

/// One entry by `seq`.
pub async fn entry<'e, E>(executor: E, seq: i64) -> Result<Option<EntryRow>, DbError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM audit_entries WHERE seq = $1"
    ))
    .bind(seq)
    .fetch_optional(executor)
    .await
    .map_err(db_err("read audit entry"))?;
    row.as_ref().map(from_row).transpose()
}

// ---- The Merkle tree's stored nodes and the signed checkpoints (see `crate::audit::tree`).

/// Tree nodes (level, index, hex hash), in multi-row statements.
pub fn push_nodes<'q>(script: &mut Script<'q>, nodes: &'q [(u32, u64, String)]) {
    for chunk in nodes.chunks(256) {
        script.push(&format!(
            "INSERT INTO audit_tree (level, idx, hash) VALUES {}",
            placeholders(chunk.len(), 3)
        ));
        for (level, idx, hash) in chunk {
            script
                .bind(i64::from(*level))
                .bind(*idx as i64)
                .bind(hash.as_str());
        }
    }
}

/// The stored hashes of `nodes` (level, index), in the same order; `None` where one is missing.
/// One query for all of them (a proof or a right edge is a few dozen nodes at most).
pub async fn nodes(
    conn: &mut sqlx::AnyConnection,
    nodes: &[(u32, u64)],
) -> Result<Vec<Option<String>>, DbError> {
    if nodes.is_empty() {
        return Ok(Vec::new());
    }
    let sql = nodes_sql(nodes.len());
    let mut q = sqlx::query(&sql);
    for &(level, idx) in nodes {
        q = q.bind(i64::from(level)).bind(idx as i64);
    }
    let rows = q
        .fetch_all(&mut *conn)
        .await
        .map_err(db_err("read audit tree"))?;
    nodes_from(&rows, nodes)
}

/// [`nodes`]' query in a script (`None`: no node asked for).
pub fn push_select_nodes(script: &mut Script, nodes: &[(u32, u64)]) -> Option<Slot> {
    if nodes.is_empty() {
        return None;
    }
    let slot = script.push(&nodes_sql(nodes.len()));
    for &(level, idx) in nodes {
        script.bind(i64::from(level)).bind(idx as i64);
    }
    Some(slot)
}

fn nodes_sql(count: usize) -> String {
    let wanted: Vec<String> = (0..count)
        .map(|i| format!("(level = ${} AND idx = ${})", 2 * i + 1, 2 * i + 2))
        .collect();
    format!(
        "SELECT level, idx, hash FROM audit_tree WHERE {}",
        wanted.join(" OR ")
    )
}

/// The hashes of `nodes` from their query's rows, in the same order.
pub fn nodes_from(rows: &[AnyRow], nodes: &[(u32, u64)]) -> Result<Vec<Option<String>>, DbError> {
    let mut found = std::collections::HashMap::with_capacity(rows.len());
    for r in rows {
        let level: i64 = col(r, "level")?;
        let idx: i64 = col(r, "idx")?;
        found.insert((level, idx), col::<String>(r, "hash")?);
    }
    Ok(nodes
        .iter()
        .map(|&(level, idx)| found.get(&(i64::from(level), idx as i64)).cloned())
        .collect())
}

/// How many leaves the stored tree has. Leaves are only ever added in order, so this is the
/// highest index plus one: one step down the primary key, not a count of the log (it runs at
/// every start).
pub async fn leaf_count<'e, E>(executor: E) -> Result<i64, DbError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row = sqlx::query("SELECT COALESCE(MAX(idx) + 1, 0) AS n FROM audit_tree WHERE level = 0")
        .fetch_one(executor)
        .await
        .map_err(db_err("count audit tree leaves"))?;
    col(&row, "n")
}

/// A signed checkpoint as kept in the database.
#[derive(Clone, Debug)]
pub struct NoteRow {
    pub size: i64,
    pub root: String,
    pub note: String,
    pub made_at: i64,
}

fn note_from_row(row: &AnyRow) -> Result<NoteRow, DbError> {
    Ok(NoteRow {
        size: col(row, "size")?,
        root: col(row, "root")?,
        note: col(row, "note")?,
        made_at: col(row, "made_at")?,
    })
}

/// Keeps a checkpoint; a second process making the same one is a no-op.
pub async fn insert_note<'e, E>(executor: E, n: &NoteRow) -> Result<(), DbError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query(
        "INSERT INTO audit_notes (size, root, note, made_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (size) DO NOTHING",
    )
    .bind(n.size)
    .bind(&n.root)
    .bind(&n.note)
    .bind(n.made_at)
    .execute(executor)
    .await
    .map_err(db_err("keep audit checkpoint"))?;
    Ok(())
}

pub async fn latest_note<'e, E>(executor: E) -> Result<Option<NoteRow>, DbError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row =
        sqlx::query("SELECT size, root, note, made_at FROM audit_notes ORDER BY size DESC LIMIT 1")
            .fetch_optional(executor)
            .await
            .map_err(db_err("latest audit checkpoint"))?;
    row.as_ref().map(note_from_row).transpose()
}

/// The smallest kept checkpoint covering at least `size` entries.
pub async fn note_covering<'e, E>(executor: E, size: i64) -> Result<Option<NoteRow>, DbError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row = sqlx::query(
        "SELECT size, root, note, made_at FROM audit_notes WHERE size >= $1 ORDER BY size LIMIT 1",
    )
    .bind(size)
    .fetch_optional(executor)
    .await
    .map_err(db_err("audit checkpoint"))?;
    row.as_ref().map(note_from_row).transpose()
}

/// Kept checkpoints after `size`, smallest first, a page at a time.
pub async fn notes_after<'e, E>(executor: E, size: i64, limit: i64) -> Result<Vec<NoteRow>, DbError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let rows = sqlx::query(
        "SELECT size, root, note, made_at FROM audit_notes WHERE size > $1 ORDER BY size LIMIT $2",
    )
    .bind(size)
    .bind(limit)
    .fetch_all(executor)
    .await
    .map_err(db_err("audit signed heads"))?;
    rows.iter().map(note_from_row).collect()
}
