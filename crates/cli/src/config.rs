//! Configuration: built-in defaults → one TOML file → `TELECHART_*` environment variables
//! (nested keys with `__`, e.g. `TELECHART_WORKER__CONCURRENCY=16`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use telechart_store::{Kek, KeyConfig};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `sqlite:PATH` (embedded, the default) or `postgres://…`.
    pub database_url: String,
    pub listen: SocketAddr,
    /// Telechart's external base URL, e.g. `https://telechart.hospital.example` (SMART redirect URIs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    pub tenant: String,
    /// System (a URI) of the identifiers Telechart mints on every resource it writes. Keep it
    /// stable for a deployment: reconciliation searches by it.
    pub identifier_system: String,
    pub log: String,
    pub worker: WorkerConfig,
    pub keys: KeysConfig,
    pub tls: TlsConfig,
    pub retention: RetentionConfig,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc: Option<OidcConfig>,
    /// People's browser sessions, from an OpenID login or a SMART launch.
    #[serde(default)]
    pub sessions: SessionsConfig,
    #[serde(default)]
    pub connections: Vec<ConnectionConfig>,
    /// Where PHI may be sent, each origin with the BAA that covers it (loopback needs none).
    #[serde(default)]
    pub egress: Vec<EgressConfig>,
    /// Telehealth platforms: signed webhooks to them, signed events from them.
    #[serde(default)]
    pub platforms: Vec<PlatformConfig>,
    /// The audit log's witness and checkpoint key.
    #[serde(default)]
    pub audit: AuditConfig,
    /// The note drafter: the builtin engine always; an OpenAI-compatible one if configured.
    #[serde(default)]
    pub drafting: DraftingConfig,
    /// Where FHIR R4 leaves consent evaluation open, this tenant's choice (every decision that
    /// rests on one says "Telechart policy"): `several_active` (`newest-wins` / `deny-wins`),
    /// `absent_treatment`, `absent_patient_privacy`, `absent_research`, `absent_adr`,
    /// `unstated_base` (`permit` / `deny`), `protected_labels`, `policy_uris`.
    #[serde(default)]
    pub consent_policy: telechart_policy::consent::ConsentPolicy,
    #[serde(default)]
    pub break_glass: BreakGlassConfig,
    /// The site blueprint (`telechart blueprint check`): visit types, roles, KPI bands. `serve`
    /// refuses a blueprint with problems; without one, the default KPI bands apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blueprint_file: Option<PathBuf>,
}

/// Emergency access past a consent refusal.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakGlassConfig {
    /// How long a grant lasts (5 to 480 minutes).
    pub minutes: i64,
}

impl Default for BreakGlassConfig {
    fn default() -> Self {
        BreakGlassConfig { minutes: 60 }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DraftingConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm: Option<LlmConfig>,
}

/// A chat-completions endpoint. PHI goes there only if its origin is registered under a BAA in
/// `[[egress]]` (loopback excepted) and the patient's consent permits the disclosure.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmConfig {
    /// E.g. `http://127.0.0.1:8000/v1`; requests go to `{base_url}/chat/completions`.
    pub base_url: String,
    pub model: String,
    /// A file holding the bearer key (none for a local server without one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_file: Option<PathBuf>,
    #[serde(default = "default_llm_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default = "default_llm_attempts")]
    pub max_attempts: u32,
}

fn default_llm_timeout_ms() -> u64 {
    60_000
}

fn default_llm_attempts() -> u32 {
    3
}

/// Signed checkpoints of the audit chain, kept outside the database.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// The append-only witness file. In production, on storage the database's administrators
    /// cannot rewrite (another host's mount, a WORM bucket's sync directory).
    pub witness_file: PathBuf,
    /// The Ed25519 checkpoint key (PKCS#8, `telechart audit keygen`); made on first use when absent.
    pub signing_key_file: PathBuf,
    /// A checkpoint after this many new records of a tenant…
    pub checkpoint_every_records: i64,
    /// …or when its oldest unwitnessed record is this old.
    pub checkpoint_every_seconds: i64,
    /// The alert rules evaluated over the log (`[audit.alerts]`).
    pub alerts: telechart_audit::AlertRules,
    /// Where alerts go besides `GET /api/v1/alerts` (`[[audit.alert_sinks]]`).
    pub alert_sinks: Vec<AlertSinkConfig>,
}

