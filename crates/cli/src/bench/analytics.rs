//! `telechart bench analytics`: the analytics dashboard over a million recorded visits — the
//! facts refreshed from the recorded rows once, then the dashboard page and the KPI report
//! requested over HTTP from a running server, a year of visits in range; on SQLite and
//! PostgreSQL.

use std::time::Instant;

use telechart_store::{Clock, KeyConfig, Store};

use super::scratch_postgres;
use crate::config::{Config, ConnectionConfig};

#[derive(clap::Args, Clone)]
pub struct AnalyticsBenchArgs {
    /// Recorded visits (each with three deliveries, a note draft and a consent decision).
    #[arg(long, default_value_t = 1_000_000)]
    visits: i64,
    /// Requests of each page timed, after one to warm up.
    #[arg(long, default_value_t = 10)]
    requests: usize,
    /// PostgreSQL URL for the PostgreSQL half (a scratch database is created there).
    #[arg(long, env = "TELECHART_BENCH_POSTGRES_URL")]
    postgres: Option<String>,
    /// Only this engine (`sqlite` or `postgres`).
    #[arg(long, value_parser = ["sqlite", "postgres"])]
    only: Option<String>,
}

const TENANT: &str = "bench";
const CONNECTION: &str = "bench-ehr";
const DAY_MS: i64 = 86_400_000;

fn quantile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len().max(1));
    sorted.get(rank - 1).copied().unwrap_or(f64::NAN)
}

pub async fn run(args: AnalyticsBenchArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut engines = vec![("sqlite", format!("sqlite:{}", dir.path().join("analytics-bench.db").display()))];
    if let Some(pg) = &args.postgres {
        engines.push(("postgres", scratch_postgres(pg).await?));
    } else {
        println!("  (no --postgres URL: PostgreSQL half skipped)");
    }
    println!(
        "bench analytics: {} recorded visits over 365 days; the dashboard page and the KPI report over all of them (target: page < 500 ms on PostgreSQL)",
        args.visits
    );
    println!(
        "{:<10} {:>9} {:>11} {:>13} {:>12} {:>12} {:>12} {:>12} {:>12}",
        "engine",
        "seed s",
        "refresh s",
        "refresh /s",
        "page p50 ms",
        "page p95 ms",
        "page max ms",
        "api p50 ms",
        "500 ms ÷ p95"
    );
    engines.retain(|(engine, _)| args.only.as_deref().is_none_or(|only| only == *engine));
    for (engine, url) in engines {
        let kek = telechart_store::Kek::generate()?;
        let now = Clock::system().now_ms();
        // Visits end two hours before now, so every recorded time is in the past.
        let (from, to) = (now - 365 * DAY_MS, now - 2 * 3_600_000);
        let mut config = Config { database_url: url.clone(), tenant: TENANT.into(), ..Config::default() };
        config.listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        config.connections = vec![ConnectionConfig {
            id: CONNECTION.into(),
            name: "Bench EHR".into(),
            profile: "generic".into(),
            // Nothing is left to deliver: the workers never call it.
            base_url: "http://127.0.0.1:9/fhir".into(),
            ..ConnectionConfig::default()
        }];
        config.audit.witness_file = dir.path().join(format!("{engine}-witness.jsonl"));
        config.audit.signing_key_file = dir.path().join(format!("{engine}-checkpoint.key"));
        // Recorded first, as a running server would have left them, then the server started.
        let started = Instant::now();
        {
            let store = Store::open(&url, 4, KeyConfig::new(telechart_store::Kek::generate()?)).await?;
            store
                .upsert_connection(&telechart_store::ConnectionRow {
                    tenant_id: TENANT.into(),
                    id: CONNECTION.into(),
                    name: "Bench EHR".into(),
                    profile: "generic".into(),
                    base_url: "http://127.0.0.1:9/fhir".into(),
                    settings: "{}".into(),
                    created_at: now,
                    updated_at: now,
                })
                .await?;
            store.seed_bench_visits(TENANT, CONNECTION, args.visits, from, to).await?;
            // As the server's chainer would: each record given its place in the tenant's chain.
            store.chain_pending_audit().await?;
            store.close().await;
        }
        let seed_s = started.elapsed().as_secs_f64();
        let telechart = crate::runtime::start(&config, KeyConfig::new(kek), Clock::system(), None).await?;
        let store: &Store = &telechart.store;
        // Until the facts are up to date (the alert runner may have begun the same refresh: the
        // second waits for the first).
        let started = Instant::now();
        telechart_analytics::refresh(store, TENANT, Clock::system().now_ms()).await?;
        let refresh_s = started.elapsed().as_secs_f64();

        let (_, token) = store.create_api_token(TENANT, "bench manager", "manager", Clock::system().now_ms()).await?;
        let client = reqwest::Client::new();
        let range = format!(
            "from={}&to={}",
            chrono::DateTime::from_timestamp_millis(from - DAY_MS)
                .map(|t| t.format("%Y-%m-%d").to_string())
                .unwrap_or_default(),
            chrono::DateTime::from_timestamp_millis(to).map(|t| t.format("%Y-%m-%d").to_string()).unwrap_or_default()
        );
        let base = telechart.server.base_url.clone();
        let time = |path: String| {
            let (client, token, base) = (client.clone(), token.expose().to_owned(), base.clone());
            async move {
                let mut ms = Vec::new();
                let mut visits = 0;
                for i in 0..=args.requests {
                    let started = Instant::now();
                    let response = client.get(format!("{base}{path}")).bearer_auth(&token).send().await?;
                    anyhow::ensure!(response.status().is_success(), "GET {path}: {}", response.status());
                    let body = response.text().await?;
                    if i > 0 {
                        ms.push(started.elapsed().as_secs_f64() * 1000.0);
                    }
                    if let Some(count) = body.split("id=\"visit-count\">").nth(1).and_then(|r| r.split('<').next()) {
                        visits = count.parse().unwrap_or(0);
                    }
                    if let Ok(json) = serde_json::from_str::<serde_json::Value>(&body) {
                        visits = json["visits"].as_i64().unwrap_or(visits);
                    }
                }
                ms.sort_by(f64::total_cmp);
                anyhow::Ok((ms, visits))
            }
        };
        let (page, page_visits) = time(format!("/workspace/analytics?{range}")).await?;
        let (api, api_visits) = time(format!("/api/v1/analytics?{range}")).await?;
        anyhow::ensure!(
            page_visits == args.visits && api_visits == args.visits,
            "the page counted {page_visits} and the API {api_visits} of {} visits",
            args.visits
        );
        let p95 = quantile(&page, 0.95);
        println!(
            "{engine:<10} {seed_s:>9.1} {refresh_s:>11.1} {:>13.0} {:>12.1} {p95:>12.1} {:>12.1} {:>12.1} {:>12.2}",
            args.visits as f64 / refresh_s,
            quantile(&page, 0.5),
            page.last().copied().unwrap_or(f64::NAN),
            quantile(&api, 0.5),
            500.0 / p95
        );
        telechart.stop().await;
    }
    Ok(())
}
