//! Epic-like personality: VENDORS.md §8 items, one test each.

use super::*;

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
    assert!(trace.iter().all(super::charted), "{trace:?}");
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
    env.consent_to_telehealth(&id).await;
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
    assert!(deliveries.iter().all(super::charted), "{deliveries:?}");
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

/// An Epic-profile FHIR client on the sandbox, unauthenticated (the sandbox asks for no token).
fn epic_client(env: &TestEnv) -> telechart_ehr::FhirClient {
    telechart_ehr::FhirClient::new(
        &env.sandbox.fhir_base,
        telechart_ehr::VendorProfile::by_name("epic").unwrap(),
        std::time::Duration::from_secs(5),
    )
    .unwrap()
}
