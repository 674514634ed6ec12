//! `telechart hold`: legal holds, which suspend every purge of a visit's data (or of every visit
//! of a patient) until released; placing and releasing one is audited.

use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use telechart_store::{AuditEntry, Clock, LegalHold, Phi, Store};

use crate::config::Config;

#[derive(Subcommand)]
pub enum HoldCommand {
    /// Place a hold on one visit or on every visit of one patient.
    Place {
        #[arg(long, conflicts_with = "patient", required_unless_present = "patient")]
        visit: Option<String>,
        /// `Patient/{id}` as the visits name them.
        #[arg(long)]
        patient: Option<String>,
        /// Why (a matter or case number); kept with the hold.
        #[arg(long)]
        reason: String,
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Release a hold (once).
    Release {
        hold: String,
        #[arg(long)]
        tenant: Option<String>,
    },
    /// The holds in force (with `--all`, released ones too).
    List {
        #[arg(long)]
        all: bool,
        #[arg(long)]
        tenant: Option<String>,
    },
}

fn operator() -> String {
    format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "unknown".into()))
}

fn entry(tenant: &str, action: &str, hold: &str, visit: Option<String>, detail: String) -> AuditEntry {
    AuditEntry {
        tenant_id: tenant.to_owned(),
        actor: operator(),
        action: action.into(),
        entity_type: "legal-hold".into(),
        entity_id: hold.to_owned(),
        visit_id: visit,
        phi: true,
        detail,
        purpose_of_use: Some("HOPERAT".into()),
        ..AuditEntry::default()
    }
}

pub async fn run(config: Config, which: HoldCommand) -> anyhow::Result<ExitCode> {
    let store = Store::open(&config.database_url, 2, config.keys.load()?).await?;
    let now = Clock::system().now_ms();
    match which {
        HoldCommand::Place { visit, patient, reason, tenant } => {
            let tenant = tenant.unwrap_or_else(|| config.tenant.clone());
            anyhow::ensure!(
                (3..=500).contains(&reason.trim().len()),
                "--reason must be 3 to 500 characters (a matter or case number)"
            );
            if let Some(v) = &visit {
                store.visit(&tenant, v).await?.with_context(|| format!("no visit {v} in tenant {tenant}"))?;
            }
            if let Some(p) = &patient {
                anyhow::ensure!(
                    p.strip_prefix("Patient/").is_some_and(|id| !id.is_empty()),
                    "--patient must be Patient/{{id}}"
                );
            }
            let hold = LegalHold {
                id: uuid::Uuid::now_v7().to_string(),
                visit_id: visit.clone(),
                patient: patient.map(Phi::new),
                reason: reason.trim().to_owned(),
                placed_by: operator(),
                placed_at: now,
                released_by: None,
                released_at: None,
            };
            let on = if hold.visit_id.is_some() { "one visit" } else { "every visit of one patient" };
            let audit = entry(&tenant, "legal-hold.place", &hold.id, visit, format!("on {on}: {}", hold.reason));
            store.place_legal_hold(&tenant, &hold, &audit).await?;
            println!("legal hold {} placed on {on}; nothing of it is purged until it is released", hold.id);
        }
        HoldCommand::Release { hold, tenant } => {
            let tenant = tenant.unwrap_or_else(|| config.tenant.clone());
            let audit = entry(&tenant, "legal-hold.release", &hold, None, "released".into());
            store.release_legal_hold(&tenant, &hold, &operator(), &audit, now).await?;
            println!("legal hold {hold} released");
        }
        HoldCommand::List { all, tenant } => {
            let tenant = tenant.unwrap_or_else(|| config.tenant.clone());
            let holds = store.legal_holds(&tenant, !all).await?;
            for h in &holds {
                let on = match (&h.visit_id, &h.patient) {
                    (Some(v), _) => format!("visit {v}"),
                    (None, Some(p)) => format!("patient {}", p.expose()),
                    (None, None) => "-".into(),
                };
                let state = match (&h.released_by, h.released_at) {
                    (Some(by), Some(_)) => format!("released by {by}"),
                    _ => "in force".into(),
                };
                println!("{}  {on}  placed by {}  {state}  — {}", h.id, h.placed_by, h.reason);
            }
            if holds.is_empty() {
                println!("no legal holds");
            }
        }
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}
