//! Leader leases: a role that one instance of many holds at a time, renewed while it lives.

use crate::{Result, Store, on_pool};

impl Store {
    /// Takes or renews `role` for `owner` until `now_ms + ttl_ms`: true when `owner` holds it
    /// now (it was free, expired, or already `owner`'s). One statement, so two instances racing
    /// for a free role cannot both win.
    pub async fn try_lead(&self, role: &str, owner: &str, now_ms: i64, ttl_ms: i64) -> Result<bool> {
        let won = on_pool!(self, pool => sqlx::query(
            "INSERT INTO leader_leases (role, owner, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (role) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at \
             WHERE leader_leases.owner = excluded.owner OR leader_leases.expires_at <= $4")
            .bind(role).bind(owner).bind(now_ms + ttl_ms).bind(now_ms)
            .execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(won == 1)
    }

    /// Gives `role` up at once if `owner` holds it (a clean stop), so another instance need not
    /// wait for the lease to run out.
    pub async fn release_lead(&self, role: &str, owner: &str) -> Result<()> {
        on_pool!(self, pool => sqlx::query("DELETE FROM leader_leases WHERE role = $1 AND owner = $2")
            .bind(role).bind(owner).execute(pool).await.map(|_| ()))?;
        Ok(())
    }
}
