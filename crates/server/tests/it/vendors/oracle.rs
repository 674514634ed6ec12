//! Oracle Health-like personality: VENDORS.md §8 items, one test each.

use super::*;

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
        trace
            .iter()
            .filter(|d| d.resource_type != "Consent")
            .all(|d| d.status == "done" && d.ehr_resource_id.is_some() && d.ehr_version.is_some()),
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
    assert!(trace.iter().all(super::charted), "{trace:?}");
    let booked = env.store.visit(TENANT, &id).await.unwrap().unwrap().appointment_id;
    let appointment = get(format!("{}/Appointment/{booked}", env.sandbox.fhir_base)).await;
    assert_eq!(appointment["status"], "fulfilled", "{appointment}");
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
    env.consent_to_telehealth(&id).await;
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
    env.consent_to_telehealth(&id).await;
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
    assert!(trace.iter().all(super::charted), "{trace:?}");
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
    assert!(trace.iter().all(super::charted), "{trace:?}");
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
