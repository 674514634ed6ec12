-- TOTP second factor (RFC 6238) for people whose identity provider proves none. The secret is
-- sealed like PHI; `totp_last_step` refuses a code's replay; failures lock verification briefly.
ALTER TABLE users ADD COLUMN totp_secret TEXT;
ALTER TABLE users ADD COLUMN totp_confirmed BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN totp_last_step BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN totp_failures BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN totp_locked_until BIGINT NOT NULL DEFAULT 0;
