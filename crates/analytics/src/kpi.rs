//! Each KPI as code with its written definition: numerator, denominator, time base and
//! exclusions, and which visits a drill-down from it lists.

use serde::Serialize;
use telechart_store::{FactPredicate, FactTotals};

/// What a KPI's value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Unit {
    /// A share, 0–1 (shown as a percentage).
    Ratio,
    Count,
    Seconds,
    /// Words inserted, deleted or replaced.
    Words,
    /// Net Promoter Score, −100 to 100.
    Score,
}

/// How a KPI's value comes from the facts.
#[derive(Debug, Clone, Copy)]
pub enum Formula {
    /// numerator ÷ denominator of [`FactTotals`] fields.
    Ratio(fn(&FactTotals) -> i64, fn(&FactTotals) -> i64),
    /// A sum over the range.
    Sum(fn(&FactTotals) -> i64),
    /// sum ÷ count.
    Mean(fn(&FactTotals) -> i64, fn(&FactTotals) -> i64),
    /// A nearest-rank quantile of a per-visit duration (computed by the report).
    Quantile,
    /// Read now, not over the range (the report fills it).
    Current,
    /// From the survey (the report fills it).
    Nps,
    /// From the break-glass grants (the report fills it).
    BreakGlass,
}

/// A KPI's written definition.
#[derive(Debug, Clone, Copy)]
pub struct Definition {
    /// Stable id: the CSV's `kpi` column, the metric name after `telechart_kpi_`, the URL.
    pub id: &'static str,
    pub name: &'static str,
    pub group: &'static str,
    pub unit: Unit,
    pub numerator: &'static str,
    pub denominator: &'static str,
    pub time_base: &'static str,
    pub exclusions: &'static str,
    pub formula: Formula,
    /// The visits behind the figure (its numerator, or the visits it is measured over).
    pub drill: Option<&'static str>,
}

const STARTED: &str = "the visit was opened in [from, to)";

