//! `POST /api/v1/platform-events`: what the telehealth platform tells Telechart — the call
//! started, the call ended. Authenticated by the platform's signature (HMAC-SHA256 over the
//! timestamp and body, five-minute window), acted on once per event id (the platform delivers at
//! least once, in any order), audited as the platform.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use telechart_policy::Role;
use telechart_sync::webhooks::{self, OnCallEnded};
use telechart_visit::VisitState;

use crate::auth::{Access, Caller, Routes};
use crate::{ApiError, AppState};

pub(crate) fn routes() -> Routes {
    Routes::new().add(Method::POST, "/api/v1/platform-events", Access::SignIn, receive)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PlatformEvent {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    data: EventData,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventData {
    visit_id: String,
}

async fn receive(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    // Whatever is wrong with the signature, the answer is the same bare 401.
    let platform = state.platforms.get(&header("telechart-platform")).cloned().ok_or(ApiError::Unauthorized)?;
    let now_ms = state.clock.now_ms();
    if let Err(refused) =
        webhooks::verify(&platform.secret, &header(webhooks::SIGNATURE_HEADER), &body, now_ms.div_euclid(1000))
    {
        tracing::warn!(platform = %platform.id, reason = %refused, "platform event refused");
        return Err(ApiError::Unauthorized);
    }
    let event: PlatformEvent =
        serde_json::from_slice(&body).map_err(|e| ApiError::invalid("body", format!("not a platform event: {e}")))?;
    if !matches!(event.kind.as_str(), "call.started" | "call.ended") {
        return Err(ApiError::invalid(
            "type",
            format!("{:?} is not an event Telechart takes: call.started, call.ended", event.kind),
        ));
    }
    let caller = Caller {
        tenant_id: platform.tenant_id.clone(),
        actor: format!("platform:{}", platform.id),
        role: Role::Platform,
    };
    let visit = crate::api::load(&state, &caller, &event.data.visit_id).await?;
    if !state.store.first_platform_event(&platform.tenant_id, &platform.id, &event.id, now_ms).await? {
        return Ok(
            (StatusCode::OK, Json(json!({"event": event.id, "applied": "nothing: a duplicate"}))).into_response()
        );
    }
    let current: VisitState = visit.state.parse().map_err(|_| ApiError::Internal("unknown visit state".into()))?;
    let applied = match event.kind.as_str() {
        "call.started" => match current {
            VisitState::Arrived => {
                crate::api::move_visit(&state, &caller, &visit, VisitState::InProgress, "visit.call-started").await?;
                "the visit is in progress"
            }
            // Late, repeated or out of order: the visit is already past it.
            _ => "nothing: the visit is not waiting for the call",
        },
        _ => {
            state.store.mark_call_ended(&platform.tenant_id, &visit.id, now_ms).await?;
            let signed = state.store.has_artifact_kind(&platform.tenant_id, &visit.id, "note").await?;
            let finish = match platform.on_call_ended {
                OnCallEnded::Finish => true,
                OnCallEnded::FinishWhenSigned => signed,
            };
            match (current, finish) {
                (VisitState::InProgress, true) => {
                    crate::api::move_visit(&state, &caller, &visit, VisitState::Finished, "visit.call-ended").await?;
                    "the visit is finished"
                }
                (VisitState::InProgress, false) => "the call ended; the visit finishes when the note is signed",
                _ => "the call ended; the visit was not in the call",
            }
        }
    };
    Ok((StatusCode::ACCEPTED, Json(json!({"event": event.id, "applied": applied}))).into_response())
}
