//! Appointments from the EHR: booked or cancelled in the sandbox, they reach Telechart within one
//! poll, or at once by an id-only Subscription notification; a repeated or out-of-order
//! notification changes nothing; every change is announced to the platform exactly once.

use std::sync::Arc;

use serde_json::{Value, json};
use telechart_sync::webhooks::{self, OnCallEnded};
use telechart_sync::{Applied, AppointmentInbox, Platform, Platforms};

use crate::*;

fn platforms() -> Platforms {
    Platforms(Arc::new(vec![Platform {
        id: "video".into(),
        tenant_id: TENANT.into(),
        webhook_url: Some("http://127.0.0.1:9/hooks".into()),
        secret: b"whsec-0123456789abcdef0123456789abcdef".to_vec(),
        events: vec!["appointment.booked".into(), "appointment.cancelled".into()],
        on_call_ended: OnCallEnded::FinishWhenSigned,
        phi_basis: telechart_sync::PhiBasis::Treatment,
    }]))
}

/// The announcements in the outbox: (event type, appointment).
async fn announced(env: &TestEnv) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = env
        .store
        .webhook_log(TENANT, 1000)
        .await
        .unwrap()
        .iter()
        .map(|w| {
            let body: Value = serde_json::from_str(w.payload.expose()).unwrap();
            (w.event_type.clone(), body["data"]["appointment"].as_str().unwrap().to_owned())
        })
        .collect();
    out.sort();
    out
}

