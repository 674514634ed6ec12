//! The sandbox EHR: a real FHIR R4 server over HTTP that persists what it is sent, seeded with
//! Synthea patients and today's telehealth appointments, with injectable latency and faults.
//!
//! Invariant: used by `telechart sandbox`, `telechart demo`, benches and tests — never by a
//! production code path.

mod app_auth;
mod auth;
mod control;
mod db;
mod epic_search;
mod fhir_write;
mod personality;
mod search;
mod search_http;
mod seed;
mod types;
mod validate;
mod vendor_api;
pub use vendor_api::EventRun;
mod web_auth;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

pub use app_auth::{AppClient, LaunchContext};
pub use auth::BackendClient;
pub use personality::{CreateReply, Personality, Quirks, REFUSABLE};
pub use seed::CLINICIANS;
pub use types::{R4_RESOURCE_TYPES, is_r4_type};

use control::*;
use db::Db;
use vendor_api::*;
use web_auth::*;

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot seed the sandbox: {0}")]
    Seed(String),
    #[error("sandbox journal: {0}")]
    Journal(String),
    #[error("cannot bind the sandbox to {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Directory of Synthea transaction Bundles; without one, a few patients are generated.
    pub seed_dir: Option<PathBuf>,
    /// NDJSON journal: what the sandbox is sent survives a restart.
    pub data_file: Option<PathBuf>,
    /// The day the telehealth appointments are booked for.
    pub today: NaiveDate,
    pub appointments_per_patient: usize,
    /// Added to every FHIR request, to emulate a remote EHR.
    pub latency: Duration,
    /// SMART Backend Services clients the authorization server knows.
    pub backend_clients: Vec<BackendClient>,
    /// FHIR requests need an access token this sandbox issued (as real EHRs do).
    pub require_bearer: bool,
    /// Lifetime of issued access tokens (300 s, as many EHRs; shorter in benches).
    pub token_lifetime: Duration,
    /// SMART apps (public clients with PKCE) that may be launched.
    pub app_clients: Vec<AppClient>,
    /// The app's launch URL, which the schedule page's "Start video visit" opens.
    pub app_launch_url: Option<String>,
    /// Show the sign-in/approve page at authorize; off, requests are approved at once (tests).
    pub approve_page: bool,
    /// A new refresh token on every refresh (the old one retired); Epic and Oracle keep one.
    pub rotate_refresh_tokens: bool,
    /// Answer as an Epic-, Oracle Health- or athenahealth-like server (shared/VENDORS.md §8).
    pub personality: Personality,
}

impl SandboxConfig {
    pub fn new(today: NaiveDate) -> Self {
        SandboxConfig {
            seed_dir: None,
            data_file: None,
            today,
            appointments_per_patient: 4,
            latency: Duration::ZERO,
            backend_clients: Vec::new(),
            require_bearer: false,
            token_lifetime: Duration::from_secs(300),
            app_clients: Vec::new(),
            app_launch_url: None,
            approve_page: false,
            rotate_refresh_tokens: false,
            personality: Personality::Generic,
        }
    }

    /// `../shared/data/synthea` (or `shared/data/synthea`) from the working directory, if present.
    pub fn find_synthea() -> Option<PathBuf> {
        ["../shared/data/synthea", "shared/data/synthea"].into_iter().map(PathBuf::from).find(|p| p.is_dir())
    }
}

/// An injected fault: the next `count` matching requests answer `status` (and `Retry-After`).
/// With `afterCommit`, the write is kept first — the "committed but the response was lost" case.
/// A fault naming `method: "GET"` strikes reads and searches of its type (a chart read failing).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Fault {
    pub status: u16,
    #[serde(default = "one")]
    pub count: u32,
    #[serde(default)]
    pub retry_after: Option<u64>,
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub resource_type: Option<String>,
    #[serde(default)]
    pub after_commit: bool,
    /// Wait this long before replying: longer than the client's timeout, the reply is never read.
    #[serde(default)]
    pub delay_ms: Option<u64>,
    /// Cut the connection instead of finishing the reply (a reset: the status line may have
    /// gone out, the body never does).
    #[serde(default)]
    pub reset: bool,
}

