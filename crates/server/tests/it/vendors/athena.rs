//! athenahealth-like personality: VENDORS.md §8 items, one test each.

use super::*;

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
    env.consent_to_telehealth(&id).await;
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
