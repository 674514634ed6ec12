//! Consent before data moves: the patient's decisions recorded per visit (versioned, withdrawable)
//! and the gate every governed flow passes — decided by the FHIR Consent engine, audited either
//! way, and refused with the engine's explanation.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use telechart_policy::consent::{Decision, Outcome};
use telechart_policy::governed::{ConsentCategory, GovernedFlow, PatientDecision, consent_resource};
use telechart_store::{AuditEntry, AuditOutcome, ConsentVersion, Phi, VisitRow};
use telechart_visit::{Artifact, ConsentRecord, VisitState};

use crate::api::{EventResult, load, load_with_state, parse, record_artifacts};
use crate::auth::Caller;
use crate::{ApiError, AppState};

/// The audit action of every consent decision; the trace lists the refusals.
pub(crate) const DECISION_ACTION: &str = "consent.decision";

/// Decides `flow` for the visit's patient now, audits the decision, and refuses a denied flow
/// with a 403 OperationOutcome carrying the engine's explanation. Nothing of the flow happens
/// before this returns `Ok`.
pub(crate) async fn gate(
    state: &AppState,
    caller: &Caller,
    visit: &VisitRow,
    flow: &GovernedFlow,
) -> Result<Decision, ApiError> {
    let (request, decision) = telechart_sync::consent::decide(
        &state.store,
        &caller.tenant_id,
        visit.patient.expose(),
        flow,
        state.clock.now(),
        &state.compliance.consent_policy,
    )
    .await
    .map_err(|e| match e {
        telechart_sync::SyncError::Store(e) => ApiError::from(e),
        other => ApiError::Internal(other.to_string()),
    })?;
    let mut denied = decision.outcome == Outcome::Deny;
    let mut consent = match &decision.consent_id {
        Some(id) => format!("{}: Consent/{id}: {}", decision.outcome.as_str(), decision.explanation),
        None => format!("{}: {}", decision.outcome.as_str(), decision.explanation),
    };
    let mut purpose = request.purpose.as_ref().map(|p| p.code.clone());
    // A break-glass grant of this clinician for this visit, in force now, lets a refused flow
    // through — under the grant's purpose of use, counted, and said so in the audit record. It
    // opens what Telechart holds to the clinician; it never discloses to another organisation.
    if denied
        && !matches!(flow, GovernedFlow::Disclose { .. })
        && let Some(grant) =
            state.store.active_break_glass(&caller.tenant_id, &caller.actor, &visit.id, state.clock.now_ms()).await?
    {
        denied = false;
        consent = format!("permit by break-glass {} ({}) over {consent}", grant.id, grant.reason_code);
        purpose = Some(grant.reason_code.clone());
        state.store.use_break_glass(&caller.tenant_id, &grant.id).await?;
    }
    let entry = AuditEntry {
        tenant_id: caller.tenant_id.clone(),
        actor: caller.actor.clone(),
        action: DECISION_ACTION.into(),
        entity_type: "visit".into(),
        entity_id: visit.id.clone(),
        visit_id: Some(visit.id.clone()),
        phi: true,
        detail: flow.name(),
        purpose_of_use: purpose,
        outcome: if denied { AuditOutcome::Denied } else { AuditOutcome::Success },
        consent: Some(consent),
        ..AuditEntry::default()
    };
    // Fail closed: an unaudited decision lets nothing through.
    state.store.audit(&entry, state.clock.now_ms()).await?;
    if denied {
        let by = decision.consent_id.as_ref().map(|id| format!(" (Consent/{id})")).unwrap_or_default();
        return Err(ApiError::Forbidden(format!(
            "{} is not permitted by the patient's consent{by}: {}",
            flow.name(),
            decision.explanation
        )));
    }
    Ok(decision)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RecordConsent {
    /// `telehealth`, `recording-ai`, `disclosure` or `research`.
    category: String,
    /// `permit` or `deny`.
    decision: String,
    /// When the patient decided; default now. Not in the future.
    #[serde(default)]
    decided_at: Option<DateTime<Utc>>,
    /// The version of the consent text the patient read.
    #[serde(default)]
    text_version: Option<String>,
    /// The signed form already attached to this visit (a `consent-form` document's artifact id).
    #[serde(default)]
    form_artifact: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ConsentView {
    id: String,
    version: i64,
    category: String,
    status: String,
    recorded_by: String,
    recorded_at: Option<DateTime<Utc>>,
    resource: serde_json::Value,
}

fn view(v: &ConsentVersion) -> Result<ConsentView, ApiError> {
    Ok(ConsentView {
        id: v.consent_id.clone(),
        version: v.version,
        category: v.category.clone(),
        status: v.status.clone(),
        recorded_by: v.actor.clone(),
        recorded_at: DateTime::from_timestamp_millis(v.at),
        resource: serde_json::from_str(v.resource.expose())
            .map_err(|e| ApiError::Internal(format!("consent {} is not JSON: {e}", v.consent_id)))?,
    })
}

fn audit(caller: &Caller, action: &str, visit: &VisitRow, detail: String) -> AuditEntry {
    AuditEntry {
        tenant_id: caller.tenant_id.clone(),
        actor: caller.actor.clone(),
        action: action.into(),
        entity_type: "consent".into(),
        entity_id: visit.id.clone(),
        visit_id: Some(visit.id.clone()),
        phi: true,
        detail,
        purpose_of_use: Some("TREAT".into()),
        ..AuditEntry::default()
    }
}

/// `POST /api/v1/visits/{id}/consents`: the patient's decision for one category, as a new
/// active Consent (version 1), delivered to the visit's EHR.
pub(crate) async fn record(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<ConsentView>), ApiError> {
    let request: RecordConsent = parse(&body)?;
    let category = ConsentCategory::parse(&request.category).ok_or_else(|| {
        ApiError::invalid("category", "must be one of telehealth, recording-ai, disclosure, research")
    })?;
    let decision = match request.decision.as_str() {
        "permit" => Outcome::Permit,
        "deny" => Outcome::Deny,
        _ => return Err(ApiError::invalid("decision", "must be permit or deny")),
    };
    let now = state.clock.now();
    let decided_at = request.decided_at.unwrap_or(now);
    if decided_at > now + chrono::Duration::minutes(5) {
        return Err(ApiError::invalid("decidedAt", "must not be in the future"));
    }
    if request.text_version.as_deref().is_some_and(|v| v.trim().is_empty() || v.len() > 64) {
        return Err(ApiError::invalid("textVersion", "must be 1 to 64 characters"));
    }
    let (visit, current) = load_with_state(&state, &caller, &id).await?;
    if let Some(artifact) = &request.form_artifact {
        let known = state.store.artifacts(&caller.tenant_id, &visit.id).await?;
        if !known.iter().any(|a| &a.id == artifact) {
            return Err(ApiError::invalid("formArtifact", format!("visit {} has no artifact {artifact}", visit.id)));
        }
    }
    let decided = Decided {
        category,
        decision,
        decided_at,
        form_artifact: request.form_artifact,
        text_version: request.text_version,
    };
    let (_, version) = record_decision(&state, &caller, &visit, current, decided, Vec::new()).await?;
    Ok((StatusCode::CREATED, Json(view(&version)?)))
}

/// One decision of the patient, as a handler hands it over.
pub(crate) struct Decided {
    pub category: ConsentCategory,
    pub decision: Outcome,
    pub decided_at: DateTime<Utc>,
    /// The signed form's artifact id (in this visit).
    pub form_artifact: Option<String>,
    /// The version of the consent text the patient read.
    pub text_version: Option<String>,
}

/// Records the decision as version 1 of a new active Consent — the one the gate reads — and, in
/// the same transaction, the artifact that delivers it to the visit's EHR (after `artifacts`, e.g.
/// the signed form it rests on).
pub(crate) async fn record_decision(
    state: &AppState,
    caller: &Caller,
    visit: &VisitRow,
    current: VisitState,
    d: Decided,
    artifacts: Vec<(String, Artifact)>,
) -> Result<(EventResult, ConsentVersion), ApiError> {
    record_decision_with(state, caller, visit, current, d, artifacts, None).await
}

/// `record_decision`, spending the signing link `link` in the same transaction when the patient
/// signed through one (a link already spent, revoked or expired is a conflict: nothing recorded).
pub(crate) async fn record_decision_with(
    state: &AppState,
    caller: &Caller,
    visit: &VisitRow,
    current: VisitState,
    d: Decided,
    mut artifacts: Vec<(String, Artifact)>,
    link: Option<&str>,
) -> Result<(EventResult, ConsentVersion), ApiError> {
    let consent_id = uuid::Uuid::now_v7().to_string();
    let patient_decision = PatientDecision {
        consent_id: consent_id.clone(),
        patient: visit.patient.expose().to_owned(),
        category: d.category,
        decision: d.decision,
        decided_at: d.decided_at,
        form: d.form_artifact.as_ref().map(|a| format!("urn:telechart:artifact:{a}")),
        text_version: d.text_version,
    };
    let resource = consent_resource(&patient_decision, "active");
    let version = ConsentVersion {
        consent_id: consent_id.clone(),
        version: 1,
        visit_id: Some(visit.id.clone()),
        category: d.category.code().into(),
        status: "active".into(),
        resource: Phi::new(resource.to_string()),
        actor: caller.actor.clone(),
        at: state.clock.now_ms(),
    };
    // The first version's artifact id is the consent's: later versions find it in the EHR by it.
    artifacts.push((
        consent_id.clone(),
        Artifact::Consent(ConsentRecord {
            form_artifact: d.form_artifact,
            signed_at: d.decided_at,
            consent_id: Some(consent_id.clone()),
            resource: Some(resource),
        }),
    ));
    let detail = format!("{} {} (Consent/{consent_id})", d.category.code(), d.decision.as_str());
    let entry = audit(caller, "consent.record", visit, detail);
    let result =
        record_artifacts(state, caller, visit, current, artifacts, Some(consent_event(&version, link)), entry).await?;
    Ok((result, version))
}

/// `POST /api/v1/visits/{id}/consents/{consent}/withdraw`: the consent becomes `inactive` (how
/// R4 shows a withdrawal) in a new version, and so in the EHR; governed flows after it are
/// decided without it.
pub(crate) async fn withdraw(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, consent_id)): Path<(String, String)>,
) -> Result<(StatusCode, Json<ConsentView>), ApiError> {
    let (visit, current) = load_with_state(&state, &caller, &id).await?;
    let history = state.store.consent_history(&caller.tenant_id, &consent_id).await?;
    let not_found = || ApiError::NotFound { field: None, message: format!("consent {consent_id} not found") };
    let latest = history.last().ok_or_else(not_found)?;
    // Consents are the patient's, across visits; but one is withdrawn through a visit of theirs.
    let resource: serde_json::Value = serde_json::from_str(latest.resource.expose())
        .map_err(|e| ApiError::Internal(format!("consent {consent_id} is not JSON: {e}")))?;
    if resource["patient"]["reference"].as_str() != Some(visit.patient.expose()) {
        return Err(not_found());
    }
    if latest.status != "active" {
        return Err(ApiError::Conflict {
            field: None,
            message: format!("consent {consent_id} is {} already; only an active consent is withdrawn", latest.status),
        });
    }
    let version = record_withdrawal(&state, &caller, &visit, current, latest, resource, Vec::new(), None).await?;
    Ok((StatusCode::CREATED, Json(view(&version)?)))
}

