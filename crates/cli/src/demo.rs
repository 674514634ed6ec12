//! `telechart demo` and `telechart sandbox`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;
use serde_json::{Value, json};
use telechart_ehr::{FhirClient, VendorProfile, WireTap};
use telechart_sandbox::{Sandbox, SandboxConfig};
use telechart_store::Clock;

use crate::config::{Config, ConnectionConfig};

#[derive(clap::Args)]
pub struct SandboxArgs {
    #[arg(long, default_value_t = 8090)]
    port: u16,
    /// Directory of Synthea Bundles to seed from (default: ../shared/data/synthea when present).
    #[arg(long)]
    seed: Option<PathBuf>,
    /// NDJSON journal that keeps what the sandbox is sent across restarts.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Latency added to every FHIR request, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    #[arg(long, default_value_t = 4)]
    appointments_per_patient: usize,
    /// Telechart's launch URL (e.g. http://127.0.0.1:8080/launch): the schedule page's
    /// "Start video visit" buttons open it with iss and launch.
    #[arg(long)]
    app_launch_url: Option<String>,
    /// The SMART app's client id and redirect URI, registered with the sandbox's authorization
    /// server (default: client `telechart`, redirect derived from --app-launch-url).
    #[arg(long, default_value = "telechart")]
    app_client_id: String,
    /// Answer as an EHR of this kind (shared/VENDORS.md §8): epic, oracle, athena or generic.
    #[arg(long, default_value = "generic")]
    vendor: telechart_sandbox::Personality,
    /// Also listen for HL7v2 over MLLP on this port (ORU^R01, MDM^T02; ACK AA/AE).
    #[arg(long)]
    mllp_port: Option<u16>,
}

fn today() -> chrono::NaiveDate {
    Clock::system().now().date_naive()
}

pub async fn sandbox(args: SandboxArgs) -> anyhow::Result<()> {
    let mut config = SandboxConfig::new(today());
    config.seed_dir = args.seed.or_else(SandboxConfig::find_synthea);
    config.data_file = args.data;
    config.latency = Duration::from_millis(args.latency_ms);
    config.appointments_per_patient = args.appointments_per_patient;
    config.personality = args.vendor;
    if let Some(launch_url) = &args.app_launch_url {
        config.app_launch_url = Some(launch_url.clone());
        config.approve_page = true;
        config.app_clients = vec![telechart_sandbox::AppClient {
            client_id: args.app_client_id.clone(),
            redirect_uris: vec![format!("{launch_url}/callback")],
            scopes: ["launch", "launch/patient", "openid", "fhirUser", "offline_access", "patient/*.rs", "user/*.rs"]
                .map(String::from)
                .to_vec(),
        }];
    }
    let sandbox = Sandbox::new(&config)?;
    let appointments = sandbox.appointment_ids().len();
    let running = sandbox.spawn(SocketAddr::from(([127, 0, 0, 1], args.port))).await?;
    println!("sandbox EHR at {} ({appointments} telehealth appointments today)", running.fhir_base);
    if let Some(port) = args.mllp_port {
        let address = running.sandbox.spawn_mllp(SocketAddr::from(([127, 0, 0, 1], port))).await?;
        println!("HL7v2 MLLP listener at {address}");
    }
    if args.app_launch_url.is_some() {
        println!("schedule with \"Start video visit\" buttons: {}/ehr/schedule", running.root);
    }
    tokio::signal::ctrl_c().await?;
    running.shutdown().await;
    Ok(())
}

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Complete visits to run.
    #[arg(long, default_value_t = 5)]
    visits: usize,
    /// Write every resource written, read back from the sandbox, as NDJSON.
    #[arg(long)]
    export: Option<PathBuf>,
    /// Write every request body exactly as sent to the EHR, as NDJSON.
    #[arg(long)]
    export_sent: Option<PathBuf>,
    /// Visits driven at once.
    #[arg(long, default_value_t = 4)]
    parallel: usize,
    /// Give up waiting for deliveries after this many seconds.
    #[arg(long, default_value_t = 180)]
    timeout_seconds: u64,
    /// Database URL; default: a fresh SQLite file in a temporary directory.
    #[arg(long)]
    database_url: Option<String>,
    /// Keep the sandbox EHR and Telechart running after the visits (until Ctrl-C), to launch
    /// visits from the EHR's schedule page in a browser.
    #[arg(long)]
    serve: bool,
    /// Telechart's port on 127.0.0.1 (default: any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// The kind of EHR the sandbox answers as: generic, epic, oracle, athena, or `all` (the
    /// journey against each in turn, then the matrix of how each artifact got there).
    #[arg(long, default_value = "generic")]
    vendor: String,
    /// Let the EHR answer some writes with HTTP 429 (Retry-After) and refuse one Condition (a
    /// dead letter, then replayed); one more patient denies telehealth consent. Then check that
    /// the analytics dashboard, /metrics and the CSV agree.
    #[arg(long)]
    faults: bool,
    /// Write the /metrics exposition, scraped after the visits, to this file.
    #[arg(long)]
    metrics_out: Option<PathBuf>,
}

/// The vendors of `--vendor all`, in the order of the matrix's columns.
const ALL_VENDORS: [&str; 4] = ["generic", "epic", "oracle", "athena"];

/// One delivery of one vendor's run, for the matrix.
struct PlannedDelivery {
    /// What the artifact is (`vital`, `document: consent form (PDF)`, …).
    label: String,
    status: String,
    plan: Option<String>,
    readback: Option<telechart_fhir::readback::ReadBack>,
}

