//! Several statements sent as one (`hoso::db::script`), on the suite's backend: on SQLite one
//! text through sqlx's multi-statement path (behaviour sqlx deprecates, so this proves it on
//! every run), on PostgreSQL each in turn. Every statement's rows come back, placeholders are
//! numbered per statement, and a script that fails midway keeps nothing.

use hoso::db::db_err;
use hoso::db::script::{SQLITE_MAX_PARAMETERS, Script};
use sqlx::Row;

use crate::common::TestVault;

async fn probe_table(vault: &TestVault) {
    vault
        .sql("CREATE TABLE script_probe (n BIGINT PRIMARY KEY, t TEXT NOT NULL)")
        .await;
}

fn texts(rows: &[sqlx::any::AnyRow], column: &str) -> Vec<String> {
    rows.iter().map(|r| r.get::<String, _>(column)).collect()
}

#[tokio::test]
async fn a_script_returns_every_statements_rows_each_with_its_own_parameters() {
    let vault = TestVault::new().await;
    probe_table(&vault).await;
    let db = &vault.state.vault.db;
    let mut script = db.script_begin();
    let insert = script.push("INSERT INTO script_probe (n, t) VALUES ($1, $2), ($3, $4)");
    script.bind(1i64).bind("one").bind(2i64).bind("two");
    let both = script.push("SELECT n, t FROM script_probe WHERE n >= $1 ORDER BY n");
    script.bind(1i64);
    let returned = script.push("UPDATE script_probe SET t = $2 WHERE n = $1 RETURNING t");
    script.bind(2i64).bind("deux");
    let none = script.push("SELECT n FROM script_probe WHERE t = $1");
    script.bind("two");
    let (mut tx, rows) = db.begin_with(script, db_err("probe")).await.unwrap();
    assert!(rows.of(insert).is_empty());
    assert_eq!(texts(rows.of(both), "t"), ["one", "two"]);
    assert_eq!(texts(rows.of(returned), "t"), ["deux"]);
    assert!(rows.of(none).is_empty());

    // A script run inside the transaction, and one that commits, see what came before.
    let mut script = tx.script();
    let seen = script.push("SELECT t FROM script_probe ORDER BY n");
    let rows = tx.run(script, db_err("probe")).await.unwrap();
    assert_eq!(texts(rows.of(seen), "t"), ["one", "deux"]);
    let mut script = tx.script();
    script.push("INSERT INTO script_probe (n, t) VALUES ($1, $2)");
    script.bind(3i64).bind("three");
    let counted = script.push("SELECT COUNT(*) AS c FROM script_probe WHERE n <= $1");
    script.bind(3i64);
    let rows = tx.commit_after(script, db_err("probe")).await.unwrap();
    assert_eq!(rows.of(counted)[0].get::<i64, _>("c"), 3);
    assert_eq!(vault.count("SELECT COUNT(*) FROM script_probe").await, 3);
}

/// The writer's scripts fail whole: a statement that fails stops the script, and nothing of the
/// transaction is kept, neither what ran before it in the script nor before the script.
#[tokio::test]
async fn a_script_that_fails_midway_keeps_nothing_and_the_next_transaction_runs() {
    let vault = TestVault::new().await;
    probe_table(&vault).await;
    let db = &vault.state.vault.db;

    // Failing in the script that begins the transaction.
    let mut script = db.script_begin();
    script.push("INSERT INTO script_probe (n, t) VALUES ($1, $2)");
    script.bind(1i64).bind("kept?");
    script.push("INSERT INTO script_probe (n, t) VALUES ($1, $2)");
    script.bind(1i64).bind("the same key again");
    script.push("INSERT INTO script_probe (n, t) VALUES ($1, $2)");
    script.bind(2i64).bind("after the failure");
    assert!(db.begin_with(script, db_err("probe")).await.is_err());
    assert_eq!(vault.count("SELECT COUNT(*) FROM script_probe").await, 0);

    // Failing in the script that commits.
    let mut tx = db.begin().await.unwrap();
    let mut script = tx.script();
    script.push("INSERT INTO script_probe (n, t) VALUES ($1, $2)");
    script.bind(3i64).bind("before the script");
    tx.run(script, db_err("probe")).await.unwrap();
    let mut script = tx.script();
    script.push("INSERT INTO script_probe (n, t) VALUES ($1, $2)");
    script.bind(4i64).bind("in the script");
    script.push("INSERT INTO script_probe (n, t) VALUES ($1, $2)");
    script.bind(4i64).bind("the same key again");
    assert!(tx.commit_after(script, db_err("probe")).await.is_err());
    assert_eq!(vault.count("SELECT COUNT(*) FROM script_probe").await, 0);

    // The write gate and the pool are whole: the next transaction commits.
    let mut script = db.script_begin();
    script.push("INSERT INTO script_probe (n, t) VALUES ($1, $2)");
    script.bind(5i64).bind("after");
    let (tx, _) = db.begin_with(script, db_err("probe")).await.unwrap();
    tx.commit("probe").await.unwrap();
    assert_eq!(
        vault
            .fetch_text("SELECT t FROM script_probe WHERE n = 5")
            .await,
        "after"
    );
}

/// A statement at SQLite's ceiling on parameters runs, and so does a script of two of them (the
/// ceiling is per statement): every value lands in its place, numbered on across the text.
#[tokio::test]
async fn statements_at_the_parameter_ceiling_run_with_every_value_in_place() {
    let vault = TestVault::new().await;
    let db = &vault.state.vault.db;
    let n = SQLITE_MAX_PARAMETERS;
    let rows: Vec<String> = (1..=n).map(|i| format!("(CAST(${i} AS BIGINT))")).collect();
    let sql = format!(
        "SELECT COUNT(*) AS c, MIN(column1) AS lo, MAX(column1) AS hi FROM (VALUES {}) AS t",
        rows.join(", ")
    );
    let mut script: Script = db.script_begin();
    let mut slots = Vec::new();
    for statement in 0..2 {
        slots.push(script.push(&sql));
        for i in 1..=n {
            script.bind((statement * n + i) as i64);
        }
    }
    let (tx, rows) = db.begin_with(script, db_err("probe")).await.unwrap();
    tx.rollback().await.unwrap();
    for (statement, slot) in slots.into_iter().enumerate() {
        let row = &rows.of(slot)[0];
        assert_eq!(row.get::<i64, _>("c"), n as i64);
        assert_eq!(row.get::<i64, _>("lo"), (statement * n + 1) as i64);
        assert_eq!(row.get::<i64, _>("hi"), ((statement + 1) * n) as i64);
    }
}
