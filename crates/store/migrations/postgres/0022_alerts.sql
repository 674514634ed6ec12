-- Alerts fired by the audit rules (ids and counts only, no patient), listed for compliance
-- officers and sent to the configured sinks; `sent_at` is set once every sink took it.
CREATE TABLE alerts (
    tenant_id       TEXT   NOT NULL,
    id              TEXT   NOT NULL,
    rule            TEXT   NOT NULL,
    at              BIGINT NOT NULL,
    actor           TEXT   NOT NULL,
    visit_id        TEXT,
    detail          TEXT   NOT NULL,
    audit_seq       BIGINT NOT NULL,
    sent_at         BIGINT,
    send_attempts   BIGINT NOT NULL DEFAULT 0,
    last_error      TEXT,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX alerts_recent ON alerts (tenant_id, at);
CREATE INDEX alerts_unsent ON alerts (sent_at, at);
-- How far each tenant's audit chain has been evaluated.
CREATE TABLE alert_cursors (
    tenant_id  TEXT   NOT NULL PRIMARY KEY,
    tenant_seq BIGINT NOT NULL
);
