//! Return-or-destroy tasks: opened when a business associate agreement ends, closed once with
//! what was done, and the destruction itself for an EHR connection's visits.

use std::collections::HashSet;

use crate::audit::append_audit;
use crate::keys::PhiSlot;
use crate::{AuditEntry, PURGED_PAYLOAD, Phi, Result, Store, StoreError, on_pool};

/// One ended agreement's obligation.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct BaaTask {
    pub tenant_id: String,
    pub baa: String,
    pub origin: String,
    pub counterparty: Option<String>,
    /// The agreement's last day in force (ISO date).
    pub ended_on: String,
    /// EHR connections at that origin, comma-separated (empty for other destinations).
    pub connections: String,
    pub opened_at: i64,
    /// `open`, `returned` or `destroyed`.
    pub status: String,
    pub closed_by: Option<String>,
    pub closed_at: Option<i64>,
    pub note: Option<String>,
}

impl BaaTask {
    pub fn connection_ids(&self) -> Vec<&str> {
        self.connections.split(',').filter(|c| !c.is_empty()).collect()
    }
}

/// What destroying a connection's data did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Destroyed {
    /// Artifact payloads replaced by a sealed tombstone.
    pub payloads: u64,
    /// Note drafts (working copies of the note) removed.
    pub drafts: u64,
    /// Deliveries to the connection that will now never be sent.
    pub withheld: u64,
    /// Visits under a legal hold, whose data was kept.
    pub held_visits: u64,
}

