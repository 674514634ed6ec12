//! The care plan and after-visit summary, drafted, reviewed and signed.
//!
//! `POST /api/v1/visits/{id}/care-plan/draft`: the builtin care-plan drafter on this visit's
//! diagnoses, orders and signed note, and the patient's chart as the EHR shows it now (active
//! Conditions, MedicationRequests, AllergyIntolerances, `Patient.communication`). A chart read
//! that fails is said in the draft, never papered over. The draft is kept (sealed), versioned.
//!
//! `POST /api/v1/visits/{id}/care-plan/sign`: the clinician signs the draft as drafted or as
//! edited (items kept, reworded, removed, added). The signature commits with what it becomes: a
//! Goal per goal, the CarePlan (addressing the diagnoses, its activities referring to the orders
//! they carry out), the after-visit summary as an HTML DocumentReference (LOINC 34133-9, in the
//! patient's language, its plain-text words kept for EHRs that take text only), and the
//! patient's tasks for the portal. Each artifact reaches each EHR by its write plan.
//!
//! The builtin engine reads no recording or transcript, so the recording/AI consent does not
//! govern it; what it reads is the chart, under the treatment purpose the visit already has.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use telechart_policy::Permission;
use telechart_scribe::care_plan::{
    self, CarePlanDraft, CarePlanInput, Chart, ChartEntry, Diagnosis, Evidence, Order, PlanItem, Section,
    SummarySection,
};
use telechart_scribe::knowledge::Knowledge;
use telechart_store::{
    AuditEntry, CarePlanDraftRow, CarePlanSignature, EventRecord, NewCarePlanDraft, NewPatientTask, Phi, VisitRow,
};
use telechart_visit::{ActivityInput, Artifact, GoalRecord, PlanGoal, VisitState};

use crate::AppState;
use crate::api::{EventResult, parse};
use crate::auth::{Access, Caller, Routes};
use crate::error::ApiError;

