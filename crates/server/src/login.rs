//! OpenID Connect login for Telechart's own users: discovery, authorization code + PKCE (S256),
//! state and nonce, id_token verification (signature from the provider's JWKS, issuer, audience,
//! expiry, nonce), then a session cookie. A second factor is proven by the id_token's `amr`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, Scope, TokenResponse,
};
use serde::{Deserialize, Serialize};
use telechart_policy::Role;
use tokio::sync::RwLock;

use crate::auth::{Access, Routes, SessionCaller};
use crate::{ApiError, AppState};

pub const SESSION_COOKIE: &str = "telechart_session";

/// How Telechart logs people in. `Debug` leaves the client secret out.
#[derive(Clone)]
pub struct OidcSettings {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    /// `https://telechart.example/auth/callback`, registered with the provider.
    pub redirect_url: String,
    /// Scopes requested besides `openid`, e.g. `profile` and SMART's `fhirUser`.
    pub scopes: Vec<String>,
}

impl std::fmt::Debug for OidcSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcSettings")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("redirect_url", &self.redirect_url)
            .finish()
    }
}

/// Login state shared by the handlers: settings and the provider's discovered metadata.
pub struct Oidc {
    pub settings: OidcSettings,
    http: reqwest::Client,
    metadata: RwLock<Option<CoreProviderMetadata>>,
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Oidc({})", self.settings.issuer)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct OidcHttpError(String);

type HttpFuture = Pin<Box<dyn Future<Output = Result<openidconnect::HttpResponse, OidcHttpError>> + Send>>;

impl Oidc {
    pub fn new(settings: OidcSettings) -> Result<Arc<Oidc>, ApiError> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(15))
            .build()
            .map_err(|e| ApiError::Internal(format!("OIDC HTTP client: {e}")))?;
        Ok(Arc::new(Oidc { settings, http, metadata: RwLock::new(None) }))
    }

    /// The HTTP client openidconnect calls (discovery, JWKS, token endpoint).
    fn client_fn(&self) -> impl Fn(openidconnect::HttpRequest) -> HttpFuture + use<> {
        let http = self.http.clone();
        move |request: openidconnect::HttpRequest| {
            let http = http.clone();
            Box::pin(async move {
                let (parts, body) = request.into_parts();
                let mut outgoing = http.request(parts.method, parts.uri.to_string()).body(body);
                for (name, value) in &parts.headers {
                    outgoing = outgoing.header(name, value);
                }
                let response = outgoing.send().await.map_err(|e| OidcHttpError(format!("OpenID provider: {e}")))?;
                let mut builder = openidconnect::http::Response::builder().status(response.status());
                for (name, value) in response.headers() {
                    builder = builder.header(name, value);
                }
                let bytes = response.bytes().await.map_err(|e| OidcHttpError(format!("OpenID provider: {e}")))?;
                builder.body(bytes.to_vec()).map_err(|e| OidcHttpError(e.to_string()))
            }) as HttpFuture
        }
    }

    async fn metadata(&self) -> Result<CoreProviderMetadata, ApiError> {
        if let Some(m) = self.metadata.read().await.as_ref() {
            return Ok(m.clone());
        }
        let issuer = IssuerUrl::new(self.settings.issuer.clone())
            .map_err(|e| ApiError::Internal(format!("oidc.issuer: {e}")))?;
        let http = self.client_fn();
        let discovered = CoreProviderMetadata::discover_async(issuer, &http)
            .await
            .map_err(|e| ApiError::BadGateway(format!("OpenID discovery failed: {e}")))?;
        *self.metadata.write().await = Some(discovered.clone());
        Ok(discovered)
    }
}

pub(crate) fn routes() -> Routes {
    Routes::new()
        .add(Method::GET, "/auth/login", Access::SignIn, login)
        .add(Method::GET, "/auth/callback", Access::SignIn, callback)
        .add(Method::GET, "/auth/session", Access::SignIn, session)
        .add(Method::POST, "/auth/logout", Access::SignIn, logout)
        .add(Method::POST, "/auth/totp/enroll", Access::SignIn, totp_enroll)
        .add(Method::POST, "/auth/totp/verify", Access::SignIn, totp_verify)
}

