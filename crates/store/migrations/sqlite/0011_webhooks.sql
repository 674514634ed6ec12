-- Signed webhooks to telehealth platforms: an outbox written in the same transaction as what
-- they announce, sent with retries; and the platform events already acted on (at-least-once in,
-- exactly-once effect).
CREATE TABLE webhook_deliveries (
    tenant_id       TEXT   NOT NULL,
    id              TEXT   NOT NULL,
    platform_id     TEXT   NOT NULL,
    event_type      TEXT   NOT NULL,
    payload         TEXT   NOT NULL, -- PHI (sealed)
    status          TEXT   NOT NULL CHECK (status IN ('pending', 'in_flight', 'done', 'dead')),
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    lease_until     BIGINT,
    last_status     BIGINT,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    completed_at    BIGINT,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);

CREATE TABLE platform_events (
    tenant_id   TEXT   NOT NULL,
    platform_id TEXT   NOT NULL,
    event_id    TEXT   NOT NULL,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, platform_id, event_id)
);

ALTER TABLE visits ADD COLUMN call_ended_at BIGINT;
