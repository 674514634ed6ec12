//! Starting the pieces: logging, the store, connections, server and workers.

use std::time::Duration;

use anyhow::Context;
use telechart_ehr::WireTap;
use telechart_server::{AppState, RunningServer};
use telechart_store::{Clock, ConnectionRow, KeyConfig, Store};
use telechart_sync::{Backoff, Connections, FaultPlan, QueueSignal, SyncConfig, Worker};
use tokio::task::JoinHandle;

use crate::config::Config;

pub fn init_logging(filter: &str) {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| filter.to_owned());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .try_init();
}

type RunningWorker = (tokio::sync::oneshot::Sender<()>, JoinHandle<Result<(), telechart_sync::SyncError>>);

/// A running Telechart: store, API server, workers.
pub struct Telechart {
    pub store: Store,
    pub server: RunningServer,
    workers: Vec<RunningWorker>,
}

impl Telechart {
    pub async fn stop(self) {
        for (stop, handle) in self.workers {
            let _ = stop.send(());
            let _ = handle.await;
        }
        self.server.shutdown().await;
        self.store.close().await;
    }
}

/// The store with the configured connections recorded, and a client factory for them (for
/// commands that talk to an EHR without serving).
pub struct Opened {
    pub store: Store,
    pub connections: Connections,
}

pub async fn open_store_with_connections(config: &Config, clock: &Clock) -> anyhow::Result<Opened> {
    let store = Store::open(&config.database_url, 2, config.keys.load()?)
        .await
        .with_context(|| format!("opening the database {}", crate::config::mask_url(&config.database_url)))?;
    record_connections(config, &store, clock).await?;
    let connections = Connections::new(store.clone(), Duration::from_secs(config.worker.ehr_timeout_seconds))
        .with_egress(config.egress_registry());
    Ok(Opened { store, connections })
}

async fn record_connections(config: &Config, store: &Store, clock: &Clock) -> anyhow::Result<()> {
    for c in &config.connections {
        telechart_ehr::VendorProfile::parse(&c.profile).with_context(|| format!("connection {}", c.id))?;
        let base_url = c.auth.expand(&c.base_url).with_context(|| format!("connection {}", c.id))?;
        let now = clock.now_ms();
        store
            .upsert_connection(&ConnectionRow {
                tenant_id: config.tenant.clone(),
                id: c.id.clone(),
                name: c.name.clone(),
                profile: c.profile.clone(),
                base_url,
                settings:
                    serde_json::json!({ "backend": c.backend, "launch": c.launch, "auth": c.auth, "mllp": c.mllp, "quota": c.quota,
                        "max_in_flight": c.max_in_flight })
                        .to_string(),
                created_at: now,
                updated_at: now,
            })
            .await?;
    }
    Ok(())
}

