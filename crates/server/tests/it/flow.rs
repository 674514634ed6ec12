use serde_json::Value;
use telechart_sync::{DeliveryOutcome, FaultPlan};

use crate::validator::assert_valid;
use crate::*;

/// Reads back every resource a visit's deliveries wrote, at its current version.
pub async fn written_resources(env: &TestEnv, visit: &str) -> Vec<Value> {
    let (_, trace) = env.get(&format!("{}/visits/{visit}/trace", env.api)).await;
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for t in trace.as_array().unwrap() {
        let reference = t["ehrResource"].as_str().unwrap().to_owned();
        if seen.insert(reference.clone()) {
            let (status, resource) = env.get(&format!("{}/{reference}", env.sandbox.fhir_base)).await;
            assert_eq!(status, 200);
            out.push(resource);
        }
    }
    out
}

#[tokio::test]
async fn visits_are_charted_exactly_once_on_each_engine() {
    for engine in engines() {
        let env = TestEnv::start(engine).await;
        // Slot 0 has no Encounter in the EHR (we create it); slot 1 has a planned one (we adopt it).
        let created = env.full_visit(0).await;
        let adopted = env.full_visit(1).await;
        let worker = env.worker("w1", FaultPlan::default());
        let outcomes = env.drain(&worker).await;
        // 12 per visit: 11 chart writes and the patient's telehealth Consent.
        assert_eq!(outcomes.len(), 26, "{engine:?}: {outcomes:?}");
        assert!(outcomes.iter().all(|o| matches!(o, DeliveryOutcome::Done { .. })), "{outcomes:?}");

        for visit in [&created, &adopted] {
            let (_, trace) = env.get(&format!("{}/visits/{visit}/trace", env.api)).await;
            let trace = trace.as_array().unwrap();
            assert_eq!(trace.len(), 13);
            let kinds: Vec<&str> = trace.iter().map(|t| t["resourceType"].as_str().unwrap()).collect();
            assert_eq!(kinds[0], "Encounter");
            assert_eq!(kinds.iter().filter(|k| **k == "Observation").count(), 8);
            assert_eq!(kinds[9], "Consent", "the telehealth consent, before the call");
            assert_eq!(kinds[11], "DocumentReference");
            for t in trace {
                assert_eq!(t["status"], "done", "{t}");
                let token = format!("{SYSTEM}|{}", t["identifier"].as_str().unwrap());
                let rtype = t["resourceType"].as_str().unwrap();
                assert_eq!(env.sandbox.sandbox.count_with_identifier(rtype, &token), 1, "{rtype} {token}");
            }
            let resources = written_resources(&env, visit).await;
            let encounter = resources.iter().find(|r| r["resourceType"] == "Encounter").unwrap();
            assert_eq!(encounter["status"], "finished");
            assert_eq!(encounter["class"]["code"], "VR");
            let history: Vec<&str> =
                encounter["statusHistory"].as_array().unwrap().iter().map(|h| h["status"].as_str().unwrap()).collect();
            if visit == &created {
                assert_eq!(history, ["arrived", "in-progress"]);
                assert_eq!(encounter["meta"]["versionId"], "3");
            } else {
                assert_eq!(history, ["planned", "arrived", "in-progress"]);
                assert_eq!(encounter["meta"]["versionId"], "4");
                assert!(encounter["id"].as_str().unwrap().starts_with("enc-tele-"), "adopted the EHR's own Encounter");
            }
            for obs in resources.iter().filter(|r| r["resourceType"] == "Observation") {
                assert_eq!(obs["encounter"]["reference"], format!("Encounter/{}", encounter["id"].as_str().unwrap()));
            }
            assert_valid(&resources);
        }
        // Decimal precision survives the whole path: 36.80 went in, 36.80 is in the chart.
        let resources = written_resources(&env, &created).await;
        let temp = resources.iter().find(|r| r["code"]["coding"][0]["code"] == "8310-5").unwrap();
        assert_eq!(temp["valueQuantity"]["value"].to_string(), "36.80");

        let (status, visit) = env.get(&format!("{}/visits/{created}", env.api)).await;
        assert_eq!(status, 200);
        if engine == Engine::Postgres {
            // Through the API and into PostgreSQL: a dump holds neither patient's id.
            let dump = std::process::Command::new("pg_dump").arg("--data-only").arg(&env.db_url).output().unwrap();
            assert!(dump.status.success(), "{}", String::from_utf8_lossy(&dump.stderr));
            let text = String::from_utf8_lossy(&dump.stdout);
            for id in [&created, &adopted] {
                let (_, v) = env.get(&format!("{}/visits/{id}", env.api)).await;
                let patient = v["patient"].as_str().unwrap().trim_start_matches("Patient/").to_owned();
                assert_eq!(text.matches(&patient).count(), 0, "patient {patient} in the dump");
            }
        }
        assert_eq!(
            (visit["state"].as_str(), visit["appointmentStatus"].as_str()),
            (Some("finished"), Some("fulfilled"))
        );
        let audit = env.store.audit_for_visit(TENANT, &created).await.unwrap();
        let actions: Vec<&str> = audit.iter().map(|a| a.action.as_str()).collect();
        assert_eq!(actions.iter().filter(|a| **a == "delivery.written").count(), 13, "{actions:?}");

        let metrics = reqwest::Client::new()
            .get(format!("{}/metrics", env.server.base_url))
            .bearer_auth(&env.monitor_token)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(metrics.contains("telechart_deliveries{status=\"done\",tenant=\"default\"} 26"), "{metrics}");
        assert!(metrics.contains("telechart_delivery_attempt_seconds"), "{metrics}");
        env.stop().await;
    }
}

