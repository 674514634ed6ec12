//! SMART App Launch (EHR launch): `/launch` → the EHR's authorize → `/launch/callback` → the
//! visit workspace for the appointment in context.
//!
//! `iss` must name a registered EHR connection before any request leaves (no SSRF); `state` is
//! 256 random bits, single use, ten minutes, bound server-side to the connection and the PKCE
//! (S256) verifier; the person is the user the token's `fhirUser` names.

use std::collections::HashMap;
use std::sync::Arc;

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
        .add(Method::POST, "/workspace/visits/{id}/consent", Access::Requires(Permission::VisitDocument), form_consent)
        .add(
            Method::POST,
            "/workspace/visits/{id}/consent-link",
            Access::Requires(Permission::VisitDocument),
            form_consent_link,
        )
        .add(
            Method::POST,
            "/workspace/appointments/{id}/open",
            Access::Requires(Permission::VisitTransition),
            open_picked,
        )
}

pub(crate) fn form(body: &axum::body::Bytes) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes(body).unwrap_or_default()
}

pub(crate) fn field<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
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

/// The consent buttons: the patient's spoken or signed decision, recorded as the API records it.
async fn form_consent(
    state: State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let pairs = form(&body);
    let category = field(&pairs, "category").ok_or_else(|| ApiError::invalid("category", "which consent?"))?;
    let decision = field(&pairs, "decision").ok_or_else(|| ApiError::invalid("decision", "permit or deny?"))?;
    let json = serde_json::json!({ "category": category, "decision": decision }).to_string();
    let _recorded = crate::consent::record(state, caller, Path(id.clone()), json.into()).await?;
    Ok(back_to(&id))
}

/// The signing-link form: the link is shown once, to open here (the patient signs on this
/// device) or to send to the patient.
async fn form_consent_link(
    state: State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let pairs = form(&body);
    let category = field(&pairs, "category").ok_or_else(|| ApiError::invalid("category", "which consent?"))?;
    let language = field(&pairs, "language").unwrap_or("en");
    let json = serde_json::json!({ "category": category, "language": language }).to_string();
    let (_, axum::Json(link)) = crate::econsent::create_link(state, caller, Path(id.clone()), json.into()).await?;
    let url = link.url.clone().unwrap_or_default();
    Ok(axum::response::Html(crate::pages::consent_link_created(&id, &url, &link.expires_at_text()).into_string())
        .into_response())
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

/// A connection's launch settings and auth profile, or why it takes no launches.
fn launch_settings(
    connection: &telechart_store::ConnectionRow,
) -> Result<(LaunchSettings, telechart_ehr::AuthProfile), ApiError> {
    let settings: serde_json::Value = serde_json::from_str(&connection.settings).unwrap_or_default();
    let launch = settings
        .get("launch")
        .filter(|l| !l.is_null())
        .and_then(|l| serde_json::from_value::<LaunchSettings>(l.clone()).ok())
        .ok_or_else(|| ApiError::invalid("iss", "this EHR connection does not accept launches"))?;
    let profile = match settings.get("auth").filter(|a| !a.is_null()) {
        Some(a) => serde_json::from_value(a.clone())
            .map_err(|e| ApiError::Internal(format!("connection {} auth profile: {e}", connection.id)))?,
        None => telechart_ehr::AuthProfile::default(),
    };
    Ok((launch, profile))
}

/// Clinicians' EHR tokens from their launches, by session. Held in memory only: a restart
/// costs a relaunch, and no refresh token ever rests on disk.
#[derive(Default)]
pub struct EhrTokens {
    by_session: std::sync::Mutex<HashMap<String, EhrAccess>>,
}

#[derive(Clone)]
struct EhrAccess {
    connection_id: String,
    tokens: Arc<telechart_ehr::UserTokens>,
    until_ms: i64,
}

fn session_key(secret: &str) -> String {
    URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret.as_bytes()))
}

impl EhrTokens {
    fn keep(&self, secret: &str, access: EhrAccess, now_ms: i64) {
        if let Ok(mut map) = self.by_session.lock() {
            map.retain(|_, a| a.until_ms > now_ms);
            map.insert(session_key(secret), access);
        }
    }

    pub(crate) fn forget(&self, secret: &str) {
        if let Ok(mut map) = self.by_session.lock() {
            map.remove(&session_key(secret));
        }
    }

    fn for_session(&self, secret: &str, now_ms: i64) -> Option<EhrAccess> {
        self.by_session.lock().ok()?.get(&session_key(secret)).filter(|a| a.until_ms > now_ms).cloned()
    }
}

