//! `telechart demo --faults`: the journey with what goes wrong in real EHRs — HTTP 429s with
//! Retry-After, a refused Condition (a dead letter an integration admin replays), a patient who
//! denies telehealth consent — and then the proof that the analytics dashboard, `/metrics` and
//! the CSV report the same figures for it.

use anyhow::{Context, bail};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use telechart_sandbox::RunningSandbox;
use telechart_store::{Clock, Store};

/// The faults the EHR will answer with, injected before the visits start.
pub fn inject(sandbox: &RunningSandbox) -> anyhow::Result<()> {
    for fault in [
        json!({"status": 429, "count": 6, "retryAfter": 1, "method": "POST", "resourceType": "Observation"}),
        json!({"status": 422, "count": 1, "method": "POST", "resourceType": "Condition"}),
    ] {
        sandbox.sandbox.inject(serde_json::from_value(fault)?);
    }
    Ok(())
}

/// Whether nothing more will happen without a person: nothing in flight and nothing due (what
/// is left pending waits behind a dead letter).
pub async fn settled(store: &Store, tenant: &str) -> anyhow::Result<bool> {
    let c = store.queue_counts(tenant).await?;
    Ok(c.in_flight == 0 && (c.pending == 0 || store.next_due_at(tenant).await?.is_none()))
}

/// A patient who denies telehealth consent in the waiting room: the call cannot start (403).
pub async fn deny_telehealth(http: &reqwest::Client, api: &str, appointment: &str) -> anyhow::Result<String> {
    let opened: Value = http
        .post(format!("{api}/visits"))
        .json(&json!({"appointment": format!("Appointment/{appointment}")}))
        .send()
        .await?
        .json()
        .await?;
    let visit = opened["id"].as_str().context("the API returned a visit without an id")?.to_owned();
    for (path, body, expected) in [
        ("transitions", json!({"to": "arrived"}), 201),
        ("consents", json!({"category": "telehealth", "decision": "deny"}), 201),
        ("transitions", json!({"to": "in-progress"}), 403),
    ] {
        let status = http.post(format!("{api}/visits/{visit}/{path}")).json(&body).send().await?.status();
        if status.as_u16() != expected {
            bail!("visit {visit}: {path} answered {status}, expected {expected}");
        }
    }
    Ok(visit)
}

/// An integration admin replays every visit with a dead letter (the EHR's refusal was
/// one-off); returns how many deliveries went back to the queue.
pub async fn replay_dead_letters(store: &Store, tenant: &str, api: &str) -> anyhow::Result<u64> {
    let (_, token) =
        store.create_api_token(tenant, "demo integration admin", "integration-admin", Clock::system().now_ms()).await?;
    let mut visits: Vec<String> = store.dead_letters(tenant).await?.into_iter().map(|d| d.visit_id).collect();
    visits.dedup();
    let mut replayed = 0;
    for visit in visits {
        let reply: Value = reqwest::Client::new()
            .post(format!("{api}/visits/{visit}/replay"))
            .bearer_auth(token.expose())
            .send()
            .await?
            .json()
            .await?;
        replayed += reply["replayed"].as_u64().unwrap_or(0);
    }
    Ok(replayed)
}

/// `/metrics` as a scraper with a monitor token reads it.
pub async fn scrape_metrics(store: &Store, tenant: &str, root: &str) -> anyhow::Result<String> {
    let (_, monitor) =
        store.create_api_token(tenant, "demo metrics export", "monitor", Clock::system().now_ms()).await?;
    let response = reqwest::Client::new().get(format!("{root}/metrics")).bearer_auth(monitor.expose()).send().await?;
    if !response.status().is_success() {
        bail!("GET /metrics answered {}", response.status());
    }
    Ok(response.text().await?)
}

/// What a figure is in each place that shows it.
#[derive(Debug, Default)]
struct Seen {
    api: Option<String>,
    csv: Option<String>,
    metrics: Option<String>,
    dashboard: Option<String>,
}

