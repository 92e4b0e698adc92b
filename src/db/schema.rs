//! The schema hoso made, and nothing else. Someone holding the database can plant a trigger
//! that resets a grant's uses on every update, a view or rule that rewrites what hoso reads, a
//! function a trigger calls: each would act inside hoso's own transactions. The vault refuses
//! to start on a database whose schema is not exactly the one its migrations make, and
//! `hoso restore` refuses such a backup.
//!
//! The expected schema is made, each time, by the same migrations ([`super::apply_migrations`])
//! somewhere that is thrown away — an in-memory SQLite database; on PostgreSQL a scratch schema
//! inside a transaction that is rolled back — and read back the way the live one is, so there is
//! no second list of objects to keep in step.

use std::collections::BTreeSet;

use sqlx::{Connection, Executor};

use super::{Backend, Db, DbError, col, db_err};

/// One schema object, as the catalog describes it.
type Object = (String, String, String);

/// The objects of the live database that its migrations do not make, or make differently, and
/// those they make that are missing, in words (empty: the schema is hoso's own).
pub async fn differences(db: &Db) -> Result<Vec<String>, DbError> {
    let (expected, actual) = match db.backend {
        Backend::Sqlite => (sqlite_expected(db).await?, sqlite_objects(&db.pool).await?),
        Backend::Postgres => postgres_schemas(db).await?,
    };
    let mut out: Vec<String> = actual
        .difference(&expected)
        .map(|(kind, name, detail)| match detail.as_str() {
            "" => format!("{kind} {name} is not hoso's"),
            on => format!("{kind} {name} ({on}) is not hoso's"),
        })
        .collect();
    out.extend(
        expected
            .difference(&actual)
            .map(|(kind, name, _)| format!("{kind} {name} is missing or was changed")),
    );
    Ok(out)
}

/// What SQLite's catalog says, but the statistics `ANALYZE` keeps (they change plans, not
/// results). `sql` is the statement that made each object as SQLite keeps it, so a table or
/// trigger redefined under hoso's name, or given another default or check, differs. SQLite's
/// own objects (automatic indexes) are made the same way in the expected schema.
async fn sqlite_objects<'e, E>(executor: E) -> Result<BTreeSet<Object>, DbError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let rows = sqlx::query(
        "SELECT type, name, COALESCE(sql, '') AS sql FROM sqlite_master \
         WHERE NOT (type = 'table' AND name LIKE 'sqlite\\_stat%' ESCAPE '\\')",
    )
    .fetch_all(executor)
    .await
    .map_err(db_err("read the schema"))?;
    rows.iter()
        .map(|r| Ok((col(r, "type")?, col(r, "name")?, col(r, "sql")?)))
        .collect()
}

async fn sqlite_expected(db: &Db) -> Result<BTreeSet<Object>, DbError> {
    let fail = db_err("make the expected schema");
    let mut scratch = sqlx::AnyConnection::connect("sqlite::memory:")
        .await
        .map_err(&fail)?;
    super::apply_migrations(&mut scratch, db.migrations())
        .await
        .map_err(&fail)?;
    let objects = sqlite_objects(&mut scratch).await;
    let _ = scratch.close().await;
    objects
}

