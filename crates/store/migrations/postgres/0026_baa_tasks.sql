-- Return-or-destroy obligations: when a business associate agreement ends, the PHI Telechart
-- holds for that party must be returned or destroyed (45 CFR 164.504(e)(2)(ii)(J)). One task per
-- ended agreement and destination, opened once, closed once with what was done and by whom.
CREATE TABLE baa_tasks (
    tenant_id    TEXT   NOT NULL,
    baa          TEXT   NOT NULL,
    origin       TEXT   NOT NULL,
    counterparty TEXT,
    ended_on     TEXT   NOT NULL,
    -- The EHR connections at that origin, comma-separated: whose visits' data is concerned.
    connections  TEXT   NOT NULL,
    opened_at    BIGINT NOT NULL,
    status       TEXT   NOT NULL,
    closed_by    TEXT,
    closed_at    BIGINT,
    note         TEXT,
    PRIMARY KEY (tenant_id, baa, origin)
);
