//! The audit alert runner: evaluates each tenant's chained audit records in order with the
//! rules engine (`telechart_audit::AlertEngine`), resolving what a record does not carry — the
//! visit's patient, and whether the person has a visit with them — keeps the alerts with the
//! tenant's cursor, and sends them to the configured sinks (an NDJSON file; a webhook through the
//! egress registry, HMAC-signed like platform events). An alert carries ids and counts only.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;
pub use telechart_audit::{Alert, AlertRule, AlertRules};
use telechart_audit::{AlertEngine, Observed, PersonAccess};
use telechart_policy::EgressRegistry;
use telechart_store::{AlertRow, AuditRow, Clock, Store};

use crate::SyncError;

const HOUR_MS: i64 = 3_600_000;
const PAGE: i64 = 1_000;

/// Where alerts go, besides the list compliance officers read.
#[derive(Debug, Clone)]
pub enum AlertSink {
    /// One JSON object per line, appended.
    File(PathBuf),
    /// POSTed as JSON; signed (`telechart-signature: t=…,v1=HMAC-SHA256`) when a secret is set.
    Webhook { url: String, secret: Option<Vec<u8>> },
}

/// One tenant's rolling rule state and how far it has read.
struct TenantState {
    engine: AlertEngine,
    read_to: i64,
}

pub struct AlertRunner {
    store: Store,
    clock: Clock,
    rules: AlertRules,
    sinks: Vec<AlertSink>,
    egress: EgressRegistry,
    http: reqwest::Client,
    tenants: HashMap<String, TenantState>,
    /// visit id → its patient reference (tenant, visit).
    patients: HashMap<(String, String), Option<String>>,
    /// person → the patients they have visits with; refreshed when a patient is not found there.
    relationships: HashMap<(String, String), Option<HashSet<String>>>,
    /// The KPI bands, how long each breach has lasted, and when they were last looked at.
    kpi_bands: Vec<telechart_analytics::bands::Band>,
    band_watch: telechart_analytics::bands::BandWatch,
    bands_evaluated_at: Option<i64>,
}

/// KPI bands are computed over windows of an hour or more: once a minute is often enough.
const BAND_EVERY_MS: i64 = 60_000;

