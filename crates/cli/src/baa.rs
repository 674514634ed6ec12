//! `telechart baa`: the return-or-destroy tasks that open when a business associate agreement
//! ends (egress to the party stops the day after; the PHI Telechart holds for it must then be
//! returned or destroyed), and the destruction of an ended EHR connection's visit data.

use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use telechart_store::{AuditEntry, BaaTask, Clock, Store};

use crate::config::Config;

#[derive(Subcommand)]
pub enum BaaCommand {
    /// Every task (open ones first), opening those for agreements that have ended.
    Tasks {
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Destroy what Telechart holds for the visits of the ended agreement's EHR connections
    /// (outside legal holds) and close the task as destroyed. The note says who authorised it
    /// and under what reference.
    Destroy(TaskClosure),
    /// Close a task as returned (the party's data handed back, or destroyed by the party, with
    /// its attestation named in the note).
    Returned(TaskClosure),
}

/// Which task is closed, and the note kept with it.
#[derive(clap::Args)]
pub struct TaskClosure {
    #[arg(long)]
    baa: String,
    #[arg(long)]
    origin: String,
    /// Who authorised it and under what reference (3 to 500 characters).
    #[arg(long)]
    note: String,
    #[arg(long)]
    tenant: Option<String>,
}

fn operator() -> String {
    format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "unknown".into()))
}

fn entry(tenant: &str, actor: &str, action: &str, task: &str, detail: String) -> AuditEntry {
    AuditEntry {
        tenant_id: tenant.to_owned(),
        actor: actor.to_owned(),
        action: action.into(),
        entity_type: "baa-task".into(),
        entity_id: task.to_owned(),
        phi: true,
        detail,
        purpose_of_use: Some("HOPERAT".into()),
        ..AuditEntry::default()
    }
}

/// Opens a task for every registered agreement that ended before today (once each). Returns the
/// tasks opened now.
pub async fn open_ended(store: &Store, config: &Config, tenant: &str, clock: &Clock) -> anyhow::Result<Vec<BaaTask>> {
    let today = clock.now().date_naive();
    let mut opened = Vec::new();
    for e in config.egress_registry().entries() {
        let Some(expires) = e.expires.filter(|x| *x < today) else { continue };
        let connections: Vec<&str> = config
            .connections
            .iter()
            .filter(|c| {
                telechart_policy::EgressRegistry::origin_of(&c.base_url).is_some_and(|(origin, _)| origin == e.origin)
            })
            .map(|c| c.id.as_str())
            .collect();
        let task = BaaTask {
            tenant_id: tenant.to_owned(),
            baa: e.baa.clone(),
            origin: e.origin.clone(),
            counterparty: e.counterparty.clone(),
            ended_on: expires.to_string(),
            connections: connections.join(","),
            opened_at: clock.now_ms(),
            status: "open".into(),
            closed_by: None,
            closed_at: None,
            note: None,
        };
        let audit = entry(
            tenant,
            "system:baa",
            "baa.task.open",
            &format!("{}@{}", e.baa, e.origin),
            format!("{} ended on {expires}: return or destroy its data", e.baa),
        );
        if store.open_baa_task(&task, &audit).await? {
            tracing::warn!(baa = %e.baa, origin = %e.origin, "business associate agreement ended: return-or-destroy task opened");
            opened.push(task);
        }
    }
    Ok(opened)
}

