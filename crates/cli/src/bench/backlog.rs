//! Delivery under load: `bench queue` (cost per delivery and memory as the backlog grows),
//! `bench lanes` (clinical latency with and without a backfill running) and `bench rate` (how
//! much of an EHR's rate limit is used, and how many 429s once warmed up).

use std::time::{Duration, Instant};

use telechart_ehr::{FhirClient, VendorProfile};
use telechart_sandbox::{RunningSandbox, Sandbox, SandboxConfig};
use telechart_store::{Clock, ConnectionRow, DeliveryStatus, LANE_BACKFILL, LANE_CLINICAL, NewVisit, Phi, Store};
use telechart_sync::{Backoff, Connections, QueueSignal, SyncConfig, Worker};
use telechart_visit::{Artifact, EncounterStatusChange, VisitState};

use super::{EHR_THREADS, SYSTEM, TENANT, artifact, cpu_seconds, heart_rates, scratch_postgres, threads_cpu_seconds};

#[derive(clap::Args, Clone)]
pub struct QueueBenchArgs {
    /// Deliveries queued when each measurement starts.
    #[arg(long, value_delimiter = ',', default_values_t = [1_000, 10_000, 100_000])]
    levels: Vec<usize>,
    /// Deliveries timed at each level.
    #[arg(long, default_value_t = 800)]
    measured: usize,
    #[arg(long, default_value_t = 10)]
    latency_ms: u64,
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    #[arg(long, env = "TELECHART_BENCH_POSTGRES_URL")]
    postgres: Option<String>,
}

#[derive(clap::Args, Clone)]
pub struct LanesBenchArgs {
    /// Backfill deliveries queued behind the clinical work.
    #[arg(long, default_value_t = 100_000)]
    backfill: usize,
    /// Clinical visits (five vitals each) arriving during the measurement.
    #[arg(long, default_value_t = 100)]
    clinical_visits: usize,
    /// Clinical visits arriving per second.
    #[arg(long, default_value_t = 10)]
    per_second: u64,
    #[arg(long, default_value_t = 20)]
    latency_ms: u64,
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    #[arg(long, env = "TELECHART_BENCH_POSTGRES_URL")]
    postgres: Option<String>,
}

#[derive(clap::Args, Clone)]
pub struct RateBenchArgs {
    /// The EHR's limit, requests a second (refused with 429 + Retry-After beyond it).
    #[arg(long, default_value_t = 40)]
    limit: u64,
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Seconds not counted at the start (the bucket fills, the pacing learns).
    #[arg(long, default_value_t = 3)]
    warmup_seconds: u64,
    #[arg(long, default_value_t = 20)]
    latency_ms: u64,
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
}

/// The EHR under test: a sandbox on a runtime of its own (so its CPU can be told apart), and
/// one Encounter per patient for the backlog's visits to file into.
struct Ehr {
    runtime: tokio::runtime::Runtime,
    running: RunningSandbox,
    sandbox: Sandbox,
    encounters: Vec<(String, String)>,
}

impl Ehr {
    async fn start(latency_ms: u64) -> anyhow::Result<Ehr> {
        let mut config = SandboxConfig::new(Clock::system().now().date_naive());
        config.seed_dir = None;
        config.appointments_per_patient = 1;
        let sandbox = Sandbox::new(&config)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(EHR_THREADS)
            .enable_all()
            .build()?;
        let running = runtime.spawn(sandbox.clone().spawn(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))).await??;
        let client = FhirClient::new(&running.fhir_base, VendorProfile::generic(), Duration::from_secs(30))?;
        let mut encounters = Vec::new();
        for appointment in sandbox.appointment_ids().iter().take(4) {
            let appt = client.read("Appointment", appointment).await?.resource;
            let patient = appt
                .pointer("/participant/0/actor/reference")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let ctx = telechart_visit::VisitContext {
                identifier_system: SYSTEM.into(),
                visit_id: uuid::Uuid::now_v7().to_string(),
                patient: patient.clone(),
                practitioner: None,
                appointment: format!("Appointment/{appointment}"),
            };
            let change =
                EncounterStatusChange { from: VisitState::Booked, to: VisitState::Arrived, at: Clock::system().now() };
            let body = serde_json::to_value(telechart_visit::encounter_for_create(&ctx, &change))?;
            encounters.push((patient, client.create("Encounter", &body).await?.id));
        }
        anyhow::ensure!(!encounters.is_empty(), "the sandbox has no appointments");
        sandbox.set_latency(Duration::from_millis(latency_ms));
        Ok(Ehr { runtime, running, sandbox, encounters })
    }

    async fn stop(self) {
        self.running.shutdown().await;
        self.runtime.shutdown_background();
    }
}

