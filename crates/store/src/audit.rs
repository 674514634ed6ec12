//! The audit seam: every PHI read or write appends one row here, inside the transaction that does
//! it. Hash chaining, checkpoints and alerts build on this table later.

use sqlx::FromRow;

use crate::{Result, Store, on_pool};

/// One audit record. `detail` holds ids and outcomes, never PHI values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub tenant_id: String,
    pub actor: String,
    pub action: String,
    pub entity_type: String,
    pub entity_id: String,
    pub visit_id: Option<String>,
    /// Whether the action touched PHI.
    pub phi: bool,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct AuditRow {
    pub seq: i64,
    pub tenant_id: String,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub entity_type: String,
    pub entity_id: String,
    pub visit_id: Option<String>,
    pub phi: i64,
    pub detail: String,
}

const INSERT: &str = "INSERT INTO audit_log (tenant_id, at, actor, action, entity_type, entity_id, visit_id, phi, detail) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

/// Appends `entry` on any executor of either engine (a pool or an open transaction).
macro_rules! append_audit {
    ($executor:expr, $entry:expr, $now:expr) => {{
        let entry: &$crate::AuditEntry = $entry;
        sqlx::query($crate::audit::insert_sql())
            .bind(&entry.tenant_id)
            .bind($now)
            .bind(&entry.actor)
            .bind(&entry.action)
            .bind(&entry.entity_type)
            .bind(&entry.entity_id)
            .bind(&entry.visit_id)
            .bind(i64::from(entry.phi))
            .bind(&entry.detail)
            .execute($executor)
            .await
            .map(|_| ())
    }};
}
pub(crate) use append_audit;

pub(crate) fn insert_sql() -> &'static str {
    INSERT
}

impl Store {
    /// Appends one audit record on its own (for reads that have no transaction of their own).
    pub async fn audit(&self, entry: &AuditEntry, now_ms: i64) -> Result<()> {
        on_pool!(self, pool => append_audit!(pool, entry, now_ms))?;
        Ok(())
    }

    pub async fn audit_for_visit(&self, tenant_id: &str, visit_id: &str) -> Result<Vec<AuditRow>> {
        let rows = on_pool!(self, pool => sqlx::query_as::<_, AuditRow>(
            "SELECT * FROM audit_log WHERE tenant_id = $1 AND visit_id = $2 ORDER BY seq")
            .bind(tenant_id).bind(visit_id).fetch_all(pool).await)?;
        Ok(rows)
    }
}
