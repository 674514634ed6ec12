//! The FHIR R4 REST client: read, search (following `next` links), create and versioned update.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{ACCEPT, CONTENT_TYPE, ETAG, HeaderMap, IF_MATCH, LOCATION};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use telechart_fhir::{Bundle, parse_reference};

use crate::{Answer, EhrError, Lane, Pacing, RetryAfter, VendorProfile};

const FHIR_JSON: &str = "application/fhir+json";

/// One request body exactly as it went on the wire (for `telechart demo --export-sent`).
#[derive(Debug, Clone)]
pub struct SentRequest {
    pub method: String,
    pub url: String,
    pub body: Vec<u8>,
}

/// Records write bodies as sent. Off unless asked for: bodies are PHI.
#[derive(Debug, Clone, Default)]
pub struct WireTap(Arc<Mutex<Vec<SentRequest>>>);

impl WireTap {
    pub fn take(&self) -> Vec<SentRequest> {
        self.0.lock().map(|mut v| std::mem::take(&mut *v)).unwrap_or_default()
    }

    fn record(&self, method: &Method, url: &str, body: &[u8]) {
        if let Ok(mut v) = self.0.lock() {
            v.push(SentRequest { method: method.to_string(), url: url.to_owned(), body: body.to_vec() });
        }
    }
}

/// What the EHR kept after a create or update.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    pub id: String,
    pub version: Option<String>,
    /// The stored resource, when the EHR returned it.
    pub resource: Option<Value>,
}

/// A resource as read, with its version for a later `If-Match`.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned {
    pub resource: Value,
    pub version: Option<String>,
}

/// Where "now" comes from for token expiry (the caller's clock).
pub type NowFn = Arc<dyn Fn() -> chrono::DateTime<chrono::Utc> + Send + Sync>;

#[derive(Clone)]
pub struct FhirClient {
    base: String,
    http: reqwest::Client,
    pub profile: VendorProfile,
    tap: Option<WireTap>,
    max_pages: usize,
    auth: Option<(Bearer, NowFn)>,
    /// The tenant (practice) the connection is for, where the EHR's URLs carry one.
    tenant: Option<String>,
    /// `host:port` of the EHR's HL7v2 MLLP listener, where the connection has one.
    mllp: Option<String>,
    /// The EHR's published request quota (a token bucket shared by every clone of this client):
    /// requests wait for it instead of meeting a 429.
    quota: Option<Arc<governor::DefaultDirectRateLimiter>>,
    /// Requests in flight to this EHR, adapted to its answers, shared by every clone.
    pacing: Arc<Pacing>,
    /// The lane this clone's requests wait in.
    lane: Lane,
}

/// Requests in flight to one EHR before any "slow down" teaches a lower figure.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 32;

/// Where a request's access token comes from: the system's own (Backend Services) or the
/// clinician's from a launch.
#[derive(Clone)]
enum Bearer {
    Backend(Arc<crate::BackendServices>),
    User(Arc<crate::UserTokens>),
}

impl std::fmt::Debug for FhirClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FhirClient({}, {})", self.base, self.profile.name)
    }
}

impl FhirClient {
    pub fn new(base_url: &str, profile: VendorProfile, timeout: Duration) -> Result<Self, EhrError> {
        let parsed = url::Url::parse(base_url).map_err(|_| EhrError::BadBaseUrl(base_url.to_owned()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(EhrError::BadBaseUrl(base_url.to_owned()));
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(5).min(timeout))
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|e| EhrError::BadBaseUrl(format!("{base_url}: {e}")))?;
        Ok(FhirClient {
            base: base_url.trim_end_matches('/').to_owned(),
            http,
            profile,
            tap: None,
            max_pages: 20,
            auth: None,
            tenant: None,
            mllp: None,
            quota: None,
            pacing: Pacing::new(DEFAULT_MAX_IN_FLIGHT),
            lane: Lane::Clinical,
        })
    }

    /// Every request carries a Backend Services access token.
    pub fn with_backend_auth(mut self, backend: Arc<crate::BackendServices>, now: NowFn) -> Self {
        self.auth = Some((Bearer::Backend(backend), now));
        self
    }

    /// Every request carries the launching clinician's access token, refreshed as needed.
    pub fn with_user_auth(mut self, tokens: Arc<crate::UserTokens>, now: NowFn) -> Self {
        self.auth = Some((Bearer::User(tokens), now));
        self
    }

