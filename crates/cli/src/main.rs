//! `telechart`: the one binary. `serve`, `sandbox`, `demo`, `bench`, `config`, `queue`.
// The binary's job includes printing reports to stdout; libraries never do.
#![allow(clippy::print_stdout)]

mod analytics;
mod audit;
mod baa;
mod bench;
mod blueprint;
mod check;
mod config;
mod demo;
mod demo_faults;
mod hold;
mod runtime;
mod scribe;
mod trace;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;

#[derive(Parser)]
#[command(
    name = "telechart",
    version,
    about = "Telehealth visits charted in the EHR as structured FHIR R4, exactly once"
)]
struct Cli {
    /// Configuration file (TOML). Default: ./telechart.toml when present.
    #[arg(long, global = true, env = "TELECHART_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API server and the delivery workers.
    Serve,
    /// Run the sandbox EHR (a FHIR R4 server seeded with Synthea patients and today's telehealth appointments).
    Sandbox(demo::SandboxArgs),
    /// Run complete telehealth visits against an in-process sandbox EHR and report what was charted.
    Demo(demo::DemoArgs),
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        which: bench::BenchCommand,
    },
    /// Print the effective configuration, secrets masked.
    Config,
    /// Check the deployment's security controls; exits non-zero if any fails (for CI/CD).
    Check,
    /// Encryption keys: make a key-encryption key, show data keys, rotate.
    Keys {
        #[command(subcommand)]
        which: KeysCommand,
    },
    /// People who log in through OpenID Connect.
    Users {
        #[command(subcommand)]
        which: UsersCommand,
    },
    /// The audit log: verify it against the witness, checkpoint it, export it as FHIR AuditEvent.
    Audit {
        #[command(subcommand)]
        which: audit::AuditCommand,
    },
    /// Apply the retention policy now (the server also applies it hourly).
    Retention,
    /// The note drafter: evaluate it on a file of dialogues.
    Scribe {
        #[command(subcommand)]
        which: scribe::ScribeCommand,
    },
    /// Business associate agreements that ended: their return-or-destroy tasks.
    Baa {
        #[command(subcommand)]
        which: baa::BaaCommand,
    },
    /// Legal holds: suspend every purge of a visit's or a patient's data.
    Hold {
        #[command(subcommand)]
        which: hold::HoldCommand,
    },
    /// API tokens for telehealth platforms and other clients.
    Tokens {
        #[command(subcommand)]
        which: TokensCommand,
    },
    /// The site blueprint: check it against this deployment and print each visit type's write
    /// plan for every connection.
    Blueprint {
        #[command(subcommand)]
        which: BlueprintCommand,
    },
    /// Virtual-care KPIs: CSV export (every KPI, or the visits behind one) and the daily report.
    Analytics {
        #[command(subcommand)]
        which: analytics::AnalyticsCommand,
    },
    /// Where every artifact of a visit is: each delivery, each attempt, the EHR's id and version.
    Trace {
        visit: String,
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Inspect the delivery queue.
    Queue {
        #[command(subcommand)]
        which: QueueCommand,
    },
    /// EHR connections: their capability contracts.
    Connections {
        #[command(subcommand)]
        which: ConnectionsCommand,
    },
}

#[derive(Subcommand)]
enum BlueprintCommand {
    /// Validate the blueprint (default: `blueprint_file` of the configuration); print, per visit
    /// type, how each artifact reaches each connection. Exit 1 on problems, each named.
    Check { file: Option<PathBuf> },
}

