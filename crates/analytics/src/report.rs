//! The figures of a filter: every KPI, the breakdowns the dashboard charts, the claim items most
//! often missing, dead letters by reason. One computation serves the dashboard, `/metrics`, the
//! CSV and the daily report, so they cannot disagree.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use std::collections::BTreeMap;

use telechart_store::{DAY_MS, FactDimension, FactDuration, FactFilter, FactTotals, Store, rollup_days};

use crate::AnalyticsError;
use crate::kpi::{self, CLAIM_CHECKS, DEFINITIONS, Figure, Formula};

/// The longest range one query may cover.
pub const MAX_RANGE_DAYS: i64 = 400;

/// A filter as it comes from a form, a URL or the command line: all text, all optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FilterInput {
    /// `YYYY-MM-DD` (from midnight UTC) or RFC 3339.
    pub from: Option<String>,
    /// `YYYY-MM-DD` (through the end of that day, UTC) or RFC 3339 (exclusive).
    pub to: Option<String>,
    pub connection: Option<String>,
    pub clinician: Option<String>,
    pub visit_type: Option<String>,
}

fn blank(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn parse_time(field: &'static str, text: &str, end_of_day: bool) -> Result<i64, AnalyticsError> {
    if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let start = day.and_hms_opt(0, 0, 0).map(|t| t.and_utc().timestamp_millis());
        return start.map(|ms| if end_of_day { ms + DAY_MS } else { ms }).ok_or_else(|| invalid(field, text));
    }
    DateTime::parse_from_rfc3339(text).map(|t| t.timestamp_millis()).map_err(|_| invalid(field, text))
}

fn invalid(field: &'static str, text: &str) -> AnalyticsError {
    AnalyticsError::Invalid { field, message: format!("{text:?} is not a date (YYYY-MM-DD) or an RFC 3339 time") }
}

impl FilterInput {
    /// The store's filter for `tenant_id`: the range defaults to the 24 hours before `now_ms`;
    /// an empty or backwards range, an over-long one, or a connection, clinician or visit type
    /// the tenant has no visit of is refused with what is wrong.
    pub async fn resolve(&self, store: &Store, tenant_id: &str, now_ms: i64) -> Result<FactFilter, AnalyticsError> {
        let to_ms = match blank(&self.to) {
            Some(t) => parse_time("to", t, true)?,
            None => now_ms,
        };
        let from_ms = match blank(&self.from) {
            Some(f) => parse_time("from", f, false)?,
            None => to_ms - DAY_MS,
        };
        if to_ms <= from_ms {
            return Err(AnalyticsError::Invalid {
                field: "to",
                message: "the time range is empty: `to` must be after `from`".into(),
            });
        }
        if to_ms - from_ms > MAX_RANGE_DAYS * DAY_MS {
            return Err(AnalyticsError::Invalid {
                field: "from",
                message: format!("the time range is longer than {MAX_RANGE_DAYS} days"),
            });
        }
        let mut filter = FactFilter { tenant_id: tenant_id.to_owned(), from_ms, to_ms, ..FactFilter::default() };
        for (field, value, dimension) in [
            ("connection", blank(&self.connection), FactDimension::Connection),
            ("clinician", blank(&self.clinician), FactDimension::Clinician),
            ("visitType", blank(&self.visit_type), FactDimension::VisitType),
        ] {
            let Some(value) = value else { continue };
            if !store.fact_dimension_has(tenant_id, dimension, value).await? {
                return Err(AnalyticsError::UnknownFilter { field, value: value.to_owned() });
            }
            let slot = match dimension {
                FactDimension::Connection => &mut filter.connection,
                FactDimension::Clinician => &mut filter.clinician,
                _ => &mut filter.visit_type,
            };
            *slot = Some(value.to_owned());
        }
        Ok(filter)
    }
}

/// One group's figures in a breakdown (a connection, a clinician, a visit type or a day).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Group {
    pub key: String,
    pub totals: GroupTotals,
}

/// The headline ratios of a group.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupTotals {
    pub visits: i64,
    pub finished: i64,
    pub auto_logged: Figure,
    pub clean_claim: Figure,
    pub data_accuracy: Figure,
}

fn group(key: String, t: &FactTotals) -> Group {
    Group {
        key,
        totals: GroupTotals {
            visits: t.visits,
            finished: t.finished,
            auto_logged: Figure::ratio("auto_logged_ratio", t.auto_logged, t.finished),
            clean_claim: Figure::ratio("clean_claim_ratio", t.claim_ready, t.finished),
            data_accuracy: Figure::ratio("data_accuracy_ratio", t.readback_kept, t.readback_sent),
        },
    }
}

/// Read-back accuracy of one resource type at one connection.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Accuracy {
    pub connection: String,
    pub resource_type: String,
    pub figure: Figure,
}

