//! SMART App Launch (EHR launch): `/launch` → the EHR's authorize → `/launch/callback` → the
//! visit workspace for the appointment in context.
//!
//! `iss` must name a registered EHR connection before any request leaves (no SSRF); `state` is
//! 256 random bits, single use, ten minutes, bound server-side to the connection and the PKCE
//! (S256) verifier; the person is the user the token's `fhirUser` names.

use axum::extract::{Path, Query, State};
use axum::http::Method;
use axum::response::{Html, IntoResponse, Redirect, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use telechart_policy::Permission;
use telechart_store::{NewVisit, Phi};

use crate::auth::{Access, Caller, Routes};
use crate::{ApiError, AppState};

pub(crate) fn routes() -> Routes {
    Routes::new()
        .add(Method::GET, "/launch", Access::SignIn, launch)
        .add(Method::GET, "/launch/callback", Access::SignIn, callback)
        .add(Method::GET, "/workspace/visits/{id}", Access::Requires(Permission::VisitRead), workspace)
        .add(
            Method::POST,
            "/workspace/visits/{id}/transition",
            Access::Requires(Permission::VisitTransition),
            form_transition,
        )
        .add(Method::POST, "/workspace/visits/{id}/vitals", Access::Requires(Permission::VisitVitals), form_vitals)
        .add(Method::POST, "/workspace/visits/{id}/note", Access::Requires(Permission::VisitNote), form_note)
}

fn form(body: &axum::body::Bytes) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes(body).unwrap_or_default()
}

fn field<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, v)| k == name && !v.trim().is_empty()).map(|(_, v)| v.trim())
}

fn back_to(id: &str) -> Response {
    Redirect::to(&format!("/workspace/visits/{id}")).into_response()
}

/// The status buttons post here; the rules are the API's.
async fn form_transition(
    state: State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let pairs = form(&body);
    let to = field(&pairs, "to").ok_or_else(|| ApiError::invalid("to", "which state?"))?;
    let json = serde_json::json!({ "to": to }).to_string();
    let _event = crate::api::transition(state, caller, Path(id.clone()), json.into()).await?;
    Ok(back_to(&id))
}

/// The vitals form: each filled field becomes one measurement, validated as the API validates.
async fn form_vitals(
    state: State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let pairs = form(&body);
    let mut vitals = Vec::new();
    let number = |name: &str| -> Result<Option<serde_json::Number>, ApiError> {
        field(&pairs, name)
            .map(|v| {
                serde_json::from_str::<serde_json::Number>(v)
                    .map_err(|_| ApiError::invalid(name, format!("{v:?} is not a number")))
            })
            .transpose()
    };
    if let (Some(s), Some(d)) = (number("systolic")?, number("diastolic")?) {
        vitals.push(serde_json::json!({"type": "blood-pressure", "systolic": s, "diastolic": d, "unit": "mm[Hg]"}));
    }
    for (name, kind, unit) in [
        ("heart_rate", "heart-rate", "/min"),
        ("respiratory_rate", "respiratory-rate", "/min"),
        ("temperature", "body-temperature", "Cel"),
        ("spo2", "oxygen-saturation", "%"),
        ("weight", "body-weight", "kg"),
        ("height", "body-height", "cm"),
    ] {
        if let Some(value) = number(name)? {
            vitals.push(serde_json::json!({"type": kind, "value": value, "unit": unit}));
        }
    }
    let json = serde_json::json!({ "vitals": vitals }).to_string();
    let _event = crate::api::capture_vitals(state, caller, Path(id.clone()), json.into()).await?;
    Ok(back_to(&id))
}

