-- Per-tenant data keys (DEKs) for envelope encryption of PHI columns. `wrapped` is the DEK
-- encrypted under the key-encryption key `kek_id`, which never enters the database.
CREATE TABLE data_keys (
    tenant_id  TEXT   NOT NULL,
    id         TEXT   NOT NULL PRIMARY KEY,
    wrapped    TEXT   NOT NULL,
    kek_id     TEXT   NOT NULL,
    active     BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

-- At most one active data key per tenant.
CREATE UNIQUE INDEX data_keys_one_active ON data_keys (tenant_id) WHERE active = 1;
