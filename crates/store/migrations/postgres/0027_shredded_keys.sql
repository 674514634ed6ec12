-- Crypto-shredding: a tenant's data keys destroyed when all its data is to go (offboarding, the
-- end of every retention period). Every PHI value they sealed is then unrecoverable, wherever
-- copies of the database are (backups included). The ids stay here so a read can say why.
CREATE TABLE shredded_keys (
    id          TEXT   PRIMARY KEY,
    tenant_id   TEXT   NOT NULL,
    shredded_at BIGINT NOT NULL,
    shredded_by TEXT   NOT NULL,
    reason      TEXT   NOT NULL
);