/// One alert sink: an NDJSON file, or a webhook (covered by `[[egress]]` unless loopback),
/// HMAC-signed when a secret file is given.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertSinkConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
}

impl AlertSinkConfig {
    pub fn sink(&self) -> anyhow::Result<telechart_sync::alerts::AlertSink> {
        match (&self.file, &self.webhook_url) {
            (Some(path), None) => Ok(telechart_sync::alerts::AlertSink::File(path.clone())),
            (None, Some(url)) => {
                let secret = match &self.secret_file {
                    Some(path) => Some(
                        std::fs::read(path)
                            .with_context(|| format!("alert sink secret_file {}", path.display()))?
                            .trim_ascii()
                            .to_vec(),
                    ),
                    None => None,
                };
                Ok(telechart_sync::alerts::AlertSink::Webhook { url: url.clone(), secret })
            }
            _ => anyhow::bail!("each [[audit.alert_sinks]] entry names exactly one of file or webhook_url"),
        }
    }
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            witness_file: PathBuf::from("telechart-data/audit-witness.jsonl"),
            signing_key_file: PathBuf::from("telechart-data/audit-checkpoint.key"),
            checkpoint_every_records: 1_000,
            checkpoint_every_seconds: 60,
            alerts: telechart_audit::AlertRules::default(),
            alert_sinks: Vec::new(),
        }
    }
}

impl AuditConfig {
    /// The checkpoint signer; a new key is made (owner-only) when the file does not exist yet.
    pub fn signer(&self) -> anyhow::Result<telechart_audit::CheckpointSigner> {
        let path = &self.signing_key_file;
        if path.exists() {
            return Ok(telechart_audit::CheckpointSigner::load(path)?);
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        tracing::warn!(path = %path.display(), "made a new audit checkpoint key; keep it outside the database's reach");
        Ok(telechart_audit::CheckpointSigner::generate(path)?)
    }

    pub fn witness(&self) -> telechart_audit::Witness {
        telechart_audit::Witness::new(&self.witness_file)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlatformConfig {
    pub id: String,
    /// Where events are POSTed (its origin needs an `[[egress]]` BAA unless loopback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
    /// A file holding the shared HMAC secret (at least 32 bytes).
    pub secret_file: PathBuf,
    /// Event types sent: `appointment.booked`, `appointment.cancelled`, `visit.state-changed`; empty = all.
    #[serde(default)]
    pub events: Vec<String>,
    /// `finish-when-signed` (default) or `finish`: what the platform's `call.ended` does.
    #[serde(default)]
    pub on_call_ended: telechart_sync::webhooks::OnCallEnded,
    /// `treatment` (default: it runs the visit for the provider, under a BAA) or `consent` (a
    /// third party: events name the patient only with the patient's disclosure consent).
    #[serde(default)]
    pub phi_basis: telechart_sync::PhiBasis,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaConfig {
    pub per_minute: u32,
    /// Requests that may go at once after a quiet spell (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressConfig {
    /// `https://ehr.hospital.example` (scheme, host and port).
    pub origin: String,
    /// The business associate agreement's reference.
    pub baa: String,
    /// The other party to the agreement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counterparty: Option<String>,
    /// First day in force (`YYYY-MM-DD`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub starts: Option<chrono::NaiveDate>,
    /// Last day in force (`YYYY-MM-DD`): from the day after, nothing is sent there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<chrono::NaiveDate>,
}

impl Config {
    pub fn egress_registry(&self) -> telechart_policy::EgressRegistry {
        telechart_policy::EgressRegistry::new(
            self.egress
                .iter()
                .map(|e| telechart_policy::EgressEntry {
                    origin: e.origin.clone(),
                    baa: e.baa.clone(),
                    counterparty: e.counterparty.clone(),
                    starts: e.starts,
                    expires: e.expires,
                })
                .collect(),
        )
    }
}

/// OpenID Connect login for people (clinicians, compliance officers, admins).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    pub issuer: String,
    pub client_id: String,
    /// A file holding the client secret (or `client_secret` from `TELECHART_OIDC__CLIENT_SECRET`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    pub redirect_url: String,
    /// Scopes besides `openid`; add SMART's `fhirUser` where the provider knows it.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionsConfig {
    /// Roles that must prove a second factor (the id_token's `amr`, or Telechart's TOTP).
    pub mfa_roles: Vec<String>,
    pub idle_minutes: i64,
    pub absolute_hours: i64,
}

impl Default for SessionsConfig {
    fn default() -> Self {
        SessionsConfig { mfa_roles: default_mfa_roles(), idle_minutes: 30, absolute_hours: 12 }
    }
}

fn default_mfa_roles() -> Vec<String> {
    ["clinician", "compliance-officer", "integration-admin"].map(str::to_owned).to_vec()
}

fn default_scopes() -> Vec<String> {
    vec!["profile".to_owned()]
}

/// How long PHI is kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Days after which a fully delivered artifact's PHI payload is purged (the EHR holds the
    /// record; ids, times and the delivery trail stay). Unset: kept forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_payload_days: Option<u32>,
    /// Days after which a fully delivered chat or video transcript is purged (shorter than other
    /// payloads where a recording consent asks for it). Unset: as `delivered_payload_days`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transcript_days: Option<u32>,
    /// Years the audit log is kept; HIPAA asks six for its documentation (45 CFR 164.316(b)(2)).
    /// Older, witnessed records are deleted a whole segment at a time behind a signed tombstone.
    pub audit_log_years: u32,
}

/// HTTPS. Without a certificate, plain HTTP is served on a loopback address only, unless
/// `allow_plain_http` says a TLS-terminating proxy stands in front.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// Development: a self-signed certificate for localhost, made at start-up.
    #[serde(default)]
    pub self_signed: bool,
    #[serde(default)]
    pub allow_plain_http: bool,
}

impl TlsConfig {
    pub fn enabled(&self) -> bool {
        self.self_signed || self.cert_file.is_some()
    }

