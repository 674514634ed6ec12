//! The patient portal: after the visit, the patient opens a link the platform sent them (no
//! account needed) and sees their after-visit summary, their care plan's tasks (which they can
//! mark done — the care team sees it), upcoming follow-ups and the consent forms they signed, in
//! their language, in large text on one column. Every view and action is audited.
//!
//! The link is single-use and expiring: opening it spends it and starts a short portal session
//! (an HttpOnly, SameSite=Strict cookie scoped to `/portal`); a second open, an expired link or
//! a revoked one is refused with a page that says so. Revoking a link ends its session too.
//! Care-team side: issue (sent through the platform webhook `portal.link-issued`), list and
//! revoke links; read the visit's tasks and the tenant's overdue follow-ups.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};
use serde::{Deserialize, Serialize};
use telechart_policy::Permission;
use telechart_scribe::care_plan::CarePlanDraft;
use telechart_store::{AuditEntry, PatientTask, PortalLink, PortalRefusal, VisitRow};
use telechart_visit::{Artifact, DocumentKind};

use crate::api::{load, parse};
use crate::auth::{Access, Caller, Routes};
use crate::avs::{self, PATIENT_STYLE};
use crate::{ApiError, AppState};

pub(crate) fn routes() -> Routes {
    Routes::new()
        .add(Method::POST, "/api/v1/visits/{id}/portal-links", Access::Requires(Permission::VisitNote), issue)
        .add(Method::GET, "/api/v1/visits/{id}/portal-links", Access::Requires(Permission::VisitRead), list)
        .add(
            Method::POST,
            "/api/v1/visits/{id}/portal-links/{link}/revoke",
            Access::Requires(Permission::VisitNote),
            revoke,
        )
        .add(Method::GET, "/api/v1/visits/{id}/tasks", Access::Requires(Permission::VisitRead), visit_tasks)
        .add(Method::GET, "/api/v1/follow-ups/overdue", Access::Requires(Permission::VisitRead), overdue)
        .add(Method::GET, "/portal/open/{token}", Access::SignIn, open)
        .add(Method::GET, "/portal", Access::SignIn, home)
        .add(Method::POST, "/portal/tasks/{task}", Access::SignIn, mark_task)
        .add(Method::GET, "/portal/summary.pdf", Access::SignIn, summary_pdf)
}

const PORTAL_COOKIE: &str = "telechart_portal";
/// How long a portal session lasts after the link is opened.
const SESSION_MINUTES: i64 = 60;
const DEFAULT_LINK_HOURS: i64 = 72;
const MAX_LINK_HOURS: i64 = 720;
const CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// A PHI access to one visit under the treatment purpose (the portal's and the care plan's).
pub(crate) fn audit(actor: &str, tenant_id: &str, action: &str, visit_id: &str, detail: String) -> AuditEntry {
    AuditEntry {
        tenant_id: tenant_id.to_owned(),
        actor: actor.to_owned(),
        action: action.into(),
        entity_type: "visit".into(),
        entity_id: visit_id.into(),
        visit_id: Some(visit_id.into()),
        phi: true,
        detail,
        purpose_of_use: Some("TREAT".into()),
        ..AuditEntry::default()
    }
}

fn random_secret() -> Result<String, ApiError> {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| ApiError::Internal("no randomness for a portal secret".into()))?;
    Ok(base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes))
}

fn millis(ms: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms)
}

// ---- care team -------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct IssueLink {
    #[serde(default)]
    expires_in_hours: Option<i64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LinkView {
    id: String,
    visit: String,
    language: String,
    /// `open`, `in-use`, `used`, `revoked` or `expired`.
    state: &'static str,
    created_at: Option<DateTime<Utc>>,
    expires_at: Option<DateTime<Utc>>,
    opened_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
    /// The link itself: only in the reply that issues it (it is also sent to the platforms).
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
}

fn link_view(link: &PortalLink, now_ms: i64, url: Option<String>) -> LinkView {
    LinkView {
        id: link.id.clone(),
        visit: link.visit_id.clone(),
        language: link.language.clone(),
        state: link.state(now_ms),
        created_at: millis(link.created_at),
        expires_at: millis(link.expires_at),
        opened_at: link.spent_at.and_then(millis),
        revoked_at: link.revoked_at.and_then(millis),
        url,
    }
}

