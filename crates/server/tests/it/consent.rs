//! Consent before data moves, end to end over the API: no telehealth consent, no call; a
//! declined or withdrawn recording consent keeps transcripts out (nothing stored, nothing sent)
//! while the visit's own chart writes still reach the EHR; every decision audited, every
//! refusal in the trace with the engine's explanation.

use serde_json::{Value, json};
use telechart_sync::FaultPlan;

use crate::*;

fn transcript(text: &str) -> Value {
    json!({"kind": "chat-transcript", "title": "Chat", "contentType": "text/plain", "text": text})
}

#[tokio::test]
async fn consent_governs_the_call_and_the_recording_but_not_the_chart() {
    for engine in engines() {
        let env = TestEnv::start(engine).await;
        let (_, visit) = env.post("/visits", json!({"appointment": env.appointment(0)})).await;
        let id = visit["id"].as_str().unwrap().to_owned();
        env.post(&format!("/visits/{id}/transitions"), json!({"to": "arrived"})).await;

        // No consent on record: the call cannot start, and the refusal says why.
        let (status, outcome) = env.post(&format!("/visits/{id}/transitions"), json!({"to": "in-progress"})).await;
        assert_eq!(status, 403, "{outcome}");
        assert_eq!(outcome["resourceType"], "OperationOutcome");
        assert_eq!(outcome["issue"][0]["code"], "forbidden");
        let why = outcome["issue"][0]["diagnostics"].as_str().unwrap();
        assert!(why.contains("start telehealth visit") && why.contains("Telechart policy"), "{why}");
        assert_eq!(env.get(&format!("{}/visits/{id}", env.api)).await.1["state"], "arrived");

        // The patient declines: still refused, now by that Consent.
        let (status, declined) =
            env.post(&format!("/visits/{id}/consents"), json!({"category": "telehealth", "decision": "deny"})).await;
        assert_eq!(status, 201, "{declined}");
        let declined_id = declined["id"].as_str().unwrap().to_owned();
        assert_eq!(declined["resource"]["policyRule"]["coding"][0]["code"], "OPTOUT");
        let (status, outcome) = env.post(&format!("/visits/{id}/transitions"), json!({"to": "in-progress"})).await;
        assert_eq!(status, 403, "{outcome}");
        // …then changes their mind: the refusal is withdrawn (inactive), a permit recorded.
        let withdraw = format!("/visits/{id}/consents/{declined_id}/withdraw");
        let (status, withdrawn) = env.post(&withdraw, json!({})).await;
        assert_eq!(
            (status, withdrawn["status"].as_str(), withdrawn["version"].as_i64()),
            (201, Some("inactive"), Some(2))
        );
        let (status, again) = env.post(&withdraw, json!({})).await;
        assert_eq!(status, 409, "only an active consent is withdrawn: {again}");
        env.consent_to_telehealth(&id).await;
        let (status, moved) = env.post(&format!("/visits/{id}/transitions"), json!({"to": "in-progress"})).await;
        assert_eq!(status, 201, "{moved}");

        // Recording: permitted, a transcript is kept; withdrawn mid-visit, the next is refused.
        let (status, recording) = env
            .post(&format!("/visits/{id}/consents"), json!({"category": "recording-ai", "decision": "permit"}))
            .await;
        assert_eq!(status, 201, "{recording}");
        let (status, kept) = env.post(&format!("/visits/{id}/documents"), transcript("Patient: first part")).await;
        assert_eq!(status, 201, "{kept}");
        let recording_id = recording["id"].as_str().unwrap();
        let (status, _) = env.post(&format!("/visits/{id}/consents/{recording_id}/withdraw"), json!({})).await;
        assert_eq!(status, 201);
        let (status, outcome) = env.post(&format!("/visits/{id}/documents"), transcript("Patient: second part")).await;
        assert_eq!(status, 403, "{outcome}");
        assert!(outcome["issue"][0]["diagnostics"].as_str().unwrap().contains("recording / AI drafting"));
        // The visit's own chart writes are treatment, not governed by these consents.
        let (status, vitals) = env
            .post(
                &format!("/visits/{id}/vitals"),
                json!({"vitals": [{"type": "heart-rate", "value": 70, "unit": "/min"}]}),
            )
            .await;
        assert_eq!(status, 201, "{vitals}");
        env.drain(&env.worker("w", FaultPlan::default())).await;

        let (_, trace) = env.get(&format!("{}/visits/{id}/trace", env.api)).await;
        let trace = trace.as_array().unwrap();
        let refused: Vec<&Value> = trace.iter().filter(|t| t["status"] == "refused-by-consent").collect();
        let refused_flows: Vec<&str> = refused.iter().map(|t| t["artifact"].as_str().unwrap()).collect();
        assert_eq!(
            refused_flows,
            ["start telehealth visit", "start telehealth visit", "recording / AI drafting"],
            "{trace:?}"
        );
        assert!(
            refused[1]["lastError"].as_str().unwrap().contains(&format!("Consent/{declined_id}")),
            "{:?}",
            refused[1]
        );
        let delivered: Vec<&str> =
            trace.iter().filter(|t| t["status"] == "done").map(|t| t["resourceType"].as_str().unwrap()).collect();
        assert!(delivered.contains(&"Observation"), "the vitals reached the EHR: {trace:?}");
        assert_eq!(
            delivered.iter().filter(|r| **r == "DocumentReference").count(),
            1,
            "one transcript only: the refused one was neither kept nor sent: {trace:?}"
        );
        let documents = env.store.artifacts(TENANT, &id).await.unwrap();
        assert_eq!(documents.iter().filter(|a| a.payload.expose().contains("second part")).count(), 0);

        // Every decision is audited: three refusals, two permits.
        let audit = env.store.audit_for_visit(TENANT, &id).await.unwrap();
        let decisions: Vec<&str> =
            audit.iter().filter(|a| a.action == "consent.decision").map(|a| a.outcome.as_str()).collect();
        assert_eq!(decisions, ["denied", "denied", "success", "success", "denied"]);
        assert!(audit.iter().all(|a| a.patient.is_none()), "no patient reference in clear in the audit log");

        // The visit's consents with their versions.
        let (_, listed) = env.get(&format!("{}/visits/{id}/consents", env.api)).await;
        let versions: Vec<(String, i64, String)> = listed
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["category"].as_str().unwrap().into(),
                    c["version"].as_i64().unwrap(),
                    c["status"].as_str().unwrap().into(),
                )
            })
            .collect();
        assert_eq!(versions.len(), 5, "{versions:?}");
        assert_eq!(versions.iter().filter(|v| v.2 == "inactive").count(), 2, "{versions:?}");
        env.stop().await;
    }
}