pub async fn start(config: &Config, keys: KeyConfig, clock: Clock, tap: Option<WireTap>) -> anyhow::Result<Telechart> {
    let store = Store::open(&config.database_url, config.worker.database_connections, keys)
        .await
        .with_context(|| format!("opening the database {}", crate::config::mask_url(&config.database_url)))?;
    record_connections(config, &store, &clock).await?;
    let timeout = Duration::from_secs(config.worker.ehr_timeout_seconds);
    let mut connections = Connections::new(store.clone(), timeout).with_egress(config.egress_registry());
    if let Some(tap) = tap {
        connections = connections.with_tap(tap);
    }
    let signal = QueueSignal::default();
    let platforms = config.platforms()?;
    telechart_server::prometheus_handle();
    let state = AppState {
        store: store.clone(),
        clock: clock.clone(),
        identifier_system: config.identifier_system.clone(),
        connections: connections.clone(),
        signal: signal.clone(),
        embedding: std::sync::Arc::new(telechart_server::Embedding {
            origins_by_connection: config
                .connections
                .iter()
                .filter(|c| !c.embed_origins.is_empty())
                .map(|c| (c.id.clone(), c.embed_origins.clone()))
                .collect(),
        }),
        public_url: config.public_url.clone(),
        sessions: std::sync::Arc::new(config.session_policy()?),
        platforms: platforms.clone(),
        notification_secrets: std::sync::Arc::new(config.notification_secrets()?),
        drafting: std::sync::Arc::new(config.drafting()?),
        compliance: std::sync::Arc::new(config.compliance()?),
        ehr_tokens: std::sync::Arc::default(),
        oidc: config
            .oidc_settings()?
            .map(telechart_server::Oidc::new)
            .transpose()
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    };
    let server = telechart_server::spawn(state, config.listen, config.tls.settings()?).await?;
    let mut workers = Vec::new();
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".to_owned());
    for n in 0..config.worker.workers {
        let mut sync = SyncConfig::new(
            config.tenant.clone(),
            format!("{host}-{}-{n}", std::process::id()),
            config.identifier_system.clone(),
        );
        sync.concurrency = config.worker.concurrency;
        sync.lease = Duration::from_secs(config.worker.lease_seconds);
        sync.max_attempts = config.worker.max_attempts;
        sync.max_age = Duration::from_secs(config.worker.max_age_hours.saturating_mul(3600));
        sync.consent_policy = config.consent_policy.clone();
        sync.backoff = Backoff {
            base: Duration::from_millis(config.worker.backoff_base_ms),
            max: Duration::from_secs(config.worker.backoff_max_seconds),
        };
        let worker = Worker::new(store.clone(), clock.clone(), sync, connections.clone(), signal.clone())
            .with_faults(FaultPlan::default());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(worker.run(async {
            let _ = rx.await;
        }));
        workers.push((tx, handle));
    }
    // Appointment polls, one loop per connection that asks for them.
    for c in config.connections.iter().filter(|c| c.poll_seconds.is_some()) {
        let inbox = telechart_sync::AppointmentInbox::new(
            store.clone(),
            clock.clone(),
            connections.clone(),
            platforms.clone(),
            &config.tenant,
        );
        let (id, every) = (c.id.clone(), Duration::from_secs(c.poll_seconds.unwrap_or(60).max(1)));
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            loop {
                match inbox.poll(&id).await {
                    Ok(report) if report.changed > 0 => {
                        tracing::info!(connection = %id, changed = report.changed, "appointments polled")
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(connection = %id, error = %e, "appointment poll failed; will retry"),
                }
                tokio::select! {
                    _ = &mut rx => return Ok(()),
                    () = tokio::time::sleep(every) => {}
                }
            }
        });
        workers.push((tx, handle));
    }
    // Orders followed to completion.
    let tracker = telechart_sync::OrderTracker::new(store.clone(), clock.clone(), connections.clone(), &config.tenant);
    let every = Duration::from_secs(config.worker.order_poll_seconds.max(1));
    let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        loop {
            if let Err(e) = tracker.run_once().await {
                tracing::warn!(error = %e, "order tracking pass failed; will retry");
            }
            tokio::select! {
                _ = &mut rx => return Ok(()),
                () = tokio::time::sleep(every) => {}
            }
        }
    });
    workers.push((tx, handle));
    // The webhook sender: one per process; the outbox's leases keep two from sending one event.
    let mut sender =
        telechart_sync::WebhookSender::new(store.clone(), clock.clone(), platforms, config.egress_registry())?;
    sender.consent_policy = config.consent_policy.clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        sender
            .run(Duration::from_millis(500), async {
                let _ = rx.await;
            })
            .await;
        Ok(())
    });
    workers.push((tx, handle));
    // The audit alert runner: the rules over each tenant's new records, then the sinks.
    let sinks = config.audit.alert_sinks.iter().map(|s| s.sink()).collect::<anyhow::Result<Vec<_>>>()?;
    // The KPI bands: the site blueprint's (refused with its problems named), else the defaults.
    let blueprint = match &config.blueprint_file {
        Some(path) => {
            let blueprint = crate::blueprint::load(path)?;
            let problems = crate::blueprint::problems(&blueprint, config);
            anyhow::ensure!(
                problems.is_empty(),
                "the blueprint {} has problems (telechart blueprint check):\n  {}",
                path.display(),
                problems.join("\n  ")
            );
            Some(blueprint)
        }
        None => None,
    };
    let runner = telechart_sync::alerts::AlertRunner::new(
        store.clone(),
        clock.clone(),
        config.audit.alerts.clone(),
        sinks,
        config.egress_registry(),
    )?
    .with_kpi_bands(crate::blueprint::bands(blueprint.as_ref()));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        runner
            .run(Duration::from_secs(2), async {
                let _ = rx.await;
            })
            .await;
        Ok(())
    });
    workers.push((tx, handle));
    // The audit checkpointer: signs each tenant's new records into the outside witness.
    let signer = config.audit.signer()?;
    let witness = config.audit.witness();
    let (every_records, every_ms) =
        (config.audit.checkpoint_every_records.max(1), config.audit.checkpoint_every_seconds.max(0) * 1000);
    let (audit_store, audit_clock) = (store.clone(), clock.clone());
    let instance = uuid::Uuid::now_v7().to_string();
    let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        loop {
            let stopping = tokio::select! {
                _ = &mut rx => true,
                () = tokio::time::sleep(Duration::from_secs(1)) => false,
            };
            // One instance of many checkpoints: each signs from the last checkpoint, and two at
            // once would witness overlapping ranges. The lease outlives a few missed beats.
            match audit_store.try_lead(CHECKPOINTER_ROLE, &instance, audit_clock.now_ms(), 10_000).await {
                Ok(true) => {}
                Ok(false) if stopping => return Ok(()),
                Ok(false) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "audit checkpointer lease unavailable; will retry");
                    if stopping {
                        return Ok(());
                    }
                    continue;
                }
            }
            // On the way out, witness everything so a clean stop leaves nothing unwitnessed.
            let records = if stopping { 1 } else { every_records };
            let ms = if stopping { 0 } else { every_ms };
            match audit_store.checkpoint_audit(&signer, &witness, audit_clock.now_ms(), records, ms).await {
                Ok(passes) => {
                    for p in passes {
                        if let telechart_store::CheckpointPass::Broken(f) = p {
                            tracing::error!(tenant = %f.tenant_id, record = f.tenant_seq, problem = f.problem, "audit chain broken: {}", f.detail);
                            let alert = telechart_audit::Alert {
                                rule: telechart_audit::AlertRule::VerificationFailure,
                                at: audit_clock.now_ms(),
                                actor: "system".into(),
                                visit_id: None,
                                detail: format!("audit chain broken at record {}: {}", f.tenant_seq, f.problem),
                                tenant_seq: f.tenant_seq,
                            };
                            if let Err(e) = audit_store.record_alerts(&f.tenant_id, &[alert], 0).await {
                                tracing::warn!(error = %e, "could not keep the verification-failure alert");
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "audit checkpoint failed; will retry"),
            }
            if stopping {
                // Handed on at once, so another instance need not wait out the lease.
                if let Err(e) = audit_store.release_lead(CHECKPOINTER_ROLE, &instance).await {
                    tracing::warn!(error = %e, "could not release the audit checkpointer lease");
                }
                return Ok(());
            }
        }
    });
    workers.push((tx, handle));
    Ok(Telechart { store, server, workers })
}

