//! `TestEnv`: sandbox + store + server + a worker factory, all on real sockets and databases.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use telechart_sandbox::{RunningSandbox, Sandbox, SandboxConfig};
use telechart_server::{AppState, RunningServer};
use telechart_store::{Clock, ConnectionRow, Store};
use telechart_sync::{Backoff, Connections, DeliveryOutcome, FaultPlan, QueueSignal, SyncConfig, Worker};

pub const TENANT: &str = "default";
pub const SYSTEM: &str = "urn:telechart:test";
pub const LEASE: Duration = Duration::from_secs(60);

/// Which EHR the environment plays, and how Telechart's connection sees it.
pub struct Vendor {
    pub personality: telechart_sandbox::Personality,
    pub profile: String,
    /// Give the connection the sandbox's HL7v2 MLLP listener.
    pub mllp: bool,
}

impl Default for Vendor {
    fn default() -> Self {
        Vendor { personality: telechart_sandbox::Personality::Generic, profile: "generic".into(), mllp: false }
    }
}
/// The sandbox connection's shared secret for Subscription notifications.
pub const NOTIFY_SECRET: &[u8] = b"notify-0123456789abcdef0123456789abcdef";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

pub struct TestEnv {
    pub engine: Engine,
    pub store: Store,
    pub clock: Clock,
    pub sandbox: RunningSandbox,
    pub server: RunningServer,
    pub api: String,
    /// Sends the test platform's token on every request.
    pub http: reqwest::Client,
    pub monitor_token: String,
    connections: Connections,
    pub dir: tempfile::TempDir,
    pub db_url: String,
    /// The key-encryption key (base64), for stores opened beside the test's own.
    pub kek: String,
}

pub fn synthea_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/synthea")
}

/// The engines this run covers: SQLite always; PostgreSQL when `TELECHART_TEST_POSTGRES_URL` is
/// set (and it must be when `TELECHART_REQUIRE_POSTGRES=1`, as in CI).
pub fn engines() -> Vec<Engine> {
    if std::env::var("TELECHART_TEST_POSTGRES_URL").is_ok() {
        vec![Engine::Sqlite, Engine::Postgres]
    } else {
        assert!(
            std::env::var("TELECHART_REQUIRE_POSTGRES").as_deref() != Ok("1"),
            "TELECHART_REQUIRE_POSTGRES=1 but TELECHART_TEST_POSTGRES_URL is unset"
        );
        eprintln!("note: TELECHART_TEST_POSTGRES_URL unset; PostgreSQL half skipped");
        vec![Engine::Sqlite]
    }
}

impl TestEnv {
    pub async fn start(engine: Engine) -> TestEnv {
        Self::start_with(engine, false).await
    }

    /// With `backend_auth`, the sandbox requires SMART Backend Services tokens and knows
    /// Telechart's public key; the connection is configured to fetch them.
    pub async fn start_with(engine: Engine, backend_auth: bool) -> TestEnv {
        Self::build(engine, backend_auth, telechart_sync::Platforms::default(), Vendor::default()).await
    }

    /// With telehealth platforms that send and receive signed events.
    pub async fn start_with_platforms(engine: Engine, platforms: telechart_sync::Platforms) -> TestEnv {
        Self::build(engine, false, platforms, Vendor::default()).await
    }

    /// Against a sandbox personality, through a connection with the given vendor profile.
    pub async fn start_vendor(engine: Engine, personality: telechart_sandbox::Personality, profile: &str) -> TestEnv {
        let vendor = Vendor { personality, profile: profile.to_owned(), mllp: false };
        Self::build(engine, false, telechart_sync::Platforms::default(), vendor).await
    }

    /// As [`TestEnv::start_vendor`], with the sandbox's HL7v2 MLLP listener on the connection.
    pub async fn start_vendor_with_mllp(
        engine: Engine,
        personality: telechart_sandbox::Personality,
        profile: &str,
    ) -> TestEnv {
        let vendor = Vendor { personality, profile: profile.to_owned(), mllp: true };
        Self::build(engine, false, telechart_sync::Platforms::default(), vendor).await
    }

