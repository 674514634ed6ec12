//! The patient's consents as the FHIR Consent engine reads them, for the gate in the server and
//! the worker's last check before a disclosure leaves.

use telechart_policy::consent::{Consent, ConsentPolicy, ConsentSet, Decision};
use telechart_policy::governed::GovernedFlow;
use telechart_store::Store;

use crate::SyncError;

/// The tenant's current consents. One that no longer parses is a fault, never skipped: it could
/// be the one that denies.
pub async fn consent_set(store: &Store, tenant_id: &str) -> Result<ConsentSet, SyncError> {
    let mut consents = Vec::new();
    for version in store.current_consents(tenant_id).await? {
        let json: serde_json::Value = serde_json::from_str(version.resource.expose())
            .map_err(|e| SyncError::Consent(format!("consent {} is not JSON: {e}", version.consent_id)))?;
        consents.push(
            Consent::from_fhir(&json)
                .map_err(|e| SyncError::Consent(format!("consent {} does not parse: {e}", version.consent_id)))?,
        );
    }
    Ok(ConsentSet::new(consents))
}

/// Decides `flow` for `patient` at `at` on the tenant's consents, under the tenant's `policy`.
pub async fn decide(
    store: &Store,
    tenant_id: &str,
    patient: &str,
    flow: &GovernedFlow,
    at: chrono::DateTime<chrono::Utc>,
    policy: &ConsentPolicy,
) -> Result<(telechart_policy::consent::AccessRequest, Decision), SyncError> {
    let set = consent_set(store, tenant_id).await?;
    let request = flow.request(patient, at);
    let decision = set.decide(policy, &request);
    Ok((request, decision))
}

/// The flow of sending a visit's record to the organisation behind `connection_id`.
pub fn disclosure_flow(connection_id: &str) -> GovernedFlow {
    GovernedFlow::Disclose { recipient: format!("connection {connection_id}") }
}
