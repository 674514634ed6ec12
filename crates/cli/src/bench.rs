//! `telechart bench sync`: deliveries per second through the whole pipeline (claim → map →
//! write → record) versus a raw HTTP client issuing the same creates to the same sandbox, at the
//! same injected latency and concurrency, in one run; on SQLite and on PostgreSQL.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::Value;
use telechart_ehr::{FhirClient, VendorProfile};
use telechart_sandbox::{Sandbox, SandboxConfig};
use telechart_store::{AuditEntry, Clock, ConnectionRow, NewArtifact, NewVisit, Phi, Store};
use telechart_sync::{Backoff, Connections, QueueSignal, SyncConfig, Worker};
use telechart_visit::{Artifact, EncounterStatusChange, VisitState, VitalInput};

#[derive(clap::Subcommand)]
pub enum BenchCommand {
    /// The analytics dashboard over a million recorded visits: refresh, then page and report times.
    Analytics(analytics::AnalyticsBenchArgs),
    /// The audit chain: batched appends, a checkpoint and `audit verify` over a large log, and
    /// one append's CPU next to one delivery's.
    Audit(audit::AuditBenchArgs),
    /// Consent decisions on a tenant with many consents: p50 / p99 latency.
    Consent(consent::ConsentBenchArgs),
    /// The builtin care-plan and after-visit-summary drafter: time per visit.
    CarePlan(care_plan::CarePlanBenchArgs),
    /// The builtin note drafter: time per visit on the longest dialogue, throughput over a file.
    Scribe(scribe::ScribeBenchArgs),
    /// Pipeline throughput versus a raw HTTP client.
    Sync(SyncBenchArgs),
    /// Cost per delivery and resident memory with 1k, 10k and 100k deliveries queued.
    Queue(backlog::QueueBenchArgs),
    /// Clinical-lane latency alone and with a 100k backfill running.
    Lanes(backlog::LanesBenchArgs),
    /// Share of an EHR's rate limit used, and 429s after warm-up (published quota and AIMD).
    Rate(backlog::RateBenchArgs),
    /// Backend Services tokens: requests to the token endpoint under concurrent callers.
    Tokens {
        /// Callers asking for a token at once, in each round.
        #[arg(long, default_value_t = 64)]
        callers: usize,
        /// Lifetime of the sandbox's tokens, in seconds.
        #[arg(long, default_value_t = 3)]
        lifetime_seconds: u64,
        /// How long to run, in seconds; a round every 100 ms.
        #[arg(long, default_value_t = 15)]
        seconds: u64,
    },
}

#[derive(clap::Args, Clone)]
pub struct SyncBenchArgs {
    /// Visits; each gets `--per-visit` Observation deliveries.
    #[arg(long, default_value_t = 400)]
    visits: usize,
    #[arg(long, default_value_t = 5)]
    per_visit: usize,
    /// Latency the sandbox adds to every request.
    #[arg(long, default_value_t = 20)]
    latency_ms: u64,
    /// Writes in flight, for the pipeline and the raw client alike.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// PostgreSQL URL for the PostgreSQL half (a scratch database is created there).
    #[arg(long, env = "TELECHART_BENCH_POSTGRES_URL")]
    postgres: Option<String>,
}

mod analytics;
mod audit;
mod backlog;
mod care_plan;
mod consent;
mod scribe;

impl SyncBenchArgs {
    /// A short run with no added latency: enough deliveries for a steady CPU figure.
    fn small(postgres: Option<String>) -> Self {
        // 2 000 deliveries: the process's CPU clock ticks at 10 ms, 5 µs per delivery here.
        SyncBenchArgs { visits: 400, per_visit: 5, latency_ms: 0, concurrency: 16, postgres }
    }
}

const TENANT: &str = "bench";
const SYSTEM: &str = "urn:telechart:bench";

pub async fn run(which: BenchCommand) -> anyhow::Result<()> {
    match which {
        BenchCommand::Sync(args) => sync(args).await,
        BenchCommand::Queue(args) => backlog::queue(args).await,
        BenchCommand::Lanes(args) => backlog::lanes(args).await,
        BenchCommand::Rate(args) => backlog::rate(args).await,
        BenchCommand::Audit(args) => audit::run(args).await,
        BenchCommand::Analytics(args) => analytics::run(args).await,
        BenchCommand::Consent(args) => consent::run(args),
        BenchCommand::Scribe(args) => scribe::run(args),
        BenchCommand::CarePlan(args) => care_plan::run(args),
        BenchCommand::Tokens { callers, lifetime_seconds, seconds } => tokens(callers, lifetime_seconds, seconds).await,
    }
}

