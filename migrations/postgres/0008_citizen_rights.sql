-- The citizen's rights (Law 91/2025): erasure, legal holds, retention, requests, restrictions.
-- An erased document keeps its row as a tombstone (id, type, citizen index, dates, when, why
-- and by whom it was erased) with its secrets gone: the wrapped data key and the sealed personal
-- fields are emptied, the attestation and SHA-256 cleared. Its
-- body object is deleted just after; `body_erased_at` says that happened (a crash in between
-- is finished by the next retention run, `hoso doctor` or start-up).
ALTER TABLE documents ADD COLUMN erased_at BIGINT;
ALTER TABLE documents ADD COLUMN erased_by TEXT;
ALTER TABLE documents ADD COLUMN erase_reason TEXT;
ALTER TABLE documents ADD COLUMN body_erased_at BIGINT;
CREATE INDEX documents_erased_with_body ON documents (id)
    WHERE status = 'erased' AND body_erased_at IS NULL;
-- Retention finds documents by type and when they stopped being current.
CREATE INDEX documents_by_type ON documents (doc_type, status, status_changed_at);
-- "Kept so long after its last read": a document's last copy, from the log.
CREATE INDEX audit_copies_by_document ON audit_entries (document_id, at)
    WHERE action = 'document.content' AND outcome = 'allowed';
-- Whether the log holds a document's erasure (a tombstone the log does not know of was made
-- behind the vault's back, and erases nothing more).
CREATE INDEX audit_erasures_by_document ON audit_entries (document_id)
    WHERE action = 'document.erase' AND outcome = 'allowed';

-- A legal hold on a citizen (document_id null: all their documents) or on one document. While
-- it is in force (not lifted, and open-ended or not yet past `until_at`) nothing it covers is
-- erased, by retention or by request.
CREATE TABLE legal_holds (
    id            TEXT PRIMARY KEY,
    citizen_idx   TEXT NOT NULL,
    document_id   TEXT,
    reason        TEXT NOT NULL,
    case_ref      TEXT NOT NULL,
    placed_by     TEXT NOT NULL,
    placed_office TEXT NOT NULL,
    placed_at     BIGINT NOT NULL,
    until_at      BIGINT,
    lifted_by     TEXT,
    lifted_at     BIGINT
);
CREATE INDEX legal_holds_by_citizen ON legal_holds (citizen_idx, lifted_at);

-- One retention run at a time across a fleet: the run holds this lease, renewing it as it goes;
-- a lease past `until_at` (its process died) may be taken by another.
CREATE TABLE retention_lease (
    id       BIGINT PRIMARY KEY,
    holder   TEXT NOT NULL,
    until_at BIGINT NOT NULL
);
INSERT INTO retention_lease (id, holder, until_at) VALUES (1, '', 0);

-- A citizen's request under Law 91/2025 (see, provide, correct, restrict, object, withdraw
-- consent, erase), with its legal deadlines in working days. Nothing the citizen wrote is kept:
-- the kind, the document it names, its dates and its state.
CREATE TABLE rights_requests (
    id              TEXT PRIMARY KEY,
    citizen_idx     TEXT NOT NULL,
    kind            TEXT NOT NULL,
    document_id     TEXT,
    filed_by        TEXT NOT NULL,
    filed_role      TEXT NOT NULL,
    filed_office    TEXT NOT NULL,
    received_at     BIGINT NOT NULL,
    answer_due_at   BIGINT NOT NULL,
    due_at          BIGINT NOT NULL,
    state           TEXT NOT NULL,
    state_reason    TEXT,
    answered_at     BIGINT,
    extended        BIGINT NOT NULL DEFAULT 0,
    closed_at       BIGINT,
    updated_by      TEXT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE INDEX rights_requests_open ON rights_requests (closed_at, due_at);
CREATE INDEX rights_requests_by_citizen ON rights_requests (citizen_idx, received_at);

-- A restriction of processing (a request to restrict, object or withdraw consent, carried out):
-- while it is in force no grant over the citizen's records is made and none reads.
CREATE TABLE restrictions (
    id          TEXT PRIMARY KEY,
    citizen_idx TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    placed_by   TEXT NOT NULL,
    placed_at   BIGINT NOT NULL,
    lifted_by   TEXT,
    lifted_at   BIGINT
);
CREATE INDEX restrictions_by_citizen ON restrictions (citizen_idx, lifted_at);
