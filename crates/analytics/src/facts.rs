//! A visit's facts, derived from what was recorded about it, and the refresh that keeps
//! `visit_facts` up to date with the rows changed since it last ran.

use std::collections::HashMap;

use telechart_fhir::readback::ReadBack;
use telechart_store::{
    DAY_MS, FactDecision, FactDelivery, FactDraft, FactReadback, FactSources, FactVisit, Store, VisitFact,
};
use telechart_visit::{BillingFacts, ClaimFacts, claim_readiness};

use crate::AnalyticsError;

/// The consent gate's flow names, as the audit log records them.
pub const FLOW_TELEHEALTH: &str = "start telehealth visit";
pub const FLOW_RECORDING_AI: &str = "recording / AI drafting";

/// Visits per batch of the refresh.
const BATCH: usize = 500;

/// The facts of each visit in `sources`.
pub fn derive(tenant_id: &str, sources: &FactSources, now_ms: i64) -> Vec<VisitFact> {
    let mut deliveries: HashMap<&str, Vec<&FactDelivery>> = HashMap::new();
    for d in &sources.deliveries {
        deliveries.entry(d.visit_id.as_str()).or_default().push(d);
    }
    let mut drafts: HashMap<&str, Vec<&FactDraft>> = HashMap::new();
    for d in &sources.drafts {
        drafts.entry(d.visit_id.as_str()).or_default().push(d);
    }
    let mut decisions: HashMap<&str, Vec<&FactDecision>> = HashMap::new();
    for d in &sources.decisions {
        decisions.entry(d.visit_id.as_str()).or_default().push(d);
    }
    sources
        .visits
        .iter()
        .map(|v| {
            let id = v.id.as_str();
            visit_fact(
                tenant_id,
                v,
                deliveries.get(id).map_or(&[][..], Vec::as_slice),
                drafts.get(id).map_or(&[][..], Vec::as_slice),
                sources.noted.iter().any(|n| n == id),
                decisions.get(id).map_or(&[][..], Vec::as_slice),
                now_ms,
            )
        })
        .collect()
}

fn visit_fact(
    tenant_id: &str,
    v: &FactVisit,
    deliveries: &[&FactDelivery],
    drafts: &[&FactDraft],
    noted: bool,
    decisions: &[&FactDecision],
    now_ms: i64,
) -> VisitFact {
    // A disclosure the patient's consent withheld is the system working, not a gap in the chart.
    let counted: Vec<&&FactDelivery> = deliveries.iter().filter(|d| d.status != "withheld").collect();
    let delivered = counted.iter().filter(|d| d.status == "done").count();
    let all_done = !counted.is_empty() && delivered == counted.len();
    let chart_closed_at = if all_done { counted.iter().filter_map(|d| d.completed_at).max() } else { None };
    let slowest_delivery_ms = counted.iter().filter_map(|d| d.completed_at.map(|c| (c - d.created_at).max(0))).max();
    let ever_dead = counted.iter().filter(|d| d.was_dead > 0).count();
    let manual: i64 = counted.iter().map(|d| d.manual_touches).sum();
    let mut readback = ReadBack::default();
    let mut by_resource: std::collections::BTreeMap<(&str, &str), (i64, i64)> = Default::default();
    for d in counted.iter().filter(|d| d.status == "done") {
        // A read-back that does not parse counts as nothing sent: it cannot claim accuracy.
        if let Some(rb) = d.readback.as_deref().and_then(|r| serde_json::from_str::<ReadBack>(r).ok()) {
            readback.fields_sent += rb.fields_sent;
            readback.fields_kept += rb.fields_kept;
            let slot = by_resource.entry((d.connection_id.as_str(), d.resource_type.as_str())).or_default();
            slot.0 += i64::from(rb.fields_sent);
            slot.1 += i64::from(rb.fields_kept);
        }
    }
    let readbacks = by_resource
        .into_iter()
        .map(|((connection, resource_type), (sent, kept))| FactReadback {
            connection_id: connection.to_owned(),
            resource_type: resource_type.to_owned(),
            sent,
            kept,
        })
        .collect();
    let finished = v.state == "finished";
    let encounter_in_ehr = v.ehr_encounter_id.is_some();
    let auto_logged = finished && encounter_in_ehr && all_done && ever_dead == 0 && manual == 0;

    // The first signature is when the note was documented; later ones are amendments.
    let signed = drafts.iter().filter(|d| d.signed_at.is_some()).min_by_key(|d| d.signed_at);

    let billing: Option<BillingFacts> = v.billing.as_deref().and_then(|b| serde_json::from_str(b).ok());
    // The same checklist, over the same facts, as GET /visits/{id}/claim-readiness.
    let checks = claim_readiness(&ClaimFacts {
        billing: billing.as_ref(),
        diagnoses: deliveries.iter().filter(|d| d.resource_type == "Condition").count(),
        signed_note: noted,
        finished,
        undelivered: deliveries.iter().filter(|d| d.status != "done").count(),
    });
    let missing: Vec<&str> = checks.iter().filter(|c| !c.ok).map(|c| c.check).collect();

    VisitFact {
        tenant_id: tenant_id.to_owned(),
        visit_id: v.id.clone(),
        connection_id: v.connection_id.clone(),
        clinician: v.practitioner.clone().unwrap_or_default(),
        visit_type: v.visit_type.clone().unwrap_or_default(),
        state: v.state.clone(),
        started_at: v.created_at,
        call_ended_at: v.call_ended_at,
        encounter_in_ehr: i64::from(encounter_in_ehr),
        deliveries: count(counted.len()),
        delivered: count(delivered),
        dead: count(counted.iter().filter(|d| d.status == "dead").count()),
        ever_dead: count(ever_dead),
        manual_touches: manual,
        throttled: counted.iter().map(|d| d.throttled).sum(),
        retries: counted.iter().map(|d| (d.attempts - 1).max(0)).sum(),
        chart_closed_at,
        slowest_delivery_ms,
        auto_logged: i64::from(auto_logged),
        note_drafted: i64::from(!drafts.is_empty()),
        note_signed_at: signed.and_then(|d| d.signed_at),
        edit_distance: signed.and_then(|d| d.edit_distance),
        readback_sent: i64::from(readback.fields_sent),
        readback_kept: i64::from(readback.fields_kept),
        claim_ready: i64::from(missing.is_empty()),
        claim_missing: missing.join(","),
        consent_telehealth: consent_state(decisions, FLOW_TELEHEALTH).into(),
        consent_ai: consent_state(decisions, FLOW_RECORDING_AI).into(),
        consent_denials: count(decisions.iter().filter(|d| d.outcome == "denied").count()),
        refreshed_at: now_ms,
        readbacks,
    }
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// How the last decision of `flow` went: `captured` (on a Consent on file), `policy` (no
/// Consent: the tenant's policy decided), `denied`, or `none` (never decided).
fn consent_state(decisions: &[&FactDecision], flow: &str) -> &'static str {
    match decisions.iter().rev().find(|d| d.detail == flow) {
        None => "none",
        Some(d) if d.outcome == "denied" => "denied",
        // The gate writes `permit: Consent/{id}: …` (or `permit by break-glass … over …`) when a
        // Consent decided, and `permit: …` when none was on file.
        Some(d) if d.consent.as_deref().is_some_and(|c| c.starts_with("permit: Consent/")) => "captured",
        Some(_) => "policy",
    }
}