/// Everything the dashboard shows for a filter.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    #[serde(skip)]
    pub filter: FactFilter,
    pub totals_visits: i64,
    /// Every KPI of [`DEFINITIONS`], in order.
    pub figures: Vec<Figure>,
    pub by_day: Vec<Group>,
    pub by_connection: Vec<Group>,
    pub by_clinician: Vec<Group>,
    pub by_visit_type: Vec<Group>,
    /// Data accuracy per connection (the delivery's) and resource type.
    pub accuracy_by_resource: Vec<Accuracy>,
    /// (claim check, finished visits failing it), most often missing first, zeros left out.
    pub claim_missing: Vec<(String, i64)>,
    /// (resource type, reason class, dead letters now).
    pub dead_letters: Vec<(String, String, i64)>,
    /// (review status, grants in range).
    pub break_glass: Vec<(String, i64)>,
    /// Survey answers by score 0–10.
    pub nps_scores: [i64; 11],
}

impl Report {
    pub fn figure(&self, id: &str) -> Option<&Figure> {
        self.figures.iter().find(|f| f.id == id)
    }

    /// Whether the range holds no visit (the dashboard says so and draws empty charts).
    pub fn is_empty(&self) -> bool {
        self.totals_visits == 0
    }
}

/// The filter's sums by day, connection, clinician and visit type, and its claim checks failed.
/// Whole UTC days come from the daily rollups; the part-days at either end of the range, and
/// every day when a clinician is asked for, from the visit facts (see `rollup_days`).
#[derive(Default)]
struct Sums {
    days: BTreeMap<String, FactTotals>,
    connections: BTreeMap<String, FactTotals>,
    clinicians: BTreeMap<String, FactTotals>,
    visit_types: BTreeMap<String, FactTotals>,
    claims: BTreeMap<String, i64>,
    /// (connection, resource type) → fields sent, kept.
    readbacks: BTreeMap<(String, String), (i64, i64)>,
}

impl Sums {
    async fn of(store: &Store, filter: &FactFilter) -> Result<Sums, AnalyticsError> {
        let mut sums = Sums::default();
        let mut from_facts = vec![filter.clone()];
        if let Some(days) = rollup_days(filter) {
            from_facts = [(filter.from_ms, days.0 * DAY_MS), (days.1 * DAY_MS, filter.to_ms)]
                .into_iter()
                .filter(|(from, to)| from < to)
                .map(|(from_ms, to_ms)| FactFilter { from_ms, to_ms, ..filter.clone() })
                .collect();
            let add = |into: &mut BTreeMap<String, FactTotals>, rows: Vec<(String, FactTotals)>| {
                for (k, t) in rows {
                    into.entry(k).or_default().add(&t);
                }
            };
            add(&mut sums.days, store.rollup_totals_by(filter, days, FactDimension::Day).await?);
            add(&mut sums.connections, store.rollup_totals_by(filter, days, FactDimension::Connection).await?);
            add(&mut sums.clinicians, store.rollup_totals_by(filter, days, FactDimension::Clinician).await?);
            add(&mut sums.visit_types, store.rollup_totals_by(filter, days, FactDimension::VisitType).await?);
            for (check, n) in store.rollup_claim_missing(filter, days).await? {
                *sums.claims.entry(check).or_default() += n;
            }
            sums.add_readbacks(store.rollup_readback_sums(filter, days).await?);
        }
        for part in &from_facts {
            for (k, t) in store.fact_totals_by(part, FactDimension::Day).await? {
                sums.days.entry(k).or_default().add(&t);
            }
            for b in store.fact_breakdown(part, &CLAIM_CHECKS).await? {
                sums.connections.entry(b.connection.clone()).or_default().add(&b.totals);
                sums.clinicians.entry(b.clinician.clone()).or_default().add(&b.totals);
                sums.visit_types.entry(b.visit_type.clone()).or_default().add(&b.totals);
                for (check, n) in CLAIM_CHECKS.iter().zip(b.claim_missing.counts()) {
                    *sums.claims.entry((*check).to_owned()).or_default() += n;
                }
            }
            sums.add_readbacks(store.fact_readback_sums(part).await?);
        }
        Ok(sums)
    }

    fn add_readbacks(&mut self, rows: Vec<(String, String, i64, i64)>) {
        for (connection, resource_type, sent, kept) in rows {
            let slot = self.readbacks.entry((connection, resource_type)).or_default();
            slot.0 += sent;
            slot.1 += kept;
        }
    }

    /// The days partition the visits, so their sums are the totals.
    fn totals(&self) -> FactTotals {
        let mut totals = FactTotals::default();
        for t in self.days.values() {
            totals.add(t);
        }
        totals
    }
}

