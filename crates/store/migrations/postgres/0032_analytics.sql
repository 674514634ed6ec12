-- Virtual-care analytics. Facts a KPI needs that no row kept yet: whether a delivery was ever a
-- dead letter, how often a person touched it (replay, retry, discard), and how often the EHR
-- throttled it (HTTP 429). Existing dead or discarded letters were dead letters.
ALTER TABLE deliveries ADD COLUMN was_dead BIGINT NOT NULL DEFAULT 0;
ALTER TABLE deliveries ADD COLUMN manual_touches BIGINT NOT NULL DEFAULT 0;
ALTER TABLE deliveries ADD COLUMN throttled BIGINT NOT NULL DEFAULT 0;
UPDATE deliveries SET was_dead = 1 WHERE status IN ('dead', 'discarded');

-- What the refresh looks for: rows changed since it last ran.
CREATE INDEX visits_updated ON visits (tenant_id, updated_at);
CREATE INDEX deliveries_updated ON deliveries (tenant_id, updated_at);
CREATE INDEX note_drafts_created ON note_drafts (tenant_id, created_at);
CREATE INDEX note_drafts_signed ON note_drafts (tenant_id, signed_at);

-- One row per visit: the facts every KPI is computed from, derived from the recorded rows above
-- (visits, deliveries, note drafts, consent decisions in the audit log) by the analytics refresh.
-- No PHI: ids, codes, counts and times only.
CREATE TABLE visit_facts (
    tenant_id          TEXT   NOT NULL,
    visit_id           TEXT   NOT NULL,
    connection_id      TEXT   NOT NULL,
    clinician          TEXT   NOT NULL,
    visit_type         TEXT   NOT NULL,
    state              TEXT   NOT NULL,
    started_at         BIGINT NOT NULL,
    call_ended_at      BIGINT,
    encounter_in_ehr   BIGINT NOT NULL,
    deliveries         BIGINT NOT NULL,
    delivered          BIGINT NOT NULL,
    dead               BIGINT NOT NULL,
    ever_dead          BIGINT NOT NULL,
    manual_touches     BIGINT NOT NULL,
    throttled          BIGINT NOT NULL,
    retries            BIGINT NOT NULL,
    chart_closed_at    BIGINT,
    slowest_delivery_ms BIGINT,
    auto_logged        BIGINT NOT NULL,
    note_drafted       BIGINT NOT NULL,
    note_signed_at     BIGINT,
    edit_distance      BIGINT,
    readback_sent      BIGINT NOT NULL,
    readback_kept      BIGINT NOT NULL,
    claim_ready        BIGINT NOT NULL,
    claim_missing      TEXT   NOT NULL,
    consent_telehealth TEXT   NOT NULL,
    consent_ai         TEXT   NOT NULL,
    consent_denials    BIGINT NOT NULL,
    refreshed_at       BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, visit_id)
);
CREATE INDEX visit_facts_started ON visit_facts (tenant_id, started_at);

-- How far each tenant's refresh has read.
CREATE TABLE analytics_watermarks (
    tenant_id  TEXT   PRIMARY KEY,
    changed_at BIGINT NOT NULL,
    audit_seq  BIGINT NOT NULL
);

-- The clinicians' one-question survey (0–10), offered after signing, at most once per period.
CREATE TABLE nps_responses (
    tenant_id    TEXT   NOT NULL,
    id           TEXT   NOT NULL,
    clinician    TEXT   NOT NULL,
    visit_id     TEXT,
    score        BIGINT CHECK (score BETWEEN 0 AND 10),
    answered_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX nps_responses_time ON nps_responses (tenant_id, answered_at);
CREATE INDEX nps_responses_clinician ON nps_responses (tenant_id, clinician, answered_at);
