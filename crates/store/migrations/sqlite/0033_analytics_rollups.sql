-- What the dashboard reads instead of every visit: the values each filter can take, daily sums
-- per (connection, visit type) and per clinician, the claim checks failed per day, and the two
-- durations the quantiles are taken of, stored so an index can walk them in order. All of it
-- is derived by the refresh from visit_facts; the watermark is reset so the next refresh
-- derives every visit, and so every day, again.

CREATE TABLE analytics_dimensions (
    tenant_id TEXT NOT NULL,
    dimension TEXT NOT NULL,
    value     TEXT NOT NULL,
    PRIMARY KEY (tenant_id, dimension, value)
);

ALTER TABLE visit_facts ADD COLUMN chart_closure_ms BIGINT;
ALTER TABLE visit_facts ADD COLUMN documentation_ms BIGINT;
-- A clinician's own dashboard reads their visits only.
CREATE INDEX visit_facts_clinician ON visit_facts (tenant_id, clinician, started_at);
-- Nearest-rank quantiles walk these in order (covering the filters, so no row is fetched).
CREATE INDEX visit_facts_chart_closure ON visit_facts (tenant_id, chart_closure_ms, started_at, connection_id, visit_type)
    WHERE chart_closure_ms IS NOT NULL;
CREATE INDEX visit_facts_documentation ON visit_facts (tenant_id, documentation_ms, started_at, connection_id, visit_type)
    WHERE documentation_ms IS NOT NULL;
CREATE INDEX visit_facts_slowest_delivery ON visit_facts (tenant_id, slowest_delivery_ms, started_at, connection_id, visit_type)
    WHERE slowest_delivery_ms IS NOT NULL;

-- Day = Unix day (UTC) of the visit's start. The columns are FactTotals' sums.
CREATE TABLE analytics_daily (
    tenant_id                   TEXT   NOT NULL,
    day                         BIGINT NOT NULL,
    connection_id               TEXT   NOT NULL,
    visit_type                  TEXT   NOT NULL,
    visits                      BIGINT NOT NULL,
    finished                    BIGINT NOT NULL,
    cancelled                   BIGINT NOT NULL,
    no_show                     BIGINT NOT NULL,
    started                     BIGINT NOT NULL,
    auto_logged                 BIGINT NOT NULL,
    charted                     BIGINT NOT NULL,
    notes_drafted               BIGINT NOT NULL,
    notes_signed                BIGINT NOT NULL,
    edit_distance_sum           BIGINT NOT NULL,
    edit_distance_count         BIGINT NOT NULL,
    readback_sent               BIGINT NOT NULL,
    readback_kept               BIGINT NOT NULL,
    claim_ready                 BIGINT NOT NULL,
    consent_telehealth_captured BIGINT NOT NULL,
    consent_ai_captured         BIGINT NOT NULL,
    consent_denials             BIGINT NOT NULL,
    deliveries                  BIGINT NOT NULL,
    delivered                   BIGINT NOT NULL,
    dead                        BIGINT NOT NULL,
    ever_dead_visits            BIGINT NOT NULL,
    manual_touch_visits         BIGINT NOT NULL,
    throttled                   BIGINT NOT NULL,
    retries                     BIGINT NOT NULL,
    chart_closure_n             BIGINT NOT NULL,
    documentation_n             BIGINT NOT NULL,
    slowest_delivery_n          BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, day, connection_id, visit_type)
);

-- Finished visits failing each claim check, by the check's name.
CREATE TABLE analytics_daily_claims (
    tenant_id     TEXT   NOT NULL,
    day           BIGINT NOT NULL,
    connection_id TEXT   NOT NULL,
    visit_type    TEXT   NOT NULL,
    check_name    TEXT   NOT NULL,
    failing       BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, day, connection_id, visit_type, check_name)
);

-- The per-clinician table's figures only.
CREATE TABLE analytics_daily_clinicians (
    tenant_id     TEXT   NOT NULL,
    day           BIGINT NOT NULL,
    clinician     TEXT   NOT NULL,
    connection_id TEXT   NOT NULL,
    visit_type    TEXT   NOT NULL,
    visits        BIGINT NOT NULL,
    finished      BIGINT NOT NULL,
    auto_logged   BIGINT NOT NULL,
    claim_ready   BIGINT NOT NULL,
    readback_sent BIGINT NOT NULL,
    readback_kept BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, day, clinician, connection_id, visit_type)
);

-- The same by 30-day period (period = day / 30), summed from the days: a year's table is read
-- as twelve periods and the days at either end.
CREATE TABLE analytics_period_clinicians (
    tenant_id     TEXT   NOT NULL,
    period        BIGINT NOT NULL,
    clinician     TEXT   NOT NULL,
    connection_id TEXT   NOT NULL,
    visit_type    TEXT   NOT NULL,
    visits        BIGINT NOT NULL,
    finished      BIGINT NOT NULL,
    auto_logged   BIGINT NOT NULL,
    claim_ready   BIGINT NOT NULL,
    readback_sent BIGINT NOT NULL,
    readback_kept BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, period, clinician, connection_id, visit_type)
);

-- What each connection kept of each resource type's fields, per visit (data accuracy by vendor
-- and resource type), and the same summed per day.
CREATE TABLE visit_fact_readbacks (
    tenant_id     TEXT   NOT NULL,
    visit_id      TEXT   NOT NULL,
    connection_id TEXT   NOT NULL,
    resource_type TEXT   NOT NULL,
    started_at    BIGINT NOT NULL,
    clinician     TEXT   NOT NULL,
    visit_type    TEXT   NOT NULL,
    sent          BIGINT NOT NULL,
    kept          BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, visit_id, connection_id, resource_type)
);
CREATE INDEX visit_fact_readbacks_started ON visit_fact_readbacks (tenant_id, started_at);
CREATE INDEX visit_fact_readbacks_clinician ON visit_fact_readbacks (tenant_id, clinician, started_at);
CREATE TABLE analytics_daily_readbacks (
    tenant_id     TEXT   NOT NULL,
    day           BIGINT NOT NULL,
    connection_id TEXT   NOT NULL,
    visit_type    TEXT   NOT NULL,
    resource_type TEXT   NOT NULL,
    sent          BIGINT NOT NULL,
    kept          BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, day, connection_id, visit_type, resource_type)
);

DELETE FROM analytics_watermarks;
