//! The `sign_in_flows` table: sign-ins through an identity provider that have started and not
//! yet ended. A flow is taken (deleted and returned) in one statement, so its state is used at
//! most once however many requests race for it, in one process or many.

use super::{DbError, Tx, col, db_err, parse_col};
use crate::domain::SignInKind;

/// A started sign-in, as its callback needs it.
pub struct Flow {
    pub kind: SignInKind,
    pub browser_hash: String,
    pub nonce: String,
    pub code_verifier: String,
    pub expires_at: i64,
}

/// Keeps a started flow under the SHA-256 of its state, and forgets flows that have expired.
pub async fn insert(tx: &mut Tx, state_hash: &str, flow: &Flow, now: i64) -> Result<(), DbError> {
    sqlx::query("DELETE FROM sign_in_flows WHERE expires_at < $1")
        .bind(now)
        .execute(&mut **tx)
        .await
        .map_err(db_err("forget expired sign-ins"))?;
    sqlx::query(
        "INSERT INTO sign_in_flows (state_hash, browser_hash, kind, nonce, code_verifier, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(state_hash)
    .bind(&flow.browser_hash)
    .bind(flow.kind.as_str())
    .bind(&flow.nonce)
    .bind(&flow.code_verifier)
    .bind(flow.expires_at)
    .execute(&mut **tx)
    .await
    .map_err(db_err("keep a sign-in"))?;
    Ok(())
}

/// Takes the flow with this state hash: it is gone afterwards whatever happens next.
pub async fn take(tx: &mut Tx, state_hash: &str) -> Result<Option<Flow>, DbError> {
    let row = sqlx::query(
        "DELETE FROM sign_in_flows WHERE state_hash = $1 \
         RETURNING browser_hash, kind, nonce, code_verifier, expires_at",
    )
    .bind(state_hash)
    .fetch_optional(&mut **tx)
    .await
    .map_err(db_err("take a sign-in"))?;
    row.map(|r| {
        Ok(Flow {
            kind: parse_col(&col::<String>(&r, "kind")?)?,
            browser_hash: col(&r, "browser_hash")?,
            nonce: col(&r, "nonce")?,
            code_verifier: col(&r, "code_verifier")?,
            expires_at: col(&r, "expires_at")?,
        })
    })
    .transpose()
}
