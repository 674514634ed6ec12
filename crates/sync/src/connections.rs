//! FHIR clients per EHR connection, built from the stored connection rows on first use.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use telechart_ehr::{BackendServices, FhirClient, SigningAlg, SigningKey, VendorProfile, WireTap};
use telechart_policy::EgressRegistry;
use telechart_store::{Clock, Store};

use crate::SyncError;

#[derive(Clone)]
pub struct Connections {
    store: Store,
    clients: Arc<RwLock<HashMap<(String, String), FhirClient>>>,
    timeout: Duration,
    tap: Option<WireTap>,
    egress: Arc<EgressRegistry>,
    clock: Clock,
    /// One Backend Services token cache per connection, shared by every client of it.
    backends: Arc<tokio::sync::Mutex<BackendCache>>,
}

/// (tenant, connection) → its token cache.
type BackendCache = HashMap<(String, String), Arc<BackendServices>>;

/// A connection's Backend Services settings (`settings.backend`).
#[derive(Debug, Clone, serde::Deserialize)]
struct BackendSettings {
    client_id: String,
    /// Default: the `token_endpoint` of `{base}/.well-known/smart-configuration`.
    #[serde(default)]
    token_url: Option<String>,
    scope: String,
}

impl Connections {
    pub fn new(store: Store, timeout: Duration) -> Self {
        Connections {
            store,
            clients: Arc::default(),
            timeout,
            tap: None,
            egress: Arc::default(),
            clock: Clock::system(),
            backends: Arc::default(),
        }
    }

