//! Disclosure of a visit to another organisation's EHR connection (a referral, the patient's own
//! primary care): decided by the patient's disclosure consent when asked for, and again by the
//! worker before each artifact leaves — so a withdrawal stops what comes after it.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use telechart_store::{AuditEntry, DisclosedArtifact, Disclosure};
use telechart_visit::Artifact;

use crate::api::{load, parse};
use crate::auth::Caller;
use crate::{ApiError, AppState};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DiscloseRequest {
    /// The recipient organisation's EHR connection.
    connection: String,
    /// The patient as that EHR knows them: `Patient/{id}` there.
    patient: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DisclosureView {
    id: String,
    connection: String,
    patient: String,
    disclosed_by: String,
    disclosed_at: Option<DateTime<Utc>>,
    /// Artifacts already recorded that now go to the recipient too.
    artifacts: usize,
}

fn view(d: &Disclosure, artifacts: usize) -> DisclosureView {
    DisclosureView {
        id: d.id.clone(),
        connection: d.connection_id.clone(),
        patient: d.recipient_patient.expose().to_owned(),
        disclosed_by: d.actor.clone(),
        disclosed_at: DateTime::from_timestamp_millis(d.created_at),
        artifacts,
    }
}

/// `POST /api/v1/visits/{id}/disclosures`: share the visit's clinical record (vitals, notes,
/// documents, diagnoses — recorded and to come) with another organisation's EHR connection.
pub(crate) async fn disclose(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<DisclosureView>), ApiError> {
    let request: DiscloseRequest = parse(&body)?;
    let patient = request.patient.trim();
    let patient_id = patient.strip_prefix("Patient/").unwrap_or_default();
    if patient_id.is_empty()
        || patient_id.len() > 64
        || !patient_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    {
        return Err(ApiError::invalid("patient", "must be Patient/{id} with a FHIR id (1-64 of A-Z a-z 0-9 - .)"));
    }
    let visit = load(&state, &caller, &id).await?;
    if request.connection == visit.connection_id {
        return Err(ApiError::invalid(
            "connection",
            format!("connection {} holds the visit itself; a disclosure goes to another one", visit.connection_id),
        ));
    }
    if state.store.connection(&caller.tenant_id, &request.connection).await?.is_none() {
        return Err(ApiError::invalid("connection", format!("no EHR connection {:?}", request.connection)));
    }
    if let Some(existing) = state.store.disclosure(&caller.tenant_id, &visit.id, &request.connection).await? {
        return Err(ApiError::Conflict {
            field: Some("connection".into()),
            message: format!(
                "visit {} is already disclosed to {} (disclosure {})",
                visit.id, request.connection, existing.id
            ),
        });
    }
    // The patient's consent decides before anything is recorded; a refusal is audited and traced.
    let flow = telechart_sync::consent::disclosure_flow(&request.connection);
    let decision = crate::consent::gate(&state, &caller, &visit, &flow).await?;
    let mut artifacts = Vec::new();
    for row in state.store.artifacts(&caller.tenant_id, &visit.id).await? {
        let Ok(artifact) = serde_json::from_str::<Artifact>(row.payload.expose()) else {
            continue; // purged by retention: nothing left to disclose
        };
        let kind = artifact.kind();
        if kind.disclosable() {
            artifacts.push(DisclosedArtifact {
                artifact_id: row.id.clone(),
                seq: row.seq,
                resource_type: kind.resource_type().to_owned(),
                identifier: row.id,
            });
        }
    }
    let disclosure = Disclosure {
        id: uuid::Uuid::now_v7().to_string(),
        visit_id: visit.id.clone(),
        connection_id: request.connection.clone(),
        recipient_patient: telechart_store::Phi::new(patient),
        actor: caller.actor.clone(),
        created_at: state.clock.now_ms(),
    };
    let entry = AuditEntry {
        tenant_id: caller.tenant_id.clone(),
        actor: caller.actor.clone(),
        action: "visit.disclose".into(),
        entity_type: "disclosure".into(),
        entity_id: disclosure.id.clone(),
        visit_id: Some(visit.id.clone()),
        phi: true,
        detail: format!("to connection {}: {} artifact(s) so far", request.connection, artifacts.len()),
        purpose_of_use: Some("TREAT".into()),
        consent: Some(format!("{}: {}", decision.outcome.as_str(), decision.explanation)),
        ..AuditEntry::default()
    };
    state.store.create_disclosure(&caller.tenant_id, &disclosure, visit.version, &artifacts, &entry).await?;
    state.signal.notify();
    Ok((StatusCode::CREATED, Json(view(&disclosure, artifacts.len()))))
}

/// `GET /api/v1/visits/{id}/disclosures`.
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Vec<DisclosureView>>, ApiError> {
    let visit = load(&state, &caller, &id).await?;
    let deliveries = state.store.deliveries_for_visit(&caller.tenant_id, &visit.id).await?;
    let disclosures = state.store.disclosures(&caller.tenant_id, &visit.id).await?;
    Ok(Json(
        disclosures
            .iter()
            .map(|d| view(d, deliveries.iter().filter(|x| x.connection_id == d.connection_id).count()))
            .collect(),
    ))
}