/// A fresh database on `engine` with one connection to `ehr` under `settings`.
async fn open_store(
    engine: &str,
    postgres: Option<&str>,
    dir: &std::path::Path,
    ehr: &Ehr,
    settings: serde_json::Value,
) -> anyhow::Result<Store> {
    let url = match (engine, postgres) {
        ("postgres", Some(pg)) => scratch_postgres(pg).await?,
        _ => format!("sqlite:{}", dir.join(format!("{}.db", uuid::Uuid::now_v7())).display()),
    };
    let store = Store::open(&url, 16, telechart_store::KeyConfig::new(telechart_store::Kek::generate()?)).await?;
    store
        .upsert_connection(&ConnectionRow {
            tenant_id: TENANT.into(),
            id: "sandbox".into(),
            name: "bench".into(),
            profile: "generic".into(),
            base_url: ehr.running.fhir_base.clone(),
            settings: settings.to_string(),
            created_at: 0,
            updated_at: 0,
        })
        .await?;
    Ok(store)
}

fn engines(postgres: Option<&str>) -> Vec<&'static str> {
    if postgres.is_some() {
        vec!["sqlite", "postgres"]
    } else {
        println!("  (no --postgres URL: PostgreSQL half skipped)");
        vec!["sqlite"]
    }
}

fn vitals() -> anyhow::Result<Vec<Artifact>> {
    let readings = VisitState::Arrived.capture_vitals(&heart_rates(5), Clock::system().now())?;
    Ok(readings.into_iter().map(Artifact::Vital).collect())
}

/// One visit of five vitals in `lane`, filed into an existing Encounter; queued now.
async fn queue_visit(store: &Store, encounter: &(String, String), name: &str, lane: i64) -> anyhow::Result<String> {
    let id = uuid::Uuid::now_v7().to_string();
    let audit = telechart_store::AuditEntry {
        tenant_id: TENANT.into(),
        actor: "bench".into(),
        action: "bench.setup".into(),
        entity_type: "visit".into(),
        entity_id: id.clone(),
        visit_id: Some(id.clone()),
        phi: true,
        ..Default::default()
    };
    let visit = NewVisit {
        tenant_id: TENANT.into(),
        id: id.clone(),
        connection_id: "sandbox".into(),
        appointment_id: name.to_owned(),
        patient: Phi::new(encounter.0.clone()),
        practitioner: None,
        state: "booked".into(),
        visit_type: None,
        lane,
    };
    let now = Clock::system().now_ms();
    store.create_visit(&visit, &audit, now).await?;
    store.bind_ehr_encounter(TENANT, &id, &encounter.1).await?;
    let artifacts = vitals()?.iter().map(|a| artifact(a, &id)).collect::<anyhow::Result<Vec<_>>>()?;
    store
        .record_event(
            TENANT,
            &id,
            1,
            "arrived",
            &artifacts,
            &["sandbox".to_owned()],
            &[],
            &audit,
            Clock::system().now_ms(),
        )
        .await?;
    Ok(id)
}

/// Queues `visits` visits (five deliveries each) in `lane`, eight writers at once.
async fn seed(store: &Store, ehr: &Ehr, visits: usize, lane: i64) -> anyhow::Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    let writers = 8;
    for writer in 0..writers {
        let (store, encounters) = (store.clone(), ehr.encounters.clone());
        tasks.spawn(async move {
            for n in (writer..visits).step_by(writers) {
                let encounter = &encounters[n % encounters.len()];
                queue_visit(&store, encounter, &format!("bench-{lane}-{}", uuid::Uuid::now_v7()), lane).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined??;
    }
    Ok(())
}

/// A worker running until stopped.
struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<Result<(), telechart_sync::SyncError>>,
    signal: QueueSignal,
    connections: Connections,
}

fn start_worker(store: &Store, concurrency: usize) -> Running {
    let mut sync = SyncConfig::new(TENANT, "bench-worker", SYSTEM);
    sync.concurrency = concurrency;
    sync.backoff = Backoff { base: Duration::from_millis(100), max: Duration::from_secs(2) };
    sync.max_attempts = 1_000;
    let connections = Connections::new(store.clone(), Duration::from_secs(30));
    let signal = QueueSignal::default();
    let worker = Worker::new(store.clone(), Clock::system(), sync, connections.clone(), signal.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(worker.run(async {
        let _ = stopped.await;
    }));
    Running { stop, handle, signal, connections }
}

impl Running {
    async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.handle.await??;
        Ok(())
    }
}

/// This process's resident memory, MB (VmRSS).
fn rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 =
        status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb / 1024.0)
}

