-- Whether the login began inside an EHR's frame: its session cookie must then be
-- SameSite=None; Secure; Partitioned.
ALTER TABLE oidc_logins ADD COLUMN embedded BIGINT NOT NULL DEFAULT 0;
