//! Orders tracked to completion: a lab order and a prescription are written; the sandbox's lab
//! completes the order with a result; the tracker reads both back and the visit shows the lab
//! order completed with its result, the prescription still active.

use serde_json::{Value, json};
use telechart_sync::{FaultPlan, OrderTracker};

use crate::*;

#[tokio::test]
async fn a_lab_order_completed_in_the_ehr_shows_completed_with_its_result() {
    for engine in engines() {
        let env = TestEnv::start(engine).await;
        let (_, visit) =
            env.post("/visits", json!({"appointment": format!("Appointment/{}", env.appointment(0))})).await;
        let id = visit["id"].as_str().unwrap().to_owned();
        env.consent_to_telehealth(&id).await;
        for to in ["arrived", "in-progress"] {
            env.post(&format!("/visits/{id}/transitions"), json!({"to": to})).await;
        }
        let (status, reply) = env
            .post(
                &format!("/visits/{id}/orders"),
                json!({"requester": visit["practitioner"], "orders": [
                    {"kind": "lab", "code": "4548-4", "display": "Hemoglobin A1c/Hemoglobin.total in Blood"},
                    {"kind": "medication", "code": "860975", "display": "metformin hydrochloride 500 MG Extended Release Oral Tablet",
                     "dosage": "1 tablet by mouth daily with the evening meal"}]}),
            )
            .await;
        assert_eq!(status, 201, "{reply}");
        env.drain(&env.worker("w", FaultPlan::default())).await;
        let tracker = OrderTracker::new(env.store.clone(), env.clock.clone(), env.connections().clone(), TENANT);
        assert_eq!(tracker.run_once().await.unwrap(), 2);
        let (_, orders) = env.get(&format!("{}/visits/{id}/orders", env.api)).await;
        let statuses: Vec<&str> = orders.as_array().unwrap().iter().map(|o| o["status"].as_str().unwrap()).collect();
        assert_eq!(statuses, ["active", "active"], "{orders}");

        let lab = orders[0]["ehrResource"].as_str().unwrap().trim_start_matches("ServiceRequest/").to_owned();
        let root = env.sandbox.root.clone();
        let fulfilled = reqwest::Client::new()
            .post(format!("{root}/_sandbox/fulfil/ServiceRequest/{lab}"))
            .body(r#"{"value": 6.1, "unit": "%", "conclusion": "HbA1c 6.1 %: prediabetic range"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(fulfilled.status().as_u16(), 200);
        assert_eq!(tracker.run_once().await.unwrap(), 2);
        let (_, orders) = env.get(&format!("{}/visits/{id}/orders", env.api)).await;
        let lab_view = &orders[0];
        assert_eq!(lab_view["status"], "completed", "{orders}");
        assert!(lab_view["completedAt"].is_string());
        let results = lab_view["results"].as_array().unwrap();
        assert_eq!(results.len(), 2, "a DiagnosticReport and its Observation: {results:?}");
        assert!(results.iter().any(|r| r["value"] == "6.1 %" && r["status"] == "final"), "{results:?}");
        assert!(results.iter().any(|r| r["value"] == "HbA1c 6.1 %: prediabetic range"), "{results:?}");
        assert_eq!(orders[1]["status"], "active");
        assert_eq!(orders[1]["resourceType"], "MedicationRequest");
        // A completed order is read no more; the prescription still is.
        assert_eq!(tracker.run_once().await.unwrap(), 1);
        let written: Value = reqwest::get(format!("{}/ServiceRequest/{lab}", env.sandbox.fhir_base))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(written["status"], "completed");
        env.stop().await;
    }
}