pub(crate) fn routes() -> Routes {
    Routes::new()
        .add(Method::POST, "/api/v1/visits/{id}/care-plan/draft", Access::Requires(Permission::VisitNote), draft)
        .add(Method::GET, "/api/v1/visits/{id}/care-plan/draft", Access::Requires(Permission::VisitRead), latest)
        .add(Method::POST, "/api/v1/visits/{id}/care-plan/sign", Access::Requires(Permission::NoteSign), sign)
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
pub(crate) struct DraftView {
    pub id: String,
    pub version: i64,
    /// `draft`, `signed` or `superseded`.
    pub status: String,
    #[serde(flatten)]
    pub draft: CarePlanDraft,
    pub after_visit_summary: Vec<SummarySection>,
    /// Milliseconds the drafter took, chart reads excluded.
    pub draft_ms: f64,
    /// The plan as signed, once it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signed: Option<CarePlanDraft>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<String>,
}

pub(crate) fn draft_view(row: &CarePlanDraftRow) -> Result<DraftView, ApiError> {
    let read = |body: &str| {
        serde_json::from_str::<CarePlanDraft>(body)
            .map_err(|e| ApiError::Internal(format!("care-plan draft {} does not read back: {e}", row.id)))
    };
    let draft = read(row.body.expose())?;
    let signed = row.signed_body.as_ref().map(|b| read(b.expose())).transpose()?;
    let after_visit_summary = signed.as_ref().unwrap_or(&draft).after_visit_summary();
    Ok(DraftView {
        id: row.id.clone(),
        version: row.version,
        status: row.status.clone(),
        draft,
        after_visit_summary,
        draft_ms: row.draft_us as f64 / 1000.0,
        signed,
        signed_by: row.signed_by.clone(),
    })
}

/// `GET …/care-plan/draft`: the visit's latest care-plan draft (signed or not).
async fn latest(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<DraftView>, ApiError> {
    let visit = crate::api::load(&state, &caller, &id).await?;
    let row = state
        .store
        .latest_care_plan_draft(&caller.tenant_id, &visit.id)
        .await?
        .ok_or_else(|| ApiError::NotFound { field: None, message: format!("visit {id} has no care-plan draft yet") })?;
    let entry = audit(&caller, "visit.read", &visit.id, format!("care-plan draft {}", row.id));
    state.store.audit(&entry, state.clock.now_ms()).await?;
    Ok(Json(draft_view(&row)?))
}

fn audit(caller: &Caller, action: &str, visit_id: &str, detail: String) -> AuditEntry {
    crate::portal::audit(&caller.actor, &caller.tenant_id, action, visit_id, detail)
}

pub(crate) async fn draft(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<DraftView>), ApiError> {
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
    let draft_us = i64::try_from(started.elapsed().as_micros()).unwrap_or(i64::MAX);
    let detail = format!(
        "{} items, {} conflicts flagged, {} gaps; chart read from connection {}",
        drafted.items.len(),
        drafted.conflicts.len(),
        drafted.gaps.len(),
        visit.connection_id
    );
    let body = serde_json::to_string(&drafted).map_err(|e| ApiError::Internal(e.to_string()))?;
    let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    let new = NewCarePlanDraft {
        id: uuid::Uuid::now_v7().to_string(),
        visit_id: visit.id.clone(),
        language: drafted.language.clone(),
        body: Phi::new(body),
        items: count(drafted.items.len()),
        conflicts: count(drafted.conflicts.len()),
        gaps: count(drafted.gaps.len()),
        // Kept in microseconds: the builtin engine takes well under one millisecond.
        draft_us,
        created_by: caller.actor.clone(),
        created_at: state.clock.now_ms(),
    };
    let entry = audit(&caller, "care-plan.draft", &visit.id, detail);
    let row = state.store.insert_care_plan_draft(&caller.tenant_id, &new, &entry).await?;
    Ok((StatusCode::CREATED, Json(draft_view(&row)?)))
}

/// An item as the clinician signs it: `from` the draft's item at that index (its evidence kept,
/// its words as given), or the clinician's own (a section is then required).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct SignedItemInput {
    #[serde(default)]
    pub from: Option<usize>,
    #[serde(default)]
    pub section: Option<Section>,
    pub text: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct SignRequest {
    pub draft_id: String,
    /// The items signed, in order; absent: the draft as drafted.
    #[serde(default)]
    pub items: Option<Vec<SignedItemInput>>,
    #[serde(default)]
    pub title: Option<String>,
    /// `Practitioner/{id}`, where the caller has no linked Practitioner.
    #[serde(default)]
    pub author: Option<String>,
}

const MAX_ITEM_CHARS: usize = 1000;

/// Counts of what review changed: kept as drafted, reworded, removed, added.
#[derive(Debug, Default, PartialEq, Eq)]
struct ReviewCounts {
    kept: i64,
    edited: i64,
    removed: i64,
    added: i64,
}

/// The plan as signed from the draft and the clinician's items; refuses what cannot be signed.
fn signed_plan(
    draft: &CarePlanDraft,
    items: Option<Vec<SignedItemInput>>,
    author: &str,
) -> Result<(CarePlanDraft, ReviewCounts), ApiError> {
    let Some(items) = items else {
        let kept = i64::try_from(draft.items.len()).unwrap_or(i64::MAX);
        return Ok((draft.clone(), ReviewCounts { kept, ..ReviewCounts::default() }));
    };
    let mut counts = ReviewCounts::default();
    let mut used = vec![false; draft.items.len()];
    let mut signed = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let text = item.text.trim();
        if text.is_empty() {
            return Err(ApiError::invalid(format!("items[{i}].text"), "must not be empty"));
        }
        if text.chars().count() > MAX_ITEM_CHARS {
            return Err(ApiError::invalid(format!("items[{i}].text"), format!("is over {MAX_ITEM_CHARS} characters")));
        }
        match item.from {
            Some(from) => {
                let Some(original) = draft.items.get(from) else {
                    return Err(ApiError::invalid(
                        format!("items[{i}].from"),
                        format!("the draft has {} items; {from} is none of them", draft.items.len()),
                    ));
                };
                if std::mem::replace(&mut used[from], true) {
                    return Err(ApiError::invalid(format!("items[{i}].from"), format!("item {from} is signed twice")));
                }
                if original.text == text && item.section.is_none_or(|s| s == original.section) {
                    counts.kept += 1;
                } else {
                    counts.edited += 1;
                }
                signed.push(PlanItem {
                    section: item.section.unwrap_or(original.section),
                    text: text.to_owned(),
                    ..original.clone()
                });
            }
            None => {
                let Some(section) = item.section else {
                    return Err(ApiError::invalid(
                        format!("items[{i}].section"),
                        "an item of the clinician's own needs its section",
                    ));
                };
                counts.added += 1;
                signed.push(PlanItem {
                    section,
                    text: text.to_owned(),
                    measure: None,
                    condition: None,
                    evidence: vec![Evidence::Clinician(author.to_owned())],
                    due_in_days: None,
                });
            }
        }
    }
    counts.removed = i64::try_from(used.iter().filter(|u| !**u).count()).unwrap_or(i64::MAX);
    Ok((CarePlanDraft { items: signed, ..draft.clone() }, counts))
}

fn is_activity(section: Section) -> bool {
    matches!(section, Section::FollowUp | Section::SelfMonitoring | Section::Medication | Section::Lifestyle)
}

fn section_code(section: Section) -> &'static str {
    match section {
        Section::Goal => "goal",
        Section::FollowUp => "follow-up",
        Section::SelfMonitoring => "self-monitoring",
        Section::Medication => "medication",
        Section::Lifestyle => "lifestyle",
        Section::CallUs => "call-us",
        Section::Emergency => "emergency",
    }
}