pub async fn queue(args: QueueBenchArgs) -> anyhow::Result<()> {
    println!(
        "bench queue: {} deliveries timed with 1k/10k/100k… queued ({:?}), sandbox latency {} ms, concurrency {}",
        args.measured, args.levels, args.latency_ms, args.concurrency
    );
    println!(
        "{:<10} {:>9} {:>14} {:>16} {:>16} {:>10} {:>9}",
        "engine", "queued", "deliveries/s", "CPU ms/delivery", "÷ first level", "RSS MB", "seed s"
    );
    let dir = tempfile::tempdir()?;
    for engine in engines(args.postgres.as_deref()) {
        let ehr = Ehr::start(args.latency_ms).await?;
        let store = open_store(engine, args.postgres.as_deref(), dir.path(), &ehr, serde_json::json!({})).await?;
        let mut first: Option<f64> = None;
        for &level in &args.levels {
            let pending = store.count_with_status(TENANT, DeliveryStatus::Pending).await?;
            let missing = level.saturating_sub(usize::try_from(pending).unwrap_or(0));
            let seeding = Instant::now();
            seed(&store, &ehr, missing.div_ceil(5), LANE_CLINICAL).await?;
            let seed_s = seeding.elapsed().as_secs_f64();
            // The load's own write-ahead log is checkpointed before the clock starts.
            store.checkpoint_wal().await?;
            let queued = store.count_with_status(TENANT, DeliveryStatus::Pending).await?;

            let done0 = store.count_with_status(TENANT, DeliveryStatus::Done).await?;
            let (cpu0, ehr0) = (cpu_seconds(), threads_cpu_seconds(EHR_THREADS));
            let started = Instant::now();
            let running = start_worker(&store, args.concurrency);
            let mut rss = rss_mb().unwrap_or(0.0);
            let delivered = loop {
                tokio::time::sleep(Duration::from_millis(20)).await;
                rss = rss.max(rss_mb().unwrap_or(0.0));
                let delivered = store.count_with_status(TENANT, DeliveryStatus::Done).await? - done0;
                if delivered >= i64::try_from(args.measured).unwrap_or(i64::MAX) {
                    break delivered;
                }
            };
            let elapsed = started.elapsed().as_secs_f64();
            let (cpu1, ehr1) = (cpu_seconds(), threads_cpu_seconds(EHR_THREADS));
            running.stop().await?;
            let cpu_ms = match (cpu0, cpu1, ehr0, ehr1) {
                (Some(c0), Some(c1), Some(e0), Some(e1)) => ((c1 - c0) - (e1 - e0)) * 1000.0 / delivered as f64,
                _ => f64::NAN,
            };
            let base = *first.get_or_insert(cpu_ms);
            println!(
                "{engine:<10} {queued:>9} {:>14.1} {cpu_ms:>16.3} {:>16.3} {rss:>10.1} {seed_s:>9.1}",
                delivered as f64 / elapsed,
                cpu_ms / base
            );
        }
        store.close().await;
        ehr.stop().await;
    }
    Ok(())
}

