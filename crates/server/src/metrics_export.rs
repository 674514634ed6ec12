//! `/metrics` in Prometheus text format: counters and histograms recorded by the workers, plus
//! the queue's depth by status read at scrape time.

use std::sync::OnceLock;

use axum::extract::State;
use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use telechart_policy::Permission;

use crate::auth::{Access, Caller, Routes};
use crate::{ApiError, AppState};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process-wide Prometheus recorder, installed on first use.
pub fn prometheus_handle() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0])
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            describe();
            Some(handle)
        })
        .clone()
}

/// HELP text and units for every metric the workers record (promtool's lint wants them).
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_gauge!("telechart_deliveries", "Deliveries by status now, read at scrape time");
    describe_counter!("telechart_deliveries_total", "Delivery attempts by outcome and resource type");
    describe_counter!("telechart_delivery_plans_total", "Deliveries by how they were planned for their EHR");
    describe_counter!("telechart_readback_fields_sent_total", "Fields sent in resources read back from the EHR");
    describe_counter!("telechart_readback_fields_kept_total", "Fields the EHR kept as sent, on read-back");
    describe_histogram!("telechart_delivery_attempt_seconds", Unit::Seconds, "One delivery attempt, start to answer");
    describe_histogram!("telechart_delivery_age_seconds", Unit::Seconds, "A delivery's age when it reached the EHR");
}

pub(crate) fn routes() -> Routes {
    Routes::new()
        .add(Method::GET, "/metrics", Access::Requires(Permission::MetricsRead), render)
        .add(Method::GET, "/healthz", Access::Public, || async { "ok" })
        .add(Method::GET, "/.well-known/jwks.json", Access::Public, jwks)
}

/// The public keys EHRs verify Telechart's Backend Services client assertions with.
async fn jwks(State(state): State<AppState>) -> Result<Response, ApiError> {
    let keys: Vec<serde_json::Value> =
        state.store.signing_keys().await?.iter().filter_map(|k| serde_json::from_str(&k.public_jwk).ok()).collect();
    let mut response = axum::Json(serde_json::json!({ "keys": keys })).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=300"));
    Ok(response)
}

async fn render(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    let counts = state.store.queue_counts(&caller.tenant_id).await?;
    for (status, n) in [
        ("pending", counts.pending),
        ("in_flight", counts.in_flight),
        ("done", counts.done),
        ("dead", counts.dead),
        ("withheld", counts.withheld),
    ] {
        metrics::gauge!("telechart_deliveries", "status" => status, "tenant" => caller.tenant_id.clone()).set(n as f64);
    }
    let mut text = prometheus_handle().map(|h| h.render()).unwrap_or_default();
    // The KPIs, computed at scrape time from the same report as the dashboard and the CSV.
    text.push_str(&crate::analytics::metrics_block(&state, std::slice::from_ref(&caller.tenant_id)).await?);
    let mut response = text.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    Ok(response)
}