    /// May PHI (or a request that leads to it) go to `url`?
    pub fn check_egress(&self, url: &str) -> Result<(), SyncError> {
        self.egress.check(url, self.clock.now().date_naive()).map(|_| ()).map_err(|e| SyncError::Egress(e.to_string()))
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The destinations PHI may go to (each with its BAA); loopback aside, nothing else.
    pub fn with_egress(mut self, egress: EgressRegistry) -> Self {
        self.egress = Arc::new(egress);
        self
    }

    /// Records every write body as sent (the demo's `--export-sent`).
    pub fn with_tap(mut self, tap: WireTap) -> Self {
        self.tap = Some(tap);
        self
    }

    async fn backend(
        &self,
        tenant_id: &str,
        connection_id: &str,
        base_url: &str,
        settings: BackendSettings,
        auth: &telechart_ehr::AuthProfile,
    ) -> Result<Arc<BackendServices>, SyncError> {
        // Scopes are configured in either SMART syntax and sent in the EHR's.
        let scope = auth.render_scopes(&settings.scope);
        let key = (tenant_id.to_owned(), connection_id.to_owned());
        let mut backends = self.backends.lock().await;
        if let Some(b) = backends.get(&key) {
            return Ok(b.clone());
        }
        let token_url = match settings.token_url {
            Some(url) => url,
            None => {
                // Discovery is a request too: the destination must be covered before it is made.
                self.egress
                    .check(base_url, self.clock.now().date_naive())
                    .map_err(|e| SyncError::Egress(e.to_string()))?;
                telechart_ehr::discover_token_endpoint(base_url, self.timeout).await?
            }
        };
        self.egress.check(&token_url, self.clock.now().date_naive()).map_err(|e| SyncError::Egress(e.to_string()))?;
        let newest = self.store.signing_keys().await?.into_iter().next().ok_or_else(|| {
            SyncError::UnknownConnection(format!(
                "{connection_id} uses Backend Services but no signing key exists: run `telechart keys backend-generate`"
            ))
        })?;
        let alg = match newest.alg.as_str() {
            "RS384" => SigningAlg::Rs384,
            "ES384" => SigningAlg::Es384,
            other => {
                return Err(SyncError::UnknownConnection(format!(
                    "signing key {} has unknown alg {other}",
                    newest.kid
                )));
            }
        };
        let signing = SigningKey::from_pkcs8(&newest.kid, alg, &newest.pkcs8)?;
        let services = Arc::new(BackendServices::new(&settings.client_id, &token_url, &scope, signing)?);
        backends.insert(key, services.clone());
        Ok(services)
    }

    pub async fn client(&self, tenant_id: &str, connection_id: &str) -> Result<FhirClient, SyncError> {
        let key = (tenant_id.to_owned(), connection_id.to_owned());
        if let Some(client) = self.clients.read().ok().and_then(|c| c.get(&key).cloned()) {
            // A BAA can end while its client is cached: checked again on every use.
            self.check_egress(client.base_url())?;
            return Ok(client);
        }
        let row = self
            .store
            .connection(tenant_id, connection_id)
            .await?
            .ok_or_else(|| SyncError::UnknownConnection(connection_id.to_owned()))?;
        // Checked before any client exists: no byte of PHI leaves without a BAA behind it.
        self.egress
            .check(&row.base_url, self.clock.now().date_naive())
            .map_err(|e| SyncError::Egress(e.to_string()))?;
        let profile = VendorProfile::parse(&row.profile)?;
        let mut client = FhirClient::new(&row.base_url, profile, self.timeout)?;
        let settings: serde_json::Value = serde_json::from_str(&row.settings).unwrap_or_default();
        client = client.with_tenant(connection_tenant(&row));
        let mllp = settings.get("mllp").and_then(serde_json::Value::as_str).map(str::to_owned);
        if let Some(address) = &mllp {
            // HL7v2 carries PHI like any FHIR write: the listener must be covered too.
            self.egress
                .check(&format!("mllp://{address}"), self.clock.now().date_naive())
                .map_err(|e| SyncError::Egress(e.to_string()))?;
        }
        client = client.with_mllp(mllp);
        // The EHR's published quota, e.g. `{"quota": {"per_minute": 600, "burst": 10}}`.
        let quota = |key: &str| {
            settings
                .pointer(&format!("/quota/{key}"))
                .and_then(serde_json::Value::as_u64)
                .and_then(|v| u32::try_from(v).ok())
        };
        client = client.with_quota(quota("per_minute"), quota("burst"));
        // Requests in flight before any "slow down" teaches fewer (`max_in_flight`).
        if let Some(max) = settings.get("max_in_flight").and_then(serde_json::Value::as_u64) {
            client = client.with_max_in_flight(usize::try_from(max).unwrap_or(usize::MAX));
        }
        if let Some(backend) = settings.get("backend").filter(|b| !b.is_null()) {
            let backend: BackendSettings = serde_json::from_value(backend.clone())
                .map_err(|e| SyncError::UnknownConnection(format!("{connection_id}: settings.backend: {e}")))?;
            let auth: telechart_ehr::AuthProfile = match settings.get("auth").filter(|a| !a.is_null()) {
                Some(a) => serde_json::from_value(a.clone())
                    .map_err(|e| SyncError::UnknownConnection(format!("{connection_id}: settings.auth: {e}")))?,
                None => telechart_ehr::AuthProfile::default(),
            };
            let services = self.backend(tenant_id, connection_id, &row.base_url, backend, &auth).await?;
            let clock = self.clock.clone();
            client = client.with_backend_auth(services, Arc::new(move || clock.now()));
        }
        if let Some(tap) = &self.tap {
            client = client.with_tap(tap.clone());
        }
        // Callers racing on first use each built one: all must share the first kept, or each
        // would pace (and spend the quota) on its own.
        match self.clients.write() {
            Ok(mut clients) => Ok(clients.entry(key).or_insert(client).clone()),
            Err(_) => Ok(client),
        }
    }
}

/// The connection's tenant (`auth.tenant`: a tenant GUID in the path, a practice id), which the EHR's
/// searches and own APIs need.
pub fn connection_tenant(row: &telechart_store::ConnectionRow) -> Option<String> {
    let settings: serde_json::Value = serde_json::from_str(&row.settings).unwrap_or_default();
    settings.pointer("/auth/tenant").and_then(serde_json::Value::as_str).map(str::to_owned)
}
