//! Several statements sent as one. On SQLite every statement of a query goes to the connection's
//! own thread and back (sqlx's SQLite worker): a hand-off that costs many times SQLite's own
//! work on a small statement. A [`Script`] joins its statements into one text, which sqlx runs
//! in a single command to that thread, `$n` numbered across the whole text; on PostgreSQL, where
//! the server's round trip is the cost either way, the statements run in turn.
//!
//! This leans on behaviour sqlx marks deprecated for prepared statements (sqlx issue 3108), so
//! sqlx is pinned to its minor version in `Cargo.toml`, and `tests/vault/script.rs` proves on
//! every run that a script returns every statement's rows and fails whole.
//!
//! Rules the type enforces (a breach is a programming error and panics at once, in every test
//! that builds the statement): a statement's text holds no literal (`'`), so the renumbering of
//! `$n` cannot touch one; it is bound exactly as many values as it has parameters, and no more
//! than SQLite allows one statement.

use futures_util::TryStreamExt;
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::{Arguments, Either, Encode, Executor, Type};

use super::Backend;

/// SQLite's ceiling on the parameters of one statement (`SQLITE_MAX_VARIABLE_NUMBER`, whose
/// default has been 32,766 since SQLite 3.32; libsqlite3-sys builds it so). It holds per
/// statement, not per script: each statement of the text is prepared on its own, its `$n` names
/// counted within it. Kept on both backends (PostgreSQL's is 65,535).
pub const SQLITE_MAX_PARAMETERS: usize = 32_766;

/// Statements to run as one, in order, each with its own `$1…$n`.
pub struct Script<'q> {
    backend: Backend,
    statements: Vec<Statement>,
    /// On SQLite one list for the whole text; on PostgreSQL one per statement.
    args: Vec<AnyArguments<'q>>,
}

struct Statement {
    /// The text, its placeholders already numbered across the script on SQLite.
    sql: String,
    params: usize,
    /// Where its values start in its list of arguments.
    first_arg: usize,
}

/// Which statement of a script (for its rows).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot(usize);

/// Every statement's rows, by [`Slot`].
pub struct Rows(Vec<Vec<AnyRow>>);

impl Rows {
    pub fn of(&self, slot: Slot) -> &[AnyRow] {
        &self.0[slot.0]
    }
}

impl<'q> Script<'q> {
    pub fn new(backend: Backend) -> Self {
        Self {
            backend,
            statements: Vec::new(),
            args: Vec::new(),
        }
    }

    /// How many statements it holds.
    pub fn len(&self) -> usize {
        self.statements.len()
    }

    pub fn is_empty(&self) -> bool {
        self.statements.is_empty()
    }

    /// Adds a statement whose parameters are `$1…$n`; bind them next, in order, with
    /// [`Script::bind`].
    pub fn push(&mut self, sql: &str) -> Slot {
        self.check_bound();
        assert!(
            !sql.contains('\'') && !sql.contains(';'),
            "a script statement binds its values and is one statement: {sql}"
        );
        let offset = self.bound();
        let (sql, params) = match self.backend {
            Backend::Sqlite => renumber(sql, offset),
            Backend::Postgres => renumber(sql, 0),
        };
        match self.backend {
            Backend::Sqlite if self.args.is_empty() => self.args.push(AnyArguments::default()),
            Backend::Sqlite => {}
            Backend::Postgres => self.args.push(AnyArguments::default()),
        }
        assert!(
            params <= SQLITE_MAX_PARAMETERS,
            "a statement over SQLite's {SQLITE_MAX_PARAMETERS} parameters"
        );
        let first_arg = self.args.last().map_or(0, |a| a.len());
        self.statements.push(Statement {
            sql,
            params,
            first_arg,
        });
        Slot(self.statements.len() - 1)
    }

    /// Binds the last statement's next parameter.
    pub fn bind<T>(&mut self, value: T) -> &mut Self
    where
        T: 'q + Encode<'q, sqlx::Any> + Type<sqlx::Any>,
    {
        let args = self.args.last_mut().expect("bind follows push");
        args.add(value).expect("an Any value encodes");
        self
    }

    /// Values bound so far across the script (SQLite's numbering runs on from here).
    fn bound(&self) -> usize {
        match self.backend {
            Backend::Sqlite => self.args.first().map_or(0, |a| a.len()),
            Backend::Postgres => 0,
        }
    }

    fn check_bound(&self) {
        if let (Some(s), Some(args)) = (self.statements.last(), self.args.last()) {
            assert_eq!(
                args.len() - s.first_arg,
                s.params,
                "values bound to a statement of {} parameters: {}",
                s.params,
                s.sql
            );
        }
    }