/// `POST …/care-plan/sign`.
pub(crate) async fn sign(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<EventResult>), ApiError> {
    let request: SignRequest = parse(&body)?;
    let (visit, current) = crate::api::load_with_state(&state, &caller, &id).await?;
    if !matches!(current, VisitState::InProgress | VisitState::Finished) {
        return Err(telechart_visit::VisitError::WrongState { event: "signing the care plan", state: current }.into());
    }
    let row = state
        .store
        .care_plan_draft(&caller.tenant_id, &request.draft_id)
        .await?
        .filter(|d| d.visit_id == visit.id)
        .ok_or_else(|| ApiError::NotFound {
            field: Some("draftId".into()),
            message: format!("visit {id} has no care-plan draft {}", request.draft_id),
        })?;
    if row.status != "draft" {
        return Err(ApiError::Conflict {
            field: Some("draftId".into()),
            message: format!("care-plan draft {} is {}; sign the visit's latest draft", row.id, row.status),
        });
    }
    let drafted = draft_view(&row)?.draft;
    let author = crate::drafting::signer(&state, &caller, request.author).await?;
    let (plan, counts) = signed_plan(&drafted, request.items, &author)?;
    let result = record_signed(&state, &caller, &visit, current, &row, &plan, counts, &author, request.title).await?;
    Ok((StatusCode::CREATED, Json(result)))
}

