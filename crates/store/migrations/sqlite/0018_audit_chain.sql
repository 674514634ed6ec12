-- The audit log becomes evidence: each record has its place in its tenant's chain and the
-- SHA-256 that links it to everything before it (telechart-audit's canonical encoding).
ALTER TABLE audit_log ADD COLUMN tenant_seq BIGINT;
ALTER TABLE audit_log ADD COLUMN hash BLOB;
ALTER TABLE audit_log ADD COLUMN patient TEXT;
ALTER TABLE audit_log ADD COLUMN purpose_of_use TEXT;
ALTER TABLE audit_log ADD COLUMN outcome TEXT NOT NULL DEFAULT 'success';
ALTER TABLE audit_log ADD COLUMN source_ip TEXT;
ALTER TABLE audit_log ADD COLUMN session TEXT;
ALTER TABLE audit_log ADD COLUMN consent TEXT;
ALTER TABLE audit_log ADD COLUMN labels TEXT NOT NULL DEFAULT '';

CREATE UNIQUE INDEX audit_log_chain ON audit_log (tenant_id, tenant_seq);
CREATE INDEX audit_log_patient ON audit_log (tenant_id, patient, at);

-- The head of each tenant's chain: a cursor for appends (its row lock serialises them), never
-- trusted by verification, which recomputes from the records and the outside witness.
CREATE TABLE audit_heads (
    tenant_id TEXT PRIMARY KEY,
    seq       BIGINT NOT NULL,
    hash      BLOB NOT NULL
);

-- What the checkpointer has witnessed, so it knows where to continue.
CREATE TABLE audit_checkpoints (
    tenant_id TEXT   NOT NULL,
    size      BIGINT NOT NULL,
    head      BLOB NOT NULL,
    at        BIGINT NOT NULL,
    kind      TEXT   NOT NULL,
    PRIMARY KEY (tenant_id, size, kind)
);
