//! The sandbox's SMART endpoints over HTTP: discovery documents, the sign-in/approve page,
//! authorize, token, and the EHR schedule page that launches the app.

use super::*;
use maud::{DOCTYPE, html};

pub(crate) async fn smart_configuration(State(sandbox): State<Sandbox>) -> Response {
    let base = sandbox.base_url();
    axum::Json(json!({
        "issuer": base,
        "jwks_uri": sandbox.auth_url("jwks"),
        "token_endpoint": sandbox.token_url(),
        "authorization_endpoint": sandbox.auth_url("authorize"),
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt", "none"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
        "grant_types_supported": ["authorization_code", "client_credentials", "refresh_token"],
        "scopes_supported": ["openid", "fhirUser", "launch", "launch/patient", "offline_access", "online_access",
            "patient/*.rs", "user/*.rs", "user/*.cruds", "system/*.rs", "system/*.cruds", "system/*.read", "system/*.write"],
        "capabilities": ["launch-ehr", "launch-standalone", "client-public", "client-confidential-asymmetric",
            "context-ehr-patient", "context-standalone-patient", "sso-openid-connect", "permission-offline",
            "permission-online", "permission-patient", "permission-user", "permission-v1", "permission-v2"]
    }))
    .into_response()
}

/// Enough OpenID discovery for a relying party to find the id_token keys.
pub(crate) async fn openid_configuration(State(sandbox): State<Sandbox>) -> Response {
    let base = sandbox.base_url();
    axum::Json(json!({
        "issuer": base,
        "authorization_endpoint": sandbox.auth_url("authorize"),
        "token_endpoint": sandbox.token_url(),
        "jwks_uri": sandbox.auth_url("jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"]
    }))
    .into_response()
}

pub(crate) async fn jwks(State(sandbox): State<Sandbox>) -> Response {
    axum::Json(sandbox.state.auth.jwks()).into_response()
}

/// The EHR's schedule for today: every booked telehealth appointment with a button that
/// launches the app in context, as a clinician would from the EHR.
pub(crate) async fn schedule(State(sandbox): State<Sandbox>) -> Response {
    let Ok(db) = sandbox.state.db.read() else {
        return outcome(StatusCode::INTERNAL_SERVER_ERROR, "exception", None, "sandbox state is poisoned");
    };
    let mut appointments: Vec<&Arc<Value>> = db.all("Appointment").filter(|a| a["status"] == "booked").collect();
    appointments.sort_by(|a, b| a["start"].as_str().cmp(&b["start"].as_str()));
    let rows: Vec<(String, String, String)> = appointments
        .iter()
        .map(|a| {
            let id = a["id"].as_str().unwrap_or_default().to_owned();
            let patient = a["participant"][0]["actor"]["reference"].as_str().unwrap_or_default();
            let name = db
                .latest("Patient", patient.trim_start_matches("Patient/"))
                .and_then(|p| {
                    let n = &p["name"][0];
                    Some(format!("{} {}", n["given"][0].as_str()?, n["family"].as_str()?))
                })
                .unwrap_or_else(|| patient.to_owned());
            (a["start"].as_str().unwrap_or_default().to_owned(), name, id)
        })
        .collect();
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; title { "Sandbox EHR — today's telehealth schedule" } }
            body {
                h1 { "Today's telehealth visits" }
                table {
                    thead { tr { th { "Start" } th { "Patient" } th {} } }
                    tbody {
                        @for (start, name, id) in &rows {
                            tr {
                                td { (start) } td { (name) }
                                td { a class="start" id={ "start-" (id) } href={ "/ehr/launch/" (id) } { "Start video visit" } }
                            }
                        }
                    }
                }
            }
        }
    };
    axum::response::Html(page.into_string()).into_response()
}

/// "Start video visit": registers the launch context and opens the app's launch URL with
/// `iss` and `launch`, which is what an EHR launch is.
pub(crate) async fn ehr_launch(State(sandbox): State<Sandbox>, Path(appointment): Path<String>) -> Response {
    let Some(app) = sandbox.state.app_launch_url.clone() else {
        return outcome(StatusCode::NOT_FOUND, "not-supported", None, "no app launch URL is configured");
    };
    let found = sandbox.state.db.read().ok().and_then(|db| db.latest("Appointment", &appointment).cloned());
    let Some(appt) = found else {
        return outcome(StatusCode::NOT_FOUND, "not-found", None, &format!("Appointment/{appointment} does not exist"));
    };
    let actors: Vec<&str> =
        appt["participant"].as_array().into_iter().flatten().filter_map(|p| p["actor"]["reference"].as_str()).collect();
    let patient = actors.iter().find(|r| r.starts_with("Patient/")).map(|r| (*r).to_owned()).unwrap_or_default();
    let practitioner =
        actors.iter().find(|r| r.starts_with("Practitioner/")).map(|r| (*r).to_owned()).unwrap_or_default();
    let launch = sandbox.register_launch(LaunchContext {
        practitioner,
        patient,
        appointment: Some(format!("Appointment/{appointment}")),
    });
    let query = serde_urlencoded::to_string([("iss", sandbox.base_url()), ("launch", launch)]).unwrap_or_default();
    axum::response::Redirect::to(&format!("{app}?{query}")).into_response()
}

