//! Appointments coming in from the EHR, by two roads into one handler: a poll per connection
//! (`_lastUpdated` from a persisted watermark less an overlap window, or a date window where the
//! EHR cannot search by `_lastUpdated`) and rest-hook notifications in the R4 Subscriptions
//! Backport shape, full-resource or id-only. Notifications come unordered and at least once; a
//! snapshot older than what is kept, or one that changes nothing, does nothing. The periodic
//! poll repairs any notification that never came. Changes are announced to the platforms
//! (`appointment.booked`, `appointment.cancelled`, `appointment.updated`) in the same commit.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use telechart_store::{AppointmentSnapshot, Clock, Phi, Store};
use telechart_visit::VisitState;

use crate::{Connections, Platforms, SyncError};

/// What applying one Appointment did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Booked(String),
    Cancelled(String),
    Updated(String),
    /// Already known as it is, or older than what is known.
    Unchanged(String),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PollReport {
    pub seen: usize,
    pub changed: usize,
}

pub struct AppointmentInbox {
    store: Store,
    clock: Clock,
    connections: Connections,
    platforms: Platforms,
    tenant_id: String,
    /// How far back each poll looks before the watermark (clock skew, late commits at the EHR).
    pub overlap: Duration,
}

fn millis(text: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(text).ok().map(|t| t.with_timezone(&Utc).timestamp_millis())
}

fn snapshot(connection_id: &str, resource: &Value, now_ms: i64) -> Result<AppointmentSnapshot, SyncError> {
    let bad = |reason: &str| SyncError::Mapping {
        artifact_id: format!("inbound Appointment on {connection_id}"),
        reason: reason.to_owned(),
    };
    if resource["resourceType"] != "Appointment" {
        return Err(bad("not an Appointment"));
    }
    let id = resource["id"].as_str().ok_or_else(|| bad("an Appointment without an id"))?;
    let status = resource["status"].as_str().ok_or_else(|| bad("an Appointment without a status"))?;
    let actors: Vec<&str> = resource["participant"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["actor"]["reference"].as_str())
        .collect();
    let patient = actors.iter().find(|r| r.starts_with("Patient/")).ok_or_else(|| bad("no Patient participant"))?;
    Ok(AppointmentSnapshot {
        connection_id: connection_id.to_owned(),
        appointment_id: id.to_owned(),
        status: status.to_owned(),
        start: resource["start"].as_str().map(str::to_owned),
        patient: Phi::new((*patient).to_owned()),
        practitioner: actors.iter().find(|r| r.starts_with("Practitioner/")).map(|r| (*r).to_owned()),
        // Without lastUpdated the snapshot counts as current; the content comparison still holds.
        last_updated_ms: resource
            .pointer("/meta/lastUpdated")
            .and_then(Value::as_str)
            .and_then(millis)
            .unwrap_or(now_ms),
    })
}

impl AppointmentInbox {
    pub fn new(store: Store, clock: Clock, connections: Connections, platforms: Platforms, tenant_id: &str) -> Self {
        AppointmentInbox {
            store,
            clock,
            connections,
            platforms,
            tenant_id: tenant_id.to_owned(),
            overlap: Duration::from_secs(300),
        }
    }

    /// Keeps the Appointment if it is news, announcing what changed.
    pub async fn apply(&self, connection_id: &str, resource: &Value) -> Result<Applied, SyncError> {
        let now = self.clock.now_ms();
        let snap = snapshot(connection_id, resource, now)?;
        let reference = format!("Appointment/{}", snap.appointment_id);
        // Two writers (poll and notification) may race: the loser reads again and decides again.
        for _ in 0..5 {
            let known = self.store.known_appointment(&self.tenant_id, connection_id, &snap.appointment_id).await?;
            let (event, applied) = match &known {
                Some(k) if snap.last_updated_ms < k.last_updated_ms => return Ok(Applied::Unchanged(reference)),
                Some(k) if k.status == snap.status && snap.last_updated_ms == k.last_updated_ms => {
                    return Ok(Applied::Unchanged(reference));
                }
                Some(k) if k.status != snap.status && snap.status == "cancelled" => {
                    ("appointment.cancelled", Applied::Cancelled(reference.clone()))
                }
                Some(k) if k.status != snap.status && snap.status == "booked" => {
                    ("appointment.booked", Applied::Booked(reference.clone()))
                }
                Some(_) => ("appointment.updated", Applied::Updated(reference.clone())),
                None if snap.status == "booked" => ("appointment.booked", Applied::Booked(reference.clone())),
                // First seen in another state (already over, or cancelled before we knew it): kept quietly.
                None => ("", Applied::Unchanged(reference.clone())),
            };
            let webhooks = if event.is_empty() {
                Vec::new()
            } else {
                let body = json!({
                    "id": uuid::Uuid::now_v7().to_string(),
                    "type": event,
                    "occurredAt": telechart_visit::format_instant(self.clock.now()),
                    "data": {"connection": connection_id, "appointment": reference, "status": snap.status,
                             "start": snap.start, "patient": snap.patient.expose(), "practitioner": snap.practitioner},
                });
                self.platforms.webhooks_for(&self.tenant_id, event, &body)
            };
            if self.store.apply_appointment(&self.tenant_id, &snap, known.as_ref(), &webhooks, now).await? {
                if matches!(snap.status.as_str(), "cancelled" | "noshow") {
                    self.follow_ehr_status(connection_id, &snap.appointment_id, &snap.status).await?;
                }
                return Ok(applied);
            }
        }
        Err(SyncError::NotReady(format!("a quiet moment to record {reference}")))
    }