    pub fn with_mllp(mut self, address: Option<String>) -> Self {
        self.mllp = address;
        self
    }

    /// The EHR's MLLP listener, for the HL7v2 fallback.
    pub fn mllp(&self) -> Option<&str> {
        self.mllp.as_deref()
    }

    /// Keeps every request of this client (and its clones) within `per_minute` requests a
    /// minute, in bursts of at most `burst`: the quota an EHR publishes (athena-like). None or 0:
    /// no quota.
    pub fn with_quota(mut self, per_minute: Option<u32>, burst: Option<u32>) -> Self {
        self.quota = per_minute.and_then(std::num::NonZeroU32::new).map(|rate| {
            let burst = burst.and_then(std::num::NonZeroU32::new).unwrap_or(std::num::NonZeroU32::MIN);
            Arc::new(governor::RateLimiter::direct(governor::Quota::per_minute(rate).allow_burst(burst)))
        });
        self
    }

    /// At most `max` requests in flight to this EHR (clones share it); fewer while it says
    /// "slow down" (AIMD, see [`Pacing`]).
    pub fn with_max_in_flight(mut self, max: usize) -> Self {
        self.pacing = Pacing::new(max);
        self
    }

    /// The same connection, its requests waiting in `lane` (clinical before inbound before
    /// backfill) for a slot.
    pub fn in_lane(&self, lane: Lane) -> Self {
        FhirClient { lane, ..self.clone() }
    }

    pub fn lane(&self) -> Lane {
        self.lane
    }

    pub fn pacing(&self) -> &Arc<Pacing> {
        &self.pacing
    }

    /// Waits for a request slot in this client's lane, then for the EHR's quota.
    async fn slot(&self) -> crate::Slot {
        let slot = self.pacing.acquire(self.lane).await;
        if let Some(quota) = &self.quota {
            quota.until_ready().await;
        }
        slot
    }

    pub fn with_tenant(mut self, tenant: Option<String>) -> Self {
        self.tenant = tenant;
        self
    }

    /// One PDF through the EHR's document API (a planned fallback); returns the document id.
    pub async fn upload_document(
        &self,
        upload: &crate::DocumentUpload,
        patient_id: &str,
        title: &str,
        pdf: &[u8],
    ) -> Result<Written, EhrError> {
        use base64::Engine;
        let path = upload.path.replace("{patient}", self.profile.native_id(patient_id));
        let form = serde_urlencoded::to_string([
            ("departmentid", "1"),
            ("documentsubclass", upload.document_class),
            ("attachmenttype", "PDF"),
            ("internalnote", title),
            ("autoclose", "true"),
            ("attachmentcontents", &base64::engine::general_purpose::STANDARD.encode(pdf)),
        ])
        .map_err(|e| EhrError::NotSupported(e.to_string()))?;
        let body = self.vendor_call(Method::POST, &path, Some(form), "document").await?;
        let id = id_field(&body["clinicaldocumentid"]).ok_or_else(|| EhrError::Protocol {
            method: "upload",
            resource_type: "document".into(),
            reason: "no clinicaldocumentid in the reply".into(),
        })?;
        Ok(Written { id, version: None, resource: None })
    }

