-- The care-plan drafter's output, versioned per visit like note drafts: a newer draft supersedes
-- the unsigned ones; signing one (in the transaction that records the CarePlan, its Goals and the
-- after-visit summary as artifacts) keeps what the clinician signed beside what was drafted, and
-- how many items were kept, edited, removed and added. Both bodies name the patient's conditions:
-- sealed.
CREATE TABLE care_plan_drafts (
    tenant_id        TEXT   NOT NULL,
    id               TEXT   NOT NULL,
    visit_id         TEXT   NOT NULL,
    version          BIGINT NOT NULL,
    status           TEXT   NOT NULL CHECK (status IN ('draft', 'signed', 'superseded')),
    language         TEXT   NOT NULL,
    body             TEXT   NOT NULL,
    items            BIGINT NOT NULL,
    conflicts        BIGINT NOT NULL,
    gaps             BIGINT NOT NULL,
    draft_us         BIGINT NOT NULL,
    created_by       TEXT   NOT NULL,
    created_at       BIGINT NOT NULL,
    signed_body      TEXT,
    signed_by        TEXT,
    signed_at        BIGINT,
    care_plan_artifact TEXT,
    summary_artifact TEXT,
    items_kept       BIGINT,
    items_edited     BIGINT,
    items_removed    BIGINT,
    items_added      BIGINT,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, visit_id, version)
);

-- The signed plan's tasks for the patient (follow-ups, tests, medicines, self-monitoring,
-- lifestyle), made in the signing transaction. A follow-up with a timing has a due time; the
-- care team's overdue list is the open tasks past it. The task's words are sealed.
CREATE TABLE patient_tasks (
    tenant_id  TEXT   NOT NULL,
    id         TEXT   NOT NULL,
    visit_id   TEXT   NOT NULL,
    draft_id   TEXT   NOT NULL,
    position   BIGINT NOT NULL,
    section    TEXT   NOT NULL,
    text       TEXT   NOT NULL,
    due_at     BIGINT,
    created_at BIGINT NOT NULL,
    done_at    BIGINT,
    done_by    TEXT,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX patient_tasks_visit ON patient_tasks (tenant_id, visit_id, position);
CREATE INDEX patient_tasks_due ON patient_tasks (tenant_id, done_at, due_at);

-- Follow-up adherence as events analytics reads: a task marked done or undone (by whom), a
-- follow-up found overdue. Append-only; no PHI (ids and kinds).
CREATE TABLE adherence_events (
    tenant_id TEXT   NOT NULL,
    id        TEXT   NOT NULL,
    visit_id  TEXT   NOT NULL,
    task_id   TEXT   NOT NULL,
    kind      TEXT   NOT NULL CHECK (kind IN ('task-done', 'task-undone', 'follow-up-overdue')),
    actor     TEXT   NOT NULL,
    at        BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX adherence_events_at ON adherence_events (tenant_id, at);
CREATE UNIQUE INDEX adherence_overdue_once ON adherence_events (tenant_id, task_id, kind)
    WHERE kind = 'follow-up-overdue';

-- Patient portal links: sent to the patient through the platform's webhook, no account needed.
-- Only the token's SHA-256 is kept. The link is single-use: opening it spends it and starts a
-- portal session (only the session secret's SHA-256 kept) that ends at its own expiry; revoking
-- the link ends both.
CREATE TABLE portal_links (
    tenant_id          TEXT   NOT NULL,
    id                 TEXT   NOT NULL,
    token_hash         TEXT   NOT NULL UNIQUE,
    visit_id           TEXT   NOT NULL,
    language           TEXT   NOT NULL,
    created_by         TEXT   NOT NULL,
    created_at         BIGINT NOT NULL,
    expires_at         BIGINT NOT NULL,
    spent_at           BIGINT,
    session_hash       TEXT UNIQUE,
    session_expires_at BIGINT,
    revoked_at         BIGINT,
    revoked_by         TEXT,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX portal_links_visit ON portal_links (tenant_id, visit_id);
