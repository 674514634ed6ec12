//! Sandbox personalities (`shared/VENDORS.md` §8), one test per checklist item implemented so
//! far, named after it: the status and OperationOutcome code the personality answers, and what
//! Telechart does about it, through the connection's vendor profile.

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

#[tokio::test]
async fn epic_5_encounter_and_appointment_writes_are_refused_and_telechart_adopts_the_ehrs_encounter() {
    let env = TestEnv::start_vendor(Engine::Sqlite, Personality::Epic, "epic").await;
    let base = env.sandbox.fhir_base.clone();
    let patient = patient_of(&env, 0).await;
    let encounter = json!({"resourceType": "Encounter", "status": "planned", "class": {"code": "VR"}, "subject": {"reference": patient}});
    for (method, url) in [
        (reqwest::Method::POST, format!("{base}/Encounter")),
        (reqwest::Method::PUT, format!("{base}/Encounter/enc-{}", env.appointment(0))),
        (reqwest::Method::POST, format!("{base}/Appointment")),
    ] {
        let (status, _, outcome) = send(method.clone(), url.clone(), &encounter, None).await;
        assert_eq!((status, outcome["issue"][0]["code"].as_str()), (405, Some("not-supported")), "{method} {url}");
    }
    // Telechart: the epic profile never creates or changes the Encounter; it adopts the EHR's.
    let id = visit(&env).await;
    env.drain(&env.worker("w", FaultPlan::default())).await;
    let trace = env.store.deliveries_for_visit(TENANT, &id).await.unwrap();
    assert!(trace.iter().all(|d| d.status == "done"), "{trace:?}");
    let adopted = format!("enc-{}", env.appointment(0));
    assert!(
        trace
            .iter()
            .filter(|d| d.resource_type == "Encounter")
            .all(|d| d.ehr_resource_id.as_deref() == Some(adopted.as_str()))
    );
    let found = get(format!("{base}/Encounter?patient={patient}&appointment=Appointment/{}", env.appointment(0))).await;
    assert_eq!(found["entry"].as_array().map(Vec::len), Some(1), "no second Encounter: {found}");
    env.stop().await;
}

#[tokio::test]
async fn epic_7_notes_are_plain_text_on_an_encounter_first_attachment_kept() {
    let env = TestEnv::start_vendor(Engine::Sqlite, Personality::Epic, "epic").await;
    let base = env.sandbox.fhir_base.clone();
    let patient = patient_of(&env, 0).await;
    let encounter = format!("Encounter/enc-{}", env.appointment(0));
    let note = |content_type: &str, with_encounter: bool| {
        let mut doc = json!({"resourceType": "DocumentReference", "status": "current", "subject": {"reference": patient},
            "type": {"coding": [{"system": "http://loinc.org", "code": "11506-3"}]},
            "content": [{"attachment": {"contentType": content_type, "data": "U3RhYmxlLg=="}},
                        {"attachment": {"contentType": "text/plain", "data": "U2Vjb25kLg=="}}]});
        if with_encounter {
            doc["context"] = json!({"encounter": [{"reference": encounter}]});
        }
        doc
    };
    let (status, _, outcome) = send(
        reqwest::Method::POST,
        format!("{base}/DocumentReference"),
        &note("text/plain; charset=utf-8", true),
        None,
    )
    .await;
    assert_eq!((status, outcome["issue"][0]["code"].as_str()), (422, Some("value")));
    let (status, _, outcome) =
        send(reqwest::Method::POST, format!("{base}/DocumentReference"), &note("text/plain", false), None).await;
    assert_eq!((status, outcome["issue"][0]["code"].as_str()), (422, Some("required")));
    let (status, _, kept) =
        send(reqwest::Method::POST, format!("{base}/DocumentReference"), &note("text/plain", true), None).await;
    assert_eq!(status, 201);
    assert_eq!(kept["content"].as_array().unwrap().len(), 1, "only the first attachment is kept");
    // Telechart: the epic profile sends its plain-text note as exactly text/plain.
    let id = visit(&env).await;
    env.drain(&env.worker("w", FaultPlan::default())).await;
    let trace = env.store.deliveries_for_visit(TENANT, &id).await.unwrap();
    let doc = trace.iter().find(|d| d.resource_type == "DocumentReference").unwrap();
    assert_eq!(doc.status, "done", "{:?}", doc.last_error);
    let written = get(format!("{base}/DocumentReference/{}", doc.ehr_resource_id.clone().unwrap())).await;
    assert_eq!(written["content"][0]["attachment"]["contentType"], "text/plain");
    env.stop().await;
}

#[tokio::test]
async fn oracle_16_creates_answer_201_empty_with_location_and_etag() {
    let env = TestEnv::start_vendor(Engine::Sqlite, Personality::Oracle, "oracle").await;
    let patient = patient_of(&env, 0).await;
    let observation = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": patient}});
    let (status, headers, body) =
        send(reqwest::Method::POST, format!("{}/Observation", env.sandbox.fhir_base), &observation, None).await;
    assert_eq!(status, 201);
    assert!(body.is_null(), "no body even when asked: {body}");
    assert!(headers["location"].to_str().unwrap().starts_with("http://"), "absolute Location");
    assert!(headers.contains_key("etag"));
    // Telechart: id and version come from Location and ETag.
    let id = visit(&env).await;
    env.drain(&env.worker("w", FaultPlan::default())).await;
    let trace = env.store.deliveries_for_visit(TENANT, &id).await.unwrap();
    assert!(
        trace.iter().all(|d| d.status == "done" && d.ehr_resource_id.is_some() && d.ehr_version.is_some()),
        "{trace:?}"
    );
    env.stop().await;
}

