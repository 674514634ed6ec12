//! Disclosures: a visit shared with another organisation's EHR connection. Creating one enqueues
//! the visit's disclosable artifacts for that connection, in the same transaction as the record
//! and its audit; later disclosable artifacts of the visit follow it (`record_event`).

use crate::audit::append_audit;
use crate::keys::PhiSlot;
use crate::{AuditEntry, DeliveryRow, Phi, Result, Store, StoreError, on_pool};

#[derive(Debug, Clone, PartialEq)]
pub struct Disclosure {
    pub id: String,
    pub visit_id: String,
    pub connection_id: String,
    /// The patient as the recipient's EHR knows them (`Patient/{id}` there).
    pub recipient_patient: Phi,
    pub actor: String,
    pub created_at: i64,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    visit_id: String,
    connection_id: String,
    recipient_patient: String,
    actor: String,
    created_at: i64,
}

/// One already-recorded artifact to enqueue for the recipient.
#[derive(Debug, Clone)]
pub struct DisclosedArtifact {
    pub artifact_id: String,
    pub seq: i64,
    pub resource_type: String,
    pub identifier: String,
}

impl Store {
    /// Records `disclosure` and one pending delivery per artifact in `artifacts` to its
    /// connection, with the audit record, in one transaction. `expected_version` is the visit's
    /// version the caller read: a concurrent event (whose artifacts the caller did not see) makes
    /// this a conflict, so no artifact is left out. A second disclosure of the visit to the same
    /// connection is a conflict too.
    pub async fn create_disclosure(
        &self,
        tenant_id: &str,
        disclosure: &Disclosure,
        expected_version: i64,
        artifacts: &[DisclosedArtifact],
        audit: &AuditEntry,
    ) -> Result<()> {
        let slot = PhiSlot { tenant_id, table: "disclosures", column: "recipient_patient", row_id: &disclosure.id };
        let patient = self.seal(slot, &disclosure.recipient_patient).await?;
        let now_ms = disclosure.created_at;
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let bumped = sqlx::query(
                "UPDATE visits SET version = version + 1, updated_at = $1 WHERE tenant_id = $2 AND id = $3 AND version = $4")
                .bind(now_ms).bind(tenant_id).bind(&disclosure.visit_id).bind(expected_version)
                .execute(&mut *tx).await?.rows_affected();
            if bumped == 0 {
                return Err(StoreError::Conflict(format!(
                    "visit {} changed concurrently; read it again and retry", disclosure.visit_id)));
            }
            let existing: Option<(String,)> = sqlx::query_as(
                "SELECT id FROM disclosures WHERE tenant_id = $1 AND visit_id = $2 AND connection_id = $3")
                .bind(tenant_id).bind(&disclosure.visit_id).bind(&disclosure.connection_id)
                .fetch_optional(&mut *tx).await?;
            if let Some((id,)) = existing {
                return Err(StoreError::Conflict(format!(
                    "visit {} is already disclosed to connection {} (disclosure {id})",
                    disclosure.visit_id, disclosure.connection_id)));
            }
            sqlx::query(
                "INSERT INTO disclosures (tenant_id, id, visit_id, connection_id, recipient_patient, actor, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)")
                .bind(tenant_id).bind(&disclosure.id).bind(&disclosure.visit_id).bind(&disclosure.connection_id)
                .bind(&patient).bind(&disclosure.actor).bind(now_ms)
                .execute(&mut *tx).await?;
            for artifact in artifacts {
                sqlx::query(
                    "INSERT INTO deliveries (tenant_id, id, artifact_id, visit_id, connection_id, seq, \
                     resource_type, identifier, status, attempts, next_attempt_at, created_at, updated_at, lane) \
                     SELECT $1, $2, $3, $4, $5, $6, $7, $8, 'pending', 0, $9, $9, $9, lane FROM visits \
                     WHERE tenant_id = $1 AND id = $4")
                    .bind(tenant_id).bind(format!("{}:{}", artifact.artifact_id, disclosure.connection_id))
                    .bind(&artifact.artifact_id).bind(&disclosure.visit_id).bind(&disclosure.connection_id)
                    .bind(artifact.seq).bind(&artifact.resource_type).bind(&artifact.identifier).bind(now_ms)
                    .execute(&mut *tx).await?;
            }
            append_audit!(&mut *tx, audit, now_ms)?;
            tx.commit().await?;
            Ok::<(), StoreError>(())
        })
    }

    /// The visit's disclosures, oldest first.
    pub async fn disclosures(&self, tenant_id: &str, visit_id: &str) -> Result<Vec<Disclosure>> {
        let rows = on_pool!(self, pool => sqlx::query_as::<_, Row>(
            "SELECT id, visit_id, connection_id, recipient_patient, actor, created_at FROM disclosures \
             WHERE tenant_id = $1 AND visit_id = $2 ORDER BY created_at, id")
            .bind(tenant_id).bind(visit_id).fetch_all(pool).await)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.push(self.open_disclosure(tenant_id, r).await?);
        }
        Ok(out)
    }

    /// The disclosure of `visit_id` to `connection_id`, if there is one.
    pub async fn disclosure(&self, tenant_id: &str, visit_id: &str, connection_id: &str) -> Result<Option<Disclosure>> {
        let row = on_pool!(self, pool => sqlx::query_as::<_, Row>(
            "SELECT id, visit_id, connection_id, recipient_patient, actor, created_at FROM disclosures \
             WHERE tenant_id = $1 AND visit_id = $2 AND connection_id = $3")
            .bind(tenant_id).bind(visit_id).bind(connection_id).fetch_optional(pool).await)?;
        match row {
            Some(r) => Ok(Some(self.open_disclosure(tenant_id, r).await?)),
            None => Ok(None),
        }
    }

    async fn open_disclosure(&self, tenant_id: &str, r: Row) -> Result<Disclosure> {
        let slot = PhiSlot { tenant_id, table: "disclosures", column: "recipient_patient", row_id: &r.id };
        let recipient_patient = self.unseal(slot, &r.recipient_patient).await?;
        Ok(Disclosure {
            id: r.id,
            visit_id: r.visit_id,
            connection_id: r.connection_id,
            recipient_patient,
            actor: r.actor,
            created_at: r.created_at,
        })
    }

    /// Ends an in-flight delivery as `withheld`: the patient's consent no longer lets it leave.
    /// Terminal and not a dead letter (a replay would be refused again); later deliveries of the
    /// visit do not wait for it. Returns false if the lease was lost.
    pub async fn withhold_delivery(
        &self,
        row: &DeliveryRow,
        worker_id: &str,
        reason: &str,
        audit: &AuditEntry,
        now_ms: i64,
    ) -> Result<bool> {
        let ours = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let n = sqlx::query(
                "UPDATE deliveries SET status = 'withheld', last_error = $1, lease_owner = NULL, lease_expires_at = NULL, \
                 completed_at = $2, updated_at = $2 \
                 WHERE tenant_id = $3 AND id = $4 AND status = 'in_flight' AND lease_owner = $5")
                .bind(reason).bind(now_ms).bind(&row.tenant_id).bind(&row.id).bind(worker_id)
                .execute(&mut *tx).await?.rows_affected();
            if n == 1 {
                append_audit!(&mut *tx, audit, now_ms)?;
            }
            tx.commit().await?;
            n == 1
        });
        Ok(ours)
    }
}