/// What one retention pass purged.
#[derive(Debug, Default)]
pub struct RetentionReport {
    pub payloads: u64,
    pub transcripts: u64,
    pub audit: Option<telechart_store::AuditPurge>,
    /// Visits under a legal hold, whose data was kept.
    pub held_visits: usize,
}

const DAY_MS: i64 = 86_400_000;
/// The leader lease the audit checkpointer holds.
const CHECKPOINTER_ROLE: &str = "audit-checkpointer";

/// Applies `[retention]` to one tenant: fully delivered transcripts after `transcript_days`, other
/// delivered payloads after `delivered_payload_days`, and audit records older than
/// `audit_log_years` (whole witnessed segments, behind a signed tombstone) — nothing of a visit
/// under legal hold. The pass is itself audited.
pub async fn apply_retention(
    store: &Store,
    config: &Config,
    tenant: &str,
    clock: &Clock,
) -> anyhow::Result<RetentionReport> {
    let retention = &config.retention;
    let now = clock.now_ms();
    let held = store.held_visits(tenant).await?;
    let mut report = RetentionReport { held_visits: held.len(), ..RetentionReport::default() };
    let is_transcript = |payload: &telechart_store::Phi| {
        matches!(
            serde_json::from_str::<telechart_visit::Artifact>(payload.expose()),
            Ok(telechart_visit::Artifact::Document(d)) if matches!(
                d.kind,
                telechart_visit::DocumentKind::ChatTranscript | telechart_visit::DocumentKind::VideoTranscript
            )
        )
    };
    if let Some(days) = retention.transcript_days.or(retention.delivered_payload_days) {
        let mut after = String::new();
        loop {
            let page = store
                .purge_delivered_page(
                    tenant,
                    now - i64::from(days) * DAY_MS,
                    Some("document"),
                    &after,
                    500,
                    &held,
                    is_transcript,
                )
                .await?;
            report.transcripts += page.purged;
            match page.next {
                Some(next) => after = next,
                None => break,
            }
        }
    }
    if let Some(days) = retention.delivered_payload_days {
        let mut after = String::new();
        loop {
            let page = store
                .purge_delivered_page(tenant, now - i64::from(days) * DAY_MS, None, &after, 500, &held, |_| true)
                .await?;
            report.payloads += page.purged;
            match page.next {
                Some(next) => after = next,
                None => break,
            }
        }
    }
    // Leap days included: a year of retention is never cut short.
    let audit_cutoff = now - i64::from(retention.audit_log_years) * 366 * DAY_MS;
    let signer = config.audit.signer()?;
    report.audit =
        store.purge_audit_segment(&signer, &config.audit.witness(), tenant, audit_cutoff, &held, now).await?;
    if report.payloads + report.transcripts > 0 || report.audit.is_some() {
        let entry = telechart_store::AuditEntry {
            tenant_id: tenant.to_owned(),
            actor: "system:retention".into(),
            action: "retention.purge".into(),
            entity_type: "tenant".into(),
            entity_id: tenant.to_owned(),
            phi: true,
            detail: format!(
                "{} payload(s), {} transcript(s), audit records {}; {} visit(s) under legal hold kept",
                report.payloads,
                report.transcripts,
                report.audit.as_ref().map_or_else(|| "none".to_owned(), |a| format!("{}..={}", a.from, a.to)),
                report.held_visits
            ),
            purpose_of_use: Some("HOPERAT".into()),
            ..telechart_store::AuditEntry::default()
        };
        store.audit(&entry, now).await?;
    }
    Ok(report)
}