/// `POST /api/v1/visits/{id}/portal-links`: a new link to the visit's signed plan, sent to the
/// platforms in the same transaction as it is kept.
pub(crate) async fn issue(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<LinkView>), ApiError> {
    let request: IssueLink = if body.is_empty() { IssueLink { expires_in_hours: None } } else { parse(&body)? };
    let hours = request.expires_in_hours.unwrap_or(DEFAULT_LINK_HOURS);
    if !(1..=MAX_LINK_HOURS).contains(&hours) {
        return Err(ApiError::invalid("expiresInHours", format!("must be 1 to {MAX_LINK_HOURS}")));
    }
    let visit = load(&state, &caller, &id).await?;
    let plan = state
        .store
        .latest_care_plan_draft(&caller.tenant_id, &visit.id)
        .await?
        .filter(|d| d.status == "signed")
        .ok_or_else(|| ApiError::Conflict {
            field: None,
            message: format!("visit {id} has no signed care plan yet: sign it before sending the patient a link"),
        })?;
    let now_ms = state.clock.now_ms();
    let link = PortalLink {
        tenant_id: caller.tenant_id.clone(),
        id: uuid::Uuid::now_v7().to_string(),
        visit_id: visit.id.clone(),
        language: plan.language.clone(),
        created_by: caller.actor.clone(),
        created_at: now_ms,
        expires_at: now_ms + hours * 3_600_000,
        spent_at: None,
        session_expires_at: None,
        revoked_at: None,
        revoked_by: None,
    };
    let token = random_secret()?;
    let path = format!("/portal/open/{token}");
    let url = match &state.public_url {
        Some(base) => format!("{}{path}", base.trim_end_matches('/')),
        None => path,
    };
    let event = serde_json::json!({
        "id": uuid::Uuid::now_v7().to_string(),
        "type": "portal.link-issued",
        "occurredAt": telechart_visit::format_instant(state.clock.now()),
        "data": {"visitId": visit.id, "appointment": format!("Appointment/{}", visit.appointment_id),
                 "linkId": link.id, "url": url, "language": link.language,
                 "expiresAt": millis(link.expires_at).map(telechart_visit::format_instant)},
    });
    let webhooks = state.platforms.webhooks_for(&caller.tenant_id, "portal.link-issued", &event);
    let entry = audit(
        &caller.actor,
        &caller.tenant_id,
        "portal.link.issue",
        &visit.id,
        format!("link {} ({}) for {hours} h, sent to {} platform(s)", link.id, link.language, webhooks.len()),
    );
    state.store.create_portal_link(&link, &token, &webhooks, &entry).await?;
    Ok((StatusCode::CREATED, Json(link_view(&link, now_ms, Some(url)))))
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Vec<LinkView>>, ApiError> {
    let visit = load(&state, &caller, &id).await?;
    let now_ms = state.clock.now_ms();
    let links = state.store.portal_links_of_visit(&caller.tenant_id, &visit.id).await?;
    Ok(Json(links.iter().map(|l| link_view(l, now_ms, None)).collect()))
}

async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, link_id)): Path<(String, String)>,
) -> Result<Json<LinkView>, ApiError> {
    let visit = load(&state, &caller, &id).await?;
    let now_ms = state.clock.now_ms();
    let entry = audit(&caller.actor, &caller.tenant_id, "portal.link.revoke", &visit.id, format!("link {link_id}"));
    state.store.revoke_portal_link(&caller.tenant_id, &visit.id, &link_id, &caller.actor, &entry, now_ms).await?;
    let links = state.store.portal_links_of_visit(&caller.tenant_id, &visit.id).await?;
    let link = links
        .iter()
        .find(|l| l.id == link_id)
        .ok_or_else(|| ApiError::Internal(format!("portal link {link_id} vanished after its revocation")))?;
    Ok(Json(link_view(link, now_ms, None)))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TaskView {
    id: String,
    visit: String,
    section: String,
    text: String,
    due_at: Option<DateTime<Utc>>,
    done_at: Option<DateTime<Utc>>,
    /// `patient` (through the portal) or the care-team member who marked it.
    done_by: Option<String>,
    overdue: bool,
}

fn task_view(t: &PatientTask, now_ms: i64) -> TaskView {
    TaskView {
        id: t.id.clone(),
        visit: t.visit_id.clone(),
        section: t.section.clone(),
        text: t.text.expose().to_owned(),
        due_at: t.due_at.and_then(millis),
        done_at: t.done_at.and_then(millis),
        done_by: t
            .done_by
            .as_ref()
            .map(|d| if d.starts_with("patient-portal:") { "patient".into() } else { d.clone() }),
        overdue: t.done_at.is_none() && t.due_at.is_some_and(|d| d < now_ms),
    }
}

/// `GET /api/v1/visits/{id}/tasks`: the signed plan's tasks and which the patient has done.
async fn visit_tasks(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Vec<TaskView>>, ApiError> {
    let visit = load(&state, &caller, &id).await?;
    let now_ms = state.clock.now_ms();
    let entry = audit(&caller.actor, &caller.tenant_id, "visit.read", &visit.id, "care-plan tasks".into());
    state.store.audit(&entry, now_ms).await?;
    let tasks = state.store.patient_tasks(&caller.tenant_id, &visit.id).await?;
    Ok(Json(tasks.iter().map(|t| task_view(t, now_ms)).collect()))
}

/// `GET /api/v1/follow-ups/overdue`: open tasks past due across the tenant, the longest overdue
/// first; each is recorded once as a `follow-up-overdue` adherence event.
async fn overdue(State(state): State<AppState>, caller: Caller) -> Result<Json<Vec<TaskView>>, ApiError> {
    let tasks = overdue_follow_ups(&state, &caller, "").await?;
    let now_ms = state.clock.now_ms();
    Ok(Json(tasks.iter().map(|t| task_view(t, now_ms)).collect()))
}

/// The tenant's open tasks past due, longest overdue first, each recorded once as a
/// `follow-up-overdue` event; the read audited (`via` says where it was shown).
pub(crate) async fn overdue_follow_ups(
    state: &AppState,
    caller: &Caller,
    via: &str,
) -> Result<Vec<PatientTask>, ApiError> {
    let now_ms = state.clock.now_ms();
    state.store.record_overdue_follow_ups(&caller.tenant_id, now_ms).await?;
    let tasks = state.store.overdue_tasks(&caller.tenant_id, now_ms, 500).await?;
    let entry = AuditEntry {
        tenant_id: caller.tenant_id.clone(),
        actor: caller.actor.clone(),
        action: "follow-ups.overdue.read".into(),
        entity_type: "tenant".into(),
        entity_id: caller.tenant_id.clone(),
        phi: !tasks.is_empty(),
        detail: format!("{} overdue task(s){via}", tasks.len()),
        purpose_of_use: Some("TREAT".into()),
        ..AuditEntry::default()
    };
    state.store.audit(&entry, now_ms).await?;
    Ok(tasks)
}

// ---- the patient's pages ---------------------------------------------------------------------

struct Words {
    lang: &'static str,
    portal: &'static str,
    tasks: &'static str,
    tasks_help: &'static str,
    mark_done: &'static str,
    done: &'static str,
    undo: &'static str,
    due: &'static str,
    follow_ups: &'static str,
    no_follow_ups: &'static str,
    consents: &'static str,
    no_consents: &'static str,
    signed_on: &'static str,
    pdf: &'static str,
    closed: &'static str,
    unknown: &'static str,
    session_over: &'static str,
    saved: &'static str,
}

const ENGLISH: Words = Words {
    lang: "en",
    portal: "Your visit",
    tasks: "Your to-do list",
    tasks_help: "Mark each one when you have done it. Your care team will see it.",
    mark_done: "Mark as done",
    done: "Done",
    undo: "Undo",
    due: "By",
    follow_ups: "Coming up",
    no_follow_ups: "No follow-up visit has a date yet.",
    consents: "Forms you signed",
    no_consents: "You have not signed any forms for this visit.",
    signed_on: "Signed on",
    pdf: "Download this summary (PDF)",
    closed: "This link can no longer be used. It was used already, has expired or was turned off. Please ask your care team for a new one.",
    unknown: "We could not find this link. Please check it, or ask your care team for a new one.",
    session_over: "Your time on this page is over. Please open a new link from your care team.",
    saved: "Saved. Your care team can see it.",
};

const SPANISH: Words = Words {
    lang: "es",
    portal: "Su visita",
    tasks: "Sus tareas",
    tasks_help: "Marque cada una cuando la haga. Su equipo de atención lo verá.",
    mark_done: "Marcar como hecha",
    done: "Hecha",
    undo: "Deshacer",
    due: "Antes del",
    follow_ups: "Próximas citas",
    no_follow_ups: "Ninguna cita de control tiene fecha todavía.",
    consents: "Formularios que firmó",
    no_consents: "No firmó formularios para esta visita.",
    signed_on: "Firmado el",
    pdf: "Descargar este resumen (PDF)",
    closed: "Este enlace ya no se puede usar. Ya se usó, venció o fue desactivado. Pida uno nuevo a su equipo de atención.",
    unknown: "No encontramos este enlace. Revíselo o pida uno nuevo a su equipo de atención.",
    session_over: "Su tiempo en esta página terminó. Abra un enlace nuevo de su equipo de atención.",
    saved: "Guardado. Su equipo de atención puede verlo.",
};

fn words(language: &str) -> &'static Words {
    if language == "es" || language.starts_with("es-") { &SPANISH } else { &ENGLISH }
}

fn page(words: &Words, title: &str, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang=(words.lang) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                style { (PATIENT_STYLE) }
            }
            body { main { (content) } }
        }
    }
}

