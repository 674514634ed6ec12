//! The clinician's review of the drafted care plan in the workspace: each item with its evidence
//! beside it (the diagnosis, the order, the note's sentence, the chart resource, the public
//! source), what the chart ruled out and what the draft could not do; each item kept, reworded
//! or removed, new ones added; then signed. Once signed: the plan's tasks as the patient marks
//! them, and the portal links (send one, revoke one). HTML through maud, no script.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{Method, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{DOCTYPE, Markup, html};
use telechart_policy::Permission;
use telechart_scribe::care_plan::{Evidence, Section};

use crate::auth::{Access, Caller, Routes, SessionCaller};
use crate::care_plan::{DraftView, SignRequest, SignedItemInput, draft_view};
use crate::launch::form;
use crate::{ApiError, AppState};

pub(crate) fn routes() -> Routes {
    Routes::new()
        .add(Method::GET, "/workspace/visits/{id}/care-plan", Access::Requires(Permission::VisitRead), page)
        .add(Method::POST, "/workspace/visits/{id}/care-plan", Access::Requires(Permission::VisitNote), form_draft)
        .add(Method::POST, "/workspace/visits/{id}/care-plan/sign", Access::Requires(Permission::NoteSign), form_sign)
        .add(
            Method::POST,
            "/workspace/visits/{id}/care-plan/portal-link",
            Access::Requires(Permission::VisitNote),
            form_link,
        )
        .add(Method::GET, "/workspace/follow-ups", Access::Requires(Permission::VisitRead), follow_ups)
}

/// `GET /workspace/follow-ups`: the care team's list of follow-up tasks past due and not done,
/// longest overdue first, each linked to its visit; each is recorded once as an adherence event.
async fn follow_ups(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    let tasks = crate::portal::overdue_follow_ups(&state, &caller, ", workspace").await?;
    let day = |ms: Option<i64>| {
        ms.and_then(chrono::DateTime::from_timestamp_millis)
            .map(|d| d.format("%Y-%m-%d").to_string())
            .unwrap_or_default()
    };
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; title { "Telechart · overdue follow-ups" } style { (STYLE) } }
            body { main {
                h1 { "Overdue follow-ups" }
                @if tasks.is_empty() {
                    p id="no-overdue" { "No follow-up is past due." }
                } @else {
                    table id="overdue" {
                        thead { tr { th { "Due" } th { "Task" } th { "Visit" } } }
                        tbody { @for t in &tasks {
                            tr { td { (day(t.due_at)) } td { (t.text.expose()) }
                                 td { a href={ "/workspace/visits/" (t.visit_id) "/care-plan" } { (t.visit_id) } } }
                        } }
                    }
                }
            } }
        }
    };
    Ok(([(header::CONTENT_SECURITY_POLICY, CSP)], axum::response::Html(markup.into_string())).into_response())
}

const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'";
/// Rows offered for the clinician's own items.
const NEW_ROWS: usize = 2;
const SECTIONS: [(Section, &str); 7] = [
    (Section::Goal, "Goal"),
    (Section::FollowUp, "Follow-up"),
    (Section::Medication, "Medicine"),
    (Section::SelfMonitoring, "Self-monitoring"),
    (Section::Lifestyle, "Lifestyle"),
    (Section::CallUs, "Call us if"),
    (Section::Emergency, "Emergency"),
];

fn section_label(section: Section) -> &'static str {
    SECTIONS.iter().find(|(s, _)| *s == section).map_or("", |(_, l)| l)
}

fn section_by_code(code: &str) -> Option<Section> {
    serde_json::from_value(serde_json::Value::String(code.to_owned())).ok()
}

fn to_page(id: &str) -> Response {
    Redirect::to(&format!("/workspace/visits/{id}/care-plan")).into_response()
}

