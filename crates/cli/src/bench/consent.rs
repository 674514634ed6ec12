//! `telechart bench consent`: one consent decision's latency on a tenant with many consents.

use std::time::Instant;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use telechart_policy::consent::{
    ACT_CODE, ACT_REASON, AccessRequest, CONFIDENTIALITY, CONSENT_ACTION, CONSENT_SCOPE, Coding, Consent,
    ConsentPolicy, ConsentSet, PARTICIPATION_TYPE, RESOURCE_TYPES, RequestActor, Scope, TELECHART_CONSENT_CATEGORY,
};

#[derive(clap::Args, Clone)]
pub struct ConsentBenchArgs {
    /// Consents on the tenant.
    #[arg(long, default_value_t = 1_000)]
    consents: usize,
    /// Patients they belong to (4 consents each by default: telehealth, recording, disclosure, research).
    #[arg(long, default_value_t = 250)]
    patients: usize,
    /// Decisions timed.
    #[arg(long, default_value_t = 200_000)]
    decisions: usize,
}

fn cc(system: &str, code: &str) -> Value {
    json!({"coding": [{"system": system, "code": code}]})
}

/// The kinds of consent a telehealth tenant holds, with provision trees like real ones: a base
/// rule, nested exceptions by actor, purpose, class, security label and data period.
fn consent(i: usize, patient: usize) -> Value {
    let (scope, category, rule) = match i % 4 {
        0 => ("treatment", "telehealth", "OPTIN"),
        1 => ("treatment", "recording-ai", "OPTIN"),
        2 => ("patient-privacy", "disclosure", "OPTOUT"),
        _ => ("research", "research", "OPTOUT"),
    };
    json!({
        "resourceType": "Consent", "id": format!("c-{i}"), "status": if i.is_multiple_of(17) { "inactive" } else { "active" },
        "scope": cc(CONSENT_SCOPE, scope),
        "category": [cc(TELECHART_CONSENT_CATEGORY, category)],
        "patient": {"reference": format!("Patient/p-{patient}")},
        "dateTime": format!("2026-{:02}-01T09:00:00Z", 1 + i % 11),
        "policyRule": cc(ACT_CODE, rule),
        "provision": {
            "period": {"start": "2026-01-01", "end": "2027-12-31"},
            "provision": [
                {"type": "deny", "securityLabel": [{"system": CONFIDENTIALITY, "code": "R"}],
                 "provision": [{"type": "permit", "actor": [{"role": cc(PARTICIPATION_TYPE, "PPRF"),
                                 "reference": {"reference": "Practitioner/dr-1"}}]}]},
                {"type": "permit", "purpose": [{"system": ACT_REASON, "code": "TREAT"}],
                 "class": [{"system": RESOURCE_TYPES, "code": "Encounter"}, {"system": RESOURCE_TYPES, "code": "DocumentReference"}],
                 "action": [cc(CONSENT_ACTION, "use")]},
                {"type": "deny", "dataPeriod": {"end": "2020-01-01"}},
                {"type": "deny", "purpose": [{"system": ACT_REASON, "code": "HMARKT"}]}
            ]
        }
    })
}

fn request(i: usize, patients: usize, at: DateTime<Utc>) -> AccessRequest {
    let (scope, category) = match i % 4 {
        0 => (Scope::Treatment, "telehealth"),
        1 => (Scope::Treatment, "recording-ai"),
        2 => (Scope::PatientPrivacy, "disclosure"),
        _ => (Scope::Research, "research"),
    };
    let mut r = AccessRequest::new(&format!("Patient/p-{}", (i * 7919) % patients), scope, at);
    r.categories = vec![Coding::new(TELECHART_CONSENT_CATEGORY, category)];
    r.action = Some(Coding::new(CONSENT_ACTION, "use"));
    r.purpose = Some(Coding::new(ACT_REASON, if i.is_multiple_of(5) { "HRESCH" } else { "TREAT" }));
    r.class = Some(Coding::new(RESOURCE_TYPES, if i.is_multiple_of(3) { "Observation" } else { "DocumentReference" }));
    r.security_labels = vec![Coding::new(CONFIDENTIALITY, if i.is_multiple_of(6) { "R" } else { "N" })];
    r.actors = vec![RequestActor {
        reference: format!("Practitioner/dr-{}", i % 3),
        roles: vec![Coding::new(PARTICIPATION_TYPE, "PPRF")],
    }];
    r
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or(0) as f64 / 1000.0
}

fn time(set: &ConsentSet, policy: &ConsentPolicy, requests: &[AccessRequest], decisions: usize) -> (Vec<u64>, usize) {
    let mut nanos = Vec::with_capacity(decisions);
    let mut permits = 0;
    for i in 0..decisions {
        let req = &requests[i % requests.len()];
        let started = Instant::now();
        let decision = set.decide(policy, req);
        nanos.push(started.elapsed().as_nanos() as u64);
        permits += usize::from(decision.outcome == telechart_policy::consent::Outcome::Permit);
    }
    nanos.sort_unstable();
    (nanos, permits)
}

pub fn run(args: ConsentBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.patients > 0 && args.consents > 0, "--consents and --patients must be at least 1");
    let at = telechart_policy::consent::parse_fhir_instant("2026-12-06T10:00:00Z", false)
        .ok_or_else(|| anyhow::anyhow!("the bench's instant does not parse"))?;
    let policy = ConsentPolicy::default();
    println!("bench consent: decisions timed one by one, p50 / p99 / max in µs");
    println!("{:<44} {:>9} {:>9} {:>9} {:>9}", "tenant", "p50", "p99", "max", "permit %");
    for (label, patients, decisions) in [
        (format!("{} consents over {} patients", args.consents, args.patients), args.patients, args.decisions),
        (format!("{} consents on one patient (worst case)", args.consents), 1, args.decisions / 20),
    ] {
        let consents: Vec<Consent> =
            (0..args.consents).map(|i| Consent::from_fhir(&consent(i, i % patients))).collect::<Result<_, _>>()?;
        let set = ConsentSet::new(consents);
        let requests: Vec<AccessRequest> = (0..4096).map(|i| request(i, patients, at)).collect();
        time(&set, &policy, &requests, decisions.min(10_000)); // warm-up
        let (nanos, permits) = time(&set, &policy, &requests, decisions);
        println!(
            "{label:<44} {:>9.2} {:>9.2} {:>9.2} {:>9.1}",
            percentile(&nanos, 0.5),
            percentile(&nanos, 0.99),
            percentile(&nanos, 1.0),
            100.0 * permits as f64 / decisions.max(1) as f64
        );
    }
    println!("  target: p99 < 20 µs on a tenant with 1 000 consents");
    Ok(())
}