    /// An encounter's vital-sign readings through the EHR's vitals API (a planned fallback).
    /// `encounter` is the EHR's FHIR Encounter id; returns the ids of the readings kept, joined
    /// by commas, and the readings as sent (keyed by the EHR's clinical element ids).
    pub async fn upload_vitals(
        &self,
        upload: &crate::VitalsUpload,
        encounter: &str,
        readings: &[crate::hl7v2::VitalReading<'_>],
    ) -> Result<(Written, Value), EhrError> {
        let sent = upload.readings(readings)?;
        let form = serde_urlencoded::to_string([("vitals", serde_json::json!([sent]).to_string())])
            .map_err(|e| EhrError::NotSupported(e.to_string()))?;
        let path = upload.encounter_path(self.profile.native_id(encounter));
        let body = self.vendor_call(Method::POST, &path, Some(form), "vitals").await?;
        let ids: Vec<String> = body["vitalids"].as_array().into_iter().flatten().filter_map(id_field).collect();
        if ids.len() != readings.len() {
            return Err(EhrError::Protocol {
                method: "upload",
                resource_type: "vitals".into(),
                reason: format!("{} readings sent, {} vital ids in the reply", readings.len(), ids.len()),
            });
        }
        Ok((Written { id: ids.join(","), version: None, resource: None }, sent))
    }

    /// The readings of an encounter as the EHR's vitals API lists them, in the order of `ids`.
    pub async fn read_vitals(
        &self,
        upload: &crate::VitalsUpload,
        encounter: &str,
        ids: &[&str],
    ) -> Result<Value, EhrError> {
        let path = upload.encounter_path(self.profile.native_id(encounter));
        let body = self.vendor_call(Method::GET, &path, None, "vitals").await?;
        let all = body["readings"].as_array().cloned().unwrap_or_default();
        Ok(Value::Array(
            ids.iter()
                .map(|id| {
                    all.iter().find(|r| id_field(&r["vitalid"]).as_deref() == Some(*id)).cloned().unwrap_or(Value::Null)
                })
                .collect(),
        ))
    }

    /// A call to the EHR's own (non-FHIR) API under its origin, `{tenant}` in `path` filled in;
    /// a form body when given. Its JSON errors map to the same taxonomy as FHIR's.
    async fn vendor_call(
        &self,
        method: Method,
        path: &str,
        form: Option<String>,
        what: &'static str,
    ) -> Result<Value, EhrError> {
        let tenant = self.tenant.as_deref().ok_or_else(|| {
            EhrError::NotSupported(format!("the {what} API needs the connection's tenant (practice)"))
        })?;
        let origin = url::Url::parse(&self.base)
            .map(|u| u.origin().ascii_serialization())
            .map_err(|_| EhrError::BadBaseUrl(self.base.clone()))?;
        let url = format!("{origin}{}", path.replace("{tenant}", tenant));
        let mut slot = self.slot().await;
        let mut request = self.http.request(method.clone(), &url);
        if let Some(token) = self.bearer().await? {
            request = request.bearer_auth(token);
        }
        if let Some(form) = form {
            if let Some(tap) = &self.tap {
                tap.record(&method, &url, form.as_bytes());
            }
            request = request.header(CONTENT_TYPE, "application/x-www-form-urlencoded").body(form);
        }
        let verb = if method == Method::GET { "read" } else { "upload" };
        let response = request.send().await.map_err(|e| EhrError::OutcomeUnknown {
            method: verb,
            resource_type: what.into(),
            reason: e.to_string(),
            retry_after: None,
        })?;
        let status = response.status();
        let retry_after = crate::RetryAfter::from_headers(response.headers());
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let slow_down = status == StatusCode::TOO_MANY_REQUESTS || json_says_slow_down(&body);
        slot.answer(answer(slow_down, retry_after));
        drop(slot);
        if status.is_success() && body.get("error").is_none() && body["success"] != Value::Bool(false) {
            return Ok(body);
        }
        let message = body["error"]
            .as_str()
            .or_else(|| body["errormessage"].as_str())
            .or_else(|| body["detailedmessage"].as_str())
            .unwrap_or("refused")
            .to_owned();
        let code = status.as_u16();
        // 429 and 503 say the request was not handled (RFC 9110 §15.6.4), and a failed read
        // changed nothing: retried as they are. Other 5xx to a write leave its fate unknown, and
        // these APIs cannot be searched for it.
        let not_handled = slow_down || code == 503 || (status.is_server_error() && method == Method::GET);
        Err(match code {
            _ if not_handled => EhrError::Throttled {
                method: verb,
                resource_type: what.into(),
                status: code,
                retry_after,
                message,
                slow_down,
            },
            500..=599 => {
                EhrError::OutcomeUnknown { method: verb, resource_type: what.into(), reason: message, retry_after }
            }
            _ => EhrError::Refused { method: verb, resource_type: what.into(), status: code, message },
        })
    }

    pub fn with_tap(mut self, tap: WireTap) -> Self {
        self.tap = Some(tap);
        self
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The server's CapabilityStatement (`GET /metadata`, as JSON).
    pub async fn capability_statement(&self) -> Result<Value, EhrError> {
        let url = format!("{}/metadata", self.base);
        let (status, headers, body) = self.send(Method::GET, "read", "CapabilityStatement", &url, None, None).await?;
        check_status("read", "CapabilityStatement", status, &headers, &body, false)?;
        parse_json("read", "CapabilityStatement", &body)
    }

    pub async fn read(&self, resource_type: &str, id: &str) -> Result<Versioned, EhrError> {
        let url = format!("{}/{resource_type}/{id}", self.base);
        let (status, headers, body) = self.send(Method::GET, "read", resource_type, &url, None, None).await?;
        check_status("read", resource_type, status, &headers, &body, false)?;
        let resource = parse_json("read", resource_type, &body)?;
        let version = etag_version(&headers).or_else(|| meta_version(&resource));
        Ok(Versioned { resource, version })
    }

    /// Searches and follows `next` links (up to a page limit), deduplicating by id and keeping the
    /// latest copy, since some EHRs repeat an id on a later page.
    pub async fn search(&self, resource_type: &str, params: &[(&str, &str)]) -> Result<Vec<Value>, EhrError> {
        // The parameter this EHR wants on every search (its practice), first.
        let scope = match self.profile.search_scope {
            Some((name, template)) => {
                let tenant = self.tenant.as_deref().ok_or_else(|| {
                    EhrError::NotSupported(format!("searches here need {name}: set the connection's auth.tenant"))
                })?;
                Some((name, template.replace("{tenant}", tenant)))
            }
            None => None,
        };
        let mut all: Vec<(&str, &str)> = Vec::with_capacity(params.len() + 1);
        if let Some((name, value)) = &scope {
            all.push((name, value.as_str()));
        }
        all.extend_from_slice(params);
        let query = serde_urlencoded::to_string(&all)
            .map_err(|e| EhrError::NotSupported(format!("search parameters cannot be encoded: {e}")))?;
        let first = format!("{}/{resource_type}?{query}", self.base);
        let mut url = first.clone();
        let mut found: Vec<Value> = Vec::new();
        // Paging sessions that expire (a refusal on a later page) restart from the first page,
        // twice at most; what came before is kept, de-duplicated by id.
        let mut restarts = if self.profile.paging == crate::Paging::ExpiringSession { 2 } else { 0 };
        let mut page = 0;
        while page < self.max_pages {
            let (status, headers, body) = self.send(Method::GET, "search", resource_type, &url, None, None).await?;
            if let Err(e) = check_status("search", resource_type, status, &headers, &body, false) {
                if url != first && restarts > 0 && matches!(e, EhrError::Refused { status: 400..=499, .. }) {
                    tracing::info!(
                        resource_type,
                        status = status.as_u16(),
                        "paging session expired; the search starts again"
                    );
                    restarts -= 1;
                    url = first.clone();
                    continue;
                }
                return Err(e);
            }
            let bundle: Bundle = serde_json::from_slice(&body).map_err(|e| EhrError::Protocol {
                method: "search",
                resource_type: resource_type.to_owned(),
                reason: format!("not a Bundle: {e}"),
            })?;
            for resource in bundle.matches() {
                let id = resource.get("id");
                found.retain(|r| id.is_none() || r.get("id") != id);
                found.push(resource.clone());
            }
            match bundle.next_link() {
                Some(next) => url = next.to_owned(),
                None => return Ok(found),
            }
            page += 1;
        }
        Ok(found)
    }

    /// Resources of `resource_type` carrying the identifier `system|value`, searched within
    /// `patient` when given (some EHRs search clinical types only within a patient). Results
    /// are checked for the identifier here too: an EHR that ignores a parameter it does not
    /// support would otherwise return every resource of the patient.
    pub async fn find_by_identifier(
        &self,
        resource_type: &str,
        token: &str,
        patient: Option<&str>,
    ) -> Result<Vec<Value>, EhrError> {
        let mut params = vec![("identifier", token)];
        if let Some(patient) = patient {
            params.insert(0, ("patient", patient));
        }
        let (system, value) = token.split_once('|').unwrap_or(("", token));
        let found = self.search(resource_type, &params).await?;
        Ok(found
            .into_iter()
            .filter(|r| {
                r["identifier"].as_array().into_iter().flatten().any(|i| {
                    i["value"].as_str() == Some(value) && (system.is_empty() || i["system"].as_str() == Some(system))
                })
            })
            .collect())
    }

    pub async fn create(&self, resource_type: &str, resource: &Value) -> Result<Written, EhrError> {
        let url = format!("{}/{resource_type}", self.base);
        let body = serde_json::to_vec(resource).map_err(|e| EhrError::NotSupported(e.to_string()))?;
        let (status, headers, reply) = self.send(Method::POST, "create", resource_type, &url, Some(body), None).await?;
        check_status("create", resource_type, status, &headers, &reply, true)?;
        written("create", resource_type, &headers, &reply, None)
    }

    /// `PUT` with `If-Match` when a version is known; a stale version is a [`EhrError::VersionConflict`].
    pub async fn update(
        &self,
        resource_type: &str,
        id: &str,
        resource: &Value,
        if_match: Option<&str>,
    ) -> Result<Written, EhrError> {
        let url = format!("{}/{resource_type}/{id}", self.base);
        let body = serde_json::to_vec(resource).map_err(|e| EhrError::NotSupported(e.to_string()))?;
        let etag = if_match.map(|v| format!("W/\"{v}\""));
        let (status, headers, reply) = self.send(Method::PUT, "update", resource_type, &url, Some(body), etag).await?;
        check_status("update", resource_type, status, &headers, &reply, true)?;
        written("update", resource_type, &headers, &reply, Some(id))
    }

    /// The access token every request carries, if the connection has one.
    async fn bearer(&self) -> Result<Option<String>, EhrError> {
        let Some((bearer, now)) = &self.auth else { return Ok(None) };
        Ok(Some(match bearer {
            Bearer::Backend(backend) => backend.access_token(now()).await?,
            Bearer::User(tokens) => tokens.access_token(now()).await?,
        }))
    }

    /// JSON Patch (`application/json-patch+json`) with `If-Match` when a version is known.
    pub async fn patch(
        &self,
        resource_type: &str,
        id: &str,
        operations: &Value,
        if_match: Option<&str>,
    ) -> Result<Written, EhrError> {
        let url = format!("{}/{resource_type}/{id}", self.base);
        let body = serde_json::to_vec(operations).map_err(|e| EhrError::NotSupported(e.to_string()))?;
        let mut request = self
            .http
            .request(Method::PATCH, &url)
            .header(ACCEPT, FHIR_JSON)
            .header(CONTENT_TYPE, "application/json-patch+json");
        if let Some(v) = if_match {
            request = request.header(IF_MATCH, format!("W/\"{v}\""));
        }
        if let Some(token) = self.bearer().await? {
            request = request.bearer_auth(token);
        }
        if let Some(tap) = &self.tap {
            tap.record(&Method::PATCH, &url, &body);
        }
        let response = request.body(body).send().await.map_err(|e| EhrError::OutcomeUnknown {
            method: "patch",
            resource_type: resource_type.to_owned(),
            reason: e.to_string(),
            retry_after: None,
        })?;
        let status = response.status();
        let headers = response.headers().clone();
        let reply = response.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
        check_status("patch", resource_type, status, &headers, &reply, true)?;
        written("patch", resource_type, &headers, &reply, Some(id))
    }

    async fn send(
        &self,
        method: Method,
        op: &'static str,
        resource_type: &str,
        url: &str,
        body: Option<Vec<u8>>,
        if_match: Option<String>,
    ) -> Result<(StatusCode, HeaderMap, Vec<u8>), EhrError> {
        let mut slot = self.slot().await;
        let mut request = self.http.request(method.clone(), url).header(ACCEPT, FHIR_JSON);
        if let Some(token) = self.bearer().await? {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            if let Some(tap) = &self.tap {
                tap.record(&method, url, &body);
            }
            request = request.header(CONTENT_TYPE, FHIR_JSON).header("Prefer", "return=representation").body(body);
        }
        if let Some(etag) = if_match {
            request = request.header(IF_MATCH, etag);
        }
        let is_write = method != Method::GET;
        let response = request.send().await.map_err(|e| transport_error(op, resource_type, &e, is_write))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(|e| transport_error(op, resource_type, &e, is_write))?.to_vec();
        let slow_down = status == StatusCode::TOO_MANY_REQUESTS || outcome_says_slow_down(&body);
        slot.answer(answer(slow_down, RetryAfter::from_headers(&headers)));
        Ok((status, headers, body))
    }
}

fn transport_error(op: &'static str, resource_type: &str, err: &reqwest::Error, is_write: bool) -> EhrError {
    // A refused connection never reached the EHR; anything later may have.
    if err.is_connect() || !is_write {
        return EhrError::Unreachable { method: op, resource_type: resource_type.to_owned(), reason: describe(err) };
    }
    EhrError::OutcomeUnknown {
        method: op,
        resource_type: resource_type.to_owned(),
        reason: describe(err),
        retry_after: None,
    }
}

/// reqwest's message without the URL (URLs can carry PHI in query strings).
fn describe(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        "timed out".to_owned()
    } else if err.is_connect() {
        "connection failed".to_owned()
    } else if err.is_body() || err.is_decode() {
        "the reply body was cut short".to_owned()
    } else {
        "the connection failed mid-request".to_owned()
    }
}

/// What a refusal says: each issue's diagnostics, else its `details` text or code, else its
/// code (vendors fill different ones); a non-FHIR JSON error's `error`; else the size.
fn outcome_message(body: &[u8]) -> String {
    let Ok(reply) = serde_json::from_slice::<Value>(body) else {
        return format!("{} bytes of non-FHIR reply", body.len());
    };
    if reply["resourceType"] != "OperationOutcome" {
        return match reply["error"].as_str() {
            Some(error) => format!("non-FHIR error {error}"),
            None => format!("{} bytes of non-FHIR reply", body.len()),
        };
    }
    let issues: Vec<String> = reply["issue"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            let detail = i["diagnostics"]
                .as_str()
                .or_else(|| i["details"]["text"].as_str())
                .or_else(|| i["details"]["coding"][0]["code"].as_str())
                .or_else(|| i["code"].as_str())
                .unwrap_or("no detail");
            detail.to_owned()
        })
        .collect();
    issues.join("; ")
}

