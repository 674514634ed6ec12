//! FHIR clients per EHR connection, built from the stored connection rows on first use.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use telechart_ehr::{FhirClient, VendorProfile, WireTap};
use telechart_store::Store;

use crate::SyncError;

#[derive(Clone)]
pub struct Connections {
    store: Store,
    clients: Arc<RwLock<HashMap<(String, String), FhirClient>>>,
    timeout: Duration,
    tap: Option<WireTap>,
}

impl Connections {
    pub fn new(store: Store, timeout: Duration) -> Self {
        Connections { store, clients: Arc::default(), timeout, tap: None }
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