/// `callers` concurrent token lookups every 100 ms for `seconds`, against a sandbox issuing
/// tokens that live `lifetime` seconds: how many token requests reached the endpoint.
async fn tokens(callers: usize, lifetime: u64, seconds: u64) -> anyhow::Result<()> {
    use telechart_ehr::{BackendServices, SigningAlg, SigningKey};
    let key = SigningKey::generate(SigningAlg::Es384)?;
    let mut config = SandboxConfig::new(Clock::system().now().date_naive());
    config.token_lifetime = Duration::from_secs(lifetime.max(1));
    config.backend_clients = vec![telechart_sandbox::BackendClient {
        client_id: "telechart".into(),
        jwks: serde_json::from_value(serde_json::json!({"keys": [key.public_jwk()]}))?,
        scopes: vec!["system/*.cruds".into()],
        jwks_url: None,
    }];
    let sandbox = Sandbox::new(&config)?;
    let running = sandbox.clone().spawn(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let backend = std::sync::Arc::new(BackendServices::new("telechart", &sandbox.token_url(), "system/*.cruds", key)?);
    let clock = Clock::system();
    let started = Instant::now();
    let mut calls = 0_usize;
    let mut lookup_time = Duration::ZERO;
    while started.elapsed() < Duration::from_secs(seconds) {
        let round = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..callers {
            let (backend, at) = (backend.clone(), clock.now());
            tasks.spawn(async move { backend.access_token(at).await });
        }
        while let Some(joined) = tasks.join_next().await {
            joined??;
            calls += 1;
        }
        lookup_time += round.elapsed();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let lifetime_s = lifetime.max(1) as f64;
    // A token is renewed at 90 % of its life (the client's margin): each such window needs one
    // token; the windows begun during the run are those every request must fall into.
    let window_s = lifetime_s - (lifetime_s / 10.0).min(30.0);
    let windows = (elapsed / window_s).floor() + 1.0;
    let requests = sandbox.token_requests() as f64;
    println!(
        "bench tokens: {calls} lookups by {callers} concurrent callers over {elapsed:.1} s, tokens living {lifetime} s \
         (renewed at {window_s:.1} s) → {requests} token requests for {windows} expiry windows begun = {:.2} per \
         window; {:.1} µs per lookup round-trip",
        requests / windows,
        lookup_time.as_secs_f64() * 1e6 / calls.max(1) as f64
    );
    running.shutdown().await;
    Ok(())
}

/// CPU seconds this process has used (user + system), from /proc.
fn cpu_seconds() -> Option<f64> {
    stat_cpu_seconds(std::path::Path::new("/proc/self/stat"))
}

/// User + system CPU seconds from a `/proc/…/stat` file (a process's or one thread's).
fn stat_cpu_seconds(path: &std::path::Path) -> Option<f64> {
    let stat = std::fs::read_to_string(path).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

struct Measured {
    per_second: f64,
    cpu_ms_per_delivery: Option<f64>,
}

async fn sync(args: SyncBenchArgs) -> anyhow::Result<()> {
    let total = args.visits * args.per_visit;
    let mut config = SandboxConfig::new(Clock::system().now().date_naive());
    config.seed_dir = None;
    config.appointments_per_patient = args.visits.div_ceil(4) + 1;
    let sandbox = Sandbox::new(&config)?;
    let appointments = sandbox.appointment_ids();
    let running = sandbox.clone().spawn(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    println!(
        "bench sync: {total} Observation creates ({} visits × {}), sandbox latency {} ms, concurrency {}",
        args.visits, args.per_visit, args.latency_ms, args.concurrency
    );

    let dir = tempfile::tempdir()?;
    let mut engines = vec![("sqlite", format!("sqlite:{}", dir.path().join("bench.db").display()))];
    if let Some(pg) = &args.postgres {
        engines.push(("postgres", scratch_postgres(pg).await?));
    } else {
        println!("  (no --postgres URL: PostgreSQL half skipped)");
    }
    println!(
        "{:<10} {:>14} {:>14} {:>8} {:>16} {:>16}",
        "engine", "raw /s", "pipeline /s", "ratio", "raw CPU ms/d", "pipe CPU ms/d"
    );
    for (engine, url) in engines {
        let store = Store::open(&url, 16, telechart_store::KeyConfig::new(telechart_store::Kek::generate()?)).await?;
        let client = FhirClient::new(&running.fhir_base, VendorProfile::generic(), Duration::from_secs(30))?;
        let bodies = prepare(&store, &client, &appointments, &args, &running.fhir_base).await?;
        sandbox.set_latency(Duration::from_millis(args.latency_ms));
        let raw = raw_client(&client, &bodies, args.concurrency).await?;
        let pipeline = pipeline(&store, &args, total).await?;
        sandbox.set_latency(Duration::ZERO);
        let fmt_cpu = |m: &Measured| m.cpu_ms_per_delivery.map_or("n/a".to_owned(), |c| format!("{c:.3}"));
        println!(
            "{engine:<10} {:>14.1} {:>14.1} {:>8.3} {:>16} {:>16}",
            raw.per_second,
            pipeline.per_second,
            pipeline.per_second / raw.per_second,
            fmt_cpu(&raw),
            fmt_cpu(&pipeline)
        );
        store.close().await;
    }
    running.shutdown().await;
    Ok(())
}

/// Telechart's own CPU milliseconds per delivery on `engine` (a fresh database): the pipeline's
/// CPU minus a raw client's sending the same bodies, so neither the in-process EHR emulator nor
/// the HTTP exchange counts — the smallest fair figure. `None` where /proc is not readable.
/// Telechart's CPU per delivery, two ways: the process minus the sandbox EHR's own threads
/// (what Telechart spends, its HTTP client included), and the stricter pipeline minus a raw
/// client sending the same bodies (which also leaves out Telechart's HTTP client).
pub(crate) struct DeliveryCpu {
    pub telechart_ms: Option<f64>,
    pub beyond_raw_client_ms: Option<f64>,
}

/// Thread name of the runtime the bench's sandbox EHR runs on, so its CPU can be told apart.
const EHR_THREADS: &str = "sandbox-ehr";

async fn delivery_cpu_ms(args: &SyncBenchArgs, engine: &str) -> anyhow::Result<DeliveryCpu> {
    let mut config = SandboxConfig::new(Clock::system().now().date_naive());
    config.seed_dir = None;
    config.appointments_per_patient = args.visits.div_ceil(4) + 1;
    let sandbox = Sandbox::new(&config)?;
    let appointments = sandbox.appointment_ids();
    // The EHR gets a runtime (and threads) of its own: it stands for another machine.
    let ehr_runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).thread_name(EHR_THREADS).enable_all().build()?;
    let running = ehr_runtime.spawn(sandbox.spawn(SocketAddr::from(([127, 0, 0, 1], 0)))).await??;
    let dir = tempfile::tempdir()?;
    let url = match (engine, &args.postgres) {
        ("postgres", Some(pg)) => scratch_postgres(pg).await?,
        _ => format!("sqlite:{}", dir.path().join("delivery.db").display()),
    };
    let store = Store::open(&url, 16, telechart_store::KeyConfig::new(telechart_store::Kek::generate()?)).await?;
    let client = FhirClient::new(&running.fhir_base, VendorProfile::generic(), Duration::from_secs(30))?;
    let bodies = prepare(&store, &client, &appointments, args, &running.fhir_base).await?;
    let raw = raw_client(&client, &bodies, args.concurrency).await?;
    let total = args.visits * args.per_visit;
    let ehr0 = threads_cpu_seconds(EHR_THREADS);
    let measured = pipeline(&store, args, total).await?;
    let ehr_ms = ehr0.zip(threads_cpu_seconds(EHR_THREADS)).map(|(a, b)| (b - a) * 1000.0 / total as f64);
    store.close().await;
    running.shutdown().await;
    ehr_runtime.shutdown_background();
    Ok(DeliveryCpu {
        telechart_ms: measured.cpu_ms_per_delivery.zip(ehr_ms).map(|(p, e)| (p - e).max(0.0)),
        beyond_raw_client_ms: measured.cpu_ms_per_delivery.zip(raw.cpu_ms_per_delivery).map(|(p, r)| (p - r).max(0.0)),
    })
}

/// CPU seconds (user + system) of this process's live threads whose name starts with `prefix`.
fn threads_cpu_seconds(prefix: &str) -> Option<f64> {
    let mut seconds = 0.0;
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        if std::fs::read_to_string(task.path().join("comm")).is_ok_and(|name| name.starts_with(prefix)) {
            seconds += stat_cpu_seconds(&task.path().join("stat"))?;
        }
    }
    Some(seconds)
}

async fn scratch_postgres(admin_url: &str) -> anyhow::Result<String> {
    let name = format!("telechart_bench_{}", uuid::Uuid::new_v4().simple());
    telechart_store::create_postgres_database(admin_url, &name)
        .await
        .context("creating a scratch database on the PostgreSQL server for the bench")
}

/// Visits with their Encounter already in the EHR, and `per_visit` vitals each queued. Returns
/// the Observation bodies the raw client will send (the same the pipeline maps).
async fn prepare(
    store: &Store,
    client: &FhirClient,
    appointments: &[String],
    args: &SyncBenchArgs,
    fhir_base: &str,
) -> anyhow::Result<Vec<Value>> {
    let clock = Clock::system();
    let now = clock.now_ms();
    store
        .upsert_connection(&ConnectionRow {
            tenant_id: TENANT.into(),
            id: "sandbox".into(),
            name: "bench".into(),
            profile: "generic".into(),
            base_url: fhir_base.into(),
            settings: "{}".into(),
            created_at: now,
            updated_at: now,
        })
        .await?;
    let audit = |visit: &str| AuditEntry {
        tenant_id: TENANT.into(),
        actor: "bench".into(),
        action: "bench.setup".into(),
        entity_type: "visit".into(),
        entity_id: visit.into(),
        visit_id: Some(visit.into()),
        phi: true,
        detail: String::new(),
        ..AuditEntry::default()
    };
    let mut bodies = Vec::new();
    let mut prepared = Vec::new();
    let targets = ["sandbox".to_owned()];
    for appointment in appointments.iter().take(args.visits) {
        let appt = client.read("Appointment", appointment).await?.resource;
        let patient =
            appt.pointer("/participant/0/actor/reference").and_then(Value::as_str).unwrap_or_default().to_owned();
        let visit_id = uuid::Uuid::now_v7().to_string();
        let visit = NewVisit {
            tenant_id: TENANT.into(),
            id: visit_id.clone(),
            connection_id: "sandbox".into(),
            appointment_id: appointment.clone(),
            patient: Phi::new(patient.clone()),
            practitioner: None,
            state: "booked".into(),
            visit_type: None,
            lane: telechart_store::LANE_CLINICAL,
        };
        store.create_visit(&visit, &audit(&visit_id), now).await?;
        // The Encounter goes in untimed, through the store's own queue API.
        let change = Artifact::EncounterStatus(EncounterStatusChange {
            from: VisitState::Booked,
            to: VisitState::Arrived,
            at: clock.now(),
        });
        let encounter_artifact = artifact(&change, &visit_id)?;
        store
            .record_event(TENANT, &visit_id, 1, "arrived", &[encounter_artifact], &targets, &[], &audit(&visit_id), now)
            .await?;
        let claimed = store.claim_due(TENANT, "bench-setup", now + 60_000, now, 1).await?;
        let ctx = telechart_visit::VisitContext {
            identifier_system: SYSTEM.into(),
            visit_id: visit_id.clone(),
            patient,
            practitioner: None,
            appointment: format!("Appointment/{appointment}"),
        };
        let Artifact::EncounterStatus(change) = change else { continue };
        let encounter = serde_json::to_value(telechart_visit::encounter_for_create(&ctx, &change))?;
        let written = client.create("Encounter", &encounter).await?;
        for c in claimed {
            store
                .complete_delivery(
                    &c.row,
                    "bench-setup",
                    &telechart_store::Completion {
                        ehr_resource_id: &written.id,
                        ehr_version: written.version.as_deref(),
                        ..Default::default()
                    },
                    &audit(&visit_id),
                    now,
                )
                .await?;
        }
        prepared.push((visit_id, ctx, written.id));
    }
    // Vitals are queued only once every Encounter is in, so the setup claims above only ever
    // took Encounters.
    for (visit_id, ctx, encounter_id) in prepared {
        let vitals = VisitState::Arrived.capture_vitals(&heart_rates(args.per_visit), clock.now())?;
        let mut artifacts = Vec::new();
        for vital in vitals {
            let a = Artifact::Vital(vital.clone());
            let row = artifact(&a, &visit_id)?;
            let obs = telechart_visit::vital_observation(&ctx, &row.id, &vital, Some(&encounter_id), clock.now())?;
            bodies.push(serde_json::to_value(obs)?);
            artifacts.push(row);
        }
        store.record_event(TENANT, &visit_id, 2, "arrived", &artifacts, &targets, &[], &audit(&visit_id), now).await?;
    }
    Ok(bodies)
}

/// `count` heart-rate readings (60, 61, … /min): the benches' vitals.
fn heart_rates(count: usize) -> Vec<VitalInput> {
    (0..count as u64)
        .map(|n| VitalInput {
            kind: "heart-rate".into(),
            value: Some((60 + n).into()),
            systolic: None,
            diastolic: None,
            unit: "/min".into(),
            effective: None,
            device: None,
        })
        .collect()
}

fn artifact(a: &Artifact, visit_id: &str) -> anyhow::Result<NewArtifact> {
    let id = uuid::Uuid::now_v7().to_string();
    let identifier = if matches!(a, Artifact::EncounterStatus(_)) { visit_id.to_owned() } else { id.clone() };
    Ok(NewArtifact {
        kind: a.kind().as_str().into(),
        resource_type: a.kind().resource_type().into(),
        identifier,
        payload: Phi::new(serde_json::to_string(a)?),
        disclosable: a.kind().disclosable(),
        id,
    })
}

async fn raw_client(client: &FhirClient, bodies: &[Value], concurrency: usize) -> anyhow::Result<Measured> {
    let cpu0 = cpu_seconds();
    let started = Instant::now();
    let semaphore = std::sync::Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut tasks = tokio::task::JoinSet::new();
    for body in bodies {
        let (client, semaphore, body) = (client.clone(), semaphore.clone(), body.clone());
        tasks.spawn(async move {
            let _permit = semaphore.acquire_owned().await?;
            client.create("Observation", &body).await.map(|_| ()).map_err(anyhow::Error::from)
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok(Measured {
        per_second: bodies.len() as f64 / elapsed,
        cpu_ms_per_delivery: cpu0.zip(cpu_seconds()).map(|(a, b)| (b - a) * 1000.0 / bodies.len() as f64),
    })
}

async fn pipeline(store: &Store, args: &SyncBenchArgs, total: usize) -> anyhow::Result<Measured> {
    let mut sync = SyncConfig::new(TENANT, "bench-worker", SYSTEM);
    sync.concurrency = args.concurrency;
    sync.backoff = Backoff { base: Duration::from_millis(100), max: Duration::from_secs(2) };
    let connections = Connections::new(store.clone(), Duration::from_secs(30));
    let worker = Worker::new(store.clone(), Clock::system(), sync, connections, QueueSignal::default());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let cpu0 = cpu_seconds();
    let started = Instant::now();
    let handle = tokio::spawn(worker.run(async {
        let _ = stop_rx.await;
    }));
    let elapsed = loop {
        let counts = store.queue_counts(TENANT).await?;
        if counts.pending + counts.in_flight == 0 {
            anyhow::ensure!(counts.dead == 0, "{} deliveries went dead during the bench", counts.dead);
            break started.elapsed().as_secs_f64();
        }
        // Polled sparingly: the poll shares the database with the pipeline it measures.
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let cpu1 = cpu_seconds();
    let _ = stop_tx.send(());
    handle.await??;
    Ok(Measured {
        per_second: total as f64 / elapsed,
        cpu_ms_per_delivery: cpu0.zip(cpu1).map(|(a, b)| (b - a) * 1000.0 / total as f64),
    })
}
