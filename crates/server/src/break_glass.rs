//! Break-glass: a clinician's time-boxed way past a consent refusal for one visit's patient,
//! with a coded reason; compliance officers are alerted at once and review each grant. It
//! governs data Telechart holds: it never unlocks the EHR (an EHR's own break-the-glass refusal
//! stays a dead letter saying "break the glass in the EHR").

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};
use serde::{Deserialize, Serialize};
use telechart_policy::Permission;
use telechart_store::{AuditEntry, BreakGlassGrant, Phi};

use crate::api::{load, parse};
use crate::auth::{Access, Caller, Routes, SessionCaller};
use crate::{ApiError, AppState};

/// How long a grant lasts unless the deployment says otherwise (`[break_glass] minutes`).
pub const DEFAULT_GRANT_MINUTES: i64 = 60;

/// HL7 v3 ActReason codes a grant may give, with their meaning.
const REASONS: &[(&str, &str)] =
    &[("ETREAT", "emergency treatment"), ("BTG", "break the glass"), ("ERTREAT", "emergency room treatment")];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GrantRequest {
    /// HL7 v3 ActReason: `ETREAT`, `BTG` or `ERTREAT`.
    reason: String,
    /// Why, in the clinician's words (10 to 1 000 characters).
    text: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GrantView {
    id: String,
    actor: String,
    visit: String,
    reason: String,
    text: String,
    granted_at: Option<DateTime<Utc>>,
    expires_at: Option<DateTime<Utc>>,
    uses: i64,
    review: String,
    reviewer: Option<String>,
    review_note: Option<String>,
    reviewed_at: Option<DateTime<Utc>>,
}

fn view(g: &BreakGlassGrant) -> GrantView {
    GrantView {
        id: g.id.clone(),
        actor: g.actor.clone(),
        visit: g.visit_id.clone(),
        reason: g.reason_code.clone(),
        text: g.reason_text.expose().to_owned(),
        granted_at: DateTime::from_timestamp_millis(g.granted_at),
        expires_at: DateTime::from_timestamp_millis(g.expires_at),
        uses: g.uses,
        review: g.review.clone(),
        reviewer: g.reviewer.clone(),
        review_note: g.review_note.as_ref().map(|n| n.expose().to_owned()),
        reviewed_at: g.reviewed_at.and_then(DateTime::from_timestamp_millis),
    }
}

/// `POST /api/v1/visits/{id}/break-glass`.
pub(crate) async fn grant(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<GrantView>), ApiError> {
    let request: GrantRequest = parse(&body)?;
    let Some((code, meaning)) = REASONS.iter().find(|(c, _)| *c == request.reason) else {
        return Err(ApiError::invalid(
            "reason",
            "must be an HL7 v3 ActReason for emergency access: ETREAT, BTG or ERTREAT",
        ));
    };
    let text = request.text.trim();
    if text.chars().count() < 10 || text.chars().count() > 1_000 {
        return Err(ApiError::invalid("text", "say why in 10 to 1 000 characters"));
    }
    let visit = load(&state, &caller, &id).await?;
    let now = state.clock.now_ms();
    let minutes = state.compliance.break_glass_minutes;
    let grant = BreakGlassGrant {
        id: uuid::Uuid::now_v7().to_string(),
        actor: caller.actor.clone(),
        visit_id: visit.id.clone(),
        reason_code: (*code).to_owned(),
        reason_text: Phi::new(text),
        granted_at: now,
        expires_at: now + minutes * 60_000,
        uses: 0,
        review: "pending".into(),
        reviewer: None,
        review_note: None,
        reviewed_at: None,
    };
    let entry = AuditEntry {
        tenant_id: caller.tenant_id.clone(),
        actor: caller.actor.clone(),
        action: "break-glass.grant".into(),
        entity_type: "break-glass".into(),
        entity_id: grant.id.clone(),
        visit_id: Some(visit.id.clone()),
        phi: true,
        detail: format!("{code} ({meaning}) for {minutes} min"),
        purpose_of_use: Some((*code).to_owned()),
        ..AuditEntry::default()
    };
    state.store.grant_break_glass(&caller.tenant_id, &grant, &entry).await?;
    // The compliance alert: at once, to the log sink (ids only), and in the review queue.
    tracing::warn!(
        target: "telechart::alert",
        alert = "break-glass",
        tenant = %caller.tenant_id,
        grant = %grant.id,
        actor = %caller.actor,
        visit = %visit.id,
        reason = code,
        "break-glass access granted; review it"
    );
    Ok((StatusCode::CREATED, Json(view(&grant))))
}

/// `GET /api/v1/break-glass`: every grant, newest first, for review.
pub(crate) async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<Vec<GrantView>>, ApiError> {
    let grants = state.store.break_glass_grants(&caller.tenant_id, false).await?;
    Ok(Json(grants.iter().map(view).collect()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Review {
    /// `approved` or `flagged`.
    verdict: String,
    note: String,
}

/// `POST /api/v1/break-glass/{id}/review`: approve or flag a grant, once, with a note.
pub(crate) async fn review(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<GrantView>, ApiError> {
    let request: Review = parse(&body)?;
    if !matches!(request.verdict.as_str(), "approved" | "flagged") {
        return Err(ApiError::invalid("verdict", "must be approved or flagged"));
    }
    if request.note.trim().is_empty() || request.note.len() > 2_000 {
        return Err(ApiError::invalid("note", "must be 1 to 2 000 characters"));
    }
    let entry = AuditEntry {
        tenant_id: caller.tenant_id.clone(),
        actor: caller.actor.clone(),
        action: "break-glass.review".into(),
        entity_type: "break-glass".into(),
        entity_id: id.clone(),
        phi: false,
        detail: request.verdict.clone(),
        purpose_of_use: Some("HOPERAT".into()),
        ..AuditEntry::default()
    };
    let now = state.clock.now_ms();
    state
        .store
        .review_break_glass(&caller.tenant_id, &id, &request.verdict, &Phi::new(request.note.trim()), &entry, now)
        .await?;
    let grants = state.store.break_glass_grants(&caller.tenant_id, false).await?;
    let reviewed = grants
        .iter()
        .find(|g| g.id == id)
        .ok_or_else(|| ApiError::NotFound { field: None, message: format!("break-glass grant {id} not found") })?;
    Ok(Json(view(reviewed)))
}

pub(crate) fn routes() -> Routes {
    Routes::new()
        .add(Method::GET, "/workspace/break-glass", Access::Requires(Permission::BreakGlassReview), queue_page)
        .add(
            Method::POST,
            "/workspace/break-glass/{id}/review",
            Access::Requires(Permission::BreakGlassReview),
            form_review,
        )
}

fn when(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms).map(telechart_visit::format_instant).unwrap_or_default()
}

/// `GET /workspace/break-glass`: the compliance officer's review queue — grants waiting for a
/// verdict first, then those reviewed. Reading it (the clinicians' reasons name patients'
/// situations) is audited.
async fn queue_page(
    State(state): State<AppState>,
    caller: Caller,
    session: Option<SessionCaller>,
) -> Result<Response, ApiError> {
    let grants = state.store.break_glass_grants(&caller.tenant_id, false).await?;
    let entry = AuditEntry {
        tenant_id: caller.tenant_id.clone(),
        actor: caller.actor.clone(),
        action: "break-glass.queue.read".into(),
        entity_type: "break-glass".into(),
        entity_id: "queue".into(),
        phi: true,
        detail: format!("{} grants shown", grants.len()),
        purpose_of_use: Some("HOPERAT".into()),
        ..AuditEntry::default()
    };
    state.store.audit(&entry, state.clock.now_ms()).await?;
    let (pending, reviewed): (Vec<_>, Vec<_>) = grants.iter().partition(|g| g.review == "pending");
    let csrf = session.map(|s| s.session.csrf_token);
    let now = state.clock.now_ms();
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; title { "Break-glass review" } }
            body {
                h1 { "Break-glass review" }
                p { (pending.len()) " waiting for review · " (reviewed.len()) " reviewed" }
                h2 { "Waiting for review" }
                @if pending.is_empty() { p id="queue-empty" { "Nothing waits for review." } }
                @for g in &pending {
                    (grant_card(g, now, csrf.as_deref()))
                }
                h2 { "Reviewed" }
                @for g in &reviewed {
                    (grant_card(g, now, None))
                }
            }
        }
    };
    Ok(axum::response::Html(markup.into_string()).into_response())
}

fn grant_card(g: &BreakGlassGrant, now: i64, csrf: Option<&str>) -> Markup {
    let meaning = REASONS.iter().find(|(c, _)| *c == g.reason_code).map_or("", |(_, m)| m);
    html! {
        article id={ "grant-" (g.id) } class="grant" {
            h3 { (g.reason_code) " — " (meaning) }
            dl {
                dt { "Clinician" } dd { (g.actor) }
                dt { "Visit" } dd { a href={ "/workspace/visits/" (g.visit_id) } { (g.visit_id) } }
                dt { "Reason given" } dd class="reason" { (g.reason_text.expose()) }
                dt { "Granted" } dd { (when(g.granted_at)) }
                dt { "Expires" } dd { (when(g.expires_at)) @if now >= g.expires_at { " (expired)" } }
                dt { "Uses" } dd class="uses" { (g.uses) }
                dt { "Review" } dd class="review" { (g.review) }
                @if let Some(reviewer) = &g.reviewer {
                    dt { "Reviewer" } dd { (reviewer) }
                }
                @if let Some(note) = &g.review_note {
                    dt { "Note" } dd { (note.expose()) }
                }
            }
            @if g.review == "pending" {
                form method="post" action={ "/workspace/break-glass/" (g.id) "/review" } {
                    @if let Some(csrf) = csrf { input type="hidden" name="csrf_token" value=(csrf); }
                    label { "Note " textarea name="note" required maxlength="2000" {} }
                    button name="verdict" value="approved" { "Approve" }
                    " "
                    button name="verdict" value="flagged" { "Flag for follow-up" }
                }
            }
        }
    }
}

/// The review form: the API's rules, then back to the queue.
async fn form_review(
    state: State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let pairs = crate::launch::form(&body);
    let value = |name: &str| crate::launch::field(&pairs, name).unwrap_or_default();
    let json = serde_json::json!({ "verdict": value("verdict"), "note": value("note") });
    let _reviewed = review(state, caller, Path(id), json.to_string().into()).await?;
    Ok(axum::response::Redirect::to("/workspace/break-glass").into_response())
}
