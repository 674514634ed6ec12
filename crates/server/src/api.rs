//! `/api/v1`: open a visit from an EHR Appointment, move it through its states, capture vitals,
//! attach a signed note, and see where every artifact is.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use telechart_ehr::EhrError;
use telechart_fhir::parse_reference;
use telechart_store::{AuditEntry, DeliveryRow, NewArtifact, NewVisit, Phi, VisitRow};
use telechart_visit::{Artifact, EncounterStatusChange, NoteInput, VisitState, VitalInput};

use telechart_policy::Permission;

use crate::auth::{Access, Caller, Routes};
use crate::{ApiError, AppState};

pub(crate) fn routes() -> Routes {
    use Permission::*;
    Routes::new()
        .add(Method::POST, "/api/v1/visits", Access::Requires(VisitOpen), open_visit)
        .add(Method::GET, "/api/v1/visits/{id}", Access::Requires(VisitRead), get_visit)
        .add(Method::POST, "/api/v1/visits/{id}/transitions", Access::Requires(VisitTransition), transition)
        .add(Method::POST, "/api/v1/visits/{id}/vitals", Access::Requires(VisitVitals), capture_vitals)
        .add(Method::POST, "/api/v1/visits/{id}/notes", Access::Requires(VisitNote), attach_note)
        .add(Method::POST, "/api/v1/visits/{id}/diagnoses", Access::Requires(VisitDiagnosis), diagnose)
        .add(Method::POST, "/api/v1/visits/{id}/orders", Access::Requires(VisitOrder), place_orders)
        .add(Method::POST, "/api/v1/visits/{id}/draft", Access::Requires(NoteDraft), crate::drafting::create)
        .add(Method::GET, "/api/v1/visits/{id}/draft", Access::Requires(VisitRead), crate::drafting::latest)
        .add(Method::POST, "/api/v1/visits/{id}/draft/sign", Access::Requires(NoteSign), crate::drafting::sign)
        .add(Method::POST, "/api/v1/visits/{id}/care-plan", Access::Requires(VisitNote), plan_care)
        .add(Method::PUT, "/api/v1/visits/{id}/billing", Access::Requires(VisitBilling), set_billing)
        .add(Method::GET, "/api/v1/visits/{id}/claim-readiness", Access::Requires(VisitRead), claim_readiness)
        .add(Method::GET, "/api/v1/visits/{id}/orders", Access::Requires(VisitRead), orders)
        // Base64 and JSON around the largest document.
        .add_large(
            Method::POST,
            "/api/v1/visits/{id}/documents",
            Access::Requires(VisitDocument),
            telechart_visit::DOCUMENT_MAX_BYTES / 3 * 4 + 64 * 1024,
            attach_document,
        )
        .add(Method::POST, "/api/v1/visits/{id}/consents", Access::Requires(VisitDocument), crate::consent::record)
        .add(Method::GET, "/api/v1/visits/{id}/consents", Access::Requires(VisitRead), crate::consent::list)
        .add(
            Method::POST,
            "/api/v1/visits/{id}/consents/{consent}/withdraw",
            Access::Requires(VisitDocument),
            crate::consent::withdraw,
        )
        .add(
            Method::POST,
            "/api/v1/visits/{id}/disclosures",
            Access::Requires(VisitDisclose),
            crate::disclosure::disclose,
        )
        .add(Method::GET, "/api/v1/visits/{id}/disclosures", Access::Requires(VisitRead), crate::disclosure::list)
        .add(Method::POST, "/api/v1/visits/{id}/break-glass", Access::Requires(BreakGlass), crate::break_glass::grant)
        .add(Method::GET, "/api/v1/break-glass", Access::Requires(BreakGlassReview), crate::break_glass::list)
        .add(
            Method::POST,
            "/api/v1/break-glass/{id}/review",
            Access::Requires(BreakGlassReview),
            crate::break_glass::review,
        )
        .add(Method::GET, "/api/v1/alerts", Access::Requires(AuditAlerts), alerts)
        .add(Method::GET, "/api/v1/visits/{id}/trace", Access::Requires(VisitTrace), trace)
        .add(Method::POST, "/api/v1/visits/{id}/replay", Access::Requires(QueueReplay), replay)
        .add(Method::GET, "/api/v1/queue", Access::Requires(QueueRead), queue)
        .add(Method::GET, "/api/v1/openapi.json", Access::Public, openapi)
        .add(Method::GET, "/api/v1/webhooks/deliveries", Access::Requires(QueueRead), webhook_deliveries)
}