fn respond(status: StatusCode, markup: Markup) -> Response {
    (status, [(header::CONTENT_SECURITY_POLICY, CSP)], axum::response::Html(markup.into_string())).into_response()
}

/// A refusal page in the link's language, or in both where the link is unknown.
fn message(status: StatusCode, words: &Words, text: &str) -> Response {
    respond(
        status,
        page(words, words.portal, html! { h1 { (words.portal) } p id="portal-message" role="alert" { (text) } }),
    )
}

fn unknown_link() -> Response {
    let both = html! {
        h1 { (ENGLISH.portal) }
        p id="portal-message" role="alert" { (ENGLISH.unknown) }
        p lang="es" { (SPANISH.unknown) }
    };
    respond(StatusCode::NOT_FOUND, page(&ENGLISH, ENGLISH.portal, both))
}

fn actor(link: &PortalLink) -> String {
    format!("patient-portal:{}", link.id)
}

/// The session's own anti-forgery value: a digest of its secret (the form proves the page came
/// from this session; the cookie alone does not, though SameSite=Strict already stops most).
fn form_token(secret: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, format!("portal-form:{secret}").as_bytes());
    digest.as_ref().iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// `GET /portal/open/{token}`: spends the link and starts the session.
async fn open(State(state): State<AppState>, Path(token): Path<String>) -> Result<Response, ApiError> {
    let now_ms = state.clock.now_ms();
    let secret = random_secret()?;
    let link = match state.store.open_portal_link(&token, &secret, now_ms + SESSION_MINUTES * 60_000, now_ms).await? {
        Ok(link) => link,
        Err(PortalRefusal::Unknown) => return Ok(unknown_link()),
        Err(refusal) => {
            tracing::info!(?refusal, "portal link refused");
            return Ok(refused_in_both());
        }
    };
    let entry = audit(&actor(&link), &link.tenant_id, "portal.open", &link.visit_id, format!("link {}", link.id));
    state.store.audit(&entry, now_ms).await?;
    let secure = if state.sessions.secure_cookies { "; Secure" } else { "" };
    let cookie = format!(
        "{PORTAL_COOKIE}={secret}; Path=/portal; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        SESSION_MINUTES * 60
    );
    let mut response = Redirect::to("/portal").into_response();
    crate::login::set_cookie(&mut response, &cookie);
    Ok(response)
}