/// Relations (tables, views, indexes, sequences…) and every column's type, default and
/// generation; constraints and index definitions; triggers, rules and row policies on them;
/// tables inheriting from them; functions; in schema `$1` (its name taken out of definitions, so
/// the scratch schema's read the same). Event triggers are the database's, listed for the live
/// schema only. A default or a check that calls a function from another schema shows in its
/// definition.
const POSTGRES_OBJECTS: &str = "\
    SELECT CASE c.relkind WHEN 'r' THEN 'table' WHEN 'v' THEN 'view' WHEN 'm' THEN \
      'materialized view' WHEN 'i' THEN 'index' WHEN 'S' THEN 'sequence' WHEN 'f' THEN \
      'foreign table' WHEN 'p' THEN 'partitioned table' ELSE 'relation' END AS kind, \
      c.relname::text AS name, '' AS detail FROM pg_class c \
      JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 \
    UNION ALL SELECT 'column', c.relname::text || '.' || a.attname::text, \
      format_type(a.atttypid, a.atttypmod) || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END \
      || COALESCE(' default ' || replace(pg_get_expr(d.adbin, d.adrelid), $1 || '.', ''), '') \
      || a.attgenerated::text FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
      JOIN pg_namespace n ON n.oid = c.relnamespace \
      LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
      WHERE n.nspname = $1 AND a.attnum > 0 AND NOT a.attisdropped \
    UNION ALL SELECT 'constraint', k.conname::text, \
      replace(pg_get_constraintdef(k.oid), $1 || '.', '') FROM pg_constraint k \
      JOIN pg_namespace n ON n.oid = k.connamespace WHERE n.nspname = $1 \
    UNION ALL SELECT 'index definition', i.indexrelid::regclass::text, \
      replace(pg_get_indexdef(i.indexrelid), $1 || '.', '') FROM pg_index i \
      JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
      WHERE n.nspname = $1 \
    UNION ALL SELECT 'trigger', t.tgname::text, c.relname::text FROM pg_trigger t \
      JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
      WHERE n.nspname = $1 AND NOT t.tgisinternal \
    UNION ALL SELECT 'rule', r.rulename::text, c.relname::text FROM pg_rewrite r \
      JOIN pg_class c ON c.oid = r.ev_class JOIN pg_namespace n ON n.oid = c.relnamespace \
      WHERE n.nspname = $1 AND r.rulename <> '_RETURN' \
    UNION ALL SELECT 'policy', p.polname::text, c.relname::text FROM pg_policy p \
      JOIN pg_class c ON c.oid = p.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
      WHERE n.nspname = $1 \
    UNION ALL SELECT 'inheriting table', h.inhrelid::regclass::text, c.relname::text \
      FROM pg_inherits h JOIN pg_class c ON c.oid = h.inhparent \
      JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 \
    UNION ALL SELECT 'function', p.proname::text, p.prokind::text FROM pg_proc p \
      JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = $1 \
    UNION ALL SELECT 'event trigger', e.evtname::text, e.evtevent::text FROM pg_event_trigger e \
      WHERE $1 <> 'hoso_expected'";

async fn postgres_objects(
    conn: &mut sqlx::AnyConnection,
    schema: &str,
) -> Result<BTreeSet<Object>, DbError> {
    let rows = sqlx::query(POSTGRES_OBJECTS)
        .bind(schema)
        .fetch_all(&mut *conn)
        .await
        .map_err(db_err("read the schema"))?;
    rows.iter()
        .map(|r| Ok((col(r, "kind")?, col(r, "name")?, col(r, "detail")?)))
        .collect()
}

/// The expected objects (made in a scratch schema, in a transaction rolled back) and the live
/// ones (in the connection's current schema).
async fn postgres_schemas(db: &Db) -> Result<(BTreeSet<Object>, BTreeSet<Object>), DbError> {
    let fail = db_err("make the expected schema");
    let mut conn = db.pool.acquire().await.map_err(&fail)?;
    let live: String = sqlx::query_scalar("SELECT current_schema()::text")
        .fetch_one(&mut *conn)
        .await
        .map_err(&fail)?;
    let actual = postgres_objects(&mut conn, &live).await?;
    let mut tx = conn.begin().await.map_err(&fail)?;
    tx.execute("CREATE SCHEMA hoso_expected")
        .await
        .map_err(&fail)?;
    tx.execute("SET LOCAL search_path TO hoso_expected")
        .await
        .map_err(&fail)?;
    super::apply_migrations(&mut tx, db.migrations())
        .await
        .map_err(&fail)?;
    let expected = postgres_objects(&mut tx, "hoso_expected").await;
    tx.rollback().await.map_err(&fail)?;
    Ok((expected?, actual))
}
