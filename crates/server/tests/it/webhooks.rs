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
