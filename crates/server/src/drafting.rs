//! The visit-note drafter behind `/api/v1/visits/{id}/draft`: consent first (recording / AI
//! drafting, and disclosure when the engine is off this machine), then the visit's transcripts,
//! vitals, diagnoses and orders → a draft whose every sentence names its evidence, kept sealed
//! and audited; signing turns the draft (as the clinician edited it) into the visit's note and
//! its Provenance, in one transaction with the signature.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use telechart_policy::governed::GovernedFlow;
use telechart_scribe::{Draft, Evidence, InputKind, StructuredInput, Templates, Turn, VisitInput, builtin::Builtin};
use telechart_store::{AuditEntry, DraftSignature, EventRecord, NewNoteDraft, NoteDraftRow, Phi, VisitRow};
use telechart_visit::{Artifact, DocumentKind, EncounterStatusChange, NoteInput, NoteProvenance, VisitState};

use crate::api::{EventResult, load, load_with_state, parse, record_artifacts};
use crate::auth::Caller;
use crate::{ApiError, AppState};

/// How this deployment drafts: the builtin engine always; an OpenAI-compatible one if configured.
#[derive(Debug, Default)]
pub struct Drafting {
    pub llm: Option<LlmEngine>,
}

/// A chat-completions endpoint (`{base_url}/chat/completions`).
#[derive(Clone)]
pub struct LlmEngine {
    pub base_url: String,
    pub model: String,
    /// The bearer key, read from the configured key file; never logged.
    pub api_key: Option<String>,
    pub timeout: Duration,
    pub max_attempts: u32,
}

impl std::fmt::Debug for LlmEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmEngine")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .field("max_attempts", &self.max_attempts)
            .finish()
    }
}

pub(crate) const ENGINE_BUILTIN: &str = "builtin";
pub(crate) const ENGINE_LLM: &str = "openai-compatible";

struct Shipped {
    builtin: Builtin,
    templates: Templates,
}

/// The builtin engine and templates, read once from the data shipped in the scribe crate.
fn shipped() -> Result<&'static Shipped, ApiError> {
    static SHIPPED: OnceLock<Result<Shipped, String>> = OnceLock::new();
    SHIPPED
        .get_or_init(|| {
            Ok(Shipped {
                builtin: Builtin::new().map_err(|e| e.to_string())?,
                templates: Templates::builtin().map_err(|e| e.to_string())?,
            })
        })
        .as_ref()
        .map_err(|e| ApiError::Internal(format!("drafter data: {e}")))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DraftRequest {
    #[serde(default)]
    template: Option<String>,
    #[serde(default)]
    engine: Option<String>,
    /// Draft an amendment of the signed note (signed, it replaces that note in the EHR).
    #[serde(default)]
    amend: bool,
}

