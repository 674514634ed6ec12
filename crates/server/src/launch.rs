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
    Ok(Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Telechart visit</title></head><body>\
         <header id=\"patient-banner\"><h1>{patient}</h1><p>Appointment/{appointment} · visit {state_name}</p></header>\
         <section><h2>Where every artifact is</h2><table><thead><tr><th>#</th><th>Resource</th><th>Status</th>\
         <th>In the EHR</th></tr></thead><tbody>{rows}</tbody></table></section></body></html>",
        patient = escape(visit.patient.expose()),
        appointment = escape(&visit.appointment_id),
        state_name = escape(&visit.state),
    )))
}