    /// With the note drafter's engines configured (an OpenAI-compatible one).
    pub async fn start_with_drafting(engine: Engine, drafting: telechart_server::Drafting) -> TestEnv {
        Self::build_with(engine, false, telechart_sync::Platforms::default(), Vendor::default(), drafting, None).await
    }

    /// With the tenant's own consent policy and break-glass span.
    pub async fn start_with_compliance(engine: Engine, compliance: telechart_server::Compliance) -> TestEnv {
        let (platforms, vendor) = (telechart_sync::Platforms::default(), Vendor::default());
        Self::build_with(engine, false, platforms, vendor, Default::default(), Some(compliance)).await
    }

    async fn build(
        engine: Engine,
        backend_auth: bool,
        platforms: telechart_sync::Platforms,
        vendor: Vendor,
    ) -> TestEnv {
        Self::build_with(engine, backend_auth, platforms, vendor, telechart_server::Drafting::default(), None).await
    }

    async fn build_with(
        engine: Engine,
        backend_auth: bool,
        platforms: telechart_sync::Platforms,
        vendor: Vendor,
        drafting: telechart_server::Drafting,
        compliance: Option<telechart_server::Compliance>,
    ) -> TestEnv {
        let dir = tempfile::tempdir().unwrap();
        let clock = Clock::manual("2026-11-26T09:00:00Z".parse().unwrap());
        let db_url = match engine {
            Engine::Sqlite => format!("sqlite:{}", dir.path().join("t.db").display()),
            Engine::Postgres => {
                let admin_url = std::env::var("TELECHART_TEST_POSTGRES_URL").unwrap();
                let name = format!("tc_it_{}", uuid::Uuid::new_v4().simple());
                telechart_store::create_postgres_database(&admin_url, &name).await.unwrap()
            }
        };
        let kek = telechart_store::Kek::generate().unwrap().to_base64();
        let keys = telechart_store::KeyConfig::new(telechart_store::Kek::from_base64(&kek).unwrap());
        let store = Store::open(&db_url, 8, keys).await.unwrap();
        let mut config = SandboxConfig::new(clock.now().date_naive());
        config.personality = vendor.personality;
        config.seed_dir = Some(synthea_dir());
        config.appointments_per_patient = 2;
        // The practice (tenant) an athena-like EHR addresses its own APIs by.
        let mut settings = json!({"auth": {"tenant": "195900"}}).to_string();
        if backend_auth {
            let key = telechart_ehr::SigningKey::generate(telechart_ehr::SigningAlg::Es384).unwrap();
            store.add_signing_key(&key.kid, "ES384", key.pkcs8(), &key.public_jwk().to_string(), 0).await.unwrap();
            config.backend_clients = vec![telechart_sandbox::BackendClient {
                client_id: "telechart".into(),
                jwks: serde_json::from_value(json!({"keys": [key.public_jwk()]})).unwrap(),
                scopes: vec!["system/*.cruds".into()],
                jwks_url: None,
            }];
            config.require_bearer = true;
            settings = json!({"backend": {"client_id": "telechart", "scope": "system/*.cruds"}}).to_string();
        }
        let sandbox = Sandbox::new(&config).unwrap().spawn(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
        if vendor.mllp {
            // The EHR's HL7v2 listener, for the MLLP fallback.
            let address = sandbox.sandbox.spawn_mllp(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
            let mut with = serde_json::from_str::<Value>(&settings).unwrap();
            with["mllp"] = json!(address.to_string());
            settings = with.to_string();
        }
        store
            .upsert_connection(&ConnectionRow {
                tenant_id: TENANT.into(),
                id: "sandbox".into(),
                name: "Sandbox".into(),
                profile: vendor.profile.clone(),
                base_url: sandbox.fhir_base.clone(),
                settings,
                created_at: 0,
                updated_at: 0,
            })
            .await
            .unwrap();
        let connections = Connections::new(store.clone(), Duration::from_secs(10));
        let state = AppState {
            store: store.clone(),
            clock: clock.clone(),
            identifier_system: SYSTEM.into(),
            connections: connections.clone(),
            signal: QueueSignal::default(),
            oidc: None,
            embedding: Default::default(),
            public_url: None,
            sessions: Default::default(),
            ehr_tokens: Default::default(),
            platforms,
            notification_secrets: std::sync::Arc::new(telechart_server::NotificationSecrets(
                [("sandbox".to_owned(), (TENANT.to_owned(), NOTIFY_SECRET.to_vec()))].into(),
            )),
            drafting: std::sync::Arc::new(drafting),
            compliance: std::sync::Arc::new(compliance.unwrap_or_default()),
        };
        let server = telechart_server::spawn(state, SocketAddr::from(([127, 0, 0, 1], 0)), None).await.unwrap();
        let api = format!("{}/api/v1", server.base_url);
        let (_, platform) = store.create_api_token(TENANT, "test platform", "platform", 0).await.unwrap();
        let (_, monitor) = store.create_api_token(TENANT, "test monitor", "monitor", 0).await.unwrap();
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("authorization", format!("Bearer {}", platform.expose()).parse().unwrap());
        let http = reqwest::Client::builder().default_headers(headers).build().unwrap();
        let monitor_token = monitor.expose().to_owned();
        TestEnv { engine, store, clock, sandbox, server, api, http, monitor_token, connections, dir, db_url, kek }
    }

    pub fn connections(&self) -> &Connections {
        &self.connections
    }

    pub fn worker(&self, name: &str, faults: FaultPlan) -> Worker {
        let mut config = SyncConfig::new(TENANT, name, SYSTEM);
        config.lease = LEASE;
        config.concurrency = 4;
        config.backoff = Backoff { base: Duration::from_secs(1), max: Duration::from_secs(30) };
        Worker::new(self.store.clone(), self.clock.clone(), config, self.connections.clone(), QueueSignal::default())
            .with_faults(faults)
    }

    /// A worker as another instance runs it: its own connection pool to the same database and
    /// its own EHR connections, sharing only the queue.
    pub async fn instance_worker(&self, name: &str) -> Worker {
        let keys = telechart_store::KeyConfig::new(telechart_store::Kek::from_base64(&self.kek).unwrap());
        let store = Store::open(&self.db_url, 4, keys).await.unwrap();
        let mut config = SyncConfig::new(TENANT, name, SYSTEM);
        config.lease = LEASE;
        config.concurrency = 4;
        config.backoff = Backoff { base: Duration::from_secs(1), max: Duration::from_secs(30) };
        let connections = Connections::new(store.clone(), Duration::from_secs(10));
        Worker::new(store, self.clock.clone(), config, connections, QueueSignal::default())
    }

    /// Runs `worker` until nothing is due, moving the manual clock to each scheduled retry.
    pub async fn drain(&self, worker: &Worker) -> Vec<DeliveryOutcome> {
        let mut all = Vec::new();
        for _ in 0..500 {
            let outcomes = worker.run_once().await.unwrap();
            if outcomes.is_empty() {
                let counts = self.store.queue_counts(TENANT).await.unwrap();
                if counts.pending + counts.in_flight == 0 {
                    return all;
                }
                let Some(next) = self.store.next_due_at(TENANT).await.unwrap() else {
                    let dead = self.store.dead_letters(TENANT).await.unwrap();
                    let why: Vec<String> =
                        dead.iter().map(|d| format!("{} {:?}: {:?}", d.resource_type, d.plan, d.last_error)).collect();
                    panic!("deliveries wait behind dead letters that hold back their visit: {why:#?}");
                };
                let wait = (next - self.clock.now_ms()).max(1);
                self.clock.advance(Duration::from_millis(wait as u64));
            }
            all.extend(outcomes);
        }
        panic!("the queue did not drain");
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self.http.post(format!("{}{path}", self.api)).json(&body).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.api))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, url: &str) -> (u16, Value) {
        let response = self.http.get(url).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// The patient of visit `id` consents to telehealth care (the call cannot start without it).
    pub async fn consent_to_telehealth(&self, id: &str) {
        let (status, reply) =
            self.post(&format!("/visits/{id}/consents"), json!({"category": "telehealth", "decision": "permit"})).await;
        assert_eq!(status, 201, "{reply}");
    }

    pub fn appointment(&self, n: usize) -> String {
        self.sandbox.sandbox.appointment_ids()[n].clone()
    }

    /// Opens a visit on appointment `n` and takes it through arrival, vitals, the call, a signed
    /// note and the end. Returns the visit id.
    pub async fn full_visit(&self, n: usize) -> String {
        let (status, visit) =
            self.post("/visits", json!({"appointment": format!("Appointment/{}", self.appointment(n))})).await;
        assert_eq!(status, 201, "{visit}");
        let id = visit["id"].as_str().unwrap().to_owned();
        let steps = [
            ("transitions", json!({"to": "arrived"})),
            // Parsed from text so that 36.80 keeps its written precision.
            (
                "vitals",
                serde_json::from_str::<Value>(
                    r#"{"vitals": [
                {"type": "blood-pressure", "systolic": 128, "diastolic": 82, "unit": "mm[Hg]"},
                {"type": "heart-rate", "value": 72, "unit": "/min"},
                {"type": "respiratory-rate", "value": 16, "unit": "/min"},
                {"type": "body-temperature", "value": 36.80, "unit": "Cel"},
                {"type": "oxygen-saturation", "value": 98, "unit": "%"},
                {"type": "body-weight", "value": 72.5, "unit": "kg"},
                {"type": "body-height", "value": 175, "unit": "cm"},
                {"type": "bmi", "value": 23.7, "unit": "kg/m2"}
            ]}"#,
                )
                .unwrap(),
            ),
            // The patient's consent to telehealth care, before the call starts.
            ("consents", json!({"category": "telehealth", "decision": "permit", "textVersion": "2026-11"})),
            ("transitions", json!({"to": "in-progress"})),
            (
                "notes",
                json!({"title": "Visit note", "text": "S: well. O: see vitals. A: stable. P: follow up.",
                             "author": visit["practitioner"], "signedAt": "2026-11-26T09:00:00Z"}),
            ),
            ("transitions", json!({"to": "finished"})),
        ];
        for (path, body) in steps {
            let (status, reply) = self.post(&format!("/visits/{id}/{path}"), body).await;
            assert_eq!(status, 201, "{path}: {reply}");
        }
        id
    }

    pub async fn stop(self) {
        self.server.shutdown().await;
        self.sandbox.shutdown().await;
        self.store.close().await;
    }
}

/// A server's state around `store` alone (no sandbox connection), for tests of TLS and login.
pub fn bare_state(store: &Store, oidc: Option<std::sync::Arc<telechart_server::Oidc>>) -> AppState {
    AppState {
        store: store.clone(),
        clock: Clock::system(),
        identifier_system: "urn:telechart:test".into(),
        connections: Connections::new(store.clone(), Duration::from_secs(5)),
        signal: QueueSignal::default(),
        oidc,
        embedding: Default::default(),
        public_url: None,
        sessions: Default::default(),
        ehr_tokens: Default::default(),
        platforms: Default::default(),
        notification_secrets: Default::default(),
        drafting: Default::default(),
        compliance: Default::default(),
    }
}

/// A store on a fresh SQLite file in `dir`, with a fresh key.
pub async fn sqlite_store(dir: &std::path::Path) -> Store {
    let keys = telechart_store::KeyConfig::new(telechart_store::Kek::generate().unwrap());
    Store::open(&format!("sqlite:{}", dir.join("t.db").display()), 1, keys).await.unwrap()
}