fn one() -> u32 {
    1
}

struct SandboxState {
    db: RwLock<Db>,
    base_url: RwLock<String>,
    /// §8.13: the Oracle-like tenant, in the FHIR and the authorization URLs.
    tenant: Option<String>,
    latency_ms: AtomicU64,
    /// Off: like most EHRs, the identifiers a client mints are not kept on what it writes.
    keeps_client_identifiers: std::sync::atomic::AtomicBool,
    /// Every create accepted, as the client sent it: the EHR's own record of what it was asked
    /// to keep, which counts duplicates even where identifiers are not kept.
    accepted_creates: Mutex<Vec<(String, Value)>>,
    /// Requests allowed per second on the FHIR and vendor APIs (0: no limit), the current
    /// second's count, and how many requests were refused with a 429 for it.
    rate_limit: AtomicU64,
    rate_window: Mutex<(u64, u64)>,
    throttled: AtomicU64,
    /// Requests to the FHIR and vendor APIs let through (whether or not a limit is set).
    admitted: AtomicU64,
    faults: Mutex<VecDeque<Fault>>,
    auth: auth::AuthState,
    require_bearer: bool,
    app_launch_url: Option<String>,
    approve_page: bool,
    personality: Personality,
    /// Patients whose records need a break-the-glass in the EHR (§8.12).
    restricted: Mutex<std::collections::HashSet<String>>,
    /// Token requests in the current minute (minute since the epoch, count): §8.23.
    token_minute: Mutex<(i64, u32)>,
    /// HL7v2 messages taken over MLLP, in order.
    hl7_received: Mutex<Vec<String>>,
    /// Readings taken through athena's encounter vitals API.
    athena_vitals: Mutex<Vec<Value>>,
    /// Epic-like paging sessions: `sessionID` → the search's filters, page size and next offset.
    paging_sessions: Mutex<HashMap<String, epic_search::PagingSession>>,
    /// The next paging request finds its session expired (set by the control endpoint).
    expire_next_session: std::sync::atomic::AtomicBool,
}

#[derive(Clone)]
pub struct Sandbox {
    state: Arc<SandboxState>,
}

/// A sandbox serving on a socket. Dropping it does not stop it; call `shutdown`.
pub struct RunningSandbox {
    pub sandbox: Sandbox,
    pub addr: SocketAddr,
    /// The FHIR base URL, e.g. `http://127.0.0.1:4321/fhir` (Oracle-like: `…/r4/{tenant}`).
    pub fhir_base: String,
    /// Where the sandbox's own pages and control endpoints are, e.g. `http://127.0.0.1:4321`.
    pub root: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningSandbox {
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = self.task.await;
    }
}

