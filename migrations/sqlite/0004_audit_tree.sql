-- The Merkle tree over the audit log (RFC 9162): the hash of every complete subtree, by
-- (level, index); level 0 holds the leaves, leaf index = seq - 1. Proofs read O(log n) rows.
CREATE TABLE audit_tree (
    level BIGINT NOT NULL,
    idx   BIGINT NOT NULL,
    hash  TEXT NOT NULL,
    PRIMARY KEY (level, idx)
);

-- Signed checkpoints (C2SP tlog-checkpoint notes) of the tree, each also written once to the
-- object store under audit/checkpoints/, where the database's administrators cannot rewind it.
CREATE TABLE audit_notes (
    size    BIGINT PRIMARY KEY,
    root    TEXT NOT NULL,
    note    TEXT NOT NULL,
    made_at BIGINT NOT NULL
);
