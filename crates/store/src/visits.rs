//! EHR connections, visits and the one transaction that turns a visit event into artifacts and
//! deliveries.

use sqlx::FromRow;

use crate::audit::append_audit;
use crate::keys::PhiSlot;
use crate::{AuditEntry, Phi, Result, Store, StoreError, on_pool};

#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct ConnectionRow {
    pub tenant_id: String,
    pub id: String,
    pub name: String,
    /// The vendor profile that decides auth, paging and write capabilities.
    pub profile: String,
    pub base_url: String,
    /// Profile settings as JSON (no secrets: those come from files named here).
    pub settings: String,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, FromRow)]
struct VisitRecord {
    tenant_id: String,
    id: String,
    connection_id: String,
    appointment_id: String,
    patient: String,
    practitioner: Option<String>,
    state: String,
    version: i64,
    artifact_count: i64,
    ehr_encounter_id: Option<String>,
    created_at: i64,
    updated_at: i64,
    call_ended_at: Option<i64>,
    billing: Option<String>,
    #[sqlx(default)]
    visit_type: Option<String>,
    lane: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisitRow {
    pub tenant_id: String,
    pub id: String,
    pub connection_id: String,
    pub appointment_id: String,
    /// `Patient/{id}` in the EHR.
    pub patient: Phi,
    pub practitioner: Option<String>,
    pub state: String,
    pub version: i64,
    pub artifact_count: i64,
    pub ehr_encounter_id: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// When the telehealth platform reported the call ended.
    pub call_ended_at: Option<i64>,
    /// Billing facts as JSON, once recorded.
    pub billing: Option<String>,
    /// The Appointment's type as the EHR coded it (`followup`, `walkin`, …): picks the note
    /// template.
    pub visit_type: Option<String>,
    /// Priority lane of its deliveries (`LANE_CLINICAL`, `LANE_BACKFILL`).
    pub lane: i64,
}

/// What an event's artifacts belong with, kept in the event's transaction.
#[derive(Debug, Clone, Copy)]
pub enum EventRecord<'a> {
    /// A version of the patient's consent.
    Consent(&'a crate::ConsentVersion),
    /// A version of the patient's consent signed through a link, which the same transaction
    /// spends (so a link signs once, and a failed recording leaves it unspent).
    ConsentByLink { consent: &'a crate::ConsentVersion, link_id: &'a str },
    /// The signature of the note draft that the event's note artifact is.
    DraftSigned(&'a crate::DraftSignature),
    /// The signature of the care-plan draft the event's CarePlan, Goal and summary artifacts
    /// are, with the patient's tasks.
    CarePlanSigned(&'a crate::CarePlanSignature),
}

impl Store {
    async fn visit_row(&self, r: VisitRecord) -> Result<VisitRow> {
        let slot = PhiSlot { tenant_id: &r.tenant_id, table: "visits", column: "patient", row_id: &r.id };
        let patient = self.unseal(slot, &r.patient).await?;
        Ok(VisitRow {
            patient,
            tenant_id: r.tenant_id,
            id: r.id,
            connection_id: r.connection_id,
            appointment_id: r.appointment_id,
            practitioner: r.practitioner,
            state: r.state,
            version: r.version,
            artifact_count: r.artifact_count,
            ehr_encounter_id: r.ehr_encounter_id,
            created_at: r.created_at,
            updated_at: r.updated_at,
            call_ended_at: r.call_ended_at,
            billing: r.billing,
            visit_type: r.visit_type,
            lane: r.lane,
        })
    }

    async fn artifact_payload(&self, tenant_id: &str, artifact_id: &str, stored: &str) -> Result<Phi> {
        self.unseal(PhiSlot { tenant_id, table: "artifacts", column: "payload", row_id: artifact_id }, stored).await
    }
}

#[derive(Debug, Clone)]
pub struct NewVisit {
    pub tenant_id: String,
    pub id: String,
    pub connection_id: String,
    pub appointment_id: String,
    pub patient: Phi,
    pub practitioner: Option<String>,
    pub state: String,
    /// The Appointment's type, lower-case.
    pub visit_type: Option<String>,
    /// Its deliveries' priority lane: [`LANE_CLINICAL`] or [`LANE_BACKFILL`].
    pub lane: i64,
}

/// A visit whose chart closes now: its deliveries are claimed first.
pub const LANE_CLINICAL: i64 = 0;
/// A visit being caught up (history): delivered when no clinical work is due.
pub const LANE_BACKFILL: i64 = 2;

#[derive(Debug, Clone)]
pub struct NewArtifact {
    pub id: String,
    pub kind: String,
    /// The FHIR resource type its deliveries write.
    pub resource_type: String,
    /// The value of the Telechart identifier the written resource carries.
    pub identifier: String,
    pub payload: Phi,
    /// Whether it also goes to the connections the visit is disclosed to (see `disclosures`).
    pub disclosable: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactRow {
    pub id: String,
    pub visit_id: String,
    pub seq: i64,
    pub kind: String,
    pub payload: Phi,
    pub created_at: i64,
}

/// Everything a worker needs to write one delivery: the visit and the artifact.
#[derive(Debug, Clone)]
pub struct WorkItem {
    pub visit: VisitRow,
    pub artifact: ArtifactRow,
}

#[derive(FromRow)]
struct WorkRecord {
    #[sqlx(flatten)]
    visit: VisitRecord,
    artifact_id: String,
    artifact_seq: i64,
    artifact_kind: String,
    artifact_payload: String,
    artifact_created_at: i64,
}

impl Store {
    pub async fn upsert_connection(&self, row: &ConnectionRow) -> Result<()> {
        on_pool!(self, pool => sqlx::query(
            "INSERT INTO ehr_connections (tenant_id, id, name, profile, base_url, settings, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (tenant_id, id) DO UPDATE SET name = excluded.name, profile = excluded.profile, \
             base_url = excluded.base_url, settings = excluded.settings, updated_at = excluded.updated_at")
            .bind(&row.tenant_id).bind(&row.id).bind(&row.name).bind(&row.profile).bind(&row.base_url)
            .bind(&row.settings).bind(row.created_at).bind(row.updated_at)
            .execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn connection(&self, tenant_id: &str, id: &str) -> Result<Option<ConnectionRow>> {
        let row = on_pool!(self, pool => sqlx::query_as::<_, ConnectionRow>(
            "SELECT * FROM ehr_connections WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_id).bind(id).fetch_optional(pool).await)?;
        Ok(row)
    }

    pub async fn connections(&self, tenant_id: &str) -> Result<Vec<ConnectionRow>> {
        let rows = on_pool!(self, pool => sqlx::query_as::<_, ConnectionRow>(
            "SELECT * FROM ehr_connections WHERE tenant_id = $1 ORDER BY id")
            .bind(tenant_id).fetch_all(pool).await)?;
        Ok(rows)
    }

    /// Opens a visit. One visit per appointment: a second open of the same appointment is a
    /// conflict naming the existing visit.
    pub async fn create_visit(&self, visit: &NewVisit, audit: &AuditEntry, now_ms: i64) -> Result<VisitRow> {
        let slot = PhiSlot { tenant_id: &visit.tenant_id, table: "visits", column: "patient", row_id: &visit.id };
        let patient = self.seal(slot, &visit.patient).await?;
        let inserted = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let inserted = sqlx::query(
                "INSERT INTO visits (tenant_id, id, connection_id, appointment_id, patient, practitioner, state, \
                 version, artifact_count, ehr_encounter_id, created_at, updated_at, visit_type, lane) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 1, 0, NULL, $8, $8, $9, $10)")
                .bind(&visit.tenant_id).bind(&visit.id).bind(&visit.connection_id).bind(&visit.appointment_id)
                .bind(&patient).bind(&visit.practitioner).bind(&visit.state).bind(now_ms).bind(&visit.visit_type)
                .bind(visit.lane)
                .execute(&mut *tx).await;
            match inserted {
                Ok(_) => {
                    append_audit!(&mut *tx, audit, now_ms)?;
                    tx.commit().await?;
                    Ok(true)
                }
                Err(err) if StoreError::is_unique_violation(&err) => Ok(false),
                Err(err) => Err(StoreError::Database(err)),
            }
        })?;
        if !inserted {
            let existing =
                self.visit_for_appointment(&visit.tenant_id, &visit.connection_id, &visit.appointment_id).await?;
            let id = existing.map(|v| v.id).unwrap_or_default();
            return Err(StoreError::Conflict(format!("appointment {} already has visit {id}", visit.appointment_id)));
        }
        self.visit(&visit.tenant_id, &visit.id)
            .await?
            .ok_or_else(|| StoreError::NotFound { entity: "visit", id: visit.id.clone() })
    }

    pub async fn visit(&self, tenant_id: &str, id: &str) -> Result<Option<VisitRow>> {
        let row = on_pool!(self, pool => sqlx::query_as::<_, VisitRecord>(
            "SELECT * FROM visits WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_id).bind(id).fetch_optional(pool).await)?;
        match row {
            Some(record) => Ok(Some(self.visit_row(record).await?)),
            None => Ok(None),
        }
    }

    pub async fn visit_for_appointment(
        &self,
        tenant_id: &str,
        connection_id: &str,
        appointment_id: &str,
    ) -> Result<Option<VisitRow>> {
        let row = on_pool!(self, pool => sqlx::query_as::<_, VisitRecord>(
            "SELECT * FROM visits WHERE tenant_id = $1 AND connection_id = $2 AND appointment_id = $3")
            .bind(tenant_id).bind(connection_id).bind(appointment_id).fetch_optional(pool).await)?;
        match row {
            Some(record) => Ok(Some(self.visit_row(record).await?)),
            None => Ok(None),
        }
    }

    /// Records one visit event in one transaction: the state change (if any), its artifacts, one
    /// delivery per artifact and target connection (and, for a disclosable artifact, per connection
    /// the visit is disclosed to), and the audit record. `expected_version` guards against a
    /// concurrent event; a mismatch is a conflict and nothing is written.
    #[allow(clippy::too_many_arguments)]
    pub async fn record_event(
        &self,
        tenant_id: &str,
        visit_id: &str,
        expected_version: i64,
        new_state: &str,
        artifacts: &[NewArtifact],
        targets: &[String],
        webhooks: &[crate::NewWebhook],
        audit: &AuditEntry,
        now_ms: i64,
    ) -> Result<VisitRow> {
        self.record_event_with(
            tenant_id,
            visit_id,
            expected_version,
            new_state,
            artifacts,
            targets,
            webhooks,
            None,
            audit,
            now_ms,
        )
        .await
    }

    /// As [`Store::record_event`], with a record the artifacts belong with, in the same
    /// transaction: a version of the patient's consent (the Consent the gate reads and the
    /// artifact that takes it to the EHR commit together), or the signature of the note draft
    /// the note artifact is.
    #[allow(clippy::too_many_arguments)]
    pub async fn record_event_with(
        &self,
        tenant_id: &str,
        visit_id: &str,
        expected_version: i64,
        new_state: &str,
        artifacts: &[NewArtifact],
        targets: &[String],
        webhooks: &[crate::NewWebhook],
        with: Option<EventRecord<'_>>,
        audit: &AuditEntry,
        now_ms: i64,
    ) -> Result<VisitRow> {
        let count = i64::try_from(artifacts.len()).unwrap_or(i64::MAX);
        let sealed_with = match with {
            Some(EventRecord::Consent(c) | EventRecord::ConsentByLink { consent: c, .. }) => {
                Some(self.seal_consent(tenant_id, c).await?)
            }
            Some(EventRecord::DraftSigned(s)) => {
                Some(self.seal(crate::drafts::signed_slot(tenant_id, &s.draft_id), &s.signed_text).await?)
            }
            Some(EventRecord::CarePlanSigned(_)) | None => None,
        };
        let sealed_plan = match with {
            Some(EventRecord::CarePlanSigned(s)) => Some(self.seal_care_plan_signature(tenant_id, s).await?),
            _ => None,
        };
        let sealed_webhooks = self.seal_webhooks(tenant_id, webhooks).await?;
        // Sealed before the transaction opens: sealing may create the tenant's first data key.
        let mut payloads = Vec::with_capacity(artifacts.len());
        for artifact in artifacts {
            let slot = PhiSlot { tenant_id, table: "artifacts", column: "payload", row_id: &artifact.id };
            payloads.push(self.seal(slot, &artifact.payload).await?);
        }
        let updated = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let base: Option<(i64, i64)> = sqlx::query_as(
                "UPDATE visits SET state = $1, version = version + 1, artifact_count = artifact_count + $2, \
                 updated_at = $3 WHERE tenant_id = $4 AND id = $5 AND version = $6 RETURNING artifact_count - $2, lane")
                .bind(new_state).bind(count).bind(now_ms).bind(tenant_id).bind(visit_id).bind(expected_version)
                .fetch_optional(&mut *tx).await?;
            match base {
                None => Ok::<bool, StoreError>(false),
                Some((base, lane)) => {
                    // Read after the version check: a disclosure made concurrently conflicted instead.
                    let disclosed: Vec<(String,)> = sqlx::query_as(
                        "SELECT connection_id FROM disclosures WHERE tenant_id = $1 AND visit_id = $2 ORDER BY connection_id")
                        .bind(tenant_id).bind(visit_id).fetch_all(&mut *tx).await?;
                    for ((offset, artifact), payload) in (1_i64..).zip(artifacts).zip(&payloads) {
                        let seq = base + offset;
                        sqlx::query(
                            "INSERT INTO artifacts (tenant_id, id, visit_id, seq, kind, payload, created_at) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7)")
                            .bind(tenant_id).bind(&artifact.id).bind(visit_id).bind(seq).bind(&artifact.kind)
                            .bind(payload).bind(now_ms)
                            .execute(&mut *tx).await?;
                        let recipients = disclosed.iter().filter(|_| artifact.disclosable).map(|(c,)| c);
                        for connection_id in targets.iter().chain(recipients) {
                            sqlx::query(
                                "INSERT INTO deliveries (tenant_id, id, artifact_id, visit_id, connection_id, seq, \
                                 resource_type, identifier, status, attempts, next_attempt_at, created_at, updated_at, lane) \
                                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', 0, $9, $9, $9, $10)")
                                .bind(tenant_id).bind(format!("{}:{connection_id}", artifact.id)).bind(&artifact.id)
                                .bind(visit_id).bind(connection_id).bind(seq).bind(&artifact.resource_type)
                                .bind(&artifact.identifier).bind(now_ms).bind(lane)
                                .execute(&mut *tx).await?;
                        }
                    }
                    crate::webhooks::insert_webhooks!(tx, tenant_id, webhooks, sealed_webhooks, now_ms)?;
                    match (with, &sealed_with) {
                        (Some(EventRecord::Consent(c)), Some(sealed)) => {
                            crate::consents::insert_consent!(tx, tenant_id, c, sealed)?;
                        }
                        (Some(EventRecord::ConsentByLink { consent, link_id }), Some(sealed)) => {
                            crate::consent_texts::spend_consent_link!(tx, tenant_id, link_id, now_ms)?;
                            crate::consents::insert_consent!(tx, tenant_id, consent, sealed)?;
                        }
                        (Some(EventRecord::DraftSigned(signature)), Some(sealed)) => {
                            crate::drafts::sign_draft!(tx, tenant_id, signature, sealed)?;
                        }
                        _ => {}
                    }
                    if let (Some(EventRecord::CarePlanSigned(signature)), Some(sealed)) = (with, &sealed_plan) {
                        crate::care_plans::sign_care_plan!(tx, tenant_id, signature, sealed, now_ms)?;
                    }
                    append_audit!(&mut *tx, audit, now_ms)?;
                    tx.commit().await?;
                    Ok(true)
                }
            }
        })?;
        let visit = self
            .visit(tenant_id, visit_id)
            .await?
            .ok_or_else(|| StoreError::NotFound { entity: "visit", id: visit_id.to_owned() })?;
        if !updated {
            return Err(StoreError::Conflict(format!(
                "visit {visit_id} changed concurrently (version {} is not {expected_version}); retry with the current state",
                visit.version
            )));
        }
        Ok(visit)
    }

    /// Whether the visit has an artifact of `kind` (no PHI is opened to answer).
    /// Points the visit at the patient the EHR merged its patient into (audited, with both).
    pub async fn repoint_visit_patient(
        &self,
        tenant_id: &str,
        visit_id: &str,
        survivor: &Phi,
        audit: &AuditEntry,
        now_ms: i64,
    ) -> Result<()> {
        let slot = PhiSlot { tenant_id, table: "visits", column: "patient", row_id: visit_id };
        let sealed = self.seal(slot, survivor).await?;
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query("UPDATE visits SET patient = $1, updated_at = $2 WHERE tenant_id = $3 AND id = $4")
                .bind(&sealed).bind(now_ms).bind(tenant_id).bind(visit_id).execute(&mut *tx).await?;
            append_audit!(&mut *tx, audit, now_ms)?;
            tx.commit().await
        })?;
        Ok(())
    }

    /// Binds the visit to the EHR's own Encounter (from a launch's context) unless it has one.
    pub async fn bind_ehr_encounter(&self, tenant_id: &str, visit_id: &str, encounter_id: &str) -> Result<bool> {
        let bound = on_pool!(self, pool => sqlx::query(
            "UPDATE visits SET ehr_encounter_id = $1 WHERE tenant_id = $2 AND id = $3 AND ehr_encounter_id IS NULL")
            .bind(encounter_id).bind(tenant_id).bind(visit_id).execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(bound == 1)
    }

    /// Records the visit's billing facts (replacing earlier ones), audited.
    pub async fn set_visit_billing(
        &self,
        tenant_id: &str,
        visit_id: &str,
        billing: &str,
        audit: &AuditEntry,
        now_ms: i64,
    ) -> Result<()> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query("UPDATE visits SET billing = $1, updated_at = $2 WHERE tenant_id = $3 AND id = $4")
                .bind(billing).bind(now_ms).bind(tenant_id).bind(visit_id).execute(&mut *tx).await?;
            append_audit!(&mut *tx, audit, now_ms)?;
            tx.commit().await
        })?;
        Ok(())
    }

    pub async fn has_artifact_kind(&self, tenant_id: &str, visit_id: &str, kind: &str) -> Result<bool> {
        let found = on_pool!(self, pool => sqlx::query_as::<_, (i64,)>(
            "SELECT COUNT(*) FROM artifacts WHERE tenant_id = $1 AND visit_id = $2 AND kind = $3")
            .bind(tenant_id).bind(visit_id).bind(kind).fetch_one(pool).await)?;
        Ok(found.0 > 0)
    }

    pub async fn artifacts(&self, tenant_id: &str, visit_id: &str) -> Result<Vec<ArtifactRow>> {
        let rows = on_pool!(self, pool => sqlx::query_as::<_, (String, String, i64, String, String, i64)>(
            "SELECT id, visit_id, seq, kind, payload, created_at FROM artifacts \
             WHERE tenant_id = $1 AND visit_id = $2 ORDER BY seq")
            .bind(tenant_id).bind(visit_id).fetch_all(pool).await)?;
        let mut out = Vec::with_capacity(rows.len());
        for (id, visit_id, seq, kind, payload, created_at) in rows {
            let payload = self.artifact_payload(tenant_id, &id, &payload).await?;
            out.push(ArtifactRow { id, visit_id, seq, kind, payload, created_at });
        }
        Ok(out)
    }

    /// Loads the visit and artifact behind a claimed delivery, in one query.
    pub async fn work_item(&self, tenant_id: &str, artifact_id: &str) -> Result<WorkItem> {
        let row = on_pool!(self, pool => sqlx::query_as::<_, WorkRecord>(
            "SELECT v.*, a.id AS artifact_id, a.seq AS artifact_seq, a.kind AS artifact_kind, \
             a.payload AS artifact_payload, a.created_at AS artifact_created_at \
             FROM artifacts a JOIN visits v ON v.tenant_id = a.tenant_id AND v.id = a.visit_id \
             WHERE a.tenant_id = $1 AND a.id = $2")
            .bind(tenant_id).bind(artifact_id).fetch_optional(pool).await)?;
        let row = row.ok_or_else(|| StoreError::NotFound { entity: "artifact", id: artifact_id.to_owned() })?;
        let payload = self.artifact_payload(tenant_id, &row.artifact_id, &row.artifact_payload).await?;
        let visit = self.visit_row(row.visit).await?;
        Ok(WorkItem {
            artifact: ArtifactRow {
                id: row.artifact_id,
                visit_id: visit.id.clone(),
                seq: row.artifact_seq,
                kind: row.artifact_kind,
                payload,
                created_at: row.artifact_created_at,
            },
            visit,
        })
    }
}

impl Store {
    /// Keeps a connection's contract as a new version if it differs from the latest; returns
    /// the version that holds it.
    pub async fn save_contract(
        &self,
        tenant_id: &str,
        connection_id: &str,
        contract: &str,
        now_ms: i64,
    ) -> Result<i64> {
        if let Some((version, latest)) = self.latest_contract(tenant_id, connection_id).await?
            && latest == contract
        {
            return Ok(version);
        }
        let version = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let (next,): (i64,) = sqlx::query_as(
                "SELECT COALESCE(MAX(version), 0) + 1 FROM capability_contracts WHERE tenant_id = $1 AND connection_id = $2")
                .bind(tenant_id).bind(connection_id).fetch_one(&mut *tx).await?;
            sqlx::query(
                "INSERT INTO capability_contracts (tenant_id, connection_id, version, contract, fetched_at) VALUES ($1, $2, $3, $4, $5)")
                .bind(tenant_id).bind(connection_id).bind(next).bind(contract).bind(now_ms).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok::<i64, StoreError>(next)
        })?;
        Ok(version)
    }

    /// The latest contract of a connection: (version, JSON).
    pub async fn latest_contract(&self, tenant_id: &str, connection_id: &str) -> Result<Option<(i64, String)>> {
        let row = on_pool!(self, pool => sqlx::query_as::<_, (i64, String)>(
            "SELECT version, contract FROM capability_contracts WHERE tenant_id = $1 AND connection_id = $2 \
             ORDER BY version DESC LIMIT 1")
            .bind(tenant_id).bind(connection_id).fetch_optional(pool).await)?;
        Ok(row)
    }
}
