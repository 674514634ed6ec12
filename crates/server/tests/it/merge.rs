//! A patient merged in the EHR is followed, not written to: before the visit's Encounter is
//! written (the merge is noticed up front) and in the middle of a visit (the EHR refuses a write
//! to the merged-away record; Telechart follows the merge and writes to the survivor).

use serde_json::{Value, json};
use telechart_sync::FaultPlan;

use crate::*;

async fn get(url: String) -> Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

async fn patient_of(env: &TestEnv, n: usize) -> String {
    let appointment = get(format!("{}/Appointment/{}", env.sandbox.fhir_base, env.appointment(n))).await;
    appointment["participant"][0]["actor"]["reference"].as_str().unwrap().to_owned()
}

async fn merge(env: &TestEnv, source: &str, target: &str) {
    let root = env.sandbox.root.as_str();
    let response = reqwest::Client::new()
        .post(format!("{root}/_sandbox/merge"))
        .json(&json!({"source": source, "target": target}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 204);
}

#[tokio::test]
async fn a_merged_patient_is_followed_not_written_to() {
    let env = TestEnv::start(Engine::Sqlite).await;
    // Three appointments of three different patients.
    let mut picks: Vec<(usize, String)> = Vec::new();
    for n in 0..env.sandbox.sandbox.appointment_ids().len() {
        let p = patient_of(&env, n).await;
        if !picks.iter().any(|(_, q)| *q == p) {
            picks.push((n, p));
        }
        if picks.len() == 3 {
            break;
        }
    }
    let [(first, a), (second, c), (_, survivor)] = [picks[0].clone(), picks[1].clone(), picks[2].clone()];
    let worker = env.worker("w", FaultPlan::default());

    // In the middle of a visit: the Encounter is in, then the EHR merges the patient.
    let (_, visit) =
        env.post("/visits", json!({"appointment": format!("Appointment/{}", env.appointment(first))})).await;
    let id = visit["id"].as_str().unwrap().to_owned();
    env.post(&format!("/visits/{id}/transitions"), json!({"to": "arrived"})).await;
    env.drain(&worker).await;
    merge(&env, &a, &survivor).await;
    let (status, _) = env
        .post(&format!("/visits/{id}/vitals"), json!({"vitals": [{"type": "heart-rate", "value": 71, "unit": "/min"}]}))
        .await;
    assert_eq!(status, 201);
    env.drain(&worker).await;
    let (_, view) = env.get(&format!("{}/visits/{id}", env.api)).await;
    assert_eq!(view["patient"], survivor.as_str(), "the visit follows the merge");
    let trace = env.store.deliveries_for_visit(TENANT, &id).await.unwrap();
    assert!(trace.iter().all(|d| d.status == "done"), "{trace:?}");
    let observation_id =
        trace.iter().find(|d| d.resource_type == "Observation").unwrap().ehr_resource_id.clone().unwrap();
    let observation = get(format!("{}/Observation/{observation_id}", env.sandbox.fhir_base)).await;
    assert_eq!(observation["subject"]["reference"], survivor.as_str());
    let audit = env.store.audit_for_visit(TENANT, &id).await.unwrap();
    assert!(audit.iter().any(|e| e.action == "visit.patient-merged"));

    // Before the visit's Encounter: the merge is noticed before anything is written.
    let (_, visit) =
        env.post("/visits", json!({"appointment": format!("Appointment/{}", env.appointment(second))})).await;
    let id = visit["id"].as_str().unwrap().to_owned();
    merge(&env, &c, &survivor).await;
    env.post(&format!("/visits/{id}/transitions"), json!({"to": "arrived"})).await;
    let outcomes = env.drain(&worker).await;
    assert_eq!(outcomes.len(), 1, "written at the first attempt: {outcomes:?}");
    let encounter_id = env.store.visit(TENANT, &id).await.unwrap().unwrap().ehr_encounter_id.unwrap();
    let encounter = get(format!("{}/Encounter/{encounter_id}", env.sandbox.fhir_base)).await;
    assert_eq!(encounter["subject"]["reference"], survivor.as_str());
    // Nothing Telechart wrote after the merges names a merged-away record.
    for dead in [&a, &c] {
        let found = get(format!("{}/Observation?subject={dead}", env.sandbox.fhir_base)).await;
        assert_eq!(found["total"], 0, "{dead}: {found}");
    }
    env.stop().await;
}
