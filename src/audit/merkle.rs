//! The Merkle tree over the audit log, as RFC 9162 (Certificate Transparency v2) §2.1 defines
//! it, in pure functions: hashing, which subtrees a proof needs, and checking proofs. Where the
//! hashes come from (the database, or memory in tests) is the caller's business, so proofs are
//! built from O(log n) stored nodes and never from the whole log.
//!
//! ```text
//! leaf hash  = SHA-256(0x00 | leaf data)
//! node hash  = SHA-256(0x01 | left | right)
//! MTH({})    = SHA-256()                 (the empty tree)
//! MTH(D[n])  = node(MTH(D[0:k]), MTH(D[k:n]))   k = largest power of two < n
//! ```
//!
//! A subtree `[lo, hi)` with `hi - lo` a power of two and `lo` a multiple of it is *complete*;
//! the vault stores the hash of every complete subtree, addressed by `(level, index)` with
//! `level = log2(hi - lo)` and `index = lo >> level`. Every range the RFC's recursions visit
//! starts at a multiple of its own split size, so any of them is a right-folded list of complete
//! subtrees ([`complete_subtrees`]).

use crate::crypto::{Sha256, sha256};

pub type Hash = [u8; 32];

pub fn leaf_hash(data: &[u8]) -> Hash {
    leaf_hash_of(&[data])
}

/// The leaf hash of the concatenation of `parts`.
pub fn leaf_hash_of(parts: &[&[u8]]) -> Hash {
    let mut hasher = Sha256::default();
    hasher.update(&[0x00]);
    for part in parts {
        hasher.update(part);
    }
    hasher.finish()
}

pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut buf = [0u8; 65];
    buf[0] = 0x01;
    buf[1..33].copy_from_slice(left);
    buf[33..].copy_from_slice(right);
    sha256(&buf)
}

pub fn empty_root() -> Hash {
    sha256(&[])
}

/// The largest power of two strictly below `n` (n ≥ 2).
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// A stored node: `(level, index)`, covering leaves `[index << level, (index + 1) << level)`.
pub type Node = (u32, u64);

/// The complete subtrees whose right fold is MTH of leaves `[lo, hi)`, largest first.
/// `lo` must be a multiple of the largest power of two ≤ `hi - lo`, as every range of the
/// RFC's recursions is.
pub fn complete_subtrees(lo: u64, hi: u64) -> Vec<Node> {
    let mut out = Vec::new();
    let mut lo = lo;
    while lo < hi {
        let n = hi - lo;
        let size = if n.is_power_of_two() { n } else { split(n) };
        let level = size.trailing_zeros();
        debug_assert_eq!(lo % size, 0, "unaligned range");
        out.push((level, lo >> level));
        lo += size;
    }
    out
}

/// MTH from the hashes of [`complete_subtrees`], in the same order.
pub fn fold(hashes: &[Hash]) -> Hash {
    match hashes.split_last() {
        None => empty_root(),
        Some((last, rest)) => rest
            .iter()
            .rev()
            .fold(*last, |acc, left| node_hash(left, &acc)),
    }
}

/// The ranges whose MTHs form the inclusion proof of leaf `index` in a tree of `size` leaves
/// (RFC 9162 §2.1.3.1, PATH), in proof order (nearest the leaf first).
pub fn inclusion_ranges(index: u64, size: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    path(index, 0, size, &mut out);
    out
}

fn path(m: u64, lo: u64, hi: u64, out: &mut Vec<(u64, u64)>) {
    let n = hi - lo;
    if n <= 1 {
        return;
    }
    let k = split(n);
    if m - lo < k {
        path(m, lo, lo + k, out);
        out.push((lo + k, hi));
    } else {
        path(m, lo + k, hi, out);
        out.push((lo, lo + k));
    }
}

/// The ranges whose MTHs form the consistency proof from `old` to `new` leaves (RFC 9162
/// §2.1.4.1, PROOF), in proof order. Empty when `old` is 0 or equals `new`.
pub fn consistency_ranges(old: u64, new: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    if old > 0 && old < new {
        subproof(old, 0, new, true, &mut out);
    }
    out
}

