//! E-consent capture: the tenant's versioned consent texts, and single-use, expiring links
//! through which the patient reads one and signs (or declines) it without an account — on their
//! own device, or on the clinician's from the workspace. Signing records, in one transaction,
//! the signed form (a consent-form DocumentReference citing the text's version and SHA-256),
//! the Consent the gate reads and the EHR receives, and the link's spending.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};
use serde::{Deserialize, Serialize};
use telechart_policy::Permission;
use telechart_policy::consent::Outcome;
use telechart_policy::governed::ConsentCategory;
use telechart_store::{AuditEntry, ConsentLink, ConsentText, VisitRow};
use telechart_visit::{Artifact, DocumentInput, DocumentKind, VisitState};

use crate::api::{load_with_state, parse};
use crate::auth::{Access, Caller, Routes};
use crate::{ApiError, AppState};

/// How long a link stays open unless the request says otherwise.
const DEFAULT_LINK_MINUTES: i64 = 30;
/// The longest a link may be asked to stay open: a week, for links sent ahead of the visit.
const MAX_LINK_MINUTES: i64 = 7 * 24 * 60;
const MAX_TEXT_BYTES: usize = 64 * 1024;

pub(crate) fn routes() -> Routes {
    Routes::new()
        .add(Method::POST, "/api/v1/consent-texts", Access::Requires(Permission::ConsentTextPublish), publish_text)
        .add(Method::GET, "/api/v1/consent-texts", Access::Requires(Permission::VisitRead), list_texts)
        .add(
            Method::POST,
            "/api/v1/visits/{id}/consent-links",
            Access::Requires(Permission::VisitDocument),
            create_link,
        )
        .add(Method::GET, "/api/v1/visits/{id}/consent-links", Access::Requires(Permission::VisitRead), list_links)
        .add(
            Method::POST,
            "/api/v1/visits/{id}/consent-links/{link}/revoke",
            Access::Requires(Permission::VisitDocument),
            revoke_link,
        )
        // The token in the path is the patient's only credential: single-use, expiring.
        .add(Method::GET, "/consent/{token}", Access::Public, signing_page)
        .add(Method::POST, "/consent/{token}", Access::Public, sign)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PublishText {
    category: String,
    version: String,
    /// BCP 47 tag: `en`, `es`, `es-MX`, …
    language: String,
    title: String,
    body: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TextView {
    category: String,
    version: String,
    language: String,
    title: String,
    body: String,
    sha256: String,
    published_by: String,
    published_at: Option<DateTime<Utc>>,
}

fn text_view(t: ConsentText) -> TextView {
    TextView {
        published_at: DateTime::from_timestamp_millis(t.published_at),
        category: t.category,
        version: t.version,
        language: t.language,
        title: t.title,
        body: t.body,
        sha256: t.sha256,
        published_by: t.published_by,
    }
}

fn category(value: &str) -> Result<ConsentCategory, ApiError> {
    ConsentCategory::parse(value)
        .ok_or_else(|| ApiError::invalid("category", "must be one of telehealth, recording-ai, disclosure, research"))
}

fn is_language_tag(tag: &str) -> bool {
    let mut parts = tag.split('-');
    let primary = parts.next().unwrap_or_default();
    (2..=3).contains(&primary.len())
        && primary.bytes().all(|b| b.is_ascii_lowercase())
        && parts.all(|p| (2..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// `POST /api/v1/consent-texts`: publishes a version of a consent text. Versions are immutable:
/// the same words again are accepted (200), other words under a published version are a 409.
async fn publish_text(
    State(state): State<AppState>,
    caller: Caller,
    body: Bytes,
) -> Result<(StatusCode, Json<TextView>), ApiError> {
    let request: PublishText = parse(&body)?;
    let category = category(&request.category)?;
    let version = request.version.trim();
    if version.is_empty()
        || version.len() > 64
        || !version.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return Err(ApiError::invalid("version", "must be 1 to 64 letters, digits, '.', '_' or '-'"));
    }
    if !is_language_tag(&request.language) {
        return Err(ApiError::invalid("language", "must be a BCP 47 tag such as en, es or es-MX"));
    }
    let title = request.title.trim();
    if title.is_empty() || title.len() > 200 || title.contains(['\n', '\r']) {
        return Err(ApiError::invalid("title", "must be one line of 1 to 200 characters"));
    }
    let text_body = request.body.trim();
    if text_body.is_empty() || text_body.len() > MAX_TEXT_BYTES {
        return Err(ApiError::invalid("body", format!("must be 1 to {MAX_TEXT_BYTES} bytes")));
    }
    let text = ConsentText {
        tenant_id: caller.tenant_id.clone(),
        category: category.code().to_owned(),
        version: version.to_owned(),
        language: request.language.clone(),
        title: title.to_owned(),
        body: text_body.to_owned(),
        sha256: ConsentText::digest(title, text_body),
        published_by: caller.actor.clone(),
        published_at: state.clock.now_ms(),
    };
    let entry = AuditEntry {
        tenant_id: caller.tenant_id.clone(),
        actor: caller.actor.clone(),
        action: "consent.text.publish".into(),
        entity_type: "consent-text".into(),
        entity_id: format!("{}/{}/{}", text.category, text.version, text.language),
        phi: false,
        detail: format!("SHA-256 {}", text.sha256),
        ..AuditEntry::default()
    };
    let created = state.store.publish_consent_text(&text, &entry).await.map_err(|e| match e {
        telechart_store::StoreError::Conflict(message) => ApiError::Conflict { field: Some("body".into()), message },
        other => other.into(),
    })?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(text_view(text))))
}

/// `GET /api/v1/consent-texts`: every published version, oldest first (the history of what
/// patients were given to read).
async fn list_texts(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<Json<Vec<TextView>>, ApiError> {
    // Parsed here so that a bad query is an OperationOutcome like every other refusal.
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.as_deref().unwrap_or_default())
        .map_err(|e| ApiError::Malformed(format!("query string: {e}")))?;
    let mut filter = None;
    for (name, value) in pairs {
        match name.as_str() {
            "category" if filter.is_none() => filter = Some(category(&value)?),
            "category" => return Err(ApiError::Malformed("query string: category given twice".into())),
            other => return Err(ApiError::Malformed(format!("query string: unknown parameter {other:?}"))),
        }
    }
    let category = filter;
    let texts = state.store.consent_texts(&caller.tenant_id, category.map(|c| c.code())).await?;
    Ok(Json(texts.into_iter().map(text_view).collect()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct CreateLink {
    category: String,
    /// Default `en`.
    #[serde(default)]
    language: Option<String>,
    /// Default 30; at most a week.
    #[serde(default)]
    expires_in_minutes: Option<i64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LinkView {
    id: String,
    category: String,
    text_version: String,
    language: String,
    created_by: String,
    created_at: Option<DateTime<Utc>>,
    expires_at: Option<DateTime<Utc>>,
    /// `open`, `used`, `revoked` or `expired`.
    state: String,
    /// Only in the answer that creates the link: the one copy of its token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) url: Option<String>,
}

impl LinkView {
    pub(crate) fn expires_at_text(&self) -> String {
        self.expires_at.map(telechart_visit::format_instant).unwrap_or_default()
    }
}

fn link_view(link: &ConsentLink, now_ms: i64, url: Option<String>) -> LinkView {
    LinkView {
        id: link.id.clone(),
        category: link.category.clone(),
        text_version: link.text_version.clone(),
        language: link.language.clone(),
        created_by: link.created_by.clone(),
        created_at: DateTime::from_timestamp_millis(link.created_at),
        expires_at: DateTime::from_timestamp_millis(link.expires_at),
        state: link.state(now_ms).to_owned(),
        url,
    }
}

fn link_audit(caller: &Caller, action: &str, visit: &VisitRow, link_id: &str, detail: String) -> AuditEntry {
    AuditEntry {
        tenant_id: caller.tenant_id.clone(),
        actor: caller.actor.clone(),
        action: action.into(),
        entity_type: "consent-link".into(),
        entity_id: link_id.to_owned(),
        visit_id: Some(visit.id.clone()),
        phi: true,
        detail,
        patient: Some(visit.patient.expose().to_owned()),
        purpose_of_use: Some("TREAT".into()),
        ..AuditEntry::default()
    }
}

/// `POST /api/v1/visits/{id}/consent-links`: a signing link for the current text of one
/// category, in the patient's language. The answer carries the URL once; only its hash is kept.
pub(crate) async fn create_link(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<LinkView>), ApiError> {
    let request: CreateLink = parse(&body)?;
    let category = category(&request.category)?;
    let language = request.language.unwrap_or_else(|| "en".to_owned());
    if !is_language_tag(&language) {
        return Err(ApiError::invalid("language", "must be a BCP 47 tag such as en, es or es-MX"));
    }
    let minutes = request.expires_in_minutes.unwrap_or(DEFAULT_LINK_MINUTES);
    if !(1..=MAX_LINK_MINUTES).contains(&minutes) {
        return Err(ApiError::invalid("expiresInMinutes", format!("must be 1 to {MAX_LINK_MINUTES}")));
    }
    let (visit, current) = load_with_state(&state, &caller, &id).await?;
    if !matches!(current, VisitState::Booked | VisitState::Arrived | VisitState::InProgress) {
        return Err(ApiError::Conflict {
            field: None,
            message: format!("visit {} is {current}: consent is asked before or during a visit", visit.id),
        });
    }
    let Some(text) = state.store.current_consent_text(&caller.tenant_id, category.code(), &language).await? else {
        let published: Vec<String> = state
            .store
            .consent_texts(&caller.tenant_id, Some(category.code()))
            .await?
            .into_iter()
            .map(|t| t.language)
            .collect();
        return Err(ApiError::invalid(
            "language",
            format!(
                "no {} consent text is published in {language:?} (published: {}); publish one at /api/v1/consent-texts",
                category.code(),
                if published.is_empty() { "none".to_owned() } else { published.join(", ") }
            ),
        ));
    };
    let now_ms = state.clock.now_ms();
    let link = ConsentLink {
        tenant_id: caller.tenant_id.clone(),
        id: uuid::Uuid::now_v7().to_string(),
        visit_id: visit.id.clone(),
        category: text.category.clone(),
        text_version: text.version.clone(),
        language: text.language.clone(),
        created_by: caller.actor.clone(),
        created_at: now_ms,
        expires_at: now_ms + minutes * 60_000,
        used_at: None,
        revoked_at: None,
    };
    let detail = format!("{} text {} ({}) for {minutes} min", link.category, link.text_version, link.language);
    let entry = link_audit(&caller, "consent.link.create", &visit, &link.id, detail);
    let token = state.store.create_consent_link(&link, &entry).await?;
    let path = format!("/consent/{token}");
    let url = match &state.public_url {
        Some(base) => format!("{}{path}", base.trim_end_matches('/')),
        None => path,
    };
    Ok((StatusCode::CREATED, Json(link_view(&link, now_ms, Some(url)))))
}

async fn list_links(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Vec<LinkView>>, ApiError> {
    let (visit, _) = load_with_state(&state, &caller, &id).await?;
    let now_ms = state.clock.now_ms();
    let links = state.store.consent_links_of_visit(&caller.tenant_id, &visit.id).await?;
    Ok(Json(links.iter().map(|l| link_view(l, now_ms, None)).collect()))
}

async fn revoke_link(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, link_id)): Path<(String, String)>,
) -> Result<Json<LinkView>, ApiError> {
    let (visit, _) = load_with_state(&state, &caller, &id).await?;
    let now_ms = state.clock.now_ms();
    let entry = link_audit(&caller, "consent.link.revoke", &visit, &link_id, String::new());
    let revoked = state.store.revoke_consent_link(&caller.tenant_id, &visit.id, &link_id, &entry, now_ms).await?;
    let links = state.store.consent_links_of_visit(&caller.tenant_id, &visit.id).await?;
    let link = links
        .iter()
        .find(|l| l.id == link_id)
        .ok_or_else(|| ApiError::NotFound { field: None, message: format!("consent link {link_id} not found") })?;
    if !revoked {
        return Err(ApiError::Conflict {
            field: None,
            message: format!("consent link {link_id} is {} already", link.state(now_ms)),
        });
    }
    Ok(Json(link_view(link, now_ms, None)))
}

/// The words of the signing page, in the languages the page itself speaks (the consent text is
/// the tenant's, in the link's language).
struct Words {
    lang: &'static str,
    heading: &'static str,
    version: &'static str,
    name: &'static str,
    read: &'static str,
    agree: &'static str,
    decline: &'static str,
    done_permit: &'static str,
    done_deny: &'static str,
    closed: &'static str,
    not_yet: &'static str,
    missing: &'static str,
}

const ENGLISH: Words = Words {
    lang: "en",
    heading: "Please read this form",
    version: "Version",
    name: "Your full name",
    read: "I have read this form",
    agree: "I agree",
    decline: "I do not agree",
    done_permit: "Thank you. Your consent is recorded and your care team can see it.",
    done_deny: "Thank you. Your decision not to consent is recorded and your care team can see it.",
    closed: "This link can no longer be used (it was used already, has expired or was withdrawn). Please ask your care team for a new one.",
    not_yet: "This form opens once you have joined the visit's waiting room. Please try again then.",
    missing: "Please type your full name and tick the box to show you have read the form.",
};

const SPANISH: Words = Words {
    lang: "es",
    heading: "Lea este formulario",
    version: "Versión",
    name: "Su nombre completo",
    read: "He leído este formulario",
    agree: "Acepto",
    decline: "No acepto",
    done_permit: "Gracias. Su consentimiento quedó registrado y su equipo de atención puede verlo.",
    done_deny: "Gracias. Su decisión de no dar su consentimiento quedó registrada y su equipo de atención puede verla.",
    closed: "Este enlace ya no se puede usar (ya se usó, venció o fue retirado). Pida uno nuevo a su equipo de atención.",
    not_yet: "Este formulario se abre cuando usted entra a la sala de espera de la visita. Inténtelo de nuevo entonces.",
    missing: "Escriba su nombre completo y marque la casilla para indicar que leyó el formulario.",
};

fn words(language: &str) -> &'static Words {
    if language == "es" || language.starts_with("es-") { &SPANISH } else { &ENGLISH }
}

fn patient_page(words: &Words, title: &str, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang=(words.lang) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
            }
            body { main { (content) } }
        }
    }
}

fn message_page(status: StatusCode, words: &Words, message: &str) -> Response {
    let page = patient_page(words, words.heading, html! { p id="consent-message" role="status" { (message) } });
    respond(status, page)
}

fn respond(status: StatusCode, page: Markup) -> Response {
    (status, axum::response::Html(page.into_string())).into_response()
}

/// The link, its text and its visit, when the link can be signed through now.
struct OpenLink {
    link: ConsentLink,
    text: ConsentText,
    visit: VisitRow,
}

async fn open_link(state: &AppState, token: &str) -> Result<Result<OpenLink, Response>, ApiError> {
    let Some(link) = state.store.consent_link_by_token(token).await? else {
        return Ok(Err(message_page(StatusCode::NOT_FOUND, &ENGLISH, ENGLISH.closed)));
    };
    let words = words(&link.language);
    if !link.is_open(state.clock.now_ms()) {
        return Ok(Err(message_page(StatusCode::GONE, words, words.closed)));
    }
    let text = state
        .store
        .consent_text(&link.tenant_id, &link.category, &link.text_version, &link.language)
        .await?
        .ok_or_else(|| ApiError::Internal(format!("consent link {} names an unpublished text", link.id)))?;
    let visit = state
        .store
        .visit(&link.tenant_id, &link.visit_id)
        .await?
        .ok_or_else(|| ApiError::Internal(format!("consent link {} names a missing visit", link.id)))?;
    Ok(Ok(OpenLink { link, text, visit }))
}

/// Who acts through a link, for the audit log: the patient, known by the link they hold.
fn patient_caller(link: &ConsentLink) -> Caller {
    Caller {
        tenant_id: link.tenant_id.clone(),
        actor: format!("patient-link:{}", link.id),
        role: telechart_policy::Role::Patient,
    }
}

fn signing_form(open: &OpenLink, problem: Option<&str>) -> Markup {
    let words = words(&open.link.language);
    let text = &open.text;
    patient_page(
        words,
        &text.title,
        html! {
            h1 { (text.title) }
            p { (words.version) " " span id="consent-version" { (text.version) } }
            article id="consent-text" lang=(text.language) {
                @for paragraph in text.body.split("\n\n") {
                    p { (paragraph.trim()) }
                }
            }
            @if let Some(problem) = problem {
                p id="consent-problem" role="alert" { (problem) }
            }
            form method="post" {
                p {
                    label for="signer-name" { (words.name) }
                    br;
                    input id="signer-name" name="name" autocomplete="name" required maxlength="200";
                }
                p {
                    input type="checkbox" id="have-read" name="read" value="yes" required;
                    " "
                    label for="have-read" { (words.read) }
                }
                p {
                    button name="decision" value="permit" id="consent-agree" { (words.agree) }
                    " "
                    button name="decision" value="deny" id="consent-decline" { (words.decline) }
                }
            }
        },
    )
}

/// `GET /consent/{token}`: the consent text and the signing form. Viewing is audited.
async fn signing_page(State(state): State<AppState>, Path(token): Path<String>) -> Result<Response, ApiError> {
    let open = match open_link(&state, &token).await? {
        Ok(open) => open,
        Err(page) => return Ok(page),
    };
    let caller = patient_caller(&open.link);
    let entry = link_audit(&caller, "consent.link.view", &open.visit, &open.link.id, String::new());
    state.store.audit(&entry, state.clock.now_ms()).await?;
    Ok(respond(StatusCode::OK, signing_form(&open, None)))
}

/// `POST /consent/{token}`: the patient's signature (typed name, "I have read", agree or
/// decline). One transaction records the signed form, the Consent and the link's spending.
async fn sign(State(state): State<AppState>, Path(token): Path<String>, body: Bytes) -> Result<Response, ApiError> {
    let open = match open_link(&state, &token).await? {
        Ok(open) => open,
        Err(page) => return Ok(page),
    };
    let words = words(&open.link.language);
    let pairs = crate::launch::form(&body);
    let field = |name: &str| crate::launch::field(&pairs, name);
    let name = field("name").unwrap_or_default();
    let decision = match field("decision") {
        Some("permit") => Outcome::Permit,
        Some("deny") => Outcome::Deny,
        _ => return Ok(respond(StatusCode::UNPROCESSABLE_ENTITY, signing_form(&open, Some(words.missing)))),
    };
    if name.is_empty()
        || name.chars().count() > 200
        || name.chars().any(char::is_control)
        || field("read") != Some("yes")
    {
        return Ok(respond(StatusCode::UNPROCESSABLE_ENTITY, signing_form(&open, Some(words.missing))));
    }
    let current: VisitState = open
        .visit
        .state
        .parse()
        .map_err(|_| ApiError::Internal(format!("visit {} has unknown state", open.visit.id)))?;
    if !matches!(current, VisitState::Arrived | VisitState::InProgress | VisitState::Finished) {
        return Ok(message_page(StatusCode::CONFLICT, words, words.not_yet));
    }
    let now = state.clock.now();
    let caller = patient_caller(&open.link);
    let form_text = signed_form_text(&open, name, decision, now);
    let input = DocumentInput {
        kind: DocumentKind::ConsentForm,
        title: format!("{} (v{}) — {}", open.text.title, open.text.version, decision_label(decision)),
        content_type: "text/plain".into(),
        text: Some(form_text),
        data: None,
        author: Some(open.visit.patient.expose().to_owned()),
        created_at: Some(now),
    };
    let document = current.attach_document(input, now)?;
    let category = ConsentCategory::parse(&open.link.category).ok_or_else(|| {
        ApiError::Internal(format!("consent link {} has category {}", open.link.id, open.link.category))
    })?;
    let document_id = uuid::Uuid::now_v7().to_string();
    let decided = crate::consent::Decided {
        category,
        decision,
        decided_at: now,
        form_artifact: Some(document_id.clone()),
        text_version: Some(open.text.version.clone()),
    };
    let form = vec![(document_id, Artifact::Document(document))];
    // Declining what the patient agreed to before revokes it the same way it was given: that
    // Consent becomes inactive (in Telechart and, by an update, in the EHR), with the signed form.
    let revoked = match decision {
        Outcome::Deny => active_permit(&state, &open).await?,
        Outcome::Permit => None,
    };
    let recorded = match revoked {
        Some((latest, resource)) => crate::consent::record_withdrawal(
            &state,
            &caller,
            &open.visit,
            current,
            &latest,
            resource,
            form,
            Some(&open.link.id),
        )
        .await
        .map(drop),
        None => crate::consent::record_decision_with(
            &state,
            &caller,
            &open.visit,
            current,
            decided,
            form,
            Some(&open.link.id),
        )
        .await
        .map(drop),
    };
    match recorded {
        Ok(()) => {
            let done = if decision == Outcome::Permit { words.done_permit } else { words.done_deny };
            Ok(message_page(StatusCode::OK, words, done))
        }
        // Spent by a second tab or a concurrent change of the visit: nothing was recorded.
        Err(ApiError::Conflict { .. }) => Ok(message_page(StatusCode::CONFLICT, words, words.closed)),
        Err(other) => Err(other),
    }
}

/// The patient's newest active permit of the link's category, with its FHIR form, if any.
async fn active_permit(
    state: &AppState,
    open: &OpenLink,
) -> Result<Option<(telechart_store::ConsentVersion, serde_json::Value)>, ApiError> {
    let patient = open.visit.patient.expose();
    let consents = state.store.current_consents(&open.link.tenant_id).await?;
    Ok(consents
        .into_iter()
        .filter(|c| c.category == open.link.category && c.status == "active")
        .filter_map(|c| {
            let resource: serde_json::Value = serde_json::from_str(c.resource.expose()).ok()?;
            let permits = resource["policyRule"]["coding"][0]["code"] == "OPTIN";
            (permits && resource["patient"]["reference"].as_str() == Some(patient)).then_some((c, resource))
        })
        .next_back())
}

fn decision_label(decision: Outcome) -> &'static str {
    match decision {
        Outcome::Permit => "agreed",
        Outcome::Deny => "declined",
    }
}