/// Every KPI, in the dashboard's order.
pub const DEFINITIONS: &[Definition] = &[
    Definition {
        id: "auto_logged_ratio",
        name: "Auto-logged in the EHR",
        group: "Charting",
        unit: Unit::Ratio,
        numerator: "finished visits whose Encounter is in the EHR and every artifact delivered, with no dead letter, replay, retry or discard by a person",
        denominator: "finished visits",
        time_base: STARTED,
        exclusions: "deliveries withheld by the patient's disclosure consent are not counted",
        formula: Formula::Ratio(|t| t.auto_logged, |t| t.finished),
        drill: Some("not-auto-logged"),
    },
    Definition {
        id: "chart_closure_seconds_p50",
        name: "Call end → chart closed, median",
        group: "Charting",
        unit: Unit::Seconds,
        numerator: "nearest-rank 50th percentile of (last artifact in the EHR − call ended)",
        denominator: "finished visits fully charted, with a call end",
        time_base: STARTED,
        exclusions: "visits not yet fully charted",
        formula: Formula::Quantile,
        drill: Some("charted"),
    },
    Definition {
        id: "chart_closure_seconds_p90",
        name: "Call end → chart closed, 90th percentile",
        group: "Charting",
        unit: Unit::Seconds,
        numerator: "nearest-rank 90th percentile of (last artifact in the EHR − call ended)",
        denominator: "finished visits fully charted, with a call end",
        time_base: STARTED,
        exclusions: "visits not yet fully charted",
        formula: Formula::Quantile,
        drill: Some("charted"),
    },
    Definition {
        id: "documentation_seconds_p50",
        name: "Call end → note signed, median",
        group: "Documentation",
        unit: Unit::Seconds,
        numerator: "nearest-rank 50th percentile of (first signature of the drafted note − call ended)",
        denominator: "finished visits with a signed drafted note and a call end",
        time_base: STARTED,
        exclusions: "amendments (only the first signature counts); notes written outside the drafter",
        formula: Formula::Quantile,
        drill: Some("note-signed"),
    },
    Definition {
        id: "documentation_seconds_p90",
        name: "Call end → note signed, 90th percentile",
        group: "Documentation",
        unit: Unit::Seconds,
        numerator: "nearest-rank 90th percentile of (first signature of the drafted note − call ended)",
        denominator: "finished visits with a signed drafted note and a call end",
        time_base: STARTED,
        exclusions: "amendments; notes written outside the drafter",
        formula: Formula::Quantile,
        drill: Some("note-signed"),
    },
    Definition {
        id: "notes_drafted_ratio",
        name: "Notes drafted",
        group: "Documentation",
        unit: Unit::Ratio,
        numerator: "finished visits with at least one note draft",
        denominator: "finished visits",
        time_base: STARTED,
        exclusions: "none",
        formula: Formula::Ratio(|t| t.notes_drafted, |t| t.finished),
        drill: Some("note-not-signed"),
    },
    Definition {
        id: "note_edit_distance_mean",
        name: "Draft → signed edit distance, mean",
        group: "Documentation",
        unit: Unit::Words,
        numerator: "sum of words inserted, deleted or replaced between the draft and the text signed",
        denominator: "finished visits with a signed draft",
        time_base: STARTED,
        exclusions: "amendments",
        formula: Formula::Mean(|t| t.edit_distance_sum, |t| t.edit_distance_count),
        drill: Some("note-signed"),
    },
    Definition {
        id: "data_accuracy_ratio",
        name: "Data accuracy (read-back)",
        group: "Data quality",
        unit: Unit::Ratio,
        numerator: "fields the EHR kept as sent, on reading each delivered resource back",
        denominator: "fields sent in delivered resources",
        time_base: STARTED,
        exclusions: "deliveries with no read-back (fallback paths outside FHIR)",
        formula: Formula::Ratio(|t| t.readback_kept, |t| t.readback_sent),
        drill: Some("finished"),
    },
    Definition {
        id: "clean_claim_ratio",
        name: "Clean-claim ready",
        group: "Revenue",
        unit: Unit::Ratio,
        numerator: "finished visits passing every check of the claim-readiness checklist",
        denominator: "finished visits",
        time_base: STARTED,
        exclusions: "none",
        formula: Formula::Ratio(|t| t.claim_ready, |t| t.finished),
        drill: Some("claim-not-ready"),
    },
    Definition {
        id: "consent_telehealth_ratio",
        name: "Telehealth consent captured",
        group: "Consent",
        unit: Unit::Ratio,
        numerator: "started visits whose last telehealth gate decision rested on a Consent on file",
        denominator: "visits that reached the call (in progress or finished)",
        time_base: STARTED,
        exclusions: "visits that never started (booked, arrived, cancelled, no-show)",
        formula: Formula::Ratio(|t| t.consent_telehealth_captured, |t| t.started),
        drill: Some("consent-telehealth-not-captured"),
    },
    Definition {
        id: "consent_ai_ratio",
        name: "Recording / AI consent captured",
        group: "Consent",
        unit: Unit::Ratio,
        numerator: "started visits whose last recording/AI gate decision rested on a Consent on file",
        denominator: "visits that reached the call",
        time_base: STARTED,
        exclusions: "visits that never started",
        formula: Formula::Ratio(|t| t.consent_ai_captured, |t| t.started),
        drill: Some("consent-ai-not-captured"),
    },
    Definition {
        id: "consent_denials",
        name: "Consent denials",
        group: "Consent",
        unit: Unit::Count,
        numerator: "consent gate decisions that refused a flow",
        denominator: "—",
        time_base: STARTED,
        exclusions: "none",
        formula: Formula::Sum(|t| t.consent_denials),
        drill: Some("consent-denied"),
    },
    Definition {
        id: "break_glass_grants",
        name: "Break-glass grants",
        group: "Consent",
        unit: Unit::Count,
        numerator: "break-glass grants made",
        denominator: "—",
        time_base: "the grant was made in [from, to)",
        exclusions: "none",
        formula: Formula::BreakGlass,
        drill: None,
    },
    Definition {
        id: "break_glass_pending_reviews",
        name: "Break-glass grants awaiting review",
        group: "Consent",
        unit: Unit::Count,
        numerator: "break-glass grants made in the range not yet reviewed",
        denominator: "—",
        time_base: "the grant was made in [from, to)",
        exclusions: "none",
        formula: Formula::BreakGlass,
        drill: None,
    },
    Definition {
        id: "queue_depth",
        name: "Queue depth now",
        group: "Sync health",
        unit: Unit::Count,
        numerator: "deliveries pending or in flight",
        denominator: "—",
        time_base: "now (not the range)",
        exclusions: "none",
        formula: Formula::Current,
        drill: None,
    },
    Definition {
        id: "dead_letters",
        name: "Dead letters now",
        group: "Sync health",
        unit: Unit::Count,
        numerator: "deliveries in the dead letters",
        denominator: "—",
        time_base: "now (not the range)",
        exclusions: "none",
        formula: Formula::Current,
        drill: Some("dead-now"),
    },
    Definition {
        id: "throttled_attempts",
        name: "EHR throttling (HTTP 429)",
        group: "Sync health",
        unit: Unit::Count,
        numerator: "attempts the EHR answered 429 Too Many Requests",
        denominator: "—",
        time_base: STARTED,
        exclusions: "none",
        formula: Formula::Sum(|t| t.throttled),
        drill: Some("throttled"),
    },
    Definition {
        id: "retry_attempts",
        name: "Retries",
        group: "Sync health",
        unit: Unit::Count,
        numerator: "delivery attempts after the first",
        denominator: "—",
        time_base: STARTED,
        exclusions: "none",
        formula: Formula::Sum(|t| t.retries),
        drill: Some("retried"),
    },
    Definition {
        id: "delivery_seconds_p95",
        name: "Delivery latency, 95th percentile",
        group: "Sync health",
        unit: Unit::Seconds,
        numerator: "nearest-rank 95th percentile of each visit's slowest delivery (queued → in the EHR)",
        denominator: "visits with a delivered artifact",
        time_base: STARTED,
        exclusions: "deliveries not yet done",
        formula: Formula::Quantile,
        drill: Some("all"),
    },
    Definition {
        id: "clinician_nps",
        name: "Clinician NPS",
        group: "Adoption",
        unit: Unit::Score,
        numerator: "% of scores 9–10 (promoters) − % of scores 0–6 (detractors)",
        denominator: "survey answers with a score",
        time_base: "the answer was given in [from, to)",
        exclusions: "dismissed surveys",
        formula: Formula::Nps,
        drill: None,
    },
    Definition {
        id: "visits",
        name: "Visits",
        group: "Adoption",
        unit: Unit::Count,
        numerator: "visits opened",
        denominator: "—",
        time_base: STARTED,
        exclusions: "none",
        formula: Formula::Sum(|t| t.visits),
        drill: Some("all"),
    },
    Definition {
        id: "completion_ratio",
        name: "Completed",
        group: "Adoption",
        unit: Unit::Ratio,
        numerator: "visits finished",
        denominator: "visits opened",
        time_base: STARTED,
        exclusions: "none",
        formula: Formula::Ratio(|t| t.finished, |t| t.visits),
        drill: Some("finished"),
    },
    Definition {
        id: "no_show_ratio",
        name: "No-show",
        group: "Adoption",
        unit: Unit::Ratio,
        numerator: "visits marked no-show",
        denominator: "visits opened",
        time_base: STARTED,
        exclusions: "none",
        formula: Formula::Ratio(|t| t.no_show, |t| t.visits),
        drill: Some("no-show"),
    },
    Definition {
        id: "cancellation_ratio",
        name: "Cancelled",
        group: "Adoption",
        unit: Unit::Ratio,
        numerator: "visits cancelled",
        denominator: "visits opened",
        time_base: STARTED,
        exclusions: "none",
        formula: Formula::Ratio(|t| t.cancelled, |t| t.visits),
        drill: Some("cancelled"),
    },
];

