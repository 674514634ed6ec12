//! Telechart's Backend Services signing keys: private halves sealed at rest, public JWKs served.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::keys::PhiSlot;
use crate::{Phi, Result, Store, StoreError, on_pool};

/// The pseudo-tenant that owns deployment-wide secrets.
pub const SYSTEM_TENANT: &str = "_system";

/// A signing key as stored. `Debug` shows the kid and algorithm only.
#[derive(Clone)]
pub struct SigningKeyRow {
    pub kid: String,
    pub alg: String,
    pub pkcs8: Vec<u8>,
    pub public_jwk: String,
    pub created_at: i64,
}

impl std::fmt::Debug for SigningKeyRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKeyRow({} {})", self.alg, self.kid)
    }
}

impl Store {
    pub async fn add_signing_key(
        &self,
        kid: &str,
        alg: &str,
        pkcs8: &[u8],
        public_jwk: &str,
        now_ms: i64,
    ) -> Result<()> {
        let slot = PhiSlot { tenant_id: SYSTEM_TENANT, table: "signing_keys", column: "private_key", row_id: kid };
        let sealed = self.seal(slot, &Phi::new(STANDARD.encode(pkcs8))).await?;
        on_pool!(self, pool => sqlx::query(
            "INSERT INTO signing_keys (tenant_id, id, alg, private_key, public_jwk, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(SYSTEM_TENANT).bind(kid).bind(alg).bind(&sealed).bind(public_jwk).bind(now_ms)
            .execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Keys not retired, newest first: the first signs, all are published.
    pub async fn signing_keys(&self) -> Result<Vec<SigningKeyRow>> {
        let rows = on_pool!(self, pool => sqlx::query_as::<_, (String, String, String, String, i64)>(
            "SELECT id, alg, private_key, public_jwk, created_at FROM signing_keys \
             WHERE tenant_id = $1 AND retired_at IS NULL ORDER BY created_at DESC, id")
            .bind(SYSTEM_TENANT).fetch_all(pool).await)?;
        let mut out = Vec::with_capacity(rows.len());
        for (kid, alg, sealed, public_jwk, created_at) in rows {
            let slot = PhiSlot { tenant_id: SYSTEM_TENANT, table: "signing_keys", column: "private_key", row_id: &kid };
            let pkcs8 = STANDARD
                .decode(self.unseal(slot, &sealed).await?.expose())
                .map_err(|_| StoreError::Corrupt(format!("signing key {kid} is not base64")))?;
            out.push(SigningKeyRow { kid, alg, pkcs8, public_jwk, created_at });
        }
        Ok(out)
    }

    /// Stops publishing and using a key (after EHRs have picked up its successor).
    pub async fn retire_signing_key(&self, kid: &str, now_ms: i64) -> Result<bool> {
        let n = on_pool!(self, pool => sqlx::query(
            "UPDATE signing_keys SET retired_at = $1 WHERE tenant_id = $2 AND id = $3 AND retired_at IS NULL")
            .bind(now_ms).bind(SYSTEM_TENANT).bind(kid).execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }
}