    /// The EHR cancelled the appointment, or marked it a no-show: a Telechart visit for it that
    /// has not begun follows (its Encounter, if one was opened, is cancelled). A visit already in
    /// the call is left as it is: R4 cannot cancel an encounter that began.
    async fn follow_ehr_status(
        &self,
        connection_id: &str,
        appointment_id: &str,
        status: &str,
    ) -> Result<(), SyncError> {
        let Some(visit) = self.store.visit_for_appointment(&self.tenant_id, connection_id, appointment_id).await?
        else {
            return Ok(());
        };
        let from: VisitState = visit.state.parse().map_err(|_| SyncError::NotReady("a known visit state".into()))?;
        let to = if status == "noshow" { VisitState::NoShow } else { VisitState::Cancelled };
        let Ok(changes) = from.move_to(to, self.clock.now()) else {
            tracing::info!(visit = %visit.id, from = %from, "the EHR ended the appointment; the visit is past following it");
            return Ok(());
        };
        let mut artifacts = Vec::with_capacity(changes.len());
        for change in changes {
            let payload = serde_json::to_string(&change)
                .map_err(|e| SyncError::Mapping { artifact_id: visit.id.clone(), reason: e.to_string() })?;
            artifacts.push(telechart_store::NewArtifact {
                id: uuid::Uuid::now_v7().to_string(),
                kind: change.kind().as_str().to_owned(),
                resource_type: change.kind().resource_type().to_owned(),
                identifier: visit.id.clone(),
                payload: Phi::new(payload),
                disclosable: false,
            });
        }
        let body = json!({
            "id": uuid::Uuid::now_v7().to_string(),
            "type": "visit.state-changed",
            "occurredAt": telechart_visit::format_instant(self.clock.now()),
            "data": {"visitId": visit.id, "appointment": format!("Appointment/{appointment_id}"),
                     "connection": connection_id, "from": from.as_str(), "to": to.as_str()},
        });
        let webhooks = self.platforms.webhooks_for(&self.tenant_id, "visit.state-changed", &body);
        let audit = telechart_store::AuditEntry {
            tenant_id: self.tenant_id.clone(),
            actor: format!("ehr:{connection_id}"),
            action: "visit.transition".to_owned(),
            entity_type: "visit".to_owned(),
            entity_id: visit.id.clone(),
            visit_id: Some(visit.id.clone()),
            phi: true,
            detail: format!("the EHR set Appointment/{appointment_id} {status}; visit {from} → {to}"),
            purpose_of_use: Some("TREAT".to_owned()),
            ..Default::default()
        };
        self.store
            .record_event(
                &self.tenant_id,
                &visit.id,
                visit.version,
                to.as_str(),
                &artifacts,
                std::slice::from_ref(&visit.connection_id),
                &webhooks,
                &audit,
                self.clock.now_ms(),
            )
            .await?;
        Ok(())
    }