async fn form_draft(state: State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<Response, ApiError> {
    let _draft = crate::care_plan::draft(state, caller, Path(id.clone())).await?;
    Ok(to_page(&id))
}

/// "Sign": the kept items as reworded, in the draft's order, then the clinician's own.
async fn form_sign(
    state: State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let pairs = form(&body);
    let value = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim().to_owned());
    let draft_id = value("draft").ok_or_else(|| ApiError::invalid("draft", "which draft?"))?;
    let count: usize = value("items").and_then(|n| n.parse().ok()).unwrap_or(0);
    let mut items = Vec::new();
    for i in 0..count {
        if value(&format!("keep_{i}")).as_deref() == Some("on") {
            let text = value(&format!("text_{i}")).unwrap_or_default();
            items.push(SignedItemInput { from: Some(i), section: None, text });
        }
    }
    for k in 0..NEW_ROWS {
        let text = value(&format!("new_text_{k}")).unwrap_or_default();
        if text.is_empty() {
            continue;
        }
        let section = value(&format!("new_section_{k}")).as_deref().and_then(section_by_code);
        items.push(SignedItemInput { from: None, section, text });
    }
    let request = SignRequest { draft_id, items: Some(items), title: None, author: None };
    let body = serde_json::to_vec(&request).map_err(|e| ApiError::Internal(e.to_string()))?;
    let _signed = crate::care_plan::sign(state, caller, Path(id.clone()), body.into()).await?;
    Ok(to_page(&id))
}