#[tokio::test]
async fn an_unknown_outcome_is_reconciled_and_retry_after_is_honoured() {
    let env = TestEnv::start(Engine::Sqlite).await;
    let visit = env.full_visit(0).await;
    // The EHR keeps the first Observation but the reply is a 500: outcome unknown.
    env.sandbox.sandbox.inject(
        serde_json::from_value(serde_json::json!(
        {"status": 500, "resourceType": "Observation", "method": "POST", "afterCommit": true}))
        .unwrap(),
    );
    // The note is throttled for 7 s.
    env.sandbox.sandbox.inject(
        serde_json::from_value(serde_json::json!(
        {"status": 429, "retryAfter": 7, "resourceType": "DocumentReference", "method": "POST"}))
        .unwrap(),
    );
    let worker = env.worker("w1", FaultPlan::default());
    let mut throttled_at = None;
    for _ in 0..100 {
        let outcomes = worker.run_once().await.unwrap();
        if outcomes.iter().any(|o| matches!(o, DeliveryOutcome::Retry { error } if error.contains("429"))) {
            throttled_at = Some(env.clock.now_ms());
            break;
        }
        if outcomes.is_empty() {
            let next = env.store.next_due_at(TENANT).await.unwrap().unwrap();
            env.clock.advance(std::time::Duration::from_millis((next - env.clock.now_ms()).max(1) as u64));
        }
    }
    let throttled_at = throttled_at.expect("the note was throttled");
    let deliveries = env.store.deliveries_for_visit(TENANT, &visit).await.unwrap();
    let note = deliveries.iter().find(|d| d.resource_type == "DocumentReference").unwrap();
    assert!(note.next_attempt_at >= throttled_at + 7_000, "Retry-After: 7 must be honoured");
    env.drain(&worker).await;
    let deliveries = env.store.deliveries_for_visit(TENANT, &visit).await.unwrap();
    assert!(deliveries.iter().all(|d| d.status == "done"));
    let first_obs = deliveries.iter().find(|d| d.resource_type == "Observation").unwrap();
    assert_eq!(first_obs.attempts, 2);
    for d in &deliveries {
        let token = format!("{SYSTEM}|{}", d.identifier);
        assert_eq!(env.sandbox.sandbox.count_with_identifier(&d.resource_type, &token), 1, "{}", d.resource_type);
    }
    env.stop().await;
}
