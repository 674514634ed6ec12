-- Times are Unix milliseconds (BIGINT) and ids are text on both engines, so that one set of
-- queries and one row type serve SQLite and PostgreSQL alike.

CREATE TABLE ehr_connections (
    tenant_id   TEXT   NOT NULL,
    id          TEXT   NOT NULL,
    name        TEXT   NOT NULL,
    profile     TEXT   NOT NULL,
    base_url    TEXT   NOT NULL,
    settings    TEXT   NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE visits (
    tenant_id        TEXT   NOT NULL,
    id               TEXT   NOT NULL,
    connection_id    TEXT   NOT NULL,
    appointment_id   TEXT   NOT NULL,
    patient          TEXT   NOT NULL, -- PHI (sealed)
    practitioner     TEXT,
    state            TEXT   NOT NULL,
    version          BIGINT NOT NULL,
    artifact_count   BIGINT NOT NULL,
    ehr_encounter_id TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, connection_id, appointment_id),
    FOREIGN KEY (tenant_id, connection_id) REFERENCES ehr_connections (tenant_id, id)
);

CREATE TABLE artifacts (
    tenant_id  TEXT   NOT NULL,
    id         TEXT   NOT NULL,
    visit_id   TEXT   NOT NULL,
    seq        BIGINT NOT NULL,
    kind       TEXT   NOT NULL,
    payload    TEXT   NOT NULL, -- PHI (sealed)
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, visit_id, seq),
    FOREIGN KEY (tenant_id, visit_id) REFERENCES visits (tenant_id, id)
);

CREATE TABLE deliveries (
    tenant_id        TEXT   NOT NULL,
    id               TEXT   NOT NULL,
    artifact_id      TEXT   NOT NULL,
    visit_id         TEXT   NOT NULL,
    connection_id    TEXT   NOT NULL,
    seq              BIGINT NOT NULL,
    resource_type    TEXT   NOT NULL,
    identifier       TEXT   NOT NULL,
    status           TEXT   NOT NULL CHECK (status IN ('pending', 'in_flight', 'done', 'dead')),
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
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, artifact_id, connection_id),
    FOREIGN KEY (tenant_id, artifact_id) REFERENCES artifacts (tenant_id, id)
);

CREATE INDEX deliveries_due ON deliveries (tenant_id, status, next_attempt_at, seq);
CREATE INDEX deliveries_lease ON deliveries (tenant_id, status, lease_expires_at);
CREATE INDEX deliveries_visit_order ON deliveries (tenant_id, visit_id, connection_id, seq);

CREATE TABLE audit_log (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id     TEXT   NOT NULL,
    at            BIGINT NOT NULL,
    actor         TEXT   NOT NULL,
    action        TEXT   NOT NULL,
    entity_type   TEXT   NOT NULL,
    entity_id     TEXT   NOT NULL,
    visit_id      TEXT,
    phi           BIGINT NOT NULL,
    detail        TEXT   NOT NULL
);

CREATE INDEX audit_log_visit ON audit_log (tenant_id, visit_id);
