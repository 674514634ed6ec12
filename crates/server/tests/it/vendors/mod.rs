//! Sandbox personalities (`shared/VENDORS.md` §8), one test per checklist item, named after it
//! (`epic_…`, `oracle_…`, `athena_…` in their modules; plain FHIR, every personality and HL7v2
//! here): the status and OperationOutcome code the personality answers, and what Telechart does
//! about it, through the connection's vendor profile.

use serde_json::{Value, json};
use telechart_sandbox::Personality;
use telechart_sync::FaultPlan;

use crate::*;

async fn send(
    method: reqwest::Method,
    url: String,
    body: &Value,
    if_match: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut request = reqwest::Client::new()
        .request(method, url)
        .header("content-type", "application/fhir+json")
        .header("prefer", "return=representation");
    if let Some(v) = if_match {
        request = request.header("if-match", v);
    }
    let response = request.body(body.to_string()).send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    (status, headers, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn get(url: String) -> Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

async fn patient_of(env: &TestEnv, n: usize) -> String {
    let appointment = get(format!("{}/Appointment/{}", env.sandbox.fhir_base, env.appointment(n))).await;
    appointment["participant"][0]["actor"]["reference"].as_str().unwrap().to_owned()
}

/// Opens a visit on appointment 0 and takes it through arrival, vitals, the call, a note and the end.
async fn visit(env: &TestEnv) -> String {
    env.full_visit(0).await
}

mod athena;
mod epic;
mod oracle;

#[tokio::test]
async fn plain_26_conditional_create_answers_201_200_or_412() {
    let env = TestEnv::start(Engine::Sqlite).await;
    let base = env.sandbox.fhir_base.clone();
    let patient = patient_of(&env, 0).await;
    let body = |value: &str| {
        json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": patient},
               "identifier": [{"system": "urn:test", "value": value}]})
    };
    let conditional = |value: &'static str, body: Value| {
        let base = base.clone();
        async move {
            reqwest::Client::new()
                .post(format!("{base}/Observation"))
                .header("content-type", "application/fhir+json")
                .header("if-none-exist", format!("identifier=urn:test|{value}"))
                .body(body.to_string())
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(conditional("a", body("a")).await, 201, "none matched: created");
    assert_eq!(conditional("a", body("a")).await, 200, "one matched: that one, nothing created");
    send(reqwest::Method::POST, format!("{base}/Observation"), &body("a"), None).await;
    assert_eq!(conditional("a", body("a")).await, 412, "two matched");
    let found = get(format!("{base}/Observation?identifier=urn:test|a")).await;
    assert_eq!(found["total"], 2);
    // Telechart never depends on it: most EHRs ignore If-None-Exist (Epic, Oracle), so its
    // exactly-once rests on its own identifiers and reconciliation (see crash.rs, flow.rs).
    env.stop().await;
}

/// Where FHIR takes neither vitals nor (without a document API) notes, HL7v2 over MLLP: vitals
/// as ORU^R01 to the EHR's listener, ACK AA → delivered; AE → a refusal with the EHR's reason.
/// Every message is read back by a third-party HL7 parser (PyPI `hl7`).
#[tokio::test]
async fn hl7v2_over_mllp_carries_vitals_and_notes_where_fhir_and_the_practice_apis_cannot() {
    // An athena practice without its vitals and document APIs: HL7v2 carries vitals and notes.
    let env = TestEnv::start_vendor_with_mllp(
        Engine::Sqlite,
        Personality::Athena,
        r#"{"base": "athena", "vitals_api": false, "document_api": false}"#,
    )
    .await;
    let (_, visit) = env.post("/visits", json!({"appointment": format!("Appointment/{}", env.appointment(1))})).await;
    let id = visit["id"].as_str().unwrap().to_owned();
    env.post(&format!("/visits/{id}/transitions"), json!({"to": "arrived"})).await;
    let (status, _) = env
        .post(
            &format!("/visits/{id}/vitals"),
            json!({"vitals": [{"type": "blood-pressure", "systolic": 128, "diastolic": 82, "unit": "mm[Hg]"},
                              {"type": "heart-rate", "value": 71, "unit": "/min"}]}),
        )
        .await;
    assert_eq!(status, 201);
    env.consent_to_telehealth(&id).await;
    env.post(&format!("/visits/{id}/transitions"), json!({"to": "in-progress"})).await;
    let (status, _) = env
        .post(
            &format!("/visits/{id}/notes"),
            json!({"title": "Visit note", "text": "S: well.\nA|P: stable; BP 128/82.", "author": visit["practitioner"],
                   "signedAt": "2026-11-26T09:00:00Z"}),
        )
        .await;
    assert_eq!(status, 201);
    env.drain(&env.worker("w", FaultPlan::default())).await;
    let trace = env.store.deliveries_for_visit(TENANT, &id).await.unwrap();
    let vitals: Vec<_> = trace.iter().filter(|d| d.resource_type == "Observation").collect();
    assert_eq!(vitals.len(), 2);
    assert!(
        vitals.iter().all(|d| d.status == "done" && d.ehr_resource_id.as_deref().unwrap().starts_with("HL7v2-")),
        "{vitals:?}"
    );
    assert!(vitals.iter().all(|d| d.plan.as_deref() == Some("fallback: HL7v2 ORU^R01 over MLLP")));
    let note = trace.iter().find(|d| d.resource_type == "DocumentReference").unwrap();
    assert_eq!((note.status.as_str(), note.plan.as_deref()), ("done", Some("fallback: HL7v2 MDM^T02 over MLLP")));
    let messages = env.sandbox.sandbox.hl7_messages();
    assert_eq!(messages.len(), 3);
    assert!(messages[0].contains("OBX|1|NM|8480-6^") && messages[0].contains("OBX|2|NM|8462-4^"), "{}", messages[0]);
    // A third-party reader agrees on every message: type, patient, and the observations.
    let python = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv-tests/bin/python");
    if python.exists() {
        let patient = patient_of(&env, 1).await;
        let mut types = Vec::new();
        for message in &messages {
            let script = "import hl7, sys\nm = hl7.parse(sys.stdin.read())\nobx = m.segments('OBX')\nprint(m.segment('MSH')[9], m.segment('PID')[3], len(obx), obx[0][2], obx[0][3][0][0], len(m.segments('TXA')) if str(m.segment('MSH')[9]).startswith('MDM') else 0)";
            let mut child = std::process::Command::new(&python)
                .args(["-c", script])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write;
            child.stdin.take().unwrap().write_all(message.as_bytes()).unwrap();
            let out = child.wait_with_output().unwrap();
            let parsed = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            assert!(out.status.success(), "{parsed}");
            let fields: Vec<&str> = parsed.split(' ').collect();
            assert_eq!(fields[1], patient.trim_start_matches("Patient/"), "{parsed}");
            types.push((fields[0].to_owned(), fields[3].to_owned(), fields[5].to_owned()));
        }
        types.sort();
        assert_eq!(
            types,
            [
                ("MDM^T02^MDM_T02".to_owned(), "TX".to_owned(), "1".to_owned()),
                ("ORU^R01^ORU_R01".to_owned(), "NM".to_owned(), "0".to_owned()),
                ("ORU^R01^ORU_R01".to_owned(), "NM".to_owned(), "0".to_owned()),
            ]
        );
    } else {
        assert!(std::env::var("TELECHART_REQUIRE_OIDC").as_deref() != Ok("1"), ".venv-tests (with hl7) is missing");
    }
    // An ACK AE is a refusal, with the EHR's reason.
    let address = env.store.connection(TENANT, "sandbox").await.unwrap().unwrap().settings;
    let address: Value = serde_json::from_str(&address).unwrap();
    let ctx = telechart_ehr::hl7v2::Hl7Context {
        sending_facility: "TELECHART",
        receiving_facility: "EHR",
        patient_id: "nobody",
        visit_number: "v",
        timestamp: "20261126100000".into(),
        control_id: "bad-1",
    };
    let message = telechart_ehr::hl7v2::mdm_t02(&ctx, "t", "Practitioner/x", "text");
    let err =
        telechart_ehr::hl7v2::send(address["mllp"].as_str().unwrap(), &message, std::time::Duration::from_secs(5))
            .await
            .unwrap_err();
    assert!(err.to_string().contains("ACK AE: unknown patient in PID-3"), "{err}");
    env.stop().await;
}

/// VENDORS.md §8 item 27, on every personality: a write throttled with 429 + `Retry-After`, one
/// answered 503, and one the EHR committed whose reply was lost. Telechart waits as asked,
/// retries, and reconciles by identifier where the EHR can be searched; where it cannot (a
/// practice API), the lost reply becomes a dead letter asking a person to check the chart —
/// never a second copy.
#[tokio::test]
async fn all_27_throttling_unavailability_and_lost_replies_on_every_personality() {
    for (personality, profile) in [
        (Personality::Generic, "generic"),
        (Personality::Epic, "epic"),
        (Personality::Oracle, "oracle"),
        (Personality::Athena, "athena"),
    ] {
        let env = TestEnv::start_vendor(Engine::Sqlite, personality, profile).await;
        let id = env.full_visit(1).await;
        let fhir = personality != Personality::Athena;
        let (vitals, note) = if fhir { ("Observation", "DocumentReference") } else { ("vitals", "clinicaldocument") };
        for fault in [
            json!({"status": 429, "retryAfter": 5, "method": "POST", "resourceType": vitals}),
            json!({"status": 503, "method": "POST", "resourceType": vitals}),
            json!({"status": 500, "method": "POST", "resourceType": note, "afterCommit": true}),
        ] {
            env.sandbox.sandbox.inject(serde_json::from_value(fault).unwrap());
        }
        let started = env.clock.now_ms();
        env.drain(&env.worker("w", FaultPlan::default())).await;
        let trace = env.store.deliveries_for_visit(TENANT, &id).await.unwrap();
        let first_vital = trace.iter().find(|d| d.resource_type == "Observation").unwrap();
        assert_eq!(
            (first_vital.status.as_str(), first_vital.attempts),
            ("done", 3),
            "{profile}: 429, 503, then written"
        );
        assert!(first_vital.completed_at.unwrap() >= started + 5_000, "{profile}: Retry-After 5 s honoured");
        let written = trace.iter().find(|d| d.resource_type == "DocumentReference").unwrap();
        if fhir {
            assert!(trace.iter().all(charted), "{profile}: {trace:?}");
            assert_eq!(written.attempts, 2, "{profile}: the lost reply's write found and adopted");
            for d in trace.iter().filter(|d| d.resource_type != "Encounter" && d.status == "done") {
                let token = format!("{SYSTEM}|{}", d.identifier);
                assert_eq!(env.sandbox.sandbox.count_with_identifier(&d.resource_type, &token), 1, "{profile}");
            }
        } else {
            assert_eq!(written.status, "dead", "{profile}");
            assert!(written.last_error.as_deref().unwrap().contains("a person must check the chart"), "{written:?}");
            let stats = get(format!("{}/_sandbox/stats", env.sandbox.root)).await;
            assert_eq!(stats["writes"]["DocumentReference"], 1, "uploaded once, not twice: {stats}");
        }
        env.stop().await;
    }
}

/// Charted as planned: written, or — for the patient's Consent, which Epic- and Oracle-like EHRs
/// take no create of — named as having no path here without holding the visit back.
pub fn charted(d: &telechart_store::DeliveryRow) -> bool {
    d.status == "done"
        || (d.resource_type == "Consent"
            && d.status == "dead"
            && !d.blocks_visit()
            && d.plan.as_deref().is_some_and(|p| p.starts_with("not deliverable")))
}