/// A used, expired or revoked link: said in English and Spanish (the link's language is not
/// looked up for a link that no longer opens).
fn refused_in_both() -> Response {
    let both = html! {
        h1 { (ENGLISH.portal) }
        p id="portal-message" role="alert" { (ENGLISH.closed) }
        p lang="es" { (SPANISH.closed) }
    };
    respond(StatusCode::GONE, page(&ENGLISH, ENGLISH.portal, both))
}

/// The session's link and visit, or the page to show instead.
async fn session(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Result<(PortalLink, VisitRow, String), Response>, ApiError> {
    let Some(secret) = crate::login::cookie_named(headers, PORTAL_COOKIE) else {
        return Ok(Err(message(StatusCode::UNAUTHORIZED, &ENGLISH, ENGLISH.session_over)));
    };
    let Some(link) = state.store.portal_session(&secret, state.clock.now_ms()).await? else {
        return Ok(Err(message(StatusCode::UNAUTHORIZED, &ENGLISH, ENGLISH.session_over)));
    };
    let visit = state
        .store
        .visit(&link.tenant_id, &link.visit_id)
        .await?
        .ok_or_else(|| ApiError::Internal(format!("portal link {} names a missing visit", link.id)))?;
    Ok(Ok((link, visit, secret)))
}

/// The visit's signed plan.
async fn signed_plan(state: &AppState, link: &PortalLink) -> Result<CarePlanDraft, ApiError> {
    let row = state
        .store
        .latest_care_plan_draft(&link.tenant_id, &link.visit_id)
        .await?
        .filter(|d| d.status == "signed")
        .ok_or_else(|| ApiError::Internal(format!("portal link {} has no signed plan behind it", link.id)))?;
    crate::care_plan::draft_view(&row)?
        .signed
        .ok_or_else(|| ApiError::Internal(format!("signed care-plan draft {} keeps no signed plan", row.id)))
}

struct ConsentForm {
    title: String,
    signed: DateTime<Utc>,
    text: Option<String>,
}

async fn consent_forms(state: &AppState, visit: &VisitRow) -> Result<Vec<ConsentForm>, ApiError> {
    let mut forms = Vec::new();
    for row in state.store.artifacts(&visit.tenant_id, &visit.id).await? {
        let Ok(Artifact::Document(doc)) = serde_json::from_str::<Artifact>(row.payload.expose()) else { continue };
        if doc.kind != DocumentKind::ConsentForm {
            continue;
        }
        let text = doc
            .content_type
            .starts_with("text/")
            .then(|| base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &doc.data).ok())
            .flatten()
            .and_then(|b| String::from_utf8(b).ok());
        forms.push(ConsentForm { title: doc.title, signed: doc.created_at, text });
    }
    Ok(forms)
}