/// Computes the report of `filter` from `visit_facts` (refresh first for figures up to now).
pub async fn report(store: &Store, filter: &FactFilter) -> Result<Report, AnalyticsError> {
    let sums = Sums::of(store, filter).await?;
    let totals = sums.totals();
    let (charted, documented, delivered) = (totals.chart_closure_n, totals.documentation_n, totals.slowest_delivery_n);
    // Independent reads, so they run side by side on the pool (each quantile walks an index).
    let (chart50, chart90, doc50, doc90, delivery95, (pending, in_flight, dead), break_glass, nps_scores, dead_letters) =
        tokio::try_join!(
            store.fact_quantile(filter, FactDuration::ChartClosure, 0.5, charted),
            store.fact_quantile(filter, FactDuration::ChartClosure, 0.9, charted),
            store.fact_quantile(filter, FactDuration::Documentation, 0.5, documented),
            store.fact_quantile(filter, FactDuration::Documentation, 0.9, documented),
            store.fact_quantile(filter, FactDuration::SlowestDelivery, 0.95, delivered),
            store.queue_backlog(&filter.tenant_id),
            store.break_glass_reviews(&filter.tenant_id, filter.from_ms, filter.to_ms),
            store.nps_scores(&filter.tenant_id, filter.from_ms, filter.to_ms, filter.clinician.as_deref()),
            store.dead_letters_by_reason(&filter.tenant_id),
        )?;
    let seconds = |id, ms: Option<i64>, n: i64| Figure {
        id,
        value: ms.map(|ms| ms as f64 / 1000.0),
        numerator: ms.unwrap_or(0),
        denominator: n,
    };
    let figures = DEFINITIONS
        .iter()
        .map(|d| {
            kpi::figure(d, &totals).unwrap_or_else(|| match (d.formula, d.id) {
                (_, "chart_closure_seconds_p50") => seconds(d.id, chart50, charted),
                (_, "chart_closure_seconds_p90") => seconds(d.id, chart90, charted),
                (_, "documentation_seconds_p50") => seconds(d.id, doc50, documented),
                (_, "documentation_seconds_p90") => seconds(d.id, doc90, documented),
                (_, "delivery_seconds_p95") => seconds(d.id, delivery95, delivered),
                (_, "queue_depth") => Figure::count(d.id, pending + in_flight),
                (_, "dead_letters") => Figure::count(d.id, dead),
                (_, "break_glass_grants") => Figure::count(d.id, break_glass.iter().map(|(_, n)| n).sum()),
                (_, "break_glass_pending_reviews") => {
                    Figure::count(d.id, break_glass.iter().filter(|(r, _)| r == "pending").map(|(_, n)| n).sum())
                }
                (Formula::Nps, _) => kpi::nps(&nps_scores),
                _ => Figure { id: d.id, value: None, numerator: 0, denominator: 0 },
            })
        })
        .collect();
    let groups = |m: &BTreeMap<String, FactTotals>| m.iter().map(|(k, t)| group(k.clone(), t)).collect::<Vec<_>>();
    let by_day = sums.days.iter().map(|(k, t)| group(day_label(k), t)).collect();
    let mut claim_missing: Vec<(String, i64)> =
        sums.claims.iter().filter(|(_, n)| **n > 0).map(|(c, n)| (c.clone(), *n)).collect();
    claim_missing.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(Report {
        filter: filter.clone(),
        totals_visits: totals.visits,
        figures,
        by_day,
        by_connection: groups(&sums.connections),
        by_clinician: groups(&sums.clinicians),
        by_visit_type: groups(&sums.visit_types),
        accuracy_by_resource: sums
            .readbacks
            .iter()
            .map(|((connection, resource_type), (sent, kept))| Accuracy {
                connection: connection.clone(),
                resource_type: resource_type.clone(),
                figure: Figure::ratio("data_accuracy_ratio", *kept, *sent),
            })
            .collect(),
        claim_missing,
        dead_letters,
        break_glass,
        nps_scores,
    })
}

/// `YYYY-MM-DD` of a Unix day number.
fn day_label(days: &str) -> String {
    days.parse::<i64>()
        .ok()
        .and_then(|d| DateTime::<Utc>::from_timestamp_millis(d * DAY_MS))
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| days.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_times_parse_and_a_day_runs_to_its_end() {
        assert_eq!(parse_time("from", "2026-12-07", false).ok(), Some(1_796_601_600_000));
        assert_eq!(parse_time("to", "2026-12-07", true).ok(), Some(1_796_601_600_000 + DAY_MS));
        assert_eq!(parse_time("from", "2026-12-07T01:00:00Z", false).ok(), Some(1_796_605_200_000));
        let err = parse_time("from", "yesterday", false).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("from") && e.contains("yesterday")));
        assert_eq!(day_label("20794"), "2026-12-07");
    }
}