/// The sandbox's own wall clock: it stands in for an external system, whose time is its own.
fn wall_clock() -> String {
    #[allow(clippy::disallowed_methods)]
    let now: DateTime<Utc> = Utc::now();
    now.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Sandbox {
    pub fn new(config: &SandboxConfig) -> Result<Sandbox, SandboxError> {
        let stamp = wall_clock();
        let (mut db, restored) = match &config.data_file {
            Some(path) => Db::with_journal(path)?,
            None => (Db::default(), false),
        };
        if !restored {
            match &config.seed_dir {
                Some(dir) => {
                    // §8.24: athena's ids carry the practice.
                    let athena = config.personality == Personality::Athena;
                    let patient_id = |uuid: &str, n: usize| {
                        if athena { format!("a-{ATHENA_PRACTICE}.E-{}", 5000 + n) } else { uuid.to_owned() }
                    };
                    seed::load_synthea(&mut db, dir, &stamp, &patient_id)?;
                }
                None => seed::generate_patients(&mut db, 4, &stamp)?,
            }
            // athena's ids carry the practice (§8.24).
            let quirks = config.personality.quirks();
            let encounter_id = |appointment: &str, n: usize| {
                if quirks.practice_apis { format!("a-{ATHENA_PRACTICE}.E-{n}") } else { format!("enc-{appointment}") }
            };
            seed::generate_appointments(&mut db, config.today, config.appointments_per_patient, &stamp, &encounter_id)?;
            // Epic- and athena-like EHRs open the encounter themselves; apps adopt it (§8.5).
            if quirks.encounter_owned_by_ehr {
                seed::generate_encounters(&mut db, &stamp, &encounter_id)?;
            }
        }
        let latency_ms = u64::try_from(config.latency.as_millis()).unwrap_or(u64::MAX);
        Ok(Sandbox {
            state: Arc::new(SandboxState {
                db: RwLock::new(db),
                base_url: RwLock::new(String::new()),
                tenant: (config.personality == Personality::Oracle).then(|| ORACLE_TENANT.to_owned()),
                latency_ms: AtomicU64::new(latency_ms),
                keeps_client_identifiers: std::sync::atomic::AtomicBool::new(true),
                accepted_creates: Mutex::default(),
                rate_limit: AtomicU64::new(0),
                rate_window: Mutex::default(),
                throttled: AtomicU64::new(0),
                admitted: AtomicU64::new(0),
                faults: Mutex::new(VecDeque::new()),
                auth: {
                    // §8.14: an Oracle-like server issues 570 s tokens, never rotates refresh
                    // tokens, and throttles refreshes less than a minute apart.
                    let oracle = config.personality == Personality::Oracle;
                    let lifetime = if oracle { Duration::from_secs(570) } else { config.token_lifetime };
                    let mut auth = auth::AuthState::new(
                        config.backend_clients.clone(),
                        config.app_clients.clone(),
                        lifetime,
                        config.rotate_refresh_tokens && !oracle,
                    );
                    if oracle {
                        auth.refresh_min_interval_ms = 60_000;
                    }
                    auth.epic_launch_keys = config.personality == Personality::Epic;
                    auth.backend_style = match config.personality {
                        Personality::Epic => auth::BackendStyle::Registered,
                        Personality::Oracle => auth::BackendStyle::FixedSyntax,
                        _ => auth::BackendStyle::Plain,
                    };
                    auth
                },
                require_bearer: config.require_bearer,
                app_launch_url: config.app_launch_url.clone(),
                approve_page: config.approve_page,
                personality: config.personality,
                restricted: Mutex::default(),
                token_minute: Mutex::default(),
                hl7_received: Mutex::default(),
                athena_vitals: Mutex::default(),
                paging_sessions: Mutex::default(),
                expire_next_session: std::sync::atomic::AtomicBool::new(false),
            }),
        })
    }

    pub fn router(&self) -> Router {
        let protected = Router::new()
            .route("/fhir/{rtype}", get(search_http::search_type).post(fhir_write::create))
            .route("/fhir/{rtype}/{id}", get(read).put(fhir_write::update).patch(fhir_write::patch))
            .route("/fhir/{rtype}/{id}/_history/{vid}", get(vread))
            .route_layer(axum::middleware::from_fn_with_state(self.clone(), require_token));
        Router::new()
            .route("/fhir/metadata", get(metadata))
            .merge(protected)
            .route("/fhir/.well-known/smart-configuration", get(smart_configuration))
            .route("/fhir/.well-known/openid-configuration", get(openid_configuration))
            .route("/auth/token", post(token))
            .route("/auth/authorize", get(authorize).post(authorize_decision))
            .route("/auth/jwks", get(jwks))
            .route("/ehr/schedule", get(schedule))
            .route("/ehr/launch/{appointment}", get(ehr_launch))
            .route("/_sandbox/faults", post(add_fault))
            .route("/_sandbox/latency", put(set_latency))
            .route("/_sandbox/stats", get(stats))
            .route("/_sandbox/fulfil/ServiceRequest/{id}", post(fulfil))
            .route("/_sandbox/merge", post(merge))
            .route("/v1/{practice}/patients/{patient}/documents/clinicaldocument", post(athena_document))
            .route("/v1/{practice}/chart/encounter/{encounter}/vitals", get(athena_vitals_list).post(athena_vitals_add))
            .route("/_sandbox/restrict/Patient/{id}", post(restrict))
            .route("/_sandbox/expire-paging-sessions", post(epic_search::expire_sessions))
            .fallback(|| async {
                outcome(StatusCode::NOT_FOUND, "not-found", None, "no such FHIR endpoint on this server")
            })
            .method_not_allowed_fallback(|| async {
                outcome(StatusCode::METHOD_NOT_ALLOWED, "not-supported", None, "this interaction is not supported here")
            })
            .with_state(self.clone())
    }

    pub async fn spawn(self, addr: SocketAddr) -> Result<RunningSandbox, SandboxError> {
        let listener =
            tokio::net::TcpListener::bind(addr).await.map_err(|source| SandboxError::Bind { addr, source })?;
        let addr = listener.local_addr().map_err(|source| SandboxError::Bind { addr, source })?;
        let root = format!("http://{addr}");
        let fhir_base = match &self.state.tenant {
            Some(tenant) => format!("{root}/r4/{tenant}"),
            None => format!("{root}/fhir"),
        };
        if let Ok(mut base) = self.state.base_url.write() {
            *base = fhir_base.clone();
        }
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        // §8.13: tenant URLs are rewritten onto the routes before routing.
        let app = tower::Layer::layer(&axum::middleware::from_fn_with_state(self.clone(), tenant_paths), self.router());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, axum::ServiceExt::<axum::extract::Request>::into_make_service(app))
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(RunningSandbox { sandbox: self, addr, fhir_base, root, shutdown: Some(tx), task })
    }

    /// Allows at most `per_second` requests each second (0: no limit); the rest get 429 with
    /// `Retry-After: 1`, like an EHR enforcing its quota.
    pub fn set_rate_limit(&self, per_second: u64) {
        self.state.rate_limit.store(per_second, Ordering::SeqCst);
    }

    /// How many requests the rate limit refused.
    pub fn throttled(&self) -> u64 {
        self.state.throttled.load(Ordering::SeqCst)
    }

    /// Requests to the FHIR and vendor APIs let through so far (the share of a limit used).
    pub fn admitted(&self) -> u64 {
        self.state.admitted.load(Ordering::SeqCst)
    }

    /// Counts a request against this second's limit: false when it is over.
    fn within_rate_limit(&self) -> bool {
        let limit = self.state.rate_limit.load(Ordering::SeqCst);
        if limit == 0 {
            self.state.admitted.fetch_add(1, Ordering::SeqCst);
            return true;
        }
        let second =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
        let Ok(mut window) = self.state.rate_window.lock() else { return true };
        if window.0 != second {
            *window = (second, 0);
        }
        window.1 += 1;
        if window.1 > limit {
            self.state.throttled.fetch_add(1, Ordering::SeqCst);
            false
        } else {
            self.state.admitted.fetch_add(1, Ordering::SeqCst);
            true
        }
    }

    pub fn set_latency(&self, latency: Duration) {
        self.state.latency_ms.store(u64::try_from(latency.as_millis()).unwrap_or(u64::MAX), Ordering::SeqCst);
    }

    pub fn inject(&self, fault: Fault) {
        if let Ok(mut faults) = self.state.faults.lock() {
            faults.push_back(fault);
        }
    }

    /// How many injected faults have yet to strike.
    pub fn faults_pending(&self) -> u32 {
        self.state.faults.lock().map(|f| f.iter().map(|f| f.count).sum()).unwrap_or(0)
    }

    /// Whether identifiers a client sends are kept on what it writes (most EHRs drop them).
    pub fn set_keeps_client_identifiers(&self, keep: bool) {
        self.state.keeps_client_identifiers.store(keep, Ordering::SeqCst);
    }

    pub(crate) fn keeps_client_identifiers(&self) -> bool {
        self.state.keeps_client_identifiers.load(Ordering::SeqCst)
    }

    pub(crate) fn record_accepted_create(&self, rtype: &str, as_sent: &Value) {
        if let Ok(mut log) = self.state.accepted_creates.lock() {
            log.push((rtype.to_owned(), as_sent.clone()));
        }
    }

    /// How many creates of `rtype` this EHR accepted whose body carried `system|value`: the
    /// duplicate count, whether or not the identifier was kept.
    pub fn accepted_creates_with_identifier(&self, rtype: &str, token: &str) -> usize {
        let Ok(log) = self.state.accepted_creates.lock() else { return 0 };
        log.iter().filter(|(t, body)| t == rtype && db::identifier_tokens(body).iter().any(|x| x == token)).count()
    }

    /// Every create this EHR accepted, in the order it accepted them: the resource type and the
    /// `system|value` identifiers the client sent (for duplicate and ordering checks at scale).
    pub fn accepted_create_log(&self) -> Vec<(String, Vec<String>)> {
        let Ok(log) = self.state.accepted_creates.lock() else { return Vec::new() };
        log.iter().map(|(t, body)| (t.clone(), db::identifier_tokens(body))).collect()
    }

    /// How many current resources of `rtype` carry the identifier `system|value`.
    pub fn count_with_identifier(&self, rtype: &str, token: &str) -> usize {
        self.state.db.read().map(|db| db.by_identifier(rtype, token).len()).unwrap_or(0)
    }

    /// The current version of every resource of `rtype` this EHR holds.
    pub fn resources_of(&self, rtype: &str) -> Vec<Value> {
        self.state.db.read().map(|db| db.all(rtype).map(|r| (**r).clone()).collect()).unwrap_or_default()
    }

    /// Ids of today's seeded telehealth appointments, in slot order.
    pub fn appointment_ids(&self) -> Vec<String> {
        let Ok(db) = self.state.db.read() else { return Vec::new() };
        let mut ids: Vec<String> = db
            .all("Appointment")
            .filter(|a| a["status"] == "booked")
            .filter_map(|a| a["id"].as_str().map(str::to_owned))
            .collect();
        ids.sort();
        ids
    }

    /// Registers an EHR launch (what the schedule page's button does) and returns its `launch`.
    pub fn register_launch(&self, context: LaunchContext) -> String {
        if self.state.auth.epic_launch_keys
            && let Some(appointment) = &context.appointment
        {
            // The EHR's own Encounter of the appointment goes in the launch token (§8.2).
            let encounter = self.state.db.read().ok().and_then(|db| {
                db.all("Encounter")
                    .find(|e| e["appointment"][0]["reference"] == appointment.as_str())
                    .and_then(|e| e["id"].as_str().map(str::to_owned))
            });
            if let (Some(encounter), Ok(mut map)) = (encounter, self.state.auth.launch_encounters.lock()) {
                map.insert(appointment.clone(), encounter);
            }
        }
        self.state.auth.register_launch(context)
    }

    /// Token requests received so far (the cache tests count them).
    pub fn token_requests(&self) -> u64 {
        self.state.auth.token_requests.load(Ordering::SeqCst)
    }

    /// The token endpoint, which client assertions must name as their audience.
    pub fn token_url(&self) -> String {
        self.auth_url("token")
    }

    /// The authorization server's `token`, `authorize` or `jwks` URL (Oracle-like: under the
    /// tenant, §8.13).
    pub(crate) fn auth_url(&self, what: &str) -> String {
        match &self.state.tenant {
            Some(tenant) => {
                let profile = format!("{}/tenants/{tenant}/protocols/oauth2/profiles/smart-v1", self.root_url());
                match what {
                    "authorize" => format!("{profile}/personas/provider/authorize"),
                    other => format!("{profile}/{other}"),
                }
            }
            None => format!("{}/auth/{what}", self.root_url()),
        }
    }

    fn base_url(&self) -> String {
        self.state.base_url.read().map(|b| b.clone()).unwrap_or_default()
    }

    /// The origin the sandbox serves on (its pages and control endpoints are under it).
    pub(crate) fn root_url(&self) -> String {
        let base = self.base_url();
        match base.find("/fhir").or_else(|| base.find("/r4/")) {
            Some(i) => base[..i].to_owned(),
            None => base,
        }
    }

    async fn delay(&self) {
        let ms = self.state.latency_ms.load(Ordering::SeqCst);
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }

    /// Takes the first queued fault matching this write, if any.
    fn take_fault(&self, method: &Method, rtype: &str) -> Option<Fault> {
        self.take_matching(|f| {
            f.method.as_deref().is_none_or(|m| m.eq_ignore_ascii_case(method.as_str()))
                && f.resource_type.as_deref().is_none_or(|t| t == rtype)
        })
    }

    /// Takes the first queued fault for a read or search of `rtype`: only a fault that names
    /// `GET` strikes reads, so write faults never land on a read.
    pub(crate) fn take_read_fault(&self, rtype: &str) -> Option<Fault> {
        self.take_matching(|f| {
            f.method.as_deref().is_some_and(|m| m.eq_ignore_ascii_case("GET"))
                && f.resource_type.as_deref().is_none_or(|t| t == rtype)
        })
    }

    fn take_matching(&self, matches: impl Fn(&Fault) -> bool) -> Option<Fault> {
        let mut faults = self.state.faults.lock().ok()?;
        let index = faults.iter().position(matches)?;
        let fault = faults.get_mut(index)?;
        fault.count = fault.count.saturating_sub(1);
        let taken = fault.clone();
        if fault.count == 0 {
            faults.remove(index);
        }
        Some(taken)
    }
}