/// An OAuth reply: the token body (never cached), or `{error, error_description}`.
pub(crate) fn oauth_reply(result: Result<Value, auth::Refusal>) -> Response {
    match result {
        Ok(body) => {
            let mut response = axum::Json(body).into_response();
            response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(refusal) => {
            let status = StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::BAD_REQUEST);
            (status, axum::Json(json!({"error": refusal.error, "error_description": refusal.description})))
                .into_response()
        }
    }
}

pub(crate) fn invalid_request() -> Response {
    (StatusCode::BAD_REQUEST, axum::Json(json!({"error": "invalid_request"}))).into_response()
}

/// The sandbox's own clock, as for `lastUpdated`: milliseconds since the epoch.
pub(crate) fn now_ms() -> i64 {
    #[allow(clippy::disallowed_methods)]
    Utc::now().timestamp_millis()
}

/// Who signs in when nobody is asked: `login_hint`, the EHR launch's user, or the first clinician;
/// and, for a standalone launch, that clinician's first patient booked today.
pub(crate) fn auto_choice(
    sandbox: &Sandbox,
    params: &app_auth::AuthorizeParams,
    checked: &app_auth::CheckedRequest,
) -> (String, Option<String>) {
    let default = checked
        .ehr_context
        .as_ref()
        .map(|c| c.practitioner.clone())
        .unwrap_or_else(|| format!("Practitioner/{}", seed::CLINICIANS.first().map(|c| c.0).unwrap_or_default()));
    let user = app_auth::practitioner_or_default(params.login_hint.as_deref(), &default);
    let patient =
        checked.wants_patient.then(|| {
            let db = sandbox.state.db.read().ok()?;
            let mut booked: Vec<&Arc<Value>> = db
                .all("Appointment")
                .filter(|a| a["status"] == "booked")
                .filter(|a| {
                    a["participant"].as_array().into_iter().flatten().any(|p| p["actor"]["reference"] == user.as_str())
                })
                .collect();
            booked.sort_by(|a, b| a["start"].as_str().cmp(&b["start"].as_str()));
            booked.iter().find_map(|a| {
                a["participant"].as_array().into_iter().flatten().find_map(|p| {
                    p["actor"]["reference"].as_str().filter(|r| r.starts_with("Patient/")).map(str::to_owned)
                })
            })
        });
    (user, patient.flatten())
}

pub(crate) fn names_of(db: &Db, rtype: &str) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = db
        .all(rtype)
        .filter_map(|r| {
            let id = r["id"].as_str()?;
            let n = &r["name"][0];
            let name = match (n["given"][0].as_str(), n["family"].as_str()) {
                (Some(g), Some(f)) => format!("{g} {f}"),
                _ => id.to_owned(),
            };
            Some((format!("{rtype}/{id}"), name))
        })
        .collect();
    found.sort();
    found
}

/// The sign-in/approve page: who you are, (standalone) which patient, and what the app asks for.
pub(crate) fn approve_page(
    sandbox: &Sandbox,
    params: &app_auth::AuthorizeParams,
    checked: &app_auth::CheckedRequest,
) -> Response {
    let Ok(db) = sandbox.state.db.read() else {
        return outcome(StatusCode::INTERNAL_SERVER_ERROR, "exception", None, "sandbox state is poisoned");
    };
    let hidden = params.pairs();
    let (default_user, default_patient) = auto_choice(sandbox, params, checked);
    let options = |items: Vec<(String, String)>, selected: &str| {
        html! {
            @for (reference, name) in &items {
                option value=(reference) selected[reference == selected] { (name) }
            }
        }
    };
    let client = params.client_id.as_deref().unwrap_or_default();
    let scopes: Vec<&str> = params.scope.as_deref().unwrap_or_default().split_whitespace().collect();
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; title { "Sandbox EHR — authorize " (client) } }
            body {
                h1 { "Allow " (client) " to use your EHR session?" }
                form method="post" action="/auth/authorize" {
                    @for (k, v) in &hidden { input type="hidden" name=(k) value=(v); }
                    @match &checked.ehr_context {
                        Some(c) => { p { "Signed in to the EHR as " strong { (c.practitioner) } } }
                        None => {
                            label { "Sign in as " select name="user" id="user" { (options(names_of(&db, "Practitioner"), &default_user)) } }
                        }
                    }
                    @if checked.wants_patient {
                        label { "Patient " select name="patient" id="patient" {
                            (options(names_of(&db, "Patient"), default_patient.as_deref().unwrap_or_default()))
                        } }
                    }
                    p { "It asks for:" }
                    ul { @for s in &scopes { li { code { (s) } } } }
                    button name="decision" value="approve" id="approve" { "Approve" } " "
                    button name="decision" value="deny" id="deny" { "Deny" }
                }
            }
        }
    };
    axum::response::Html(page.into_string()).into_response()
}