async fn notify(env: &TestEnv, body: &Value, signed_with: &[u8]) -> (u16, Value) {
    let text = body.to_string();
    let at = env.clock.now_ms().div_euclid(1000);
    let response = reqwest::Client::new()
        .post(format!("{}/ehr-notifications/sandbox", env.server.base_url))
        .header("content-type", "application/fhir+json")
        .header("telechart-signature", webhooks::sign(signed_with, at, text.as_bytes()))
        .body(text)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// An id-only notification (Subscriptions Backport): the status, and the focus by reference.
fn id_only(appointment: &str, event_number: u64) -> Value {
    json!({"resourceType": "Bundle", "type": "history", "entry": [
        {"fullUrl": "urn:uuid:0b1f4e9a-0000-4000-8000-000000000001", "resource": {"resourceType": "Parameters", "parameter": [
            {"name": "subscription", "valueReference": {"reference": "Subscription/telechart-appointments"}},
            {"name": "type", "valueCode": "event-notification"},
            {"name": "events-since-subscription-start", "valueString": event_number.to_string()},
            {"name": "notification-event", "part": [
                {"name": "event-number", "valueString": event_number.to_string()},
                {"name": "focus", "valueReference": {"reference": format!("Appointment/{appointment}")}}]}]}}]})
}

#[tokio::test]
async fn appointments_arrive_by_poll_and_by_notification_once_each() {
    let env = TestEnv::start_with_platforms(Engine::Sqlite, platforms()).await;
    let inbox =
        AppointmentInbox::new(env.store.clone(), env.clock.clone(), env.connections().clone(), platforms(), TENANT);
    let first = inbox.poll("sandbox").await.unwrap();
    let today = env.sandbox.sandbox.appointment_ids().len();
    assert_eq!((first.seen, first.changed), (today, today), "today's booked appointments, each announced");
    assert_eq!(announced(&env).await.len(), today);
    assert_eq!(inbox.poll("sandbox").await.unwrap().changed, 0, "a second poll finds nothing new");

    // Booked in the EHR: the next poll has it.
    let existing: Value = reqwest::get(format!("{}/Appointment/{}", env.sandbox.fhir_base, env.appointment(0)))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut booked = existing.clone();
    booked.as_object_mut().unwrap().remove("id");
    booked.as_object_mut().unwrap().remove("meta");
    booked["start"] = json!("2026-11-26T16:00:00Z");
    booked["end"] = json!("2026-11-26T16:20:00Z");
    let created: Value = reqwest::Client::new()
        .post(format!("{}/Appointment", env.sandbox.fhir_base))
        .header("content-type", "application/fhir+json")
        .body(booked.to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let new_id = created["id"].as_str().unwrap().to_owned();
    let polled = inbox.poll("sandbox").await.unwrap();
    assert_eq!(polled.changed, 1, "{polled:?}");
    assert!(announced(&env).await.contains(&("appointment.booked".into(), format!("Appointment/{new_id}"))));

    // A Telechart visit is open on it (the patient is in the waiting room).
    let (status, visit) = env.post("/visits", json!({"appointment": format!("Appointment/{new_id}")})).await;
    assert_eq!(status, 201, "{visit}");
    let visit_id = visit["id"].as_str().unwrap().to_owned();
    env.post(&format!("/visits/{visit_id}/transitions"), json!({"to": "arrived"})).await;

    // Cancelled in the EHR: an id-only notification carries it at once.
    let mut cancelled = created.clone();
    cancelled["status"] = json!("cancelled");
    let response = reqwest::Client::new()
        .put(format!("{}/Appointment/{new_id}", env.sandbox.fhir_base))
        .header("content-type", "application/fhir+json")
        .body(cancelled.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let (status, reply) = notify(&env, &id_only(&new_id, 1), NOTIFY_SECRET).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["applied"][0], format!("{:?}", Applied::Cancelled(format!("Appointment/{new_id}"))));
    let cancellations = |list: Vec<(String, String)>| list.iter().filter(|(t, _)| t == "appointment.cancelled").count();
    assert_eq!(cancellations(announced(&env).await), 1);
    // Both ways: the visit follows the EHR, and its Encounter is to be cancelled too.
    let (_, view) = env.get(&format!("{}/visits/{visit_id}", env.api)).await;
    assert_eq!(view["state"], "cancelled", "{view}");
    let trace = env.store.deliveries_for_visit(TENANT, &visit_id).await.unwrap();
    assert_eq!(trace.iter().filter(|d| d.resource_type == "Encounter").count(), 2, "arrived, then cancelled");

    // The same notification again, the old booked version as a full-resource notification (out of
    // order), and the next poll: none of them changes anything or announces anything.
    let before = announced(&env).await;
    let (status, reply) = notify(&env, &id_only(&new_id, 1), NOTIFY_SECRET).await;
    assert_eq!((status, reply["applied"][0].as_str().unwrap().starts_with("Unchanged")), (200, true), "{reply}");
    let stale = json!({"resourceType": "Bundle", "type": "history", "entry": [
        {"fullUrl": "urn:uuid:0b1f4e9a-0000-4000-8000-000000000002", "resource": {"resourceType": "Parameters", "parameter": [
            {"name": "type", "valueCode": "event-notification"}]}},
        {"fullUrl": format!("{}/Appointment/{new_id}", env.sandbox.fhir_base), "resource": created}]});
    let (status, reply) = notify(&env, &stale, NOTIFY_SECRET).await;
    assert_eq!((status, reply["applied"][0].as_str().unwrap().starts_with("Unchanged")), (200, true), "{reply}");
    assert_eq!(inbox.poll("sandbox").await.unwrap().changed, 0);
    assert_eq!(announced(&env).await, before);
    let known = env.store.known_appointment(TENANT, "sandbox", &new_id).await.unwrap().unwrap();
    assert_eq!(known.status, "cancelled");

    // A notification not signed with the connection's secret: refused, nothing read or kept.
    let (status, _) = notify(&env, &id_only(&env.appointment(1), 2), b"not-the-secret-not-the-secret-00").await;
    assert_eq!(status, 401);
    // The secret as a fixed header works for EHRs that can only add one to the channel.
    let response = reqwest::Client::new()
        .post(format!("{}/ehr-notifications/sandbox", env.server.base_url))
        .header("telechart-notification-token", std::str::from_utf8(NOTIFY_SECRET).unwrap())
        .body(id_only(&env.appointment(1), 3).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    env.stop().await;
}