#[derive(Subcommand)]
enum ConnectionsCommand {
    /// The configured connections and the version of their stored contract.
    List,
    /// Read the EHR's CapabilityStatement now, build the contract with the connection's vendor
    /// profile, keep it (a new version if it changed) and print it.
    Show { id: String },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// A new random key-encryption key (base64), printed or written to `--out` (mode 0600).
    Generate {
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Every data key: tenant, id, the KEK that wraps it, whether active, PHI values sealed with it.
    Status,
    /// Re-wrap data keys under the current KEK; then (unless `--kek-only`) give every tenant a new
    /// data key, re-encrypt its PHI and retire the old keys. Safe while servers run.
    Rotate {
        #[arg(long)]
        kek_only: bool,
    },
    /// A new SMART Backend Services signing key (RS384 or ES384); it signs from now on and is
    /// published at /.well-known/jwks.json beside the keys it succeeds.
    BackendGenerate {
        #[arg(long, default_value = "ES384")]
        alg: String,
    },
    /// Stop publishing and using a backend signing key (once EHRs have fetched its successor).
    BackendRetire { kid: String },
    /// Crypto-shredding: destroy every data key of a tenant whose data is all to go (offboarding,
    /// every retention period over). Its PHI — here and in every backup — can never be read
    /// again. Refused under a legal hold; audited.
    Shred {
        #[arg(long)]
        tenant: String,
        /// The tenant id again, to confirm.
        #[arg(long)]
        confirm: String,
        /// Why, and who authorised it (kept with the shredded key ids).
        #[arg(long)]
        reason: String,
    },
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Provision a person: their OpenID subject at the configured issuer, and a role.
    Add {
        #[arg(long)]
        subject: String,
        #[arg(long)]
        role: String,
        /// Default: oidc.issuer from the configuration.
        #[arg(long)]
        issuer: Option<String>,
        #[arg(long)]
        tenant: Option<String>,
    },
}

#[derive(Subcommand)]
enum TokensCommand {
    /// Create a token; it is printed once and stored only as a hash.
    Create {
        #[arg(long)]
        name: String,
        /// platform, monitor, clinician, nurse, scheduler, billing, compliance-officer, integration-admin, manager
        #[arg(long)]
        role: String,
        /// Default: the configured tenant.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// The tenant's tokens (never their secrets).
    List {
        #[arg(long)]
        tenant: Option<String>,
    },
    Revoke {
        id: String,
        #[arg(long)]
        tenant: Option<String>,
    },
}

#[derive(Subcommand)]
enum QueueCommand {
    /// Deliveries by status.
    Status,
    /// Dead letters with their reasons.
    Dead,
    /// Return a visit's dead letters to the queue.
    Replay { visit: String },
    /// One delivery: status, attempts, plan, the EHR's id and version, last error.
    Show { delivery: String },
    /// Return one dead letter to the queue (planned afresh, reconciled first).
    Retry { delivery: String },
    /// End one dead letter without sending it, with the reason (e.g. entered in the EHR by hand).
    Discard {
        delivery: String,
        #[arg(long)]
        reason: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = (|| -> anyhow::Result<ExitCode> {
        let config = Config::load(cli.config.as_deref())?;
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        rt.block_on(async move {
            match cli.command {
                Command::Check => {
                    let findings = check::run(&config, telechart_store::Clock::system().now().date_naive());
                    for f in &findings {
                        let mark = match (f.passed, f.warning) {
                            (false, _) => "FAIL",
                            (true, true) => "WARN",
                            (true, false) => "PASS",
                        };
                        println!("{mark}  {:<22} {}", f.control, f.detail);
                        if !f.passed || f.warning {
                            println!("      fix: {}", f.fix);
                        }
                    }
                    let failed = findings.iter().filter(|f| !f.passed).count();
                    println!("{} controls, {failed} failed", findings.len());
                    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
                }
                Command::Config => {
                    print!("{}", config.masked_toml()?);
                    Ok(ExitCode::SUCCESS)
                }
                Command::Serve => {
                    runtime::init_logging(&config.log);
                    runtime::serve(config).await.map(|()| ExitCode::SUCCESS)
                }
                Command::Sandbox(args) => {
                    runtime::init_logging(&config.log);
                    demo::sandbox(args).await.map(|()| ExitCode::SUCCESS)
                }
                Command::Demo(args) => {
                    runtime::init_logging("warn");
                    demo::run(config, args).await
                }
                Command::Bench { which } => {
                    // sqlx's slow-statement notices would quote the benches' bulk statements.
                    runtime::init_logging("warn,sqlx=error");
                    bench::run(which).await.map(|()| ExitCode::SUCCESS)
                }
                Command::Audit { which } => {
                    runtime::init_logging("warn");
                    audit::run(config, which).await
                }
                Command::Scribe { which } => scribe::run(which),
                Command::Hold { which } => {
                    runtime::init_logging("warn");
                    hold::run(config, which).await
                }
                Command::Blueprint { which: BlueprintCommand::Check { file } } => {
                    runtime::init_logging("warn");
                    blueprint::check(config, file).await
                }
                Command::Analytics { which } => {
                    runtime::init_logging("warn");
                    analytics::run(config, which).await
                }
                Command::Trace { visit, tenant } => {
                    runtime::init_logging("warn");
                    trace::run(config, &visit, tenant).await
                }
                Command::Baa { which } => {
                    runtime::init_logging("warn");
                    baa::run(config, which).await
                }
                Command::Queue { which } => queue(config, which).await.map(|()| ExitCode::SUCCESS),
                Command::Connections { which } => connections(config, which).await.map(|()| ExitCode::SUCCESS),
                Command::Retention => {
                    let store = telechart_store::Store::open(&config.database_url, 2, config.keys.load()?).await?;
                    let report =
                        runtime::apply_retention(&store, &config, &config.tenant, &telechart_store::Clock::system())
                            .await?;
                    match config.retention.delivered_payload_days {
                        Some(days) => println!(
                            "purged the PHI payload of {} fully delivered artifact(s) older than {days} days",
                            report.payloads
                        ),
                        None => println!("retention.delivered_payload_days is not set: payloads are kept"),
                    }
                    println!("purged {} fully delivered transcript(s)", report.transcripts);
                    match &report.audit {
                        Some(a) => println!(
                            "deleted audit records {}..={} (older than {} years) behind a signed tombstone",
                            a.from, a.to, config.retention.audit_log_years
                        ),
                        None => println!("no audit records past {} years", config.retention.audit_log_years),
                    }
                    println!("{} visit(s) under legal hold kept", report.held_visits);
                    store.close().await;
                    Ok(ExitCode::SUCCESS)
                }
                Command::Users { which } => users(config, which).await.map(|()| ExitCode::SUCCESS),
                Command::Tokens { which } => tokens(config, which).await.map(|()| ExitCode::SUCCESS),
                Command::Keys { which } => {
                    runtime::init_logging("warn");
                    keys(config, which).await.map(|()| ExitCode::SUCCESS)
                }
            }
        })
    })();
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("telechart: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn keys(config: Config, which: KeysCommand) -> anyhow::Result<()> {
    if let KeysCommand::Generate { out } = &which {
        let kek = telechart_store::Kek::generate()?;
        match out {
            Some(path) => {
                config::write_secret(path, &kek.to_base64())?;
                println!("wrote key-encryption key {} to {}", kek.id(), path.display());
            }
            None => println!("{}", kek.to_base64()),
        }
        return Ok(());
    }
    let store = telechart_store::Store::open(&config.database_url, 2, config.keys.load()?).await?;
    let now = telechart_store::Clock::system().now_ms();
    match which {
        KeysCommand::Generate { .. } => {}
        KeysCommand::BackendGenerate { alg } => {
            let alg = match alg.as_str() {
                "RS384" => telechart_ehr::SigningAlg::Rs384,
                "ES384" => telechart_ehr::SigningAlg::Es384,
                other => anyhow::bail!("--alg {other:?}: use RS384 or ES384"),
            };
            let key = telechart_ehr::SigningKey::generate(alg)?;
            store.add_signing_key(&key.kid, alg.as_str(), key.pkcs8(), &key.public_jwk().to_string(), now).await?;
            println!("backend signing key {} ({}) added; it signs from now on", key.kid, alg.as_str());
        }
        KeysCommand::BackendRetire { kid } => {
            anyhow::ensure!(store.retire_signing_key(&kid, now).await?, "no active backend signing key {kid}");
            println!("retired backend signing key {kid}");
        }
        KeysCommand::Shred { tenant, confirm, reason } => {
            anyhow::ensure!(confirm == tenant, "--confirm must repeat the tenant id ({tenant}) exactly");
            anyhow::ensure!((3..=500).contains(&reason.trim().len()), "--reason must be 3 to 500 characters");
            let actor = format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "unknown".into()));
            let entry = telechart_store::AuditEntry {
                tenant_id: tenant.clone(),
                actor: actor.clone(),
                action: "keys.shred".into(),
                entity_type: "tenant".into(),
                entity_id: tenant.clone(),
                phi: true,
                detail: reason.trim().to_owned(),
                purpose_of_use: Some("HOPERAT".into()),
                ..telechart_store::AuditEntry::default()
            };
            let ids = store.shred_tenant_data_keys(&tenant, &actor, reason.trim(), &entry, now).await?;
            println!("tenant {tenant}: {} data key(s) destroyed; its sealed PHI is unrecoverable", ids.len());
            println!("running servers keep keys they already unwrapped until they restart: restart them now");
        }
        KeysCommand::Status => {
            for k in store.signing_keys().await? {
                println!("{}  backend signing key {}", k.kid, k.alg);
            }
            for k in store.data_key_status().await? {
                let state = if k.active { "active" } else { "retiring" };
                println!("{}  tenant {}  wrapped by KEK {}  {state}  {} values", k.id, k.tenant_id, k.kek_id, k.values);
            }
        }
        KeysCommand::Rotate { kek_only } => {
            let rewrapped = store.rewrap_data_keys().await?;
            println!("re-wrapped {rewrapped} data key(s) under the current key-encryption key");
            if !kek_only {
                let clock = telechart_store::Clock::system();
                let fresh = store.rotate_data_keys(clock.now_ms()).await?;
                println!("{} tenant(s) have a new data key", fresh.len());
                let bar = indicatif::ProgressBar::new_spinner();
                let mut moved = 0;
                loop {
                    let n = store.reencrypt_batch(500).await?;
                    if n == 0 {
                        break;
                    }
                    moved += n;
                    bar.set_message(format!("re-encrypted {moved} PHI values"));
                    bar.tick();
                }
                bar.finish_and_clear();
                let retired = store.retire_data_keys().await?;
                println!("re-encrypted {moved} PHI value(s); retired {} old data key(s)", retired.len());
            }
        }
    }
    store.close().await;
    Ok(())
}

async fn users(config: Config, which: UsersCommand) -> anyhow::Result<()> {
    let store = telechart_store::Store::open(&config.database_url, 2, config.keys.load()?).await?;
    match which {
        UsersCommand::Add { subject, role, issuer, tenant } => {
            let role: telechart_policy::Role = role.parse()?;
            let issuer = issuer
                .or_else(|| config.oidc.as_ref().map(|o| o.issuer.clone()))
                .ok_or_else(|| anyhow::anyhow!("--issuer is needed when oidc is not configured"))?;
            let tenant = tenant.unwrap_or_else(|| config.tenant.clone());
            let now = telechart_store::Clock::system().now_ms();
            let user = store.add_user(&tenant, &issuer, &subject, role.as_str(), now).await?;
            println!("user {} ({role}) in tenant {tenant}: subject {subject} at {issuer}", user.id);
        }
    }
    store.close().await;
    Ok(())
}

async fn tokens(config: Config, which: TokensCommand) -> anyhow::Result<()> {
    let store = telechart_store::Store::open(&config.database_url, 2, config.keys.load()?).await?;
    let now = telechart_store::Clock::system().now_ms();
    match which {
        TokensCommand::Create { name, role, tenant } => {
            let role: telechart_policy::Role = role.parse()?;
            let tenant = tenant.unwrap_or_else(|| config.tenant.clone());
            let (row, token) = store.create_api_token(&tenant, &name, role.as_str(), now).await?;
            eprintln!("token {} ({role}) for tenant {tenant}; it is shown once:", row.id);
            println!("{}", token.expose());
        }
        TokensCommand::List { tenant } => {
            for t in store.api_tokens(tenant.as_deref().unwrap_or(&config.tenant)).await? {
                let state = if t.revoked_at.is_some() { "revoked" } else { "active" };
                println!("{}  {:<20} {:<18} {state}", t.id, t.name, t.role);
            }
        }
        TokensCommand::Revoke { id, tenant } => {
            let tenant = tenant.unwrap_or_else(|| config.tenant.clone());
            anyhow::ensure!(
                store.revoke_api_token(&tenant, &id, now).await?,
                "no active token {id} in tenant {tenant}"
            );
            println!("revoked {id}");
        }
    }
    store.close().await;
    Ok(())
}

async fn connections(config: Config, which: ConnectionsCommand) -> anyhow::Result<()> {
    runtime::init_logging("warn");
    let clock = telechart_store::Clock::system();
    let telechart = runtime::open_store_with_connections(&config, &clock).await?;
    match which {
        ConnectionsCommand::List => {
            for c in &config.connections {
                let stored = telechart.store.latest_contract(&config.tenant, &c.id).await?;
                let version = stored.map(|(v, _)| format!("contract v{v}")).unwrap_or_else(|| "no contract yet".into());
                println!("{:<16} {:<8} {}  ({version})", c.id, c.profile, crate::config::mask_url(&c.base_url));
            }
        }
        ConnectionsCommand::Show { id } => {
            let client = telechart.connections.client(&config.tenant, &id).await?;
            let statement = client.capability_statement().await?;
            let contract = telechart_ehr::CapabilityContract::build(&client.profile, &statement);
            let json = serde_json::to_string_pretty(&contract)?;
            let version = telechart.store.save_contract(&config.tenant, &id, &json, clock.now_ms()).await?;
            println!("connection {id}, contract version {version}\n{json}");
            // How each kind of artifact will reach this EHR, before any visit does.
            println!("\nwrite plan (profile {}):", client.profile.name);
            for (what, plan) in telechart_sync::plan::plan_table(&client.profile, client.mllp().is_some()) {
                println!("  {what:<40} {}", plan.label());
            }
        }
    }
    telechart.store.close().await;
    Ok(())
}

/// An operator's action on a delivery, for the audit log.
fn operator_audit(tenant: &str, action: &str, delivery: &str, detail: String) -> telechart_store::AuditEntry {
    telechart_store::AuditEntry {
        tenant_id: tenant.to_owned(),
        actor: format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "unknown".into())),
        action: action.into(),
        entity_type: "delivery".into(),
        entity_id: delivery.to_owned(),
        phi: false,
        detail,
        purpose_of_use: Some("HOPERAT".into()),
        ..telechart_store::AuditEntry::default()
    }
}

