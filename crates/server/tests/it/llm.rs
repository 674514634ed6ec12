//! The OpenAI-compatible drafting engine against a local HTTP server speaking the
//! chat-completions wire format (no network): a good answer, a sentence citing nothing, a
//! timeout, malformed JSON, a refusal, a 503 retried, and an unregistered destination (refused
//! before anything is sent).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::*;

#[derive(Clone, Default)]
struct FakeModel {
    mode: Arc<Mutex<&'static str>>,
    hits: Arc<AtomicUsize>,
    last_request: Arc<Mutex<Value>>,
}

fn completion(content: &str) -> Value {
    json!({"id": "chatcmpl-1", "object": "chat.completion", "model": "local-model",
           "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}]})
}

async fn chat(State(model): State<FakeModel>, Json(request): Json<Value>) -> Response {
    let n = model.hits.fetch_add(1, Ordering::SeqCst);
    *model.last_request.lock().unwrap() = request;
    let mode = *model.mode.lock().unwrap();
    let good = json!({"sections": [
        {"id": "cc", "sentences": [{"text": "Headache for three days.", "turns": [1]}]},
        {"id": "hpi", "sentences": [
            {"text": "She takes ibuprofen 400 mg twice a day.", "turns": [3]},
            {"text": "She has no fever.", "turns": [3]}
        ]}
    ]});
    match mode {
        "good" => Json(completion(&good.to_string())).into_response(),
        "uncited" => {
            let mut answer = good.clone();
            answer["sections"][1]["sentences"]
                .as_array_mut()
                .unwrap()
                .push(json!({"text": "An MRI last year was normal."}));
            Json(completion(&answer.to_string())).into_response()
        }
        "slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            Json(completion(&good.to_string())).into_response()
        }
        "malformed" => Json(completion("Here is the note: the patient has a headache.")).into_response(),
        "refusal" => Json(json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": null,
                    "refusal": "I can't help with medical documentation."}, "finish_reason": "stop"}]}))
        .into_response(),
        // The first call is refused for load, the retry answers.
        "busy-once" if n.is_multiple_of(2) => {
            (StatusCode::SERVICE_UNAVAILABLE, [("retry-after", "0")], "overloaded").into_response()
        }
        _ => Json(completion(&good.to_string())).into_response(),
    }
}