/// Parses a JSON body, naming the exact field at fault.
pub(crate) fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::Invalid {
            field: None,
            message: "the request body is empty; a JSON object is required".into(),
        });
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let field = (path != ".").then_some(path);
        if inner.is_syntax() || inner.is_eof() {
            return ApiError::Malformed(format!("malformed JSON: {inner}"));
        }
        let message = {
            match &field {
                Some(f) => format!("{f}: {inner}"),
                None => inner.to_string(),
            }
        };
        ApiError::Invalid { field, message }
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OpenVisit {
    /// `Appointment/{id}` or the bare id, in the connection's EHR.
    appointment: String,
    /// The EHR connection; optional when the tenant has exactly one.
    #[serde(default)]
    connection: Option<String>,
    /// `clinical` (the default: a chart closing now) or `backfill` (history being caught up,
    /// delivered when no clinical work is due).
    #[serde(default)]
    priority: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct VisitView {
    id: String,
    connection: String,
    appointment: String,
    patient: String,
    practitioner: Option<String>,
    state: String,
    appointment_status: &'static str,
    encounter_status: &'static str,
    version: i64,
    ehr_encounter: Option<String>,
    priority: &'static str,
    created_at: Option<DateTime<Utc>>,
    updated_at: Option<DateTime<Utc>>,
}

fn view(visit: &VisitRow) -> Result<VisitView, ApiError> {
    let state: VisitState =
        visit.state.parse().map_err(|_| ApiError::Internal(format!("visit {} has unknown state", visit.id)))?;
    Ok(VisitView {
        id: visit.id.clone(),
        connection: visit.connection_id.clone(),
        appointment: format!("Appointment/{}", visit.appointment_id),
        patient: visit.patient.expose().to_owned(),
        practitioner: visit.practitioner.clone(),
        state: visit.state.clone(),
        appointment_status: state.appointment_status(),
        encounter_status: state.encounter_status(),
        version: visit.version,
        ehr_encounter: visit.ehr_encounter_id.as_ref().map(|id| format!("Encounter/{id}")),
        priority: if visit.lane == telechart_store::LANE_BACKFILL { "backfill" } else { "clinical" },
        created_at: DateTime::from_timestamp_millis(visit.created_at),
        updated_at: DateTime::from_timestamp_millis(visit.updated_at),
    })
}

fn audit(caller: &Caller, action: &str, visit_id: &str, detail: String) -> AuditEntry {
    AuditEntry {
        tenant_id: caller.tenant_id.clone(),
        actor: caller.actor.clone(),
        action: action.to_owned(),
        entity_type: "visit".to_owned(),
        entity_id: visit_id.to_owned(),
        visit_id: Some(visit_id.to_owned()),
        phi: true,
        detail,
        purpose_of_use: Some("TREAT".to_owned()),
        ..AuditEntry::default()
    }
}

async fn resolve_connection(state: &AppState, caller: &Caller, requested: Option<String>) -> Result<String, ApiError> {
    if let Some(id) = requested {
        return match state.store.connection(&caller.tenant_id, &id).await? {
            Some(_) => Ok(id),
            None => Err(ApiError::NotFound {
                field: Some("connection".into()),
                message: format!("no EHR connection {id:?}"),
            }),
        };
    }
    let all = state.store.connections(&caller.tenant_id).await?;
    match all.as_slice() {
        [only] => Ok(only.id.clone()),
        [] => Err(ApiError::Conflict { field: None, message: "no EHR connection is configured".into() }),
        _ => Err(ApiError::invalid("connection", "several EHR connections exist; name one")),
    }
}

async fn open_visit(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> Result<(StatusCode, Json<VisitView>), ApiError> {
    let request: OpenVisit = parse(&body)?;
    let appointment_id = match parse_reference(&request.appointment) {
        Some(("Appointment", id)) => id.to_owned(),
        Some(_) => return Err(ApiError::invalid("appointment", "must reference an Appointment")),
        None if is_fhir_id(&request.appointment) => request.appointment.clone(),
        None => return Err(ApiError::invalid("appointment", "must be Appointment/{id} or a FHIR id")),
    };
    let lane = match request.priority.as_deref() {
        None | Some("clinical") => telechart_store::LANE_CLINICAL,
        Some("backfill") => telechart_store::LANE_BACKFILL,
        Some(other) => {
            return Err(ApiError::invalid("priority", format!("{other:?} is not clinical or backfill")));
        }
    };
    let connection_id = resolve_connection(&state, &caller, request.connection).await?;
    let client = state.connections.client(&caller.tenant_id, &connection_id).await.map_err(|e| match e {
        telechart_sync::SyncError::Egress(message) => ApiError::Forbidden(message),
        other => ApiError::Internal(other.to_string()),
    })?;
    let appointment = match client.read("Appointment", &appointment_id).await {
        Ok(a) => a.resource,
        Err(EhrError::Refused { status: 404 | 410, .. }) => {
            return Err(ApiError::NotFound {
                field: Some("appointment".into()),
                message: format!("Appointment/{appointment_id} does not exist in EHR connection {connection_id}"),
            });
        }
        Err(e) => return Err(ApiError::BadGateway(format!("reading Appointment/{appointment_id}: {e}"))),
    };
    let status = appointment.get("status").and_then(|s| s.as_str()).unwrap_or("unknown");
    if !matches!(status, "booked" | "arrived" | "checked-in") {
        return Err(ApiError::Conflict {
            field: Some("appointment".into()),
            message: format!("Appointment/{appointment_id} is {status}; only a booked appointment opens a visit"),
        });
    }
    let actors: Vec<&str> = appointment
        .get("participant")
        .and_then(|p| p.as_array())
        .into_iter()
        .flatten()
        .filter_map(|p| p.pointer("/actor/reference").and_then(|r| r.as_str()))
        .collect();
    let patient = actors.iter().find(|r| matches!(parse_reference(r), Some(("Patient", _)))).ok_or_else(|| {
        ApiError::Conflict {
            field: Some("appointment".into()),
            message: format!("Appointment/{appointment_id} has no Patient participant"),
        }
    })?;
    let practitioner =
        actors.iter().find(|r| matches!(parse_reference(r), Some(("Practitioner", _)))).map(|r| (*r).to_owned());
    let patient = parse_reference(patient).map(|(t, id)| format!("{t}/{id}")).unwrap_or_default();
    // R4 Appointment.appointmentType (v2-0276: ROUTINE, WALKIN, FOLLOWUP, …) picks the template.
    let visit_type = appointment
        .pointer("/appointmentType/coding/0/code")
        .or_else(|| appointment.pointer("/appointmentType/text"))
        .and_then(|v| v.as_str())
        .map(|t| t.trim().to_lowercase())
        .filter(|t| !t.is_empty() && t.len() <= 64);
    let visit_id = uuid::Uuid::now_v7().to_string();
    let new = NewVisit {
        tenant_id: caller.tenant_id.clone(),
        id: visit_id.clone(),
        connection_id: connection_id.clone(),
        appointment_id: appointment_id.clone(),
        patient: Phi::new(patient),
        practitioner,
        state: VisitState::Booked.as_str().to_owned(),
        visit_type,
        lane,
    };
    let entry =
        audit(&caller, "visit.open", &visit_id, format!("from Appointment/{appointment_id} on {connection_id}"));
    let visit =
        state.store.create_visit(&new, &entry, state.clock.now_ms()).await.map_err(|e| match ApiError::from(e) {
            ApiError::Conflict { message, .. } => ApiError::Conflict { field: Some("appointment".into()), message },
            other => other,
        })?;
    Ok((StatusCode::CREATED, Json(view(&visit)?)))
}

fn is_fhir_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

/// The visit and its state, parsed.
pub(crate) async fn load_with_state(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<(VisitRow, VisitState), ApiError> {
    let visit = load(state, caller, id).await?;
    let current: VisitState =
        visit.state.parse().map_err(|_| ApiError::Internal(format!("visit {id} has unknown state")))?;
    Ok((visit, current))
}

pub(crate) async fn load(state: &AppState, caller: &Caller, id: &str) -> Result<VisitRow, ApiError> {
    state
        .store
        .visit(&caller.tenant_id, id)
        .await?
        .ok_or_else(|| ApiError::NotFound { field: None, message: format!("visit {id} not found") })
}

async fn get_visit(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<VisitView>, ApiError> {
    let visit = load(&state, &caller, &id).await?;
    state.store.audit(&audit(&caller, "visit.read", &id, String::new()), state.clock.now_ms()).await?;
    Ok(Json(view(&visit)?))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EventResult {
    visit: VisitView,
    artifacts: Vec<ArtifactRef>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ArtifactRef {
    id: String,
    kind: &'static str,
    resource_type: &'static str,
}

/// Stores the event's artifacts with one delivery each to the visit's EHR, in one transaction.
async fn record(
    state: &AppState,
    caller: &Caller,
    visit: &VisitRow,
    new_state: VisitState,
    artifacts: Vec<Artifact>,
    action: &str,
) -> Result<EventResult, ApiError> {
    let with_ids = artifacts.into_iter().map(|a| (uuid::Uuid::now_v7().to_string(), a)).collect();
    record_with_ids(state, caller, visit, new_state, with_ids, action).await
}

/// As [`record`], for artifacts that refer to each other by id (made by the caller).
async fn record_with_ids(
    state: &AppState,
    caller: &Caller,
    visit: &VisitRow,
    new_state: VisitState,
    artifacts: Vec<(String, Artifact)>,
    action: &str,
) -> Result<EventResult, ApiError> {
    let entry = audit(caller, action, &visit.id, format!("{} artifact(s); state {}", artifacts.len(), new_state));
    record_artifacts(state, caller, visit, new_state, artifacts, None, entry).await
}

/// Stores the artifacts (and the record they belong with: a version of the patient's consent, a
/// draft's signature) with their deliveries, the state change, the platforms' webhooks and
/// `entry`, in one transaction.
pub(crate) async fn record_artifacts(
    state: &AppState,
    caller: &Caller,
    visit: &VisitRow,
    new_state: VisitState,
    artifacts: Vec<(String, Artifact)>,
    with: Option<telechart_store::EventRecord<'_>>,
    entry: telechart_store::AuditEntry,
) -> Result<EventResult, ApiError> {
    // The platforms hear of every state change, in the same commit as the change.
    let webhooks = if new_state.as_str() == visit.state {
        Vec::new()
    } else {
        let body = serde_json::json!({
            "id": uuid::Uuid::now_v7().to_string(),
            "type": "visit.state-changed",
            "occurredAt": telechart_visit::format_instant(state.clock.now()),
            "data": {"visitId": visit.id, "appointment": format!("Appointment/{}", visit.appointment_id),
                     "connection": visit.connection_id, "from": visit.state, "to": new_state.as_str()},
        });
        state.platforms.webhooks_for(&caller.tenant_id, "visit.state-changed", &body)
    };
    let mut rows = Vec::with_capacity(artifacts.len());
    let mut refs = Vec::with_capacity(artifacts.len());
    for (id, artifact) in &artifacts {
        let id = id.clone();
        let kind = artifact.kind();
        // The Encounter's identifier is the visit's, so every change to it finds the same one;
        // each version of a consent carries the consent's.
        let identifier = match artifact {
            _ if kind.resource_type() == "Encounter" => visit.id.clone(),
            Artifact::Consent(c) => c.consent_id.clone().unwrap_or_else(|| id.clone()),
            _ => id.clone(),
        };
        let payload = serde_json::to_string(artifact).map_err(|e| ApiError::Internal(e.to_string()))?;
        rows.push(NewArtifact {
            id: id.clone(),
            kind: kind.as_str().to_owned(),
            resource_type: kind.resource_type().to_owned(),
            identifier,
            payload: Phi::new(payload),
            disclosable: kind.disclosable(),
        });
        refs.push(ArtifactRef { id, kind: kind.as_str(), resource_type: kind.resource_type() });
    }
    let updated = state
        .store
        .record_event_with(
            &caller.tenant_id,
            &visit.id,
            visit.version,
            new_state.as_str(),
            &rows,
            std::slice::from_ref(&visit.connection_id),
            &webhooks,
            with,
            &entry,
            state.clock.now_ms(),
        )
        .await?;
    state.signal.notify();
    Ok(EventResult { visit: view(&updated)?, artifacts: refs })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Transition {
    to: String,
}

pub(crate) async fn transition(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<EventResult>), ApiError> {
    let request: Transition = parse(&body)?;
    let to: VisitState = request.to.parse()?;
    let visit = load(&state, &caller, &id).await?;
    let result = move_visit(&state, &caller, &visit, to, "visit.transition").await?;
    Ok((StatusCode::CREATED, Json(result)))
}

/// Moves the visit to `to` by the state machine's rules, with the Encounter status change.
pub(crate) async fn move_visit(
    state: &AppState,
    caller: &Caller,
    visit: &VisitRow,
    to: VisitState,
    action: &str,
) -> Result<EventResult, ApiError> {
    let from: VisitState =
        visit.state.parse().map_err(|_| ApiError::Internal(format!("visit {} has unknown state", visit.id)))?;
    let artifacts = from.move_to(to, state.clock.now())?;
    // The call starts only with the patient's consent to telehealth care.
    if to == VisitState::InProgress && from != VisitState::InProgress {
        crate::consent::gate(state, caller, visit, &telechart_policy::governed::GovernedFlow::StartTelehealthVisit)
            .await?;
    }
    record(state, caller, visit, to, artifacts, action).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Vitals {
    vitals: Vec<VitalInput>,
}

pub(crate) async fn capture_vitals(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<EventResult>), ApiError> {
    let request: Vitals = parse(&body)?;
    let (visit, current) = load_with_state(&state, &caller, &id).await?;
    let measurements = current.capture_vitals(&request.vitals, state.clock.now())?;
    let artifacts = measurements.into_iter().map(Artifact::Vital).collect();
    let result = record(&state, &caller, &visit, current, artifacts, "visit.vitals").await?;
    Ok((StatusCode::CREATED, Json(result)))
}

pub(crate) async fn attach_note(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<EventResult>), ApiError> {
    let request: NoteInput = parse(&body)?;
    let (visit, current) = load_with_state(&state, &caller, &id).await?;
    let note = current.sign_note(request, state.clock.now())?;
    let mut artifacts = vec![Artifact::Note(note)];
    let mut next = current;
    // The platform said the call ended and the tenant's rule waited for this signature.
    if current == VisitState::InProgress && visit.call_ended_at.is_some() {
        next = VisitState::Finished;
        artifacts.push(Artifact::EncounterStatus(EncounterStatusChange {
            from: current,
            to: next,
            at: state.clock.now(),
        }));
    }
    let result = record(&state, &caller, &visit, next, artifacts, "visit.note").await?;
    Ok((StatusCode::CREATED, Json(result)))
}

/// Diagnoses: a Condition each, then one update of the Encounter's `diagnosis` list.
async fn diagnose(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<EventResult>), ApiError> {
    let request: telechart_visit::DiagnosesInput = parse(&body)?;
    let (visit, current) = load_with_state(&state, &caller, &id).await?;
    let diagnoses = current.diagnose(request, state.clock.now())?;
    let mut artifacts: Vec<(String, Artifact)> = Vec::with_capacity(diagnoses.len() + 1);
    let mut entries = Vec::with_capacity(diagnoses.len());
    for diagnosis in diagnoses {
        let artifact_id = uuid::Uuid::now_v7().to_string();
        entries.push(telechart_visit::EncounterDiagnosisEntry {
            condition_artifact: artifact_id.clone(),
            rank: diagnosis.rank,
        });
        artifacts.push((artifact_id, Artifact::Diagnosis(diagnosis)));
    }
    let link = Artifact::EncounterDiagnoses(telechart_visit::EncounterDiagnoses { entries });
    artifacts.push((uuid::Uuid::now_v7().to_string(), link));
    let result = record_with_ids(&state, &caller, &visit, current, artifacts, "visit.diagnosis").await?;
    Ok((StatusCode::CREATED, Json(result)))
}

/// The visit's billing facts; procedure codes are checked by form only (no CPT table).
async fn set_billing(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<telechart_visit::BillingFacts>, ApiError> {
    let facts: telechart_visit::BillingFacts = parse(&body)?;
    telechart_visit::validate_billing(&facts)?;
    let visit = load(&state, &caller, &id).await?;
    let json = serde_json::to_string(&facts).map_err(|e| ApiError::Internal(e.to_string()))?;
    let entry = audit(
        &caller,
        "visit.billing",
        &visit.id,
        format!(
            "{} procedure code(s), POS {}, modifier {}",
            facts.procedure_codes.len(),
            facts.place_of_service,
            facts.modifier
        ),
    );
    state.store.set_visit_billing(&caller.tenant_id, &visit.id, &json, &entry, state.clock.now_ms()).await?;
    Ok(Json(facts))
}

#[derive(Serialize)]
struct ClaimReadiness {
    ready: bool,
    checks: Vec<telechart_visit::ClaimCheck>,
}

/// Whether the visit has what a clean claim needs, check by check.
async fn claim_readiness(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<ClaimReadiness>, ApiError> {
    let visit = load(&state, &caller, &id).await?;
    let billing: Option<telechart_visit::BillingFacts> =
        visit.billing.as_deref().and_then(|b| serde_json::from_str(b).ok());
    let deliveries = state.store.deliveries_for_visit(&caller.tenant_id, &id).await?;
    let facts = telechart_visit::ClaimFacts {
        billing: billing.as_ref(),
        diagnoses: deliveries.iter().filter(|d| d.resource_type == "Condition").count(),
        signed_note: state.store.has_artifact_kind(&caller.tenant_id, &id, "note").await?,
        finished: visit.state == "finished",
        undelivered: deliveries.iter().filter(|d| d.status != "done").count(),
    };
    let checks = telechart_visit::claim_readiness(&facts);
    Ok(Json(ClaimReadiness { ready: checks.iter().all(|c| c.ok), checks }))
}

/// The plan and the after-visit summary: a CarePlan, and a DocumentReference for the patient.
async fn plan_care(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<EventResult>), ApiError> {
    let request: telechart_visit::CarePlanInput = parse(&body)?;
    let (visit, current) = load_with_state(&state, &caller, &id).await?;
    if !matches!(current, VisitState::InProgress | VisitState::Finished) {
        return Err(telechart_visit::VisitError::WrongState { event: "recording the care plan", state: current }.into());
    }
    let now = state.clock.now();
    let plan = telechart_visit::validate_care_plan(&request, now)?;
    let mut artifacts = vec![Artifact::CarePlan(plan)];
    if let Some(summary) = &request.after_visit_summary {
        let document = current.attach_document(
            telechart_visit::DocumentInput {
                kind: telechart_visit::DocumentKind::AfterVisitSummary,
                title: format!("After-visit summary: {}", request.title.trim()),
                content_type: "text/plain".into(),
                text: Some(summary.clone()),
                data: None,
                author: Some(request.author.clone()),
                created_at: Some(now),
            },
            now,
        )?;
        artifacts.push(Artifact::Document(document));
    }
    let result = record(&state, &caller, &visit, current, artifacts, "visit.care-plan").await?;
    Ok((StatusCode::CREATED, Json(result)))
}

/// Orders: a ServiceRequest or MedicationRequest each, then followed to completion.
async fn place_orders(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<EventResult>), ApiError> {
    let request: telechart_visit::OrdersInput = parse(&body)?;
    let (visit, current) = load_with_state(&state, &caller, &id).await?;
    let placed = current.place_orders(request, state.clock.now())?;
    let artifacts = placed.into_iter().map(Artifact::Order).collect();
    let result = record(&state, &caller, &visit, current, artifacts, "visit.order").await?;
    Ok((StatusCode::CREATED, Json(result)))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OrderView {
    artifact: String,
    resource_type: String,
    /// Where it is in the EHR, once written.
    ehr_resource: Option<String>,
    /// The EHR's status as last read (`written`: not read back yet; `pending`: not written yet).
    status: String,
    results: serde_json::Value,
    checked_at: Option<DateTime<Utc>>,
    completed_at: Option<DateTime<Utc>>,
}

/// The visit's orders and how far each has come, as last read from the EHR.
async fn orders(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Vec<OrderView>>, ApiError> {
    load(&state, &caller, &id).await?;
    let tracked = state.store.tracked_orders(&caller.tenant_id, &id).await?;
    let deliveries = state.store.deliveries_for_visit(&caller.tenant_id, &id).await?;
    let views = deliveries
        .into_iter()
        .filter(|d| matches!(d.resource_type.as_str(), "ServiceRequest" | "MedicationRequest"))
        .map(|d| {
            let seen = tracked.iter().find(|t| t.artifact_id == d.artifact_id);
            OrderView {
                ehr_resource: d.ehr_resource_id.as_ref().map(|e| format!("{}/{e}", d.resource_type)),
                status: match (seen, d.status.as_str()) {
                    (Some(t), _) => t.status.clone(),
                    (None, "done") => "written".to_owned(),
                    (None, other) => other.to_owned(),
                },
                results: seen
                    .and_then(|t| serde_json::from_str(t.results.expose()).ok())
                    .unwrap_or(serde_json::Value::Array(vec![])),
                checked_at: seen.and_then(|t| DateTime::from_timestamp_millis(t.checked_at)),
                completed_at: seen.and_then(|t| t.completed_at).and_then(DateTime::from_timestamp_millis),
                artifact: d.artifact_id,
                resource_type: d.resource_type,
            }
        })
        .collect();
    Ok(Json(views))
}

/// A transcript, attachment or consent form: checked (size, content type against the bytes,
/// SHA-256), kept encrypted, delivered as a DocumentReference.
pub(crate) async fn attach_document(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<EventResult>), ApiError> {
    let request: telechart_visit::DocumentInput = parse(&body)?;
    let (visit, current) = load_with_state(&state, &caller, &id).await?;
    let document = current.attach_document(request, state.clock.now())?;
    // A transcript is a recording of the conversation: kept only with the patient's consent.
    if matches!(
        document.kind,
        telechart_visit::DocumentKind::ChatTranscript | telechart_visit::DocumentKind::VideoTranscript
    ) {
        crate::consent::gate(&state, &caller, &visit, &telechart_policy::governed::GovernedFlow::RecordOrDraft).await?;
    }
    let document_id = uuid::Uuid::now_v7().to_string();
    // A signed consent form is also the patient's telehealth opt-in, with the form as its source:
    // the form, the Consent the gate reads and the one the EHR receives commit together.
    if document.kind == telechart_visit::DocumentKind::ConsentForm {
        let decision = crate::consent::Decided {
            category: telechart_policy::governed::ConsentCategory::Telehealth,
            decision: telechart_policy::consent::Outcome::Permit,
            decided_at: document.created_at,
            form_artifact: Some(document_id.clone()),
            text_version: None,
        };
        let document = (document_id, Artifact::Document(document));
        let (result, _) =
            crate::consent::record_decision(&state, &caller, &visit, current, decision, vec![document]).await?;
        return Ok((StatusCode::CREATED, Json(result)));
    }
    let artifacts = vec![(document_id, Artifact::Document(document))];
    let result = record_with_ids(&state, &caller, &visit, current, artifacts, "visit.document").await?;
    Ok((StatusCode::CREATED, Json(result)))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TraceEntry {
    delivery: String,
    artifact: String,
    seq: i64,
    resource_type: String,
    connection: String,
    identifier: String,
    status: String,
    attempts: i64,
    last_error: Option<String>,
    ehr_resource: Option<String>,
    ehr_version: Option<String>,
    next_attempt_at: Option<DateTime<Utc>>,
    completed_at: Option<DateTime<Utc>>,
    /// How it was planned for its EHR (written / transformed / fallback / not deliverable).
    plan: Option<String>,
    /// What the EHR kept, read back after the write.
    readback: Option<telechart_fhir::readback::ReadBack>,
}

impl From<DeliveryRow> for TraceEntry {
    fn from(d: DeliveryRow) -> Self {
        TraceEntry {
            ehr_resource: d.ehr_resource_id.as_ref().map(|id| format!("{}/{id}", d.resource_type)),
            readback: d.readback.as_deref().and_then(|r| serde_json::from_str(r).ok()),
            plan: d.plan,
            delivery: d.id,
            artifact: d.artifact_id,
            seq: d.seq,
            resource_type: d.resource_type,
            connection: d.connection_id,
            identifier: d.identifier,
            next_attempt_at: (d.status == "pending")
                .then(|| DateTime::from_timestamp_millis(d.next_attempt_at))
                .flatten(),
            status: d.status,
            attempts: d.attempts,
            last_error: d.last_error,
            ehr_version: d.ehr_version,
            completed_at: d.completed_at.and_then(DateTime::from_timestamp_millis),
        }
    }
}

async fn trace(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Vec<TraceEntry>>, ApiError> {
    let visit = load(&state, &caller, &id).await?;
    let rows = state.store.deliveries_for_visit(&caller.tenant_id, &id).await?;
    let mut entries: Vec<TraceEntry> = rows.into_iter().map(TraceEntry::from).collect();
    // Flows the patient's consent refused: nothing was sent, and the trace says why.
    for refused in state.store.audit_for_visit(&caller.tenant_id, &id).await? {
        if refused.action == crate::consent::DECISION_ACTION && refused.outcome == "denied" {
            entries.push(TraceEntry {
                delivery: format!("audit:{}", refused.seq),
                artifact: refused.detail.clone(),
                seq: refused.seq,
                resource_type: "Consent".into(),
                // A refused disclosure is shown against the connection it would have gone to.
                connection: refused
                    .detail
                    .strip_prefix("disclosure to connection ")
                    .unwrap_or(&visit.connection_id)
                    .to_owned(),
                identifier: String::new(),
                status: "refused-by-consent".into(),
                attempts: 0,
                last_error: refused.consent.clone(),
                ehr_resource: None,
                ehr_version: None,
                next_attempt_at: None,
                completed_at: DateTime::from_timestamp_millis(refused.at),
                plan: Some("not sent".into()),
                readback: None,
            });
        }
    }
    Ok(Json(entries))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertsQuery {
    #[serde(default)]
    limit: Option<i64>,
}

/// `GET /api/v1/alerts?limit=`: the alerts the audit rules fired, newest first (ids and counts,
/// no patient).
async fn alerts(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<axum::extract::Query<AlertsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<serde_json::Value>>, ApiError> {
    let axum::extract::Query(query) = query.map_err(|e| ApiError::invalid("limit", e.body_text()))?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be 1 to 1000"));
    }
    let rows = state.store.alerts(&caller.tenant_id, limit).await?;
    Ok(Json(rows.iter().map(telechart_sync::alerts::alert_json).collect()))
}

#[derive(Serialize)]
struct Replayed {
    replayed: u64,
}

async fn replay(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Replayed>, ApiError> {
    load(&state, &caller, &id).await?;
    let replayed = state.store.replay_dead(&caller.tenant_id, &id, state.clock.now_ms()).await?;
    state
        .store
        .audit(
            &audit(&caller, "visit.replay", &id, format!("{replayed} dead letter(s) replayed")),
            state.clock.now_ms(),
        )
        .await?;
    state.signal.notify();
    Ok(Json(Replayed { replayed }))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WebhookDeliveryView {
    id: String,
    platform: String,
    event_type: String,
    status: String,
    attempts: i64,
    last_status: Option<i64>,
    last_error: Option<String>,
    created_at: Option<DateTime<Utc>>,
    completed_at: Option<DateTime<Utc>>,
}

/// The webhook delivery log, newest first: what went to which platform and how it ended (the
/// bodies, which name patients, are not shown).
async fn webhook_deliveries(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<WebhookDeliveryView>>, ApiError> {
    let log = state.store.webhook_log(&caller.tenant_id, 200).await?;
    Ok(Json(
        log.into_iter()
            .map(|w| WebhookDeliveryView {
                id: w.id,
                platform: w.platform_id,
                event_type: w.event_type,
                status: w.status,
                attempts: w.attempts,
                last_status: w.last_status,
                last_error: w.last_error,
                created_at: DateTime::from_timestamp_millis(w.created_at),
                completed_at: w.completed_at.and_then(DateTime::from_timestamp_millis),
            })
            .collect(),
    ))
}

/// The API's OpenAPI 3 document (checked against the running server by schemathesis in CI).
async fn openapi() -> impl axum::response::IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], include_str!("openapi.json"))
}

#[derive(Serialize)]
struct Queue {
    pending: i64,
    in_flight: i64,
    done: i64,
    dead: i64,
    /// Not sent: the patient's consent withheld them (disclosures).
    withheld: i64,
    /// Dead letters an operator chose not to send.
    discarded: i64,
}

async fn queue(State(state): State<AppState>, caller: Caller) -> Result<Json<Queue>, ApiError> {
    let c = state.store.queue_counts(&caller.tenant_id).await?;
    Ok(Json(Queue {
        pending: c.pending,
        in_flight: c.in_flight,
        done: c.done,
        dead: c.dead,
        withheld: c.withheld,
        discarded: c.discarded,
    }))
}