pub(crate) async fn authorize(State(sandbox): State<Sandbox>, RawQuery(query): RawQuery) -> Response {
    let Ok(params) = serde_urlencoded::from_str::<app_auth::AuthorizeParams>(&query.unwrap_or_default()) else {
        return invalid_request();
    };
    let checked = match sandbox.state.auth.check_authorize(&params, &sandbox.base_url()) {
        Ok(checked) => checked,
        Err(Ok(back)) => return axum::response::Redirect::to(&back).into_response(),
        Err(Err(refusal)) => return oauth_reply(Err(refusal)),
    };
    if sandbox.state.approve_page {
        return approve_page(&sandbox, &params, &checked);
    }
    let (user, patient) = auto_choice(&sandbox, &params, &checked);
    axum::response::Redirect::to(&sandbox.state.auth.approve(checked, user, patient, now_ms())).into_response()
}

#[derive(Deserialize)]
pub(crate) struct Decision {
    #[serde(flatten)]
    params: app_auth::AuthorizeParams,
    decision: Option<String>,
    user: Option<String>,
    patient: Option<String>,
}

/// The approve page's answer: every check again (the form is the client's request), then the code.
pub(crate) async fn authorize_decision(State(sandbox): State<Sandbox>, body: Bytes) -> Response {
    let Ok(form) = serde_urlencoded::from_bytes::<Decision>(&body) else {
        return invalid_request();
    };
    let checked = match sandbox.state.auth.check_authorize(&form.params, &sandbox.base_url()) {
        Ok(checked) => checked,
        Err(Ok(back)) => return axum::response::Redirect::to(&back).into_response(),
        Err(Err(refusal)) => return oauth_reply(Err(refusal)),
    };
    if form.decision.as_deref() != Some("approve") {
        return axum::response::Redirect::to(&checked.deny()).into_response();
    }
    let known = |rtype: &str, reference: &str| {
        reference
            .strip_prefix(rtype)
            .and_then(|r| r.strip_prefix('/'))
            .is_some_and(|id| sandbox.state.db.read().is_ok_and(|db| db.exists(rtype, id)))
    };
    let user = match &checked.ehr_context {
        Some(c) => c.practitioner.clone(),
        None => match form.user.filter(|u| known("Practitioner", u)) {
            Some(u) => u,
            None => return oauth_reply(Err(auth::refuse(400, "invalid_request", "sign in as a known practitioner"))),
        },
    };
    let patient = match (checked.wants_patient, form.patient) {
        (true, Some(p)) if known("Patient", &p) => Some(p),
        (true, _) => return oauth_reply(Err(auth::refuse(400, "invalid_request", "pick a known patient"))),
        (false, _) => None,
    };
    axum::response::Redirect::to(&sandbox.state.auth.approve(checked, user, patient, now_ms())).into_response()
}

pub(crate) async fn token(State(sandbox): State<Sandbox>, body: Bytes) -> Response {
    // §8.23: an athena-like token endpoint takes 5 requests a minute (preview), then 429 until
    // the minute ends.
    if sandbox.state.personality == Personality::Athena {
        let now = now_ms();
        let minute = now / 60_000;
        if let Ok(mut window) = sandbox.state.token_minute.lock() {
            if window.0 != minute {
                *window = (minute, 0);
            }
            window.1 += 1;
            if window.1 > 5 {
                let wait = (((minute + 1) * 60_000 - now) + 999) / 1000;
                let mut response = (
                    StatusCode::TOO_MANY_REQUESTS,
                    axum::Json(json!({"error": "rate_limited", "error_description": "5 token requests a minute"})),
                )
                    .into_response();
                if let Ok(value) = HeaderValue::from_str(&wait.to_string()) {
                    response.headers_mut().insert(header::RETRY_AFTER, value);
                }
                return response;
            }
        }
    }
    let app_grant = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body).is_ok_and(|pairs| {
        pairs.iter().any(|(k, v)| k == "grant_type" && (v == "authorization_code" || v == "refresh_token"))
    });
    if app_grant {
        let Ok(request) = serde_urlencoded::from_bytes::<app_auth::AppTokenRequest>(&body) else {
            return invalid_request();
        };
        return oauth_reply(sandbox.state.auth.app_token(&request, &sandbox.base_url(), now_ms()));
    }
    let Ok(request) = serde_urlencoded::from_bytes::<auth::TokenRequest>(&body) else {
        return invalid_request();
    };
    oauth_reply(sandbox.state.auth.client_credentials(&request, &sandbox.token_url(), now_ms() / 1000))
}