async fn fake_model() -> (FakeModel, String) {
    let model = FakeModel::default();
    let app = axum::Router::new().route("/v1/chat/completions", axum::routing::post(chat)).with_state(model.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (model, format!("http://{addr}/v1"))
}

const DIALOGUE: &str = "[doctor] what brings you in?\n[patient] a headache for three days.\n\
[doctor] any fever? are you taking anything?\n[patient] no fever. ibuprofen 400 mg twice a day.\n";

fn llm(base_url: &str) -> telechart_server::Drafting {
    telechart_server::Drafting {
        llm: Some(telechart_server::LlmEngine {
            base_url: base_url.to_owned(),
            model: "local-model".into(),
            api_key: Some("sk-local-test".into()),
            timeout: Duration::from_millis(500),
            max_attempts: 2,
        }),
    }
}

/// A visit in progress with recording consent and a transcript.
async fn visit_with_transcript(env: &TestEnv) -> String {
    let (_, visit) = env.post("/visits", json!({"appointment": env.appointment(0)})).await;
    let id = visit["id"].as_str().unwrap().to_owned();
    env.post(&format!("/visits/{id}/transitions"), json!({"to": "arrived"})).await;
    env.consent_to_telehealth(&id).await;
    env.post(&format!("/visits/{id}/transitions"), json!({"to": "in-progress"})).await;
    env.post(&format!("/visits/{id}/consents"), json!({"category": "recording-ai", "decision": "permit"})).await;
    let transcript =
        json!({"kind": "video-transcript", "title": "Transcript", "contentType": "text/plain", "text": DIALOGUE});
    let (status, reply) = env.post(&format!("/visits/{id}/documents"), transcript).await;
    assert_eq!(status, 201, "{reply}");
    id
}

#[tokio::test]
async fn the_openai_compatible_engine_drafts_checks_and_fails_cleanly() {
    let (model, base) = fake_model().await;
    let env = TestEnv::start_with_drafting(Engine::Sqlite, llm(&base)).await;
    let id = visit_with_transcript(&env).await;
    let path = format!("/visits/{id}/draft");
    let draft = |mode: &'static str| {
        *model.mode.lock().unwrap() = mode;
        env.post(&path, json!({"engine": "openai-compatible"}))
    };

    let (status, good) = draft("good").await;
    assert_eq!(status, 201, "{good}");
    assert_eq!((good["engine"].as_str(), good["flagged"].as_i64()), (Some("local-model"), Some(0)), "{good}");
    let sent = model.last_request.lock().unwrap().clone();
    assert_eq!(sent["model"], "local-model");
    let user: Value = serde_json::from_str(sent["messages"][1]["content"].as_str().unwrap()).unwrap();
    assert_eq!(user["turns"].as_array().unwrap().len(), 4, "the transcript's turns go to the model: {user}");

    // A sentence citing nothing is kept only as flagged; it cannot be signed as drafted.
    let (status, uncited) = draft("uncited").await;
    assert_eq!(status, 201, "{uncited}");
    assert_eq!(uncited["flagged"], 1, "{uncited}");
    let flagged: Vec<&Value> = uncited["sections"][1]["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| !s["flags"].as_array().unwrap().is_empty())
        .collect();
    assert_eq!(flagged[0]["text"], "An MRI last year was normal.");
    assert_eq!(flagged[0]["flags"][0]["kind"], "no-evidence");

    // Failures: a 502 naming the cause; nothing drafted by them.
    for (mode, expect, calls) in [
        ("slow", "no answer within 500 ms after 2 attempt(s)", 2),
        ("malformed", "not the asked-for JSON", 1),
        ("refusal", "the model refused", 1),
    ] {
        let before = model.hits.load(Ordering::SeqCst);
        let (status, outcome) = draft(mode).await;
        assert_eq!(status, 502, "{mode}: {outcome}");
        let why = outcome["issue"][0]["diagnostics"].as_str().unwrap();
        assert!(why.contains(expect), "{mode}: {why}");
        assert_eq!(model.hits.load(Ordering::SeqCst) - before, calls, "{mode}: calls made");
    }
    let (_, latest) = env.get(&format!("{}/visits/{id}/draft", env.api)).await;
    assert_eq!(latest["version"], 2, "the failures drafted nothing");

    // A 503 with Retry-After is retried, and the retry answers.
    model.hits.store(0, Ordering::SeqCst);
    let (status, retried) = draft("busy-once").await;
    assert_eq!(status, 201, "{retried}");
    assert_eq!(model.hits.load(Ordering::SeqCst), 2);
    let audit = env.store.audit_for_visit(TENANT, &id).await.unwrap();
    assert_eq!(audit.iter().filter(|a| a.action == "note.drafted").count(), 3);
    assert!(!format!("{audit:?}").contains("sk-local-test"), "the key is never audited");
    env.stop().await;
}

#[tokio::test]
async fn an_engine_at_an_unregistered_destination_is_refused_and_sent_nothing() {
    let (model, base) = fake_model().await;
    // The same server, named by a host with no BAA in the egress registry.
    let port = base.trim_start_matches("http://127.0.0.1:").split('/').next().unwrap().to_owned();
    let env = TestEnv::start_with_drafting(Engine::Sqlite, llm(&format!("http://llm.example:{port}/v1"))).await;
    let id = visit_with_transcript(&env).await;
    let (status, outcome) = env.post(&format!("/visits/{id}/draft"), json!({"engine": "openai-compatible"})).await;
    assert_eq!(status, 403, "{outcome}");
    let why = outcome["issue"][0]["diagnostics"].as_str().unwrap();
    assert!(why.contains("llm.example") && why.contains("business associate agreement"), "{why}");
    assert_eq!(model.hits.load(Ordering::SeqCst), 0, "nothing was sent");
    assert_eq!(env.get(&format!("{}/visits/{id}/draft", env.api)).await.0, 404);
    env.stop().await;
}

#[tokio::test]
async fn a_withdrawn_recording_consent_stops_the_llm_call() {
    let (model, base) = fake_model().await;
    *model.mode.lock().unwrap() = "good";
    let env = TestEnv::start_with_drafting(Engine::Sqlite, llm(&base)).await;
    let id = visit_with_transcript(&env).await;
    let (_, consents) = env.get(&format!("{}/visits/{id}/consents", env.api)).await;
    let recording = consents
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["category"] == "recording-ai")
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .unwrap();
    let (status, _) = env.post(&format!("/visits/{id}/consents/{recording}/withdraw"), json!({})).await;
    assert_eq!(status, 201);
    let (status, outcome) = env.post(&format!("/visits/{id}/draft"), json!({"engine": "openai-compatible"})).await;
    assert_eq!(status, 403, "{outcome}");
    assert!(outcome["issue"][0]["diagnostics"].as_str().unwrap().contains("recording / AI drafting"));
    assert_eq!(model.hits.load(Ordering::SeqCst), 0, "nothing was sent to the model");
    let audit = env.store.audit_for_visit(TENANT, &id).await.unwrap();
    let last = audit.iter().rev().find(|a| a.action == "consent.decision").unwrap();
    assert_eq!(last.outcome.as_str(), "denied");
    let (_, trace) = env.get(&format!("{}/visits/{id}/trace", env.api)).await;
    assert!(trace.as_array().unwrap().iter().any(|t| t["status"] == "refused-by-consent"), "{trace}");
    env.stop().await;
}
