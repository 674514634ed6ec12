//! Delivery workers: claim due deliveries, map each artifact to FHIR, write it through `ehr`,
//! record the EHR's id and version; retry with backoff, reconcile unknown outcomes by
//! identifier, dead-letter what cannot succeed.
//!
//! Invariant: no vendor names here. What an EHR accepts comes from its profile's capabilities.

pub mod alerts;
mod backoff;
mod connections;
pub mod consent;
mod faults;
pub mod inbound;
mod orders;
pub mod plan;
mod reconcile;
pub mod webhooks;
mod worker;

pub use backoff::Backoff;
pub use connections::{Connections, connection_tenant};
pub use faults::{FaultPlan, FaultPoint};
pub use inbound::{Applied, AppointmentInbox, PollReport};
pub use orders::OrderTracker;
pub use plan::{Fallback, WritePlan};
pub use webhooks::{PhiBasis, Platform, Platforms, WebhookSender};
pub use worker::{DeliveryOutcome, QueueSignal, SyncConfig, Worker};

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Store(#[from] telechart_store::StoreError),
    #[error("analytics: {0}")]
    Analytics(String),
    #[error(transparent)]
    Ehr(#[from] telechart_ehr::EhrError),
    #[error("artifact {artifact_id} cannot be mapped: {reason}")]
    Mapping { artifact_id: String, reason: String },
    #[error("EHR connection {0} is not configured")]
    UnknownConnection(String),
    #[error("{0}")]
    Egress(String),
    #[error("waiting for {0}")]
    NotReady(String),
    /// Whether an earlier attempt reached the EHR cannot be told from here: a person checks the
    /// chart, then replays (or not).
    #[error("a person must check the chart: {0}")]
    NeedsReview(String),
    #[error("the worker stopped at fault point {0:?}")]
    Crashed(FaultPoint),
    /// A stored consent cannot be read: nothing governed by consent moves until it is fixed.
    #[error("{0}")]
    Consent(String),
    /// The patient's consent does not let this leave; it is not sent, ever.
    #[error("withheld: {0}")]
    Withheld(String),
}