/// The consent version to record with the event, spending the signing link it came through.
fn consent_event<'a>(version: &'a ConsentVersion, link: Option<&'a str>) -> telechart_store::EventRecord<'a> {
    match link {
        Some(link_id) => telechart_store::EventRecord::ConsentByLink { consent: version, link_id },
        None => telechart_store::EventRecord::Consent(version),
    }
}

/// Records `latest` (the consent's current version, whose FHIR form is `resource`) withdrawn: a
/// new `inactive` version, delivered to the EHR as an update of the same Consent, after
/// `artifacts` (the signed revocation form, when the patient signed one), spending the signing
/// link `link` in the same transaction when they used one.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn record_withdrawal(
    state: &AppState,
    caller: &Caller,
    visit: &VisitRow,
    current: VisitState,
    latest: &ConsentVersion,
    mut resource: serde_json::Value,
    mut artifacts: Vec<(String, Artifact)>,
    link: Option<&str>,
) -> Result<ConsentVersion, ApiError> {
    let consent_id = latest.consent_id.clone();
    resource["status"] = "inactive".into();
    let version = ConsentVersion {
        consent_id: consent_id.clone(),
        version: latest.version + 1,
        visit_id: Some(visit.id.clone()),
        category: latest.category.clone(),
        status: "inactive".into(),
        resource: Phi::new(resource.to_string()),
        actor: caller.actor.clone(),
        at: state.clock.now_ms(),
    };
    let withdrawal = Artifact::Consent(ConsentRecord {
        form_artifact: None,
        signed_at: state.clock.now(),
        consent_id: Some(consent_id.clone()),
        resource: Some(resource),
    });
    let entry =
        audit(caller, "consent.withdraw", visit, format!("{} withdrawn (Consent/{consent_id})", latest.category));
    artifacts.push((uuid::Uuid::now_v7().to_string(), withdrawal));
    record_artifacts(state, caller, visit, current, artifacts, Some(consent_event(&version, link)), entry).await?;
    Ok(version)
}

/// `GET /api/v1/visits/{id}/consents`: every consent version recorded in the visit.
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Vec<ConsentView>>, ApiError> {
    let visit = load(&state, &caller, &id).await?;
    let versions = state.store.consents_of_visit(&caller.tenant_id, &visit.id).await?;
    Ok(Json(versions.iter().map(view).collect::<Result<_, _>>()?))
}