async fn queue(config: Config, which: QueueCommand) -> anyhow::Result<()> {
    let store = telechart_store::Store::open(&config.database_url, 2, config.keys.load()?).await?;
    match which {
        QueueCommand::Status => {
            let c = store.queue_counts(&config.tenant).await?;
            println!(
                "pending {}  in_flight {}  done {}  dead {}  withheld {}  discarded {}",
                c.pending, c.in_flight, c.done, c.dead, c.withheld, c.discarded
            );
        }
        QueueCommand::Dead => {
            for d in store.dead_letters(&config.tenant).await? {
                println!(
                    "{}  visit {}  {}  attempts {}  {}",
                    d.id,
                    d.visit_id,
                    d.resource_type,
                    d.attempts,
                    d.last_error.unwrap_or_default()
                );
            }
        }
        QueueCommand::Show { delivery } => {
            let d = store
                .delivery(&config.tenant, &delivery)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no delivery {delivery} in tenant {}", config.tenant))?;
            println!("delivery {}  visit {}  connection {}  #{}", d.id, d.visit_id, d.connection_id, d.seq);
            println!("  {} {}  status {}  attempts {}", d.resource_type, d.artifact_id, d.status, d.attempts);
            println!("  plan {}", d.plan.as_deref().unwrap_or("not planned yet"));
            match (&d.ehr_resource_id, &d.ehr_version) {
                (Some(id), v) => println!("  in the EHR {}/{id} v{}", d.resource_type, v.as_deref().unwrap_or("-")),
                (None, _) => println!("  not in the EHR"),
            }
            if let Some(e) = &d.last_error {
                println!("  last error {e}");
            }
            println!("  (telechart trace {} shows every attempt)", d.visit_id);
        }
        QueueCommand::Retry { delivery } => {
            let now = telechart_store::Clock::system().now_ms();
            let entry = operator_audit(&config.tenant, "delivery.retry-dead", &delivery, String::new());
            anyhow::ensure!(
                store.retry_dead_delivery(&config.tenant, &delivery, &entry, now).await?,
                "delivery {delivery} is not a dead letter (see telechart queue dead)"
            );
            println!("delivery {delivery} returned to the queue; it is planned afresh and reconciled first");
        }
        QueueCommand::Discard { delivery, reason } => {
            let reason = reason.trim();
            anyhow::ensure!((3..=500).contains(&reason.len()), "--reason must be 3 to 500 characters");
            let now = telechart_store::Clock::system().now_ms();
            let entry = operator_audit(&config.tenant, "delivery.discard", &delivery, reason.to_owned());
            anyhow::ensure!(
                store.discard_dead_delivery(&config.tenant, &delivery, reason, &entry, now).await?,
                "delivery {delivery} is not a dead letter (see telechart queue dead)"
            );
            println!("delivery {delivery} discarded: {reason}");
        }
        QueueCommand::Replay { visit } => {
            let clock = telechart_store::Clock::system();
            let n = store.replay_dead(&config.tenant, &visit, clock.now_ms()).await?;
            println!("{n} dead letter(s) of visit {visit} returned to the queue");
        }
    }
    Ok(())
}
