-- What Telechart has seen of each EHR appointment (to tell new, changed, repeated and stale
-- apart, whichever way it arrived: poll or notification), and each connection's poll watermark.
CREATE TABLE ehr_appointments (
    tenant_id      TEXT   NOT NULL,
    id             TEXT   NOT NULL, -- connection_id/appointment_id
    connection_id  TEXT   NOT NULL,
    appointment_id TEXT   NOT NULL,
    status         TEXT   NOT NULL,
    start_at       TEXT,
    patient        TEXT   NOT NULL, -- PHI (sealed)
    practitioner   TEXT,
    last_updated   BIGINT NOT NULL,
    seen_at        BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);

CREATE TABLE poll_watermarks (
    tenant_id     TEXT   NOT NULL,
    connection_id TEXT   NOT NULL,
    watermark     BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, connection_id)
);