/// Whether an OperationOutcome says "slow down": FHIR's `throttled` issue (Oracle answers
/// 429 with it; others put it under a 4xx or 5xx), or Epic's 4135 ("Please try again
/// tomorrow", its daily document-query cap).
fn outcome_says_slow_down(body: &[u8]) -> bool {
    if body.is_empty() || body.len() > 64 * 1024 {
        return false;
    }
    serde_json::from_slice::<Value>(body).is_ok_and(|outcome| json_says_slow_down(&outcome))
}

fn json_says_slow_down(reply: &Value) -> bool {
    reply["resourceType"] == "OperationOutcome"
        && reply["issue"].as_array().into_iter().flatten().any(|issue| {
            issue["code"] == "throttled"
                || issue["details"]["coding"].as_array().into_iter().flatten().any(|c| c["code"] == "4135")
        })
}

/// What an answer tells the connection's pacing.
fn answer(slow_down: bool, retry_after: Option<RetryAfter>) -> Answer {
    if !slow_down {
        return Answer::Handled;
    }
    Answer::SlowDown(retry_after.map(|r| r.delay_from(chrono::DateTime::from(std::time::SystemTime::now()))))
}

/// Whether an OperationOutcome says the record is restricted (break-the-glass): Epic's 4130
/// and 4131, or FHIR's `suppressed` issue with a break-the-glass detail.
fn restricted_record(body: &[u8]) -> bool {
    let Ok(outcome) = serde_json::from_slice::<Value>(body) else { return false };
    outcome["issue"].as_array().into_iter().flatten().any(|issue| {
        let codes: Vec<&str> =
            issue["details"]["coding"].as_array().into_iter().flatten().filter_map(|c| c["code"].as_str()).collect();
        codes.iter().any(|c| matches!(*c, "4130" | "4131" | "BTG"))
            || (issue["code"] == "suppressed" && issue["severity"] != "information")
    })
}