    /// Runs every statement on `conn`, in order; stops at the first that fails. What the ones
    /// before it did stays in the open transaction: the caller must roll it back or discard the
    /// connection ([`super::Tx`] does, unless it commits).
    pub async fn run(self, conn: &mut sqlx::AnyConnection) -> Result<Rows, sqlx::Error> {
        self.check_bound();
        match self.backend {
            Backend::Sqlite => self.run_joined(conn).await,
            Backend::Postgres => self.run_in_turn(conn).await,
        }
    }

    async fn run_joined(self, conn: &mut sqlx::AnyConnection) -> Result<Rows, sqlx::Error> {
        let count = self.statements.len();
        let mut rows = vec![Vec::new(); count];
        let Some(args) = self.args.into_iter().next() else {
            return Ok(Rows(rows));
        };
        let text = self
            .statements
            .iter()
            .map(|s| s.sql.as_str())
            .collect::<Vec<_>>()
            .join(";\n");
        // The text changes with the batch's shape: kept out of the statement cache, where it
        // would push out the request path's statements.
        let query = sqlx::query_with(&text, args).persistent(false);
        // Every result is read to the end: a stream dropped early would leave the statements
        // after it unrun (`fetch_one` stops at the first row of the first statement).
        let mut results = conn.fetch_many(query);
        let mut at = 0;
        while let Some(step) = results.try_next().await? {
            match step {
                Either::Right(row) if at < count => rows[at].push(row),
                Either::Left(_) => at += 1,
                Either::Right(_) => return Err(extra(count)),
            }
        }
        if at != count {
            return Err(extra(count));
        }
        Ok(Rows(rows))
    }

    async fn run_in_turn(self, conn: &mut sqlx::AnyConnection) -> Result<Rows, sqlx::Error> {
        let mut rows = Vec::with_capacity(self.statements.len());
        for (s, args) in self.statements.iter().zip(self.args) {
            rows.push(if s.params == 0 {
                // Sent as is (`BEGIN`, `COMMIT`), as a statement without values always was.
                conn.fetch_all(s.sql.as_str()).await?
            } else {
                sqlx::query_with(&s.sql, args).fetch_all(&mut *conn).await?
            });
        }
        Ok(Rows(rows))
    }

    /// Whether the first statement begins a transaction.
    pub fn begins_transaction(&self) -> bool {
        self.statements
            .first()
            .is_some_and(|s| s.sql.starts_with("BEGIN"))
    }
}

fn extra(count: usize) -> sqlx::Error {
    sqlx::Error::Protocol(format!(
        "a script of {count} statements did not give {count} results"
    ))
}

/// `sql` with each `$k` made `$(k + offset)`, and its count of parameters (the highest `k`).
fn renumber(sql: &str, offset: usize) -> (String, usize) {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut params = 0;
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at + 1]);
        let digits = rest[at + 1..]
            .find(|c: char| !c.is_ascii_digit())
            .map_or(rest.len() - at - 1, |n| n);
        let k: usize = rest[at + 1..at + 1 + digits]
            .parse()
            .expect("a `$` starts a numbered parameter");
        params = params.max(k);
        out.push_str(&(k + offset).to_string());
        rest = &rest[at + 1 + digits..];
    }
    out.push_str(rest);
    (out, params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renumbering_moves_every_parameter_and_counts_them() {
        assert_eq!(
            renumber("UPDATE t SET a = $2 WHERE b = $1 AND c = $10", 5),
            (
                "UPDATE t SET a = $7 WHERE b = $6 AND c = $15".to_owned(),
                10
            )
        );
        assert_eq!(renumber("COMMIT", 3), ("COMMIT".to_owned(), 0));
    }

    #[test]
    #[should_panic(expected = "values bound")]
    fn a_statement_bound_short_is_refused() {
        let mut s = Script::new(Backend::Sqlite);
        s.push("SELECT $1, $2");
        s.bind(1i64);
        s.push("SELECT 1");
    }

    #[test]
    #[should_panic(expected = "binds its values")]
    fn a_literal_is_refused() {
        Script::new(Backend::Sqlite).push("SELECT 'x'");
    }

    #[test]
    #[should_panic(expected = "parameters")]
    fn sqlite_s_parameter_ceiling_is_kept_per_statement() {
        let mut s = Script::new(Backend::Sqlite);
        s.push(&format!("SELECT ${}", SQLITE_MAX_PARAMETERS + 1));
    }
}
