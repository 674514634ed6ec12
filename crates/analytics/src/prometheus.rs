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
