//! Alert rules over the audit log, evaluated record by record in each tenant's chain order: one
//! person viewing many patients in an hour, a person reaching a patient they have no visit with,
//! break-glass use, repeated consent refusals, and a broken chain. Pure: the caller resolves the
//! facts a record does not carry (its patient, the person's care relationship) and keeps the
//! alerts; an alert names ids and counts, never a patient.

use std::collections::{HashMap, HashSet, VecDeque};

use serde::{Deserialize, Serialize};

const HOUR_MS: i64 = 3_600_000;

/// Which rules fire, and when. Defaults suit a clinic; each is configurable per deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertRules {
    /// More distinct patients than this reached by one person within an hour.
    pub patients_per_hour: usize,
    /// This many consent refusals on one visit within an hour.
    pub consent_denials_per_hour: usize,
    /// Alert on a person's access to a patient with whom they have no visit.
    pub care_relationship: bool,
    /// Alert on each break-glass grant and each use of one.
    pub break_glass: bool,
}

impl Default for AlertRules {
    fn default() -> Self {
        AlertRules { patients_per_hour: 30, consent_denials_per_hour: 3, care_relationship: true, break_glass: true }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AlertRule {
    ManyPatients,
    NoCareRelationship,
    BreakGlass,
    ConsentDenials,
    VerificationFailure,
    /// A virtual-care KPI outside its band (the analytics' bands, not the audit log's records).
    KpiBand,
}

impl AlertRule {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertRule::ManyPatients => "many-patients",
            AlertRule::NoCareRelationship => "no-care-relationship",
            AlertRule::BreakGlass => "break-glass",
            AlertRule::ConsentDenials => "consent-denials",
            AlertRule::VerificationFailure => "verification-failure",
            AlertRule::KpiBand => "kpi-band",
        }
    }
}

/// One fired rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub rule: AlertRule,
    pub at: i64,
    pub actor: String,
    pub visit_id: Option<String>,
    /// Ids and counts only.
    pub detail: String,
    /// The tenant position of the record that fired it (0 for a verification failure).
    pub tenant_seq: i64,
}

/// What the engine is told of one audit record.
#[derive(Debug, Clone, Default)]
pub struct Observed<'a> {
    pub tenant_seq: i64,
    pub at: i64,
    pub actor: &'a str,
    pub action: &'a str,
    pub visit_id: Option<&'a str>,
    pub phi: bool,
    pub outcome: &'a str,
    pub consent: Option<&'a str>,
    /// Set for a person (`user:…`) touching a visit's PHI: an opaque key of the visit's patient
    /// (never the reference itself is needed), and whether the person has a visit with them —
    /// `None` when that cannot be told (no practitioner on record for the person).
    pub person: Option<PersonAccess>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonAccess {
    pub patient_key: String,
    pub care_relationship: Option<bool>,
}

/// The rolling state of one tenant's rules. Feed records in chain order; `quiet` records (those
/// already evaluated before a restart) rebuild the windows without firing again.
#[derive(Debug, Default)]
pub struct AlertEngine {
    rules: AlertRules,
    /// Per person: (at, patient key) within the last hour.
    seen: HashMap<String, VecDeque<(i64, String)>>,
    /// Per visit: times of consent refusals within the last hour.
    denials: HashMap<String, VecDeque<i64>>,
    /// (rule, key) → when it last fired: a windowed rule fires once per hour per key.
    fired: HashMap<(AlertRule, String), i64>,
    /// (person, patient) pairs already alerted for a missing care relationship.
    strangers: HashSet<(String, String)>,
}

impl AlertEngine {
    pub fn new(rules: AlertRules) -> Self {
        AlertEngine { rules, ..AlertEngine::default() }
    }

    /// Evaluates one record; returns the alerts it fires (none when `quiet`).
    pub fn observe(&mut self, r: &Observed<'_>, quiet: bool) -> Vec<Alert> {
        let mut out = Vec::new();
        let alert = |rule, detail: String| Alert {
            rule,
            at: r.at,
            actor: r.actor.to_owned(),
            visit_id: r.visit_id.map(str::to_owned),
            detail,
            tenant_seq: r.tenant_seq,
        };
        if self.rules.break_glass {
            if r.action == "break-glass.grant" {
                out.push(alert(AlertRule::BreakGlass, "break-glass granted".into()));
            } else if r.consent.is_some_and(|c| c.starts_with("permit by break-glass")) {
                let grant = r.consent.and_then(|c| c.split_whitespace().nth(3)).unwrap_or("?");
                out.push(alert(AlertRule::BreakGlass, format!("access under break-glass {grant}: {}", r.action)));
            }
        }
        if r.action == "consent.decision"
            && r.outcome == "denied"
            && let Some(visit) = r.visit_id
        {
            let window = self.denials.entry(visit.to_owned()).or_default();
            window.push_back(r.at);
            while window.front().is_some_and(|t| *t <= r.at - HOUR_MS) {
                window.pop_front();
            }
            let n = window.len();
            if n >= self.rules.consent_denials_per_hour.max(1) && self.fire_once(AlertRule::ConsentDenials, visit, r.at)
            {
                out.push(alert(
                    AlertRule::ConsentDenials,
                    format!("{n} consent refusals on visit {visit} within an hour"),
                ));
            }
        }
        if let Some(person) = &r.person
            && r.phi
        {
            let window = self.seen.entry(r.actor.to_owned()).or_default();
            window.push_back((r.at, person.patient_key.clone()));
            while window.front().is_some_and(|(t, _)| *t <= r.at - HOUR_MS) {
                window.pop_front();
            }
            let distinct = window.iter().map(|(_, p)| p.as_str()).collect::<HashSet<_>>().len();
            if distinct > self.rules.patients_per_hour && self.fire_once(AlertRule::ManyPatients, r.actor, r.at) {
                out.push(alert(AlertRule::ManyPatients, format!("{distinct} distinct patients within an hour")));
            }
            if self.rules.care_relationship
                && person.care_relationship == Some(false)
                && self.strangers.insert((r.actor.to_owned(), person.patient_key.clone()))
            {
                out.push(alert(
                    AlertRule::NoCareRelationship,
                    format!("{} without a visit of theirs with this patient", r.action),
                ));
            }
        }
        if quiet { Vec::new() } else { out }
    }