fn redirect_uri(state: &AppState) -> Result<String, ApiError> {
    state
        .public_url
        .as_deref()
        .map(|u| format!("{}/launch/callback", u.trim_end_matches('/')))
        .ok_or_else(|| ApiError::Internal("public_url is not configured; SMART launches need it".into()))
}

/// The scopes to ask for: the connection's, with `launch` for an EHR launch or `launch/patient`
/// for a standalone one, in the EHR's scope syntax.
fn launch_scope(configured: &str, standalone: bool, profile: &telechart_ehr::AuthProfile) -> Result<String, ApiError> {
    let mut scopes: Vec<&str> =
        configured.split_whitespace().filter(|s| !matches!(*s, "launch" | "launch/patient")).collect();
    for needed in ["openid", "fhirUser"] {
        if !scopes.contains(&needed) {
            return Err(ApiError::Internal(format!("the connection's launch scope must include {needed}")));
        }
    }
    scopes.insert(0, if standalone { "launch/patient" } else { "launch" });
    Ok(profile.render_scopes(&scopes.join(" ")))
}

#[derive(Deserialize)]
struct LaunchParams {
    iss: Option<String>,
    launch: Option<String>,
}

/// EHR launch (`iss` + `launch`) or standalone launch (`iss` alone: the EHR asks who and which patient).
async fn launch(State(state): State<AppState>, Query(params): Query<LaunchParams>) -> Result<Response, ApiError> {
    let iss = params.iss.ok_or_else(|| ApiError::invalid("iss", "a launch needs iss"))?;
    // Nothing leaves before iss is known to be one of ours.
    let connection = state
        .store
        .connection_by_base_url(&iss)
        .await?
        .ok_or_else(|| ApiError::invalid("iss", "iss is not a registered EHR"))?;
    let (settings, profile) = launch_settings(&connection)?;
    state.connections.check_egress(&iss).map_err(|e| ApiError::Forbidden(e.to_string()))?;
    let config = telechart_ehr::smart_configuration(&iss, state.connections.timeout())
        .await
        .map_err(|e| ApiError::BadGateway(format!("SMART discovery: {e}")))?;
    let scope = launch_scope(&settings.scope, params.launch.is_none(), &profile)?;
    let request = telechart_ehr::AuthorizationRequest::new().map_err(|e| ApiError::Internal(e.to_string()))?;
    let redirect = redirect_uri(&state)?;
    let url = request
        .url(&config, &settings.client_id, &redirect, &scope, &iss, params.launch.as_deref())
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    state
        .store
        .begin_smart_launch(&telechart_store::SmartLaunchState {
            state: request.state,
            tenant_id: connection.tenant_id.clone(),
            connection_id: connection.id.clone(),
            code_verifier: request.code_verifier,
            nonce: request.nonce,
            redirect_uri: redirect,
            created_at: state.clock.now_ms(),
        })
        .await?;
    Ok(Redirect::to(&url).into_response())
}