    pub fn settings(&self) -> anyhow::Result<Option<telechart_server::TlsSettings>> {
        match (&self.cert_file, &self.key_file, self.self_signed) {
            (Some(cert), Some(key), _) => Ok(Some(telechart_server::TlsSettings::from_pem_files(cert, key)?)),
            (Some(_), None, _) | (None, Some(_), _) => anyhow::bail!("tls.cert_file and tls.key_file go together"),
            (None, None, true) => {
                let hosts = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
                Ok(Some(telechart_server::TlsSettings::self_signed(&hosts)?.0))
            }
            (None, None, false) => Ok(None),
        }
    }
}

/// Where the key-encryption key (KEK) comes from. Data keys live in the database, wrapped by it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysConfig {
    /// A file holding the base64 KEK (`telechart keys generate` makes one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kek_file: Option<PathBuf>,
    /// The base64 KEK itself, e.g. from `TELECHART_KEYS__KEK`. Masked by `telechart config`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kek: Option<String>,
    /// KEKs being rotated out: they still unwrap data keys until `telechart keys rotate` re-wraps them.
    #[serde(default)]
    pub previous_kek_files: Vec<PathBuf>,
    /// Without a KEK, a development key is made in this file. `telechart check` refuses it.
    pub development_kek_file: PathBuf,
}

impl KeysConfig {
    /// The configured KEKs; a development key (created on first use) when none is configured.
    pub fn load(&self) -> anyhow::Result<KeyConfig> {
        let current = match (&self.kek, &self.kek_file) {
            (Some(text), _) => Kek::from_base64(text).context("keys.kek")?,
            (None, Some(path)) => read_kek(path)?,
            (None, None) => {
                let path = &self.development_kek_file;
                if !path.exists() {
                    let kek = Kek::generate()?;
                    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
                    }
                    write_secret(path, &kek.to_base64())?;
                }
                tracing::warn!(path = %path.display(), "using a development key-encryption key; configure keys.kek_file for production");
                read_kek(path)?
            }
        };
        let previous = self.previous_kek_files.iter().map(|p| read_kek(p)).collect::<anyhow::Result<Vec<_>>>()?;
        Ok(KeyConfig { current, previous })
    }
}

fn read_kek(path: &Path) -> anyhow::Result<Kek> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading the key file {}", path.display()))?;
    Kek::from_base64(&text).with_context(|| format!("key file {}", path.display()))
}