/// What one refresh did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Refreshed {
    pub visits: usize,
}

/// Brings the tenant's `visit_facts` up to date: the facts of every visit with anything
/// recorded since the last refresh are derived again.
pub async fn refresh(store: &Store, tenant_id: &str, now_ms: i64) -> Result<Refreshed, AnalyticsError> {
    // One refresh of a tenant at a time in this process: a second caller (the page while the
    // alert runner refreshes) waits, then finds little left to do. Across processes two
    // refreshes only repeat work: every write is an upsert of what the rows say.
    let lock = {
        static RUNNING: std::sync::LazyLock<std::sync::Mutex<HashMap<String, std::sync::Arc<tokio::sync::Mutex<()>>>>> =
            std::sync::LazyLock::new(Default::default);
        let mut running = RUNNING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        running.entry(tenant_id.to_owned()).or_default().clone()
    };
    let _one_at_a_time = lock.lock().await;
    let (changed_at, audit_seq) = store.analytics_watermark(tenant_id).await?;
    // Read before looking, so nothing recorded while this runs is skipped next time.
    let high_water = store.audit_high_water(tenant_id).await?;
    let visits = store.changed_visits(tenant_id, changed_at, audit_seq).await?;
    // The days whose rollups the new facts change (a visit's start never moves).
    let mut days = std::collections::BTreeSet::new();
    for batch in visits.chunks(BATCH) {
        let sources = store.fact_sources(tenant_id, batch).await?;
        let facts = derive(tenant_id, &sources, now_ms);
        days.extend(facts.iter().map(|f| f.started_at.div_euclid(DAY_MS)));
        store.upsert_visit_facts(&facts).await?;
    }
    // Runs of consecutive days are rebuilt together; the watermark moves only after.
    let mut days = days.into_iter().peekable();
    while let Some(first) = days.next() {
        let mut end = first + 1;
        while days.peek() == Some(&end) {
            days.next();
            end += 1;
        }
        store.rebuild_analytics_days(tenant_id, first, end, &crate::kpi::CLAIM_CHECKS).await?;
    }
    store.set_analytics_watermark(tenant_id, now_ms, high_water).await?;
    Ok(Refreshed { visits: visits.len() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn visit(state: &str) -> FactVisit {
        FactVisit {
            id: "v1".into(),
            connection_id: "ehr".into(),
            practitioner: Some("Practitioner/d1".into()),
            visit_type: Some("followup".into()),
            state: state.into(),
            created_at: 1_000,
            call_ended_at: Some(5_000),
            ehr_encounter_id: Some("enc".into()),
            billing: Some(
                r#"{"procedureCodes":["99213"],"placeOfService":"10","modifier":"95","modality":"video","renderingProvider":"Practitioner/d1"}"#
                    .into(),
            ),
        }
    }

    fn delivery(resource_type: &str, status: &str, completed: Option<i64>) -> FactDelivery {
        FactDelivery {
            visit_id: "v1".into(),
            connection_id: "ehr".into(),
            resource_type: resource_type.into(),
            status: status.into(),
            attempts: 1,
            created_at: 2_000,
            completed_at: completed,
            readback: Some(r#"{"fieldsSent":10,"fieldsKept":9,"differences":[]}"#.into()),
            was_dead: 0,
            manual_touches: 0,
            throttled: 0,
            plan: Some("written".into()),
        }
    }

    fn decision(flow: &str, outcome: &str, consent: &str) -> FactDecision {
        FactDecision {
            visit_id: "v1".into(),
            detail: flow.into(),
            outcome: outcome.into(),
            consent: Some(consent.into()),
        }
    }

    fn sources(state: &str, deliveries: Vec<FactDelivery>) -> FactSources {
        FactSources {
            visits: vec![visit(state)],
            deliveries,
            drafts: vec![FactDraft {
                visit_id: "v1".into(),
                status: "signed".into(),
                created_at: 6_000,
                signed_at: Some(65_000),
                edit_distance: Some(7),
            }],
            noted: vec!["v1".into()],
            decisions: vec![
                decision(FLOW_TELEHEALTH, "success", "permit: Consent/c1: provision permits"),
                decision(FLOW_RECORDING_AI, "success", "permit: no Consent on file; Telechart policy permits"),
            ],
        }
    }

    #[test]
    fn a_clean_visit_is_auto_logged_claim_ready_and_its_times_are_facts() {
        let f = &derive(
            "t",
            &sources(
                "finished",
                vec![delivery("Condition", "done", Some(9_000)), delivery("Encounter", "done", Some(12_000))],
            ),
            99,
        )[0];
        assert_eq!((f.auto_logged, f.deliveries, f.delivered), (1, 2, 2));
        assert_eq!(f.chart_closed_at, Some(12_000));
        assert_eq!(f.slowest_delivery_ms, Some(10_000));
        assert_eq!((f.readback_sent, f.readback_kept), (20, 18));
        assert_eq!((f.note_signed_at, f.edit_distance), (Some(65_000), Some(7)));
        assert_eq!((f.claim_ready, f.claim_missing.as_str()), (1, ""));
        assert_eq!((f.consent_telehealth.as_str(), f.consent_ai.as_str()), ("captured", "policy"));
    }

    #[test]
    fn a_dead_letter_or_a_replay_makes_a_visit_not_auto_logged_even_once_delivered() {
        let mut replayed = delivery("Condition", "done", Some(9_000));
        replayed.was_dead = 1;
        replayed.manual_touches = 1;
        let f = &derive("t", &sources("finished", vec![replayed]), 0)[0];
        assert_eq!((f.auto_logged, f.ever_dead, f.manual_touches), (0, 1, 1));
        assert_eq!(f.chart_closed_at, Some(9_000));

        let f = &derive("t", &sources("finished", vec![delivery("Condition", "dead", None)]), 0)[0];
        assert_eq!((f.auto_logged, f.dead, f.chart_closed_at), (0, 1, None));
        assert_eq!(f.claim_missing, "charted-in-ehr");
    }

    #[test]
    fn a_withheld_disclosure_does_not_hold_the_chart_open_and_denials_are_counted() {
        let mut s = sources(
            "finished",
            vec![delivery("Condition", "done", Some(9_000)), delivery("Condition", "withheld", None)],
        );
        s.decisions.push(decision("disclosure to Organization/x", "denied", "deny: Consent/c2"));
        let f = &derive("t", &s, 0)[0];
        assert_eq!((f.deliveries, f.auto_logged, f.consent_denials), (1, 1, 1));
        // The claim checklist counts what is not delivered, withheld included, as the API does.
        assert_eq!(f.claim_missing, "charted-in-ehr");
    }

    #[test]
    fn an_unfinished_visit_without_billing_lists_what_its_claim_misses() {
        let mut s = sources("in-progress", vec![]);
        s.visits[0].billing = None;
        s.noted.clear();
        s.decisions = vec![decision(FLOW_TELEHEALTH, "denied", "deny: Consent/c1")];
        let f = &derive("t", &s, 0)[0];
        assert_eq!(f.auto_logged, 0);
        assert!(f.claim_missing.starts_with("procedure-code,diagnosis,place-of-service"), "{}", f.claim_missing);
        assert!(f.claim_missing.contains("signed-note") && f.claim_missing.contains("visit-finished"));
        assert_eq!((f.consent_telehealth.as_str(), f.consent_ai.as_str()), ("denied", "none"));
    }
}