impl Store {
    /// Opens the task for an ended agreement, with its audit record; false when it is open
    /// (or was closed) already.
    pub async fn open_baa_task(&self, task: &BaaTask, audit: &AuditEntry) -> Result<bool> {
        Ok(on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let opened = sqlx::query(
                "INSERT INTO baa_tasks (tenant_id, baa, origin, counterparty, ended_on, connections, opened_at, status) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'open') ON CONFLICT (tenant_id, baa, origin) DO NOTHING")
                .bind(&task.tenant_id).bind(&task.baa).bind(&task.origin).bind(&task.counterparty)
                .bind(&task.ended_on).bind(&task.connections).bind(task.opened_at)
                .execute(&mut *tx).await?.rows_affected() == 1;
            if opened {
                append_audit!(&mut *tx, audit, task.opened_at)?;
                tx.commit().await?;
            }
            Ok::<bool, StoreError>(opened)
        })?)
    }

    pub async fn baa_tasks(&self, tenant_id: &str) -> Result<Vec<BaaTask>> {
        Ok(on_pool!(self, pool => sqlx::query_as::<_, BaaTask>(
            "SELECT * FROM baa_tasks WHERE tenant_id = $1 ORDER BY opened_at, baa, origin")
            .bind(tenant_id).fetch_all(pool).await)?)
    }

    /// Closes an open task as `returned` or `destroyed`, with who and a note, audited. False
    /// when there is no such open task.
    #[allow(clippy::too_many_arguments)] // one closure: each argument is part of the record
    pub async fn close_baa_task(
        &self,
        tenant_id: &str,
        baa: &str,
        origin: &str,
        status: &str,
        actor: &str,
        note: &str,
        audit: &AuditEntry,
        now_ms: i64,
    ) -> Result<bool> {
        if !matches!(status, "returned" | "destroyed") {
            return Err(StoreError::Conflict(format!("a task closes as returned or destroyed, not {status}")));
        }
        Ok(on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let closed = sqlx::query(
                "UPDATE baa_tasks SET status = $1, closed_by = $2, closed_at = $3, note = $4 \
                 WHERE tenant_id = $5 AND baa = $6 AND origin = $7 AND status = 'open'")
                .bind(status).bind(actor).bind(now_ms).bind(note).bind(tenant_id).bind(baa).bind(origin)
                .execute(&mut *tx).await?.rows_affected() == 1;
            if closed {
                append_audit!(&mut *tx, audit, now_ms)?;
                tx.commit().await?;
            }
            Ok::<bool, StoreError>(closed)
        })?)
    }

    /// Destroys the PHI Telechart holds for the visits on `connection_id`, outside `held` visits:
    /// every artifact payload becomes a sealed tombstone, note drafts are removed, and what was still
    /// to be sent there is withheld. Ids, times and the delivery trail stay, so the audit log and
    /// the trace still explain what happened. One transaction per visit.
    pub async fn destroy_connection_data(
        &self,
        tenant_id: &str,
        connection_id: &str,
        held: &HashSet<String>,
        now_ms: i64,
    ) -> Result<Destroyed> {
        let visits: Vec<(String,)> = on_pool!(self, pool => sqlx::query_as(
            "SELECT id FROM visits WHERE tenant_id = $1 AND connection_id = $2 ORDER BY id")
            .bind(tenant_id).bind(connection_id).fetch_all(pool).await)?;
        let mut done = Destroyed::default();
        for (visit_id,) in visits {
            if held.contains(&visit_id) {
                done.held_visits += 1;
                continue;
            }
            let artifacts: Vec<(String,)> = on_pool!(self, pool => sqlx::query_as(
                "SELECT id FROM artifacts WHERE tenant_id = $1 AND visit_id = $2 AND kind <> 'purged'")
                .bind(tenant_id).bind(&visit_id).fetch_all(pool).await)?;
            // Sealed first: sealing may touch the key table, which a write transaction holds here.
            let tombstone = Phi::new(PURGED_PAYLOAD);
            let mut sealed_artifacts = Vec::with_capacity(artifacts.len());
            for (id,) in &artifacts {
                let slot = PhiSlot { tenant_id, table: "artifacts", column: "payload", row_id: id };
                sealed_artifacts.push((id, self.seal(slot, &tombstone).await?));
            }
            let (payloads, drafts, withheld) = on_pool!(self, pool => {
                let mut tx = pool.begin().await?;
                let mut payloads = 0;
                for (id, sealed) in &sealed_artifacts {
                    payloads += sqlx::query(
                        "UPDATE artifacts SET payload = $1, kind = 'purged' WHERE tenant_id = $2 AND id = $3 AND kind <> 'purged'")
                        .bind(sealed).bind(tenant_id).bind(*id).execute(&mut *tx).await?.rows_affected();
                }
                // Drafts are working copies of the note (the signed one is an artifact): removed.
                let mut drafts = sqlx::query("DELETE FROM note_drafts WHERE tenant_id = $1 AND visit_id = $2")
                    .bind(tenant_id).bind(&visit_id).execute(&mut *tx).await?.rows_affected();
                // The care plan's working copies and the patient's tasks and links go with them
                // (the signed plan and summary are artifacts, purged above).
                for table in ["care_plan_drafts", "patient_tasks", "portal_links"] {
                    let sql = format!("DELETE FROM {table} WHERE tenant_id = $1 AND visit_id = $2");
                    let removed = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                        .bind(tenant_id).bind(&visit_id).execute(&mut *tx).await?.rows_affected();
                    if table == "care_plan_drafts" {
                        drafts += removed;
                    }
                }
                let withheld = sqlx::query(
                    "UPDATE deliveries SET status = 'withheld', last_error = $1, lease_owner = NULL, lease_expires_at = NULL, \
                     updated_at = $2 WHERE tenant_id = $3 AND visit_id = $4 AND status NOT IN ('done', 'withheld', 'discarded')")
                    .bind("the business associate agreement ended and the data was destroyed")
                    .bind(now_ms).bind(tenant_id).bind(&visit_id)
                    .execute(&mut *tx).await?.rows_affected();
                tx.commit().await?;
                Ok::<(u64, u64, u64), StoreError>((payloads, drafts, withheld))
            })?;
            done.payloads += payloads;
            done.drafts += drafts;
            done.withheld += withheld;
        }
        Ok(done)
    }
}