#[derive(Deserialize)]
struct CallbackParams {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// `fhirUser` as the EHR-relative reference users are linked by (`Practitioner/123`).
fn relative_fhir_user(fhir_user: &str, base_url: &str) -> Option<String> {
    let base = base_url.trim_end_matches('/');
    let relative = fhir_user.strip_prefix(base).map(|r| r.trim_start_matches('/')).unwrap_or(fhir_user);
    match telechart_fhir::parse_reference(relative) {
        Some((kind @ ("Practitioner" | "PractitionerRole" | "Person" | "Patient" | "RelatedPerson"), id)) => {
            Some(format!("{kind}/{id}"))
        }
        _ => None,
    }
}

async fn callback(
    State(state): State<AppState>,
    existing: Option<crate::auth::SessionCaller>,
    Query(params): Query<CallbackParams>,
) -> Result<Response, ApiError> {
    if let Some(error) = params.error {
        return Err(ApiError::Forbidden(format!("the EHR refused the launch: {error}")));
    }
    let (Some(code), Some(launch_state)) = (params.code, params.state) else {
        return Err(ApiError::invalid("code", "the callback needs code and state"));
    };
    let now = state.clock.now_ms();
    let pending = state
        .store
        .finish_smart_launch(&launch_state, 10 * 60_000, now)
        .await?
        .ok_or_else(|| ApiError::invalid("state", "unknown, used or expired launch state"))?;
    let tenant = pending.tenant_id.clone();
    let connection = state
        .store
        .connection(&tenant, &pending.connection_id)
        .await?
        .ok_or_else(|| ApiError::invalid("state", "the launch's EHR connection is gone"))?;
    let (settings, profile) = launch_settings(&connection)?;
    let timeout = state.connections.timeout();
    let config = telechart_ehr::smart_configuration(&connection.base_url, timeout)
        .await
        .map_err(|e| ApiError::BadGateway(format!("SMART discovery: {e}")))?;
    let token = telechart_ehr::exchange_code(
        &config.token_endpoint,
        &settings.client_id,
        &code,
        &pending.redirect_uri,
        &pending.code_verifier,
        timeout,
    )
    .await
    .map_err(|_| ApiError::Unauthorized)?;
    // The person is who the verified id_token says, never a field of the token response.
    let id_token = token.id_token.as_deref().ok_or(ApiError::Unauthorized)?;
    let keys = telechart_ehr::id_token_keys(&config, timeout)
        .await
        .map_err(|e| ApiError::BadGateway(format!("id_token keys: {e}")))?;
    let issuer = config.issuer.clone().unwrap_or_else(|| connection.base_url.clone());
    let claims = telechart_ehr::verify_id_token(id_token, &keys, &issuer, &settings.client_id, &pending.nonce)
        .map_err(|refused| {
            tracing::warn!(connection = %connection.id, reason = %refused, "launch id_token refused");
            ApiError::Unauthorized
        })?;
    let fhir_user = claims
        .fhir_user
        .as_deref()
        .and_then(|u| relative_fhir_user(u, &connection.base_url))
        .ok_or_else(|| ApiError::Forbidden("the id_token names no fhirUser of this EHR".into()))?;
    let user = state
        .store
        .user_by_fhir_user(&tenant, &fhir_user)
        .await?
        .ok_or_else(|| ApiError::Forbidden("no Telechart user is linked to the launching clinician".into()))?;
    // A second factor proven at the EHR (its id_token's amr) counts; a Telechart session the
    // same person already has is kept, so they are not asked again.
    let second_factor = crate::login::proves_second_factor(&claims.amr);
    let (secret, session) = match existing.filter(|e| e.session.user_id == user.id && e.session.tenant_id == tenant) {
        Some(e) => {
            if second_factor && e.session.mfa != 1 {
                state.store.confirm_session_mfa(&e.secret).await?;
            }
            (e.secret, e.session)
        }
        None => state.store.create_session(&user, second_factor, state.sessions.limits, now).await?,
    };
    state
        .store
        .audit(
            &telechart_store::AuditEntry {
                tenant_id: tenant.clone(),
                actor: format!("user:{}", user.id),
                action: "session.launch".to_owned(),
                entity_type: "user".to_owned(),
                entity_id: user.id.clone(),
                visit_id: None,
                phi: false,
                detail: format!("SMART launch from {}; amr {}", connection.id, claims.amr.join(" ")),
                ..Default::default()
            },
            now,
        )
        .await?;
    let tokens = Arc::new(telechart_ehr::UserTokens::new(
        &config.token_endpoint,
        &settings.client_id,
        &token,
        &profile,
        timeout,
        state.clock.now(),
    ));
    let access = EhrAccess { connection_id: connection.id.clone(), tokens, until_ms: session.expires_at };
    state.ehr_tokens.keep(&secret, access.clone(), now);
    let embedded = state.embedding.origins_by_connection.contains_key(&connection.id);
    let landing = match token.appointment_id() {
        Some(appointment) => {
            let patient = token
                .patient
                .as_deref()
                .map(|p| if p.contains('/') { p.to_owned() } else { format!("Patient/{p}") })
                .ok_or_else(|| ApiError::invalid("patient", "the launch has no patient in context"))?;
            let visit = open_visit(&state, &connection, &user, &fhir_user, &appointment, &patient).await?;
            // The EHR opened its own Encounter for the visit: Telechart writes to that one.
            if let Some(encounter) = token.encounter.as_deref() {
                let id = encounter.strip_prefix("Encounter/").unwrap_or(encounter);
                state.store.bind_ehr_encounter(&tenant, &visit.id, id).await?;
            }
            Redirect::to(&format!("/workspace/visits/{}", visit.id)).into_response()
        }
        None => {
            // Standalone: the patient was picked at the EHR; today's telehealth appointments
            // for that patient decide the visit.
            let patient = token
                .patient
                .as_deref()
                .ok_or_else(|| ApiError::invalid("patient", "the launch has no patient in context"))?;
            let patient = patient.strip_prefix("Patient/").unwrap_or(patient);
            let client = ehr_client(&state, &connection, &access)?;
            let today = state.clock.now().date_naive().to_string();
            let booked = client
                .search("Appointment", &[("patient", patient), ("date", today.as_str()), ("status", "booked")])
                .await
                .map_err(|e| ApiError::BadGateway(format!("today's appointments: {e}")))?;
            match booked.as_slice() {
                [only] => {
                    let id = only["id"].as_str().unwrap_or_default();
                    let visit =
                        open_visit(&state, &connection, &user, &fhir_user, id, &format!("Patient/{patient}")).await?;
                    Redirect::to(&format!("/workspace/visits/{}", visit.id)).into_response()
                }
                _ => Html(appointment_picker(&booked, &session.csrf_token)).into_response(),
            }
        }
    };
    let mut response = landing;
    crate::login::set_cookie(&mut response, &crate::login::session_cookie(&secret, &state.sessions, embedded));
    Ok(response)
}

/// A FHIR client that acts as the launching clinician (their token, refreshed as needed).
fn ehr_client(
    state: &AppState,
    connection: &telechart_store::ConnectionRow,
    access: &EhrAccess,
) -> Result<telechart_ehr::FhirClient, ApiError> {
    let profile =
        telechart_ehr::VendorProfile::parse(&connection.profile).map_err(|e| ApiError::Internal(e.to_string()))?;
    let clock = state.clock.clone();
    Ok(telechart_ehr::FhirClient::new(&connection.base_url, profile, state.connections.timeout())
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .with_tenant(telechart_sync::connection_tenant(connection))
        .with_user_auth(access.tokens.clone(), Arc::new(move || clock.now())))
}

/// Today's appointments for the patient picked in a standalone launch, to choose one.
fn appointment_picker(booked: &[serde_json::Value], csrf: &str) -> String {
    let appointments: Vec<crate::pages::PickableAppointment> = booked
        .iter()
        .filter_map(|a| {
            Some(crate::pages::PickableAppointment {
                id: a["id"].as_str()?.to_owned(),
                start: a["start"].as_str().unwrap_or_default().to_owned(),
                what: a["description"]
                    .as_str()
                    .or_else(|| a["serviceType"][0]["text"].as_str())
                    .unwrap_or("Telehealth visit")
                    .to_owned(),
            })
        })
        .collect();
    crate::pages::appointment_picker(&appointments, csrf).into_string()
}

/// Opens the visit for an appointment picked in a standalone launch: read from the EHR with
/// the clinician's token, so only what the EHR shows them can be opened.
async fn open_picked(
    State(state): State<AppState>,
    caller: Caller,
    session: Option<crate::auth::SessionCaller>,
    Path(appointment): Path<String>,
) -> Result<Response, ApiError> {
    let session = session
        .ok_or_else(|| ApiError::invalid("session", "opening an appointment needs a clinician's launched session"))?;
    let now = state.clock.now_ms();
    let access = state
        .ehr_tokens
        .for_session(&session.secret, now)
        .ok_or_else(|| ApiError::Forbidden("this session has no EHR access; launch again from the EHR".into()))?;
    let connection = state
        .store
        .connection(&caller.tenant_id, &access.connection_id)
        .await?
        .ok_or_else(|| ApiError::Forbidden("the launch's EHR connection is gone".into()))?;
    let client = ehr_client(&state, &connection, &access)?;
    let read = client.read("Appointment", &appointment).await.map_err(|e| match e.http_status() {
        Some(404 | 410) => ApiError::NotFound { field: Some("appointment".into()), message: e.to_string() },
        _ => ApiError::BadGateway(format!("Appointment/{appointment}: {e}")),
    })?;
    let patient = read.resource["participant"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["actor"]["reference"].as_str())
        .find(|r| r.starts_with("Patient/"))
        .map(str::to_owned)
        .ok_or_else(|| ApiError::invalid("appointment", "the appointment has no patient"))?;
    let user = state.store.user(&caller.tenant_id, &session.session.user_id).await?.ok_or(ApiError::Unauthorized)?;
    let fhir_user = user.fhir_user.clone().unwrap_or_default();
    let visit = open_visit(&state, &connection, &user, &fhir_user, &appointment, &patient).await?;
    Ok(Redirect::to(&format!("/workspace/visits/{}", visit.id)).into_response())
}

/// The visit for the appointment: the existing one, or a new one opened now (audited).
async fn open_visit(
    state: &AppState,
    connection: &telechart_store::ConnectionRow,
    user: &telechart_store::UserRow,
    fhir_user: &str,
    appointment: &str,
    patient: &str,
) -> Result<telechart_store::VisitRow, ApiError> {
    let tenant = &connection.tenant_id;
    if let Some(v) = state.store.visit_for_appointment(tenant, &connection.id, appointment).await? {
        return Ok(v);
    }
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
        purpose_of_use: Some("TREAT".into()),
        ..Default::default()
    };
    let new = NewVisit {
        tenant_id: tenant.clone(),
        id: visit_id,
        connection_id: connection.id.clone(),
        appointment_id: appointment.to_owned(),
        patient: Phi::new(patient.to_owned()),
        practitioner: Some(fhir_user.to_owned()).filter(|f| !f.is_empty()),
        state: "booked".into(),
        visit_type: None,
        lane: telechart_store::LANE_CLINICAL,
    };
    Ok(state.store.create_visit(&new, &entry, state.clock.now_ms()).await?)
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
        purpose_of_use: Some("TREAT".into()),
        ..Default::default()
    };
    state.store.audit(&entry, state.clock.now_ms()).await?;
    let trace = state.store.deliveries_for_visit(&caller.tenant_id, &id).await?;
    let deliveries = trace
        .iter()
        .map(|d| crate::pages::DeliveryLine {
            seq: d.seq,
            resource_type: d.resource_type.clone(),
            status: d.status.clone(),
            in_ehr: d
                .ehr_resource_id
                .as_ref()
                .map(|r| match &d.ehr_version {
                    Some(v) => format!("{}/{r} v{v}", d.resource_type),
                    None => format!("{}/{r}", d.resource_type),
                })
                .unwrap_or_default(),
            attempts: d.attempts,
            plan: d.plan.clone().unwrap_or_default(),
            // Why it is not there yet, and when it is tried next.
            reason: match (d.status.as_str(), &d.last_error) {
                ("done", _) => String::new(),
                ("pending", Some(e)) => format!(
                    "{e} · next attempt {}",
                    chrono::DateTime::from_timestamp_millis(d.next_attempt_at)
                        .map(telechart_visit::format_instant)
                        .unwrap_or_default()
                ),
                (_, Some(e)) => e.clone(),
                (_, None) => String::new(),
            },
        })
        .collect();
    let banner = match &session {
        Some(s) => ehr_banner(&state, s, &visit).await,
        None => None,
    };
    let next_states = match visit.state.parse::<telechart_visit::VisitState>() {
        Ok(current) => current.next_states().iter().map(|s| s.as_str()).collect(),
        Err(_) => Vec::new(),
    };
    let page = crate::pages::WorkspacePage {
        visit_id: &id,
        appointment_id: &visit.appointment_id,
        state: &visit.state,
        banner,
        patient_reference: visit.patient.expose(),
        csrf: session.as_ref().map(|s| s.session.csrf_token.as_str()),
        next_states,
        deliveries,
    };
    Ok(Html(crate::pages::workspace(&page).into_string()))
}