/// The definition with this id.
pub fn definition(id: &str) -> Option<&'static Definition> {
    DEFINITIONS.iter().find(|d| d.id == id)
}

/// One KPI's figure: its value (`None` when its denominator is zero — never a division by
/// zero) with the numerator and denominator it came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figure {
    pub id: &'static str,
    pub value: Option<f64>,
    pub numerator: i64,
    pub denominator: i64,
}

impl Figure {
    pub fn ratio(id: &'static str, numerator: i64, denominator: i64) -> Figure {
        let value = (denominator > 0).then(|| numerator as f64 / denominator as f64);
        Figure { id, value, numerator, denominator }
    }

    pub fn count(id: &'static str, n: i64) -> Figure {
        Figure { id, value: Some(n as f64), numerator: n, denominator: 0 }
    }
}

/// The figure of a range-based KPI from the sums (`None` for the kinds the report fills).
pub fn figure(def: &Definition, totals: &FactTotals) -> Option<Figure> {
    match def.formula {
        Formula::Ratio(n, d) => Some(Figure::ratio(def.id, n(totals), d(totals))),
        Formula::Mean(n, d) => Some(Figure::ratio(def.id, n(totals), d(totals))),
        Formula::Sum(n) => Some(Figure::count(def.id, n(totals))),
        Formula::Quantile | Formula::Current | Formula::Nps | Formula::BreakGlass => None,
    }
}

