//! The sync tests against a fifth, unnamed EHR: its quirks are drawn at random
//! (`Quirks::drawn(seed)`, the seed printed and in every assertion message; rerun one with
//! `TELECHART_FIFTH_SEED=N`), and Telechart is told of them only as a profile of flags, as an
//! integration engineer configures an EHR Telechart has no name for.

use serde_json::json;
use telechart_sandbox::{Personality, Quirks, REFUSABLE};
use telechart_sync::{DeliveryOutcome, FaultPlan, FaultPoint};

use crate::validator::assert_valid;
use crate::*;

/// The connection profile describing `q`: a JSON object of flags over the plain base.
fn profile_for(q: &Quirks) -> String {
    let fhir = !q.fhir_read_only;
    let takes = |rtype: &str| fhir && !q.refuses(rtype);
    json!({
        "base": "generic",
        "capabilities": {
            "encounter": if q.encounter_owned_by_ehr { "find-only" } else { "find-or-create" },
            "encounter_update": fhir && !q.encounter_owned_by_ehr && !q.status_on_appointment,
            "visit_status_on_appointment": fhir && q.status_on_appointment,
            "observation_create": fhir,
            "document_reference_create": fhir,
            "documents_plain_text_only": q.plain_text_documents_only,
            "condition_create": takes("Condition"),
            "service_request_create": takes("ServiceRequest"),
            "medication_request_create": fhir && !q.reported_medications_only,
            "care_plan_create": takes("CarePlan"),
            "consent_create": takes("Consent"),
        },
        "note_content_type": if q.plain_text_documents_only { "text/plain" } else { "text/plain; charset=utf-8" },
        "condition_verification": if q.provisional_conditions_only { "provisional" } else { "confirmed" },
        "paging": if q.context_paging { "repeating-context" } else { "next-links" },
        "document_api": q.practice_apis,
        "vitals_api": q.practice_apis,
    })
    .to_string()
}

/// Every kind of artifact a visit makes, through the API.
async fn whole_visit(env: &TestEnv, n: usize) -> String {
    let (status, visit) =
        env.post("/visits", json!({"appointment": format!("Appointment/{}", env.appointment(n))})).await;
    assert_eq!(status, 201, "{visit}");
    let id = visit["id"].as_str().unwrap().to_owned();
    let practitioner = visit["practitioner"].clone();
    let patient = visit["patient"].clone();
    let pdf = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        telechart_visit::pdf::text_pdf("Telehealth consent", "I consent to care by video."),
    );
    let png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";
    let steps = [
        ("transitions", json!({"to": "arrived"})),
        (
            "documents",
            json!({"kind": "consent-form", "title": "Telehealth consent", "contentType": "application/pdf", "data": pdf, "author": patient}),
        ),
        (
            "vitals",
            json!({"vitals": [
                {"type": "blood-pressure", "systolic": 128, "diastolic": 82, "unit": "mm[Hg]",
                 "device": {"type": "blood-pressure-cuff", "manufacturer": "Omron", "model": "BP7250"}},
                {"type": "heart-rate", "value": 72, "unit": "/min"}]}),
        ),
        ("consents", json!({"category": "telehealth", "decision": "permit"})),
        ("consents", json!({"category": "recording-ai", "decision": "permit"})),
        ("transitions", json!({"to": "in-progress"})),
        (
            "documents",
            json!({"kind": "chat-transcript", "title": "Chat", "contentType": "text/plain", "text": "Patient: hello"}),
        ),
        (
            "documents",
            json!({"kind": "attachment", "title": "Photo", "contentType": "image/png", "data": png, "author": patient}),
        ),
        ("diagnoses", json!({"recorder": practitioner, "diagnoses": [{"code": "I10"}]})),
        (
            "orders",
            json!({"requester": practitioner, "orders": [
                {"kind": "lab", "code": "4548-4", "display": "Hemoglobin A1c/Hemoglobin.total in Blood"},
                {"kind": "medication", "code": "860975", "display": "metformin 500 MG", "dosage": "1 tablet daily"}]}),
        ),
        (
            "care-plan",
            json!({"title": "Follow-up", "author": practitioner,
                   "activities": [{"description": "Check HbA1c", "scheduled": "before the next visit"}],
                   "afterVisitSummary": "Please get your HbA1c checked."}),
        ),
        (
            "notes",
            json!({"title": "Visit note", "text": "S: well. A: stable. P: follow up.", "author": practitioner,
                   "signedAt": "2026-11-26T09:00:00Z"}),
        ),
        ("transitions", json!({"to": "finished"})),
    ];
    for (path, body) in steps {
        let (status, reply) = env.post(&format!("/visits/{id}/{path}"), body).await;
        assert_eq!(status, 201, "{path}: {reply}");
    }
    id
}