/// The signed form as the EHR keeps it: the exact words read, which version they were, and the
/// signature — enough to show later what this patient agreed to, and how.
fn signed_form_text(open: &OpenLink, name: &str, decision: Outcome, now: DateTime<Utc>) -> String {
    let text = &open.text;
    format!(
        "{title}\n\
         Consent text: {category}, version {version}, language {language}, SHA-256 {sha}\n\n\
         {body}\n\n\
         ---\n\
         Decision: {decision}\n\
         Signed electronically by: {name} (typed name; \"I have read this form\" ticked)\n\
         Signed at: {at}\n\
         Through: single-use consent link {link}, issued by {issuer}\n",
        title = text.title,
        category = text.category,
        version = text.version,
        language = text.language,
        sha = text.sha256,
        body = text.body,
        decision = decision_label(decision),
        at = telechart_visit::format_instant(now),
        link = open.link.id,
        issuer = open.link.created_by,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_tags_are_checked() {
        for good in ["en", "es", "es-MX", "zh-Hant-TW", "haw"] {
            assert!(is_language_tag(good), "{good}");
        }
        for bad in ["", "e", "EN", "english", "es_MX", "es-", "es-M"] {
            assert!(!is_language_tag(bad), "{bad}");
        }
    }

    #[test]
    fn the_page_speaks_spanish_for_spanish_links() {
        assert_eq!(words("es").lang, "es");
        assert_eq!(words("es-MX").lang, "es");
        assert_eq!(words("en").lang, "en");
        assert_eq!(words("fr").lang, "en");
    }
}
