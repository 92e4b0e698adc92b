-- A sign-in through an identity provider between its start (/auth/*/login) and its end
-- (/auth/*/callback): taken once, by the browser that started it, before it expires. The state
-- is kept only as its SHA-256 (it travels in the browser's address bar), the browser by the
-- SHA-256 of its sign-in cookie.
CREATE TABLE sign_in_flows (
    state_hash    TEXT PRIMARY KEY,
    browser_hash  TEXT NOT NULL,
    kind          TEXT NOT NULL,
    nonce         TEXT NOT NULL,
    code_verifier TEXT NOT NULL,
    expires_at    BIGINT NOT NULL
);
-- A signed-in officer's list of the grants made for them.
CREATE INDEX grants_by_grantee ON grants (grantee, grantee_office, created_at);
-- The sessions hoso issued (sign-ins through a provider and `hoso token issue`), so an admin can
-- see which are live and end one. A citizen is named as in the audit log (the start of their
-- blind index), never by number. Revocation stays in revoked_tokens.
CREATE TABLE sessions (
    jti        TEXT PRIMARY KEY,
    role       TEXT NOT NULL,
    actor      TEXT NOT NULL,
    office     TEXT NOT NULL,
    via        TEXT NOT NULL,
    issued_at  BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);