/// The patient banner from the EHR itself (name, birth date, sex, MRN), read with the
/// clinician's launch token; None when this session has no EHR access to that connection.
async fn ehr_banner(
    state: &AppState,
    session: &crate::auth::SessionCaller,
    visit: &telechart_store::VisitRow,
) -> Option<crate::pages::Banner> {
    let access = state.ehr_tokens.for_session(&session.secret, state.clock.now_ms())?;
    if access.connection_id != visit.connection_id {
        return None;
    }
    let connection = state.store.connection(&visit.tenant_id, &visit.connection_id).await.ok()??;
    let client = ehr_client(state, &connection, &access).ok()?;
    let (_, id) = telechart_fhir::parse_reference(visit.patient.expose())?;
    let patient = match client.read("Patient", id).await {
        Ok(read) => read.resource,
        Err(e) => {
            tracing::warn!(connection = %connection.id, status = ?e.http_status(), "patient banner unavailable");
            return None;
        }
    };
    let name = &patient["name"][0];
    let given: Vec<&str> = name["given"].as_array().into_iter().flatten().filter_map(|g| g.as_str()).collect();
    let full = name["text"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{} {}", given.join(" "), name["family"].as_str().unwrap_or_default()));
    // The medical record number is the identifier typed MR (v2-0203); else the first one.
    let identifiers = patient["identifier"].as_array().cloned().unwrap_or_default();
    let mrn = identifiers
        .iter()
        .find(|i| i["type"]["coding"].as_array().into_iter().flatten().any(|c| c["code"] == "MR"))
        .or_else(|| identifiers.first())
        .and_then(|i| i["value"].as_str())
        .unwrap_or_default();
    Some(crate::pages::Banner {
        name: full.trim().to_owned(),
        birth_date: patient["birthDate"].as_str().unwrap_or("unknown").to_owned(),
        gender: patient["gender"].as_str().unwrap_or("unknown").to_owned(),
        mrn: mrn.to_owned(),
    })
}
