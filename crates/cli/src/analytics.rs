//! `telechart analytics export|report`: the KPIs as CSV (or the visits behind one), and the
//! daily summary — from the same report as the dashboard and `/metrics`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use telechart_analytics::kpi::{DEFINITIONS, Unit};
use telechart_analytics::{AnalyticsError, FilterInput};
use telechart_store::{Clock, Store};

use crate::config::Config;

#[derive(clap::Args)]
pub struct FilterArgs {
    /// Start of the range: YYYY-MM-DD (UTC midnight) or RFC 3339 (default: 24 hours before --to).
    #[arg(long)]
    from: Option<String>,
    /// End of the range: YYYY-MM-DD (through that day) or RFC 3339, exclusive (default: now).
    #[arg(long)]
    to: Option<String>,
    #[arg(long)]
    connection: Option<String>,
    /// `Practitioner/{id}`.
    #[arg(long)]
    clinician: Option<String>,
    #[arg(long)]
    visit_type: Option<String>,
    #[arg(long)]
    tenant: Option<String>,
}

impl FilterArgs {
    fn input(&self) -> FilterInput {
        FilterInput {
            from: self.from.clone(),
            to: self.to.clone(),
            connection: self.connection.clone(),
            clinician: self.clinician.clone(),
            visit_type: self.visit_type.clone(),
        }
    }
}

#[derive(clap::Subcommand)]
pub enum AnalyticsCommand {
    /// CSV of every KPI (kpi, name, unit, value, numerator, denominator, from, to), or with
    /// `--visits DRILL` the per-visit rows behind a figure (e.g. not-auto-logged,
    /// claim-missing:signed-note, consent-denied).
    Export {
        #[command(flatten)]
        filter: FilterArgs,
        #[arg(long)]
        visits: Option<String>,
        /// Write here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The summary of one UTC day (default: yesterday): every KPI, and what needs a look.
    Report {
        /// YYYY-MM-DD.
        #[arg(long)]
        day: Option<String>,
        #[arg(long)]
        tenant: Option<String>,
    },
}

/// A bad filter is the caller's mistake: said plainly, exit code 2.
fn refused(e: &AnalyticsError) -> Option<ExitCode> {
    if e.is_bad_input() {
        eprintln!("error: {e}");
        Some(ExitCode::from(2))
    } else {
        None
    }
}

pub async fn run(config: Config, which: AnalyticsCommand) -> anyhow::Result<ExitCode> {
    let store = Store::open(&config.database_url, 2, config.keys.load()?).await?;
    let now = Clock::system().now_ms();
    match which {
        AnalyticsCommand::Export { filter, visits, out } => {
            let tenant = filter.tenant.clone().unwrap_or_else(|| config.tenant.clone());
            telechart_analytics::refresh(&store, &tenant, now).await?;
            let resolved = match filter.input().resolve(&store, &tenant, now).await {
                Ok(f) => f,
                Err(e) => return refused(&e).map_or_else(|| Err(e.into()), Ok),
            };
            let csv = match visits {
                None => telechart_analytics::export::kpis_csv(&telechart_analytics::report(&store, &resolved).await?)?,
                Some(drill) => {
                    let Some(predicate) = telechart_analytics::predicate(&drill) else {
                        eprintln!("error: {}", AnalyticsError::UnknownDrill(drill));
                        return Ok(ExitCode::from(2));
                    };
                    let (rows, _) = store.fact_visits(&resolved, &predicate, i64::MAX / 4, 0).await?;
                    telechart_analytics::export::visits_csv(&rows)?
                }
            };
            match out {
                Some(path) => std::fs::write(&path, csv).with_context(|| format!("writing {}", path.display()))?,
                None => print!("{csv}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        AnalyticsCommand::Report { day, tenant } => {
            let tenant = tenant.unwrap_or_else(|| config.tenant.clone());
            let day = match day {
                Some(d) => d,
                None => (Clock::system().now() - chrono::Duration::days(1)).format("%Y-%m-%d").to_string(),
            };
            telechart_analytics::refresh(&store, &tenant, now).await?;
            let input = FilterInput { from: Some(day.clone()), to: Some(day.clone()), ..FilterInput::default() };
            let filter = match input.resolve(&store, &tenant, now).await {
                Ok(f) => f,
                Err(e) => return refused(&e).map_or_else(|| Err(e.into()), Ok),
            };
            let report = telechart_analytics::report(&store, &filter).await?;
            println!("Telechart daily summary — tenant {tenant}, {day} (UTC)");
            if report.is_empty() {
                println!("  no visits opened that day");
            }
            let mut group = "";
            for (def, figure) in DEFINITIONS.iter().zip(&report.figures) {
                if def.group != group {
                    group = def.group;
                    println!("\n{group}");
                }
                let value = match (figure.value, def.unit) {
                    (None, _) => "—".to_owned(),
                    (Some(v), Unit::Ratio) => {
                        format!("{:.1} %  ({} of {})", v * 100.0, figure.numerator, figure.denominator)
                    }
                    (Some(v), Unit::Seconds) => format!("{v:.1} s  (over {} visits)", figure.denominator),
                    (Some(v), Unit::Words) => format!("{v:.1} words"),
                    (Some(v), Unit::Score) => format!("{v:+.0}  ({} answers)", figure.denominator),
                    (Some(v), Unit::Count) => format!("{v:.0}"),
                };
                println!("  {:<44} {value}", def.name);
            }
            if !report.claim_missing.is_empty() {
                println!("\nClaim items most often missing");
                for (check, n) in &report.claim_missing {
                    println!("  {check:<44} {n} visits  (telechart analytics export --visits claim-missing:{check})");
                }
            }
            if !report.dead_letters.is_empty() {
                println!("\nDead letters now");
                for (resource, reason, n) in &report.dead_letters {
                    println!("  {resource} ({reason}): {n}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
