//! CSV: one row per KPI, and the per-visit rows behind a KPI.

use telechart_store::VisitFact;

use crate::kpi::{DEFINITIONS, Unit};
use crate::{AnalyticsError, Report};

fn csv_error(e: impl std::fmt::Display) -> AnalyticsError {
    AnalyticsError::Csv(e.to_string())
}

/// `kpi,name,unit,value,numerator,denominator,from,to` — an empty value when its denominator is 0.
pub fn kpis_csv(report: &Report) -> Result<String, AnalyticsError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(["kpi", "name", "unit", "value", "numerator", "denominator", "from", "to"]).map_err(csv_error)?;
    let time = |ms: i64| {
        chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms).map(|t| t.to_rfc3339()).unwrap_or_default()
    };
    for (def, figure) in DEFINITIONS.iter().zip(&report.figures) {
        let unit = match def.unit {
            Unit::Ratio => "ratio",
            Unit::Count => "count",
            Unit::Seconds => "seconds",
            Unit::Words => "words",
            Unit::Score => "score",
        };
        let value = figure.value.map(format_value).unwrap_or_default();
        w.write_record([
            def.id,
            def.name,
            unit,
            &value,
            &figure.numerator.to_string(),
            &figure.denominator.to_string(),
            &time(report.filter.from_ms),
            &time(report.filter.to_ms),
        ])
        .map_err(csv_error)?;
    }
    String::from_utf8(w.into_inner().map_err(csv_error)?).map_err(csv_error)
}

/// Six significant decimals: the same text in the CSV as on `/metrics`.
pub fn format_value(v: f64) -> String {
    let s = format!("{v:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-" { "0".into() } else { s.to_owned() }
}

/// The per-visit rows (no PHI: ids, codes, counts, times).
pub fn visits_csv(rows: &[VisitFact]) -> Result<String, AnalyticsError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for row in rows {
        w.serialize(row).map_err(csv_error)?;
    }
    if rows.is_empty() {
        w.write_record(["visit_id"]).map_err(csv_error)?;
    }
    String::from_utf8(w.into_inner().map_err(csv_error)?).map_err(csv_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_print_without_float_noise() {
        assert_eq!(format_value(0.95), "0.95");
        assert_eq!(format_value(1.0), "1");
        assert_eq!(format_value(2.0 / 3.0), "0.666667");
        assert_eq!(format_value(0.0), "0");
        assert_eq!(format_value(-25.0), "-25");
    }
}