fn date(words: &Words, ms: i64) -> String {
    let Some(at) = millis(ms) else { return String::new() };
    if words.lang == "es" { at.format("%d/%m/%Y").to_string() } else { at.format("%B %-d, %Y").to_string() }
}

/// `GET /portal`: the summary, the tasks, the follow-ups and the consent forms.
async fn home(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let (link, visit, secret) = match session(&state, &headers).await? {
        Ok(s) => s,
        Err(page) => return Ok(page),
    };
    let words = words(&link.language);
    let plan = signed_plan(&state, &link).await?;
    let tasks = state.store.patient_tasks(&link.tenant_id, &visit.id).await?;
    let forms = consent_forms(&state, &visit).await?;
    let entry = audit(
        &actor(&link),
        &link.tenant_id,
        "portal.view",
        &visit.id,
        format!("summary, {} tasks, {} consent forms", tasks.len(), forms.len()),
    );
    state.store.audit(&entry, state.clock.now_ms()).await?;
    // Back from marking a task: say it was kept.
    let saved = query.as_deref() == Some("saved");
    let summary_words = avs::words(&plan.language);
    let token = form_token(&secret);
    let follow_ups: Vec<&PatientTask> = tasks.iter().filter(|t| t.due_at.is_some() && t.done_at.is_none()).collect();
    let content = html! {
        h1 { (summary_words.title) }
        p { (summary_words.intro) }
        p { a href="/portal/summary.pdf" { (words.pdf) } }
        (avs::sections(&plan.after_visit_summary()))
        section aria-labelledby="tasks-heading" {
            h2 id="tasks-heading" { (words.tasks) }
            p { (words.tasks_help) }
            @if saved { p role="status" { (words.saved) } }
            ul class="tasks" {
                @for task in &tasks {
                    li id={ "task-" (task.id) } {
                        form method="post" action={ "/portal/tasks/" (task.id) } {
                            input type="hidden" name="form_token" value=(token);
                            @if task.done_at.is_some() {
                                span class="task-done" { "✓ " (words.done) ": " }
                                (task.text.expose()) " "
                                input type="hidden" name="done" value="no";
                                button type="submit" aria-label={ (words.undo) ": " (task.text.expose()) } { (words.undo) }
                            } @else {
                                (task.text.expose())
                                @if let Some(due) = task.due_at { " (" (words.due) " " (date(words, due)) ")" }
                                " "
                                input type="hidden" name="done" value="yes";
                                button type="submit" class="mark-done" aria-label={ (words.mark_done) ": " (task.text.expose()) } { (words.mark_done) }
                            }
                        }
                    }
                }
            }
        }
        section aria-labelledby="follow-ups-heading" {
            h2 id="follow-ups-heading" { (words.follow_ups) }
            @if follow_ups.is_empty() {
                p { (words.no_follow_ups) }
            } @else {
                ul { @for task in &follow_ups {
                    li { (task.text.expose()) " — " (words.due) " " (task.due_at.map(|d| date(words, d)).unwrap_or_default()) }
                } }
            }
        }
        section aria-labelledby="consents-heading" {
            h2 id="consents-heading" { (words.consents) }
            @if forms.is_empty() {
                p { (words.no_consents) }
            } @else {
                ul { @for form in &forms {
                    li {
                        @if let Some(text) = &form.text {
                            details {
                                summary { (form.title) " — " (words.signed_on) " " (date(words, form.signed.timestamp_millis())) }
                                pre style="white-space:pre-wrap;font-family:inherit" { (text) }
                            }
                        } @else {
                            (form.title) " — " (words.signed_on) " " (date(words, form.signed.timestamp_millis()))
                        }
                    }
                } }
            }
        }
    };
    Ok(respond(StatusCode::OK, page(words, words.portal, content)))
}