fn subproof(m: u64, lo: u64, hi: u64, whole: bool, out: &mut Vec<(u64, u64)>) {
    let n = hi - lo;
    if m == n {
        if !whole {
            out.push((lo, hi));
        }
        return;
    }
    let k = split(n);
    if m <= k {
        subproof(m, lo, lo + k, whole, out);
        out.push((lo + k, hi));
    } else {
        subproof(m - k, lo + k, hi, false, out);
        out.push((lo, lo + k));
    }
}

/// Checks an inclusion proof (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f_n, mut s_n) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    s_n == 0 && r == *root
}

/// Checks a consistency proof between two tree heads (RFC 9162 §2.1.4.2).
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> bool {
    if old > new {
        return false;
    }
    if old == new {
        return proof.is_empty() && old_root == new_root;
    }
    if old == 0 {
        return proof.is_empty();
    }
    let mut path: Vec<Hash> = proof.to_vec();
    if old.is_power_of_two() {
        path.insert(0, *old_root);
    }
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    let (mut f_n, mut s_n) = (old - 1, new - 1);
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    let (mut f_r, mut s_r) = (*first, *first);
    for c in rest {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            f_r = node_hash(c, &f_r);
            s_r = node_hash(c, &s_r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            s_r = node_hash(&s_r, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    f_r == *old_root && s_r == *new_root && s_n == 0
}

/// The right edge of a tree as its leaves stream past: O(log n) hashes, enough for the root
/// at the current size. `hoso audit verify` builds the tree this way in one pass, so memory
/// stays flat in the log's size.
#[derive(Default)]
pub struct CompactRange {
    size: u64,
    /// Complete subtrees covering `[0, size)`, largest first.
    stack: Vec<Hash>,
}

impl CompactRange {
    pub fn push(&mut self, leaf: Hash) {
        let mut hash = leaf;
        let mut size = self.size;
        while size & 1 == 1 {
            let left = self.stack.pop().expect("one subtree per set bit");
            hash = node_hash(&left, &hash);
            size >>= 1;
        }
        self.stack.push(hash);
        self.size += 1;
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn root(&self) -> Hash {
        fold(&self.stack)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// MTH straight from the RFC's definition, for comparison.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => empty_root(),
            1 => leaves[0],
            n => {
                let k = split(n as u64) as usize;
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    fn range_hash(leaves: &[Hash], (lo, hi): (u64, u64)) -> Hash {
        let nodes: Vec<Hash> = complete_subtrees(lo, hi)
            .into_iter()
            .map(|(level, index)| {
                let start = (index << level) as usize;
                mth(&leaves[start..start + (1usize << level)])
            })
            .collect();
        let folded = fold(&nodes);
        assert_eq!(folded, mth(&leaves[lo as usize..hi as usize]));
        folded
    }

    #[test]
    fn proofs_from_complete_subtrees_verify_for_every_small_tree() {
        for n in 1..=40u64 {
            let all = leaves(n);
            let root = mth(&all);
            let mut compact = CompactRange::default();
            for leaf in &all {
                compact.push(*leaf);
            }
            assert_eq!(compact.root(), root, "compact range at {n}");
            for i in 0..n {
                let proof: Vec<Hash> = inclusion_ranges(i, n)
                    .into_iter()
                    .map(|r| range_hash(&all, r))
                    .collect();
                assert!(verify_inclusion(i, n, &all[i as usize], &proof, &root));
                assert!(!verify_inclusion(i, n, &leaf_hash(b"other"), &proof, &root));
                if n > 1 {
                    assert!(!verify_inclusion(
                        (i + 1) % n,
                        n,
                        &all[i as usize],
                        &proof,
                        &root
                    ));
                }
            }
            for m in 1..n {
                let old_root = mth(&all[..m as usize]);
                let proof: Vec<Hash> = consistency_ranges(m, n)
                    .into_iter()
                    .map(|r| range_hash(&all, r))
                    .collect();
                assert!(
                    verify_consistency(m, n, &old_root, &root, &proof),
                    "{m} → {n}"
                );
                assert!(!verify_consistency(m, n, &root, &root, &proof));
                let mut forked = all[..m as usize].to_vec();
                forked[0] = leaf_hash(b"rewritten");
                assert!(!verify_consistency(m, n, &mth(&forked), &root, &proof));
            }
        }
    }

    /// RFC 9162's empty-tree root and the hash of one leaf, as any implementation computes them.
    #[test]
    fn known_answers() {
        assert_eq!(
            hex::encode(empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex::encode(leaf_hash(b"")),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
    }
}
