-- Break-glass grants: one clinician, one visit's patient, a coded reason, a time box; every use
-- counted; each reviewed by a compliance officer. The free-text reason and the review note are
-- sealed (they may name clinical facts).
CREATE TABLE break_glass (
    tenant_id   TEXT   NOT NULL,
    id          TEXT   NOT NULL,
    actor       TEXT   NOT NULL,
    visit_id    TEXT   NOT NULL,
    reason_code TEXT   NOT NULL,
    reason_text TEXT   NOT NULL,
    granted_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    uses        BIGINT NOT NULL DEFAULT 0,
    review      TEXT   NOT NULL DEFAULT 'pending',
    reviewer    TEXT,
    review_note TEXT,
    reviewed_at BIGINT,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX break_glass_active ON break_glass (tenant_id, actor, visit_id, expires_at);
CREATE INDEX break_glass_review ON break_glass (tenant_id, review, granted_at);