/// Queues `args.clinical_visits` clinical visits at `args.per_second` while `running` works;
/// waits for every one of their deliveries and returns each one's latency (queued → done), ms.
async fn clinical_latencies(
    store: &Store,
    ehr: &Ehr,
    running: &Running,
    args: &LanesBenchArgs,
) -> anyhow::Result<Vec<f64>> {
    let gap = Duration::from_secs_f64(1.0 / args.per_second.max(1) as f64);
    let mut visits = Vec::new();
    let mut next = Instant::now();
    for n in 0..args.clinical_visits {
        let encounter = &ehr.encounters[n % ehr.encounters.len()];
        visits.push(queue_visit(store, encounter, &format!("clinical-{}", uuid::Uuid::now_v7()), LANE_CLINICAL).await?);
        running.signal.notify();
        next += gap;
        tokio::time::sleep_until(next.into()).await;
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut latencies = Vec::new();
    for visit in &visits {
        loop {
            let deliveries = store.deliveries_for_visit(TENANT, visit).await?;
            if deliveries.iter().all(|d| d.status == "done") {
                latencies
                    .extend(deliveries.iter().filter_map(|d| d.completed_at.map(|done| (done - d.created_at) as f64)));
                break;
            }
            anyhow::ensure!(Instant::now() < deadline, "clinical deliveries of {visit} did not finish");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    latencies.sort_by(f64::total_cmp);
    Ok(latencies)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub async fn lanes(args: LanesBenchArgs) -> anyhow::Result<()> {
    println!(
        "bench lanes: {} clinical visits (×5 vitals) at {}/s, alone and behind {} queued backfill deliveries; \
         sandbox latency {} ms, concurrency {}",
        args.clinical_visits, args.per_second, args.backfill, args.latency_ms, args.concurrency
    );
    println!(
        "{:<10} {:>12} {:>12} {:>12} {:>12} {:>9} {:>18}",
        "engine", "alone p50", "alone p99", "backfill p50", "backfill p99", "p99 ×", "backfill done /s"
    );
    let dir = tempfile::tempdir()?;
    for engine in engines(args.postgres.as_deref()) {
        let ehr = Ehr::start(args.latency_ms).await?;
        let store = open_store(engine, args.postgres.as_deref(), dir.path(), &ehr, serde_json::json!({})).await?;
        let running = start_worker(&store, args.concurrency);
        let alone = clinical_latencies(&store, &ehr, &running, &args).await?;
        running.stop().await?;

        seed(&store, &ehr, args.backfill.div_ceil(5), LANE_BACKFILL).await?;
        let done0 = store.count_with_status(TENANT, DeliveryStatus::Done).await?;
        let started = Instant::now();
        let running = start_worker(&store, args.concurrency);
        // The backfill is flowing before the first clinical visit arrives.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let behind = clinical_latencies(&store, &ehr, &running, &args).await?;
        let backfill_rate = (store.count_with_status(TENANT, DeliveryStatus::Done).await?
            - done0
            - i64::try_from(behind.len()).unwrap_or(0)) as f64
            / started.elapsed().as_secs_f64();
        running.stop().await?;
        println!(
            "{engine:<10} {:>10.1}ms {:>10.1}ms {:>10.1}ms {:>10.1}ms {:>9.2} {backfill_rate:>18.1}",
            percentile(&alone, 50.0),
            percentile(&alone, 99.0),
            percentile(&behind, 50.0),
            percentile(&behind, 99.0),
            percentile(&behind, 99.0) / percentile(&alone, 99.0),
        );
        store.close().await;
        ehr.stop().await;
    }
    Ok(())
}

pub async fn rate(args: RateBenchArgs) -> anyhow::Result<()> {
    let counted = args.seconds.saturating_sub(args.warmup_seconds).max(1);
    println!(
        "bench rate: an EHR allowing {} requests/s (429 + Retry-After: 1 beyond), {} s counted after {} s of \
         warm-up, sandbox latency {} ms, concurrency {}",
        args.limit, counted, args.warmup_seconds, args.latency_ms, args.concurrency
    );
    println!(
        "{:<34} {:>12} {:>14} {:>18} {:>16}",
        "connection", "requests/s", "share of limit", "429s after warm-up", "429s in warm-up"
    );
    let dir = tempfile::tempdir()?;
    let quota = serde_json::json!({"quota": {"per_minute": args.limit * 60, "burst": 1}});
    for (mode, settings) in
        [("published quota (token bucket)", quota), ("no published limit (AIMD)", serde_json::json!({}))]
    {
        let ehr = Ehr::start(args.latency_ms).await?;
        let store = open_store("sqlite", None, dir.path(), &ehr, settings).await?;
        // More work than the limit lets through in the time.
        let visits = usize::try_from(args.limit * args.seconds).unwrap_or(usize::MAX).div_ceil(5) * 2;
        seed(&store, &ehr, visits, LANE_CLINICAL).await?;
        ehr.sandbox.set_rate_limit(args.limit);
        let throttled0 = ehr.sandbox.throttled();
        let running = start_worker(&store, args.concurrency);
        tokio::time::sleep(Duration::from_secs(args.warmup_seconds)).await;
        let (admitted1, throttled1) = (ehr.sandbox.admitted(), ehr.sandbox.throttled());
        let counting = Instant::now();
        tokio::time::sleep(Duration::from_secs(counted)).await;
        let (admitted2, throttled2) = (ehr.sandbox.admitted(), ehr.sandbox.throttled());
        let elapsed = counting.elapsed().as_secs_f64();
        let limit = running.connections.client(TENANT, "sandbox").await?.pacing().limit();
        running.stop().await?;
        let per_second = (admitted2 - admitted1) as f64 / elapsed;
        println!(
            "{mode:<34} {per_second:>12.1} {:>13.1}% {:>18} {:>16}   (in flight learnt: {limit:.1})",
            per_second * 100.0 / args.limit as f64,
            throttled2 - throttled1,
            throttled1 - throttled0,
        );
        store.close().await;
        ehr.stop().await;
    }
    Ok(())
}
