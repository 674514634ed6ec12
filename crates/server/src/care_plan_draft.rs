//! `POST /api/v1/visits/{id}/care-plan/draft`: the builtin care-plan drafter on this visit's
//! diagnoses, orders and signed note, and the patient's chart as the EHR shows it now (active
//! Conditions, MedicationRequests, AllergyIntolerances, `Patient.communication`). A chart read
//! that fails is said in the draft, never papered over. The clinician reviews and edits the
//! draft, then records it through `POST …/care-plan`, which takes it to the EHR by its plan.
//!
//! The builtin engine reads no recording or transcript, so the recording/AI consent does not
//! govern it; what it reads is the chart, under the treatment purpose the visit already has.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::Method;
use serde::Serialize;
use serde_json::Value;
use telechart_policy::Permission;
use telechart_scribe::care_plan::{
    self, CarePlanDraft, CarePlanInput, Chart, ChartEntry, Diagnosis, Order, SummarySection,
};
use telechart_scribe::knowledge::Knowledge;
use telechart_store::AuditEntry;
use telechart_visit::Artifact;

use crate::AppState;
use crate::auth::{Access, Caller, Routes};
use crate::error::ApiError;

pub(crate) fn routes() -> Routes {
    Routes::new().add(
        Method::POST,
        "/api/v1/visits/{id}/care-plan/draft",
        Access::Requires(Permission::VisitNote),
        draft,
    )
}

fn knowledge() -> Result<&'static Knowledge, ApiError> {
    static KNOWLEDGE: std::sync::OnceLock<Result<Knowledge, String>> = std::sync::OnceLock::new();
    KNOWLEDGE
        .get_or_init(|| Knowledge::builtin().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| ApiError::Internal(format!("the care knowledge base does not load: {e}")))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DraftView {
    #[serde(flatten)]
    draft: CarePlanDraft,
    after_visit_summary: Vec<SummarySection>,
    /// Milliseconds the drafter took, chart reads excluded.
    draft_ms: f64,
}

async fn draft(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<DraftView>, ApiError> {
    let (visit, current) = crate::api::load_with_state(&state, &caller, &id).await?;
    if !matches!(current, telechart_visit::VisitState::InProgress | telechart_visit::VisitState::Finished) {
        return Err(telechart_visit::VisitError::WrongState { event: "drafting the care plan", state: current }.into());
    }
    let mut input = CarePlanInput::default();
    for row in state.store.artifacts(&caller.tenant_id, &visit.id).await? {
        let Ok(artifact) = serde_json::from_str::<Artifact>(row.payload.expose()) else { continue };
        match artifact {
            Artifact::Diagnosis(d) => {
                input.diagnoses.push(Diagnosis { artifact_id: row.id, code: d.code, display: d.display })
            }
            Artifact::Order(o) => input.orders.push(Order {
                artifact_id: row.id,
                kind: match o.kind {
                    telechart_visit::OrderKind::Lab => care_plan::OrderKind::Lab,
                    telechart_visit::OrderKind::Imaging => care_plan::OrderKind::Imaging,
                    telechart_visit::OrderKind::Referral => care_plan::OrderKind::Referral,
                    telechart_visit::OrderKind::Medication => care_plan::OrderKind::Medication,
                },
                text: o.display_with_dosage(),
            }),
            // The latest signed note wins (an amendment replaces what it amends).
            Artifact::Note(note) => input.note_sentences = sentences(&note.text),
            _ => {}
        }
    }
    input.chart = read_chart(&state, &caller, &visit).await;
    let started = std::time::Instant::now();
    let drafted = care_plan::draft(knowledge()?, &input);
    let draft_ms = started.elapsed().as_secs_f64() * 1000.0;
    let entry = AuditEntry {
        tenant_id: caller.tenant_id.clone(),
        actor: caller.actor.clone(),
        action: "care-plan.draft".into(),
        entity_type: "visit".into(),
        entity_id: visit.id.clone(),
        visit_id: Some(visit.id.clone()),
        phi: true,
        detail: format!(
            "{} items, {} conflicts flagged, {} gaps; chart read from connection {}",
            drafted.items.len(),
            drafted.conflicts.len(),
            drafted.gaps.len(),
            visit.connection_id
        ),
        purpose_of_use: Some("TREAT".into()),
        ..AuditEntry::default()
    };
    state.store.audit(&entry, state.clock.now_ms()).await?;
    let after_visit_summary = drafted.after_visit_summary();
    Ok(Json(DraftView { draft: drafted, after_visit_summary, draft_ms }))
}

/// The note's sentences, in order (a sentence's index is its evidence).
fn sentences(text: &str) -> Vec<String> {
    text.split_inclusive(['.', '!', '?', '\n'])
        .map(str::trim)
        .filter(|s| s.chars().any(char::is_alphanumeric))
        .map(str::to_owned)
        .collect()
}

/// The chart as the EHR shows it now; each part that cannot be read is `None`.
async fn read_chart(state: &AppState, caller: &Caller, visit: &telechart_store::VisitRow) -> Chart {
    let Ok(client) = state.connections.client(&caller.tenant_id, &visit.connection_id).await else {
        return Chart::default();
    };
    let patient = visit.patient.expose().trim_start_matches("Patient/").to_owned();
    let search = |rtype: &'static str, params: Vec<(&'static str, String)>| {
        let client = client.clone();
        async move {
            let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
            client.search(rtype, &params).await.ok()
        }
    };
    let (conditions, medications, allergies, person) = tokio::join!(
        search("Condition", vec![("patient", patient.clone()), ("clinical-status", "active".into())]),
        search("MedicationRequest", vec![("patient", patient.clone()), ("status", "active".into())]),
        search("AllergyIntolerance", vec![("patient", patient.clone())]),
        client.read("Patient", &patient),
    );
    Chart {
        conditions: conditions.map(|found| found.iter().map(|r| entry(r, "Condition", "/code")).collect()),
        medications: medications
            .map(|found| found.iter().map(|r| entry(r, "MedicationRequest", "/medicationCodeableConcept")).collect()),
        allergies: allergies.map(|found| found.iter().map(|r| entry(r, "AllergyIntolerance", "/code")).collect()),
        languages: person.map(|p| languages(&p.resource)).unwrap_or_default(),
    }
}