const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

/// The Oracle-like personality's tenant (the GUID of Oracle's public sandbox).
pub const ORACLE_TENANT: &str = "ec2458f2-1e24-41c8-b71b-0e701af7583d";

/// §8.13: `/r4/{tenant}/…` and `/tenants/{tenant}/protocols/oauth2/profiles/smart-v1/…` reach
/// the FHIR and authorization routes when the tenant is this server's; any other tenant is
/// 403 "Tenant not valid or accessible".
async fn tenant_paths(
    State(sandbox): State<Sandbox>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = request.uri().path().to_owned();
    // The quota covers the EHR's APIs, not the test harness's control routes.
    if !path.starts_with("/_sandbox") && !sandbox.within_rate_limit() {
        let body = serde_json::json!({"resourceType": "OperationOutcome", "issue": [{"severity": "error",
            "code": "throttled", "diagnostics": "request quota exceeded"}]});
        let mut response = fhir(StatusCode::TOO_MANY_REQUESTS, &body);
        response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
        return response;
    }
    let (tenant, rest) = if let Some(rest) = path.strip_prefix("/r4/") {
        let (tenant, rest) = rest.split_once('/').unwrap_or((rest, ""));
        (tenant.to_owned(), format!("/fhir/{rest}"))
    } else if let Some(rest) = path.strip_prefix("/tenants/") {
        let (tenant, rest) = rest.split_once('/').unwrap_or((rest, ""));
        let rest = rest.trim_start_matches("protocols/oauth2/profiles/smart-v1/");
        let rest = rest.trim_start_matches("personas/provider/");
        (tenant.to_owned(), format!("/auth/{rest}"))
    } else {
        return next.run(request).await;
    };
    if sandbox.state.tenant.as_deref() != Some(tenant.as_str()) {
        let body = json!({"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "forbidden",
            "details": {"text": "Tenant not valid or accessible"}}]});
        return fhir(StatusCode::FORBIDDEN, &body);
    }
    let query = request.uri().query().map(|q| format!("?{q}")).unwrap_or_default();
    if let Ok(uri) = format!("{rest}{query}").parse() {
        *request.uri_mut() = uri;
    }
    next.run(request).await
}

