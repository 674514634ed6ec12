-- The consent texts patients read, per tenant and language. A version is published once and
-- never changed: the signed form cites its SHA-256, so what any patient agreed to can be shown
-- again word for word. No PHI here.
CREATE TABLE consent_texts (
    tenant_id    TEXT   NOT NULL,
    category     TEXT   NOT NULL,
    version      TEXT   NOT NULL,
    language     TEXT   NOT NULL,
    title        TEXT   NOT NULL,
    body         TEXT   NOT NULL,
    sha256       TEXT   NOT NULL,
    published_by TEXT   NOT NULL,
    published_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, category, version, language)
);

-- Single-use, expiring links through which a patient reads and signs one consent text, without
-- an account. Only the token's SHA-256 is kept; the link is spent in the transaction that
-- records the signature.
CREATE TABLE consent_links (
    tenant_id    TEXT   NOT NULL,
    id           TEXT   NOT NULL,
    token_hash   TEXT   NOT NULL UNIQUE,
    visit_id     TEXT   NOT NULL,
    category     TEXT   NOT NULL,
    text_version TEXT   NOT NULL,
    language     TEXT   NOT NULL,
    created_by   TEXT   NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    used_at      BIGINT,
    revoked_at   BIGINT,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX consent_links_visit ON consent_links (tenant_id, visit_id);
