//! The HTTP face of Telechart: the versioned REST API (`/api/v1`) the telehealth platform calls,
//! `/metrics`, health.
//!
//! Invariant: handlers validate, call library crates and translate errors; the visit rules live
//! in `visit`, the SQL in `store`, EHR access in `ehr`.

mod api;
mod auth;
mod error;
mod metrics_export;

use std::net::SocketAddr;

use axum::Router;
use telechart_store::{Clock, Store};
use telechart_sync::{Connections, QueueSignal};

pub use auth::{Access, Caller, RouteSpec};
pub use error::ApiError;
pub use metrics_export::prometheus_handle;

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub clock: Clock,
    pub identifier_system: String,
    pub connections: Connections,
    pub signal: QueueSignal,
}

fn routes() -> auth::Routes {
    api::routes().merge(metrics_export::routes())
}

/// Every route with its method and the permission it requires, taken from the router's own
/// builder (the permission-matrix test walks this).
pub fn route_specs() -> Vec<RouteSpec> {
    routes().into_parts().1
}

pub fn router(state: AppState) -> Router {
    // Install the recorder before any worker records, so no early sample is lost.
    prometheus_handle();
    let (router, _) = routes().into_parts();
    router
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::authenticate))
        .fallback(|| async { ApiError::NotFound { field: None, message: "no such endpoint".to_owned() } })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

/// A server listening on a socket.
pub struct RunningServer {
    pub addr: SocketAddr,
    pub base_url: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningServer {
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = self.task.await;
    }
}

pub async fn spawn(state: AppState, addr: SocketAddr) -> Result<RunningServer, ServerError> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| ServerError::Bind { addr, source })?;
    let addr = listener.local_addr().map_err(|source| ServerError::Bind { addr, source })?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let app = router(state);
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
    });
    Ok(RunningServer { addr, base_url: format!("http://{addr}"), shutdown: Some(tx), task })
}
