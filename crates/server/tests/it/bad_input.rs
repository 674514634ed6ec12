//! Bad input gets a 4xx OperationOutcome naming the field, and nothing is written.

use serde_json::{Value, json};

use crate::*;

/// What a rejected request must leave untouched.
async fn snapshot(env: &TestEnv, visit: &str) -> (Value, usize, usize) {
    let (_, v) = env.get(&format!("{}/visits/{visit}", env.api)).await;
    let deliveries = env.store.deliveries_for_visit(TENANT, visit).await.unwrap().len();
    let artifacts = env.store.artifacts(TENANT, visit).await.unwrap().len();
    (json!({"state": v["state"], "version": v["version"]}), deliveries, artifacts)
}

fn assert_outcome(status: u16, body: &Value, want_status: u16, field: Option<&str>) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["resourceType"], "OperationOutcome", "{body}");
    assert_eq!(body["issue"][0]["severity"], "error");
    assert!(body["issue"][0]["diagnostics"].as_str().is_some_and(|d| !d.is_empty()));
    if let Some(f) = field {
        assert_eq!(body["issue"][0]["expression"][0], f, "{body}");
    }
}

#[tokio::test]
async fn bad_input_is_refused_precisely_and_writes_nothing() {
    let env = TestEnv::start(Engine::Sqlite).await;
    let (status, body) = env.post_raw("/visits", "{\"appointment\": ").await;
    assert_outcome(status, &body, 400, None);
    let (status, body) = env.post("/visits", json!({"appointment": "Appointment/no-such-appointment"})).await;
    assert_outcome(status, &body, 404, Some("appointment"));
    let (status, body) = env.post("/visits", json!({"appointment": "Patient/1"})).await;
    assert_outcome(status, &body, 422, Some("appointment"));
    let (status, body) = env.post("/visits", json!({"appointmentt": "x"})).await;
    assert_outcome(status, &body, 422, None);

    let (status, visit) = env.post("/visits", json!({"appointment": env.appointment(0)})).await;
    assert_eq!(status, 201, "{visit}");
    let id = visit["id"].as_str().unwrap().to_owned();
    // A second visit for the same appointment is a conflict.
    let (status, body) = env.post("/visits", json!({"appointment": env.appointment(0)})).await;
    assert_outcome(status, &body, 409, Some("appointment"));

    let before = snapshot(&env, &id).await;
    let cases: Vec<(&str, Value, u16, Option<&str>)> = vec![
        ("transitions", json!({"to": "finished"}), 409, Some("to")),
        ("transitions", json!({"to": "teleported"}), 422, Some("to")),
        ("vitals", json!({"vitals": [{"type": "heart-rate", "value": 72, "unit": "/min"}]}), 409, None),
    ];
    for (path, body, want, field) in cases {
        let (status, reply) = env.post(&format!("/visits/{id}/{path}"), body).await;
        assert_outcome(status, &reply, want, field);
        assert_eq!(snapshot(&env, &id).await, before, "{path} wrote something");
    }
    let (status, reply) = env.post_raw(&format!("/visits/{id}/transitions"), "not json").await;
    assert_outcome(status, &reply, 400, None);

    let (status, _) = env.post(&format!("/visits/{id}/transitions"), json!({"to": "arrived"})).await;
    assert_eq!(status, 201);
    let before = snapshot(&env, &id).await;
    let vitals: Vec<(Value, &str)> = vec![
        (json!({"type": "heart-rate", "value": 900, "unit": "/min"}), "vitals[1].value"),
        (json!({"type": "body-temperature", "value": 80, "unit": "Cel"}), "vitals[1].value"),
        (json!({"type": "body-temperature", "value": 37, "unit": "K"}), "vitals[1].unit"),
        (json!({"type": "heart-rate", "value": 72, "unit": "beats"}), "vitals[1].unit"),
        (json!({"type": "body-weight", "value": "heavy", "unit": "kg"}), "vitals[1].value"),
        (json!({"type": "blood-pressure", "systolic": 120, "unit": "mm[Hg]"}), "vitals[1].diastolic"),
        (json!({"type": "heart-rate", "value": 72, "unit": "/min", "colour": "red"}), "vitals[1]"),
    ];
    for (bad, field) in vitals {
        // One good vital first: the whole batch is refused, not half of it stored.
        let body = json!({"vitals": [{"type": "respiratory-rate", "value": 16, "unit": "/min"}, bad]});
        let (status, reply) = env.post(&format!("/visits/{id}/vitals"), body).await;
        assert!(status == 422, "{reply}");
        assert_outcome(status, &reply, 422, None);
        let named = reply["issue"][0]["expression"][0].as_str().unwrap_or_default().to_owned()
            + reply["issue"][0]["diagnostics"].as_str().unwrap_or_default();
        assert!(named.contains(field), "{field} not named in {reply}");
        assert_eq!(snapshot(&env, &id).await, before);
    }
    let (status, reply) = env
        .post(
            &format!("/visits/{id}/notes"),
            json!({"title": "n", "text": "t", "author": "Practitioner/x", "signedAt": "2026-11-26T09:00:00Z"}),
        )
        .await;
    assert_outcome(status, &reply, 409, None);
    // Billing facts are checked by form: a place of service that is not telehealth is refused.
    let response = env
        .http
        .put(format!("{}/visits/{id}/billing", env.api))
        .json(&json!({"procedureCodes": ["99213"], "placeOfService": "11", "modifier": "95", "modality": "video",
                      "renderingProvider": "Practitioner/x"}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let reply: Value = response.json().await.unwrap();
    assert_outcome(status, &reply, 422, Some("placeOfService"));
    // Diagnoses wait for the call.
    let (status, reply) = env
        .post(&format!("/visits/{id}/diagnoses"), json!({"recorder": "Practitioner/x", "diagnoses": [{"code": "I10"}]}))
        .await;
    assert_outcome(status, &reply, 409, None);
    assert_eq!(snapshot(&env, &id).await, before);
    // Documents: the bytes must be what the content type says, within the size limit.
    let b64 = |bytes: &[u8]| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes);
    let documents: Vec<(Value, u16, &str)> = vec![
        (
            json!({"kind": "attachment", "title": "x", "contentType": "application/pdf", "data": b64(b"\x89PNG\r\n\x1a\n")}),
            422,
            "contentType",
        ),
        (
            json!({"kind": "attachment", "title": "x", "contentType": "text/html", "text": "<script>"}),
            422,
            "contentType",
        ),
        (json!({"kind": "consent-form", "title": "x", "contentType": "application/pdf", "data": "%%%"}), 422, "data"),
        (json!({"kind": "chat-transcript", "title": "", "contentType": "text/plain", "text": "hi"}), 422, "title"),
        (json!({"kind": "x-ray", "title": "x", "contentType": "text/plain", "text": "hi"}), 422, "kind"),
        (
            json!({"kind": "chat-transcript", "title": "x", "contentType": "text/plain", "text": "a".repeat(telechart_visit::DOCUMENT_MAX_BYTES + 1)}),
            422,
            "data",
        ),
    ];
    for (body, want, field) in documents {
        let (status, reply) = env.post(&format!("/visits/{id}/documents"), body).await;
        assert_outcome(status, &reply, want, None);
        let named = reply["issue"][0]["expression"][0].as_str().unwrap_or_default().to_owned()
            + reply["issue"][0]["diagnostics"].as_str().unwrap_or_default();
        assert!(named.contains(field), "{field} not named in {reply}");
        assert_eq!(snapshot(&env, &id).await, before);
    }
    // Past the route's body limit: refused before it is read.
    let huge = format!(
        "{{\"kind\":\"attachment\",\"title\":\"x\",\"contentType\":\"application/pdf\",\"data\":\"{}\"}}",
        "A".repeat(15 << 20)
    );
    let (status, _) = env.post_raw(&format!("/visits/{id}/documents"), huge).await;
    assert_eq!(status, 413);
    assert_eq!(snapshot(&env, &id).await, before);
    let (status, reply) = env.get(&format!("{}/visits/00000000-0000-0000-0000-000000000000", env.api)).await;
    assert_outcome(status, &reply, 404, None);
    let (status, reply) = env.get(&format!("{}/nowhere", env.api)).await;
    assert_outcome(status, &reply, 404, None);
    let response = env.http.delete(format!("{}/visits/{id}", env.api)).send().await.unwrap();
    let status = response.status().as_u16();
    assert_outcome(status, &response.json().await.unwrap(), 405, None);
    assert_eq!(snapshot(&env, &id).await, before);
    env.stop().await;
}

/// A visit's priority is clinical unless it says backfill; anything else is refused by name.
#[tokio::test]
async fn a_visit_priority_is_clinical_or_backfill() {
    let env = TestEnv::start(Engine::Sqlite).await;
    let appointment = format!("Appointment/{}", env.appointment(0));
    let (status, reply) = env.post("/visits", json!({"appointment": appointment, "priority": "urgent"})).await;
    assert_outcome(status, &reply, 422, Some("priority"));
    let (status, visit) = env.post("/visits", json!({"appointment": appointment, "priority": "backfill"})).await;
    assert_eq!(status, 201, "{visit}");
    assert_eq!(visit["priority"], "backfill");
    let (status, visit) =
        env.post("/visits", json!({"appointment": format!("Appointment/{}", env.appointment(1))})).await;
    assert_eq!((status, visit["priority"].as_str()), (201, Some("clinical")));
    env.stop().await;
}