/// One transcript turn as the reviewer sees it, with the transcript it came from.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TurnView {
    pub id: usize,
    pub speaker: String,
    pub role: telechart_scribe::Role,
    pub text: String,
    pub artifact: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SignatureView {
    pub by: String,
    pub at: Option<DateTime<Utc>>,
    pub note_artifact: Option<String>,
    pub edit_distance: Option<i64>,
    /// From the platform's call-ended event to the signature, when the call has ended.
    pub ms_after_call_end: Option<i64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DraftView {
    pub id: String,
    pub visit_id: String,
    pub version: i64,
    pub status: String,
    pub engine: String,
    pub template: String,
    /// The signed draft this one amends.
    pub amends: Option<String>,
    pub created_at: Option<DateTime<Utc>>,
    pub draft_ms: i64,
    pub sentence_count: i64,
    pub flagged: i64,
    pub missing: Vec<String>,
    /// The visit's transcripts the drafter could not read, each with why.
    pub unread: Vec<String>,
    pub sections: Vec<telechart_scribe::Section>,
    pub text: String,
    pub turns: Vec<TurnView>,
    pub inputs: Vec<StructuredInput>,
    pub signed: Option<SignatureView>,
}

/// What the drafter reads of a visit, and which artifact each turn came from.
pub(crate) struct VisitMaterial {
    pub input: VisitInput,
    /// `turn_artifact[i]`: the transcript artifact of turn `i`.
    pub turn_artifact: Vec<String>,
    /// Transcripts that could not be read, each with why: shown with the draft, never skipped
    /// silently.
    pub unread: Vec<String>,
}

/// Reads the visit's artifacts: every transcript (its turns numbered on from the one before),
/// vitals, diagnoses and orders. A transcript that cannot be read is listed with why; purged
/// payloads (retention) are absent.
pub(crate) async fn visit_material(
    state: &AppState,
    caller: &Caller,
    visit: &VisitRow,
) -> Result<VisitMaterial, ApiError> {
    let rows = state.store.artifacts(&caller.tenant_id, &visit.id).await?;
    let mut input = VisitInput::default();
    let mut turn_artifact = Vec::new();
    let mut unread = Vec::new();
    for row in rows {
        let Ok(artifact) = serde_json::from_str::<Artifact>(row.payload.expose()) else { continue };
        match artifact {
            Artifact::Document(doc)
                if matches!(doc.kind, DocumentKind::ChatTranscript | DocumentKind::VideoTranscript) =>
            {
                let bytes = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &doc.data)
                    .map_err(|e| ApiError::Internal(format!("transcript {} is not base64: {e}", row.id)))?;
                let turns = match telechart_scribe::transcript::parse(&bytes) {
                    Ok(turns) => turns,
                    Err(e) => {
                        unread.push(format!("transcript document {} ({:?}): {e}", row.id, doc.title));
                        continue;
                    }
                };
                let offset = input.turns.len();
                for turn in turns {
                    turn_artifact.push(row.id.clone());
                    input.turns.push(Turn { id: turn.id + offset, ..turn });
                }
            }
            Artifact::Vital(vital) => {
                let name = vital.spec().map_or(vital.name.as_str(), |s| s.display);
                let value = match &vital.value {
                    telechart_visit::VitalValue::Single(v) => v.to_string(),
                    telechart_visit::VitalValue::BloodPressure { systolic, diastolic } => {
                        format!("{systolic}/{diastolic}")
                    }
                };
                input.inputs.push(StructuredInput {
                    id: row.id,
                    kind: InputKind::Vital,
                    text: format!("{name} {value} {}", vital.unit),
                });
            }
            Artifact::Diagnosis(d) => input.inputs.push(StructuredInput {
                id: row.id,
                kind: InputKind::Diagnosis,
                text: format!("{} {}", d.code, d.display),
            }),
            Artifact::Order(o) => {
                input.inputs.push(StructuredInput { id: row.id, kind: InputKind::Order, text: o.display_with_dosage() })
            }
            _ => {}
        }
    }
    Ok(VisitMaterial { input, turn_artifact, unread })
}

pub(crate) fn draft_view(
    row: &NoteDraftRow,
    material: &VisitMaterial,
    visit: &VisitRow,
) -> Result<DraftView, ApiError> {
    let draft: Draft = serde_json::from_str(row.body.expose())
        .map_err(|e| ApiError::Internal(format!("draft {} does not read back: {e}", row.id)))?;
    let turns = material
        .input
        .turns
        .iter()
        .map(|t| TurnView {
            id: t.id,
            speaker: t.speaker.clone(),
            role: t.role,
            text: t.text.clone(),
            artifact: material.turn_artifact.get(t.id).cloned().unwrap_or_default(),
        })
        .collect();
    Ok(DraftView {
        id: row.id.clone(),
        visit_id: row.visit_id.clone(),
        version: row.version,
        status: row.status.clone(),
        engine: row.engine.clone(),
        template: row.template.clone(),
        amends: row.amends.clone(),
        created_at: DateTime::from_timestamp_millis(row.created_at),
        draft_ms: row.draft_ms,
        sentence_count: row.sentences,
        flagged: row.flagged,
        missing: draft.missing.clone(),
        unread: material.unread.clone(),
        text: draft.to_text(),
        sections: draft.sections,
        turns,
        inputs: material.input.inputs.clone(),
        signed: row.signed_by.as_ref().map(|by| SignatureView {
            by: by.clone(),
            at: row.signed_at.and_then(DateTime::from_timestamp_millis),
            note_artifact: row.note_artifact.clone(),
            edit_distance: row.edit_distance,
            ms_after_call_end: row.signed_at.zip(visit.call_ended_at).map(|(signed, ended)| signed - ended),
        }),
    })
}