/// Writes a secret readable by its owner only.
pub fn write_secret(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    writeln!(file, "{text}")?;
    Ok(())
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    /// Worker loops in this process (each with its own lease owner name).
    pub workers: usize,
    /// Deliveries in flight per worker.
    pub concurrency: usize,
    pub lease_seconds: u64,
    pub max_attempts: u32,
    /// Hours after which a delivery still failing becomes a dead letter, whatever its attempts.
    #[serde(default = "default_max_age_hours")]
    pub max_age_hours: u64,
    pub backoff_base_ms: u64,
    pub backoff_max_seconds: u64,
    pub ehr_timeout_seconds: u64,
    pub database_connections: u32,
    /// How often open orders are read back from the EHR (status and results).
    #[serde(default = "default_order_poll_seconds")]
    pub order_poll_seconds: u64,
}

fn default_order_poll_seconds() -> u64 {
    60
}

fn default_max_age_hours() -> u64 {
    72
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionConfig {
    pub id: String,
    pub name: String,
    /// Vendor profile: `generic`, `epic`, `oracle` or `athena`, or a JSON object naming a `base`
    /// vendor and the flags that differ (see `VendorProfile::parse`): what the EHR accepts and how.
    pub profile: String,
    pub base_url: String,
    /// Web origins of this EHR that show Telechart inside their pages (iframes), e.g.
    /// `https://ehr.hospital.example`. They become CSP frame-ancestors.
    #[serde(default)]
    pub embed_origins: Vec<String>,
    /// SMART Backend Services: how the workers get access tokens for this EHR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<BackendConfig>,
    /// SMART App Launch: Telechart as a public client registered with this EHR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch: Option<LaunchConfig>,
    /// Scope syntax (`v1`/`v2`), the `{tenant}` in `base_url`, assumed token lifetime.
    #[serde(default)]
    pub auth: telechart_ehr::AuthProfile,
    /// Poll the EHR's appointments this often (seconds); unset: no polling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_seconds: Option<u64>,
    /// `host:port` of the EHR's HL7v2 MLLP listener: the fallback where its FHIR API takes
    /// neither vitals nor notes (covered by `[[egress]]` as `mllp://host:port` unless loopback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mllp: Option<String>,
    /// The EHR's published request quota, `{ per_minute = 600, burst = 10 }`: every request to
    /// it waits for the token bucket instead of meeting a 429.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<QuotaConfig>,
    /// Requests in flight to this EHR at most (default 32); fewer while it answers "slow down"
    /// (a 429 or its own words for it): cut by 30 %, then one more per window of successes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<usize>,
    /// A file with the shared secret the EHR's Subscription notifications are signed with
    /// (or sent as a Bearer token); unset: `/ehr-notifications/{id}` is closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification_secret_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaunchConfig {
    pub client_id: String,
    /// e.g. `launch openid fhirUser patient/*.rs`.
    pub scope: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    pub client_id: String,
    /// Default: discovered from `{base_url}/.well-known/smart-configuration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_url: Option<String>,
    /// e.g. `system/Encounter.rus system/Observation.c system/DocumentReference.c`.
    pub scope: String,
}

/// Top-level keys of [`Config`], the only ones read from the environment.
const CONFIG_KEYS: &[&str] = &[
    "database_url",
    "listen",
    "public_url",
    "tenant",
    "identifier_system",
    "log",
    "worker",
    "keys",
    "tls",
    "retention",
    "oidc",
    "sessions",
    "connections",
    "egress",
    "platforms",
    "audit",
    "drafting",
    "consent_policy",
    "break_glass",
    "blueprint_file",
];

impl Default for Config {
    fn default() -> Self {
        Config {
            database_url: "sqlite:./telechart-data/telechart.db".to_owned(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            tenant: "default".to_owned(),
            identifier_system: "urn:telechart:artifact".to_owned(),
            log: "info".to_owned(),
            worker: WorkerConfig {
                workers: 1,
                concurrency: 16,
                lease_seconds: 60,
                max_attempts: 12,
                max_age_hours: default_max_age_hours(),
                backoff_base_ms: 2_000,
                backoff_max_seconds: 300,
                ehr_timeout_seconds: 30,
                database_connections: 16,
                order_poll_seconds: default_order_poll_seconds(),
            },
            keys: KeysConfig {
                development_kek_file: PathBuf::from("telechart-data/development.kek"),
                ..KeysConfig::default()
            },
            tls: TlsConfig::default(),
            retention: RetentionConfig { delivered_payload_days: Some(30), transcript_days: None, audit_log_years: 6 },
            oidc: None,
            sessions: SessionsConfig::default(),
            connections: Vec::new(),
            egress: Vec::new(),
            platforms: Vec::new(),
            audit: AuditConfig::default(),
            drafting: DraftingConfig::default(),
            consent_policy: telechart_policy::consent::ConsentPolicy::default(),
            break_glass: BreakGlassConfig::default(),
            blueprint_file: None,
        }
    }
}

impl Config {
    /// Loads `path` (or `./telechart.toml` when present) over the defaults, then the environment.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Config> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        let file: Option<PathBuf> = match path {
            Some(p) => {
                anyhow::ensure!(p.is_file(), "config file {} does not exist", p.display());
                Some(p.to_owned())
            }
            None => Some(PathBuf::from("telechart.toml")).filter(|p| p.is_file()),
        };
        if let Some(file) = &file {
            figment = figment.merge(Toml::file(file));
        }
        // Only variables naming a configuration key: TELECHART_CONFIG, the test suite's
        // TELECHART_TEST_* and the like share the prefix without being settings.
        figment = figment.merge(Env::prefixed("TELECHART_").split("__").filter(|key| {
            let top = key.as_str().split('.').next().unwrap_or_default().to_ascii_lowercase();
            CONFIG_KEYS.contains(&top.as_str())
        }));
        let config: Config = figment.extract().map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.worker.concurrency > 0, "worker.concurrency must be at least 1");
        anyhow::ensure!(self.worker.workers > 0, "worker.workers must be at least 1");
        anyhow::ensure!(self.worker.lease_seconds > 0, "worker.lease_seconds must be at least 1");
        url::Url::parse(&self.identifier_system).context("identifier_system must be a URI")?;
        anyhow::ensure!(
            self.tls.enabled() || self.listen.ip().is_loopback() || self.tls.allow_plain_http,
            "refusing plain HTTP on {}: configure tls.cert_file and tls.key_file, or set tls.allow_plain_http \
             when a TLS-terminating proxy is in front",
            self.listen
        );
        for c in &self.connections {
            url::Url::parse(&c.base_url).with_context(|| format!("connections.{}.base_url is not a URL", c.id))?;
            for origin in &c.embed_origins {
                let parsed = url::Url::parse(origin)
                    .with_context(|| format!("connections.{}.embed_origins: {origin:?}", c.id))?;
                anyhow::ensure!(
                    parsed.scheme() == "https"
                        && parsed.path() == "/"
                        && parsed.query().is_none()
                        && !origin.ends_with('/'),
                    "connections.{}.embed_origins: {origin:?} must be an https origin such as https://ehr.example",
                    c.id
                );
            }
        }
        Ok(())
    }

    /// Login settings for the server, the client secret read from its file.
    pub fn oidc_settings(&self) -> anyhow::Result<Option<telechart_server::OidcSettings>> {
        let Some(oidc) = &self.oidc else { return Ok(None) };
        let client_secret = match (&oidc.client_secret, &oidc.client_secret_file) {
            (Some(secret), _) => secret.clone(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .with_context(|| format!("reading oidc.client_secret_file {}", path.display()))?
                .trim()
                .to_owned(),
            (None, None) => anyhow::bail!("oidc needs client_secret_file (or TELECHART_OIDC__CLIENT_SECRET)"),
        };
        Ok(Some(telechart_server::OidcSettings {
            issuer: oidc.issuer.clone(),
            client_id: oidc.client_id.clone(),
            client_secret,
            redirect_url: oidc.redirect_url.clone(),
            scopes: oidc.scopes.clone(),
        }))
    }

    /// The platforms with their secrets read from their files.
    pub fn platforms(&self) -> anyhow::Result<telechart_sync::Platforms> {
        let mut platforms = Vec::with_capacity(self.platforms.len());
        for p in &self.platforms {
            let secret = std::fs::read(&p.secret_file)
                .with_context(|| format!("platform {}: reading secret_file {}", p.id, p.secret_file.display()))?;
            let secret = secret.trim_ascii().to_vec();
            anyhow::ensure!(secret.len() >= 32, "platform {}: the secret must be at least 32 bytes", p.id);
            if let Some(url) = &p.webhook_url {
                let parsed = url::Url::parse(url).with_context(|| format!("platform {}: webhook_url", p.id))?;
                anyhow::ensure!(
                    matches!(parsed.scheme(), "https" | "http"),
                    "platform {}: webhook_url must be http(s)",
                    p.id
                );
            }
            platforms.push(telechart_sync::Platform {
                id: p.id.clone(),
                tenant_id: self.tenant.clone(),
                webhook_url: p.webhook_url.clone(),
                secret,
                events: p.events.clone(),
                on_call_ended: p.on_call_ended,
                phi_basis: p.phi_basis,
            });
        }
        Ok(telechart_sync::Platforms(std::sync::Arc::new(platforms)))
    }

    /// The connections' notification secrets, read from their files.
    pub fn notification_secrets(&self) -> anyhow::Result<telechart_server::NotificationSecrets> {
        let mut secrets = std::collections::HashMap::new();
        for c in &self.connections {
            if let Some(path) = &c.notification_secret_file {
                let secret = std::fs::read(path).with_context(|| {
                    format!("connection {}: reading notification_secret_file {}", c.id, path.display())
                })?;
                let secret = secret.trim_ascii().to_vec();
                anyhow::ensure!(
                    secret.len() >= 32,
                    "connection {}: the notification secret must be at least 32 bytes",
                    c.id
                );
                secrets.insert(c.id.clone(), (self.tenant.clone(), secret));
            }
        }
        Ok(telechart_server::NotificationSecrets(secrets))
    }

    /// The consent policy and break-glass span the server applies.
    pub fn compliance(&self) -> anyhow::Result<telechart_server::Compliance> {
        anyhow::ensure!(
            (5..=480).contains(&self.break_glass.minutes),
            "break_glass.minutes must be 5 to 480 (a grant is time-boxed), not {}",
            self.break_glass.minutes
        );
        Ok(telechart_server::Compliance {
            consent_policy: self.consent_policy.clone(),
            break_glass_minutes: self.break_glass.minutes,
        })
    }

    /// The drafter's engines, the key read from its file.
    pub fn drafting(&self) -> anyhow::Result<telechart_server::Drafting> {
        let Some(llm) = &self.drafting.llm else { return Ok(telechart_server::Drafting::default()) };
        url::Url::parse(&llm.base_url).with_context(|| format!("drafting.llm.base_url {:?}", llm.base_url))?;
        anyhow::ensure!(llm.timeout_ms > 0, "drafting.llm.timeout_ms must be above 0");
        anyhow::ensure!((1..=10).contains(&llm.max_attempts), "drafting.llm.max_attempts must be 1 to 10");
        let api_key = match &llm.api_key_file {
            Some(path) => {
                let key = std::fs::read_to_string(path)
                    .with_context(|| format!("drafting.llm: reading api_key_file {}", path.display()))?;
                Some(key.trim().to_owned())
            }
            None => None,
        };
        Ok(telechart_server::Drafting {
            llm: Some(telechart_server::LlmEngine {
                base_url: llm.base_url.clone(),
                model: llm.model.clone(),
                api_key,
                timeout: std::time::Duration::from_millis(llm.timeout_ms),
                max_attempts: llm.max_attempts,
            }),
        })
    }

    /// How people's sessions behave, whichever way they signed in.
    pub fn session_policy(&self) -> anyhow::Result<telechart_server::SessionPolicy> {
        let mfa_roles = self
            .sessions
            .mfa_roles
            .iter()
            .map(|r| r.parse::<telechart_policy::Role>().with_context(|| "sessions.mfa_roles"))
            .collect::<anyhow::Result<Vec<_>>>()?;
        anyhow::ensure!(
            self.sessions.idle_minutes > 0 && self.sessions.absolute_hours > 0,
            "sessions.idle_minutes and sessions.absolute_hours must be positive"
        );
        Ok(telechart_server::SessionPolicy {
            limits: telechart_store::SessionLimits {
                idle_ms: self.sessions.idle_minutes * 60_000,
                absolute_ms: self.sessions.absolute_hours * 3_600_000,
            },
            secure_cookies: self.tls.enabled() || self.tls.allow_plain_http,
            mfa_roles,
        })
    }

    /// The effective configuration as TOML, with secrets masked.
    pub fn masked_toml(&self) -> anyhow::Result<String> {
        let mut shown = self.clone();
        shown.database_url = mask_url(&self.database_url);
        if shown.keys.kek.is_some() {
            shown.keys.kek = Some("****".to_owned());
        }
        if let Some(oidc) = shown.oidc.as_mut()
            && oidc.client_secret.is_some()
        {
            oidc.client_secret = Some("****".to_owned());
        }
        for c in &mut shown.connections {
            c.base_url = mask_url(&c.base_url);
        }
        Ok(toml::to_string(&shown)?)
    }
}

