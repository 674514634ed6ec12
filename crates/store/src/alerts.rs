//! Alerts the audit rules fire, with each tenant's evaluation cursor, and their sending state.

use telechart_audit::Alert;

use crate::{Result, Store, StoreError, VisitRow, on_pool};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AlertRow {
    pub tenant_id: String,
    pub id: String,
    pub rule: String,
    pub at: i64,
    pub actor: String,
    pub visit_id: Option<String>,
    pub detail: String,
    /// The tenant chain position of the record that fired it (0: not tied to one record).
    pub audit_seq: i64,
    pub sent_at: Option<i64>,
    pub send_attempts: i64,
    pub last_error: Option<String>,
}

impl Store {
    /// How far the tenant's chain has been evaluated (0: not at all).
    pub async fn alert_cursor(&self, tenant_id: &str) -> Result<i64> {
        let row = on_pool!(self, pool => sqlx::query_as::<_, (i64,)>(
            "SELECT tenant_seq FROM alert_cursors WHERE tenant_id = $1")
            .bind(tenant_id).fetch_optional(pool).await)?;
        Ok(row.map_or(0, |(n,)| n))
    }

    /// The first chain position of the tenant's records at or after `at_ms` (for rebuilding the
    /// rules' windows after a restart).
    pub async fn audit_position_since(&self, tenant_id: &str, at_ms: i64) -> Result<Option<i64>> {
        let row = on_pool!(self, pool => sqlx::query_as::<_, (Option<i64>,)>(
            "SELECT MIN(tenant_seq) FROM audit_log WHERE tenant_id = $1 AND at >= $2 AND tenant_seq IS NOT NULL")
            .bind(tenant_id).bind(at_ms).fetch_one(pool).await)?;
        Ok(row.0)
    }

    /// Keeps `alerts` and moves the tenant's cursor to `cursor`, in one transaction: each record
    /// is evaluated once, and its alerts are never lost between the two.
    pub async fn record_alerts(&self, tenant_id: &str, alerts: &[Alert], cursor: i64) -> Result<()> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            for alert in alerts {
                sqlx::query(
                    "INSERT INTO alerts (tenant_id, id, rule, at, actor, visit_id, detail, audit_seq) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
                    .bind(tenant_id).bind(uuid::Uuid::now_v7().to_string()).bind(alert.rule.as_str()).bind(alert.at)
                    .bind(&alert.actor).bind(&alert.visit_id).bind(&alert.detail).bind(alert.tenant_seq)
                    .execute(&mut *tx).await?;
            }
            sqlx::query(
                "INSERT INTO alert_cursors (tenant_id, tenant_seq) VALUES ($1, $2) \
                 ON CONFLICT (tenant_id) DO UPDATE SET tenant_seq = excluded.tenant_seq \
                 WHERE alert_cursors.tenant_seq < excluded.tenant_seq")
                .bind(tenant_id).bind(cursor).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok::<(), StoreError>(())
        })
    }

    /// The tenant's alerts, newest first.
    pub async fn alerts(&self, tenant_id: &str, limit: i64) -> Result<Vec<AlertRow>> {
        Ok(on_pool!(self, pool => sqlx::query_as::<_, AlertRow>(
            "SELECT * FROM alerts WHERE tenant_id = $1 ORDER BY at DESC, id DESC LIMIT $2")
            .bind(tenant_id).bind(limit).fetch_all(pool).await)?)
    }

    /// Alerts not yet taken by every sink, oldest first.
    pub async fn unsent_alerts(&self, limit: i64) -> Result<Vec<AlertRow>> {
        Ok(on_pool!(self, pool => sqlx::query_as::<_, AlertRow>(
            "SELECT * FROM alerts WHERE sent_at IS NULL ORDER BY at, id LIMIT $1")
            .bind(limit).fetch_all(pool).await)?)
    }

    /// Records one sending attempt: sent at `now_ms`, or the error to retry after.
    pub async fn alert_sent(
        &self,
        alert: &AlertRow,
        outcome: std::result::Result<(), &str>,
        now_ms: i64,
    ) -> Result<()> {
        let (sent, error) = match outcome {
            Ok(()) => (Some(now_ms), None),
            Err(e) => (None, Some(e)),
        };
        on_pool!(self, pool => sqlx::query(
            "UPDATE alerts SET sent_at = $1, last_error = $2, send_attempts = send_attempts + 1 \
             WHERE tenant_id = $3 AND id = $4")
            .bind(sent).bind(error).bind(&alert.tenant_id).bind(&alert.id).execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    /// The visits a practitioner (`Practitioner/…`) holds in the tenant: their care relationships.
    pub async fn visits_of_practitioner(&self, tenant_id: &str, practitioner: &str) -> Result<Vec<VisitRow>> {
        let ids = on_pool!(self, pool => sqlx::query_as::<_, (String,)>(
            "SELECT id FROM visits WHERE tenant_id = $1 AND practitioner = $2 ORDER BY created_at")
            .bind(tenant_id).bind(practitioner).fetch_all(pool).await)?;
        let mut out = Vec::with_capacity(ids.len());
        for (id,) in ids {
            if let Some(v) = self.visit(tenant_id, &id).await? {
                out.push(v);
            }
        }
        Ok(out)
    }
}
