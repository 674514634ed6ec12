-- Legal holds: while one is in force, nothing of its visit (or of any visit of its patient) is
-- purged — payloads, transcripts, or the audit records that name those visits. The patient of a
-- patient hold is sealed; placing and releasing a hold are audited.
CREATE TABLE legal_holds (
    tenant_id   TEXT   NOT NULL,
    id          TEXT   NOT NULL,
    visit_id    TEXT,
    patient     TEXT,
    reason      TEXT   NOT NULL,
    placed_by   TEXT   NOT NULL,
    placed_at   BIGINT NOT NULL,
    released_by TEXT,
    released_at BIGINT,
    PRIMARY KEY (tenant_id, id),
    CHECK ((visit_id IS NULL) <> (patient IS NULL))
);
CREATE INDEX legal_holds_active ON legal_holds (tenant_id, released_at);