#[tokio::test]
async fn oracle_17_updates_need_if_match_and_a_stale_one_is_409() {
    let env = TestEnv::start_vendor(Engine::Sqlite, Personality::Oracle, "oracle").await;
    let id = visit(&env).await;
    env.drain(&env.worker("w", FaultPlan::default())).await;
    let trace = env.store.deliveries_for_visit(TENANT, &id).await.unwrap();
    let observation = trace.iter().find(|d| d.resource_type == "Observation").unwrap();
    let url = format!("{}/Observation/{}", env.sandbox.fhir_base, observation.ehr_resource_id.clone().unwrap());
    let current = get(url.clone()).await;
    let (status, _, outcome) = send(reqwest::Method::PUT, url.clone(), &current, None).await;
    assert_eq!((status, outcome["issue"][0]["code"].as_str()), (412, Some("conflict")));
    let (status, _, outcome) = send(reqwest::Method::PUT, url.clone(), &current, Some("W/\"7\"")).await;
    assert_eq!((status, outcome["issue"][0]["code"].as_str()), (409, Some("conflict")));
    let (status, _, _) = send(reqwest::Method::PUT, url, &current, Some("W/\"1\"")).await;
    assert_eq!(status, 200, "the current version");
    // An Encounter is never replaced here.
    let encounter = env.store.visit(TENANT, &id).await.unwrap().unwrap().ehr_encounter_id.unwrap();
    let encounter_url = format!("{}/Encounter/{encounter}", env.sandbox.fhir_base);
    let (status, _, _) =
        send(reqwest::Method::PUT, encounter_url.clone(), &get(encounter_url).await, Some("W/\"1\"")).await;
    assert_eq!(status, 405);
    // Telechart sent each status change as a JSON Patch with If-Match (the Appointment's
    // version, read first): every one landed, so the visit's Appointment is fulfilled.
    assert!(trace.iter().all(|d| d.status == "done"), "{trace:?}");
    let booked = env.store.visit(TENANT, &id).await.unwrap().unwrap().appointment_id;
    let appointment = get(format!("{}/Appointment/{booked}", env.sandbox.fhir_base)).await;
    assert_eq!(appointment["status"], "fulfilled", "{appointment}");
    env.stop().await;
}

