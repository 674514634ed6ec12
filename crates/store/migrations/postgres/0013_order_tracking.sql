-- Orders followed to completion: the EHR's status and results of each ServiceRequest and
-- MedicationRequest Telechart wrote, as last read back.
CREATE TABLE order_tracking (
    tenant_id     TEXT   NOT NULL,
    id            TEXT   NOT NULL, -- the order's artifact id
    visit_id      TEXT   NOT NULL,
    connection_id TEXT   NOT NULL,
    resource_type TEXT   NOT NULL,
    ehr_id        TEXT   NOT NULL,
    status        TEXT   NOT NULL,
    results       TEXT   NOT NULL, -- PHI (sealed): JSON list of results
    checked_at    BIGINT NOT NULL,
    completed_at  BIGINT,
    PRIMARY KEY (tenant_id, id)
);