/// NPS from the count of each score 0–10: `None` without answers.
pub fn nps(scores: &[i64; 11]) -> Figure {
    let n: i64 = scores.iter().sum();
    let promoters: i64 = scores[9..].iter().sum();
    let detractors: i64 = scores[..7].iter().sum();
    let value = (n > 0).then(|| 100.0 * (promoters - detractors) as f64 / n as f64);
    Figure { id: "clinician_nps", value, numerator: promoters - detractors, denominator: n }
}

/// The drill-down predicate of a name in a URL or on the command line.
pub fn predicate(name: &str) -> Option<FactPredicate> {
    Some(match name {
        "all" => FactPredicate::All,
        "finished" => FactPredicate::Finished,
        "started" => FactPredicate::Started,
        "auto-logged" => FactPredicate::AutoLogged,
        "not-auto-logged" => FactPredicate::NotAutoLogged,
        "charted" => FactPredicate::Charted,
        "note-signed" => FactPredicate::NoteSigned,
        "note-not-signed" => FactPredicate::NoteNotSigned,
        "claim-ready" => FactPredicate::ClaimReady,
        "claim-not-ready" => FactPredicate::ClaimNotReady,
        "consent-telehealth-captured" => FactPredicate::ConsentTelehealthCaptured,
        "consent-telehealth-not-captured" => FactPredicate::ConsentTelehealthNotCaptured,
        "consent-ai-captured" => FactPredicate::ConsentAiCaptured,
        "consent-ai-not-captured" => FactPredicate::ConsentAiNotCaptured,
        "consent-denied" => FactPredicate::ConsentDenied,
        "ever-dead" => FactPredicate::EverDead,
        "dead-now" => FactPredicate::DeadNow,
        "manual-touch" => FactPredicate::ManualTouch,
        "throttled" => FactPredicate::Throttled,
        "retried" => FactPredicate::Retried,
        "cancelled" => FactPredicate::Cancelled,
        "no-show" => FactPredicate::NoShow,
        other => match other.strip_prefix("claim-missing:") {
            Some(check) if CLAIM_CHECKS.contains(&check) => FactPredicate::ClaimMissing(check.to_owned()),
            _ => return None,
        },
    })
}

/// The claim-readiness checklist's checks, in its order.
pub const CLAIM_CHECKS: [&str; 8] = [
    "procedure-code",
    "diagnosis",
    "place-of-service",
    "modifier-matches-modality",
    "rendering-provider",
    "signed-note",
    "visit-finished",
    "charted-in-ehr",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kpi_has_a_unique_id_a_definition_and_a_drill_down_that_parses() {
        let mut ids: Vec<&str> = DEFINITIONS.iter().map(|d| d.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), DEFINITIONS.len());
        for d in DEFINITIONS {
            assert!(!d.numerator.is_empty() && !d.denominator.is_empty() && !d.time_base.is_empty(), "{}", d.id);
            assert!(d.id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'), "{}", d.id);
            if let Some(drill) = d.drill {
                assert!(predicate(drill).is_some(), "{}", d.id);
            }
        }
    }

    #[test]
    fn a_zero_denominator_gives_no_value_never_a_division_by_zero() {
        let totals = FactTotals::default();
        for d in DEFINITIONS {
            if let Some(f) = figure(d, &totals) {
                assert!(f.value.is_none_or(|v| v == 0.0), "{}", d.id);
            }
        }
        assert_eq!(nps(&[0; 11]).value, None);
    }

    #[test]
    fn nps_is_promoters_minus_detractors_in_percent() {
        // 2 promoters (10, 9), 1 passive (8), 1 detractor (3): (2 − 1) / 4 = 25.
        let mut scores = [0; 11];
        scores[10] = 1;
        scores[9] = 1;
        scores[8] = 1;
        scores[3] = 1;
        let f = nps(&scores);
        assert_eq!((f.value, f.denominator), (Some(25.0), 4));
    }

    #[test]
    fn the_claim_checks_are_the_checklists_own() {
        let checks: Vec<&str> =
            telechart_visit::claim_readiness(&telechart_visit::ClaimFacts::default()).iter().map(|c| c.check).collect();
        assert_eq!(checks, CLAIM_CHECKS);
        assert!(predicate("claim-missing:signed-note").is_some());
        assert!(predicate("claim-missing:nonsense").is_none());
    }
}
