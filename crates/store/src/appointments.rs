//! The EHR's appointments as Telechart has seen them, and each connection's poll watermark. A
//! snapshot is applied only if it is newer (by `meta.lastUpdated`) than what is kept, so a
//! repeated or out-of-order notification changes nothing; the events a change announces go to
//! the webhook outbox in the same commit.

use crate::keys::PhiSlot;
use crate::webhooks::insert_webhooks;
use crate::{NewWebhook, Phi, Result, Store, StoreError, on_pool};

/// An Appointment as read from the EHR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppointmentSnapshot {
    pub connection_id: String,
    pub appointment_id: String,
    pub status: String,
    pub start: Option<String>,
    /// `Patient/{id}`.
    pub patient: Phi,
    pub practitioner: Option<String>,
    /// `meta.lastUpdated`, Unix milliseconds.
    pub last_updated_ms: i64,
}

/// What Telechart knew of an appointment before a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownAppointment {
    pub status: String,
    pub last_updated_ms: i64,
}

fn row_id(connection_id: &str, appointment_id: &str) -> String {
    format!("{connection_id}/{appointment_id}")
}

impl Store {
    pub async fn known_appointment(
        &self,
        tenant_id: &str,
        connection_id: &str,
        appointment_id: &str,
    ) -> Result<Option<KnownAppointment>> {
        let row = on_pool!(self, pool => sqlx::query_as::<_, (String, i64)>(
            "SELECT status, last_updated FROM ehr_appointments WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_id).bind(row_id(connection_id, appointment_id)).fetch_optional(pool).await)?;
        Ok(row.map(|(status, last_updated_ms)| KnownAppointment { status, last_updated_ms }))
    }

    /// Keeps `snapshot` if what is stored is still `expected` (None: nothing stored), with its
    /// events. False when another writer got there first: read again and decide again.
    pub async fn apply_appointment(
        &self,
        tenant_id: &str,
        snapshot: &AppointmentSnapshot,
        expected: Option<&KnownAppointment>,
        webhooks: &[NewWebhook],
        now_ms: i64,
    ) -> Result<bool> {
        let id = row_id(&snapshot.connection_id, &snapshot.appointment_id);
        let slot = PhiSlot { tenant_id, table: "ehr_appointments", column: "patient", row_id: &id };
        let patient = self.seal(slot, &snapshot.patient).await?;
        let sealed = self.seal_webhooks(tenant_id, webhooks).await?;
        let applied = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let written = match expected {
                None => sqlx::query(
                    "INSERT INTO ehr_appointments (tenant_id, id, connection_id, appointment_id, status, start_at, patient, \
                     practitioner, last_updated, seen_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)")
                    .bind(tenant_id).bind(&id).bind(&snapshot.connection_id).bind(&snapshot.appointment_id)
                    .bind(&snapshot.status).bind(&snapshot.start).bind(&patient).bind(&snapshot.practitioner)
                    .bind(snapshot.last_updated_ms).bind(now_ms)
                    .execute(&mut *tx).await.map(|r| r.rows_affected()),
                Some(known) => sqlx::query(
                    "UPDATE ehr_appointments SET status = $1, start_at = $2, patient = $3, practitioner = $4, \
                     last_updated = $5, seen_at = $6 WHERE tenant_id = $7 AND id = $8 AND last_updated = $9 AND status = $10")
                    .bind(&snapshot.status).bind(&snapshot.start).bind(&patient).bind(&snapshot.practitioner)
                    .bind(snapshot.last_updated_ms).bind(now_ms).bind(tenant_id).bind(&id)
                    .bind(known.last_updated_ms).bind(&known.status)
                    .execute(&mut *tx).await.map(|r| r.rows_affected()),
            };
            match written {
                Ok(1) => {
                    insert_webhooks!(tx, tenant_id, webhooks, sealed, now_ms)?;
                    tx.commit().await?;
                    Ok(true)
                }
                Ok(_) => Ok(false),
                Err(e) if StoreError::is_unique_violation(&e) => Ok(false),
                Err(e) => Err(StoreError::Database(e)),
            }
        })?;
        Ok(applied)
    }

    pub async fn poll_watermark(&self, tenant_id: &str, connection_id: &str) -> Result<Option<i64>> {
        let row = on_pool!(self, pool => sqlx::query_as::<_, (i64,)>(
            "SELECT watermark FROM poll_watermarks WHERE tenant_id = $1 AND connection_id = $2")
            .bind(tenant_id).bind(connection_id).fetch_optional(pool).await)?;
        Ok(row.map(|(w,)| w))
    }

    /// Moves the watermark forward (never back).
    pub async fn advance_poll_watermark(
        &self,
        tenant_id: &str,
        connection_id: &str,
        watermark: i64,
        now_ms: i64,
    ) -> Result<()> {
        on_pool!(self, pool => sqlx::query(
            "INSERT INTO poll_watermarks (tenant_id, connection_id, watermark, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (tenant_id, connection_id) DO UPDATE SET \
             watermark = CASE WHEN excluded.watermark > poll_watermarks.watermark THEN excluded.watermark \
                         ELSE poll_watermarks.watermark END, updated_at = excluded.updated_at")
            .bind(tenant_id).bind(connection_id).bind(watermark).bind(now_ms)
            .execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(())
    }
}
