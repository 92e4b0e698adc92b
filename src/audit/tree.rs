//! The audit log's Merkle tree in the database: the hash of every complete subtree is stored
//! when its last leaf is appended (in the same transaction as the entry), so roots and proofs
//! read O(log² n) rows at most and never the whole log. The hashing is [`super::merkle`].

use super::merkle::{self, Hash};
use crate::db::audit as store;
use crate::db::script::{Rows, Script, Slot};
use crate::db::{DbError, Tx, db_err};

fn decode(hex_hash: &str) -> Result<Hash, DbError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_hash, &mut out)
        .map_err(|_| DbError::Corrupt("an audit tree hash is not 32 hex bytes".into()))?;
    Ok(out)
}

/// The tree's right edge, held in memory while a transaction appends: the stored subtrees that
/// new leaves complete (loaded once, with one query) and every node the appends make (stored
/// at the end, with one statement per few hundred). Appending is then pure hashing; what is
/// stored is exactly what one-leaf-at-a-time appends would have stored.
pub struct Frontier {
    known: std::collections::HashMap<(u32, u64), Hash>,
    made: Vec<(u32, u64, Hash)>,
}

/// The query for a right edge in a script, to be read by [`Frontier::loaded`].
pub struct EdgeQuery {
    size: u64,
    edge: Vec<(u32, u64)>,
    slot: Option<Slot>,
}

impl EdgeQuery {
    /// The tree size whose edge it reads.
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl Frontier {
    /// The right edge of a tree of `size` leaves.
    pub async fn load(tx: &mut Tx, size: u64) -> Result<Self, DbError> {
        let mut script = tx.script();
        let query = Self::push_load(&mut script, size);
        let rows = tx.run(script, db_err("read audit tree")).await?;
        Self::loaded(query, &rows)
    }

    /// [`Frontier::load`]'s query, in a script.
    pub fn push_load(script: &mut Script, size: u64) -> EdgeQuery {
        let edge = merkle::complete_subtrees(0, size);
        let slot = store::push_select_nodes(script, &edge);
        EdgeQuery { size, edge, slot }
    }

    /// The edge from its query's rows.
    pub fn loaded(query: EdgeQuery, rows: &Rows) -> Result<Self, DbError> {
        let stored = match query.slot {
            Some(slot) => store::nodes_from(rows.of(slot), &query.edge)?,
            None => Vec::new(),
        };
        let mut known = std::collections::HashMap::with_capacity(query.edge.len() + 1);
        for (node, hash) in query.edge.into_iter().zip(stored) {
            // A missing node is only an error if a new leaf needs it (see `add_leaf`).
            if let Some(hash) = hash {
                known.insert(node, decode(&hash)?);
            }
        }
        Ok(Self {
            known,
            made: Vec::new(),
        })
    }

    /// Adds leaf `index` and every subtree it completes. Fails closed if a left sibling is
    /// missing (a tree that does not match the log must not grow). Only the right edge is kept
    /// in memory: a left sibling is dropped once its parent is made.
    pub fn add_leaf(&mut self, index: u64, leaf: Hash) -> Result<(), DbError> {
        self.made.push((0, index, leaf));
        let (mut level, mut idx, mut hash) = (0u32, index, leaf);
        while idx & 1 == 1 {
            let Some(left) = self.known.remove(&(level, idx - 1)) else {
                return Err(DbError::Corrupt(format!(
                    "the audit tree lacks node ({level}, {}) under leaf {index}",
                    idx - 1
                )));
            };
            hash = merkle::node_hash(&left, &hash);
            level += 1;
            idx >>= 1;
            self.made.push((level, idx, hash));
        }
        self.known.insert((level, idx), hash);
        Ok(())
    }

    /// The root of the first `size` leaves, when `size` is what this edge was loaded at plus
    /// the leaves added since (`None` if a node of the edge was never stored: a tree built for
    /// an older log, read back from the database instead).
    pub fn root(&self, size: u64) -> Option<Hash> {
        let edge = merkle::complete_subtrees(0, size);
        let hashes: Option<Vec<Hash>> = edge.iter().map(|n| self.known.get(n).copied()).collect();
        hashes.map(|h| merkle::fold(&h))
    }

    /// Takes the nodes made since [`Frontier::load`] (or the last take), to store.
    pub fn take_made(&mut self) -> Vec<(u32, u64, String)> {
        self.made
            .drain(..)
            .map(|(level, idx, hash)| (level, idx, hex::encode(hash)))
            .collect()
    }

    /// Stores the nodes made since [`Frontier::load`] (or the last store).
    pub async fn store(&mut self, tx: &mut Tx) -> Result<(), DbError> {
        let made = self.take_made();
        let mut script = tx.script();
        store::push_nodes(&mut script, &made);
        tx.run(script, DbError::unavailable("audit log unavailable (tree)"))
            .await?;
        Ok(())
    }
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