/// `POST /portal/tasks/{task}`: the patient marks a task done (or undoes it).
async fn mark_task(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(task_id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let (link, visit, secret) = match session(&state, &headers).await? {
        Ok(s) => s,
        Err(page) => return Ok(page),
    };
    let words = words(&link.language);
    let pairs = crate::launch::form(&body);
    let field = |name: &str| crate::launch::field(&pairs, name);
    if field("form_token") != Some(form_token(&secret).as_str()) {
        return Ok(message(StatusCode::FORBIDDEN, words, words.session_over));
    }
    let done = match field("done") {
        Some("yes") => true,
        Some("no") => false,
        _ => return Err(ApiError::invalid("done", "yes or no")),
    };
    let entry = audit(
        &actor(&link),
        &link.tenant_id,
        if done { "portal.task.done" } else { "portal.task.undone" },
        &visit.id,
        format!("task {task_id}"),
    );
    match state.store.set_task_done(&link.tenant_id, &visit.id, &task_id, done, &entry, state.clock.now_ms()).await {
        Ok(_) => Ok(Redirect::to(&format!("/portal?saved#task-{task_id}")).into_response()),
        Err(telechart_store::StoreError::NotFound { .. }) => {
            Ok(message(StatusCode::NOT_FOUND, words, words.session_over))
        }
        Err(e) => Err(e.into()),
    }
}

/// `GET /portal/summary.pdf`: the summary as PDF, in the patient's language.
async fn summary_pdf(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let (link, visit, _) = match session(&state, &headers).await? {
        Ok(s) => s,
        Err(page) => return Ok(page),
    };
    let plan = signed_plan(&state, &link).await?;
    let entry = audit(&actor(&link), &link.tenant_id, "portal.summary.pdf", &visit.id, format!("link {}", link.id));
    state.store.audit(&entry, state.clock.now_ms()).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/pdf"),
            (header::CONTENT_DISPOSITION, "inline; filename=\"after-visit-summary.pdf\""),
        ],
        avs::pdf(&plan),
    )
        .into_response())
}
