//! `POST /ehr-notifications/{connection}`: the EHR's rest-hook Subscription notifications
//! (R4 Subscriptions Backport, full-resource or id-only). The sender proves itself with the
//! connection's shared secret: an HMAC signature (`telechart-signature`, as platform events; or
//! `X-Hub-Signature: sha256=…` over the body, as athenahealth's event platform signs) or,
//! for EHRs that can only add a fixed header (`Subscription.channel.header`), the secret itself as
//! `telechart-notification-token` (not `Authorization`: bearer tokens there are API tokens).

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use serde_json::json;
use telechart_sync::webhooks;

use crate::auth::{Access, Routes};
use crate::{ApiError, AppState};

/// Connections that take notifications: connection id → (tenant, shared secret).
#[derive(Default, Clone)]
pub struct NotificationSecrets(pub HashMap<String, (String, Vec<u8>)>);

impl std::fmt::Debug for NotificationSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

pub(crate) fn routes() -> Routes {
    Routes::new().add(Method::POST, "/ehr-notifications/{connection}", Access::SignIn, receive)
}

fn authentic(secret: &[u8], headers: &HeaderMap, body: &[u8], now_s: i64) -> bool {
    if let Some(signature) = headers.get(webhooks::SIGNATURE_HEADER).and_then(|v| v.to_str().ok()) {
        return webhooks::verify(secret, signature, body, now_s).is_ok();
    }
    if let Some(signature) = headers.get(webhooks::HUB_SIGNATURE_HEADER).and_then(|v| v.to_str().ok()) {
        return webhooks::verify_hub_signature(secret, signature, body);
    }
    headers
        .get("telechart-notification-token")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|token| aws_lc_rs::constant_time::verify_slices_are_equal(token.trim().as_bytes(), secret).is_ok())
}

async fn receive(
    State(state): State<AppState>,
    Path(connection): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let Some((tenant, secret)) = state.notification_secrets.0.get(&connection).cloned() else {
        return Err(ApiError::NotFound {
            field: None,
            message: format!("connection {connection} takes no notifications"),
        });
    };
    if !authentic(&secret, &headers, &body, state.clock.now_ms().div_euclid(1000)) {
        tracing::warn!(connection = %connection, "notification refused: not signed by the connection's secret");
        return Err(ApiError::Unauthorized);
    }
    let bundle: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::invalid("Bundle", format!("not JSON: {e}")))?;
    let inbox = telechart_sync::AppointmentInbox::new(
        state.store.clone(),
        state.clock.clone(),
        state.connections.clone(),
        state.platforms.clone(),
        &tenant,
    );
    let applied = inbox.notification(&connection, &bundle).await.map_err(|e| match e {
        telechart_sync::SyncError::Mapping { reason, .. } => ApiError::invalid("Bundle", reason),
        telechart_sync::SyncError::Store(e) => ApiError::from(e),
        other => ApiError::BadGateway(other.to_string()),
    })?;
    let outcomes: Vec<String> = applied.iter().map(|a| format!("{a:?}")).collect();
    Ok((StatusCode::OK, Json(json!({"applied": outcomes}))))
}