/// RFC 6238 as authenticator apps implement it: SHA-1, 6 digits, 30 s steps, one step of skew.
fn totp(secret: &totp_rs::Secret, account: &str) -> Result<totp_rs::Totp, ApiError> {
    totp_rs::Builder::new()
        .with_secret(secret.clone())
        .with_issuer(Some("Telechart"))
        .with_account_name(account)
        .build()
        .map_err(|e| ApiError::Internal(format!("TOTP: {e}")))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Enrolment {
    /// For the authenticator app (as a QR code or a link).
    otpauth_uri: String,
    /// The same secret in base32, for manual entry.
    secret: String,
}

async fn totp_enroll(State(state): State<AppState>, caller: SessionCaller) -> Result<Json<Enrolment>, ApiError> {
    let user =
        state.store.user(&caller.session.tenant_id, &caller.session.user_id).await?.ok_or(ApiError::Unauthorized)?;
    let secret = totp_rs::Secret::generate();
    let base32 = secret.to_base32();
    if !state.store.enroll_totp(&user, &telechart_store::Phi::new(base32.clone())).await? {
        return Err(ApiError::Conflict {
            field: None,
            message: "a second factor is already enrolled; an administrator must reset it".to_owned(),
        });
    }
    let uri = totp(&secret, &user.subject)?.to_url().map_err(|e| ApiError::Internal(format!("TOTP: {e}")))?;
    Ok(Json(Enrolment { otpauth_uri: uri, secret: base32 }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TotpCode {
    code: String,
}

/// Five wrong codes in a row lock verification for five minutes.
const TOTP_FAILURE_LIMIT: i64 = 5;
const TOTP_LOCK_MS: i64 = 5 * 60_000;

async fn totp_verify(
    State(state): State<AppState>,
    caller: SessionCaller,
    body: axum::body::Bytes,
) -> Result<StatusCode, ApiError> {
    let body: TotpCode = crate::api::parse(&body)?;
    let (tenant, user_id) = (&caller.session.tenant_id, &caller.session.user_id);
    let now = state.clock.now_ms();
    let totp_state = state.store.totp_state(tenant, user_id).await?.ok_or(ApiError::Unauthorized)?;
    if totp_state.locked_until > now {
        return Err(ApiError::TooManyAttempts);
    }
    let Some(secret) = totp_state.secret else {
        return Err(ApiError::Conflict {
            field: None,
            message: "enrol a second factor first (/auth/totp/enroll)".to_owned(),
        });
    };
    let secret = totp_rs::Secret::try_from_base32(secret.expose())
        .map_err(|_| ApiError::Internal("stored TOTP secret".to_owned()))?;
    let totp = totp(&secret, user_id)?;
    let step = totp.check(body.code.trim(), u64::try_from(now / 1000).unwrap_or(0)).and_then(|s| i64::try_from(s).ok());
    let accepted = match step {
        Some(step) => state.store.accept_totp_step(tenant, user_id, step).await?,
        None => false,
    };
    if !accepted {
        state.store.reject_totp(tenant, user_id, TOTP_FAILURE_LIMIT, TOTP_LOCK_MS, now).await?;
        return Err(ApiError::Forbidden("the code is wrong, expired or already used".to_owned()));
    }
    state.store.confirm_session_mfa(&caller.secret).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn oidc(state: &AppState) -> Result<Arc<Oidc>, ApiError> {
    state
        .oidc
        .clone()
        .ok_or_else(|| ApiError::NotFound { field: None, message: "OpenID login is not configured".to_owned() })
}

#[derive(Deserialize)]
struct LoginParams {
    #[serde(default)]
    login_hint: Option<String>,
    /// The EHR connection whose page frames this login, if any.
    #[serde(default)]
    connection: Option<String>,
}

async fn login(State(state): State<AppState>, Query(params): Query<LoginParams>) -> Result<Response, ApiError> {
    let oidc = oidc(&state)?;
    let embedded = match params.connection.as_deref() {
        None => false,
        Some(id) if state.embedding.origins_by_connection.contains_key(id) => true,
        Some(id) => return Err(ApiError::invalid("connection", format!("connection {id:?} does not embed Telechart"))),
    };
    let metadata = oidc.metadata().await?;
    let redirect =
        RedirectUrl::new(oidc.settings.redirect_url.clone()).map_err(|e| ApiError::Internal(e.to_string()))?;
    let client = CoreClient::from_provider_metadata(metadata, ClientId::new(oidc.settings.client_id.clone()), None)
        .set_redirect_uri(redirect);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut request = client
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .add_scopes(oidc.settings.scopes.iter().cloned().map(Scope::new))
        .set_pkce_challenge(challenge);
    if let Some(hint) = params.login_hint.as_deref().filter(|h| !h.is_empty() && h.len() <= 256) {
        request = request.add_extra_param("login_hint", hint.to_owned());
    }
    let (url, csrf, nonce) = request.url();
    state.store.begin_login(csrf.secret(), verifier.secret(), nonce.secret(), embedded, state.clock.now_ms()).await?;
    Ok(Redirect::to(url.as_str()).into_response())
}

#[derive(Deserialize)]
struct CallbackParams {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

/// Ten minutes from authorization request to callback.
const LOGIN_MAX_AGE_MS: i64 = 10 * 60_000;

async fn callback(State(state): State<AppState>, Query(params): Query<CallbackParams>) -> Result<Response, ApiError> {
    let oidc = oidc(&state)?;
    if let Some(error) = params.error {
        return Err(ApiError::Forbidden(format!("the OpenID provider refused the login: {error}")));
    }
    let (Some(code), Some(login_state)) = (params.code, params.state) else {
        return Err(ApiError::invalid("code", "the callback needs code and state"));
    };
    let now = state.clock.now_ms();
    let Some(pending) = state.store.finish_login(&login_state, LOGIN_MAX_AGE_MS, now).await? else {
        return Err(ApiError::invalid("state", "unknown, used or expired login state; start again at /auth/login"));
    };
    let (verifier, nonce) = (pending.pkce_verifier, pending.nonce);
    let metadata = oidc.metadata().await?;
    let redirect =
        RedirectUrl::new(oidc.settings.redirect_url.clone()).map_err(|e| ApiError::Internal(e.to_string()))?;
    let client = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(oidc.settings.client_id.clone()),
        Some(ClientSecret::new(oidc.settings.client_secret.clone())),
    )
    .set_redirect_uri(redirect);
    let http = oidc.client_fn();
    let tokens = client
        .exchange_code(AuthorizationCode::new(code))
        .map_err(|e| ApiError::Internal(format!("OpenID token endpoint: {e}")))?
        .set_pkce_verifier(PkceCodeVerifier::new(verifier))
        .request_async(&http)
        .await
        .map_err(|_| ApiError::Unauthorized)?;
    // Whatever is wrong with the id_token (signature, algorithm, key, issuer, audience, expiry,
    // nonce), the answer is the same bare 401: a forger learns nothing.
    let id_token = tokens.id_token().ok_or(ApiError::Unauthorized)?;
    let claims =
        id_token.claims(&client.id_token_verifier(), &Nonce::new(nonce)).map_err(|_| ApiError::Unauthorized)?;
    let issuer = claims.issuer().as_str().to_owned();
    let subject = claims.subject().as_str().to_owned();
    let amr: Vec<String> = claims.auth_method_refs().into_iter().flatten().map(|a| a.as_str().to_owned()).collect();
    let second_factor = proves_second_factor(&amr);
    let Some(user) = state.store.user_by_subject(&issuer, &subject).await? else {
        return Err(ApiError::Forbidden("no Telechart user is provisioned for this login".to_owned()));
    };
    if let Some(fhir_user) = fhir_user_claim(&id_token.to_string()) {
        state.store.link_fhir_user(&user.tenant_id, &user.id, &fhir_user).await?;
    }
    let (secret, _) = state.store.create_session(&user, second_factor, state.sessions.limits, now).await?;
    state
        .store
        .audit(
            &telechart_store::AuditEntry {
                tenant_id: user.tenant_id.clone(),
                actor: format!("user:{}", user.id),
                action: "session.login".to_owned(),
                entity_type: "user".to_owned(),
                entity_id: user.id.clone(),
                visit_id: None,
                phi: false,
                detail: format!("amr {}", amr.join(" ")),
                ..Default::default()
            },
            now,
        )
        .await?;
    let mut response = Redirect::to("/auth/session").into_response();
    set_cookie(&mut response, &session_cookie(&secret, &state.sessions, pending.embedded));
    Ok(response)
}

/// Whether an id_token's `amr` (RFC 8176) says the person proved a second factor.
pub(crate) fn proves_second_factor(amr: &[String]) -> bool {
    amr.iter().any(|m| matches!(m.as_str(), "otp" | "mfa" | "hwk" | "swk" | "sms" | "fpt" | "face" | "pop"))
}

/// A top-level session keeps `SameSite=Lax`. A session living in an EHR's cross-site frame needs
/// `SameSite=None; Secure; Partitioned` (CHIPS); SameSite then no longer guards it, the CSRF
/// token does.
/// The `fhirUser` claim (SMART) of an id_token that has already been verified. openidconnect's
/// core claims do not model it, so it is read from the verified token's payload.
fn fhir_user_claim(jwt: &str) -> Option<String> {
    use base64::Engine;
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let value = claims.get("fhirUser")?.as_str()?;
    // Keep the `Type/id` tail of an absolute fhirUser URL.
    telechart_fhir::parse_reference(value).map(|(t, id)| format!("{t}/{id}"))
}

pub(crate) fn session_cookie(secret: &str, sessions: &crate::SessionPolicy, embedded: bool) -> String {
    if embedded {
        return format!("{SESSION_COOKIE}={secret}; Path=/; HttpOnly; Secure; SameSite=None; Partitioned");
    }
    let secure = if sessions.secure_cookies { "; Secure" } else { "" };
    format!("{SESSION_COOKIE}={secret}; Path=/; HttpOnly; SameSite=Lax{secure}")
}

pub(crate) fn set_cookie(response: &mut Response, cookie: &str) {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

/// The session cookie's secret, if the request carries one.
pub(crate) fn cookie_secret(headers: &HeaderMap) -> Option<String> {
    cookie_named(headers, SESSION_COOKIE)
}

/// The value of the cookie `wanted`, if the request carries it.
pub(crate) fn cookie_named(headers: &HeaderMap, wanted: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == wanted)
        .map(|(_, value)| value.to_owned())
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SessionView {
    user: String,
    tenant: String,
    role: String,
    mfa: bool,
    mfa_required: bool,
    /// Send back as `X-CSRF-Token` on every state-changing request made with this session.
    csrf_token: String,
}

async fn session(State(state): State<AppState>, caller: SessionCaller) -> Result<Json<SessionView>, ApiError> {
    let s = caller.session;
    let role: Role = s.role.parse().map_err(|_| ApiError::Unauthorized)?;
    Ok(Json(SessionView {
        user: s.user_id,
        tenant: s.tenant_id,
        role: s.role,
        mfa: s.mfa == 1,
        mfa_required: state.sessions.requires_mfa(role),
        csrf_token: s.csrf_token,
    }))
}

async fn logout(State(state): State<AppState>, caller: SessionCaller) -> Result<Response, ApiError> {
    state.store.end_session(&caller.secret, state.clock.now_ms()).await?;
    state.ehr_tokens.forget(&caller.secret);
    let mut response = StatusCode::NO_CONTENT.into_response();
    let secure = if state.sessions.secure_cookies { "; Secure" } else { "" };
    set_cookie(&mut response, &format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{secure}"));
    set_cookie(
        &mut response,
        &format!("{SESSION_COOKIE}=; Path=/; HttpOnly; Secure; SameSite=None; Partitioned; Max-Age=0"),
    );
    Ok(response)
}
