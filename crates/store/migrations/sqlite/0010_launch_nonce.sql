-- A launch state is also bound to the OpenID nonce and the exact redirect URI it was begun with.
ALTER TABLE smart_launches ADD COLUMN nonce TEXT NOT NULL DEFAULT '';
ALTER TABLE smart_launches ADD COLUMN redirect_uri TEXT NOT NULL DEFAULT '';