/// Reads the KPIs from the API, the CSV, `/metrics` and the dashboard page (the default range:
/// the last 24 hours), fails if any two disagree, and prints the headline figures.
pub async fn check_analytics(store: &Store, tenant: &str, root: &str) -> anyhow::Result<()> {
    let now = Clock::system().now_ms();
    let (_, manager) = store.create_api_token(tenant, "demo practice manager", "manager", now).await?;
    let (_, monitor) = store.create_api_token(tenant, "demo metrics scraper", "monitor", now).await?;
    let get = |path: String, token: String| async move {
        let response = reqwest::Client::new().get(format!("{root}{path}")).bearer_auth(token).send().await?;
        let status = response.status();
        let text = response.text().await?;
        if !status.is_success() {
            bail!("GET {path} answered {status}");
        }
        anyhow::Ok(text)
    };
    let report: Value = serde_json::from_str(&get("/api/v1/analytics".into(), manager.expose().to_owned()).await?)?;
    let csv = get("/api/v1/analytics/kpis.csv".into(), manager.expose().to_owned()).await?;
    let metrics = get("/metrics".into(), monitor.expose().to_owned()).await?;
    let dashboard = get("/workspace/analytics".into(), manager.expose().to_owned()).await?;

    let mut seen: BTreeMap<String, Seen> = BTreeMap::new();
    for k in report["kpis"].as_array().into_iter().flatten() {
        let id = k["id"].as_str().unwrap_or_default().to_owned();
        seen.entry(id).or_default().api = k["value"].as_f64().map(telechart_analytics::export::format_value);
    }
    for row in csv::Reader::from_reader(csv.as_bytes()).records() {
        let row = row?;
        let value = row.get(3).filter(|v| !v.is_empty()).map(str::to_owned);
        seen.entry(row.get(0).unwrap_or_default().to_owned()).or_default().csv = value;
    }
    let prefix = format!("{{tenant=\"{tenant}\",connection=\"all\"");
    for line in metrics.lines().filter(|l| l.starts_with("telechart_kpi_")) {
        if let Some((name, rest)) = line.split_once('{')
            && format!("{{{rest}").starts_with(&prefix)
            && let Some(value) = rest.rsplit(' ').next()
        {
            let id = name.trim_start_matches("telechart_kpi_");
            seen.entry(id.to_owned()).or_default().metrics = Some(value.to_owned());
        }
    }
    // The dashboard's tiles carry their value (`data-value`) beside the figure shown.
    for tile in dashboard.split("id=\"kpi-").skip(1) {
        let id = tile.split('"').next().unwrap_or_default();
        let value = tile.split("data-value=\"").nth(1).and_then(|v| v.split('"').next()).filter(|v| !v.is_empty());
        seen.entry(id.to_owned()).or_default().dashboard = value.map(str::to_owned);
    }
    let disagree: Vec<String> = seen
        .iter()
        .filter(|(_, s)| !(s.api == s.csv && s.csv == s.metrics && s.metrics == s.dashboard))
        .map(|(id, s)| format!("{id}: {s:?}"))
        .collect();
    if !disagree.is_empty() {
        bail!("the analytics disagree:\n  {}", disagree.join("\n  "));
    }
    let figure = |id: &str| report["kpis"].as_array().and_then(|ks| ks.iter().find(|k| k["id"] == id)).cloned();
    let ratio = |id: &str| {
        figure(id).map_or_else(String::new, |k| match k["value"].as_f64() {
            Some(v) => format!("{:.1} % ({} of {})", v * 100.0, k["numerator"], k["denominator"]),
            None => "—".into(),
        })
    };
    let count = |id: &str| figure(id).and_then(|k| k["value"].as_f64()).map_or("—".into(), |v| format!("{v:.0}"));
    println!("\nAnalytics, the last 24 hours (dashboard, /metrics and the CSV agree on all {} KPIs):", seen.len());
    println!("  auto-logged in the EHR   {}", ratio("auto_logged_ratio"));
    println!("  clean-claim ready        {}", ratio("clean_claim_ratio"));
    println!("  telehealth consent       {}", ratio("consent_telehealth_ratio"));
    println!("  recording / AI consent   {}", ratio("consent_ai_ratio"));
    println!("  data accuracy            {}", ratio("data_accuracy_ratio"));
    println!(
        "  consent denials {} · HTTP 429s {} · retries {} · dead letters now {}",
        count("consent_denials"),
        count("throttled_attempts"),
        count("retry_attempts"),
        count("dead_letters")
    );
    println!("  dashboard: {root}/workspace/analytics");
    Ok(())
}