fn check_status(
    op: &'static str,
    resource_type: &str,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    is_write: bool,
) -> Result<(), EhrError> {
    if status.is_success() {
        return Ok(());
    }
    let code = status.as_u16();
    let retry_after = RetryAfter::from_headers(headers);
    let message = outcome_message(body);
    let resource_type = resource_type.to_owned();
    if restricted_record(body) {
        return Err(EhrError::BreakGlassRequired { method: op, resource_type, status: code, message });
    }
    // A "slow down" in the vendor's own words was not acted on, whatever its status says.
    if code == 429 || outcome_says_slow_down(body) {
        return Err(EhrError::Throttled {
            method: op,
            resource_type,
            status: code,
            retry_after,
            message,
            slow_down: true,
        });
    }
    Err(match code {
        409 | 412 => EhrError::VersionConflict { method: op, resource_type, status: code, message },
        408 | 423 => {
            EhrError::Throttled { method: op, resource_type, status: code, retry_after, message, slow_down: false }
        }
        500..=599 if is_write => EhrError::OutcomeUnknown {
            method: op,
            resource_type,
            reason: format!("HTTP {code}: {message}"),
            retry_after,
        },
        500..=599 => {
            EhrError::Throttled { method: op, resource_type, status: code, retry_after, message, slow_down: false }
        }
        _ => EhrError::Refused { method: op, resource_type, status: code, message },
    })
}

