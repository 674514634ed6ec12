-- The patient's consents, as Telechart evaluates them before each flow they govern. Append-only:
-- every capture, withdrawal or correction is a new version row; a consent's state is its latest.
-- The FHIR Consent (it names the patient) is sealed like every PHI column.
CREATE TABLE consents (
    tenant_id  TEXT    NOT NULL,
    -- `{consent_id}.{version}`: the row id the PHI sealing binds to.
    id         TEXT    NOT NULL,
    consent_id TEXT    NOT NULL,
    version    BIGINT  NOT NULL,
    visit_id   TEXT,
    category   TEXT    NOT NULL,
    status     TEXT    NOT NULL,
    resource   TEXT    NOT NULL,
    actor      TEXT    NOT NULL,
    at         BIGINT  NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, consent_id, version)
);
CREATE INDEX consents_visit ON consents (tenant_id, visit_id);
