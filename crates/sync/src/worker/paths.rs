//! The worker's roads beside a plain FHIR create: following a patient merge, moving the visit on
//! the Appointment, and the planned fallbacks (the EHR's document API, HL7v2 over MLLP).

use std::time::Duration;

use telechart_ehr::{EhrError, FhirClient, Written};
use telechart_store::{AuditEntry, ClaimedDelivery};
use telechart_visit::{EncounterStatusChange, VisitContext, VitalMeasurement, VitalValue};

use super::{Delivered, Worker, compared};
use crate::{FaultPoint, SyncError};

impl Worker {
    /// Follows the EHR's merges of the visit's patient (`Patient.link` replaced-by, five hops at
    /// most) and points the visit at the survivor. True when the patient changed.
    pub(super) async fn follow_merges(
        &self,
        tenant_id: &str,
        visit_id: &str,
        connection_id: &str,
    ) -> Result<bool, SyncError> {
        let Some(visit) = self.store.visit(tenant_id, visit_id).await? else { return Ok(false) };
        let client = self.connections.client(tenant_id, connection_id).await?;
        let recorded = visit.patient.expose().to_owned();
        let mut current = recorded.clone();
        for _ in 0..5 {
            let Some(("Patient", id)) = telechart_fhir::parse_reference(&current) else { break };
            let patient = match client.read("Patient", id).await {
                Ok(read) => read.resource,
                // Not allowed to read patients here (scopes), or gone: nothing to follow.
                Err(EhrError::Refused { status, .. }) => {
                    tracing::warn!(visit = visit_id, status, "the visit's Patient cannot be read; merges not checked");
                    break;
                }
                Err(e) => return Err(e.into()),
            };
            let next = patient["link"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|l| l["type"] == "replaced-by")
                .and_then(|l| l["other"]["reference"].as_str())
                .map(str::to_owned);
            match next {
                Some(next) if next != current && next != recorded => current = next,
                _ => break,
            }
        }
        if current == recorded {
            return Ok(false);
        }
        let audit = AuditEntry {
            tenant_id: tenant_id.to_owned(),
            actor: format!("worker:{}", self.config.worker_id),
            action: "visit.patient-merged".to_owned(),
            entity_type: "visit".to_owned(),
            entity_id: visit_id.to_owned(),
            visit_id: Some(visit_id.to_owned()),
            phi: true,
            detail: format!("the EHR merged the visit's patient; now {current} (was {recorded})"),
            purpose_of_use: Some("TREAT".to_owned()),
            ..Default::default()
        };
        self.store
            .repoint_visit_patient(
                tenant_id,
                visit_id,
                &telechart_store::Phi::new(current),
                &audit,
                self.clock.now_ms(),
            )
            .await?;
        tracing::info!(visit = visit_id, "followed a patient merge in the EHR");
        Ok(true)
    }