fn parse_json(op: &'static str, resource_type: &str, body: &[u8]) -> Result<Value, EhrError> {
    serde_json::from_slice(body).map_err(|e| EhrError::Protocol {
        method: op,
        resource_type: resource_type.to_owned(),
        reason: format!("not JSON: {e}"),
    })
}

fn etag_version(headers: &HeaderMap) -> Option<String> {
    let raw = headers.get(ETAG)?.to_str().ok()?;
    Some(raw.trim().trim_start_matches("W/").trim_matches('"').to_owned()).filter(|v| !v.is_empty())
}

fn meta_version(resource: &Value) -> Option<String> {
    resource.pointer("/meta/versionId").and_then(Value::as_str).map(str::to_owned)
}

/// The id and version from `Location` (`…/Type/id/_history/n`), the ETag, or the returned body.
fn written(
    op: &'static str,
    resource_type: &str,
    headers: &HeaderMap,
    body: &[u8],
    known_id: Option<&str>,
) -> Result<Written, EhrError> {
    let resource: Option<Value> = if body.is_empty() { None } else { serde_json::from_slice(body).ok() };
    let location = headers.get(LOCATION).and_then(|v| v.to_str().ok());
    let location_id = location.and_then(parse_reference).map(|(_, id)| id.to_owned());
    let location_version =
        location.and_then(|l| l.split("/_history/").nth(1)).map(|v| v.trim_end_matches('/').to_owned());
    let body_id = resource.as_ref().and_then(|r| r.get("id")).and_then(Value::as_str).map(str::to_owned);
    let id = location_id.or(body_id).or(known_id.map(str::to_owned)).ok_or_else(|| EhrError::Protocol {
        method: op,
        resource_type: resource_type.to_owned(),
        reason: "the EHR returned neither a Location nor a resource id".to_owned(),
    })?;
    let version = etag_version(headers).or(location_version).or_else(|| resource.as_ref().and_then(meta_version));
    Ok(Written { id, version, resource })
}