/// The signed plan's artifacts (Goals, the CarePlan, the summary) and tasks, with the signature,
/// in one transaction.
#[allow(clippy::too_many_arguments)]
async fn record_signed(
    state: &AppState,
    caller: &Caller,
    visit: &VisitRow,
    current: VisitState,
    row: &CarePlanDraftRow,
    plan: &CarePlanDraft,
    counts: ReviewCounts,
    author: &str,
    title: Option<String>,
) -> Result<EventResult, ApiError> {
    let now = state.clock.now();
    let condition_diagnosis = |condition: &Option<String>| {
        condition.as_ref().and_then(|c| plan.addresses.iter().find(|(id, _)| id == c)).map(|(_, dx)| dx.clone())
    };
    let mut artifacts: Vec<(String, Artifact)> = Vec::new();
    let mut goals = Vec::new();
    for item in plan.items.iter().filter(|i| i.section == Section::Goal) {
        let goal = GoalRecord {
            description: item.text.clone(),
            measure: item.measure.clone(),
            addresses: condition_diagnosis(&item.condition).into_iter().collect(),
            author: author.to_owned(),
            created_at: now,
        };
        telechart_visit::validate_goal(&goal)?;
        let goal_id = uuid::Uuid::now_v7().to_string();
        goals.push(PlanGoal { artifact: goal_id.clone(), description: goal.description.clone() });
        artifacts.push((goal_id, Artifact::Goal(goal)));
    }
    let activities: Vec<ActivityInput> = plan
        .items
        .iter()
        .filter(|i| is_activity(i.section))
        .map(|i| ActivityInput {
            description: i.text.clone(),
            scheduled: i
                .due_in_days
                .map(|days| (now + chrono::Duration::days(i64::from(days))).format("%Y-%m-%d").to_string()),
            order: i.evidence.iter().find_map(|e| match e {
                Evidence::Order(order) => Some(order.clone()),
                _ => None,
            }),
        })
        .collect();
    if activities.is_empty() {
        return Err(ApiError::invalid(
            "items",
            "the plan has no follow-up, test, medicine, self-monitoring or lifestyle item to sign; add one",
        ));
    }
    let warnings: Vec<&str> = plan
        .items
        .iter()
        .filter(|i| matches!(i.section, Section::CallUs | Section::Emergency))
        .map(|i| i.text.as_str())
        .collect();
    let mut addresses: Vec<String> = Vec::new();
    for (_, dx) in &plan.addresses {
        if !addresses.contains(dx) {
            addresses.push(dx.clone());
        }
    }
    let record = telechart_visit::CarePlanRecord {
        title: title.filter(|t| !t.trim().is_empty()).unwrap_or_else(|| "Telehealth visit care plan".into()),
        description: (!warnings.is_empty()).then(|| format!("When to get help: {}", warnings.join(" "))),
        activities: activities.clone(),
        author: author.to_owned(),
        created_at: now,
        addresses,
        goals,
        draft: Some(row.id.clone()),
    };
    let care_plan_id = uuid::Uuid::now_v7().to_string();
    artifacts.push((care_plan_id.clone(), Artifact::CarePlan(record)));
    let words = crate::avs::words(&plan.language);
    let mut summary = current.attach_document(
        telechart_visit::DocumentInput {
            kind: telechart_visit::DocumentKind::AfterVisitSummary,
            title: words.title.to_owned(),
            content_type: "text/html".into(),
            text: Some(crate::avs::document(plan)),
            data: None,
            author: Some(author.to_owned()),
            created_at: Some(now),
        },
        now,
    )?;
    summary.plain_text = Some(format!("{}\n\n{}", words.title, plan.summary_text()));
    summary.language = Some(plan.language.clone());
    let summary_id = uuid::Uuid::now_v7().to_string();
    artifacts.push((summary_id.clone(), Artifact::Document(summary)));
    let now_ms = state.clock.now_ms();
    let tasks: Vec<NewPatientTask> = plan
        .items
        .iter()
        .filter(|i| is_activity(i.section))
        .zip(0_i64..)
        .map(|(item, position)| NewPatientTask {
            id: uuid::Uuid::now_v7().to_string(),
            position,
            section: section_code(item.section).to_owned(),
            text: Phi::new(item.text.clone()),
            due_at: item.due_in_days.map(|days| now_ms + i64::from(days) * 86_400_000),
        })
        .collect();
    let signed_body = serde_json::to_string(plan).map_err(|e| ApiError::Internal(e.to_string()))?;
    let signature = CarePlanSignature {
        draft_id: row.id.clone(),
        visit_id: visit.id.clone(),
        signed_body: Phi::new(signed_body),
        signed_by: author.to_owned(),
        signed_at: now_ms,
        care_plan_artifact: care_plan_id,
        summary_artifact: summary_id,
        items_kept: counts.kept,
        items_edited: counts.edited,
        items_removed: counts.removed,
        items_added: counts.added,
        tasks,
    };
    let entry = audit(
        caller,
        "care-plan.signed",
        &visit.id,
        format!(
            "draft {} signed by {author}: {} kept, {} edited, {} removed, {} added; {} tasks",
            row.id,
            counts.kept,
            counts.edited,
            counts.removed,
            counts.added,
            signature.tasks.len()
        ),
    );
    crate::api::record_artifacts(
        state,
        caller,
        visit,
        current,
        artifacts,
        Some(EventRecord::CarePlanSigned(&signature)),
        entry,
    )
    .await
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