/// A chart resource's reference, words (text, then each coding's display) and ICD-10-CM code.
fn entry(resource: &Value, rtype: &str, concept: &str) -> ChartEntry {
    let concept = resource.pointer(concept).cloned().unwrap_or(Value::Null);
    let codings = concept["coding"].as_array().cloned().unwrap_or_default();
    let mut words: Vec<String> = concept["text"].as_str().map(str::to_owned).into_iter().collect();
    words.extend(codings.iter().filter_map(|c| c["display"].as_str().map(str::to_owned)));
    let code = codings
        .iter()
        .find(|c| c["system"] == "http://hl7.org/fhir/sid/icd-10-cm")
        .and_then(|c| c["code"].as_str())
        .map(str::to_owned);
    ChartEntry {
        reference: format!("{rtype}/{}", resource["id"].as_str().unwrap_or_default()),
        text: words.join("; "),
        code,
    }
}

/// `Patient.communication` languages, the preferred first.
fn languages(patient: &Value) -> Vec<String> {
    let mut found: Vec<(bool, String)> = patient["communication"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| {
            let code = c.pointer("/language/coding/0/code").and_then(Value::as_str)?;
            Some((c["preferred"] != Value::Bool(true), code.to_owned()))
        })
        .collect();
    found.sort_by_key(|(not_preferred, _)| *not_preferred);
    found.into_iter().map(|(_, code)| code).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_preferred_language_comes_first_and_codes_are_read_from_icd10cm_codings() {
        let patient = serde_json::json!({"communication": [
            {"language": {"coding": [{"code": "en-US"}]}},
            {"language": {"coding": [{"code": "es"}]}, "preferred": true}
        ]});
        assert_eq!(languages(&patient), ["es", "en-US"]);
        let condition = serde_json::json!({"resourceType": "Condition", "id": "c1", "code": {"text": "CKD 3",
            "coding": [{"system": "http://snomed.info/sct", "code": "433144002", "display": "Chronic kidney disease stage 3"},
                       {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "N18.30"}]}});
        let e = entry(&condition, "Condition", "/code");
        assert_eq!((e.reference.as_str(), e.code.as_deref()), ("Condition/c1", Some("N18.30")));
        assert_eq!(e.text, "CKD 3; Chronic kidney disease stage 3");
        assert_eq!(
            sentences("S: well. Follow up in 2 weeks.\nP: labs"),
            ["S: well.", "Follow up in 2 weeks.", "P: labs"]
        );
    }
}