/// An id the EHR's own API gives as a string or a number.
fn id_field(value: &Value) -> Option<String> {
    value.as_str().map(str::to_owned).or_else(|| value.as_i64().map(|n| n.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(code: &str, detail_code: Option<&str>) -> Vec<u8> {
        let mut issue = serde_json::json!({"severity": "error", "code": code, "diagnostics": "x"});
        if let Some(detail) = detail_code {
            issue["details"] = serde_json::json!({"coding": [{"system": "urn:oid:1.2.840.114350.1.13.0.1.7.2.657369", "code": detail}]});
        }
        serde_json::to_vec(&serde_json::json!({"resourceType": "OperationOutcome", "issue": [issue]})).unwrap()
    }

    fn status_of(code: u16, body: &[u8], is_write: bool) -> EhrError {
        let status = StatusCode::from_u16(code).unwrap();
        check_status("create", "Observation", status, &HeaderMap::new(), body, is_write).unwrap_err()
    }

    #[test]
    fn a_vendors_slow_down_is_throttling_whatever_its_status() {
        // Oracle: 429 with `throttled`; others put `throttled` under a 503 or a 400; Epic's
        // 4135 "Please try again tomorrow" is its daily cap.
        for (status, body) in [
            (429, outcome("throttled", None)),
            (503, outcome("throttled", None)),
            (400, outcome("throttled", None)),
            (400, outcome("processing", Some("4135"))),
            (500, outcome("exception", Some("4135"))),
        ] {
            let err = status_of(status, &body, true);
            assert_eq!(err.kind(), crate::ErrorKind::Throttled, "{status}: {err}");
            // Not acted on: retried as it is, never reconciled as a maybe-committed write.
            assert!(matches!(err.class(), crate::FailureClass::Transient { .. }), "{status}: {err}");
        }
        // A plain 503 is unavailability, and a 500 to a write may have committed.
        assert_eq!(status_of(503, &outcome("transient", None), false).kind(), crate::ErrorKind::Transient);
        assert_eq!(status_of(500, &outcome("exception", None), true).kind(), crate::ErrorKind::OutcomeUnknown);
        assert_eq!(
            answer(true, Some(RetryAfter::Delay(Duration::from_secs(2)))),
            Answer::SlowDown(Some(Duration::from_secs(2)))
        );
        assert_eq!(answer(false, None), Answer::Handled);
    }
}
