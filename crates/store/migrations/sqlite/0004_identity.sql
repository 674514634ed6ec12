-- People who log in through OpenID Connect, their sessions, and logins in flight.
CREATE TABLE users (
    tenant_id    TEXT   NOT NULL,
    id           TEXT   NOT NULL PRIMARY KEY,
    issuer       TEXT   NOT NULL,
    subject      TEXT   NOT NULL,
    role         TEXT   NOT NULL,
    created_at   BIGINT NOT NULL,
    UNIQUE (issuer, subject)
);

-- Only SHA-256 of the cookie secret is stored. `mfa` is 1 once a second factor was proven.
CREATE TABLE sessions (
    id_hash       TEXT   NOT NULL PRIMARY KEY,
    tenant_id     TEXT   NOT NULL,
    user_id       TEXT   NOT NULL,
    role          TEXT   NOT NULL,
    mfa           BIGINT NOT NULL,
    csrf_token    TEXT   NOT NULL,
    created_at    BIGINT NOT NULL,
    last_seen_at  BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    revoked_at    BIGINT
);

CREATE INDEX sessions_user ON sessions (user_id);

-- An authorization request on its way: state → PKCE verifier and nonce, used once.
CREATE TABLE oidc_logins (
    state         TEXT   NOT NULL PRIMARY KEY,
    pkce_verifier TEXT   NOT NULL,
    nonce         TEXT   NOT NULL,
    created_at    BIGINT NOT NULL
);
