-- Telechart's private keys for SMART Backend Services client assertions. The private key is
-- sealed like PHI (tenant `_system`); the public JWK is published at /.well-known/jwks.json.
CREATE TABLE signing_keys (
    tenant_id   TEXT   NOT NULL,
    id          TEXT   NOT NULL PRIMARY KEY,
    alg         TEXT   NOT NULL,
    private_key TEXT   NOT NULL,
    public_jwk  TEXT   NOT NULL,
    created_at  BIGINT NOT NULL,
    retired_at  BIGINT
);