/// The athena-like personality's practice id: in its ids (`a-195900.E-1`) and API paths.
pub const ATHENA_PRACTICE: &str = "195900";

/// A practice as athena's FHIR API names it (`ah-practice`, the practice extension).
pub(crate) fn athena_practice(practice: &str) -> String {
    format!("Organization/a-1.Practice-{practice}")
}

fn fhir(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    response
}

fn outcome(status: StatusCode, code: &str, expression: Option<&str>, message: &str) -> Response {
    let mut issue = json!({"severity": "error", "code": code, "diagnostics": message});
    if let Some(expression) = expression {
        issue["expression"] = json!([expression]);
    }
    fhir(status, &json!({"resourceType": "OperationOutcome", "issue": [issue]}))
}

/// An injected fault's reply, after its delay: a cut connection or an error status.
pub(crate) async fn strike(fault: &Fault) -> Response {
    if let Some(ms) = fault.delay_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if fault.reset {
        // A body that fails on its first read: hyper aborts the connection mid-reply.
        let cut = futures_util::stream::once(async {
            Err::<axum::body::Bytes, std::io::Error>(std::io::Error::other("injected reset"))
        });
        return (StatusCode::OK, axum::body::Body::from_stream(cut)).into_response();
    }
    fault_response(fault)
}

