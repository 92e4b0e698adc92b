-- hoso schema, version 1 (SQLite). Keep in step with migrations/postgres/0001_initial.sql.
-- No column holds a national ID, a name or a document number in clear: citizens are found by
-- citizen_idx (HMAC blind index) and personal fields live in sealed_fields.

CREATE TABLE documents (
    id                        TEXT PRIMARY KEY,
    citizen_idx               TEXT NOT NULL,
    doc_type                  TEXT NOT NULL,
    status                    TEXT NOT NULL,
    content_type              TEXT NOT NULL,
    size_bytes                BIGINT NOT NULL,
    sha256                    TEXT NOT NULL,
    object_key                TEXT NOT NULL UNIQUE,
    format_version            BIGINT NOT NULL,
    wrapped_key               BLOB NOT NULL,
    kek_version               BIGINT NOT NULL,
    sealed_fields             BLOB NOT NULL,
    verified_against_original BIGINT NOT NULL,
    intake_by                 TEXT NOT NULL,
    intake_office             TEXT NOT NULL,
    intake_at                 BIGINT NOT NULL,
    verified_by               TEXT,
    verified_office           TEXT,
    verified_at               BIGINT,
    attestation               TEXT,
    supersedes                TEXT REFERENCES documents(id),
    status_changed_by         TEXT,
    status_changed_at         BIGINT
);
-- The same scan for the same citizen and type is stored once while it is current.
CREATE UNIQUE INDEX documents_one_current_scan
    ON documents (citizen_idx, doc_type, sha256) WHERE status IN ('pending', 'verified');
CREATE INDEX documents_by_citizen ON documents (citizen_idx, status);
CREATE INDEX documents_by_kek ON documents (kek_version);

-- An intake writes its object before its row. The intent, committed first, names the object so
-- that an intake that dies in between leaves something the sweeper can find and delete.
CREATE TABLE intake_intents (
    object_key  TEXT PRIMARY KEY,
    kek_version BIGINT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE grants (
    id          TEXT PRIMARY KEY,
    citizen_idx TEXT NOT NULL,
    doc_types   TEXT NOT NULL,
    case_ref    TEXT NOT NULL,
    purpose     TEXT NOT NULL,
    grantee     TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    office      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    max_uses    BIGINT NOT NULL,
    uses        BIGINT NOT NULL DEFAULT 0,
    revoked_at  BIGINT,
    revoked_by  TEXT
);

CREATE TABLE revoked_tokens (
    jti        TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);

-- How many data keys each KEK version has wrapped (NIST SP 800-38D: < 2^32 random nonces).
CREATE TABLE kek_usage (
    version    BIGINT PRIMARY KEY,
    wraps      BIGINT NOT NULL DEFAULT 0,
    retired_at BIGINT
);

CREATE TABLE audit_entries (
    seq         BIGINT PRIMARY KEY,
    at          BIGINT NOT NULL,
    actor       TEXT NOT NULL,
    role        TEXT NOT NULL,
    office      TEXT NOT NULL,
    action      TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    document_id TEXT,
    citizen_idx TEXT,
    grant_id    TEXT,
    case_ref    TEXT,
    reason      TEXT,
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL
);
CREATE INDEX audit_by_citizen ON audit_entries (citizen_idx, seq);

-- One row: the chain's head, signed. Every append locks it first, which serialises appenders.
CREATE TABLE audit_head (
    id        BIGINT PRIMARY KEY,
    seq       BIGINT NOT NULL,
    hash      TEXT NOT NULL,
    signature TEXT NOT NULL
);

-- Signed (size, head) pairs kept every so many entries, so truncation past one is detected.
CREATE TABLE audit_checkpoints (
    seq       BIGINT PRIMARY KEY,
    hash      TEXT NOT NULL,
    signature TEXT NOT NULL,
    at        BIGINT NOT NULL
);

-- The empty chain: no entries, head hash all zeroes, nothing signed yet.
INSERT INTO audit_head (id, seq, hash, signature)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000', '');
