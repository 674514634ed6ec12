//! The KPIs in the Prometheus text exposition format: one gauge per KPI, `telechart_kpi_{id}`,
//! labelled by tenant and connection (`all` for the tenant's total) and the window. No PHI and
//! bounded labels: tenants and connections are configuration, clinicians are left out.

use std::fmt::Write as _;

use crate::export::format_value;
use crate::kpi::{DEFINITIONS, Unit};
use crate::{Figure, Report};

/// The window `/metrics` reports over, as its label says.
pub const WINDOW_LABEL: &str = "24h";

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The exposition of each tenant's report. A KPI without a value (its denominator is 0) has no
/// sample rather than a NaN.
pub fn exposition(reports: &[(&str, &Report)]) -> String {
    let mut out = String::new();
    for (index, def) in DEFINITIONS.iter().enumerate() {
        let name = format!("telechart_kpi_{}", def.id);
        let unit = match def.unit {
            Unit::Ratio => "share 0-1",
            Unit::Count => "count",
            Unit::Seconds => "seconds",
            Unit::Words => "words",
            Unit::Score => "score -100..100",
        };
        let _ = writeln!(out, "# HELP {name} {} ({unit}): {} / {}", def.name, def.numerator, def.denominator);
        let _ = writeln!(out, "# TYPE {name} gauge");
        for (tenant, report) in reports {
            let mut line = |connection: &str, figure: &Figure| {
                if let Some(v) = figure.value {
                    let _ = writeln!(
                        out,
                        "{name}{{tenant=\"{}\",connection=\"{}\",window=\"{WINDOW_LABEL}\"}} {}",
                        escape(tenant),
                        escape(connection),
                        format_value(v)
                    );
                }
            };
            if let Some(figure) = report.figures.get(index) {
                line("all", figure);
            }
            for group in &report.by_connection {
                let figure = match def.id {
                    "auto_logged_ratio" => Some(&group.totals.auto_logged),
                    "clean_claim_ratio" => Some(&group.totals.clean_claim),
                    "data_accuracy_ratio" => Some(&group.totals.data_accuracy),
                    _ => None,
                };
                if let Some(figure) = figure {
                    line(&group.key, figure);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Grafana dashboard in `deploy/` charts every KPI, by the names `/metrics` uses.
    #[test]
    fn the_grafana_dashboard_queries_every_kpi_by_its_metric_name() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/grafana/telechart-analytics.json");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let dashboard: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let exprs: Vec<String> = dashboard["panels"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
            .filter_map(|t| t["expr"].as_str().map(str::to_owned))
            .collect();
        assert!(!exprs.is_empty(), "{}", path.display());
        for def in DEFINITIONS {
            let name = format!("telechart_kpi_{}{{", def.id);
            assert!(exprs.iter().any(|e| e.starts_with(&name)), "no panel for {}", def.id);
        }
        for e in &exprs {
            let id = e.trim_start_matches("telechart_kpi_").split('{').next().unwrap_or_default();
            assert!(DEFINITIONS.iter().any(|d| d.id == id), "{e} is not a KPI");
        }
    }

    #[test]
    fn kpis_without_a_value_have_no_sample_and_labels_are_escaped() {
        let report = Report {
            filter: telechart_store::FactFilter::default(),
            totals_visits: 0,
            figures: DEFINITIONS
                .iter()
                .map(|d| Figure { id: d.id, value: None, numerator: 0, denominator: 0 })
                .collect(),
            by_day: vec![],
            by_connection: vec![],
            by_clinician: vec![],
            by_visit_type: vec![],
            accuracy_by_resource: vec![],
            claim_missing: vec![],
            dead_letters: vec![],
            break_glass: vec![],
            nps_scores: [0; 11],
        };
        let text = exposition(&[("a\"b", &report)]);
        assert!(text.contains("# TYPE telechart_kpi_auto_logged_ratio gauge"));
        assert!(!text.lines().any(|l| l.starts_with("telechart_kpi_")), "{text}");
        let mut report = report;
        report.figures[0].value = Some(0.5);
        let text = exposition(&[("a\"b", &report)]);
        assert!(
            text.contains("telechart_kpi_auto_logged_ratio{tenant=\"a\\\"b\",connection=\"all\",window=\"24h\"} 0.5"),
            "{text}"
        );
    }
}