pub async fn run(config: Config, which: BaaCommand) -> anyhow::Result<ExitCode> {
    let store = Store::open(&config.database_url, 2, config.keys.load()?).await?;
    let clock = Clock::system();
    let result = match which {
        BaaCommand::Tasks { tenant } => {
            let tenant = tenant.unwrap_or_else(|| config.tenant.clone());
            open_ended(&store, &config, &tenant, &clock).await?;
            let mut tasks = store.baa_tasks(&tenant).await?;
            tasks.sort_by_key(|t| t.status != "open");
            let open = tasks.iter().filter(|t| t.status == "open").count();
            println!("{} task(s), {open} open", tasks.len());
            for t in &tasks {
                println!(
                    "{:<10} {} at {} ({}), ended {}; connections: {}{}",
                    t.status,
                    t.baa,
                    t.origin,
                    t.counterparty.as_deref().unwrap_or("no counterparty"),
                    t.ended_on,
                    if t.connections.is_empty() { "none" } else { &t.connections },
                    match (&t.closed_by, &t.note) {
                        (Some(by), Some(note)) => format!("; closed by {by}: {note}"),
                        _ => String::new(),
                    }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        BaaCommand::Destroy(closure) => {
            let tenant = closure.tenant.clone().unwrap_or_else(|| config.tenant.clone());
            let task = find_open(&store, &config, &tenant, &clock, &closure).await?;
            let TaskClosure { baa, origin, note, .. } = closure;
            let held = store.held_visits(&tenant).await?;
            let mut total = telechart_store::Destroyed::default();
            for connection in task.connection_ids() {
                let done = store.destroy_connection_data(&tenant, connection, &held, clock.now_ms()).await?;
                println!(
                    "connection {connection}: {} payload(s) destroyed, {} draft(s) removed, {} delivery(ies) withheld, {} visit(s) under legal hold kept",
                    done.payloads, done.drafts, done.withheld, done.held_visits
                );
                total.payloads += done.payloads;
                total.drafts += done.drafts;
                total.withheld += done.withheld;
                total.held_visits += done.held_visits;
            }
            let detail = format!(
                "{} payload(s), {} draft(s), {} delivery(ies) withheld; {} held visit(s) kept; {note}",
                total.payloads, total.drafts, total.withheld, total.held_visits
            );
            close(&store, &tenant, &task, "destroyed", &detail, &clock).await?;
            println!("{baa} at {origin}: destroyed and closed");
            Ok(ExitCode::SUCCESS)
        }
        BaaCommand::Returned(closure) => {
            let tenant = closure.tenant.clone().unwrap_or_else(|| config.tenant.clone());
            let task = find_open(&store, &config, &tenant, &clock, &closure).await?;
            close(&store, &tenant, &task, "returned", &closure.note, &clock).await?;
            println!("{} at {}: closed as returned", closure.baa, closure.origin);
            Ok(ExitCode::SUCCESS)
        }
    };
    store.close().await;
    result
}

async fn find_open(
    store: &Store,
    config: &Config,
    tenant: &str,
    clock: &Clock,
    closure: &TaskClosure,
) -> anyhow::Result<BaaTask> {
    let TaskClosure { baa, origin, note, .. } = closure;
    anyhow::ensure!(
        (3..=500).contains(&note.trim().len()),
        "--note must be 3 to 500 characters (who authorised it, a reference)"
    );
    open_ended(store, config, tenant, clock).await?;
    let tasks = store.baa_tasks(tenant).await?;
    let task = tasks.into_iter().find(|t| &t.baa == baa && &t.origin == origin).with_context(|| {
        format!("no return-or-destroy task for {baa} at {origin} (it opens once the agreement has ended)")
    })?;
    anyhow::ensure!(
        task.status == "open",
        "the task for {baa} at {origin} is closed already ({} by {})",
        task.status,
        task.closed_by.as_deref().unwrap_or("?")
    );
    Ok(task)
}

async fn close(
    store: &Store,
    tenant: &str,
    task: &BaaTask,
    status: &str,
    note: &str,
    clock: &Clock,
) -> anyhow::Result<()> {
    let actor = operator();
    let id = format!("{}@{}", task.baa, task.origin);
    let audit = entry(tenant, &actor, &format!("baa.task.{status}"), &id, note.to_owned());
    let closed = store
        .close_baa_task(tenant, &task.baa, &task.origin, status, &actor, note.trim(), &audit, clock.now_ms())
        .await?;
    anyhow::ensure!(closed, "the task for {id} was closed meanwhile");
    Ok(())
}
