-- The visit-note drafter's output: each drafting of a visit's note is a version. A newer draft
-- supersedes the unsigned ones before it; signing one makes it the visit's note artifact (in the
-- same transaction) and keeps what the clinician signed beside what was drafted, so the edit
-- distance and the times analytics read are facts, not estimates. An amendment is a new draft
-- naming the signed one it amends; its signature marks that one `amended`. The draft (sentences
-- with their evidence) and the signed text name the patient's story: both sealed.
CREATE TABLE note_drafts (
    tenant_id     TEXT   NOT NULL,
    id            TEXT   NOT NULL,
    visit_id      TEXT   NOT NULL,
    version       BIGINT NOT NULL,
    engine        TEXT   NOT NULL,
    template      TEXT   NOT NULL,
    status        TEXT   NOT NULL CHECK (status IN ('draft', 'signed', 'superseded', 'amended')),
    amends        TEXT,
    body          TEXT   NOT NULL,
    sentences     BIGINT NOT NULL,
    flagged       BIGINT NOT NULL,
    -- How long the engine took, in milliseconds.
    draft_ms      BIGINT NOT NULL,
    created_by    TEXT   NOT NULL,
    created_at    BIGINT NOT NULL,
    signed_text   TEXT,
    signed_by     TEXT,
    signed_at     BIGINT,
    note_artifact TEXT,
    -- Words inserted, deleted or replaced from the drafted to the signed text (Levenshtein on words).
    edit_distance BIGINT,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, visit_id, version)
);

-- The Appointment's type as the EHR coded it: which note template a visit's draft starts from.
ALTER TABLE visits ADD COLUMN visit_type TEXT;
