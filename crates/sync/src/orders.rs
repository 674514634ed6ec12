//! Orders followed to completion: for each ServiceRequest and MedicationRequest Telechart wrote
//! and whose status is not final, read the EHR's status and the results that answer it
//! (DiagnosticReport and Observation `basedOn` the order), and keep them on the visit.

use serde_json::{Value, json};
use telechart_store::{Clock, OpenOrder, Phi, Store};

use crate::{Connections, SyncError};

pub struct OrderTracker {
    store: Store,
    clock: Clock,
    connections: Connections,
    tenant_id: String,
}

/// A result as the visit shows it: what, how much, how final.
fn summarize(resource: &Value) -> Value {
    let code = &resource["code"];
    let name = code["text"].as_str().or_else(|| code["coding"][0]["display"].as_str()).unwrap_or("result");
    let value = match (&resource["valueQuantity"], &resource["valueString"], &resource["conclusion"]) {
        (Value::Object(q), _, _) => {
            let unit = q.get("unit").or_else(|| q.get("code")).and_then(Value::as_str).unwrap_or_default();
            q.get("value").map(|v| format!("{v} {unit}").trim().to_owned())
        }
        (_, Value::String(s), _) | (_, _, Value::String(s)) => Some(s.clone()),
        _ => None,
    };
    json!({
        "resource": format!("{}/{}", resource["resourceType"].as_str().unwrap_or_default(), resource["id"].as_str().unwrap_or_default()),
        "status": resource["status"],
        "name": name,
        "value": value,
        "effective": resource["effectiveDateTime"].as_str().or_else(|| resource["issued"].as_str()),
    })
}

impl OrderTracker {
    pub fn new(store: Store, clock: Clock, connections: Connections, tenant_id: &str) -> Self {
        OrderTracker { store, clock, connections, tenant_id: tenant_id.to_owned() }
    }

    /// One pass over the open orders; returns how many were read.
    pub async fn run_once(&self) -> Result<usize, SyncError> {
        let open = self.store.open_orders(&self.tenant_id, 100).await?;
        let mut checked = 0;
        for order in &open {
            match self.check(order).await {
                Ok(()) => checked += 1,
                // One EHR answering badly must not stop the others; the next pass tries again.
                Err(e) => tracing::warn!(order = %order.artifact_id, error = %e, "order status not read"),
            }
        }
        Ok(checked)
    }

    async fn check(&self, order: &OpenOrder) -> Result<(), SyncError> {
        let client =
            self.connections.client(&self.tenant_id, &order.connection_id).await?.in_lane(telechart_ehr::Lane::Inbound);
        let current = client.read(&order.resource_type, &order.ehr_id).await?;
        let status = current.resource["status"].as_str().unwrap_or("unknown").to_owned();
        let mut results = Vec::new();
        if order.resource_type == "ServiceRequest" {
            let based_on = format!("ServiceRequest/{}", order.ehr_id);
            for rtype in ["DiagnosticReport", "Observation"] {
                for found in client.search(rtype, &[("based-on", based_on.as_str())]).await? {
                    results.push(summarize(&found));
                }
            }
        }
        let results = Phi::new(Value::Array(results).to_string());
        self.store.record_order_status(&self.tenant_id, order, &status, &results, self.clock.now_ms()).await?;
        Ok(())
    }
}
