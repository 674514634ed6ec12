//! Audit alert rules end to end: repeated consent refusals and break-glass through the API, a
//! person reading many patients and a patient they have no visit with (records as a session
//! writes them), each fired once from the chained log, listed for compliance officers only, sent
//! to a file and to a signed webhook; a restarted runner fires nothing twice.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use telechart_store::AuditEntry;
use telechart_sync::alerts::{AlertRules, AlertRunner, AlertSink};

use crate::*;

const SECRET: &[u8] = b"alert-0123456789abcdef0123456789abcdef";

async fn call(env: &TestEnv, token: &str, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .request(method, format!("{}{path}", env.api))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn receiver(received: Arc<Mutex<Vec<(String, String)>>>) -> String {
    let app = axum::Router::new().route(
        "/alerts",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let received = received.clone();
            async move {
                let signature =
                    headers.get("telechart-signature").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                received.lock().unwrap().push((signature, body));
                axum::http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/alerts")
}

#[tokio::test]
async fn rules_fire_once_reach_the_sinks_and_only_compliance_reads_them() {
    for engine in engines() {
        let env = TestEnv::start(engine).await;
        let (_, clinician) = env.store.create_api_token(TENANT, "dr okafor", "clinician", 0).await.unwrap();
        let (_, compliance) =
            env.store.create_api_token(TENANT, "privacy office", "compliance-officer", 0).await.unwrap();
        let (clinician, compliance) = (clinician.expose().to_owned(), compliance.expose().to_owned());
        let post = reqwest::Method::POST;

        // Visits of distinct patients.
        let mut visits: Vec<(String, String, String)> = Vec::new(); // (id, patient, practitioner)
        for n in 0..env.sandbox.sandbox.appointment_ids().len() {
            let (status, v) =
                call(&env, &clinician, post.clone(), "/visits", json!({"appointment": env.appointment(n)})).await;
            assert_eq!(status, 201, "{v}");
            let patient = v["patient"].as_str().unwrap().to_owned();
            if visits.iter().all(|(_, p, _)| *p != patient) {
                visits.push((v["id"].as_str().unwrap().into(), patient, v["practitioner"].as_str().unwrap().into()));
            }
            if visits.len() == 4 {
                break;
            }
        }
        assert_eq!(visits.len(), 4, "the sandbox has four patients with appointments today");
        let first = visits[0].0.clone();

        // Three consent refusals on one visit; then break-glass and one access under it.
        call(&env, &clinician, post.clone(), &format!("/visits/{first}/transitions"), json!({"to": "arrived"})).await;
        for _ in 0..3 {
            let (status, _) = call(
                &env,
                &clinician,
                post.clone(),
                &format!("/visits/{first}/transitions"),
                json!({"to": "in-progress"}),
            )
            .await;
            assert_eq!(status, 403);
        }
        let (status, grant) = call(
            &env,
            &clinician,
            post.clone(),
            &format!("/visits/{first}/break-glass"),
            json!({"reason": "ETREAT", "text": "patient collapsed on camera, no consent on file"}),
        )
        .await;
        assert_eq!(status, 201, "{grant}");
        let (status, _) =
            call(&env, &clinician, post.clone(), &format!("/visits/{first}/transitions"), json!({"to": "in-progress"}))
                .await;
        assert_eq!(status, 201);

        // A person (as a session writes): the practitioner of visits 1 reads their own visit, then
        // the three others — patients they have no visit with — four patients within an hour.
        let person = env.store.add_user(TENANT, "https://idp.example", "nurse-kim", "nurse", 0).await.unwrap();
        let own = visits[1].clone();
        env.store.link_fhir_user(TENANT, &person.id, &own.2).await.unwrap();
        let strangers: Vec<&(String, String, String)> = visits.iter().filter(|v| v.2 != own.2).collect();
        assert!(!strangers.is_empty(), "visits of another practitioner");
        let reads = std::iter::once(&own).chain(strangers.iter().copied()).chain(std::iter::once(&own));
        for (visit, _, _) in reads {
            let entry = AuditEntry {
                tenant_id: TENANT.into(),
                actor: format!("user:{}", person.id),
                action: "visit.read".into(),
                entity_type: "visit".into(),
                entity_id: visit.clone(),
                visit_id: Some(visit.clone()),
                phi: true,
                purpose_of_use: Some("TREAT".into()),
                ..AuditEntry::default()
            };
            env.store.audit(&entry, env.clock.now_ms()).await.unwrap();
        }
        let distinct_patients = 1 + strangers.iter().map(|v| &v.1).collect::<std::collections::HashSet<_>>().len();

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("alerts.ndjson");
        let received = Arc::new(Mutex::new(Vec::new()));
        let url = receiver(received.clone()).await;
        let sinks = vec![AlertSink::File(file.clone()), AlertSink::Webhook { url, secret: Some(SECRET.to_vec()) }];
        let rules = AlertRules { patients_per_hour: 2, ..AlertRules::default() };
        let runner = || {
            AlertRunner::new(
                env.store.clone(),
                env.clock.clone(),
                rules.clone(),
                sinks.clone(),
                telechart_policy::EgressRegistry::default(),
            )
            .unwrap()
        };
        // Alerts are read from the chain: chain what the API appended.
        env.store.chain_pending_audit().await.unwrap();
        let mut alerts = runner();
        let fired = alerts.evaluate().await.unwrap();
        let mut rules_fired: Vec<&str> = fired.iter().map(|a| a.rule.as_str()).collect();
        rules_fired.sort_unstable();
        let mut expected = vec!["break-glass", "break-glass", "consent-denials", "many-patients"];
        expected.extend(std::iter::repeat_n("no-care-relationship", strangers.len()));
        expected.sort_unstable();
        assert_eq!(rules_fired, expected, "{fired:#?}");
        let many = fired.iter().find(|a| a.rule.as_str() == "many-patients").unwrap();
        assert_eq!(many.detail, format!("{} distinct patients within an hour", distinct_patients.min(3)));
        assert_eq!(alerts.send().await.unwrap(), fired.len());

        // Listed for compliance officers, newest first; no patient in any alert.
        let (status, listed) = call(&env, &compliance, reqwest::Method::GET, "/alerts", Value::Null).await;
        assert_eq!(status, 200, "{listed}");
        assert_eq!(listed.as_array().unwrap().len(), fired.len());
        let text = listed.to_string();
        assert!(visits.iter().all(|(_, patient, _)| !text.contains(patient.as_str())), "{text}");
        let (status, _) = call(&env, &clinician, reqwest::Method::GET, "/alerts", Value::Null).await;
        assert_eq!(status, 403, "clinicians do not read the alerts");
        let (status, outcome) = call(&env, &compliance, reqwest::Method::GET, "/alerts?limit=0", Value::Null).await;
        assert_eq!((status, outcome["issue"][0]["expression"][0].as_str()), (422, Some("limit")));

        // The sinks: one line per alert in the file; one signed POST per alert.
        let lines = std::fs::read_to_string(&file).unwrap();
        assert_eq!(lines.lines().count(), fired.len());
        let posts = received.lock().unwrap().clone();
        assert_eq!(posts.len(), fired.len());
        for (signature, body) in &posts {
            let now = env.clock.now_ms() / 1000;
            telechart_sync::webhooks::verify(SECRET, signature, body.as_bytes(), now).unwrap();
        }

        // A restarted runner rebuilds its windows from the last hour but fires nothing twice;
        // a new refusal after the burst does not re-fire the hour's consent-denials alert.
        let mut restarted = runner();
        assert!(restarted.evaluate().await.unwrap().is_empty());
        call(&env, &compliance, reqwest::Method::GET, "/alerts", Value::Null).await;
        env.store.chain_pending_audit().await.unwrap();
        assert!(restarted.evaluate().await.unwrap().is_empty());
        assert_eq!(restarted.send().await.unwrap(), 0);
        env.stop().await;
    }
}