/// The note editor: signed by the clinician whose session this is, now.
async fn form_note(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let pairs = form(&body);
    let user_id = caller
        .actor
        .strip_prefix("user:")
        .ok_or_else(|| ApiError::invalid("author", "workspace notes are signed by a logged-in clinician"))?;
    let author = state
        .store
        .user(&caller.tenant_id, user_id)
        .await?
        .and_then(|u| u.fhir_user)
        .ok_or_else(|| ApiError::invalid("author", "your user is not linked to a Practitioner (fhirUser)"))?;
    let json = serde_json::json!({
        "title": field(&pairs, "title").unwrap_or("Telehealth visit note"),
        "text": field(&pairs, "text").unwrap_or_default(),
        "author": author,
        "signedAt": telechart_visit::format_instant(state.clock.now()),
    })
    .to_string();
    let _event = crate::api::attach_note(State(state), caller, Path(id.clone()), json.into()).await?;
    Ok(back_to(&id))
}

#[derive(Deserialize)]
struct LaunchSettings {
    client_id: String,
    scope: String,
}

fn random(bytes: usize) -> Result<String, ApiError> {
    let mut buffer = vec![0_u8; bytes];
    aws_lc_rs::rand::fill(&mut buffer).map_err(|_| ApiError::Internal("random source".into()))?;
    Ok(URL_SAFE_NO_PAD.encode(buffer))
}

fn redirect_uri(state: &AppState) -> Result<String, ApiError> {
    state
        .public_url
        .as_deref()
        .map(|u| format!("{}/launch/callback", u.trim_end_matches('/')))
        .ok_or_else(|| ApiError::Internal("public_url is not configured; SMART launches need it".into()))
}

#[derive(Deserialize)]
struct LaunchParams {
    iss: Option<String>,
    launch: Option<String>,
}

async fn launch(State(state): State<AppState>, Query(params): Query<LaunchParams>) -> Result<Response, ApiError> {
    let iss = params.iss.ok_or_else(|| ApiError::invalid("iss", "the EHR launch needs iss"))?;
    let launch = params.launch.ok_or_else(|| ApiError::invalid("launch", "the EHR launch needs launch"))?;
    // Nothing leaves before iss is known to be one of ours.
    let connection = state
        .store
        .connection_by_base_url(&iss)
        .await?
        .ok_or_else(|| ApiError::invalid("iss", "iss is not a registered EHR"))?;
    let settings: serde_json::Value = serde_json::from_str(&connection.settings).unwrap_or_default();
    let launch_settings: LaunchSettings = settings
        .get("launch")
        .filter(|l| !l.is_null())
        .and_then(|l| serde_json::from_value(l.clone()).ok())
        .ok_or_else(|| ApiError::invalid("iss", "this EHR connection does not accept launches"))?;
    state.connections.check_egress(&iss).map_err(|e| ApiError::Forbidden(e.to_string()))?;
    let config = telechart_ehr::smart_configuration(&iss, state.connections.timeout())
        .await
        .map_err(|e| ApiError::BadGateway(format!("SMART discovery: {e}")))?;
    let launch_state = random(32)?;
    let verifier = random(48)?;
    let challenge = URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()));
    state
        .store
        .begin_smart_launch(&launch_state, &connection.tenant_id, &connection.id, &verifier, state.clock.now_ms())
        .await?;
    let redirect = redirect_uri(&state)?;
    let query = serde_urlencoded::to_string([
        ("response_type", "code"),
        ("client_id", launch_settings.client_id.as_str()),
        ("redirect_uri", redirect.as_str()),
        ("scope", launch_settings.scope.as_str()),
        ("state", launch_state.as_str()),
        ("aud", iss.as_str()),
        ("launch", launch.as_str()),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ])
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Redirect::to(&format!("{}?{query}", config.authorization_endpoint)).into_response())
}