fn fault_response(fault: &Fault) -> Response {
    let status = StatusCode::from_u16(fault.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let code = match fault.status {
        429 => "throttled",
        502..=504 => "transient",
        _ => "exception",
    };
    let mut response = outcome(status, code, None, &format!("injected fault {}", fault.status));
    if let Some(seconds) = fault.retry_after
        && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
    {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

fn unknown_type(rtype: &str) -> Option<Response> {
    (!is_r4_type(rtype)).then(|| {
        outcome(StatusCode::NOT_FOUND, "not-supported", None, &format!("{rtype:?} is not an R4 resource type"))
    })
}

fn with_version_headers(mut response: Response, base: &str, resource: &Value) -> Response {
    let version = resource.pointer("/meta/versionId").and_then(Value::as_str).unwrap_or("1");
    let rtype = resource["resourceType"].as_str().unwrap_or_default();
    let id = resource["id"].as_str().unwrap_or_default();
    let headers = response.headers_mut();
    if let Ok(etag) = HeaderValue::from_str(&format!("W/\"{version}\"")) {
        headers.insert(header::ETAG, etag);
    }
    if let Ok(location) = HeaderValue::from_str(&format!("{base}/{rtype}/{id}/_history/{version}")) {
        headers.insert(header::LOCATION, location);
    }
    response
}

async fn metadata(State(sandbox): State<Sandbox>, headers: HeaderMap) -> Response {
    sandbox.delay().await;
    // §8.1: an Epic-like server answers XML unless JSON is asked for by name.
    let asks_json = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("json"));
    if sandbox.state.personality == Personality::Epic && !asks_json {
        let xml = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><CapabilityStatement xmlns=\"http://hl7.org/fhir\">\
             <status value=\"active\"/><date value=\"2026-11-26\"/><kind value=\"instance\"/>\
             <implementation><description value=\"Telechart sandbox EHR (Epic-like)\"/><url value=\"{}\"/></implementation>\
             <fhirVersion value=\"4.0.1\"/><format value=\"xml\"/><format value=\"json\"/></CapabilityStatement>",
            sandbox.base_url()
        );
        return ([(header::CONTENT_TYPE, "application/fhir+xml")], xml).into_response();
    }
    let writable = ["Encounter", "Observation", "DocumentReference", "Condition", "Appointment", "Patient"];
    let resources: Vec<Value> = R4_RESOURCE_TYPES
        .iter()
        .filter(|t| !matches!(**t, "Bundle" | "OperationOutcome" | "Parameters"))
        .map(|t| {
            let mut interactions =
                vec![json!({"code": "read"}), json!({"code": "vread"}), json!({"code": "search-type"})];
            if writable.contains(t) {
                interactions.push(json!({"code": "create"}));
                interactions.push(json!({"code": "update"}));
            }
            json!({"type": t, "interaction": interactions, "versioning": "versioned-update",
                   "readHistory": false, "updateCreate": false, "conditionalCreate": false,
                   "searchParam": [
                     {"name": "_id", "type": "token"}, {"name": "_lastUpdated", "type": "date"},
                     {"name": "identifier", "type": "token"}, {"name": "patient", "type": "reference"},
                     {"name": "date", "type": "date"}, {"name": "status", "type": "token"}]})
        })
        .collect();
    let security = json!({
        "service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "SMART-on-FHIR"}]}],
        "extension": [{"url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris", "extension": [
            {"url": "token", "valueUri": sandbox.auth_url("token")},
            {"url": "authorize", "valueUri": sandbox.auth_url("authorize")}]}]
    });
    fhir(
        StatusCode::OK,
        &json!({
            "resourceType": "CapabilityStatement", "status": "active", "date": "2026-11-26",
            "publisher": "Telechart sandbox EHR", "kind": "instance",
            "software": {"name": "telechart-sandbox", "version": env!("CARGO_PKG_VERSION")},
            "implementation": {"description": "Telechart sandbox EHR (plain FHIR R4)", "url": sandbox.base_url()},
            "fhirVersion": "4.0.1", "format": ["application/fhir+json"],
            "rest": [{"mode": "server", "security": security, "resource": resources}]
        }),
    )
}

async fn read(State(sandbox): State<Sandbox>, Path((rtype, id)): Path<(String, String)>) -> Response {
    sandbox.delay().await;
    if let Some(r) = unknown_type(&rtype) {
        return r;
    }
    if let Some(fault) = sandbox.take_read_fault(&rtype) {
        return strike(&fault).await;
    }
    let found = sandbox.state.db.read().ok().and_then(|db| db.latest(&rtype, &id).cloned());
    match found {
        Some(resource) => {
            if let Some(refusal) = sandbox.break_the_glass(&rtype, &resource) {
                return refusal;
            }
            with_version_headers(fhir(StatusCode::OK, &resource), &sandbox.base_url(), &resource)
        }
        None => outcome(StatusCode::NOT_FOUND, "not-found", None, &format!("{rtype}/{id} does not exist")),
    }
}

async fn vread(State(sandbox): State<Sandbox>, Path((rtype, id, vid)): Path<(String, String, String)>) -> Response {
    sandbox.delay().await;
    if let Some(r) = unknown_type(&rtype) {
        return r;
    }
    let Ok(version) = vid.parse::<usize>() else {
        return outcome(StatusCode::BAD_REQUEST, "invalid", None, &format!("version {vid:?} is not a number"));
    };
    let found = sandbox.state.db.read().ok().and_then(|db| db.version(&rtype, &id, version).cloned());
    match found {
        Some(resource) => with_version_headers(fhir(StatusCode::OK, &resource), &sandbox.base_url(), &resource),
        None => {
            outcome(StatusCode::NOT_FOUND, "not-found", None, &format!("{rtype}/{id}/_history/{vid} does not exist"))
        }
    }
}

/// With `require_bearer`, a FHIR request needs a live access token issued here.
async fn require_token(
    State(sandbox): State<Sandbox>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if !sandbox.state.require_bearer {
        return next.run(request).await;
    }
    let now = now_ms();
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
    if let Some(token) = token.filter(|t| sandbox.state.auth.valid_token(t, now)) {
        // Backend tokens reach only the APIs their scopes name (§8.4, §8.15).
        if let Some(scope) = sandbox.state.auth.token_scope(token) {
            let rtype =
                request.uri().path().trim_start_matches("/fhir/").split('/').next().unwrap_or_default().to_owned();
            let write = !matches!(*request.method(), Method::GET | Method::HEAD);
            if !auth::scopes_cover(&scope, &rtype, write) {
                return match sandbox.state.auth.backend_style {
                    auth::BackendStyle::Registered => StatusCode::FORBIDDEN.into_response(),
                    auth::BackendStyle::FixedSyntax => (
                        StatusCode::FORBIDDEN,
                        axum::Json(json!({"error": "urn:cerner:error:oauth2:resource-access:insufficient-scopes",
                            "error_description": format!("the token's scopes do not allow this {rtype} request")})),
                    )
                        .into_response(),
                    auth::BackendStyle::Plain => outcome(
                        StatusCode::FORBIDDEN,
                        "forbidden",
                        None,
                        &format!("the token's scopes do not allow this {rtype} request"),
                    ),
                };
            }
        }
        return next.run(request).await;
    }
    let mut response = outcome(StatusCode::UNAUTHORIZED, "login", None, "a valid bearer access token is required");
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer error=\"invalid_token\""));
    response
}
