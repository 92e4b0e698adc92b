//! The audit log's Merkle tree in the database: the hash of every complete subtree is stored
//! when its last leaf is appended (in the same transaction as the entry), so roots and proofs
//! read O(log² n) rows at most and never the whole log. The hashing is [`super::merkle`].

use super::merkle::{self, Hash};
use crate::db::audit as store;
use crate::db::{DbError, Tx};

fn decode(hex_hash: &str) -> Result<Hash, DbError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_hash, &mut out)
        .map_err(|_| DbError::Corrupt("an audit tree hash is not 32 hex bytes".into()))?;
    Ok(out)
}

/// Adds leaf `index` and every subtree it completes. Fails closed if a left sibling is
/// missing (a tree that does not match the log must not grow).
pub async fn add_leaf(tx: &mut Tx, index: u64, leaf: Hash) -> Result<(), DbError> {
    store::insert_node(tx, 0, index, &hex::encode(leaf)).await?;
    let (mut level, mut idx, mut hash) = (0u32, index, leaf);
    while idx & 1 == 1 {
        let left = store::nodes(tx, &[(level, idx - 1)]).await?;
        let left = match left.first() {
            Some(Some(h)) => decode(h)?,
            _ => {
                return Err(DbError::Corrupt(format!(
                    "the audit tree lacks node ({level}, {}) under leaf {index}",
                    idx - 1
                )));
            }
        };
        hash = merkle::node_hash(&left, &hash);
        level += 1;
        idx >>= 1;
        store::insert_node(tx, level, idx, &hex::encode(hash)).await?;
    }
    Ok(())
}

/// MTH of each of `ranges` (each `[lo, hi)`), from stored nodes.
pub async fn range_hashes(
    conn: &mut sqlx::AnyConnection,
    ranges: &[(u64, u64)],
) -> Result<Vec<Hash>, DbError> {
    let mut out = Vec::with_capacity(ranges.len());
    for &(lo, hi) in ranges {
        let nodes = merkle::complete_subtrees(lo, hi);
        let stored = store::nodes(conn, &nodes).await?;
        let mut hashes = Vec::with_capacity(nodes.len());
        for (node, hash) in nodes.iter().zip(stored) {
            let Some(hash) = hash else {
                return Err(DbError::Corrupt(format!(
                    "the audit tree lacks node {node:?} of leaves {lo}..{hi}"
                )));
            };
            hashes.push(decode(&hash)?);
        }
        out.push(merkle::fold(&hashes));
    }
    Ok(out)
}

/// The root of the first `size` leaves.
pub async fn root(conn: &mut sqlx::AnyConnection, size: u64) -> Result<Hash, DbError> {
    if size == 0 {
        return Ok(merkle::empty_root());
    }
    Ok(range_hashes(conn, &[(0, size)]).await?[0])
}

pub async fn inclusion_proof(
    conn: &mut sqlx::AnyConnection,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, DbError> {
    range_hashes(conn, &merkle::inclusion_ranges(index, size)).await
}

pub async fn consistency_proof(
    conn: &mut sqlx::AnyConnection,
    old: u64,
    new: u64,
) -> Result<Vec<Hash>, DbError> {
    range_hashes(conn, &merkle::consistency_ranges(old, new)).await
}
