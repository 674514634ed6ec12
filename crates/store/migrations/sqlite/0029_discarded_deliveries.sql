-- A dead letter an operator chooses not to send ends `discarded`, with the reason: terminal, and
-- no longer holding back its visit. SQLite cannot change a CHECK constraint in place: the table is
-- rebuilt with the same columns.
CREATE TABLE deliveries_rebuilt (
    tenant_id        TEXT   NOT NULL,
    id               TEXT   NOT NULL,
    artifact_id      TEXT   NOT NULL,
    visit_id         TEXT   NOT NULL,
    connection_id    TEXT   NOT NULL,
    seq              BIGINT NOT NULL,
    resource_type    TEXT   NOT NULL,
    identifier       TEXT   NOT NULL,
    status           TEXT   NOT NULL CHECK (status IN ('pending', 'in_flight', 'done', 'dead', 'withheld', 'discarded')),
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    lease_owner      TEXT,
    lease_expires_at BIGINT,
    outcome_unknown  BIGINT NOT NULL DEFAULT 0,
    reconcile        BIGINT NOT NULL DEFAULT 0,
    last_error       TEXT,
    ehr_resource_id  TEXT,
    ehr_version      TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    completed_at     BIGINT,
    blocks_visit     BIGINT NOT NULL DEFAULT 1,
    plan             TEXT,
    readback         TEXT,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, artifact_id, connection_id),
    FOREIGN KEY (tenant_id, artifact_id) REFERENCES artifacts (tenant_id, id)
);
INSERT INTO deliveries_rebuilt (tenant_id, id, artifact_id, visit_id, connection_id, seq, resource_type,
    identifier, status, attempts, next_attempt_at, lease_owner, lease_expires_at, outcome_unknown, reconcile,
    last_error, ehr_resource_id, ehr_version, created_at, updated_at, completed_at, blocks_visit, plan, readback)
SELECT tenant_id, id, artifact_id, visit_id, connection_id, seq, resource_type,
    identifier, status, attempts, next_attempt_at, lease_owner, lease_expires_at, outcome_unknown, reconcile,
    last_error, ehr_resource_id, ehr_version, created_at, updated_at, completed_at, blocks_visit, plan, readback
FROM deliveries;
DROP TABLE deliveries;
ALTER TABLE deliveries_rebuilt RENAME TO deliveries;
CREATE INDEX deliveries_due ON deliveries (tenant_id, status, next_attempt_at, seq);
CREATE INDEX deliveries_lease ON deliveries (tenant_id, status, lease_expires_at);
CREATE INDEX deliveries_visit_order ON deliveries (tenant_id, visit_id, connection_id, seq);
