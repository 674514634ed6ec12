//! FHIR clients per EHR connection, built from the stored connection rows on first use.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use telechart_ehr::{FhirClient, VendorProfile, WireTap};
use telechart_policy::EgressRegistry;
use telechart_store::Store;

use crate::SyncError;

#[derive(Clone)]
pub struct Connections {
    store: Store,
    clients: Arc<RwLock<HashMap<(String, String), FhirClient>>>,
    timeout: Duration,
    tap: Option<WireTap>,
    egress: Arc<EgressRegistry>,
}

impl Connections {
    pub fn new(store: Store, timeout: Duration) -> Self {
        Connections { store, clients: Arc::default(), timeout, tap: None, egress: Arc::default() }
    }

    /// The destinations PHI may go to (each with its BAA); loopback aside, nothing else.
    pub fn with_egress(mut self, egress: EgressRegistry) -> Self {
        self.egress = Arc::new(egress);
        self
    }

    /// Records every write body as sent (the demo's `--export-sent`).
    pub fn with_tap(mut self, tap: WireTap) -> Self {
        self.tap = Some(tap);
        self
    }

    pub async fn client(&self, tenant_id: &str, connection_id: &str) -> Result<FhirClient, SyncError> {
        let key = (tenant_id.to_owned(), connection_id.to_owned());
        if let Some(client) = self.clients.read().ok().and_then(|c| c.get(&key).cloned()) {
            return Ok(client);
        }
        let row = self
            .store
            .connection(tenant_id, connection_id)
            .await?
            .ok_or_else(|| SyncError::UnknownConnection(connection_id.to_owned()))?;
        // Checked before any client exists: no byte of PHI leaves without a BAA behind it.
        self.egress.check(&row.base_url).map_err(|e| SyncError::Egress(e.to_string()))?;
        let profile = VendorProfile::by_name(&row.profile)?;
        let mut client = FhirClient::new(&row.base_url, profile, self.timeout)?;
        if let Some(tap) = &self.tap {
            client = client.with_tap(tap.clone());
        }
        if let Ok(mut clients) = self.clients.write() {
            clients.insert(key, client.clone());
        }
        Ok(client)
    }
}