impl AlertRunner {
    pub fn new(
        store: Store,
        clock: Clock,
        rules: AlertRules,
        sinks: Vec<AlertSink>,
        egress: EgressRegistry,
    ) -> Result<Self, SyncError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| SyncError::Egress(format!("alert client: {e}")))?;
        Ok(AlertRunner {
            store,
            clock,
            rules,
            sinks,
            egress,
            http,
            tenants: HashMap::new(),
            patients: HashMap::new(),
            relationships: HashMap::new(),
            kpi_bands: Vec::new(),
            band_watch: Default::default(),
            bands_evaluated_at: None,
        })
    }

    /// Also alert on these KPI bands (validated by the caller).
    pub fn with_kpi_bands(mut self, bands: Vec<telechart_analytics::bands::Band>) -> Self {
        self.kpi_bands = bands;
        self
    }

    /// Evaluates the KPI bands of every tenant, at most once a minute; returns the alerts fired.
    pub async fn evaluate_bands(&mut self) -> Result<Vec<Alert>, SyncError> {
        let now = self.clock.now_ms();
        if self.kpi_bands.is_empty() || self.bands_evaluated_at.is_some_and(|at| now - at < BAND_EVERY_MS) {
            return Ok(Vec::new());
        }
        self.bands_evaluated_at = Some(now);
        let mut fired = Vec::new();
        for tenant in self.store.audit_tenants().await? {
            let details =
                telechart_analytics::bands::evaluate(&self.store, &tenant, &self.kpi_bands, &mut self.band_watch, now)
                    .await
                    .map_err(|e| SyncError::Analytics(e.to_string()))?;
            let alerts: Vec<Alert> = details
                .into_iter()
                .map(|detail| Alert {
                    rule: AlertRule::KpiBand,
                    at: now,
                    actor: "system".into(),
                    visit_id: None,
                    detail,
                    tenant_seq: 0,
                })
                .collect();
            for a in &alerts {
                tracing::warn!(target: "telechart::alert", alert = a.rule.as_str(), tenant, "{}", a.detail);
            }
            self.store.record_alerts(&tenant, &alerts, 0).await?;
            fired.extend(alerts);
        }
        Ok(fired)
    }

    /// Evaluates every tenant's records chained since the last pass; returns the alerts fired.
    pub async fn evaluate(&mut self) -> Result<Vec<Alert>, SyncError> {
        let mut fired = Vec::new();
        for tenant in self.store.audit_tenants().await? {
            fired.extend(self.evaluate_tenant(&tenant).await?);
        }
        Ok(fired)
    }

    async fn evaluate_tenant(&mut self, tenant: &str) -> Result<Vec<Alert>, SyncError> {
        let cursor = self.store.alert_cursor(tenant).await?;
        if !self.tenants.contains_key(tenant) {
            // After a restart, the last hour up to the cursor rebuilds the windows quietly.
            let since = self.store.audit_position_since(tenant, self.clock.now_ms() - HOUR_MS).await?;
            let read_to = since.map_or(cursor, |first| (first - 1).min(cursor));
            let engine = AlertEngine::new(self.rules.clone());
            self.tenants.insert(tenant.to_owned(), TenantState { engine, read_to });
        }
        let mut fired = Vec::new();
        loop {
            let read_to = self.tenants.get(tenant).map_or(cursor, |t| t.read_to);
            let page = self.store.audit_page(tenant, read_to, PAGE).await?;
            let Some(last) = page.last().and_then(|r| r.tenant_seq) else { break };
            let mut alerts = Vec::new();
            for row in &page {
                let person = self.person_access(tenant, row).await?;
                let seq = row.tenant_seq.unwrap_or(0);
                let observed = Observed {
                    tenant_seq: seq,
                    at: row.at,
                    actor: &row.actor,
                    action: &row.action,
                    visit_id: row.visit_id.as_deref(),
                    phi: row.phi != 0,
                    outcome: &row.outcome,
                    consent: row.consent.as_deref(),
                    person,
                };
                if let Some(state) = self.tenants.get_mut(tenant) {
                    alerts.extend(state.engine.observe(&observed, seq <= cursor));
                }
            }
            self.store.record_alerts(tenant, &alerts, last.max(cursor)).await?;
            for a in &alerts {
                tracing::warn!(target: "telechart::alert", alert = a.rule.as_str(), tenant, actor = %a.actor, visit = ?a.visit_id, "{}", a.detail);
            }
            fired.extend(alerts);
            if let Some(state) = self.tenants.get_mut(tenant) {
                state.read_to = last;
            }
            if page.len() < PAGE as usize {
                break;
            }
        }
        Ok(fired)
    }

    /// Keeps an alert that no single record fired (a broken chain found by verification).
    pub async fn raise(&self, tenant: &str, rule: AlertRule, detail: String) -> Result<(), SyncError> {
        let alert =
            Alert { rule, at: self.clock.now_ms(), actor: "system".into(), visit_id: None, detail, tenant_seq: 0 };
        tracing::error!(target: "telechart::alert", alert = rule.as_str(), tenant, "{}", alert.detail);
        self.store.record_alerts(tenant, std::slice::from_ref(&alert), 0).await?;
        Ok(())
    }

    /// For a person (`user:…`) touching a visit: the visit's patient and whether the person has
    /// a visit with them (as its practitioner). Others — workers, platforms — are not people.
    async fn person_access(&mut self, tenant: &str, row: &AuditRow) -> Result<Option<PersonAccess>, SyncError> {
        let (Some(user), Some(visit)) = (row.actor.strip_prefix("user:"), row.visit_id.as_deref()) else {
            return Ok(None);
        };
        if row.phi == 0 {
            return Ok(None);
        }
        let key = (tenant.to_owned(), visit.to_owned());
        if !self.patients.contains_key(&key) {
            let patient = self.store.visit(tenant, visit).await?.map(|v| v.patient.expose().to_owned());
            self.patients.insert(key.clone(), patient);
        }
        let Some(Some(patient)) = self.patients.get(&key).cloned() else { return Ok(None) };
        let person = (tenant.to_owned(), row.actor.clone());
        let known = self.relationships.get(&person).and_then(|set| set.as_ref().map(|s| s.contains(&patient)));
        let care_relationship = if known == Some(true) {
            Some(true)
        } else {
            let patients = match self.store.user(tenant, user).await?.and_then(|u| u.fhir_user) {
                Some(practitioner) => Some(
                    self.store
                        .visits_of_practitioner(tenant, &practitioner)
                        .await?
                        .into_iter()
                        .map(|v| v.patient.expose().to_owned())
                        .collect::<HashSet<_>>(),
                ),
                None => None,
            };
            let related = patients.as_ref().map(|s| s.contains(&patient));
            self.relationships.insert(person, patients);
            related
        };
        Ok(Some(PersonAccess { patient_key: patient, care_relationship }))
    }

    /// Sends alerts not yet sent to every sink; returns how many went out. An alert a sink
    /// refuses stays unsent (with the error) and is tried again on the next pass.
    pub async fn send(&self) -> Result<usize, SyncError> {
        let mut sent = 0;
        for alert in self.store.unsent_alerts(100).await? {
            let outcome = self.send_one(&alert).await;
            let result = match &outcome {
                Ok(()) => Ok(()),
                Err(e) => Err(e.as_str()),
            };
            self.store.alert_sent(&alert, result, self.clock.now_ms()).await?;
            sent += usize::from(outcome.is_ok());
        }
        Ok(sent)
    }

    async fn send_one(&self, alert: &AlertRow) -> Result<(), String> {
        let body = alert_json(alert).to_string();
        for sink in &self.sinks {
            match sink {
                AlertSink::File(path) => {
                    let mut file = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .map_err(|e| format!("alert file {}: {e}", path.display()))?;
                    writeln!(file, "{body}").map_err(|e| format!("alert file {}: {e}", path.display()))?;
                }
                AlertSink::Webhook { url, secret } => {
                    self.egress.check(url, self.clock.now().date_naive()).map_err(|e| e.to_string())?;
                    let mut request = self
                        .http
                        .post(url)
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .header("telechart-alert-id", &alert.id);
                    if let Some(secret) = secret {
                        let signature =
                            crate::webhooks::sign(secret, self.clock.now_ms().div_euclid(1000), body.as_bytes());
                        request = request.header(crate::webhooks::SIGNATURE_HEADER, signature);
                    }
                    let response =
                        request.body(body.clone()).send().await.map_err(|e| format!("alert webhook: {e}"))?;
                    if !response.status().is_success() {
                        return Err(format!("alert webhook answered HTTP {}", response.status().as_u16()));
                    }
                }
            }
        }
        Ok(())
    }

    /// Evaluates and sends until stopped, a pass every `interval`.
    pub async fn run(mut self, interval: Duration, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            if let Err(e) = self.evaluate().await {
                tracing::warn!(error = %e, "alert evaluation failed; will retry");
            }
            if let Err(e) = self.evaluate_bands().await {
                tracing::warn!(error = %e, "KPI band evaluation failed; will retry");
            }
            if let Err(e) = self.send().await {
                tracing::warn!(error = %e, "alert sending failed; will retry");
            }
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(interval) => {}
            }
        }
    }
}

/// An alert as sinks and the API show it.
pub fn alert_json(a: &AlertRow) -> serde_json::Value {
    json!({
        "id": a.id,
        "tenant": a.tenant_id,
        "rule": a.rule,
        "at": chrono::DateTime::from_timestamp_millis(a.at).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        "actor": a.actor,
        "visit": a.visit_id,
        "detail": a.detail,
        "auditRecord": a.audit_seq,
    })
}
