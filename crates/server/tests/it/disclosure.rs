//! Disclosure to a second organisation's EHR, end to end over the API with two sandbox EHRs: no
//! disclosure consent, no disclosure (403, audited, in the trace); with it, the visit's record
//! reaches the recipient for the patient as that EHR knows them; a withdrawal mid-visit withholds
//! everything after it from the recipient while the visit's own chart writes still reach its EHR.

use std::net::SocketAddr;

use serde_json::{Value, json};
use telechart_sandbox::{Sandbox, SandboxConfig};
use telechart_store::ConnectionRow;
use telechart_sync::FaultPlan;

use crate::*;

fn note(text: &str, author: &Value) -> Value {
    json!({"title": "Visit note", "text": text, "author": author, "signedAt": "2026-11-26T09:00:00Z"})
}

#[tokio::test]
async fn disclosure_follows_the_patients_consent_and_stops_at_withdrawal() {
    for engine in engines() {
        let env = TestEnv::start(engine).await;
        // The other organisation: its own EHR, its own id for the patient.
        let mut config = SandboxConfig::new(env.clock.now().date_naive());
        config.seed_dir = Some(synthea_dir());
        let partner = Sandbox::new(&config).unwrap().spawn(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
        env.store
            .upsert_connection(&ConnectionRow {
                tenant_id: TENANT.into(),
                id: "valley-primary-care".into(),
                name: "Valley Primary Care".into(),
                profile: "generic".into(),
                base_url: partner.fhir_base.clone(),
                settings: "{}".into(),
                created_at: 0,
                updated_at: 0,
            })
            .await
            .unwrap();
        let patients: Value =
            reqwest::get(format!("{}/Patient?_count=50", partner.fhir_base)).await.unwrap().json().await.unwrap();
        let there = format!("Patient/{}", patients["entry"].as_array().unwrap().last().unwrap()["resource"]["id"]);
        let there = there.replace('"', "");

        let (status, visit) =
            env.post("/visits", json!({"appointment": env.appointment(0), "connection": "sandbox"})).await;
        assert_eq!(status, 201, "{visit}");
        let id = visit["id"].as_str().unwrap().to_owned();
        assert_ne!(visit["patient"].as_str().unwrap(), there, "the recipient knows the patient by another id");
        env.post(&format!("/visits/{id}/transitions"), json!({"to": "arrived"})).await;
        env.consent_to_telehealth(&id).await;
        env.post(&format!("/visits/{id}/transitions"), json!({"to": "in-progress"})).await;
        let (status, _) = env
            .post(
                &format!("/visits/{id}/vitals"),
                json!({"vitals": [{"type": "heart-rate", "value": 70, "unit": "/min"}]}),
            )
            .await;
        assert_eq!(status, 201);
        let disclose = format!("/visits/{id}/disclosures");
        let request = json!({"connection": "valley-primary-care", "patient": there});

        // Bad input is named, and nothing is recorded.
        for (body, field) in [
            (json!({"connection": "sandbox", "patient": there}), "connection"),
            (json!({"connection": "no-such", "patient": there}), "connection"),
            (json!({"connection": "valley-primary-care", "patient": "Practitioner/1"}), "patient"),
        ] {
            let (status, outcome) = env.post(&disclose, body).await;
            assert_eq!(status, 422, "{outcome}");
            assert_eq!(outcome["issue"][0]["expression"][0], field, "{outcome}");
        }

        // No disclosure consent on record: refused, and the refusal says why.
        let (status, outcome) = env.post(&disclose, request.clone()).await;
        assert_eq!(status, 403, "{outcome}");
        let why = outcome["issue"][0]["diagnostics"].as_str().unwrap();
        assert!(
            why.contains("disclosure to connection valley-primary-care") && why.contains("Telechart policy"),
            "{why}"
        );
        assert!(env.store.disclosures(TENANT, &id).await.unwrap().is_empty());

        // The patient permits disclosure: the vitals so far and the note to come go there too.
        let (status, consent) =
            env.post(&format!("/visits/{id}/consents"), json!({"category": "disclosure", "decision": "permit"})).await;
        assert_eq!(status, 201, "{consent}");
        let consent_id = consent["id"].as_str().unwrap().to_owned();
        let (status, made) = env.post(&disclose, request.clone()).await;
        assert_eq!(status, 201, "{made}");
        assert_eq!((made["artifacts"].as_u64(), made["patient"].as_str()), (Some(1), Some(there.as_str())));
        let (status, again) = env.post(&disclose, request.clone()).await;
        assert_eq!(status, 409, "one disclosure per recipient: {again}");
        let (status, first) =
            env.post(&format!("/visits/{id}/notes"), note("S: cough for 3 days.", &visit["practitioner"])).await;
        assert_eq!(status, 201, "{first}");
        let first_note = first["artifacts"][0]["id"].as_str().unwrap().to_owned();
        env.drain(&env.worker("w", FaultPlan::default())).await;

        let token = |artifact: &str| format!("{SYSTEM}|{artifact}");
        assert_eq!(partner.sandbox.count_with_identifier("DocumentReference", &token(&first_note)), 1);
        assert_eq!(env.sandbox.sandbox.count_with_identifier("DocumentReference", &token(&first_note)), 1);
        let url = format!("{}/DocumentReference?identifier={}", partner.fhir_base, token(&first_note));
        let found: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
        let document = &found["entry"][0]["resource"];
        assert_eq!(document["subject"]["reference"], there.as_str(), "the recipient's id for the patient");
        assert!(document.get("context").is_none(), "no Encounter of this visit exists there: {document}");
        let author = &document["author"][0];
        assert_eq!(
            (author["type"].as_str(), author["identifier"]["value"].as_str(), author.get("reference")),
            (Some("Practitioner"), visit["practitioner"].as_str().and_then(|p| p.strip_prefix("Practitioner/")), None),
            "the author by identifier, not a reference that EHR cannot resolve: {author}"
        );

        // Withdrawn mid-visit: what follows is withheld from the recipient, not from the chart.
        let (status, _) = env.post(&format!("/visits/{id}/consents/{consent_id}/withdraw"), json!({})).await;
        assert_eq!(status, 201);
        let (_, second) =
            env.post(&format!("/visits/{id}/notes"), note("A: viral URI. P: fluids.", &visit["practitioner"])).await;
        let second_note = second["artifacts"][0]["id"].as_str().unwrap().to_owned();
        let (_, diagnosis) = env
            .post(
                &format!("/visits/{id}/diagnoses"),
                json!({"recorder": visit["practitioner"], "diagnoses": [{"code": "J06.9"}]}),
            )
            .await;
        env.post(&format!("/visits/{id}/transitions"), json!({"to": "finished"})).await;
        env.drain(&env.worker("w", FaultPlan::default())).await;
        assert_eq!(partner.sandbox.count_with_identifier("DocumentReference", &token(&second_note)), 0);
        assert_eq!(env.sandbox.sandbox.count_with_identifier("DocumentReference", &token(&second_note)), 1);

        let (_, trace) = env.get(&format!("{}/visits/{id}/trace", env.api)).await;
        let at_partner: Vec<(String, String)> = trace
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["connection"] == "valley-primary-care")
            .map(|t| (t["resourceType"].as_str().unwrap().to_owned(), t["status"].as_str().unwrap().to_owned()))
            .collect();
        let expected: Vec<(String, String)> = [
            ("Observation", "done"),
            ("DocumentReference", "done"),
            ("DocumentReference", "withheld"),
            ("Condition", "withheld"),
            ("Consent", "refused-by-consent"),
        ]
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect();
        assert_eq!(at_partner, expected, "{diagnosis} {trace}");
        let withheld = trace.as_array().unwrap().iter().find(|t| t["status"] == "withheld").unwrap();
        assert!(withheld["lastError"].as_str().unwrap().contains("Telechart policy"), "{withheld}");
        let own: Vec<&Value> = trace.as_array().unwrap().iter().filter(|t| t["connection"] == "sandbox").collect();
        assert!(own.iter().all(|t| t["status"] == "done"), "the visit's own chart writes all landed: {own:?}");
        let queue: Value = reqwest::Client::new()
            .get(format!("{}/queue", env.api))
            .bearer_auth(&env.monitor_token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(queue["withheld"], 2, "{queue}");

        // Audited: the refusal, the permit, each disclosed write with its consent, each withheld one.
        let audit = env.store.audit_for_visit(TENANT, &id).await.unwrap();
        let decisions: Vec<&str> = audit
            .iter()
            .filter(|a| a.action == "consent.decision" && a.detail.starts_with("disclosure"))
            .map(|a| a.outcome.as_str())
            .collect();
        assert_eq!(decisions, ["denied", "success"]);
        let withheld: Vec<&telechart_store::AuditRow> =
            audit.iter().filter(|a| a.action == "delivery.withheld").collect();
        assert_eq!(withheld.len(), 2);
        assert!(withheld.iter().all(|a| a.outcome == "denied"));
        let disclosed_writes = audit
            .iter()
            .filter(|a| a.action == "delivery.written" && a.consent.as_deref().is_some_and(|c| c.starts_with("permit")))
            .count();
        assert_eq!(disclosed_writes, 2, "each disclosed write carries its consent decision");
        // What the recipient holds is valid R4 on its own (vital-signs profile included).
        let mut received = Vec::new();
        let sent = trace
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["connection"] == "valley-primary-care" && t["status"] == "done");
        for t in sent {
            let (resource_type, identifier) = (t["resourceType"].as_str().unwrap(), t["identifier"].as_str().unwrap());
            let url = format!("{}/{resource_type}?identifier={}", partner.fhir_base, token(identifier));
            let bundle: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
            for entry in bundle["entry"].as_array().into_iter().flatten() {
                received.push(entry["resource"].clone());
            }
        }
        assert_eq!(received.len(), 2, "the vital and the first note: {received:?}");
        crate::validator::assert_valid(&received);
        let (_, listed) = env.get(&format!("{}/visits/{id}/disclosures", env.api)).await;
        assert_eq!(listed[0]["artifacts"], 4, "{listed}");
        partner.shutdown().await;
        env.stop().await;
    }
}