#[tokio::test]
async fn an_unnamed_fifth_personality_drawn_at_random_is_charted_by_its_flags() {
    let first: u64 = match std::env::var("TELECHART_FIFTH_SEED") {
        Ok(seed) => seed.parse().expect("TELECHART_FIFTH_SEED is a number"),
        Err(_) => fastrand::u64(..),
    };
    let draws = if std::env::var("TELECHART_FIFTH_SEED").is_ok() { 1 } else { 4 };
    for seed in (0..draws).map(|i| first.wrapping_add(i)) {
        let quirks = Quirks::drawn(seed);
        let mllp = fastrand::Rng::with_seed(seed).bool();
        let profile = profile_for(&quirks);
        // Printed for every draw; cargo shows it when the test fails.
        println!("fifth personality: seed {seed} (TELECHART_FIFTH_SEED={seed}); HL7v2 listener {mllp}\n  {quirks:?}");
        let ctx = format!("seed {seed}: {quirks:?}, mllp {mllp}");
        let personality = Personality::Custom(quirks);
        let env = if mllp {
            TestEnv::start_vendor_with_mllp(Engine::Sqlite, personality, &profile).await
        } else {
            TestEnv::start_vendor(Engine::Sqlite, personality, &profile).await
        };
        let visits = [whole_visit(&env, 0).await, whole_visit(&env, 1).await];
        // Faults on top of the quirks: a worker killed after the EHR committed, a throttled
        // write, a busy one, and a write committed whose reply is lost.
        let faults = FaultPlan::default();
        faults.arm(FaultPoint::AfterEhrCommitted, 1);
        let crashed = env.worker("crasher", faults).run_once().await.unwrap();
        assert!(crashed.iter().any(|o| matches!(o, DeliveryOutcome::Crashed(_))), "{ctx}: {crashed:?}");
        env.clock.advance(LEASE + std::time::Duration::from_secs(1));
        for fault in [
            json!({"status": 429, "retryAfter": 3, "method": "POST"}),
            json!({"status": 503, "method": "POST"}),
            json!({"status": 500, "method": "POST", "resourceType": "Observation", "afterCommit": true}),
        ] {
            env.sandbox.sandbox.inject(serde_json::from_value(fault).unwrap());
        }
        env.drain(&env.worker("w", FaultPlan::default())).await;

        let mut written = Vec::new();
        for visit in &visits {
            let deliveries = env.store.deliveries_for_visit(TENANT, visit).await.unwrap();
            assert_eq!(deliveries.len(), 18, "{ctx}");
            for d in &deliveries {
                let plan = d.plan.as_deref().unwrap_or_default();
                let what = format!("{ctx}: {} {plan}: {:?}", d.resource_type, d.last_error);
                // Done by the path planned, or named as having none here: never a refusal.
                match d.status.as_str() {
                    "done" => assert!(!plan.starts_with("not deliverable"), "{what}"),
                    "dead" => assert!(plan.starts_with("not deliverable: "), "{what}"),
                    other => panic!("{what}: left {other}"),
                }
                let fhir = plan == "written" || plan.starts_with("transformed");
                if d.status == "done" && fhir && d.resource_type != "Encounter" {
                    // Written once, whatever the faults; and read back.
                    let token = format!("{SYSTEM}|{}", d.identifier);
                    assert_eq!(env.sandbox.sandbox.count_with_identifier(&d.resource_type, &token), 1, "{what}");
                    assert!(d.readback.is_some(), "{what}: not read back");
                    let id = d.ehr_resource_id.clone().unwrap();
                    let (status, resource) =
                        env.get(&format!("{}/{}/{id}", env.sandbox.fhir_base, d.resource_type)).await;
                    assert_eq!(status, 200, "{what}");
                    written.push(resource);
                }
            }
            // What the flags promise, the plan keeps.
            let plan_of = |rtype: &str| {
                deliveries.iter().find(|d| d.resource_type == rtype).and_then(|d| d.plan.clone()).unwrap_or_default()
            };
            let vitals = plan_of("Observation");
            match (quirks.fhir_read_only, quirks.practice_apis, mllp) {
                (false, _, _) => assert_eq!(vitals, "written", "{ctx}"),
                (true, true, _) => assert_eq!(vitals, "fallback: vitals API", "{ctx}"),
                (true, false, true) => assert_eq!(vitals, "fallback: HL7v2 ORU^R01 over MLLP", "{ctx}"),
                (true, false, false) => assert!(vitals.starts_with("not deliverable"), "{ctx}"),
            }
            let row = env.store.visit(TENANT, visit).await.unwrap().unwrap();
            let encounter = row.ehr_encounter_id.unwrap_or_else(|| panic!("{ctx}: no Encounter"));
            let (status, resource) = env.get(&format!("{}/Encounter/{encounter}", env.sandbox.fhir_base)).await;
            assert_eq!(status, 200, "{ctx}");
            if !quirks.fhir_read_only && !quirks.encounter_owned_by_ehr && !quirks.status_on_appointment {
                assert_eq!(resource["status"], "finished", "{ctx}");
            }
            if quirks.status_on_appointment && !quirks.fhir_read_only {
                let (_, appointment) =
                    env.get(&format!("{}/Appointment/{}", env.sandbox.fhir_base, row.appointment_id)).await;
                assert_eq!(appointment["status"], "fulfilled", "{ctx}");
            }
            for refused in REFUSABLE.iter().filter(|t| quirks.refuses(t) || quirks.fhir_read_only) {
                assert!(
                    deliveries.iter().filter(|d| d.resource_type == *refused).all(|d| d
                        .plan
                        .as_deref()
                        .unwrap_or_default()
                        .starts_with("not deliverable")),
                    "{ctx}: {refused}"
                );
            }
        }
        if !written.is_empty() {
            assert_valid(&written);
        }
        env.stop().await;
    }
}

#[test]
fn the_same_seed_draws_the_same_ehr_and_draws_differ() {
    assert_eq!(Quirks::drawn(7), Quirks::drawn(7));
    let distinct: std::collections::BTreeSet<String> = (0..32).map(|s| format!("{:?}", Quirks::drawn(s))).collect();
    assert!(distinct.len() > 24, "{}", distinct.len());
    assert!((0..64).any(|s| Quirks::drawn(s).fhir_read_only) && (0..64).any(|s| !Quirks::drawn(s).fhir_read_only));
}
