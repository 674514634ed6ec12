//! The HTTP face of Telechart: the versioned REST API (`/api/v1`) the telehealth platform calls,
//! `/metrics`, health.
//!
//! Invariant: handlers validate, call library crates and translate errors; the visit rules live
//! in `visit`, the SQL in `store`, EHR access in `ehr`.

mod analytics;
mod api;
mod auth;
mod avs;
mod break_glass;
mod care_plan;
mod care_plan_review;
mod charts;
mod consent;
mod dead_letters;
mod disclosure;
mod drafting;
mod econsent;
mod error;
mod launch;
mod login;
mod metrics_export;
mod notifications;
mod pages;
mod platform_events;
mod portal;
mod review;
mod survey;
mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use telechart_store::{Clock, Store};
use telechart_sync::{Connections, QueueSignal};

pub use auth::{Access, Caller, RouteSpec, SessionCaller};
pub use drafting::{Drafting, LlmEngine};
pub use error::ApiError;
pub use login::{Oidc, OidcSettings, SESSION_COOKIE};
pub use metrics_export::prometheus_handle;
pub use notifications::NotificationSecrets;
pub use tls::TlsSettings;

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub clock: Clock,
    pub identifier_system: String,
    pub connections: Connections,
    pub signal: QueueSignal,
    /// OpenID login for people; None when only API tokens are used.
    pub oidc: Option<Arc<Oidc>>,
    /// Which EHR connections show Telechart inside their own pages, and from which origins.
    pub embedding: Arc<Embedding>,
    /// Telechart's own external base URL (for SMART redirect URIs), e.g. `https://telechart.example`.
    pub public_url: Option<String>,
    /// How people's browser sessions (from an OpenID login or a SMART launch) behave.
    pub sessions: Arc<SessionPolicy>,
    /// Clinicians' EHR tokens from their launches, by session; in memory only, never stored.
    pub ehr_tokens: Arc<launch::EhrTokens>,
    /// Telehealth platforms: where events go, and whose signed events are accepted.
    pub platforms: telechart_sync::Platforms,
    /// EHR connections that send Subscription notifications, with their shared secrets.
    pub notification_secrets: Arc<NotificationSecrets>,
    /// The note drafter's engines.
    pub drafting: Arc<Drafting>,
    /// The tenant's compliance choices: consent policy where R4 leaves it open, break-glass span.
    pub compliance: Arc<Compliance>,
}

/// The tenant's compliance settings.
#[derive(Debug, Clone)]
pub struct Compliance {
    pub consent_policy: telechart_policy::consent::ConsentPolicy,
    /// How long a break-glass grant lasts.
    pub break_glass_minutes: i64,
}

impl Default for Compliance {
    fn default() -> Self {
        Compliance {
            consent_policy: telechart_policy::consent::ConsentPolicy::default(),
            break_glass_minutes: break_glass::DEFAULT_GRANT_MINUTES,
        }
    }
}

/// Limits and cookie flags of people's sessions, and which roles must prove a second factor.
#[derive(Debug, Clone)]
pub struct SessionPolicy {
    pub limits: telechart_store::SessionLimits,
    /// Mark cookies `Secure` (whenever the server is reached over HTTPS).
    pub secure_cookies: bool,
    /// Roles that must prove a second factor before any request is served.
    pub mfa_roles: Vec<telechart_policy::Role>,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        SessionPolicy {
            limits: telechart_store::SessionLimits { idle_ms: 30 * 60_000, absolute_ms: 12 * 3_600_000 },
            secure_cookies: false,
            mfa_roles: vec![
                telechart_policy::Role::Clinician,
                telechart_policy::Role::ComplianceOfficer,
                telechart_policy::Role::IntegrationAdmin,
            ],
        }
    }
}

impl SessionPolicy {
    pub fn requires_mfa(&self, role: telechart_policy::Role) -> bool {
        self.mfa_roles.contains(&role)
    }
}