fn audit(caller: &Caller, action: &str, visit_id: &str, detail: String) -> AuditEntry {
    AuditEntry {
        tenant_id: caller.tenant_id.clone(),
        actor: caller.actor.clone(),
        action: action.into(),
        entity_type: "visit".into(),
        entity_id: visit_id.into(),
        visit_id: Some(visit_id.into()),
        phi: true,
        detail,
        ..AuditEntry::default()
    }
}

/// `POST /api/v1/visits/{id}/draft`.
pub(crate) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<DraftView>), ApiError> {
    let request: DraftRequest =
        if body.iter().all(u8::is_ascii_whitespace) { DraftRequest::default() } else { parse(&body)? };
    let visit = load(&state, &caller, &id).await?;
    let shipped = shipped()?;
    let template = match &request.template {
        Some(t) => shipped.templates.get(t).map_err(|e| ApiError::invalid("template", e.to_string()))?,
        None => shipped.templates.for_visit_type(visit.visit_type.as_deref()),
    };
    let engine = request.engine.as_deref().unwrap_or(ENGINE_BUILTIN);
    let llm = match engine {
        ENGINE_BUILTIN => None,
        ENGINE_LLM => Some(state.drafting.llm.clone().ok_or_else(|| {
            ApiError::invalid("engine", "no OpenAI-compatible engine is configured on this server ([drafting.llm])")
        })?),
        other => {
            return Err(ApiError::invalid(
                "engine",
                format!("unknown engine {other:?}; known: {ENGINE_BUILTIN}, {ENGINE_LLM}"),
            ));
        }
    };
    // Nothing of the conversation is read for drafting without the patient's consent; an engine
    // off this machine is also a disclosure, refused unless registered under a BAA.
    crate::consent::gate(&state, &caller, &visit, &GovernedFlow::RecordOrDraft).await?;
    if let Some(llm) = &llm {
        state.connections.check_egress(&llm.base_url).map_err(|e| ApiError::Forbidden(e.to_string()))?;
        if !is_loopback(&llm.base_url) {
            let recipient = format!("drafting engine {}", origin(&llm.base_url));
            crate::consent::gate(&state, &caller, &visit, &GovernedFlow::Disclose { recipient }).await?;
        }
    }
    let amends = if request.amend {
        let signed = state.store.signed_note_draft(&caller.tenant_id, &visit.id).await?;
        Some(signed.map(|d| d.id).ok_or_else(|| ApiError::Conflict {
            field: Some("amend".into()),
            message: format!("visit {} has no signed note to amend", visit.id),
        })?)
    } else {
        None
    };
    let material = visit_material(&state, &caller, &visit).await?;
    if material.input.turns.is_empty() {
        if let Some(why) = material.unread.first() {
            return Err(ApiError::invalid("transcript", format!("no transcript of the visit can be read: {why}")));
        }
        if material.input.inputs.is_empty() {
            return Err(ApiError::invalid(
                "transcript",
                "the visit has no transcript, vitals, diagnoses or orders to draft from; attach a chat-transcript or video-transcript document first",
            ));
        }
    }
    let started = Instant::now();
    let draft = match &llm {
        None => shipped.builtin.draft(&material.input, template),
        Some(llm) => {
            let request = telechart_scribe::llm::request(&llm.model, &material.input, template);
            let answer = ask(&state, llm, &request).await?;
            telechart_scribe::llm::read_answer(
                &llm.model,
                &answer,
                &material.input,
                template,
                shipped.builtin.lexicon(),
            )
            .map_err(|e| ApiError::BadGateway(format!("the drafting engine: {e}")))?
        }
    };
    let draft_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
    let body = serde_json::to_string(&draft).map_err(|e| ApiError::Internal(e.to_string()))?;
    let sentences = i64::try_from(draft.sentences().count()).unwrap_or(i64::MAX);
    let flagged = i64::try_from(draft.flagged()).unwrap_or(i64::MAX);
    let new = NewNoteDraft {
        id: uuid::Uuid::now_v7().to_string(),
        visit_id: visit.id.clone(),
        engine: draft.engine.clone(),
        template: draft.template.clone(),
        body: Phi::new(body),
        sentences,
        flagged,
        draft_ms,
        created_by: caller.actor.clone(),
        created_at: state.clock.now_ms(),
        amends,
    };
    let entry = audit(
        &caller,
        "note.drafted",
        &visit.id,
        format!("draft {} by {} ({}); {sentences} sentences, {flagged} flagged", new.id, new.engine, new.template),
    );
    let row = state.store.insert_note_draft(&caller.tenant_id, &new, &entry).await?;
    Ok((StatusCode::CREATED, Json(draft_view(&row, &material, &visit)?)))
}