#[derive(Deserialize)]
struct CallbackParams {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

async fn callback(State(state): State<AppState>, Query(params): Query<CallbackParams>) -> Result<Response, ApiError> {
    if let Some(error) = params.error {
        return Err(ApiError::Forbidden(format!("the EHR refused the launch: {error}")));
    }
    let (Some(code), Some(launch_state)) = (params.code, params.state) else {
        return Err(ApiError::invalid("code", "the callback needs code and state"));
    };
    let now = state.clock.now_ms();
    let (tenant, connection_id, verifier) = state
        .store
        .finish_smart_launch(&launch_state, 10 * 60_000, now)
        .await?
        .ok_or_else(|| ApiError::invalid("state", "unknown, used or expired launch state"))?;
    let connection = state
        .store
        .connection(&tenant, &connection_id)
        .await?
        .ok_or_else(|| ApiError::invalid("state", "the launch's EHR connection is gone"))?;
    let settings: serde_json::Value = serde_json::from_str(&connection.settings).unwrap_or_default();
    let launch_settings: LaunchSettings =
        settings
            .get("launch")
            .and_then(|l| serde_json::from_value(l.clone()).ok())
            .ok_or_else(|| ApiError::invalid("state", "this EHR connection does not accept launches"))?;
    let config = telechart_ehr::smart_configuration(&connection.base_url, state.connections.timeout())
        .await
        .map_err(|e| ApiError::BadGateway(format!("SMART discovery: {e}")))?;
    let token = telechart_ehr::exchange_code(
        &config.token_endpoint,
        &launch_settings.client_id,
        &code,
        &redirect_uri(&state)?,
        &verifier,
        state.connections.timeout(),
    )
    .await
    .map_err(|_| ApiError::Unauthorized)?;
    let fhir_user =
        token.fhir_user.clone().ok_or_else(|| ApiError::Forbidden("the launch named no fhirUser".into()))?;
    let user = state
        .store
        .user_by_fhir_user(&tenant, &fhir_user)
        .await?
        .ok_or_else(|| ApiError::Forbidden("no Telechart user is linked to the launching clinician".into()))?;
    let oidc = state.oidc.clone().ok_or_else(|| ApiError::Internal("sessions need the [oidc] settings".into()))?;
    let (secret, _) = state.store.create_session(&user, false, oidc.settings.session, now).await?;
    let appointment = token
        .appointment_id()
        .ok_or_else(|| ApiError::invalid("fhirContext", "the launch has no Appointment in context"))?;
    let visit = match state.store.visit_for_appointment(&tenant, &connection.id, &appointment).await? {
        Some(v) => v,
        None => {
            let patient = token
                .patient
                .as_deref()
                .map(|p| if p.contains('/') { p.to_owned() } else { format!("Patient/{p}") })
                .ok_or_else(|| ApiError::invalid("patient", "the launch has no patient in context"))?;
            let visit_id = uuid::Uuid::now_v7().to_string();
            let entry = telechart_store::AuditEntry {
                tenant_id: tenant.clone(),
                actor: format!("user:{}", user.id),
                action: "visit.open".into(),
                entity_type: "visit".into(),
                entity_id: visit_id.clone(),
                visit_id: Some(visit_id.clone()),
                phi: true,
                detail: format!("SMART launch from {} for Appointment/{appointment}", connection.id),
            };
            let new = NewVisit {
                tenant_id: tenant.clone(),
                id: visit_id,
                connection_id: connection.id.clone(),
                appointment_id: appointment.clone(),
                patient: Phi::new(patient),
                practitioner: Some(fhir_user.clone()),
                state: "booked".into(),
            };
            state.store.create_visit(&new, &entry, now).await?
        }
    };
    let embedded = state.embedding.origins_by_connection.contains_key(&connection.id);
    let mut response = Redirect::to(&format!("/workspace/visits/{}", visit.id)).into_response();
    crate::login::set_cookie(&mut response, &crate::login::session_cookie(&secret, &oidc.settings, embedded));
    Ok(response)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The clinician's visit workspace: patient banner, appointment, state, and where every
/// artifact is. Server-rendered, no script.
async fn workspace(
    State(state): State<AppState>,
    caller: Caller,
    session: Option<crate::auth::SessionCaller>,
    Path(id): Path<String>,
) -> Result<Html<String>, ApiError> {
    let visit = state
        .store
        .visit(&caller.tenant_id, &id)
        .await?
        .ok_or_else(|| ApiError::NotFound { field: None, message: format!("visit {id} not found") })?;
    let entry = telechart_store::AuditEntry {
        tenant_id: caller.tenant_id.clone(),
        actor: caller.actor.clone(),
        action: "visit.read".into(),
        entity_type: "visit".into(),
        entity_id: id.clone(),
        visit_id: Some(id.clone()),
        phi: true,
        detail: "workspace".into(),
    };
    state.store.audit(&entry, state.clock.now_ms()).await?;
    let trace = state.store.deliveries_for_visit(&caller.tenant_id, &id).await?;
    let rows: String = trace
        .iter()
        .map(|d| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                d.seq,
                escape(&d.resource_type),
                escape(&d.status),
                escape(&d.ehr_resource_id.clone().map(|r| format!("{}/{r}", d.resource_type)).unwrap_or_default())
            )
        })
        .collect();
    // Forms only for a browser session (they carry its CSRF token).
    let csrf = session.map(|s| escape(&s.session.csrf_token));
    let forms = match (&csrf, visit.state.parse::<telechart_visit::VisitState>()) {
        (Some(csrf), Ok(current)) => workspace_forms(&escape(&id), csrf, current),
        _ => String::new(),
    };
    Ok(Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Telechart visit</title></head><body>\
         <header id=\"patient-banner\"><h1>{patient}</h1><p>Appointment/{appointment} · visit \
         <span id=\"visit-state\">{state_name}</span></p></header>{forms}\
         <section><h2>Where every artifact is</h2><table><thead><tr><th>#</th><th>Resource</th><th>Status</th>\
         <th>In the EHR</th></tr></thead><tbody>{rows}</tbody></table></section></body></html>",
        patient = escape(visit.patient.expose()),
        appointment = escape(&visit.appointment_id),
        state_name = escape(&visit.state),
    )))
}

