-- API tokens of telehealth platforms and other machine clients. Only a SHA-256 of the secret is
-- stored; the token is shown once, at creation.
CREATE TABLE api_tokens (
    tenant_id    TEXT   NOT NULL,
    id           TEXT   NOT NULL PRIMARY KEY,
    name         TEXT   NOT NULL,
    role         TEXT   NOT NULL,
    secret_hash  TEXT   NOT NULL,
    created_at   BIGINT NOT NULL,
    revoked_at   BIGINT
);

CREATE INDEX api_tokens_tenant ON api_tokens (tenant_id);