/// `scheme://host[:port]` of a URL, for audit records (never its path or query).
fn origin(url: &str) -> String {
    url::Url::parse(url).map(|u| u.origin().ascii_serialization()).unwrap_or_else(|_| "(unparsable URL)".into())
}

/// An engine on this machine receives nothing that leaves it: no disclosure.
fn is_loopback(url: &str) -> bool {
    url::Url::parse(url).ok().and_then(|u| u.host().map(|h| h.to_owned())).is_some_and(|host| match host {
        url::Host::Domain(d) => d == "localhost",
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    })
}

/// Sends the request to the configured endpoint: egress-checked, time-limited, retried with
/// backoff on 429 / 5xx / timeouts (honouring `Retry-After` seconds), the answer size-limited.
async fn ask(state: &AppState, llm: &LlmEngine, request: &serde_json::Value) -> Result<Vec<u8>, ApiError> {
    let url = format!("{}/chat/completions", llm.base_url.trim_end_matches('/'));
    state.connections.check_egress(&url).map_err(|e| ApiError::Forbidden(e.to_string()))?;
    let client = reqwest::Client::builder()
        .timeout(llm.timeout)
        .build()
        .map_err(|e| ApiError::Internal(format!("HTTP client: {e}")))?;
    let attempts = llm.max_attempts.max(1);
    let mut last = String::new();
    for attempt in 1..=attempts {
        let mut call = client.post(&url).json(request);
        if let Some(key) = &llm.api_key {
            call = call.bearer_auth(key);
        }
        let wait = match call.send().await {
            Ok(mut response) if response.status().is_success() => {
                let mut body = Vec::new();
                while let Some(chunk) =
                    response.chunk().await.map_err(|e| ApiError::BadGateway(format!("the drafting engine: {e}")))?
                {
                    body.extend_from_slice(&chunk);
                    if body.len() > telechart_scribe::llm::MAX_ANSWER_BYTES {
                        return Err(ApiError::BadGateway(format!(
                            "the drafting engine: the answer is larger than {} bytes",
                            telechart_scribe::llm::MAX_ANSWER_BYTES
                        )));
                    }
                }
                return Ok(body);
            }
            Ok(response) => {
                let status = response.status();
                last = format!("HTTP {status}");
                if status.as_u16() != 429 && !status.is_server_error() {
                    return Err(ApiError::BadGateway(format!("the drafting engine answered {last}")));
                }
                response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(|s| Duration::from_secs(s.min(30)))
            }
            Err(e) if e.is_timeout() => {
                last = format!("no answer within {} ms", llm.timeout.as_millis());
                None
            }
            Err(e) => {
                last = format!("unreachable ({})", e.without_url());
                None
            }
        };
        if attempt < attempts {
            let backoff = Duration::from_millis(200 * (1 << (attempt - 1).min(5)));
            tokio::time::sleep(wait.unwrap_or(backoff)).await;
        }
    }
    Err(ApiError::BadGateway(format!("the drafting engine: {last} after {attempts} attempt(s)")))
}