async fn form_link(state: State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<Response, ApiError> {
    let _link = crate::portal::issue(state, caller, Path(id.clone()), Bytes::new()).await?;
    Ok(to_page(&id))
}

fn evidence(e: &Evidence) -> Markup {
    html! {
        @match e {
            Evidence::Diagnosis(a) => { "diagnosis " code { (a) } }
            Evidence::Order(a) => { "order " code { (a) } }
            Evidence::NoteSentence(n) => { "note sentence " (n + 1) }
            Evidence::Chart(r) => { "chart " code { (r) } }
            Evidence::Source(url) => { "source " a href=(url) rel="noreferrer" { (url) } }
            Evidence::Clinician(who) => { "added by " (who) }
        }
    }
}

async fn page(
    State(state): State<AppState>,
    caller: Caller,
    session: Option<SessionCaller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let visit = crate::api::load(&state, &caller, &id).await?;
    let now_ms = state.clock.now_ms();
    let entry = telechart_store::AuditEntry {
        tenant_id: caller.tenant_id.clone(),
        actor: caller.actor.clone(),
        action: "visit.read".into(),
        entity_type: "visit".into(),
        entity_id: id.clone(),
        visit_id: Some(id.clone()),
        phi: true,
        detail: "care-plan review".into(),
        purpose_of_use: Some("TREAT".into()),
        ..Default::default()
    };
    state.store.audit(&entry, now_ms).await?;
    let draft = match state.store.latest_care_plan_draft(&caller.tenant_id, &visit.id).await? {
        Some(row) => Some(draft_view(&row)?),
        None => None,
    };
    let tasks = state.store.patient_tasks(&caller.tenant_id, &visit.id).await?;
    let links = state.store.portal_links_of_visit(&caller.tenant_id, &visit.id).await?;
    let csrf = session.map(|s| s.session.csrf_token);
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "Telechart · care plan" }
                style { (STYLE) }
            }
            body {
                main {
                    p { a href={ "/workspace/visits/" (id) } { "← back to the visit" } }
                    @match &draft {
                        None => {
                            h1 { "No care-plan draft yet" }
                            @if let Some(csrf) = &csrf {
                                form method="post" action={ "/workspace/visits/" (id) "/care-plan" } {
                                    input type="hidden" name="csrf_token" value=(csrf);
                                    button id="draft-care-plan" { "Draft the care plan from the visit and the chart" }
                                }
                            }
                        }
                        Some(d) => { (review(&id, d, csrf.as_deref())) }
                    }
                    @if !tasks.is_empty() {
                        h2 { "The patient's tasks" }
                        table id="tasks" {
                            thead { tr { th { "Task" } th { "Due" } th { "Done" } } }
                            tbody { @for t in &tasks {
                                tr { td { (t.text.expose()) }
                                     td { (t.due_at.and_then(chrono::DateTime::from_timestamp_millis).map(|d| d.format("%Y-%m-%d").to_string()).unwrap_or_default()) }
                                     td class="task-state" { @if t.done_at.is_some() { "done" } @else if t.due_at.is_some_and(|d| d < now_ms) { "overdue" } @else { "open" } } }
                            } }
                        }
                    }
                    @if draft.as_ref().is_some_and(|d| d.status == "signed") {
                        h2 { "Patient portal" }
                        ul id="portal-links" { @for l in &links { li { (l.id) ": " (l.state(now_ms)) } } }
                        @if let Some(csrf) = &csrf {
                            form method="post" action={ "/workspace/visits/" (id) "/care-plan/portal-link" } {
                                input type="hidden" name="csrf_token" value=(csrf);
                                button id="send-portal-link" { "Send the patient a portal link" }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(([(header::CONTENT_SECURITY_POLICY, CSP)], axum::response::Html(markup.into_string())).into_response())
}

fn review(visit_id: &str, d: &DraftView, csrf: Option<&str>) -> Markup {
    let signing = d.status == "draft" && csrf.is_some();
    html! {
        h1 { "Care plan " span id="care-plan-status" { (d.status) } }
        p class="meta" { "Version " (d.version) " · language " (d.draft.language) " · " (d.draft.items.len()) " items · drafted in " (format!("{:.2}", d.draft_ms)) " ms" }
        @if !d.draft.gaps.is_empty() {
            section id="gaps" { h2 { "What the draft could not do" } ul { @for g in &d.draft.gaps { li { (g) } } } }
        }
        @if !d.draft.conflicts.is_empty() {
            section id="conflicts" class="conflicts" {
                h2 { "Left out: the chart rules it out" }
                ul { @for c in &d.draft.conflicts {
                    li { b { (c.advice) } " — " (c.reason) " (" @for e in &c.evidence { (evidence(e)) " " } ")" }
                } }
            }
        }
        @if let Some(signed) = &d.signed {
            section id="signed-plan" {
                h2 { "Signed by " (d.signed_by.clone().unwrap_or_default()) }
                ul { @for item in &signed.items { li { b { (section_label(item.section)) ": " } (item.text) } } }
            }
        } @else {
            form method="post" action={ "/workspace/visits/" (visit_id) "/care-plan/sign" } {
                @if let Some(csrf) = csrf { input type="hidden" name="csrf_token" value=(csrf); }
                input type="hidden" name="draft" value=(d.id);
                input type="hidden" name="items" value=(d.draft.items.len());
                table id="items" {
                    thead { tr { th { "Keep" } th { "Item (as the patient will read it)" } th { "Evidence" } } }
                    tbody {
                        @for (i, item) in d.draft.items.iter().enumerate() {
                            tr class="item" {
                                td { input type="checkbox" name={ "keep_" (i) } id={ "keep-" (i) } checked aria-label={ "Keep item " (i + 1) }; }
                                td {
                                    label for={ "text-" (i) } class="section" { (section_label(item.section)) }
                                    textarea id={ "text-" (i) } name={ "text_" (i) } rows="2" { (item.text) }
                                    @if let Some(m) = &item.measure { div class="measure" { "Target: " (m) } }
                                }
                                td class="evidence" { ul { @for e in &item.evidence { li { (evidence(e)) } } } }
                            }
                        }
                        @for k in 0..NEW_ROWS {
                            tr class="new-item" {
                                td {
                                    label for={ "new-section-" (k) } { "Add" }
                                    select id={ "new-section-" (k) } name={ "new_section_" (k) } {
                                        @for (s, label) in SECTIONS { option value=(serde_json::to_value(s).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()) { (label) } }
                                    }
                                }
                                td { label for={ "new-text-" (k) } class="section" { "Your own item" }
                                     textarea id={ "new-text-" (k) } name={ "new_text_" (k) } rows="2" {} }
                                td { "added by you, on your signature" }
                            }
                        }
                    }
                }
                @if signing { button id="sign-care-plan" { "Sign the care plan and summary" } }
            }
        }
        section id="summary-preview" {
            h2 { "After-visit summary (as the patient reads it)" }
            (crate::avs::sections(&d.after_visit_summary))
        }
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5rem;max-width:90rem}\
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ccc;padding:.4rem;vertical-align:top;text-align:left}\
textarea{width:100%;font:inherit}.section{font-weight:600;display:block}.evidence{font-size:.9rem;color:#333}\
.conflicts{background:#fde2e2;padding:.5rem 1rem}.meta{color:#555}.measure{color:#333}";