#[tokio::test]
async fn bad_consent_input_is_refused_with_the_field_named() {
    let env = TestEnv::start(Engine::Sqlite).await;
    let (_, visit) = env.post("/visits", json!({"appointment": env.appointment(0)})).await;
    let id = visit["id"].as_str().unwrap().to_owned();
    for (body, field) in [
        (json!({"category": "marketing", "decision": "permit"}), "category"),
        (json!({"category": "telehealth", "decision": "maybe"}), "decision"),
        (json!({"category": "telehealth", "decision": "permit", "decidedAt": "2099-01-01T00:00:00Z"}), "decidedAt"),
        (json!({"category": "telehealth", "decision": "permit", "formArtifact": "nope"}), "formArtifact"),
    ] {
        let (status, outcome) = env.post(&format!("/visits/{id}/consents"), body.clone()).await;
        assert_eq!(status, 422, "{body}: {outcome}");
        assert_eq!(outcome["issue"][0]["expression"][0], field, "{outcome}");
    }
    let (status, _) = env.post(&format!("/visits/{id}/consents/no-such/withdraw"), json!({})).await;
    assert_eq!(status, 404);
    assert!(env.store.current_consents(TENANT).await.unwrap().is_empty(), "nothing half-written");
    env.stop().await;
}

/// A consent recorded over the API reaches the visit's EHR as a Consent (one, found by the
/// consent's identifier); its withdrawal makes that same Consent `inactive` there (an update, not
/// a second resource), and what the EHR holds is valid R4.
#[tokio::test]
async fn a_recorded_consent_and_its_withdrawal_reach_the_ehr() {
    for engine in engines() {
        let env = TestEnv::start(engine).await;
        let (_, visit) = env.post("/visits", json!({"appointment": env.appointment(0)})).await;
        let id = visit["id"].as_str().unwrap().to_owned();
        let (status, recording) = env
            .post(&format!("/visits/{id}/consents"), json!({"category": "recording-ai", "decision": "permit"}))
            .await;
        assert_eq!(status, 201, "{recording}");
        let consent_id = recording["id"].as_str().unwrap().to_owned();
        let outcomes = env.drain(&env.worker("w", FaultPlan::default())).await;
        assert!(!outcomes.is_empty());

        let token = format!("{SYSTEM}|{consent_id}");
        let url = format!("{}/Consent?identifier={token}", env.sandbox.fhir_base);
        let held = |bundle: &Value| -> Vec<Value> {
            bundle["entry"].as_array().into_iter().flatten().map(|e| e["resource"].clone()).collect()
        };
        let bundle: Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
        let before = held(&bundle);
        assert_eq!(before.len(), 1, "one Consent in the EHR: {bundle}");
        assert_eq!(before[0]["status"], "active");
        assert_eq!(before[0]["policyRule"]["coding"][0]["code"], "OPTIN", "{}", before[0]);
        let ehr_id = before[0]["id"].as_str().unwrap().to_owned();

        let (status, _) = env.post(&format!("/visits/{id}/consents/{consent_id}/withdraw"), json!({})).await;
        assert_eq!(status, 201);
        env.drain(&env.worker("w", FaultPlan::default())).await;
        let bundle: Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
        let after = held(&bundle);
        assert_eq!(after.len(), 1, "still one Consent: the withdrawal updated it: {bundle}");
        assert_eq!((after[0]["id"].as_str(), after[0]["status"].as_str()), (Some(ehr_id.as_str()), Some("inactive")));
        assert_eq!(env.sandbox.sandbox.count_with_identifier("Consent", &token), 1);

        let (_, trace) = env.get(&format!("{}/visits/{id}/trace", env.api)).await;
        let consents: Vec<&str> = trace
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["resourceType"] == "Consent")
            .map(|t| t["status"].as_str().unwrap())
            .collect();
        assert_eq!(consents, ["done", "done"], "the consent and its withdrawal, each delivered: {trace}");
        crate::validator::assert_valid(&[before[0].clone(), after[0].clone()]);
        env.stop().await;
    }
}