/// Status buttons for the next states, the vitals form and the note editor.
fn workspace_forms(id: &str, csrf: &str, current: telechart_visit::VisitState) -> String {
    let hidden = format!("<input type=\"hidden\" name=\"csrf_token\" value=\"{csrf}\">");
    let buttons: String = current
        .next_states()
        .iter()
        .map(|s| {
            format!(
                "<form method=\"post\" action=\"/workspace/visits/{id}/transition\">{hidden}\
                 <button name=\"to\" value=\"{s}\" id=\"to-{s}\">{s}</button></form>"
            )
        })
        .collect();
    let fields: String = [
        ("systolic", "Systolic (mmHg)"),
        ("diastolic", "Diastolic (mmHg)"),
        ("heart_rate", "Heart rate (/min)"),
        ("respiratory_rate", "Respiratory rate (/min)"),
        ("temperature", "Temperature (°C)"),
        ("spo2", "SpO2 (%)"),
        ("weight", "Weight (kg)"),
        ("height", "Height (cm)"),
    ]
    .iter()
    .map(|(name, label)| format!("<label>{label} <input name=\"{name}\" id=\"{name}\" inputmode=\"decimal\"></label>"))
    .collect();
    format!(
        "<section><h2>Status</h2>{buttons}</section>\
         <section><h2>Vitals</h2><form method=\"post\" action=\"/workspace/visits/{id}/vitals\">{hidden}{fields}\
         <button id=\"save-vitals\">Save vitals</button></form></section>\
         <section><h2>Note</h2><form method=\"post\" action=\"/workspace/visits/{id}/note\">{hidden}\
         <input name=\"title\" id=\"note-title\"><textarea name=\"text\" id=\"note-text\"></textarea>\
         <button id=\"sign-note\">Sign note</button></form></section>"
    )
}
