-- SMART App Launches in flight: state → the connection (iss) and PKCE verifier, used once.
CREATE TABLE smart_launches (
    state         TEXT   NOT NULL PRIMARY KEY,
    tenant_id     TEXT   NOT NULL,
    connection_id TEXT   NOT NULL,
    code_verifier TEXT   NOT NULL,
    created_at    BIGINT NOT NULL
);