/// What one vendor's run left.
struct VendorReport {
    vendor: String,
    deliveries: Vec<PlannedDelivery>,
    /// Every FHIR resource written, read back; and every FHIR body as sent.
    written: Vec<Value>,
    sent: Vec<Value>,
}

impl VendorReport {
    /// Every delivery done, or dead because this EHR has no path for it (and says so).
    fn ok(&self) -> bool {
        !self.deliveries.is_empty()
            && self.deliveries.iter().all(|d| {
                d.status == "done"
                    || (d.status == "dead" && d.plan.as_deref().is_some_and(|p| p.starts_with("not deliverable")))
            })
    }

    fn accuracy(&self) -> telechart_fhir::readback::ReadBack {
        let mut total = telechart_fhir::readback::ReadBack::default();
        for r in self.deliveries.iter().filter_map(|d| d.readback.as_ref()) {
            total.add(r);
        }
        total
    }
}

/// The SMART app registration the demo's sandbox EHR knows Telechart by.
const DEMO_CLIENT_ID: &str = "telechart";

pub async fn run(config: Config, args: DemoArgs) -> anyhow::Result<ExitCode> {
    if args.visits == 0 {
        bail!("--visits must be at least 1");
    }
    let vendors: Vec<&str> = match args.vendor.as_str() {
        "all" => ALL_VENDORS.to_vec(),
        one if ALL_VENDORS.contains(&one) => vec![one],
        other => bail!("--vendor {other:?}: expected generic, epic, oracle, athena or all"),
    };
    if vendors.len() > 1 && args.serve {
        bail!("--serve keeps one sandbox up: pick one --vendor");
    }
    let mut reports = Vec::new();
    for vendor in vendors {
        reports.push(run_vendor(config.clone(), &args, vendor).await?);
    }
    if let Some(path) = &args.export {
        let written: Vec<&Value> = reports.iter().flat_map(|r| &r.written).collect();
        write_ndjson(path, written.iter().map(|v| v.to_string()))?;
        println!("\nexported {} resources read back from the EHR to {}", written.len(), path.display());
    }
    if let Some(path) = &args.export_sent {
        let sent: Vec<&Value> = reports.iter().flat_map(|r| &r.sent).collect();
        write_ndjson(path, sent.iter().map(|v| v.to_string()))?;
        println!("exported {} FHIR request bodies as sent to {}", sent.len(), path.display());
    }
    if reports.len() > 1 {
        print_matrix(&reports);
    }
    let mut ok = true;
    for report in &reports {
        if !report.ok() {
            ok = false;
            let stuck = report
                .deliveries
                .iter()
                .filter(|d| d.status != "done" && !d.plan.as_deref().is_some_and(|p| p.starts_with("not deliverable")))
                .count();
            eprintln!(
                "telechart demo: {stuck} deliveries to {} are neither done nor named as not deliverable",
                report.vendor
            );
        }
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Artifact kind × vendor → how it got there, then read-back accuracy per vendor.
fn print_matrix(reports: &[VendorReport]) {
    let mut labels: Vec<&str> = Vec::new();
    for r in reports {
        for d in &r.deliveries {
            if !labels.contains(&d.label.as_str()) {
                labels.push(&d.label);
            }
        }
    }
    let cell = |report: &VendorReport, label: &str| -> String {
        let mut plans: Vec<String> = Vec::new();
        for d in report.deliveries.iter().filter(|d| d.label == label) {
            let plan = d.plan.clone().unwrap_or_else(|| "not attempted".to_owned());
            let shown = if d.status == "done" || plan.starts_with("not deliverable") {
                plan
            } else {
                format!("FAILED ({plan})")
            };
            if !plans.contains(&shown) {
                plans.push(shown);
            }
        }
        if plans.is_empty() { "—".to_owned() } else { plans.join("; ") }
    };
    println!("\nHow each artifact reached each EHR (written / transformed / fallback / not deliverable):");
    for label in &labels {
        println!("  {label}");
        for report in reports {
            println!("      {:<8} {}", report.vendor, cell(report, label));
        }
    }
    println!("\nRead-back accuracy (fields the EHR kept as sent / fields sent, over every write read back):");
    for report in reports {
        let total = report.accuracy();
        let read_back = report.deliveries.iter().filter(|d| d.readback.is_some()).count();
        let mut dropped: BTreeMap<String, usize> = BTreeMap::new();
        for d in report.deliveries.iter().filter_map(|d| d.readback.as_ref()) {
            for f in &d.differences {
                // Array positions vary by resource; the element is what matters.
                let path: String = f.path.split('[').map(|p| p.split_once(']').map_or(p, |(_, rest)| rest)).collect();
                let how = match f.difference {
                    telechart_fhir::readback::Difference::Dropped => "dropped",
                    telechart_fhir::readback::Difference::Changed => "changed",
                };
                *dropped.entry(format!("{path} {how}")).or_default() += 1;
            }
        }
        let lost: Vec<String> = dropped.iter().map(|(p, n)| format!("{p} ×{n}")).collect();
        println!(
            "  {:<8} {:>6.2} %  ({} of {} fields, {} writes read back){}",
            report.vendor,
            100.0 * total.accuracy(),
            total.fields_kept,
            total.fields_sent,
            read_back,
            if lost.is_empty() { String::new() } else { format!("; not kept: {}", lost.join(", ")) }
        );
    }
}

/// The data-contract journey against one kind of EHR.
async fn run_vendor(mut config: Config, args: &DemoArgs, vendor: &str) -> anyhow::Result<VendorReport> {
    let personality: telechart_sandbox::Personality = vendor.parse().map_err(|e: String| anyhow::anyhow!(e))?;
    let started = Instant::now();
    // Telechart's address is fixed first: the sandbox EHR must know where to launch it.
    let listen = std::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], args.port)))
        .and_then(|l| l.local_addr())
        .with_context(|| format!("port {} on 127.0.0.1", args.port))?;
    let public_url = format!("http://{listen}");
    let mut sandbox_config = SandboxConfig::new(today());
    sandbox_config.seed_dir = SandboxConfig::find_synthea();
    sandbox_config.appointments_per_patient = args.visits.div_ceil(4).max(4);
    sandbox_config.app_launch_url = Some(format!("{public_url}/launch"));
    sandbox_config.approve_page = true;
    sandbox_config.personality = personality;
    sandbox_config.app_clients = vec![telechart_sandbox::AppClient {
        client_id: DEMO_CLIENT_ID.into(),
        redirect_uris: vec![format!("{public_url}/launch/callback")],
        scopes: ["launch", "launch/patient", "openid", "fhirUser", "offline_access", "user/*.rs"]
            .map(String::from)
            .to_vec(),
    }];
    let sandbox = Sandbox::new(&sandbox_config)?;
    let appointments = sandbox.appointment_ids();
    if appointments.len() < args.visits {
        bail!("the sandbox has {} appointments today; --visits {} needs more", appointments.len(), args.visits);
    }
    let sandbox = sandbox.spawn(SocketAddr::from(([127, 0, 0, 1], 0))).await?;

    let data_dir = tempfile::tempdir().context("creating a temporary directory for the demo database")?;
    config.database_url =
        args.database_url.clone().unwrap_or_else(|| format!("sqlite:{}", data_dir.path().join("demo.db").display()));
    config.listen = listen;
    config.public_url = Some(public_url.clone());
    // The sandbox's clinicians sign in through the EHR launch; the demo asks them for no
    // second factor of Telechart's own (a deployment keeps clinician in sessions.mfa_roles).
    config.sessions.mfa_roles.retain(|r| r != "clinician");
    config.worker.backoff_base_ms = 200;
    config.worker.backoff_max_seconds = 5;
    config.worker.order_poll_seconds = 1;
    // The demo plays the telehealth platform too: a receiver of signed webhooks, and a sender of
    // signed call events, sharing one secret with Telechart.
    let platform = DemoPlatform::start().await?;
    let secret_file = data_dir.path().join("platform.secret");
    std::fs::write(&secret_file, DEMO_PLATFORM_SECRET).context("writing the demo platform's secret")?;
    config.platforms = vec![crate::config::PlatformConfig {
        id: "demo-video".into(),
        webhook_url: Some(platform.url.clone()),
        secret_file,
        events: vec![],
        on_call_ended: telechart_sync::webhooks::OnCallEnded::FinishWhenSigned,
        phi_basis: telechart_sync::PhiBasis::Treatment,
    }];
    config.connections = vec![ConnectionConfig {
        id: "sandbox".into(),
        name: "Sandbox EHR".into(),
        profile: vendor.into(),
        base_url: sandbox.fhir_base.clone(),
        embed_origins: Vec::new(),
        backend: None,
        launch: Some(crate::config::LaunchConfig {
            client_id: DEMO_CLIENT_ID.into(),
            scope: "launch openid fhirUser offline_access user/*.rs".into(),
        }),
        // The tenant in the EHR's URLs: Oracle's GUID, athena's practice.
        auth: telechart_ehr::AuthProfile {
            tenant: match vendor {
                "oracle" => Some(telechart_sandbox::ORACLE_TENANT.into()),
                "athena" => Some(telechart_sandbox::ATHENA_PRACTICE.into()),
                _ => None,
            },
            ..VendorProfile::parse(vendor)?.auth
        },
        poll_seconds: Some(1),
        notification_secret_file: None,
        mllp: None,
        quota: None,
        max_in_flight: None,
    }];
    let tap = args.export_sent.as_ref().map(|_| WireTap::default());
    // The demo's database is thrown away with its temporary directory; so is its key.
    let keys = telechart_store::KeyConfig::new(telechart_store::Kek::generate()?);
    let telechart = crate::runtime::start(&config, keys, Clock::system(), tap.clone()).await?;
    let api = format!("{}/api/v1", telechart.server.base_url);
    eprintln!(
        "sandbox EHR ({vendor}) {}  ·  telechart {}  ·  {} visits on {}",
        sandbox.fhir_base,
        telechart.server.base_url,
        args.visits,
        telechart.store.engine()
    );

    // The sandbox's clinicians are Telechart users, linked by fhirUser, so an EHR launch knows them.
    for (id, _, _) in telechart_sandbox::CLINICIANS {
        let user = telechart
            .store
            .add_user(&config.tenant, "urn:telechart:demo", id, "clinician", Clock::system().now_ms())
            .await?;
        telechart.store.link_fhir_user(&config.tenant, &user.id, &format!("Practitioner/{id}")).await?;
    }

    // The EHR's schedule reaches the platform as signed appointment.booked webhooks (first poll).
    let booked_deadline = Instant::now() + Duration::from_secs(30);
    while platform.count("appointment.booked") < appointments.len() && Instant::now() < booked_deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The demo plays the telehealth platform: it calls the API with a platform token.
    let (_, token) =
        telechart.store.create_api_token(&config.tenant, "demo platform", "platform", Clock::system().now_ms()).await?;
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {}", token.expose()).parse()?);
    let http = reqwest::Client::builder().default_headers(headers).build()?;
    // …and a clinician reviews and signs each drafted note with a clinician token.
    let (_, token) = telechart
        .store
        .create_api_token(&config.tenant, "demo clinician", "clinician", Clock::system().now_ms())
        .await?;
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {}", token.expose()).parse()?);
    let clinician = reqwest::Client::builder().default_headers(headers).build()?;
    // The privacy office publishes the consent text patients sign, in English and Spanish.
    let (_, token) = telechart
        .store
        .create_api_token(&config.tenant, "demo privacy office", "compliance-officer", Clock::system().now_ms())
        .await?;
    let officer = reqwest::Client::new();
    for (language, title, body) in RECORDING_CONSENT {
        let text = json!({"category": "recording-ai", "version": "2026-12", "language": language, "title": title, "body": body});
        let response =
            officer.post(format!("{api}/consent-texts")).bearer_auth(token.expose()).json(&text).send().await?;
        anyhow::ensure!(response.status().is_success(), "publishing the consent text answered {}", response.status());
    }
    let dialogues = Arc::new(train_dialogues()?);
    let semaphore = Arc::new(tokio::sync::Semaphore::new(args.parallel.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    let denied_appointment = appointments.get(args.visits).cloned();
    if args.faults {
        crate::demo_faults::inject(&sandbox)?;
    }
    for (index, appointment) in appointments.into_iter().take(args.visits).enumerate() {
        let (http, api, semaphore, events) = (http.clone(), api.clone(), semaphore.clone(), platform.sender(&api));
        let clients = Clients { platform: http, clinician: clinician.clone(), fhir_base: sandbox.fhir_base.clone() };
        let dialogue = (!dialogues.is_empty()).then(|| dialogues[index % dialogues.len()].clone());
        tasks.spawn(async move {
            let _permit = semaphore.acquire_owned().await?;
            run_visit(&clients, &api, &events, &appointment, index, dialogue).await
        });
    }
    let mut visit_ids = Vec::new();
    let mut artifacts = 0;
    let mut labels: BTreeMap<String, String> = BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        let (visit_id, made) = joined.context("a visit task failed")??;
        visit_ids.push(visit_id);
        artifacts += made.len();
        labels.extend(made);
    }
    if args.faults {
        let appointment = denied_appointment.context("--faults needs one more appointment than --visits")?;
        crate::demo_faults::deny_telehealth(&http, &api, &appointment).await?;
    }

    let bar = indicatif::ProgressBar::new(artifacts as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} delivering [{bar:40}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let deadline = Instant::now() + Duration::from_secs(args.timeout_seconds);
    let mut replayed = false;
    let counts = loop {
        let c = telechart.store.queue_counts(&config.tenant).await?;
        // Platform events add status changes of their own: the queue holds the true total.
        bar.set_length(c.total().max(artifacts as i64) as u64);
        bar.set_position((c.done + c.dead + c.withheld) as u64);
        bar.set_message(if c.dead > 0 { format!("{} dead", c.dead) } else { String::new() });
        if c.pending + c.in_flight == 0 || Instant::now() > deadline {
            break c;
        }
        // Left waiting behind a dead letter: an integration admin replays it (the EHR's refusal
        // was one-off), and the visit goes on.
        if args.faults && !replayed && crate::demo_faults::settled(&telechart.store, &config.tenant).await? {
            crate::demo_faults::replay_dead_letters(&telechart.store, &config.tenant, &api).await?;
            replayed = true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    bar.finish_and_clear();
    let elapsed = started.elapsed();

    println!("Telechart demo — {} complete telehealth visits charted in the sandbox EHR ({vendor})", visit_ids.len());
    println!("  visits      {}", visit_ids.len());
    println!("  artifacts   {}", counts.total());
    println!(
        "  delivered   {} / {} ({:.1} %)",
        counts.done,
        counts.total(),
        100.0 * counts.done as f64 / counts.total().max(1) as f64
    );
    let no_path = telechart
        .store
        .dead_letters(&config.tenant)
        .await?
        .iter()
        .filter(|d| d.plan.as_deref().is_some_and(|p| p.starts_with("not deliverable")))
        .count();
    println!("  dead        {} ({no_path} with no path in this EHR, each named)", counts.dead);
    println!("  pending     {}", counts.pending + counts.in_flight);
    println!("  elapsed     {:.2} s", elapsed.as_secs_f64());
    if let Some(first) = visit_ids.first() {
        let trace: Vec<Value> = http.get(format!("{api}/visits/{first}/trace")).send().await?.json().await?;
        println!("\nVisit {first} in the EHR:");
        for t in &trace {
            println!(
                "  {:>2}. {:<18} {:<32} v{:<3} {:<5} {}",
                t["seq"].as_i64().unwrap_or_default(),
                t["resourceType"].as_str().unwrap_or_default(),
                t["ehrResource"].as_str().unwrap_or("—"),
                t["ehrVersion"].as_str().unwrap_or("?"),
                t["status"].as_str().unwrap_or_default(),
                t["plan"].as_str().unwrap_or_default()
            );
        }
    }

    // The lab completes each order in the EHR; Telechart reads status and results back.
    let root = sandbox.root.clone();
    let mut lab_orders = 0;
    for visit in &visit_ids {
        let orders: Vec<Value> = http.get(format!("{api}/visits/{visit}/orders")).send().await?.json().await?;
        for order in
            orders.iter().filter_map(|o| o["ehrResource"].as_str()).filter(|r| r.starts_with("ServiceRequest/"))
        {
            let fulfilment = json!({"value": 6.1, "unit": "%", "conclusion": "HbA1c 6.1 %"});
            reqwest::Client::new().post(format!("{root}/_sandbox/fulfil/{order}")).json(&fulfilment).send().await?;
            lab_orders += 1;
        }
    }
    let orders_deadline = Instant::now() + Duration::from_secs(30);
    let mut completed = 0;
    let mut first_orders: Vec<Value> = Vec::new();
    while Instant::now() < orders_deadline {
        completed = 0;
        for (n, visit) in visit_ids.iter().enumerate() {
            let orders: Vec<Value> = http.get(format!("{api}/visits/{visit}/orders")).send().await?.json().await?;
            completed += orders.iter().filter(|o| o["status"] == "completed").count();
            if n == 0 {
                first_orders = orders;
            }
        }
        if completed >= lab_orders {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("\nOrders: {completed} / {lab_orders} lab orders completed in the EHR, results read back");
    for order in &first_orders {
        let results: Vec<String> = order["results"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                format!("{} {}", r["resource"].as_str().unwrap_or_default(), r["value"].as_str().unwrap_or_default())
            })
            .collect();
        println!(
            "  {:<28} {:<10} {}",
            order["ehrResource"].as_str().unwrap_or("—"),
            order["status"].as_str().unwrap_or_default(),
            results.join(", ")
        );
    }
    let mut claim_ready = 0;
    for visit in &visit_ids {
        let readiness: Value = http.get(format!("{api}/visits/{visit}/claim-readiness")).send().await?.json().await?;
        if readiness["ready"] == true {
            claim_ready += 1;
        }
    }
    println!(
        "Claim-ready visits: {claim_ready} / {} (codes, POS, modifier, provider, signed note, all in the EHR)",
        visit_ids.len()
    );
    // Every webhook reached the platform, signed.
    let webhook_deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < webhook_deadline
        && telechart
            .store
            .webhook_log(&config.tenant, 10_000)
            .await?
            .iter()
            .any(|w| w.status != "done" && w.status != "dead")
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let tally: Vec<String> = platform.tally().iter().map(|(k, n)| format!("{k} {n}")).collect();
    println!("\nSigned webhooks the platform received: {}", tally.join(", "));

    let mut deliveries = Vec::new();
    for visit in &visit_ids {
        for d in telechart.store.deliveries_for_visit(&config.tenant, visit).await? {
            // Made by the server, not named in a reply: status changes, the patient's consents
            // and the form they signed through a link.
            let label = labels.get(&d.artifact_id).cloned().unwrap_or_else(|| {
                match d.resource_type.as_str() {
                    "Consent" => "consent",
                    "DocumentReference" => "document: consent form (signed through a link)",
                    _ => "encounter-status",
                }
                .to_owned()
            });
            let readback = d.readback.as_deref().and_then(|r| serde_json::from_str(r).ok());
            deliveries.push(PlannedDelivery { label, status: d.status, plan: d.plan, readback });
        }
    }
    let written = if args.export.is_some() {
        export_written(&telechart, &config.tenant, &visit_ids, &sandbox.fhir_base).await?
    } else {
        Vec::new()
    };
    // FHIR resources only: the vendor APIs take forms, and PATCH bodies are JSON Patch.
    let sent = tap
        .map(|tap| {
            tap.take()
                .iter()
                .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
                .filter(|v| v.get("resourceType").is_some())
                .collect()
        })
        .unwrap_or_default();
    if args.faults {
        crate::demo_faults::check_analytics(&telechart.store, &config.tenant, &telechart.server.base_url).await?;
    }
    if let Some(path) = &args.metrics_out {
        let metrics =
            crate::demo_faults::scrape_metrics(&telechart.store, &config.tenant, &telechart.server.base_url).await?;
        std::fs::write(path, metrics).with_context(|| format!("writing {}", path.display()))?;
    }
    let schedule = format!("{}/ehr/schedule", sandbox.root.as_str());
    println!("\nThe EHR's schedule, to launch a visit as a clinician would (SMART EHR launch):");
    println!("  {schedule}");
    if args.serve {
        println!("  open it in a browser and click \"Start video visit\"; Ctrl-C stops the demo");
        tokio::signal::ctrl_c().await?;
    } else {
        println!("  (run `telechart demo --serve` to keep the EHR and Telechart up and open it in a browser)");
    }
    telechart.stop().await;
    sandbox.shutdown().await;
    Ok(VendorReport { vendor: vendor.to_owned(), deliveries, written, sent })
}

fn write_ndjson(path: &std::path::Path, lines: impl Iterator<Item = String>) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut file =
        std::io::BufWriter::new(std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?);
    for line in lines {
        writeln!(file, "{line}")?;
    }
    file.flush()?;
    Ok(())
}

/// Every distinct resource the deliveries wrote, read back from the EHR at its current version.
async fn export_written(
    telechart: &crate::runtime::Telechart,
    tenant: &str,
    visit_ids: &[String],
    fhir_base: &str,
) -> anyhow::Result<Vec<Value>> {
    let client = FhirClient::new(fhir_base, VendorProfile::generic(), Duration::from_secs(30))?;
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for visit in visit_ids {
        for d in telechart.store.deliveries_for_visit(tenant, visit).await? {
            // What went by the vitals API or HL7v2 is not a FHIR resource there.
            let fhir = !d.plan.as_deref().is_some_and(|p| p.starts_with("fallback: vitals") || p.contains("HL7v2"));
            if let Some(id) = d.ehr_resource_id.filter(|_| fhir && d.status == "done")
                && seen.insert((d.resource_type.clone(), id.clone()))
            {
                out.push(client.read(&d.resource_type, &id).await?.resource);
            }
        }
    }
    Ok(out)
}

/// The demo's two callers: the telehealth platform, and the clinician who signs.
struct Clients {
    platform: reqwest::Client,
    clinician: reqwest::Client,
    /// The sandbox EHR's FHIR base, where the patient's name and language are read.
    fhir_base: String,
}

/// The consent the patient signs through a link in every demo visit, in both languages.
const RECORDING_CONSENT: [(&str, &str, &str); 2] = [
    (
        "en",
        "Consent to recording and AI-drafted notes",
        "I agree that this video visit may be transcribed and that software may draft my clinician's note from the transcript. My clinician reviews and signs every note.\n\nI may withdraw this consent at any time; no transcript is kept after I do.",
    ),
    (
        "es",
        "Consentimiento para la grabación y las notas redactadas por IA",
        "Acepto que esta visita por video se transcriba y que un programa redacte la nota de mi médico a partir de la transcripción. Mi médico revisa y firma cada nota.\n\nPuedo retirar este consentimiento en cualquier momento; después no se guarda ninguna transcripción.",
    ),
];

/// The patient's name as the EHR has it and their preferred language (BCP 47 primary tag),
/// for the signing page; English and a plain label when the EHR does not say.
async fn patient_name_and_language(fhir_base: &str, patient: &str) -> (String, String) {
    let read = async {
        let response = reqwest::Client::new()
            .get(format!("{fhir_base}/{patient}"))
            .header(reqwest::header::ACCEPT, "application/fhir+json")
            .send()
            .await
            .ok()?;
        response.json::<Value>().await.ok()
    };
    let Some(resource) = read.await else { return ("Patient".into(), "en".into()) };
    let name = &resource["name"][0];
    let given: Vec<&str> = name["given"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    let full = format!("{} {}", given.join(" "), name["family"].as_str().unwrap_or_default()).trim().to_owned();
    let language = resource["communication"][0]["language"]["coding"][0]["code"]
        .as_str()
        .and_then(|code| code.split('-').next())
        .filter(|code| *code == "es")
        .unwrap_or("en");
    (if full.is_empty() { "Patient".into() } else { full }, language.to_owned())
}

/// The ACI-Bench training dialogues (doctor–patient conversations, CC BY 4.0) beside the
/// project, as the demo's visit transcripts; none when the shared data is absent.
fn train_dialogues() -> anyhow::Result<Vec<String>> {
    let Some(path) = ["../shared/data/aci-bench/train.csv", "shared/data/aci-bench/train.csv"]
        .into_iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.is_file())
    else {
        return Ok(Vec::new());
    };
    let mut reader = csv::Reader::from_path(&path).with_context(|| format!("reading {}", path.display()))?;
    let column = reader.headers()?.iter().position(|h| h.trim() == "dialogue");
    let Some(column) = column else { bail!("{}: no dialogue column", path.display()) };
    let mut out = Vec::new();
    for row in reader.records() {
        out.push(row?.get(column).unwrap_or_default().to_owned());
    }
    Ok(out)
}

/// Drives one visit through the API as a telehealth platform would, with the clinician's
/// review and signature of the drafted note. Returns the visit id and the artifacts it
/// produced, each with what it is (for the vendor matrix).
async fn run_visit(
    clients: &Clients,
    api: &str,
    events: &PlatformEvents,
    appointment: &str,
    i: usize,
    dialogue: Option<String>,
) -> anyhow::Result<(String, Vec<(String, String)>)> {
    let http = &clients.platform;
    let opened =
        post(http, &format!("{api}/visits"), json!({"appointment": format!("Appointment/{appointment}")})).await?;
    let visit = opened["id"].as_str().context("the API returned a visit without an id")?.to_owned();
    let practitioner = opened["practitioner"].as_str().unwrap_or("Practitioner/sandbox-dr-1").to_owned();
    let url = format!("{api}/visits/{visit}");
    let mut artifacts: Vec<(String, String)> = Vec::new();
    let mut record = |v: &Value, document: &str| {
        for a in v["artifacts"].as_array().into_iter().flatten() {
            let kind = a["kind"].as_str().unwrap_or("artifact");
            let label = if kind == "document" { format!("document: {document}") } else { kind.to_owned() };
            artifacts.push((a["id"].as_str().unwrap_or_default().to_owned(), label));
        }
    };
    let patient = opened["patient"].as_str().unwrap_or_default().to_owned();
    record(&post(http, &format!("{url}/transitions"), json!({"to": "arrived"})).await?, "");
    // In the virtual waiting room the patient signs the telehealth consent form.
    let consent = json!({"kind": "consent-form", "title": "Telehealth informed consent", "contentType": "application/pdf",
        "data": base64::engine::general_purpose::STANDARD.encode(telechart_visit::pdf::text_pdf("Telehealth informed consent", "I consent to receive care by video.")),
        "author": patient});
    record(&post(http, &format!("{url}/documents"), consent).await?, "consent form (PDF)");
    // …and, through a single-use link in their language, reads and signs the consent to the
    // call being transcribed and the note drafted (without it, no transcript is kept).
    let (name, language) = patient_name_and_language(&clients.fhir_base, &patient).await;
    let link =
        post(http, &format!("{url}/consent-links"), json!({"category": "recording-ai", "language": language})).await?;
    let root = api.trim_end_matches("/api/v1");
    let link_url = match link["url"].as_str().context("the consent link has no URL")? {
        absolute if absolute.starts_with("http") => absolute.to_owned(),
        path => format!("{root}{path}"),
    };
    let page = reqwest::get(&link_url).await?;
    anyhow::ensure!(page.status().is_success(), "the consent page answered {}", page.status());
    let form = serde_urlencoded::to_string([("name", name.as_str()), ("read", "yes"), ("decision", "permit")])?;
    let signed = reqwest::Client::new()
        .post(&link_url)
        .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await?;
    anyhow::ensure!(signed.status().is_success(), "signing through the consent link answered {}", signed.status());
    let weight = 58.0 + (i % 40) as f64 + 0.5;
    let height = 158.0 + (i % 30) as f64;
    let bmi = (weight / (height / 100.0).powi(2) * 10.0).round() / 10.0;
    let vitals = json!({"vitals": [
        {"type": "blood-pressure", "systolic": 112 + i % 20, "diastolic": 70 + i % 12, "unit": "mm[Hg]",
         "device": {"type": "blood-pressure-cuff", "manufacturer": "Omron", "model": "BP7250"}},
        {"type": "heart-rate", "value": 62 + i % 25, "unit": "/min"},
        {"type": "respiratory-rate", "value": 14 + i % 5, "unit": "/min"},
        {"type": "body-temperature", "value": 36.5 + (i % 8) as f64 / 10.0, "unit": "Cel"},
        {"type": "oxygen-saturation", "value": 96 + i % 4, "unit": "%",
         "device": {"type": "pulse-oximeter", "manufacturer": "Masimo", "model": "MightySat"}},
        {"type": "body-weight", "value": weight, "unit": "kg"},
        {"type": "body-height", "value": height, "unit": "cm"},
        {"type": "bmi", "value": bmi, "unit": "kg/m2"}
    ]});
    record(&post(http, &format!("{url}/vitals"), vitals).await?, "");
    // The platform reports the call started (signed): the visit moves into the call by itself.
    events.send("call.started", &visit).await?;
    let chat = json!({"kind": "chat-transcript", "title": "Visit chat", "contentType": "text/plain",
        "text": "[10:02] Patient: Hi doctor, the cuff reading is on screen.\n[10:03] Clinician: Thanks, I see it."});
    record(&post(http, &format!("{url}/documents"), chat).await?, "chat transcript (text)");
    let photo = json!({"kind": "attachment", "title": "Photo shared in the call", "contentType": "image/png",
        "data": base64::engine::general_purpose::STANDARD.encode(DEMO_PNG), "author": patient});
    record(&post(http, &format!("{url}/documents"), photo).await?, "photo (PNG)");
    let diagnoses = json!({"recorder": practitioner, "diagnoses": [{"code": "I10"}, {"code": "E11.9"}]});
    record(&post(http, &format!("{url}/diagnoses"), diagnoses).await?, "");
    let orders = json!({"requester": practitioner, "orders": [
        {"kind": "lab", "code": "4548-4", "display": "Hemoglobin A1c/Hemoglobin.total in Blood"}]});
    record(&post(http, &format!("{url}/orders"), orders).await?, "");
    let transcript = match &dialogue {
        Some(text) => json!({"kind": "video-transcript", "title": "Video visit transcript",
            "contentType": "text/plain", "text": text}),
        None => json!({"kind": "video-transcript", "title": "Video visit transcript", "contentType": "text/vtt",
            "text": "WEBVTT\n\n00:00:01.000 --> 00:00:04.000\nClinician: How have you been feeling?\n\n\
                     00:00:04.500 --> 00:00:08.000\nPatient: Much better since the last visit."}),
    };
    record(&post(http, &format!("{url}/documents"), transcript).await?, "video transcript");
    // The call ends; by the tenant's rule the visit finishes when the clinician signs the note.
    events.send("call.ended", &visit).await?;
    // The platform asks for the note's draft; the clinician reviews it, drops any sentence code
    // flagged (the drafter never has them signed as written) and signs. Signing after the call
    // ended finishes the visit: the note, its Provenance and the status change.
    let draft = post(http, &format!("{url}/draft"), json!({})).await?;
    let mut text = draft["text"].as_str().context("the draft has no text")?.to_owned();
    for sentence in
        draft["sections"].as_array().into_iter().flatten().flat_map(|s| s["sentences"].as_array().into_iter().flatten())
    {
        if sentence["flags"].as_array().is_some_and(|f| !f.is_empty()) {
            text = text.replace(sentence["text"].as_str().unwrap_or_default(), "");
        }
    }
    let sign = json!({"draft": draft["id"], "text": text, "title": "Telehealth visit note", "author": practitioner});
    record(&post(&clients.clinician, &format!("{url}/draft/sign"), sign).await?, "");
    // The care plan and after-visit summary: drafted from the visit and the chart, reviewed (the
    // clinician keeps every item and adds one of their own, in the patient's language) and signed.
    let plan = post(&clients.clinician, &format!("{url}/care-plan/draft"), json!({})).await?;
    let mut items: Vec<Value> = (0..plan["items"].as_array().map_or(0, Vec::len))
        .map(|i| json!({"from": i, "text": plan["items"][i]["text"]}))
        .collect();
    let own = if plan["language"] == "es" {
        "Traiga su registro de presión a su próxima visita."
    } else {
        "Bring your blood pressure log to your next visit."
    };
    items.push(json!({"section": "follow-up", "text": own}));
    let sign = json!({"draftId": plan["id"], "items": items, "author": practitioner});
    record(&post(&clients.clinician, &format!("{url}/care-plan/sign"), sign).await?, "after-visit summary");
    // The patient gets a portal link (through the platform's webhook), opens it and ticks a task.
    let link = post(http, &format!("{url}/portal-links"), json!({})).await?;
    let link_url = match link["url"].as_str().context("the portal link has no URL")? {
        absolute if absolute.starts_with("http") => absolute.to_owned(),
        path => format!("{root}{path}"),
    };
    open_portal_and_tick_a_task(root, &link_url).await?;
    let billing = json!({"procedureCodes": ["99214"], "placeOfService": "10", "modifier": "95", "modality": "video",
        "renderingProvider": practitioner});
    let response = http.put(format!("{url}/billing")).json(&billing).send().await?;
    if !response.status().is_success() {
        bail!("PUT {url}/billing: HTTP {}", response.status());
    }
    Ok((visit, artifacts))
}

/// The patient's side of the portal, as a browser does it: the link sets the session cookie,
/// the page shows the summary and tasks, and the first task's form marks it done.
async fn open_portal_and_tick_a_task(root: &str, link_url: &str) -> anyhow::Result<()> {
    let browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
    let opened = browser.get(link_url).send().await?;
    anyhow::ensure!(opened.status().is_redirection(), "the portal link answered {}", opened.status());
    let cookie = opened
        .headers()
        .get(reqwest::header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .context("the portal link set no session cookie")?
        .to_owned();
    let page = browser.get(format!("{root}/portal")).header(reqwest::header::COOKIE, &cookie).send().await?;
    anyhow::ensure!(page.status().is_success(), "the portal answered {}", page.status());
    let html = page.text().await?;
    let after = |marker: &str| html.split(marker).nth(1).and_then(|rest| rest.split('"').next()).map(str::to_owned);
    let (Some(task), Some(token)) = (after(r#"action="/portal/tasks/"#), after(r#"name="form_token" value=""#)) else {
        bail!("the portal shows no task to mark");
    };
    let done = browser
        .post(format!("{root}/portal/tasks/{task}"))
        .header(reqwest::header::COOKIE, &cookie)
        .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string([("form_token", token.as_str()), ("done", "yes")])?)
        .send()
        .await?;
    anyhow::ensure!(done.status().is_redirection(), "marking a task answered {}", done.status());
    Ok(())
}

const DEMO_PLATFORM_SECRET: &str = "demo-platform-secret-0123456789abcdef";

/// The telehealth platform the demo plays: it receives Telechart's webhooks (checking each
/// signature) and sends its own signed call events.
struct DemoPlatform {
    url: String,
    received: Arc<std::sync::Mutex<Vec<String>>>,
}

impl DemoPlatform {
    async fn start() -> anyhow::Result<DemoPlatform> {
        let received: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
        let store = received.clone();
        let app = axum::Router::new().route(
            "/webhooks",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let store = store.clone();
                async move {
                    let signature =
                        headers.get("telechart-signature").and_then(|v| v.to_str().ok()).unwrap_or_default();
                    let now = Clock::system().now().timestamp();
                    if telechart_sync::webhooks::verify(DEMO_PLATFORM_SECRET.as_bytes(), signature, &body, now).is_err()
                    {
                        return axum::http::StatusCode::UNAUTHORIZED;
                    }
                    let kind = headers.get("telechart-event-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
                    if let Ok(mut list) = store.lock() {
                        list.push(kind.to_owned());
                    }
                    axum::http::StatusCode::NO_CONTENT
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let url = format!("http://{}/webhooks", listener.local_addr()?);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(DemoPlatform { url, received })
    }

    fn count(&self, kind: &str) -> usize {
        self.received.lock().map(|l| l.iter().filter(|k| *k == kind).count()).unwrap_or(0)
    }

    fn tally(&self) -> BTreeMap<String, usize> {
        let mut tally = BTreeMap::new();
        for kind in self.received.lock().map(|l| l.clone()).unwrap_or_default() {
            *tally.entry(kind).or_default() += 1;
        }
        tally
    }

    fn sender(&self, api: &str) -> PlatformEvents {
        PlatformEvents { url: format!("{api}/platform-events"), http: reqwest::Client::new() }
    }
}

struct PlatformEvents {
    url: String,
    http: reqwest::Client,
}

impl PlatformEvents {
    async fn send(&self, kind: &str, visit: &str) -> anyhow::Result<()> {
        let body =
            json!({"id": uuid::Uuid::now_v7().to_string(), "type": kind, "data": {"visitId": visit}}).to_string();
        let signature = telechart_sync::webhooks::sign(
            DEMO_PLATFORM_SECRET.as_bytes(),
            Clock::system().now().timestamp(),
            body.as_bytes(),
        );
        let response = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("telechart-platform", "demo-video")
            .header("telechart-signature", signature)
            .body(body)
            .send()
            .await
            .with_context(|| format!("{kind} event"))?;
        if !response.status().is_success() {
            bail!("the {kind} event was refused: HTTP {}", response.status());
        }
        Ok(())
    }
}

/// A 1×1 PNG: what a photo shared in the call looks like to the checks.
const DEMO_PNG: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4, 0x89, 0x00, 0x00, 0x00, 0x0D, 0x49,
    0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0xF8, 0xCF, 0xC0, 0xF0, 0x1F, 0x00, 0x05, 0x00, 0x01, 0xFF, 0x89, 0x99, 0x3D,
    0x1D, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
];

async fn post(http: &reqwest::Client, url: &str, body: Value) -> anyhow::Result<Value> {
    let response = http.post(url).json(&body).send().await.with_context(|| format!("POST {url}"))?;
    let status = response.status();
    let reply: Value = response.json().await.with_context(|| format!("POST {url}: reply is not JSON"))?;
    if !status.is_success() {
        bail!("POST {url}: HTTP {status}: {}", reply["issue"][0]["diagnostics"].as_str().unwrap_or("(no diagnostics)"));
    }
    Ok(reply)
}
