//! Signed webhooks both ways. Out: every visit state change reaches the platform once, signed,
//! retried after a 503 with `Retry-After`, logged. In: the platform's `call.started` and
//! `call.ended` move the visit — once per event id, whatever the order — and a bad signature, an
//! old timestamp or an unknown platform is a bare 401 that changes nothing.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use telechart_sync::webhooks::{self, OnCallEnded};
use telechart_sync::{Platform, Platforms, WebhookSender};

use crate::*;

const SECRET: &[u8] = b"whsec-0123456789abcdef0123456789abcdef";

#[derive(Default)]
struct Received {
    events: Vec<(HeaderMap, String)>,
    /// Answers to give first, before 200s.
    refusals: Vec<StatusCode>,
}

async fn receiver(received: Arc<Mutex<Received>>) -> String {
    let app = axum::Router::new().route(
        "/hooks",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let received = received.clone();
            async move {
                let mut r = received.lock().unwrap();
                r.events.push((headers, body));
                match r.refusals.pop() {
                    Some(status) => (status, [("retry-after", "7")]).into_response(),
                    None => StatusCode::NO_CONTENT.into_response(),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/hooks")
}

use axum::response::IntoResponse;

fn platforms(url: &str) -> Platforms {
    Platforms(Arc::new(vec![Platform {
        id: "video".into(),
        tenant_id: TENANT.into(),
        webhook_url: Some(url.into()),
        secret: SECRET.to_vec(),
        events: vec![],
        on_call_ended: OnCallEnded::FinishWhenSigned,
        phi_basis: telechart_sync::PhiBasis::Treatment,
    }]))
}

/// Posts a platform event signed at `signed_at` (Unix seconds) with `secret`.
async fn event(env: &TestEnv, platform: &str, secret: &[u8], signed_at: i64, body: &Value) -> (u16, Value) {
    let body = body.to_string();
    let response = reqwest::Client::new()
        .post(format!("{}/platform-events", env.api))
        .header("content-type", "application/json")
        .header("telechart-platform", platform)
        .header("telechart-signature", webhooks::sign(secret, signed_at, body.as_bytes()))
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn state_of(env: &TestEnv, visit: &str) -> String {
    let (_, v) = env.get(&format!("{}/visits/{visit}", env.api)).await;
    v["state"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn webhooks_are_signed_both_ways_and_act_once() {
    let received = Arc::new(Mutex::new(Received::default()));
    let url = receiver(received.clone()).await;
    let env = TestEnv::start_with_platforms(Engine::Sqlite, platforms(&url)).await;
    let now = env.clock.now_ms().div_euclid(1000);
    let (status, visit) = env.post("/visits", json!({"appointment": env.appointment(0)})).await;
    assert_eq!(status, 201);
    let id = visit["id"].as_str().unwrap().to_owned();
    env.post(&format!("/visits/{id}/transitions"), json!({"to": "arrived"})).await;
    env.consent_to_telehealth(&id).await;

    // In: forged, stale or unknown-platform events change nothing.
    let started = json!({"id": "evt-1", "type": "call.started", "data": {"visitId": id}});
    for (what, platform, secret, at) in [
        ("bad signature", "video", &b"not-the-secret-not-the-secret-000"[..], now),
        ("old timestamp", "video", SECRET, now - 600),
        ("future timestamp", "video", SECRET, now + 600),
        ("unknown platform", "other", SECRET, now),
    ] {
        let (status, body) = event(&env, platform, secret, at, &started).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(body["issue"][0]["diagnostics"], "authentication required", "{what} leaked detail");
        assert_eq!(state_of(&env, &id).await, "arrived", "{what}");
    }
    let (status, body) = event(&env, "video", SECRET, now, &started).await;
    assert_eq!((status, body["applied"].as_str()), (202, Some("the visit is in progress")), "{body}");
    // The same event again (at-least-once delivery): nothing more happens.
    let (status, body) = event(&env, "video", SECRET, now, &started).await;
    assert_eq!((status, body["applied"].as_str()), (200, Some("nothing: a duplicate")));
    assert_eq!(state_of(&env, &id).await, "in-progress");
    // The call ends before the note is signed: the tenant's rule waits for the signature.
    let ended = json!({"id": "evt-2", "type": "call.ended", "data": {"visitId": id}});
    let (status, body) = event(&env, "video", SECRET, now, &ended).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(state_of(&env, &id).await, "in-progress");
    let (status, _) = env
        .post(
            &format!("/visits/{id}/notes"),
            json!({"title": "n", "text": "Stable.", "author": visit["practitioner"], "signedAt": "2026-11-26T09:00:00Z"}),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(state_of(&env, &id).await, "finished", "signing after the call ended finishes the visit");
    // A late, out-of-order call.started (new id) finds the visit past it.
    let late = json!({"id": "evt-0", "type": "call.started", "data": {"visitId": id}});
    let (status, body) = event(&env, "video", SECRET, now, &late).await;
    assert_eq!((status, body["applied"].as_str()), (202, Some("nothing: the visit is not waiting for the call")));
    assert_eq!(state_of(&env, &id).await, "finished");

    // Out: four state changes (arrived, in-progress, finished... and open is not one) went to the
    // outbox with their commits; the first attempt meets a 503 and is retried after Retry-After.
    received.lock().unwrap().refusals.push(StatusCode::SERVICE_UNAVAILABLE);
    let sender = WebhookSender::new(
        env.store.clone(),
        env.clock.clone(),
        platforms(&url),
        telechart_policy::EgressRegistry::default(),
    )
    .unwrap();
    let first = sender.run_once().await.unwrap();
    assert_eq!((first.delivered, first.retried, first.dead), (2, 1, 0), "{first:?}");
    assert_eq!(sender.run_once().await.unwrap().delivered, 0, "the retry waits for its time");
    env.clock.advance(Duration::from_secs(8));
    assert_eq!(sender.run_once().await.unwrap().delivered, 1);
    let events = std::mem::take(&mut received.lock().unwrap().events);
    assert_eq!(events.len(), 4, "three events, one of them twice");
    let mut kinds = Vec::new();
    for (headers, body) in &events {
        let signature = headers["telechart-signature"].to_str().unwrap();
        let at = env.clock.now_ms().div_euclid(1000);
        assert_eq!(webhooks::verify(SECRET, signature, body.as_bytes(), at), Ok(()), "every delivery is signed");
        let event: Value = serde_json::from_str(body).unwrap();
        assert_eq!(event["data"]["visitId"], id.as_str());
        kinds.push(format!("{}>{}", event["data"]["from"].as_str().unwrap(), event["data"]["to"].as_str().unwrap()));
    }
    kinds.sort();
    kinds.dedup();
    assert_eq!(kinds, ["arrived>in-progress", "booked>arrived", "in-progress>finished"]);
    let log = env.store.webhook_log(TENANT, 10).await.unwrap();
    assert_eq!(log.len(), 3);
    assert!(log.iter().all(|w| w.status == "done"));
    assert_eq!(log.iter().map(|w| w.attempts).sum::<i64>(), 4);
    // The log over the API: outcomes and attempts, never the bodies.
    let response = reqwest::Client::new()
        .get(format!("{}/webhooks/deliveries", env.api))
        .bearer_auth(&env.monitor_token)
        .send()
        .await
        .unwrap();
    let text = response.text().await.unwrap();
    let listed: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 3);
    assert!(listed.as_array().unwrap().iter().any(|w| w["attempts"] == 2 && w["lastStatus"] == 204), "{listed}");
    assert!(!text.contains(&id), "no body content in the log");
    env.stop().await;
}

/// A third-party platform (`phi_basis = consent`): its events name the patient only when the
/// patient's disclosure consent permits it at send time; otherwise the patient is withheld and
/// the rest of the event still goes. Every decision is audited.
#[tokio::test]
async fn a_third_party_platform_gets_the_patient_only_with_disclosure_consent() {
    for engine in engines() {
        let received = Arc::new(Mutex::new(Received::default()));
        let url = receiver(received.clone()).await;
        let third_party = Platforms(Arc::new(vec![Platform {
            id: "outreach".into(),
            tenant_id: TENANT.into(),
            webhook_url: Some(url.clone()),
            secret: SECRET.to_vec(),
            events: vec!["appointment.booked".into(), "appointment.cancelled".into()],
            on_call_ended: OnCallEnded::FinishWhenSigned,
            phi_basis: telechart_sync::PhiBasis::Consent,
        }]));
        let env = TestEnv::start_with_platforms(engine, third_party.clone()).await;
        let inbox = telechart_sync::AppointmentInbox::new(
            env.store.clone(),
            env.clock.clone(),
            env.connections().clone(),
            third_party.clone(),
            TENANT,
        );
        let sender = WebhookSender::new(
            env.store.clone(),
            env.clock.clone(),
            third_party,
            telechart_policy::EgressRegistry::default(),
        )
        .unwrap();

        // Today's bookings, and no patient has consented to disclosure: every event goes, none
        // names its patient.
        let booked = inbox.poll("sandbox").await.unwrap().changed;
        assert!(booked > 0);
        assert_eq!(sender.run_once().await.unwrap().delivered, booked);
        let events = std::mem::take(&mut received.lock().unwrap().events);
        assert_eq!(events.len(), booked);
        for (_, body) in &events {
            let event: Value = serde_json::from_str(body).unwrap();
            assert!(event["data"].get("patient").is_none(), "{event}");
            assert_eq!(event["data"]["withheld"], json!(["patient"]));
            assert!(event["data"]["appointment"].as_str().unwrap().starts_with("Appointment/"));
        }
        let decisions = |rows: &[telechart_store::AuditRow], outcome: &str| {
            rows.iter()
                .filter(|r| r.action == "consent.decision" && r.detail.contains("disclosure to platform outreach"))
                .filter(|r| r.outcome == outcome)
                .count()
        };
        env.store.chain_pending_audit().await.unwrap();
        let rows = env.store.audit_page(TENANT, 0, 20_000).await.unwrap();
        assert_eq!(decisions(&rows, "denied"), booked, "each withheld patient is an audited decision");

        // The patient of appointment 0 consents to disclosure; when that appointment is
        // cancelled, the event names them.
        let (status, visit) = env.post("/visits", json!({"appointment": env.appointment(0)})).await;
        assert_eq!(status, 201, "{visit}");
        let id = visit["id"].as_str().unwrap();
        let (status, consent) =
            env.post(&format!("/visits/{id}/consents"), json!({"category": "disclosure", "decision": "permit"})).await;
        assert_eq!(status, 201, "{consent}");
        let appointment = format!("{}/Appointment/{}", env.sandbox.fhir_base, env.appointment(0));
        let mut cancelled: Value = reqwest::get(&appointment).await.unwrap().json().await.unwrap();
        cancelled["status"] = json!("cancelled");
        let response = reqwest::Client::new()
            .put(&appointment)
            .header("content-type", "application/fhir+json")
            .body(cancelled.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        assert_eq!(inbox.poll("sandbox").await.unwrap().changed, 1);
        assert_eq!(sender.run_once().await.unwrap().delivered, 1);
        let events = std::mem::take(&mut received.lock().unwrap().events);
        let event: Value = serde_json::from_str(&events[0].1).unwrap();
        assert_eq!(event["type"], "appointment.cancelled");
        assert_eq!(event["data"]["patient"], visit["patient"], "{event}");
        assert!(event["data"].get("withheld").is_none());
        env.store.chain_pending_audit().await.unwrap();
        let rows = env.store.audit_page(TENANT, 0, 20_000).await.unwrap();
        assert_eq!(decisions(&rows, "success"), 1);
        env.stop().await;
    }
}
