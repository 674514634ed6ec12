//! `telechart trace VISIT`: where every artifact of a visit is, and how it got there — each
//! delivery's attempts from the audit log (time, what happened, the EHR's answer), its plan for
//! that EHR, the EHR's id and version, and the consent decisions taken on the visit. Written for
//! a support desk: one screen, no database access needed.

use std::process::ExitCode;

use anyhow::Context;
use telechart_store::Store;

use crate::config::Config;

fn instant(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map_or_else(|| ms.to_string(), |t| t.format("%Y-%m-%d %H:%M:%S%.3fZ").to_string())
}

pub async fn run(config: Config, visit_id: &str, tenant: Option<String>) -> anyhow::Result<ExitCode> {
    let store = Store::open(&config.database_url, 2, config.keys.load()?).await?;
    let tenant = tenant.unwrap_or_else(|| config.tenant.clone());
    let visit =
        store.visit(&tenant, visit_id).await?.with_context(|| format!("no visit {visit_id} in tenant {tenant}"))?;
    let deliveries = store.deliveries_for_visit(&tenant, visit_id).await?;
    let audit = store.audit_for_visit(&tenant, visit_id).await?;
    let done = deliveries.iter().filter(|d| d.status == "done").count();
    println!(
        "visit {visit_id} ({}), appointment {}, connection {}: {} deliveries, {done} done",
        visit.state,
        visit.appointment_id,
        visit.connection_id,
        deliveries.len()
    );
    for d in &deliveries {
        let in_ehr = match (&d.ehr_resource_id, &d.ehr_version) {
            (Some(id), Some(v)) => format!("{}/{id} v{v}", d.resource_type),
            (Some(id), None) => format!("{}/{id}", d.resource_type),
            _ => "not in the EHR".to_owned(),
        };
        println!(
            "#{:<3} {:<18} {:<10} {:<9} {} · {} · artifact {}",
            d.seq,
            d.resource_type,
            d.connection_id,
            d.status,
            d.plan.as_deref().unwrap_or("not planned yet"),
            in_ehr,
            d.artifact_id
        );
        for a in audit.iter().filter(|a| a.entity_type == "delivery" && a.entity_id == d.id) {
            println!("       {}  {:<17} {}", instant(a.at), a.action.trim_start_matches("delivery."), a.detail);
        }
        if d.status == "pending" || d.status == "in_flight" {
            println!("       next attempt {}", instant(d.next_attempt_at));
        }
        if d.status == "dead" {
            println!("       dead letter: {}", d.last_error.as_deref().unwrap_or("no reason recorded"));
        }
    }
    let decisions: Vec<_> = audit.iter().filter(|a| a.action == "consent.decision").collect();
    if !decisions.is_empty() {
        println!("consent decisions:");
        for a in decisions {
            println!("       {}  {:<8} {}: {}", instant(a.at), a.outcome, a.detail, a.consent.as_deref().unwrap_or(""));
        }
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}