    /// The identifying part of an HL7v2 message for this visit; the artifact id is MSH-10, so a
    /// resent message is recognizably the same one.
    pub(super) fn hl7_context<'a>(
        &self,
        ctx: &'a VisitContext,
        visit_number: &'a str,
        control_id: &'a str,
    ) -> Result<telechart_ehr::hl7v2::Hl7Context<'a>, SyncError> {
        let Some(("Patient", patient_id)) = telechart_fhir::parse_reference(&ctx.patient) else {
            return Err(SyncError::Mapping { artifact_id: control_id.to_owned(), reason: "no patient id".into() });
        };
        Ok(telechart_ehr::hl7v2::Hl7Context {
            sending_facility: "TELECHART",
            receiving_facility: "EHR",
            patient_id,
            visit_number,
            timestamp: hl7_time(self.clock.now()),
            control_id,
        })
    }

    pub(super) async fn send_hl7(
        &self,
        client: &FhirClient,
        control_id: &str,
        message: &str,
    ) -> Result<(Written, bool), SyncError> {
        let Some(address) = client.mllp() else {
            return Err(EhrError::NotSupported("no MLLP listener for this connection".into()).into());
        };
        if self.faults.fires(FaultPoint::BeforeSend) {
            return Err(SyncError::Crashed(FaultPoint::BeforeSend));
        }
        telechart_ehr::hl7v2::send(address, message, Duration::from_secs(10)).await?;
        Ok((Written { id: format!("HL7v2-{control_id}"), version: None, resource: None }, false))
    }

    /// One PDF through the EHR's document API. The API has no identifier to search by, so an
    /// attempt whose outcome is unknown is not resent blindly: it waits for a person to check.
    /// What the EHR kept is read back over its FHIR API (read-only there) and compared.
    pub(super) async fn upload_document(
        &self,
        client: &FhirClient,
        claimed: &ClaimedDelivery,
        ctx: &VisitContext,
        title: &str,
        pdf: &[u8],
    ) -> Result<Delivered, SyncError> {
        let Some(upload) = client.profile.document_upload else {
            return Err(EhrError::NotSupported("no document API".into()).into());
        };
        if claimed.must_reconcile {
            return Err(unsearchable("document"));
        }
        let Some(("Patient", patient)) = telechart_fhir::parse_reference(&ctx.patient) else {
            return Err(SyncError::Mapping {
                artifact_id: claimed.row.artifact_id.clone(),
                reason: "no patient id".into(),
            });
        };
        if self.faults.fires(FaultPoint::BeforeSend) {
            return Err(SyncError::Crashed(FaultPoint::BeforeSend));
        }
        let written = client.upload_document(&upload, patient, title, pdf).await?;
        let sent = serde_json::json!({"description": title, "content": [{"attachment": {
            "contentType": "application/pdf",
            "data": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, pdf)}}]});
        let kept = client.read("DocumentReference", &written.id).await.map(|read| read.resource);
        Ok(Delivered { written, adopted: false, readback: compared(&sent, kept, "document") })
    }

    /// An encounter's readings through the EHR's vitals API, read back from the same API. Like
    /// the document API it cannot be searched by our identifier, so an unknown outcome waits
    /// for a person.
    pub(super) async fn upload_vitals(
        &self,
        client: &FhirClient,
        claimed: &ClaimedDelivery,
        encounter: &str,
        vital: &VitalMeasurement,
    ) -> Result<Delivered, SyncError> {
        let Some(upload) = client.profile.vitals_upload else {
            return Err(EhrError::NotSupported("no vitals API".into()).into());
        };
        if claimed.must_reconcile {
            return Err(unsearchable("vitals"));
        }
        let readings = vital_readings(vital).ok_or_else(|| SyncError::Mapping {
            artifact_id: claimed.row.artifact_id.clone(),
            reason: format!("unknown vital sign {}", vital.name),
        })?;
        if self.faults.fires(FaultPoint::BeforeSend) {
            return Err(SyncError::Crashed(FaultPoint::BeforeSend));
        }
        let (written, sent) = client.upload_vitals(&upload, encounter, &readings).await?;
        let ids: Vec<&str> = written.id.split(',').collect();
        let kept = client.read_vitals(&upload, encounter, &ids).await;
        Ok(Delivered { written, adopted: false, readback: compared(&sent, kept, "vitals") })
    }

    /// Moves the EHR's Appointment to the visit's status (R4 vocabulary), unless it is there.
    pub(super) async fn patch_appointment_status(
        &self,
        client: &FhirClient,
        ctx: &VisitContext,
        change: &EncounterStatusChange,
    ) -> Result<(), SyncError> {
        let Some(("Appointment", id)) = telechart_fhir::parse_reference(&ctx.appointment) else {
            return Err(SyncError::NotReady(format!("an Appointment reference, not {}", ctx.appointment)));
        };
        let current = client.read("Appointment", id).await?;
        let target = change.to.appointment_status();
        if current.resource["status"] == target {
            return Ok(());
        }
        if self.faults.fires(FaultPoint::BeforeSend) {
            return Err(SyncError::Crashed(FaultPoint::BeforeSend));
        }
        let patch = serde_json::json!([{"op": "replace", "path": "/status", "value": target}]);
        client.patch("Appointment", id, &patch, current.version.as_deref()).await?;
        Ok(())
    }
}

/// HL7v2 `TS`: yyyymmddhhmmss, UTC.
pub(super) fn hl7_time(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y%m%d%H%M%S").to_string()
}

/// A vital sign as readings: one per value, a blood pressure as its two components. `None` for
/// a vital sign we have no code for.
pub(super) fn vital_readings(vital: &VitalMeasurement) -> Option<Vec<telechart_ehr::hl7v2::VitalReading<'_>>> {
    let spec = vital.spec()?;
    let observed = hl7_time(vital.effective);
    let reading =
        |s: &'static telechart_fhir::terminology::VitalSpec, value: String| telechart_ehr::hl7v2::VitalReading {
            loinc: s.loinc,
            name: s.display,
            value,
            ucum: &vital.unit,
            observed: observed.clone(),
        };
    Some(match &vital.value {
        VitalValue::Single(v) => vec![reading(spec, v.to_string())],
        VitalValue::BloodPressure { systolic, diastolic } => vec![
            reading(&telechart_fhir::terminology::SYSTOLIC, systolic.to_string()),
            reading(&telechart_fhir::terminology::DIASTOLIC, diastolic.to_string()),
        ],
    })
}

/// An upload through an EHR API that cannot be searched may already be there: a person checks.
fn unsearchable(api: &str) -> SyncError {
    SyncError::NeedsReview(format!(
        "an earlier upload may have reached the EHR's {api} API, which cannot be searched; replay if it did not"
    ))
}