    /// One poll of the connection's appointments; moves the watermark on.
    pub async fn poll(&self, connection_id: &str) -> Result<PollReport, SyncError> {
        let client =
            self.connections.client(&self.tenant_id, connection_id).await?.in_lane(telechart_ehr::Lane::Inbound);
        let now = self.clock.now();
        let watermark = self.store.poll_watermark(&self.tenant_id, connection_id).await?;
        let overlap = chrono::Duration::from_std(self.overlap).unwrap_or_default();
        let today = now.date_naive();
        let params: Vec<(String, String)> = match watermark {
            Some(w) if client.profile.capabilities.last_updated_search => {
                let since = DateTime::from_timestamp_millis(w).unwrap_or(now) - overlap;
                // A date-only `_lastUpdated` re-reads the day so far; unchanged versions are no-ops.
                let since = if client.profile.capabilities.last_updated_date_only {
                    since.date_naive().to_string()
                } else {
                    telechart_visit::format_instant(since)
                };
                vec![("_lastUpdated".into(), format!("ge{since}"))]
            }
            // The first poll, or an EHR that cannot search by _lastUpdated: today and the week ahead.
            _ => vec![
                ("date".into(), format!("ge{today}")),
                ("date".into(), format!("le{}", today + chrono::Days::new(7))),
            ],
        };
        let pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let found = client.search("Appointment", &pairs).await?;
        let mut report = PollReport { seen: found.len(), changed: 0 };
        let mut newest = watermark.unwrap_or(0);
        for resource in &found {
            if let Some(updated) = resource.pointer("/meta/lastUpdated").and_then(Value::as_str).and_then(millis) {
                newest = newest.max(updated);
            }
            match self.apply(connection_id, resource).await {
                Ok(Applied::Unchanged(_)) => {}
                Ok(_) => report.changed += 1,
                // One malformed appointment must not stop the others.
                Err(SyncError::Mapping { reason, .. }) => {
                    tracing::warn!(connection = connection_id, reason, "appointment skipped")
                }
                Err(e) => return Err(e),
            }
        }
        let newest = if newest == 0 { now.timestamp_millis() } else { newest };
        self.store.advance_poll_watermark(&self.tenant_id, connection_id, newest, now.timestamp_millis()).await?;
        Ok(report)
    }

    /// A rest-hook notification (R4 Subscriptions Backport: a `history` Bundle whose first entry
    /// is the SubscriptionStatus). Full-resource entries are applied as sent; id-only ones are
    /// read from the EHR first, so what is kept is always the EHR's current version.
    pub async fn notification(&self, connection_id: &str, bundle: &Value) -> Result<Vec<Applied>, SyncError> {
        let bad = |reason: &str| SyncError::Mapping {
            artifact_id: format!("notification on {connection_id}"),
            reason: reason.to_owned(),
        };
        if bundle["resourceType"] != "Bundle" {
            return Err(bad("the notification must be a Bundle"));
        }
        let entries = bundle["entry"].as_array().ok_or_else(|| bad("the Bundle has no entries"))?;
        let mut references: Vec<String> = Vec::new();
        let mut resources: Vec<Value> = Vec::new();
        for entry in entries {
            let resource = &entry["resource"];
            match resource["resourceType"].as_str() {
                Some("Parameters") => {
                    // SubscriptionStatus: its notification-event focus names what changed.
                    for parameter in resource["parameter"].as_array().into_iter().flatten() {
                        if parameter["name"] != "notification-event" {
                            continue;
                        }
                        for part in parameter["part"].as_array().into_iter().flatten() {
                            if part["name"] == "focus"
                                && let Some(r) = part["valueReference"]["reference"].as_str()
                            {
                                references.push(r.to_owned());
                            }
                        }
                    }
                }
                Some("Appointment") => resources.push(resource.clone()),
                Some(_) => {}
                None => {
                    if let Some(url) = entry["fullUrl"].as_str() {
                        references.push(url.to_owned());
                    }
                }
            }
        }
        let mut applied = Vec::new();
        for resource in &resources {
            applied.push(self.apply(connection_id, resource).await?);
        }
        let client =
            self.connections.client(&self.tenant_id, connection_id).await?.in_lane(telechart_ehr::Lane::Inbound);
        for reference in references {
            // `Appointment/1`, or a full URL ending so: the resource is read from the connection
            // itself, never from a URL the sender chose.
            let mut tail = reference.rsplit('/');
            let (Some(id), Some("Appointment")) = (tail.next(), tail.next()) else { continue };
            if resources.iter().any(|r| r["id"] == id) {
                continue;
            }
            let current = client.read("Appointment", id).await?;
            applied.push(self.apply(connection_id, &current.resource).await?);
        }
        Ok(applied)
    }
}