    /// Whether a windowed rule may fire for `key` now (once per hour per key), recording it.
    fn fire_once(&mut self, rule: AlertRule, key: &str, at: i64) -> bool {
        let last = self.fired.entry((rule, key.to_owned())).or_insert(i64::MIN);
        if *last > at - HOUR_MS {
            return false;
        }
        *last = at;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read<'a>(seq: i64, at: i64, actor: &'a str, patient: &str, related: Option<bool>) -> Observed<'a> {
        Observed {
            tenant_seq: seq,
            at,
            actor,
            action: "visit.read",
            visit_id: Some("v1"),
            phi: true,
            outcome: "success",
            person: Some(PersonAccess { patient_key: patient.into(), care_relationship: related }),
            ..Observed::default()
        }
    }

    #[test]
    fn many_patients_in_an_hour_fires_once_per_hour() {
        let mut engine = AlertEngine::new(AlertRules { patients_per_hour: 3, ..AlertRules::default() });
        let mut fired = Vec::new();
        for i in 0..6 {
            fired.extend(engine.observe(&read(i, i * 60_000, "user:u1", &format!("p{i}"), Some(true)), false));
        }
        assert_eq!(fired.len(), 1, "{fired:?}");
        assert_eq!((fired[0].rule, fired[0].tenant_seq), (AlertRule::ManyPatients, 3));
        assert_eq!(fired[0].detail, "4 distinct patients within an hour");
        // The same patients again do not count twice; an hour later the window has emptied.
        assert!(engine.observe(&read(7, 10 * 60_000, "user:u1", "p1", Some(true)), false).is_empty());
        let later: Vec<Alert> = (0..4)
            .flat_map(|i| engine.observe(&read(8 + i, 2 * HOUR_MS + i, "user:u1", "q", Some(true)), false))
            .collect();
        assert!(later.is_empty(), "one patient is not many: {later:?}");
    }

    #[test]
    fn a_stranger_alerts_once_per_patient_and_unknown_relationships_do_not() {
        let mut engine = AlertEngine::new(AlertRules::default());
        let first = engine.observe(&read(1, 0, "user:u2", "p1", Some(false)), false);
        assert_eq!(first.iter().map(|a| a.rule).collect::<Vec<_>>(), [AlertRule::NoCareRelationship]);
        assert!(engine.observe(&read(2, 1, "user:u2", "p1", Some(false)), false).is_empty());
        assert_eq!(engine.observe(&read(3, 2, "user:u2", "p2", Some(false)), false).len(), 1);
        assert!(engine.observe(&read(4, 3, "user:u3", "p1", None), false).is_empty());
        assert!(engine.observe(&read(5, 4, "user:u3", "p1", Some(true)), false).is_empty());
    }

    #[test]
    fn break_glass_grants_and_uses_alert() {
        let mut engine = AlertEngine::new(AlertRules::default());
        let grant =
            Observed { action: "break-glass.grant", actor: "user:u1", visit_id: Some("v1"), ..Observed::default() };
        assert_eq!(engine.observe(&grant, false)[0].rule, AlertRule::BreakGlass);
        let used = Observed {
            action: "consent.decision",
            actor: "user:u1",
            consent: Some("permit by break-glass bg-7 (ETREAT) over deny: …"),
            ..Observed::default()
        };
        let fired = engine.observe(&used, false);
        assert_eq!(fired[0].detail, "access under break-glass bg-7: consent.decision");
        let off = AlertRules { break_glass: false, ..AlertRules::default() };
        assert!(AlertEngine::new(off).observe(&grant, false).is_empty());
    }

    #[test]
    fn repeated_consent_refusals_on_a_visit_alert_and_quiet_records_rebuild_the_window() {
        let denial = |seq, at| Observed {
            tenant_seq: seq,
            at,
            action: "consent.decision",
            outcome: "denied",
            actor: "token:t",
            visit_id: Some("v9"),
            ..Observed::default()
        };
        let mut engine = AlertEngine::new(AlertRules::default());
        // Two refusals seen before a restart, quietly; the third after it fires.
        assert!(engine.observe(&denial(1, 0), true).is_empty());
        assert!(engine.observe(&denial(2, 1_000), true).is_empty());
        let fired = engine.observe(&denial(3, 2_000), false);
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].detail, "3 consent refusals on visit v9 within an hour");
        assert!(engine.observe(&denial(4, 3_000), false).is_empty(), "once per hour");
        // Spread beyond an hour, three refusals are not a burst.
        let mut slow = AlertEngine::new(AlertRules::default());
        let fired: Vec<Alert> = (0..3).flat_map(|i| slow.observe(&denial(i, i * HOUR_MS), false)).collect();
        assert!(fired.is_empty());
    }
}