pub async fn serve(config: Config) -> anyhow::Result<()> {
    if config.connections.is_empty() {
        tracing::warn!("no EHR connections configured; visits cannot be opened until one is added");
    }
    let keys = config.keys.load()?;
    let telechart = start(&config, keys, Clock::system(), None).await?;
    let sweeper = {
        let (store, config) = (telechart.store.clone(), config.clone());
        Some(tokio::spawn(async move {
            loop {
                match apply_retention(&store, &config, &config.tenant, &Clock::system()).await {
                    Ok(r) if r.payloads + r.transcripts > 0 || r.audit.is_some() => tracing::info!(
                        payloads = r.payloads,
                        transcripts = r.transcripts,
                        audit_to = r.audit.as_ref().map(|a| a.to),
                        held_visits = r.held_visits,
                        "retention purged"
                    ),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "retention sweep failed; will retry"),
                }
                // An agreement that ended opens its return-or-destroy task (once).
                if let Err(e) = crate::baa::open_ended(&store, &config, &config.tenant, &Clock::system()).await {
                    tracing::warn!(error = %e, "opening return-or-destroy tasks failed; will retry");
                }
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
        }))
    };
    tracing::info!(url = %telechart.server.base_url, engine = telechart.store.engine(), "telechart is serving");
    tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
    tracing::info!("shutting down: finishing in-flight deliveries");
    if let Some(task) = sweeper {
        task.abort();
    }
    telechart.stop().await;
    Ok(())
}
