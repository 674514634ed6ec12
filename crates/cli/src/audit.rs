//! `telechart audit`: verify the chain against the witness, force a checkpoint, export as FHIR
//! AuditEvent NDJSON, make or show the checkpoint key.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use telechart_store::{AuditEntry, CheckpointPass, Clock, Store};

use crate::config::Config;

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Recompute every tenant's hash chain and compare it with the witness's signed checkpoints;
    /// exits 1 naming the first bad record of each tenant.
    Verify {
        /// The checkpoint key's public half (hex); default: derived from audit.signing_key_file.
        #[arg(long)]
        public_key: Option<String>,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// Sign a checkpoint of every tenant's new records now.
    Checkpoint,
    /// Export records as FHIR AuditEvent NDJSON (one event per line).
    Export {
        /// Records at or after this instant or date (RFC 3339 or YYYY-MM-DD).
        #[arg(long)]
        since: Option<String>,
        /// Only this patient's records (`Patient/{id}`).
        #[arg(long)]
        patient: Option<String>,
        /// Default: the configured tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// Default: standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Make the checkpoint signing key (refuses to overwrite one) and print its public half.
    Keygen,
    /// Print the checkpoint key's public half (hex), for pinning at the verifier.
    PublicKey,
    /// The break-glass review queue: every grant (or only those pending), newest first.
    BreakGlass {
        #[arg(long)]
        pending: bool,
        /// Default: the configured tenant.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// The alerts the audit rules fired, newest first (ids and counts, no patient).
    Alerts {
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// Default: the configured tenant.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Approve or flag one break-glass grant, with a note (once).
    Review {
        grant: String,
        /// `approved` or `flagged`.
        #[arg(long, value_parser = ["approved", "flagged"])]
        verdict: String,
        #[arg(long)]
        note: String,
        #[arg(long)]
        tenant: Option<String>,
    },
}

fn parse_since(s: &str) -> anyhow::Result<i64> {
    telechart_policy::consent::parse_fhir_instant(s, false)
        .map(|t| t.timestamp_millis())
        .with_context(|| format!("--since {s:?} is not an RFC 3339 instant or a YYYY-MM-DD date"))
}

fn unhex(s: &str) -> anyhow::Result<Vec<u8>> {
    anyhow::ensure!(s.len() == 64, "--public-key must be 64 hex digits (an Ed25519 public key)");
    (0..32).map(|i| u8::from_str_radix(&s[i * 2..i * 2 + 2], 16).context("--public-key is not hex")).collect()
}

pub async fn run(config: Config, which: AuditCommand) -> anyhow::Result<ExitCode> {
    match which {
        AuditCommand::Keygen => {
            let signer = telechart_audit::CheckpointSigner::generate(&config.audit.signing_key_file)?;
            println!("{}", telechart_audit::hex(signer.public_key()));
            return Ok(ExitCode::SUCCESS);
        }
        AuditCommand::PublicKey => {
            let signer = telechart_audit::CheckpointSigner::load(&config.audit.signing_key_file)?;
            println!("{}", telechart_audit::hex(signer.public_key()));
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    let store = Store::open(&config.database_url, 2, config.keys.load()?).await?;
    let code = match which {
        AuditCommand::Verify { public_key, quiet } => {
            let key = match public_key {
                Some(hex) => telechart_audit::CheckpointVerifier::new(unhex(&hex)?),
                None => telechart_audit::CheckpointSigner::load(&config.audit.signing_key_file)
                    .context("no --public-key and the checkpoint key cannot be read")?
                    .verifier(),
            };
            let checkpoints = config.audit.witness().read()?;
            let bar = if quiet { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new_spinner() };
            bar.set_message("records verified");
            let report = store.verify_audit(&checkpoints, Some(&key), |n| bar.set_position(n)).await?;
            bar.finish_and_clear();
            println!(
                "{} records of {} tenant(s) read; {} witnessed by {} signed checkpoint(s) in {}",
                report.records,
                report.tenants,
                report.witnessed,
                report.checkpoints,
                config.audit.witness_file.display()
            );
            if report.pending > 0 {
                println!("{} record(s) appended since the last chaining pass are not chained yet", report.pending);
            }
            for f in &report.findings {
                println!("FAIL  tenant {} record {}: {} — {}", f.tenant_id, f.tenant_seq, f.problem, f.detail);
                // A broken chain is itself an alert for the compliance officers.
                let alert = telechart_audit::Alert {
                    rule: telechart_audit::AlertRule::VerificationFailure,
                    at: Clock::system().now_ms(),
                    actor: "system".into(),
                    visit_id: None,
                    detail: format!("audit verify: record {}: {}", f.tenant_seq, f.problem),
                    tenant_seq: f.tenant_seq,
                };
                if let Err(e) = store.record_alerts(&f.tenant_id, &[alert], 0).await {
                    eprintln!("could not keep the alert for tenant {}: {e}", f.tenant_id);
                }
            }
            if report.intact() {
                println!("intact");
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        AuditCommand::Checkpoint => {
            let signer = config.audit.signer()?;
            let now = Clock::system().now_ms();
            let passes = store.checkpoint_audit(&signer, &config.audit.witness(), now, 1, 0).await?;
            let mut broken = false;
            for p in passes {
                match p {
                    CheckpointPass::Written { tenant_id, from, size } => {
                        println!("tenant {tenant_id}: checkpoint of records {from}..={size}")
                    }
                    CheckpointPass::NotDue { tenant_id, .. } => println!("tenant {tenant_id}: nothing new"),
                    CheckpointPass::Broken(f) => {
                        broken = true;
                        println!("FAIL  tenant {} record {}: {} — {}", f.tenant_id, f.tenant_seq, f.problem, f.detail);
                    }
                }
            }
            if broken { ExitCode::FAILURE } else { ExitCode::SUCCESS }
        }
        AuditCommand::Alerts { limit, tenant } => {
            anyhow::ensure!((1..=1000).contains(&limit), "--limit must be 1 to 1000");
            let tenant = tenant.unwrap_or_else(|| config.tenant.clone());
            let alerts = store.alerts(&tenant, limit).await?;
            for a in &alerts {
                let at = chrono::DateTime::from_timestamp_millis(a.at).map(|t| t.to_rfc3339()).unwrap_or_default();
                let sent = if a.sent_at.is_some() { "sent" } else { "unsent" };
                println!(
                    "{at}  {:<22} {:<24} {:<38} {sent}  {}",
                    a.rule,
                    a.actor,
                    a.visit_id.as_deref().unwrap_or("-"),
                    a.detail
                );
            }
            if alerts.is_empty() {
                println!("no alerts");
            }
            ExitCode::SUCCESS
        }
        AuditCommand::Export { since, patient, tenant, out } => {
            let since_ms = since.as_deref().map(parse_since).transpose()?.unwrap_or(0);
            let tenant = tenant.unwrap_or_else(|| config.tenant.clone());
            let mut sink: Box<dyn std::io::Write> = match &out {
                Some(path) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            // Records name the visit; its patient is sealed there and resolved here, so the log
            // itself holds no patient reference in clear.
            let mut patients: std::collections::HashMap<String, Option<String>> = std::collections::HashMap::new();
            let (mut after, mut count) = (0i64, 0u64);
            loop {
                let page = store.audit_export_page(&tenant, since_ms, None, after, 2_000).await?;
                let Some(last) = page.last() else { break };
                after = last.seq;
                for row in &page {
                    let mut record = row.record();
                    if record.entry.patient.is_none()
                        && let Some(visit) = &record.entry.visit_id
                    {
                        if !patients.contains_key(visit) {
                            let found = store.visit(&tenant, visit).await?.map(|v| v.patient.into_inner());
                            patients.insert(visit.clone(), found);
                        }
                        record.entry.patient = patients.get(visit).cloned().flatten();
                    }
                    if patient.as_ref().is_some_and(|p| record.entry.patient.as_ref() != Some(p)) {
                        continue;
                    }
                    sink.write_all(telechart_audit::ndjson_line(&record).as_bytes())?;
                    count += 1;
                }
            }
            sink.flush()?;
            drop(sink);
            // Reading the log is itself an access to PHI: it is audited like any other.
            let entry = AuditEntry {
                tenant_id: tenant.clone(),
                actor: format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "unknown".into())),
                action: "audit.export".into(),
                entity_type: "audit-log".into(),
                entity_id: tenant.clone(),
                phi: true,
                detail: format!(
                    "{count} AuditEvent(s) since {since_ms}{}",
                    if patient.is_some() { " of one patient" } else { "" }
                ),
                purpose_of_use: Some("HOPERAT".into()),
                ..AuditEntry::default()
            };
            store.audit(&entry, Clock::system().now_ms()).await?;
            eprintln!("exported {count} AuditEvent(s)");
            ExitCode::SUCCESS
        }
        AuditCommand::BreakGlass { pending, tenant } => {
            let tenant = tenant.unwrap_or_else(|| config.tenant.clone());
            let grants = store.break_glass_grants(&tenant, pending).await?;
            println!(
                "{:<36}  {:<8}  {:<8}  {:>4}  {:<20}  {:<36}  actor",
                "grant", "reason", "review", "uses", "granted", "visit"
            );
            for g in &grants {
                let granted = chrono::DateTime::from_timestamp_millis(g.granted_at)
                    .map(|t| t.format("%Y-%m-%d %H:%M:%SZ").to_string())
                    .unwrap_or_default();
                println!(
                    "{:<36}  {:<8}  {:<8}  {:>4}  {granted:<20}  {:<36}  {}",
                    g.id, g.reason_code, g.review, g.uses, g.visit_id, g.actor
                );
            }
            println!("{} grant(s)", grants.len());
            ExitCode::SUCCESS
        }
        AuditCommand::Review { grant, verdict, note, tenant } => {
            let tenant = tenant.unwrap_or_else(|| config.tenant.clone());
            anyhow::ensure!(!note.trim().is_empty(), "--note must say why");
            let entry = AuditEntry {
                tenant_id: tenant.clone(),
                actor: format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "unknown".into())),
                action: "break-glass.review".into(),
                entity_type: "break-glass".into(),
                entity_id: grant.clone(),
                detail: verdict.clone(),
                purpose_of_use: Some("HOPERAT".into()),
                ..AuditEntry::default()
            };
            let note = telechart_store::Phi::new(note.trim());
            store.review_break_glass(&tenant, &grant, &verdict, &note, &entry, Clock::system().now_ms()).await?;
            println!("grant {grant}: {verdict}");
            ExitCode::SUCCESS
        }
        AuditCommand::Keygen | AuditCommand::PublicKey => ExitCode::SUCCESS,
    };
    store.close().await;
    Ok(code)
}
