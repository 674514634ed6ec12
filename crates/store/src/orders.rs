//! Orders followed to completion: which written orders are still open, and what the EHR last
//! said of each (status and results).

use crate::keys::PhiSlot;
use crate::{Phi, Result, Store, on_pool};

/// Statuses after which an order changes no more (R4 request-status).
pub const FINAL_ORDER_STATUSES: &[&str] = &["completed", "revoked", "entered-in-error", "cancelled", "stopped"];

/// A written order whose outcome is not final yet.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OpenOrder {
    pub artifact_id: String,
    pub visit_id: String,
    pub connection_id: String,
    pub resource_type: String,
    pub ehr_id: String,
}

/// What the EHR last said of an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackedOrder {
    pub artifact_id: String,
    pub resource_type: String,
    pub ehr_id: String,
    pub status: String,
    /// JSON list of results.
    pub results: Phi,
    pub checked_at: i64,
    pub completed_at: Option<i64>,
}

impl Store {
    /// Orders written to an EHR whose status is not final (or never read), oldest first.
    pub async fn open_orders(&self, tenant_id: &str, limit: i64) -> Result<Vec<OpenOrder>> {
        let rows = on_pool!(self, pool => sqlx::query_as::<_, OpenOrder>(
            "SELECT d.artifact_id, d.visit_id, d.connection_id, d.resource_type, d.ehr_resource_id AS ehr_id \
             FROM deliveries d LEFT JOIN order_tracking t ON t.tenant_id = d.tenant_id AND t.id = d.artifact_id \
             WHERE d.tenant_id = $1 AND d.status = 'done' AND d.ehr_resource_id IS NOT NULL \
               AND d.resource_type IN ('ServiceRequest', 'MedicationRequest') \
               AND (t.status IS NULL OR t.status NOT IN ('completed', 'revoked', 'entered-in-error', 'cancelled', 'stopped')) \
             ORDER BY d.completed_at LIMIT $2")
            .bind(tenant_id).bind(limit).fetch_all(pool).await)?;
        Ok(rows)
    }

    pub async fn record_order_status(
        &self,
        tenant_id: &str,
        order: &OpenOrder,
        status: &str,
        results: &Phi,
        now_ms: i64,
    ) -> Result<()> {
        let slot = PhiSlot { tenant_id, table: "order_tracking", column: "results", row_id: &order.artifact_id };
        let sealed = self.seal(slot, results).await?;
        let completed = FINAL_ORDER_STATUSES.contains(&status).then_some(now_ms);
        on_pool!(self, pool => sqlx::query(
            "INSERT INTO order_tracking (tenant_id, id, visit_id, connection_id, resource_type, ehr_id, status, results, \
             checked_at, completed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (tenant_id, id) DO UPDATE SET status = excluded.status, results = excluded.results, \
             checked_at = excluded.checked_at, completed_at = COALESCE(order_tracking.completed_at, excluded.completed_at)")
            .bind(tenant_id).bind(&order.artifact_id).bind(&order.visit_id).bind(&order.connection_id)
            .bind(&order.resource_type).bind(&order.ehr_id).bind(status).bind(&sealed).bind(now_ms).bind(completed)
            .execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn tracked_orders(&self, tenant_id: &str, visit_id: &str) -> Result<Vec<TrackedOrder>> {
        let rows = on_pool!(self, pool => sqlx::query_as::<_, (String, String, String, String, String, i64, Option<i64>)>(
            "SELECT id, resource_type, ehr_id, status, results, checked_at, completed_at FROM order_tracking \
             WHERE tenant_id = $1 AND visit_id = $2 ORDER BY id")
            .bind(tenant_id).bind(visit_id).fetch_all(pool).await)?;
        let mut out = Vec::with_capacity(rows.len());
        for (artifact_id, resource_type, ehr_id, status, results, checked_at, completed_at) in rows {
            let slot = PhiSlot { tenant_id, table: "order_tracking", column: "results", row_id: &artifact_id };
            let results = self.unseal(slot, &results).await?;
            out.push(TrackedOrder { artifact_id, resource_type, ehr_id, status, results, checked_at, completed_at });
        }
        Ok(out)
    }
}
