//! Retention: PHI is kept no longer than the visit's work needs. Once every delivery of an
//! artifact is done (the EHR holds the record) and the artifact is older than the configured
//! age, its payload is replaced by a sealed tombstone; ids, times and the delivery trail stay.

use crate::keys::PhiSlot;
use crate::{Phi, Result, Store, on_pool};

/// What a purged payload says instead of the PHI it held.
pub const PURGED_PAYLOAD: &str = r#"{"kind":"purged","reason":"retention"}"#;

impl Store {
    /// Purges up to `limit` payloads of `tenant_id` created before `older_than_ms` whose
    /// deliveries are all done. Returns how many; run until 0.
    pub async fn purge_delivered_payloads(&self, tenant_id: &str, older_than_ms: i64, limit: i64) -> Result<u64> {
        let ids = on_pool!(self, pool => sqlx::query_as::<_, (String,)>(
            "SELECT a.id FROM artifacts a WHERE a.tenant_id = $1 AND a.created_at < $2 AND a.kind <> 'purged' \
             AND EXISTS (SELECT 1 FROM deliveries d WHERE d.tenant_id = a.tenant_id AND d.artifact_id = a.id) \
             AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.tenant_id = a.tenant_id AND d.artifact_id = a.id \
               AND d.status <> 'done') LIMIT $3")
            .bind(tenant_id).bind(older_than_ms).bind(limit).fetch_all(pool).await)?;
        let mut purged = 0;
        for (id,) in ids {
            let slot = PhiSlot { tenant_id, table: "artifacts", column: "payload", row_id: &id };
            let tombstone = self.seal(slot, &Phi::new(PURGED_PAYLOAD)).await?;
            purged += on_pool!(self, pool => sqlx::query(
                "UPDATE artifacts SET payload = $1, kind = 'purged' WHERE tenant_id = $2 AND id = $3 AND kind <> 'purged'")
                .bind(&tombstone).bind(tenant_id).bind(&id).execute(pool).await.map(|r| r.rows_affected()))?;
        }
        Ok(purged)
    }
}