/// EHR connections whose web pages frame Telechart: connection id → the origins allowed to.
/// They become CSP `frame-ancestors`, and a login begun for such a connection gets a session
/// cookie that lives in a cross-site frame (`SameSite=None; Secure; Partitioned`).
#[derive(Debug, Clone, Default)]
pub struct Embedding {
    pub origins_by_connection: std::collections::BTreeMap<String, Vec<String>>,
}

impl Embedding {
    /// The CSP `frame-ancestors` source list: every registered origin, or `'none'`.
    pub fn frame_ancestors(&self) -> String {
        let mut origins: Vec<&str> = self.origins_by_connection.values().flatten().map(String::as_str).collect();
        origins.sort_unstable();
        origins.dedup();
        if origins.is_empty() { "'none'".to_owned() } else { origins.join(" ") }
    }
}

fn routes() -> auth::Routes {
    api::routes()
        .merge(metrics_export::routes())
        .merge(analytics::routes())
        .merge(login::routes())
        .merge(launch::routes())
        .merge(review::routes())
        .merge(survey::routes())
        .merge(econsent::routes())
        .merge(break_glass::routes())
        .merge(care_plan::routes())
        .merge(portal::routes())
        .merge(care_plan_review::routes())
        .merge(dead_letters::routes())
        .merge(platform_events::routes())
        .merge(notifications::routes())
}

/// Every route with its method and the permission it requires, taken from the router's own
/// builder (the permission-matrix test walks this).
pub fn route_specs() -> Vec<RouteSpec> {
    routes().into_parts().1
}

pub fn router(state: AppState) -> Router {
    router_with(state, false)
}

fn router_with(state: AppState, https: bool) -> Router {
    // Install the recorder before any worker records, so no early sample is lost.
    prometheus_handle();
    let (router, _) = routes().into_parts();
    let csp: Arc<str> = Arc::from(format!("frame-ancestors {}", state.embedding.frame_ancestors()));
    router
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::authenticate))
        .layer(axum::middleware::from_fn(move |request, next| security_headers(https, csp.clone(), request, next)))
        .fallback(|| async { ApiError::NotFound { field: None, message: "no such endpoint".to_owned() } })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("TLS: {0}")]
    Tls(String),
}

/// A server listening on a socket.
pub struct RunningServer {
    pub addr: SocketAddr,
    pub base_url: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningServer {
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = self.task.await;
    }
}

/// Listens on `addr`: HTTPS when `tls` is given, else plain HTTP (the caller decides where
/// plain HTTP is acceptable).
pub async fn spawn(state: AppState, addr: SocketAddr, tls: Option<TlsSettings>) -> Result<RunningServer, ServerError> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| ServerError::Bind { addr, source })?;
    let addr = listener.local_addr().map_err(|source| ServerError::Bind { addr, source })?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let https = tls.is_some();
    let app = router_with(state, https);
    let task = match tls {
        Some(settings) => tokio::spawn(tls::serve_tls(listener, settings, app, rx)),
        None => tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        }),
    };
    let scheme = if https { "https" } else { "http" };
    Ok(RunningServer { addr, base_url: format!("{scheme}://{addr}"), shutdown: Some(tx), task })
}

/// Headers on every response: the API serves JSON that may hold PHI, so nothing is cached,
/// sniffed, framed or referred; HSTS once served over TLS.
async fn security_headers(
    https: bool,
    csp: Arc<str>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::{HeaderValue, header};
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // A page that loads its own script sets its policy; every other response loads nothing.
    // Either way, who may frame it is the deployment's.
    let own =
        headers.get(header::CONTENT_SECURITY_POLICY).and_then(|v| v.to_str().ok()).unwrap_or("default-src 'none'");
    if let Ok(value) = HeaderValue::from_str(&format!("{own}; {csp}")) {
        headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if https {
        headers
            .insert(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000; includeSubDomains"));
    }
    response
}