#[tokio::test]
async fn athena_22_fhir_writes_are_refused_and_notes_and_vitals_go_through_the_practice_apis() {
    let env = TestEnv::start_vendor(Engine::Sqlite, Personality::Athena, "athena").await;
    let patient = patient_of(&env, 0).await;
    let observation = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": patient}});
    let (status, _, outcome) =
        send(reqwest::Method::POST, format!("{}/Observation", env.sandbox.fhir_base), &observation, None).await;
    assert_eq!((status, outcome["issue"][0]["code"].as_str()), (405, Some("not-supported")));
    // Telechart: the athena profile writes nothing over FHIR; vitals go through the practice's
    // encounter vitals API (a planned fallback) and are read back from it.
    let (status, visit) =
        env.post("/visits", json!({"appointment": format!("Appointment/{}", env.appointment(1))})).await;
    assert_eq!(status, 201);
    let id = visit["id"].as_str().unwrap().to_owned();
    env.post(&format!("/visits/{id}/transitions"), json!({"to": "arrived"})).await;
    env.post(&format!("/visits/{id}/vitals"), json!({"vitals": [{"type": "heart-rate", "value": 70, "unit": "/min"}]}))
        .await;
    let stats = format!("{}/_sandbox/stats", env.sandbox.root.as_str());
    let before: Value = get(stats.clone()).await;
    assert!(before["writes"].is_object(), "{before}");
    env.drain(&env.worker("w", FaultPlan::default())).await;
    let trace = env.store.deliveries_for_visit(TENANT, &id).await.unwrap();
    let encounter = trace.iter().find(|d| d.resource_type == "Encounter").unwrap();
    let vital = trace.iter().find(|d| d.resource_type == "Observation").unwrap();
    assert_eq!(encounter.status, "done", "the EHR's own Encounter is adopted: {:?}", encounter.last_error);
    assert!(encounter.ehr_resource_id.as_deref().unwrap().starts_with("a-195900.E-"), "{encounter:?}");
    assert_eq!(vital.status, "done", "{:?}", vital.last_error);
    assert_eq!(vital.plan.as_deref(), Some("fallback: vitals API"));
    let readback: Value = serde_json::from_str(vital.readback.as_deref().unwrap()).unwrap();
    assert_eq!((readback["fieldsSent"].as_u64(), readback["fieldsKept"].as_u64()), (Some(4), Some(4)), "{readback}");
    let numeric = encounter.ehr_resource_id.as_deref().unwrap().rsplit(".E-").next().unwrap().to_owned();
    let root = env.sandbox.root.clone();
    let kept = get(format!("{root}/v1/195900/chart/encounter/{numeric}/vitals")).await;
    assert_eq!(kept["readings"][0]["clinicalelementid"], "VITALS.PULSE.RATE");
    assert_eq!(kept["readings"][0]["value"], "70");
    let after: Value = get(stats).await;
    assert_eq!(before["writes"], after["writes"], "no FHIR write was attempted");
    // The vitals API refuses an element it does not know, and another practice.
    let refused = reqwest::Client::new()
        .post(format!("{root}/v1/195900/chart/encounter/{numeric}/vitals"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            serde_urlencoded::to_string([("vitals", r#"[[{"clinicalelementid": "VITALS.MOOD", "value": "ok"}]]"#)])
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 400);
    let other = reqwest::get(format!("{root}/v1/1/chart/encounter/{numeric}/vitals")).await.unwrap();
    assert_eq!(other.status().as_u16(), 403);
    // The planned fallback: the signed note goes as a PDF through the practice's document API.
    for to in ["in-progress"] {
        env.post(&format!("/visits/{id}/transitions"), json!({"to": to})).await;
    }
    let (status, _) = env
        .post(
            &format!("/visits/{id}/notes"),
            json!({"title": "Visit note", "text": "Stable (BP 128/82). Continue plan.", "author": visit["practitioner"],
                   "signedAt": "2026-11-26T09:00:00Z"}),
        )
        .await;
    assert_eq!(status, 201);
    let refused = reqwest::Client::new()
        .post(format!("{root}/v1/195900/patients/nobody/documents/clinicaldocument"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("departmentid=1&documentsubclass=CLINICALDOCUMENT&attachmentcontents=JVBERi0x")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 404);
    assert_eq!(refused.json::<Value>().await.unwrap()["error"], "The patient ID is invalid.");
    env.drain(&env.worker("w2", FaultPlan::default())).await;
    let trace = env.store.deliveries_for_visit(TENANT, &id).await.unwrap();
    let note = trace.iter().find(|d| d.resource_type == "DocumentReference").unwrap();
    assert_eq!(note.status, "done", "{:?}", note.last_error);
    assert_eq!(note.plan.as_deref(), Some("fallback: document API (PDF)"));
    assert!(note.readback.as_deref().unwrap().contains(r#""differences":[]"#), "{:?}", note.readback);
    let uploaded =
        get(format!("{}/DocumentReference/{}", env.sandbox.fhir_base, note.ehr_resource_id.clone().unwrap())).await;
    assert_eq!(uploaded["content"][0]["attachment"]["contentType"], "application/pdf");
    let pdf = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        uploaded["content"][0]["attachment"]["data"].as_str().unwrap(),
    )
    .unwrap();
    assert!(pdf.starts_with(b"%PDF-") && String::from_utf8_lossy(&pdf).contains("\\(BP 128/82\\)"));
    env.stop().await;
}

#[tokio::test]
async fn epic_6_and_8_only_vitals_are_filed_and_conditions_go_in_as_provisional() {
    let env = TestEnv::start_vendor(Engine::Sqlite, Personality::Epic, "epic").await;
    let base = env.sandbox.fhir_base.clone();
    let patient = patient_of(&env, 0).await;
    let lab = json!({"resourceType": "Observation", "status": "final", "code": {"text": "HbA1c"}, "subject": {"reference": patient},
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}]});
    let (status, _, outcome) = send(reqwest::Method::POST, format!("{base}/Observation"), &lab, None).await;
    assert_eq!((status, outcome["issue"][0]["details"]["coding"][0]["code"].as_str()), (422, Some("59187")));
    let confirmed = json!({"resourceType": "Condition", "subject": {"reference": patient}, "code": {"text": "x"},
        "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]}});
    let (status, _, outcome) = send(reqwest::Method::POST, format!("{base}/Condition"), &confirmed, None).await;
    assert_eq!(status, 422);
    assert_eq!(outcome["issue"][0]["details"]["coding"][0]["code"], "59012", "{outcome}");
    // Telechart: the epic profile files its diagnoses as provisional, and they are kept.
    let (_, visit) = env.post("/visits", json!({"appointment": format!("Appointment/{}", env.appointment(0))})).await;
    let id = visit["id"].as_str().unwrap().to_owned();
    for to in ["arrived", "in-progress"] {
        env.post(&format!("/visits/{id}/transitions"), json!({"to": to})).await;
    }
    let (status, _) = env
        .post(
            &format!("/visits/{id}/diagnoses"),
            json!({"recorder": visit["practitioner"], "diagnoses": [{"code": "I10"}]}),
        )
        .await;
    assert_eq!(status, 201);
    env.drain(&env.worker("w", FaultPlan::default())).await;
    let trace = env.store.deliveries_for_visit(TENANT, &id).await.unwrap();
    let condition = trace.iter().find(|d| d.resource_type == "Condition").unwrap();
    assert_eq!(condition.status, "done", "{:?}", condition.last_error);
    let kept = get(format!("{base}/Condition/{}", condition.ehr_resource_id.clone().unwrap())).await;
    assert_eq!(kept["verificationStatus"]["coding"][0]["code"], "provisional");
    // Encounter.diagnosis cannot be written (the Encounter is the EHR's): a dead letter says so.
    let link = trace.iter().rev().find(|d| d.resource_type == "Encounter").unwrap();
    assert_eq!(link.status, "dead");
    assert!(link.last_error.as_deref().unwrap().contains("no Encounter update"), "{:?}", link.last_error);
    assert_eq!(condition.plan.as_deref(), Some("transformed: verificationStatus provisional"));
    assert!(link.plan.as_deref().unwrap().starts_with("not deliverable: "), "{:?}", link.plan);
    env.stop().await;
}

#[tokio::test]
async fn oracle_19_and_20_notes_need_a_charset_and_final_status_and_medication_requests_are_reported_only() {
    let env = TestEnv::start_vendor(Engine::Sqlite, Personality::Oracle, "oracle").await;
    let base = env.sandbox.fhir_base.clone();
    let patient = patient_of(&env, 0).await;
    let note = |content_type: &str, doc_status: &str| {
        json!({"resourceType": "DocumentReference", "status": "current", "docStatus": doc_status, "subject": {"reference": patient},
            "content": [{"attachment": {"contentType": content_type, "data": "U3RhYmxlLg=="}}]})
    };
    let (status, _, outcome) =
        send(reqwest::Method::POST, format!("{base}/DocumentReference"), &note("text/plain", "final"), None).await;
    assert_eq!((status, outcome["issue"][0]["code"].as_str()), (422, Some("value")));
    let (status, _, outcome) = send(
        reqwest::Method::POST,
        format!("{base}/DocumentReference"),
        &note("text/plain;charset=utf-8", "preliminary"),
        None,
    )
    .await;
    assert_eq!((status, outcome["issue"][0]["code"].as_str()), (422, Some("business-rule")));
    let order = json!({"resourceType": "MedicationRequest", "status": "active", "intent": "order", "subject": {"reference": patient},
        "medicationCodeableConcept": {"text": "metformin"}});
    let (status, _, outcome) = send(reqwest::Method::POST, format!("{base}/MedicationRequest"), &order, None).await;
    assert_eq!((status, outcome["issue"][0]["code"].as_str()), (422, Some("business-rule")));
    // Telechart: the note goes with its charset and final; a prescription is not sent as a
    // "reported" medication (it is not one): it is a dead letter that says the EHR takes none.
    let (_, visit) = env.post("/visits", json!({"appointment": format!("Appointment/{}", env.appointment(0))})).await;
    let id = visit["id"].as_str().unwrap().to_owned();
    for to in ["arrived", "in-progress"] {
        env.post(&format!("/visits/{id}/transitions"), json!({"to": to})).await;
    }
    env.post(
        &format!("/visits/{id}/notes"),
        json!({"title": "n", "text": "Stable.", "author": visit["practitioner"], "signedAt": "2026-11-26T09:00:00Z"}),
    )
    .await;
    env.post(
        &format!("/visits/{id}/orders"),
        json!({"requester": visit["practitioner"], "orders": [{"kind": "medication", "code": "860975",
               "display": "metformin 500 MG", "dosage": "1 tablet daily"}]}),
    )
    .await;
    let writes_before =
        get(format!("{}/_sandbox/stats", env.sandbox.root)).await["writes"]["MedicationRequest"].clone();
    env.drain(&env.worker("w", FaultPlan::default())).await;
    let trace = env.store.deliveries_for_visit(TENANT, &id).await.unwrap();
    let note = trace.iter().find(|d| d.resource_type == "DocumentReference").unwrap();
    assert_eq!(note.status, "done", "{:?}", note.last_error);
    let prescription = trace.iter().find(|d| d.resource_type == "MedicationRequest").unwrap();
    assert_eq!(prescription.status, "dead");
    assert!(
        prescription.last_error.as_deref().unwrap().contains("no MedicationRequest order create"),
        "{:?}",
        prescription.last_error
    );
    assert_eq!(note.plan.as_deref(), Some("written"));
    let writes_after = get(format!("{}/_sandbox/stats", env.sandbox.root)).await["writes"]["MedicationRequest"].clone();
    assert_eq!(writes_before, writes_after, "nothing was sent as a reported medication");
    env.stop().await;
}

#[tokio::test]
async fn epic_1_metadata_is_xml_unless_json_is_asked_for() {
    let env = TestEnv::start_vendor(Engine::Sqlite, Personality::Epic, "epic").await;
    let url = format!("{}/metadata", env.sandbox.fhir_base);
    for accept in [None, Some("*/*"), Some("text/html")] {
        let mut request = reqwest::Client::new().get(&url);
        if let Some(a) = accept {
            request = request.header("accept", a);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.headers()["content-type"], "application/fhir+xml", "{accept:?}");
        assert!(response.text().await.unwrap().contains("<CapabilityStatement"));
    }
    // Telechart always names JSON, so what it reads parses.
    let response = reqwest::Client::new().get(&url).header("accept", "application/fhir+json").send().await.unwrap();
    let json: Value = response.json().await.unwrap();
    assert_eq!(json["resourceType"], "CapabilityStatement");
    let client = telechart_ehr::FhirClient::new(
        &env.sandbox.fhir_base,
        telechart_ehr::VendorProfile::epic(),
        std::time::Duration::from_secs(5),
    )
    .unwrap();
    let patient = patient_of(&env, 0).await;
    let read = client.read("Patient", patient.trim_start_matches("Patient/")).await.unwrap();
    assert_eq!(read.resource["resourceType"], "Patient");
    env.stop().await;
}

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

#[tokio::test]
async fn epic_12_restricted_patients_need_a_break_the_glass_in_the_ehr() {
    let env = TestEnv::start_vendor(Engine::Sqlite, Personality::Epic, "epic").await;
    let base = env.sandbox.fhir_base.clone();
    let patient = patient_of(&env, 0).await;
    let root = env.sandbox.root.clone();
    let response = reqwest::Client::new().post(format!("{root}/_sandbox/restrict/{patient}")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 204);
    let read = |url: String| async move {
        let response = reqwest::get(url).await.unwrap();
        (response.status().as_u16(), response.json::<Value>().await.unwrap())
    };
    let (status, outcome) = read(format!("{base}/{patient}")).await;
    assert_eq!((status, outcome["issue"][0]["details"]["coding"][0]["code"].as_str()), (403, Some("4131")));
    let (status, outcome) = read(format!("{base}/Encounter/enc-{}", env.appointment(0))).await;
    assert_eq!((status, outcome["issue"][0]["details"]["coding"][0]["code"].as_str()), (403, Some("4130")));
    // Telechart: a worker cannot break the glass; the delivery is a dead letter that says a
    // person must, in the EHR (and the error's kind is break-glass-required-in-EHR).
    let (_, visit) = env.post("/visits", json!({"appointment": format!("Appointment/{}", env.appointment(0))})).await;
    let id = visit["id"].as_str().unwrap().to_owned();
    env.post(&format!("/visits/{id}/transitions"), json!({"to": "arrived"})).await;
    env.drain(&env.worker("w", FaultPlan::default())).await;
    let trace = env.store.deliveries_for_visit(TENANT, &id).await.unwrap();
    assert_eq!(trace[0].status, "dead");
    assert!(
        trace[0].last_error.as_deref().unwrap().contains("break the glass in the EHR"),
        "{:?}",
        trace[0].last_error
    );
    let client =
        telechart_ehr::FhirClient::new(&base, telechart_ehr::VendorProfile::epic(), std::time::Duration::from_secs(5))
            .unwrap();
    let err = client.read("Patient", patient.trim_start_matches("Patient/")).await.unwrap_err();
    assert_eq!(err.kind(), telechart_ehr::ErrorKind::BreakGlassRequiredInEhr);
    env.stop().await;
}

#[tokio::test]
async fn oracle_18_visit_status_goes_on_the_appointment_not_the_encounter() {
    let env = TestEnv::start_vendor(Engine::Sqlite, Personality::Oracle, "oracle").await;
    let base = env.sandbox.fhir_base.clone();
    // Taken now: the list of booked appointments changes as these move.
    let (first, second) = (env.appointment(1), env.appointment(2));
    let patch = |rtype: &str, id: String, value: &str, if_match: Option<&str>| {
        let mut request = reqwest::Client::new()
            .patch(format!("{base}/{rtype}/{id}"))
            .header("content-type", "application/json-patch+json")
            .body(json!([{"op": "replace", "path": "/status", "value": value}]).to_string());
        if let Some(v) = if_match {
            request = request.header("if-match", v.to_owned());
        }
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    // Odd slots come with the EHR's own Encounter: appointment 1's.
    let (status, outcome) = patch("Encounter", format!("enc-{first}"), "arrived", Some("W/\"1\"")).await;
    assert_eq!((status, outcome["issue"][0]["code"].as_str()), (422, Some("business-rule")));
    let (status, _) = patch("Appointment", second.clone(), "arrived", None).await;
    assert_eq!(status, 412, "If-Match is required");
    let (status, moved) = patch("Appointment", second.clone(), "checked-in", Some("W/\"1\"")).await;
    assert_eq!((status, moved["status"].as_str()), (200, Some("checked-in")));
    // Telechart: the oracle profile moves the visit on the Appointment, by JSON Patch with If-Match.
    let (_, visit) = env.post("/visits", json!({"appointment": format!("Appointment/{first}")})).await;
    let id = visit["id"].as_str().unwrap().to_owned();
    for to in ["arrived", "in-progress"] {
        env.post(&format!("/visits/{id}/transitions"), json!({"to": to})).await;
    }
    env.post(
        &format!("/visits/{id}/notes"),
        json!({"title": "n", "text": "Stable.", "author": visit["practitioner"], "signedAt": "2026-11-26T09:00:00Z"}),
    )
    .await;
    env.post(&format!("/visits/{id}/transitions"), json!({"to": "finished"})).await;
    env.drain(&env.worker("w", FaultPlan::default())).await;
    let trace = env.store.deliveries_for_visit(TENANT, &id).await.unwrap();
    assert!(trace.iter().all(|d| d.status == "done"), "{trace:?}");
    let appointment = get(format!("{base}/Appointment/{first}")).await;
    assert_eq!(appointment["status"], "fulfilled");
    let encounter = get(format!("{base}/Encounter/enc-{first}")).await;
    assert_eq!(encounter["status"], "planned", "the Encounter's status is the EHR's to keep");
    env.stop().await;
}

#[tokio::test]
async fn oracle_21_pages_by_context_token_repeat_a_record_and_telechart_dedupes() {
    let env = TestEnv::start_vendor(Engine::Sqlite, Personality::Oracle, "oracle").await;
    let base = env.sandbox.fhir_base.clone();
    let patient = patient_of(&env, 0).await;
    for n in 0..7 {
        let observation = json!({"resourceType": "Observation", "status": "final", "subject": {"reference": patient},
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
            "code": {"coding": [{"system": "urn:test", "code": "item-21"}]}, "valueQuantity": {"value": 60 + n, "unit": "/min"}});
        send(reqwest::Method::POST, format!("{base}/Observation"), &observation, None).await;
    }
    let first = get(format!("{base}/Observation?code=urn:test|item-21&_count=3")).await;
    assert!(first.get("total").is_none(), "no total");
    let next = first["link"].as_array().unwrap().iter().find(|l| l["relation"] == "next").unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(next.contains("-pageContext=") && next.contains("-pageDirection=NEXT"), "{next}");
    let second = get(next).await;
    let last_of_first = first["entry"][2]["resource"]["id"].clone();
    assert_eq!(second["entry"][0]["resource"]["id"], last_of_first, "the next page repeats a record");
    // Telechart follows the links verbatim and keeps each id once.
    let client = telechart_ehr::FhirClient::new(
        &base,
        telechart_ehr::VendorProfile::oracle(),
        std::time::Duration::from_secs(5),
    )
    .unwrap();
    let found = client.search("Observation", &[("code", "urn:test|item-21"), ("_count", "3")]).await.unwrap();
    let mut ids: Vec<&str> = found.iter().map(|o| o["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 7, "{ids:?}");
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 7);
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

/// An Epic-profile FHIR client on the sandbox, unauthenticated (the sandbox asks for no token).
fn epic_client(env: &TestEnv) -> telechart_ehr::FhirClient {
    telechart_ehr::FhirClient::new(
        &env.sandbox.fhir_base,
        telechart_ehr::VendorProfile::by_name("epic").unwrap(),
        std::time::Duration::from_secs(5),
    )
    .unwrap()
}

#[tokio::test]
async fn epic_10_session_paging_expires_with_4113_total_is_the_page_size_and_no_results_is_4101() {
    let env = TestEnv::start_vendor(Engine::Sqlite, Personality::Epic, "epic").await;
    let base = env.sandbox.fhir_base.clone();
    let root = env.sandbox.root.clone();
    let all = env.sandbox.sandbox.appointment_ids().len();
    assert!(all > 4, "{all}");
    let first = get(format!("{base}/Appointment?_count=2")).await;
    assert_eq!(first["total"], 2, "total is the page size, not the {all} matches");
    let next = first["link"].as_array().unwrap().iter().find(|l| l["relation"] == "next").unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(next.contains("sessionID="), "{next}");
    let second = get(next.clone()).await;
    assert_eq!(second["entry"].as_array().unwrap().len(), 2);
    let third = second["link"].as_array().unwrap().iter().find(|l| l["relation"] == "next").unwrap()["url"]
        .as_str()
        .unwrap()
        .to_owned();
    reqwest::Client::new().post(format!("{root}/_sandbox/expire-paging-sessions")).send().await.unwrap();
    let expired = reqwest::get(third).await.unwrap();
    assert_eq!(expired.status().as_u16(), 400);
    let outcome: Value = expired.json().await.unwrap();
    assert_eq!(outcome["issue"][0]["details"]["coding"][0]["code"], "4113", "{outcome}");
    let patient = patient_of(&env, 0).await;
    let empty = get(format!("{base}/Observation?patient={patient}&code=http://loinc.org|0000-0")).await;
    assert_eq!(empty["total"], 0);
    assert_eq!(empty["entry"][0]["search"]["mode"], "outcome");
    assert_eq!(empty["entry"][0]["resource"]["issue"][0]["details"]["coding"][0]["code"], "4101", "{empty}");
    // Telechart: the outcome entry is no result; every page is followed; and a session that
    // expires mid-way starts the search again, without duplicates.
    let client = epic_client(&env);
    assert!(
        client
            .search("Observation", &[("patient", &patient), ("code", "http://loinc.org|0000-0")])
            .await
            .unwrap()
            .is_empty()
    );
    reqwest::Client::new().post(format!("{root}/_sandbox/expire-paging-sessions")).send().await.unwrap();
    let found = client.search("Appointment", &[("_count", "2")]).await.unwrap();
    let mut ids: Vec<&str> = found.iter().map(|a| a["id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!((found.len(), ids.len()), (all, all), "every appointment once, after a restart");
    env.stop().await;
}

#[tokio::test]
async fn epic_11_required_search_parameters_4111_and_59159_and_unknown_ones_ignored_with_59100() {
    let env = TestEnv::start_vendor(Engine::Sqlite, Personality::Epic, "epic").await;
    let base = env.sandbox.fhir_base.clone();
    let status_and = |url: String| async move {
        let r = reqwest::get(url).await.unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap())
    };
    let (status, outcome) = status_and(format!("{base}/Patient?birthdate=1980-01-01")).await;
    assert_eq!((status, outcome["issue"][0]["details"]["coding"][0]["code"].as_str()), (400, Some("59159")));
    let (status, outcome) = status_and(format!("{base}/Observation?code=http://loinc.org|8867-4")).await;
    assert_eq!((status, outcome["issue"][0]["details"]["coding"][0]["code"].as_str()), (400, Some("4111")));
    let (status, bundle) = status_and(format!("{base}/Appointment?_count=3&flavour=vanilla")).await;
    assert_eq!(status, 200);
    let entries = bundle["entry"].as_array().unwrap();
    assert_eq!(entries.iter().filter(|e| e["search"]["mode"] == "match").count(), 3, "the rest of the search stands");
    let info = entries.iter().find(|e| e["search"]["mode"] == "outcome").unwrap();
    assert_eq!(info["resource"]["issue"][0]["severity"], "information");
    assert_eq!(info["resource"]["issue"][0]["details"]["coding"][0]["code"], "59100");
    // Telechart: searches by identifier within the patient, so reconciling an unknown outcome
    // works here (no 4111), and keeps only what carries the identifier.
    let visit = env.full_visit(0).await;
    env.sandbox.sandbox.inject(
        serde_json::from_value(
            json!({"status": 500, "resourceType": "Observation", "method": "POST", "afterCommit": true}),
        )
        .unwrap(),
    );
    env.drain(&env.worker("w", FaultPlan::default())).await;
    let deliveries = env.store.deliveries_for_visit(TENANT, &visit).await.unwrap();
    assert!(deliveries.iter().all(|d| d.status == "done"), "{deliveries:?}");
    let reconciled = deliveries.iter().find(|d| d.resource_type == "Observation").unwrap();
    assert_eq!(reconciled.attempts, 2, "the first reply was lost; the second attempt found the write");
    for d in deliveries.iter().filter(|d| d.resource_type == "Observation") {
        let token = format!("{SYSTEM}|{}", d.identifier);
        assert_eq!(env.sandbox.sandbox.count_with_identifier("Observation", &token), 1);
    }
    let patient = patient_of(&env, 0).await;
    let client = epic_client(&env);
    let token = format!("{SYSTEM}|{}", reconciled.identifier);
    let found = client.find_by_identifier("Observation", &token, Some(&patient)).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["id"].as_str(), reconciled.ehr_resource_id.as_deref());
    env.stop().await;
}

#[tokio::test]
async fn oracle_13_the_tenant_is_in_the_fhir_and_auth_urls_and_a_wrong_one_is_403() {
    let env = TestEnv::start_vendor(Engine::Sqlite, Personality::Oracle, "oracle").await;
    let tenant = telechart_sandbox::ORACLE_TENANT;
    let base = env.sandbox.fhir_base.clone();
    assert_eq!(base, format!("{}/r4/{tenant}", env.sandbox.root));
    let smart = get(format!("{base}/.well-known/smart-configuration")).await;
    assert_eq!(
        smart["token_endpoint"],
        format!("{}/tenants/{tenant}/protocols/oauth2/profiles/smart-v1/token", env.sandbox.root)
    );
    let wrong = format!("{}/r4/00000000-0000-0000-0000-000000000000", env.sandbox.root);
    let refused = reqwest::get(format!("{wrong}/Patient?_id=x")).await.unwrap();
    assert_eq!(refused.status().as_u16(), 403);
    let outcome: Value = refused.json().await.unwrap();
    assert_eq!(outcome["issue"][0]["details"]["text"], "Tenant not valid or accessible");
    let token = reqwest::Client::new()
        .post(format!("{}/tenants/nobody/protocols/oauth2/profiles/smart-v1/token", env.sandbox.root))
        .send()
        .await
        .unwrap();
    assert_eq!(token.status().as_u16(), 403);
    // Telechart: a `{tenant}` base URL expanded from the connection's auth settings reaches the
    // tenant, and the visit is charted there; a wrong tenant is Forbidden, not retried.
    let auth = telechart_ehr::AuthProfile { tenant: Some(tenant.into()), ..Default::default() };
    let template = format!("{}/r4/{{tenant}}", env.sandbox.root);
    assert_eq!(auth.expand(&template).unwrap(), base);
    let discovered = telechart_ehr::discover_token_endpoint(&base, std::time::Duration::from_secs(5)).await.unwrap();
    assert_eq!(discovered, smart["token_endpoint"].as_str().unwrap());
    let id = visit(&env).await;
    env.drain(&env.worker("w", FaultPlan::default())).await;
    let trace = env.store.deliveries_for_visit(TENANT, &id).await.unwrap();
    assert!(trace.iter().all(|d| d.status == "done"), "{trace:?}");
    let elsewhere = telechart_ehr::FhirClient::new(
        &wrong,
        telechart_ehr::VendorProfile::by_name("oracle").unwrap(),
        std::time::Duration::from_secs(5),
    )
    .unwrap();
    let err = elsewhere.read("Patient", "x").await.unwrap_err();
    assert_eq!(err.kind(), telechart_ehr::ErrorKind::Forbidden, "{err}");
    assert!(err.to_string().contains("Tenant not valid or accessible"), "{err}");
    assert_eq!(err.class(), telechart_ehr::FailureClass::Permanent);
    env.stop().await;
}

#[tokio::test]
async fn athena_24_ids_carry_the_practice_searches_need_ah_practice_page_by_cursor_and_take_dates_only() {
    let env = TestEnv::start_vendor(Engine::Sqlite, Personality::Athena, "athena").await;
    let base = env.sandbox.fhir_base.clone();
    let practice = "ah-practice=Organization/a-1.Practice-195900";
    let status_and = |url: String| async move {
        let r = reqwest::get(url).await.unwrap();
        (r.status().as_u16(), r.json::<Value>().await.unwrap_or(Value::Null))
    };
    let (status, outcome) = status_and(format!("{base}/Appointment?date=ge2026-11-26")).await;
    assert_eq!((status, outcome["issue"][0]["expression"][0].as_str()), (400, Some("ah-practice")), "{outcome}");
    let (status, _) =
        status_and(format!("{base}/Appointment?ah-practice=Organization/a-1.Practice-1&date=ge2026-11-26")).await;
    assert_eq!(status, 403);
    let (status, outcome) =
        status_and(format!("{base}/Appointment?{practice}&_lastUpdated=ge2026-11-26T09:00:00Z")).await;
    assert_eq!((status, outcome["issue"][0]["expression"][0].as_str()), (400, Some("_lastUpdated")));
    let (status, page) = status_and(format!("{base}/Appointment?{practice}&_lastUpdated=ge2026-11-26&_count=2")).await;
    assert_eq!(status, 200);
    let next =
        page["link"].as_array().unwrap().iter().find(|l| l["relation"] == "next").unwrap()["url"].as_str().unwrap();
    assert!(next.contains("cursor=") && next.contains("ah-practice="), "{next}");
    let patient = patient_of(&env, 0).await;
    assert!(patient.starts_with("Patient/a-195900.E-"), "{patient}");
    let (_, encounters) = status_and(format!(
        "{base}/Encounter?{practice}&patient={patient}&appointment=Appointment/{}",
        env.appointment(0)
    ))
    .await;
    let encounter = encounters["entry"][0]["resource"]["id"].as_str().unwrap();
    assert!(encounter.starts_with("a-195900.E-"), "{encounter}");
    // Telechart: every search carries the practice, polls ask `_lastUpdated` by day, every cursor
    // page is followed, and the practice APIs get the numbers inside the ids.
    let inbox = telechart_sync::AppointmentInbox::new(
        env.store.clone(),
        env.clock.clone(),
        env.connections().clone(),
        telechart_sync::Platforms::default(),
        TENANT,
    );
    let first = inbox.poll("sandbox").await.unwrap();
    let today = env.sandbox.sandbox.appointment_ids().len();
    assert_eq!(first.seen, today, "the first poll, by date");
    let second = inbox.poll("sandbox").await.unwrap();
    assert_eq!((second.seen, second.changed), (today, 0), "by _lastUpdated=ge<day>: the day again, nothing new");
    let client = env.connections().client(TENANT, "sandbox").await.unwrap();
    let all = client.search("Appointment", &[("_count", "2")]).await.unwrap();
    assert_eq!(all.len(), today, "every cursor page");
    assert_eq!(client.profile.native_id("a-195900.E-5001"), "5001");
    env.stop().await;
}

#[tokio::test]
async fn athena_25_events_are_id_only_duplicated_unordered_hmac_signed_and_retried() {
    let env = TestEnv::start_vendor(Engine::Sqlite, Personality::Athena, "athena").await;
    let url = format!("{}/ehr-notifications/sandbox", env.server.base_url);
    let appointments: Vec<String> = env.sandbox.sandbox.appointment_ids()[..3].to_vec();
    let pause = std::time::Duration::from_millis(10);
    let known = |id: String| {
        let store = env.store.clone();
        async move { store.known_appointment(TENANT, "sandbox", &id).await.unwrap() }
    };
    // Signed with another secret: every attempt is refused, athena retries, then gives up;
    // Telechart keeps nothing.
    let refused = env
        .sandbox
        .sandbox
        .send_appointment_events(&url, b"another-secret-another-secret-00", &appointments[..1], 3, pause)
        .await;
    assert_eq!(refused, telechart_sandbox::EventRun { sent: 2, attempts: 6, given_up: 2 });
    assert!(known(appointments[0].clone()).await.is_none());
    // Signed with the connection's secret: five deliveries (two duplicated), newest first, each
    // id-only; Telechart reads each appointment from the EHR and keeps it once.
    let run = env.sandbox.sandbox.send_appointment_events(&url, NOTIFY_SECRET, &appointments, 3, pause).await;
    assert_eq!(run, telechart_sandbox::EventRun { sent: 5, attempts: 5, given_up: 0 });
    for id in &appointments {
        let kept = known(id.clone()).await.unwrap_or_else(|| panic!("Appointment/{id} not kept"));
        assert_eq!(kept.status, "booked");
    }
    // A visit is open on the second; the EHR cancels it; the event (twice, with the others)
    // moves the visit to cancelled, once.
    let (status, visit) = env.post("/visits", json!({"appointment": format!("Appointment/{}", appointments[1])})).await;
    assert_eq!(status, 201, "{visit}");
    let visit_id = visit["id"].as_str().unwrap().to_owned();
    env.sandbox.sandbox.set_appointment_status(&appointments[1], "cancelled").unwrap();
    let again = [appointments[1].clone(), appointments[1].clone(), appointments[0].clone()];
    let run = env.sandbox.sandbox.send_appointment_events(&url, NOTIFY_SECRET, &again, 3, pause).await;
    assert_eq!(run.given_up, 0);
    assert_eq!(known(appointments[1].clone()).await.unwrap().status, "cancelled");
    let (_, view) = env.get(&format!("{}/visits/{visit_id}", env.api)).await;
    assert_eq!(view["state"], "cancelled", "{view}");
    let audit = env.store.audit_for_visit(TENANT, &visit_id).await.unwrap();
    let cancelled = audit.iter().filter(|a| a.detail.contains("cancelled") && a.action.starts_with("visit.")).count();
    assert_eq!(cancelled, 1, "{audit:?}");
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
            assert!(trace.iter().all(|d| d.status == "done"), "{profile}: {trace:?}");
            assert_eq!(written.attempts, 2, "{profile}: the lost reply's write found and adopted");
            for d in trace.iter().filter(|d| d.resource_type != "Encounter") {
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

#[tokio::test]
async fn epic_9_creates_ignore_if_none_exist_answer_201_with_a_relative_location_no_etag_and_a_body_only_when_asked() {
    let env = TestEnv::start_vendor(Engine::Sqlite, Personality::Epic, "epic").await;
    let base = env.sandbox.fhir_base.clone();
    let patient = patient_of(&env, 0).await;
    let vital = json!({"resourceType": "Observation", "status": "final", "subject": {"reference": patient},
        "identifier": [{"system": "urn:example", "value": "v-1"}],
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "valueQuantity": {"value": 70, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}});
    let post = |prefer: Option<&'static str>| {
        let (url, body) = (format!("{base}/Observation"), vital.to_string());
        async move {
            let mut request = reqwest::Client::new()
                .post(url)
                .header("content-type", "application/fhir+json")
                .header("if-none-exist", "identifier=urn:example|v-1");
            if let Some(p) = prefer {
                request = request.header("prefer", p);
            }
            let response = request.body(body).send().await.unwrap();
            let (status, headers) = (response.status().as_u16(), response.headers().clone());
            (status, headers, response.text().await.unwrap())
        }
    };
    let (status, headers, body) = post(None).await;
    assert_eq!(status, 201);
    assert!(body.is_empty(), "no body unless asked: {body}");
    assert!(!headers.contains_key("etag"), "no ETag");
    let location = headers["location"].to_str().unwrap();
    assert!(location.starts_with("Observation/"), "a relative Location: {location}");
    let (status, headers, body) = post(Some("return=representation")).await;
    assert_eq!(status, 201, "If-None-Exist matched one, and was ignored");
    assert!(!headers.contains_key("etag"));
    let second: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(second["resourceType"], "Observation", "the body, when asked for");
    assert_eq!(env.sandbox.sandbox.count_with_identifier("Observation", "urn:example|v-1"), 2, "a duplicate");
    // Telechart never relies on conditional create: each vital goes once, identified by its own
    // identifier, with its id taken from the relative Location or the body.
    let id = visit(&env).await;
    env.drain(&env.worker("w", FaultPlan::default())).await;
    let trace = env.store.deliveries_for_visit(TENANT, &id).await.unwrap();
    for d in trace.iter().filter(|d| d.resource_type == "Observation") {
        assert_eq!(d.status, "done");
        let token = format!("{SYSTEM}|{}", d.identifier);
        assert_eq!(env.sandbox.sandbox.count_with_identifier("Observation", &token), 1);
        let kept = get(format!("{base}/Observation/{}", d.ehr_resource_id.clone().unwrap())).await;
        assert_eq!(kept["identifier"][0]["value"], d.identifier.as_str());
        assert!(d.readback.is_some(), "read back");
    }
    env.stop().await;
}