/// Replaces a URL's password with `****`.
pub fn mask_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("****"));
            url.to_string()
        }
        _ => raw.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked() {
        assert_eq!(mask_url("postgres://tc:s3cret@db:5432/tc"), "postgres://tc:****@db:5432/tc");
        assert_eq!(mask_url("sqlite:./x.db"), "sqlite:./x.db");
    }

    #[test]
    fn config_keys_match_the_struct() {
        let config = Config {
            public_url: Some("https://telechart.example".into()),
            blueprint_file: Some("site-blueprint.toml".into()),
            oidc: Some(OidcConfig {
                issuer: "https://idp.example".into(),
                client_id: "telechart".into(),
                client_secret_file: None,
                client_secret: None,
                redirect_url: "https://telechart.example/auth/callback".into(),
                scopes: default_scopes(),
            }),
            ..Config::default()
        };
        let value = serde_json::to_value(config).unwrap();
        let mut keys: Vec<&str> = value.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        let mut listed = CONFIG_KEYS.to_vec();
        listed.sort_unstable();
        assert_eq!(keys, listed);
    }

    #[test]
    fn consent_policy_and_break_glass_span_are_configurable() {
        let load = |text: &str| -> Result<Config, Box<figment::Error>> {
            figment::Figment::from(figment::providers::Serialized::defaults(Config::default()))
                .merge(figment::providers::Toml::string(text))
                .extract()
                .map_err(Box::new)
        };
        let config = load(
            "[consent_policy]\nseveral_active = \"deny-wins\"\nabsent_treatment = \"permit\"\n[break_glass]\nminutes = 15\n",
        )
        .unwrap();
        let compliance = config.compliance().unwrap();
        assert_eq!(compliance.break_glass_minutes, 15);
        assert_eq!(compliance.consent_policy.absent_treatment, telechart_policy::consent::Outcome::Permit);
        assert_eq!(compliance.consent_policy.several_active, telechart_policy::consent::Precedence::DenyWins);
        assert_eq!(
            compliance.consent_policy.absent_research,
            telechart_policy::consent::Outcome::Deny,
            "the rest kept"
        );
        let unbounded = load("[break_glass]\nminutes = 0\n").unwrap().compliance().unwrap_err().to_string();
        assert!(unbounded.contains("break_glass.minutes must be 5 to 480"), "{unbounded}");
        assert!(load("[consent_policy]\nabsent_treatment = \"maybe\"\n").is_err());
    }

    #[test]
    fn a_connection_takes_an_auth_profile() {
        let text = r#"
            [[connections]]
            id = "oracle"
            name = "Oracle Health"
            profile = "generic"
            base_url = "https://fhir.ehr.example/r4/{tenant}"
            launch = { client_id = "telechart-app", scope = "launch openid fhirUser offline_access user/*.rs" }
            auth = { scope_syntax = "v1", tenant = "ec2458f2", assumed_token_lifetime = 600 }
        "#;
        let config: Config = figment::Figment::from(figment::providers::Serialized::defaults(Config::default()))
            .merge(figment::providers::Toml::string(text))
            .extract()
            .unwrap();
        let c = &config.connections[0];
        assert_eq!(c.auth.scope_syntax, telechart_ehr::ScopeSyntax::V1);
        assert_eq!(c.auth.assumed_token_lifetime, std::time::Duration::from_secs(600));
        assert_eq!(c.auth.expand(&c.base_url).unwrap(), "https://fhir.ehr.example/r4/ec2458f2");
        let bad = text.replace("scope_syntax = \"v1\"", "scope_syntax = \"v3\"");
        assert!(
            figment::Figment::from(figment::providers::Serialized::defaults(Config::default()))
                .merge(figment::providers::Toml::string(&bad))
                .extract::<Config>()
                .is_err()
        );
    }

    #[test]
    fn defaults_render_as_toml() {
        let text = Config::default().masked_toml().unwrap();
        assert!(text.contains("database_url = \"sqlite:./telechart-data/telechart.db\""), "{text}");
        assert!(text.contains("[worker]"), "{text}");
    }
}
