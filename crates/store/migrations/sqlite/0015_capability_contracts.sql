-- Each connection's capability contract (its CapabilityStatement ∩ its vendor profile), one row
-- per version: a new version only when the contract changed.
CREATE TABLE capability_contracts (
    tenant_id     TEXT   NOT NULL,
    connection_id TEXT   NOT NULL,
    version       BIGINT NOT NULL,
    contract      TEXT   NOT NULL,
    fetched_at    BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, connection_id, version)
);