/// `GET /api/v1/visits/{id}/draft`: the latest draft.
pub(crate) async fn latest(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<DraftView>, ApiError> {
    let visit = load(&state, &caller, &id).await?;
    let row = state
        .store
        .latest_note_draft(&caller.tenant_id, &visit.id)
        .await?
        .ok_or_else(|| ApiError::NotFound { field: None, message: format!("visit {id} has no note draft") })?;
    let material = visit_material(&state, &caller, &visit).await?;
    Ok(Json(draft_view(&row, &material, &visit)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct SignRequest {
    /// The draft signed (the latest, which the reviewer saw).
    draft: String,
    /// The note as the clinician left it; default the draft's text unchanged.
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    title: Option<String>,
    /// `Practitioner/{id}` of the signer, for a caller with no linked Practitioner.
    #[serde(default)]
    author: Option<String>,
}

/// Words changed from `a` to `b` (Levenshtein on whitespace-separated words).
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<&str> = a.split_whitespace().collect();
    let b: Vec<&str> = b.split_whitespace().collect();
    strsim::generic_levenshtein(&a, &b)
}

/// The Practitioner who signs: the logged-in clinician's linked Practitioner, or the one the
/// body names when the caller has none linked (an API token). Never both, disagreeing.
pub(crate) async fn signer(state: &AppState, caller: &Caller, named: Option<String>) -> Result<String, ApiError> {
    let linked = match caller.actor.strip_prefix("user:") {
        Some(user) => state.store.user(&caller.tenant_id, user).await?.and_then(|u| u.fhir_user),
        None => None,
    };
    let linked = linked.map(|p| if p.contains('/') { p } else { format!("Practitioner/{p}") });
    match (linked, named) {
        (Some(linked), Some(named)) if linked != named => Err(ApiError::invalid(
            "author",
            format!("the signer is {linked}, the logged-in clinician; a note is not signed for someone else"),
        )),
        (Some(linked), _) => Ok(linked),
        (None, Some(named)) if named.starts_with("Practitioner/") => Ok(named),
        (None, Some(_)) => Err(ApiError::invalid("author", "must be a Practitioner/{id} reference")),
        (None, None) => Err(ApiError::invalid("author", "required: this caller has no linked Practitioner")),
    }
}

/// `POST /api/v1/visits/{id}/draft/sign`: the draft, as edited, becomes the visit's signed note
/// (a final DocumentReference with its authenticator) and the note's Provenance, delivered like
/// any artifact; the signature, the edit distance and both artifacts commit together.
pub(crate) async fn sign(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<EventResult>), ApiError> {
    let request: SignRequest = parse(&body)?;
    let (visit, current) = load_with_state(&state, &caller, &id).await?;
    let row = state
        .store
        .note_draft(&caller.tenant_id, &request.draft)
        .await?
        .filter(|d| d.visit_id == visit.id)
        .ok_or_else(|| ApiError::NotFound {
            field: Some("draft".into()),
            message: format!("visit {id} has no draft {}", request.draft),
        })?;
    if row.status != "draft" {
        return Err(ApiError::Conflict {
            field: Some("draft".into()),
            message: format!("draft {} is {}; sign the visit's latest draft", row.id, row.status),
        });
    }
    let draft: Draft = serde_json::from_str(row.body.expose())
        .map_err(|e| ApiError::Internal(format!("draft {} does not read back: {e}", row.id)))?;
    let drafted = draft.to_text();
    let text = request.text.unwrap_or_else(|| drafted.clone());
    // A flagged sentence is never signed as the engine wrote it: the clinician fixes or drops it.
    let kept_flagged: Vec<&str> = draft
        .sentences()
        .filter(|s| !s.flags.is_empty() && text.contains(s.text.as_str()))
        .map(|s| s.text.as_str())
        .collect();
    if let Some(first) = kept_flagged.first() {
        return Err(ApiError::invalid(
            "text",
            format!(
                "{} flagged sentence(s) are still in the note as drafted (first: {first:?}); edit or remove them before signing",
                kept_flagged.len()
            ),
        ));
    }
    let author = signer(&state, &caller, request.author).await?;
    let now = state.clock.now();
    // An amendment replaces the note its signed draft became.
    let replaces = match &row.amends {
        Some(amended) => state.store.note_draft(&caller.tenant_id, amended).await?.and_then(|d| d.note_artifact),
        None => None,
    };
    let mut note = current.sign_note(
        NoteInput {
            title: request.title.unwrap_or_else(|| "Telehealth visit note".into()),
            text: text.clone(),
            author: author.clone(),
            signed_at: now,
            content_type: Some("text/plain".into()),
        },
        now,
    )?;
    note.replaces = replaces;
    let note_id = uuid::Uuid::now_v7().to_string();
    let material = visit_material(&state, &caller, &visit).await?;
    let provenance = NoteProvenance {
        note_artifact: note_id.clone(),
        sources: sources(&draft, &text, &material),
        engine: row.engine.clone(),
        signer: author.clone(),
        signed_at: now,
    };
    let mut artifacts = vec![
        (note_id.clone(), Artifact::Note(note)),
        (uuid::Uuid::now_v7().to_string(), Artifact::Provenance(provenance)),
    ];
    let mut next = current;
    // The platform said the call ended and the tenant's rule waited for this signature.
    if current == VisitState::InProgress && visit.call_ended_at.is_some() {
        next = VisitState::Finished;
        artifacts.push((
            uuid::Uuid::now_v7().to_string(),
            Artifact::EncounterStatus(EncounterStatusChange { from: current, to: next, at: now }),
        ));
    }
    let distance = i64::try_from(edit_distance(&drafted, &text)).unwrap_or(i64::MAX);
    let signature = DraftSignature {
        draft_id: row.id.clone(),
        signed_text: Phi::new(text),
        signed_by: author,
        signed_at: state.clock.now_ms(),
        note_artifact: note_id,
        edit_distance: distance,
        amends: row.amends.clone(),
    };
    let entry = audit(
        &caller,
        "note.signed",
        &visit.id,
        format!("draft {} signed by {}; {distance} word(s) edited", row.id, signature.signed_by),
    );
    let result =
        record_artifacts(&state, &caller, &visit, next, artifacts, Some(EventRecord::DraftSigned(&signature)), entry)
            .await?;
    Ok((StatusCode::CREATED, Json(result)))
}

/// The artifacts the signed note rests on: those cited by the drafted sentences the clinician
/// kept (all cited ones when the note was rewritten past recognition).
fn sources(draft: &Draft, signed: &str, material: &VisitMaterial) -> Vec<String> {
    let cite = |kept_only: bool| {
        let mut out: Vec<String> = Vec::new();
        for sentence in draft.sentences().filter(|s| !kept_only || signed.contains(s.text.as_str())) {
            for evidence in &sentence.evidence {
                let artifact = match evidence {
                    Evidence::Turn { turn } => material.turn_artifact.get(*turn).cloned(),
                    Evidence::Input { id } => material.input.inputs.iter().find(|i| &i.id == id).map(|i| i.id.clone()),
                };
                if let Some(a) = artifact.filter(|a| !out.contains(a)) {
                    out.push(a);
                }
            }
        }
        out
    };
    let kept = cite(true);
    if kept.is_empty() { cite(false) } else { kept }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_words() {
        assert_eq!(edit_distance("a b c", "a b c"), 0);
        assert_eq!(edit_distance("a b c", "a x c"), 1);
        assert_eq!(edit_distance("a b c", "a c"), 1);
        assert_eq!(edit_distance("", "one two"), 2);
    }

    #[test]
    fn the_key_is_never_in_debug_output() {
        let llm = LlmEngine {
            base_url: "http://127.0.0.1:1".into(),
            model: "m".into(),
            api_key: Some("sk-secret".into()),
            timeout: Duration::from_secs(1),
            max_attempts: 1,
        };
        assert!(!format!("{llm:?}").contains("sk-secret"));
    }
}
