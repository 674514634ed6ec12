//! The delivery worker.
//!
//! One delivery: load visit + artifact → map to FHIR → (reconcile if an earlier attempt may have
//! reached the EHR) → write → record the EHR's id and version with an audit entry, in one commit.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use telechart_ehr::{EhrError, EncounterWrite, FailureClass, FhirClient, Written};
use telechart_store::{AuditEntry, ClaimedDelivery, Clock, DeliveryRow, Store, WorkItem};
use telechart_visit::{Artifact, EncounterStatusChange, VisitContext};
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::plan::{Fallback, WritePlan};
use crate::{Backoff, Connections, FaultPlan, FaultPoint, SyncError};
use telechart_fhir::readback::ReadBack;

mod paths;

#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// The tenant whose deliveries this worker writes.
    pub tenant_id: String,
    /// This worker's lease owner name; unique per process.
    pub worker_id: String,
    /// Requests in flight to the EHRs at once (the load this worker puts on them).
    pub concurrency: usize,
    /// How long a claim stays ours without completion before another worker may take it.
    pub lease: Duration,
    pub backoff: Backoff,
    /// Attempts after which a still-failing delivery becomes a dead letter.
    pub max_attempts: u32,
    /// Age (since it was queued) after which a still-failing delivery becomes a dead letter,
    /// however few its attempts: a chart entry days late needs a person, not another retry.
    pub max_age: Duration,
    /// Longest idle sleep between queue polls when nothing signals new work.
    pub idle_poll: Duration,
    /// System of the identifiers Telechart mints on every resource it writes.
    pub identifier_system: String,
    /// The tenant's choices where FHIR R4 leaves consent evaluation open (Telechart policy).
    pub consent_policy: telechart_policy::consent::ConsentPolicy,
}

impl SyncConfig {
    pub fn new(
        tenant_id: impl Into<String>,
        worker_id: impl Into<String>,
        identifier_system: impl Into<String>,
    ) -> Self {
        SyncConfig {
            tenant_id: tenant_id.into(),
            worker_id: worker_id.into(),
            concurrency: 8,
            lease: Duration::from_secs(60),
            backoff: Backoff { base: Duration::from_secs(2), max: Duration::from_secs(300) },
            max_attempts: 12,
            max_age: Duration::from_secs(72 * 3600),
            idle_poll: Duration::from_millis(500),
            identifier_system: identifier_system.into(),
            consent_policy: telechart_policy::consent::ConsentPolicy::default(),
        }
    }
}

/// Wakes idle workers when new deliveries are recorded.
#[derive(Debug, Clone, Default)]
pub struct QueueSignal(Arc<Notify>);

impl QueueSignal {
    pub fn notify(&self) {
        self.0.notify_waiters();
        self.0.notify_one();
    }

    async fn notified(&self) {
        self.0.notified().await
    }
}

/// What happened to one claimed delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    Done {
        resource: String,
        adopted: bool,
    },
    Retry {
        error: String,
    },
    Dead {
        reason: String,
    },
    /// Not sent: the patient's consent does not let it leave.
    Withheld {
        reason: String,
    },
    /// Another worker holds it now (our lease had expired).
    LeaseLost,
    /// A fault point fired: the worker dies here.
    Crashed(FaultPoint),
}

/// One delivery, loaded and planned.
struct Prepared {
    item: WorkItem,
    artifact: Artifact,
    client: FhirClient,
    ctx: VisitContext,
    plan: WritePlan,
    /// Set for a delivery to an organisation the visit is disclosed to: the consent decision
    /// that let it go, for its audit record.
    disclosed: Option<String>,
}

/// What a write left in the EHR.
struct Delivered {
    written: Written,
    /// An earlier attempt's write, found and adopted.
    adopted: bool,
    /// What the EHR kept of what was sent, where it could be read back.
    readback: Option<ReadBack>,
}

impl From<(Written, bool)> for Delivered {
    fn from((written, adopted): (Written, bool)) -> Self {
        Delivered { written, adopted, readback: None }
    }
}

#[derive(Clone)]
pub struct Worker {
    store: Store,
    clock: Clock,
    config: Arc<SyncConfig>,
    connections: Connections,
    faults: FaultPlan,
    signal: QueueSignal,
    /// One permit per EHR request in flight, handed to the clinical lane before backfill.
    /// Loading work and committing results happen outside it, so database time overlaps EHR
    /// time instead of adding to it.
    ehr_permits: Arc<telechart_ehr::Pacing>,
}

impl Worker {
    pub fn new(store: Store, clock: Clock, config: SyncConfig, connections: Connections, signal: QueueSignal) -> Self {
        // A fixed size: it never hears an EHR's answer; each connection's client adapts its own.
        let ehr_permits = telechart_ehr::Pacing::new(config.concurrency.max(1));
        Worker {
            store,
            clock,
            config: Arc::new(config),
            connections,
            faults: FaultPlan::default(),
            signal,
            ehr_permits,
        }
    }

    /// Deliveries in the pipeline at once: twice the EHR concurrency, so the next delivery is
    /// loaded and waiting when a request slot frees up.
    fn depth(&self) -> usize {
        self.config.concurrency.max(1) * 2
    }

    pub fn with_faults(mut self, faults: FaultPlan) -> Self {
        self.faults = faults;
        self
    }

    pub fn config(&self) -> &SyncConfig {
        &self.config
    }

    /// Claims one batch and delivers it; returns the outcomes. Stops at the first fault point that
    /// fires, leaving the rest of its claims leased, as a crashed worker would.
    pub async fn run_once(&self) -> Result<Vec<DeliveryOutcome>, SyncError> {
        let claimed = self.claim(self.config.concurrency).await?;
        let mut tasks = JoinSet::new();
        for delivery in claimed {
            let worker = self.clone();
            tasks.spawn(async move { worker.deliver(delivery).await });
        }
        let mut outcomes = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            let outcome = joined.map_err(|e| SyncError::NotReady(format!("delivery task failed: {e}")))??;
            let crashed = matches!(outcome, DeliveryOutcome::Crashed(_));
            outcomes.push(outcome);
            if crashed {
                tasks.abort_all();
                break;
            }
        }
        Ok(outcomes)
    }

    /// Runs until `stop` resolves, or until a fault point fires (then returns the fault).
    pub async fn run(self, stop: impl std::future::Future<Output = ()>) -> Result<(), SyncError> {
        tokio::pin!(stop);
        let mut tasks: JoinSet<Result<DeliveryOutcome, SyncError>> = JoinSet::new();
        loop {
            let free = self.depth().saturating_sub(tasks.len());
            let mut claimed_any = false;
            if free > 0 {
                match self.claim(free).await {
                    Ok(batch) => {
                        claimed_any = !batch.is_empty();
                        for delivery in batch {
                            let worker = self.clone();
                            tasks.spawn(async move { worker.deliver(delivery).await });
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "claiming deliveries failed; will retry"),
                }
            }
            if claimed_any && tasks.len() < self.depth() {
                continue;
            }
            // With writes in flight, a finishing write wakes the loop; only an idle worker asks
            // the queue when the next delivery falls due.
            let idle = if tasks.is_empty() { self.idle_wait().await } else { self.config.idle_poll };
            tokio::select! {
                () = &mut stop => {
                    // Let in-flight writes finish so their results are recorded.
                    while let Some(joined) = tasks.join_next().await {
                        if let Ok(Err(e)) = joined {
                            tracing::warn!(error = %e, "delivery failed during shutdown");
                        }
                    }
                    return Ok(());
                }
                Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                    // Collect every write that has finished, so the next claim fills all free
                    // slots at once: claims stay few however fast writes complete.
                    let mut finished = vec![joined];
                    while let Some(more) = tasks.try_join_next() {
                        finished.push(more);
                    }
                    for joined in finished {
                        match joined {
                            Ok(Ok(DeliveryOutcome::Crashed(point))) => {
                                tasks.abort_all();
                                return Err(SyncError::Crashed(point));
                            }
                            Ok(Ok(_)) => {}
                            Ok(Err(e)) => tracing::warn!(error = %e, "delivery left for lease expiry"),
                            Err(e) => tracing::error!(error = %e, "delivery task panicked"),
                        }
                    }
                }
                () = self.signal.notified(), if tasks.len() < self.depth() => {}
                () = tokio::time::sleep(idle), if tasks.len() < self.depth() => {}
            }
        }
    }

    /// Sleep until the next delivery falls due (capped by `idle_poll`).
    async fn idle_wait(&self) -> Duration {
        let now = self.clock.now_ms();
        match self.store.next_due_at(&self.config.tenant_id).await {
            Ok(Some(at)) if at > now => {
                Duration::from_millis(u64::try_from(at - now).unwrap_or(0)).min(self.config.idle_poll)
            }
            Ok(Some(_)) => Duration::from_millis(20),
            _ => self.config.idle_poll,
        }
    }

    async fn claim(&self, limit: usize) -> Result<Vec<ClaimedDelivery>, SyncError> {
        let now = self.clock.now_ms();
        let lease_until = now + i64::try_from(self.config.lease.as_millis()).unwrap_or(i64::MAX / 2);
        let limit = i64::try_from(limit).unwrap_or(1);
        Ok(self.store.claim_due(&self.config.tenant_id, &self.config.worker_id, lease_until, now, limit).await?)
    }

    /// Delivers one claimed delivery and records the outcome. An `Err` means our own database
    /// failed: the row keeps its lease and is taken again when the lease expires.
    pub async fn deliver(&self, claimed: ClaimedDelivery) -> Result<DeliveryOutcome, SyncError> {
        let started = Instant::now();
        let row = &claimed.row;
        let prepared = self.prepare(&claimed).await;
        let plan = prepared.as_ref().ok().map(|p| p.plan.label());
        let consent = prepared.as_ref().ok().and_then(|p| p.disclosed.clone());
        let result = match prepared {
            Ok(prepared) => self.write(&claimed, prepared).await,
            Err(e) => Err(e),
        };
        let outcome = match result {
            Ok(Delivered { written, adopted, readback }) => {
                if self.faults.fires(FaultPoint::AfterEhrCommitted) {
                    return Ok(DeliveryOutcome::Crashed(FaultPoint::AfterEhrCommitted));
                }
                let resource = format!("{}/{}", row.resource_type, written.id);
                let detail = format!(
                    "{} {resource} version {} on connection {} ({})",
                    if adopted { "adopted" } else { "wrote" },
                    written.version.as_deref().unwrap_or("-"),
                    row.connection_id,
                    plan.as_deref().unwrap_or("-"),
                );
                let mut audit = self.audit(row, "delivery.written", detail);
                audit.consent = consent;
                if let Some(r) = &readback {
                    metrics::counter!("telechart_readback_fields_sent_total", "resource_type" => row.resource_type.clone())
                        .increment(u64::from(r.fields_sent));
                    metrics::counter!("telechart_readback_fields_kept_total", "resource_type" => row.resource_type.clone())
                        .increment(u64::from(r.fields_kept));
                }
                let readback = readback.and_then(|r| serde_json::to_string(&r).ok());
                let completion = telechart_store::Completion {
                    ehr_resource_id: &written.id,
                    ehr_version: written.version.as_deref(),
                    plan: plan.as_deref(),
                    readback: readback.as_deref(),
                };
                let ours = self
                    .store
                    .complete_delivery(row, &self.config.worker_id, &completion, &audit, self.clock.now_ms())
                    .await?;
                if ours { DeliveryOutcome::Done { resource, adopted } } else { DeliveryOutcome::LeaseLost }
            }
            Err(SyncError::Crashed(point)) => return Ok(DeliveryOutcome::Crashed(point)),
            Err(SyncError::Withheld(reason)) => self.withhold(row, &reason).await?,
            Err(SyncError::Store(e)) => return Err(SyncError::Store(e)),
            Err(err) => {
                // Found out only on the way (the EHR, or what this depends on, has no path for
                // it): the plan becomes "not deliverable", with the reason.
                let plan = match &err {
                    SyncError::Ehr(EhrError::NotSupported(reason))
                        if !plan.as_deref().is_some_and(|p| p.starts_with("not deliverable")) =>
                    {
                        Some(format!("not deliverable: {reason}"))
                    }
                    _ => plan.clone(),
                };
                self.fail(row, &err, plan.as_deref()).await?
            }
        };
        if let Some(plan) = &plan {
            let path = plan.split(':').next().unwrap_or_default().to_owned();
            metrics::counter!("telechart_delivery_plans_total", "plan" => path, "resource_type" => row.resource_type.clone())
                .increment(u64::from(matches!(outcome, DeliveryOutcome::Done { .. } | DeliveryOutcome::Dead { .. })));
        }
        let label = match &outcome {
            DeliveryOutcome::Done { .. } => "done",
            DeliveryOutcome::Retry { .. } => "retry",
            DeliveryOutcome::Dead { .. } => "dead",
            DeliveryOutcome::Withheld { .. } => "withheld",
            DeliveryOutcome::LeaseLost => "lease_lost",
            DeliveryOutcome::Crashed(_) => "crashed",
        };
        metrics::counter!("telechart_deliveries_total", "outcome" => label, "resource_type" => row.resource_type.clone()).increment(1);
        metrics::histogram!("telechart_delivery_attempt_seconds", "resource_type" => row.resource_type.clone())
            .record(started.elapsed().as_secs_f64());
        if matches!(outcome, DeliveryOutcome::Done { .. }) {
            let age = (self.clock.now_ms() - row.created_at).max(0) as f64 / 1000.0;
            metrics::histogram!("telechart_delivery_age_seconds").record(age);
        }
        Ok(outcome)
    }

    async fn fail(&self, row: &DeliveryRow, err: &SyncError, plan: Option<&str>) -> Result<DeliveryOutcome, SyncError> {
        let now = self.clock.now();
        let message = err.to_string();
        let mut class = match err {
            SyncError::Ehr(e) => e.class(),
            SyncError::NotReady(_) => FailureClass::Transient { retry_after: None },
            SyncError::UnknownConnection(_)
            | SyncError::Mapping { .. }
            | SyncError::Egress(_)
            | SyncError::NeedsReview(_)
            | SyncError::Withheld(_) => FailureClass::Permanent,
            // A stored consent that cannot be read holds governed flows until someone fixes it.
            SyncError::Store(_) | SyncError::Crashed(_) | SyncError::Consent(_) | SyncError::Analytics(_) => {
                FailureClass::Transient { retry_after: None }
            }
        };
        // A refusal may mean the patient was merged away: follow the merge and try again at once.
        if class == FailureClass::Permanent
            && let SyncError::Ehr(EhrError::Refused { status: 400..=499, .. }) = err
            && self.follow_merges(&row.tenant_id, &row.visit_id, &row.connection_id).await?
        {
            class = FailureClass::Transient { retry_after: Some(telechart_ehr::RetryAfter::Delay(Duration::ZERO)) };
        }
        let attempts = u32::try_from(row.attempts).unwrap_or(u32::MAX);
        let (retry_after, unknown) = match class {
            FailureClass::Permanent => {
                // No path for this artifact in this EHR at all, or a person must check whether it
                // is already there: either way the rest of the visit does not wait for it.
                let blocks = !matches!(err, SyncError::Ehr(EhrError::NotSupported(_)) | SyncError::NeedsReview(_));
                return self.dead(row, &message, blocks, plan).await;
            }
            FailureClass::Transient { retry_after } => (retry_after, false),
            FailureClass::Unknown { retry_after } => (retry_after, true),
        };
        if attempts >= self.config.max_attempts {
            return self.dead(row, &format!("gave up after {attempts} attempts: {message}"), true, plan).await;
        }
        let age = Duration::from_millis(u64::try_from(now.timestamp_millis() - row.created_at).unwrap_or(0));
        if age >= self.config.max_age {
            let hours = age.as_secs() / 3600;
            return self
                .dead(row, &format!("gave up after {hours} h queued ({attempts} attempts): {message}"), true, plan)
                .await;
        }
        let backoff = self.config.backoff.delay(attempts, fastrand::f64());
        let asked = retry_after.map(|r| r.delay_from(now)).unwrap_or_default();
        let delay = backoff.max(asked);
        let next = now.timestamp_millis() + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 2);
        // The EHR's own words can echo PHI: logs get the status only; the reason stays in the
        // delivery row and the audit log.
        tracing::info!(delivery = %row.id, attempts, delay_ms = delay.as_millis() as u64, unknown, status = ?http_status(err), "delivery will be retried");
        // Counted for the sync-health KPI: how often this EHR said "too many requests".
        let throttled = http_status(err) == Some(429);
        let audit = self.audit(
            row,
            "delivery.retry",
            format!("attempt {attempts} failed; next in {} ms: {message}", delay.as_millis()),
        );
        let ours = self
            .store
            .retry_delivery(
                row,
                &self.config.worker_id,
                &message,
                unknown,
                throttled,
                next,
                &audit,
                now.timestamp_millis(),
            )
            .await?;
        Ok(if ours { DeliveryOutcome::Retry { error: message } } else { DeliveryOutcome::LeaseLost })
    }

    async fn dead(
        &self,
        row: &DeliveryRow,
        reason: &str,
        blocks_visit: bool,
        plan: Option<&str>,
    ) -> Result<DeliveryOutcome, SyncError> {
        tracing::warn!(delivery = %row.id, attempts = row.attempts, "delivery moved to dead letters; see `telechart queue dead`");
        let audit = self.audit(row, "delivery.dead", reason.to_owned());
        let ours = self
            .store
            .dead_letter(
                row,
                &self.config.worker_id,
                &telechart_store::DeadLetter { reason, blocks_visit, plan },
                &audit,
                self.clock.now_ms(),
            )
            .await?;
        Ok(if ours { DeliveryOutcome::Dead { reason: reason.to_owned() } } else { DeliveryOutcome::LeaseLost })
    }

    /// Ends the delivery unsent: the patient's consent does not let it leave.
    async fn withhold(&self, row: &DeliveryRow, reason: &str) -> Result<DeliveryOutcome, SyncError> {
        tracing::info!(delivery = %row.id, "delivery withheld by the patient's consent");
        let mut audit = self.audit(row, "delivery.withheld", format!("not sent to connection {}", row.connection_id));
        audit.outcome = telechart_store::AuditOutcome::Denied;
        audit.consent = Some(reason.to_owned());
        let ours =
            self.store.withhold_delivery(row, &self.config.worker_id, reason, &audit, self.clock.now_ms()).await?;
        Ok(if ours { DeliveryOutcome::Withheld { reason: reason.to_owned() } } else { DeliveryOutcome::LeaseLost })
    }

    fn audit(&self, row: &DeliveryRow, action: &str, detail: String) -> AuditEntry {
        AuditEntry {
            tenant_id: row.tenant_id.clone(),
            actor: format!("worker:{}", self.config.worker_id),
            action: action.to_owned(),
            entity_type: "delivery".to_owned(),
            entity_id: row.id.clone(),
            visit_id: Some(row.visit_id.clone()),
            phi: true,
            detail,
            purpose_of_use: Some("TREAT".to_owned()),
            ..AuditEntry::default()
        }
    }

    /// Loads the artifact, its visit and its connection, and plans how it reaches that EHR.
    async fn prepare(&self, claimed: &ClaimedDelivery) -> Result<Prepared, SyncError> {
        let row = &claimed.row;
        // The Encounter binds the visit to a patient: check first that the EHR has not merged it.
        if row.resource_type == "Encounter" {
            self.follow_merges(&row.tenant_id, &row.visit_id, &row.connection_id).await?;
        }
        let item = self.store.work_item(&row.tenant_id, &row.artifact_id).await?;
        let artifact: Artifact = serde_json::from_str(item.artifact.payload.expose()).map_err(|e| {
            SyncError::Mapping { artifact_id: row.artifact_id.clone(), reason: format!("stored payload: {e}") }
        })?;
        // A delivery to a connection other than the visit's own is a disclosure to another
        // organisation: the patient's consent is decided again now, before any byte leaves, so
        // a withdrawal stops what was queued before it.
        let (patient, disclosed) = if row.connection_id == item.visit.connection_id {
            (item.visit.patient.expose().to_owned(), None)
        } else {
            let Some(disclosure) = self.store.disclosure(&row.tenant_id, &row.visit_id, &row.connection_id).await?
            else {
                return Err(SyncError::Withheld(format!(
                    "visit {} is not disclosed to connection {}",
                    row.visit_id, row.connection_id
                )));
            };
            let flow = crate::consent::disclosure_flow(&row.connection_id);
            let (_, decision) = crate::consent::decide(
                &self.store,
                &row.tenant_id,
                item.visit.patient.expose(),
                &flow,
                self.clock.now(),
                &self.config.consent_policy,
            )
            .await?;
            let said = match &decision.consent_id {
                Some(id) => format!("{}: Consent/{id}: {}", decision.outcome.as_str(), decision.explanation),
                None => format!("{}: {}", decision.outcome.as_str(), decision.explanation),
            };
            if decision.outcome == telechart_policy::consent::Outcome::Deny {
                return Err(SyncError::Withheld(said));
            }
            (disclosure.recipient_patient.expose().to_owned(), Some(said))
        };
        // Its requests wait in its visit's lane: a backlog of backfill never holds a clinical
        // write back at the EHR's door either.
        let lane = if row.lane == telechart_store::LANE_BACKFILL {
            telechart_ehr::Lane::Backfill
        } else {
            telechart_ehr::Lane::Clinical
        };
        let client = self.connections.client(&row.tenant_id, &row.connection_id).await?.in_lane(lane);
        let ctx = VisitContext {
            identifier_system: self.config.identifier_system.clone(),
            visit_id: item.visit.id.clone(),
            patient,
            practitioner: item.visit.practitioner.clone(),
            appointment: format!("Appointment/{}", item.visit.appointment_id),
        };
        let mut plan = crate::plan::plan(&artifact, &client.profile, client.mllp().is_some());
        if disclosed.is_some() && !matches!(plan, WritePlan::Written { .. } | WritePlan::Transformed { .. }) {
            // The fallbacks file into the visit's Encounter there, which the recipient lacks.
            plan = WritePlan::NotDeliverable {
                reason: "a disclosure goes over FHIR, and this EHR does not take it there".to_owned(),
            };
        }
        Ok(Prepared { item, artifact, client, ctx, plan, disclosed })
    }

    /// Writes by the plan; returns what the EHR kept, whether we adopted an earlier write, and
    /// the read-back.
    async fn write(&self, claimed: &ClaimedDelivery, prepared: Prepared) -> Result<Delivered, SyncError> {
        let Prepared { item, artifact, client, ctx, plan, disclosed } = prepared;
        // The recipient of a disclosure has no Encounter of this visit: its resources stand alone.
        let encounter = || -> Result<Option<String>, SyncError> {
            if disclosed.is_some() { Ok(None) } else { encounter_id(&item).map(Some) }
        };
        // …and names the visit's practitioners by identifier, not by a reference that EHR cannot resolve.
        let practitioners = format!("{}:practitioner:{}", self.config.identifier_system, item.visit.connection_id);
        let for_recipient = |mut body: Value| {
            if disclosed.is_some() {
                telechart_visit::detach_practitioners(&mut body, &practitioners);
            }
            body
        };
        let row = &claimed.row;
        if let WritePlan::NotDeliverable { reason } = &plan {
            return Err(EhrError::NotSupported(format!("no path for it in this EHR: {reason}")).into());
        }
        let token = format!("{}|{}", self.config.identifier_system, row.identifier);
        let _permit = self.ehr_permits.acquire(client.lane()).await;
        let mapping = |e: &dyn std::fmt::Display| SyncError::Mapping {
            artifact_id: row.artifact_id.clone(),
            reason: e.to_string(),
        };
        // HL7v2 PV1-19: the EHR's Encounter id when known, else the appointment.
        let visit_number = item.visit.ehr_encounter_id.clone().unwrap_or_else(|| item.visit.appointment_id.clone());
        match (artifact, &plan) {
            (Artifact::EncounterStatus(change), _) => self.write_encounter(&client, &ctx, &item, &token, &change).await,
            (Artifact::Vital(vital), WritePlan::Fallback(Fallback::VitalsApi)) => {
                self.upload_vitals(&client, claimed, &encounter_id(&item)?, &vital).await
            }
            (Artifact::Vital(vital), WritePlan::Fallback(_)) => {
                let readings = paths::vital_readings(&vital)
                    .ok_or_else(|| mapping(&format!("unknown vital sign {}", vital.name)))?;
                let message =
                    telechart_ehr::hl7v2::oru_r01(&self.hl7_context(&ctx, &visit_number, &row.artifact_id)?, &readings);
                self.send_hl7(&client, &row.artifact_id, &message).await.map(Delivered::from)
            }
            (Artifact::Vital(vital), _) => {
                let observation = telechart_visit::vital_observation(
                    &ctx,
                    &row.artifact_id,
                    &vital,
                    encounter()?.as_deref(),
                    self.clock.now(),
                )
                .map_err(|e| mapping(&e))?;
                self.create_once(&client, claimed, "Observation", &token, for_recipient(to_json(&observation, row)?))
                    .await
            }
            (Artifact::Note(note), WritePlan::Fallback(Fallback::DocumentApi)) => {
                let pdf = telechart_visit::pdf::text_pdf(&note.title, &note.text);
                self.upload_document(&client, claimed, &ctx, &note.title, &pdf).await
            }
            (Artifact::Note(note), WritePlan::Fallback(_)) => {
                let context = self.hl7_context(&ctx, &visit_number, &row.artifact_id)?;
                let message = telechart_ehr::hl7v2::mdm_t02(&context, &note.title, &note.author, &note.text);
                self.send_hl7(&client, &row.artifact_id, &message).await.map(Delivered::from)
            }
            (Artifact::Note(note), _) => {
                // An amendment names the version it replaces, once that is in the EHR.
                let replaced = match &note.replaces {
                    Some(earlier) => {
                        let deliveries = self.store.deliveries_for_visit(&row.tenant_id, &row.visit_id).await?;
                        match depends_on(&deliveries, earlier, &row.connection_id) {
                            Dependency::Written(id) => Some(id),
                            Dependency::NoPath(_) => None,
                            Dependency::Waiting => {
                                return Err(SyncError::NotReady(format!("the note artifact {earlier} it amends")));
                            }
                        }
                    }
                    None => None,
                };
                let document = telechart_visit::note_document(
                    &ctx,
                    &row.artifact_id,
                    &note,
                    encounter()?.as_deref(),
                    replaced.as_deref(),
                );
                let mut body = to_json(&document, row)?;
                if let WritePlan::Transformed { .. } = plan {
                    // A text note goes in the content type this EHR takes notes in.
                    body["content"][0]["attachment"]["contentType"] =
                        Value::String(client.profile.note_content_type.to_owned());
                }
                self.create_once(&client, claimed, "DocumentReference", &token, for_recipient(body)).await
            }
            (Artifact::Document(doc), WritePlan::Fallback(fallback)) => {
                let bytes = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &doc.data)
                    .map_err(|e| mapping(&e))?;
                // A document with a plain-text rendition (an HTML summary) travels as its words.
                let text = || doc.plain_text.clone().unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
                if *fallback == Fallback::Hl7Mdm {
                    let context = self.hl7_context(&ctx, &visit_number, &row.artifact_id)?;
                    let author = doc.author.clone().or_else(|| ctx.practitioner.clone()).unwrap_or_default();
                    let message = telechart_ehr::hl7v2::mdm_t02(&context, &doc.title, &author, &text());
                    return self.send_hl7(&client, &row.artifact_id, &message).await.map(Delivered::from);
                }
                let pdf = if doc.content_type == "application/pdf" {
                    bytes.clone()
                } else {
                    telechart_visit::pdf::text_pdf_in(&doc.title, &text(), doc.language.as_deref().unwrap_or("en"))
                };
                self.upload_document(&client, claimed, &ctx, &doc.title, &pdf).await
            }
            (Artifact::Document(doc), _) => {
                let document = telechart_visit::visit_document(&ctx, &row.artifact_id, &doc, encounter()?.as_deref());
                let mut body = to_json(&document, row)?;
                if let WritePlan::Transformed { .. } = plan {
                    let attachment = &mut body["content"][0]["attachment"];
                    attachment["contentType"] = Value::String("text/plain".to_owned());
                    // Its words, not its markup, where the document has them as text.
                    if let Some(text) = &doc.plain_text {
                        let bytes = text.as_bytes();
                        let sha1 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, bytes);
                        attachment["data"] =
                            Value::String(base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes));
                        attachment["size"] = Value::from(bytes.len());
                        attachment["hash"] = Value::String(base64::Engine::encode(
                            &base64::engine::general_purpose::STANDARD,
                            sha1.as_ref(),
                        ));
                    }
                }
                self.create_once(&client, claimed, "DocumentReference", &token, for_recipient(body)).await
            }
            (Artifact::Diagnosis(diagnosis), _) => {
                let condition = telechart_visit::condition(&ctx, &row.artifact_id, &diagnosis, encounter()?.as_deref());
                let mut body = to_json(&condition, row)?;
                if let WritePlan::Transformed { .. } = plan {
                    // Filed as this EHR files a new diagnosis (some hold them as provisional).
                    let verification = client.profile.condition_verification;
                    body["verificationStatus"] = serde_json::json!({"coding": [{
                        "system": telechart_fhir::terminology::CONDITION_VERIFICATION,
                        "code": verification}], "text": verification});
                }
                self.create_once(&client, claimed, "Condition", &token, for_recipient(body)).await
            }
            (Artifact::Order(order), _) => {
                let encounter = encounter_id(&item)?;
                let (resource_type, body) = match order.kind {
                    telechart_visit::OrderKind::Medication => (
                        "MedicationRequest",
                        telechart_visit::medication_request(&ctx, &row.artifact_id, &order, &encounter),
                    ),
                    _ => {
                        ("ServiceRequest", telechart_visit::service_request(&ctx, &row.artifact_id, &order, &encounter))
                    }
                };
                self.create_once(&client, claimed, resource_type, &token, body).await
            }
            (Artifact::CarePlan(plan), _) => {
                let deliveries = self.store.deliveries_for_visit(&row.tenant_id, &row.visit_id).await?;
                let refer =
                    |artifact: &str, what: &str| fhir_reference(&deliveries, artifact, &row.connection_id, what);
                let mut links = telechart_visit::CarePlanLinks::default();
                for diagnosis in &plan.addresses {
                    links.addresses.extend(refer(diagnosis, "the addressed diagnosis")?);
                }
                for goal in &plan.goals {
                    match refer(&goal.artifact, "the goal")? {
                        Some(reference) => links.goals.push(reference),
                        None => links.goals_as_text.push(goal.description.clone()),
                    }
                }
                for activity in &plan.activities {
                    links.activity_references.push(match &activity.order {
                        Some(order) => refer(order, "the order")?,
                        None => None,
                    });
                }
                let body = telechart_visit::care_plan(&ctx, &row.artifact_id, &plan, &encounter_id(&item)?, &links);
                self.create_once(&client, claimed, "CarePlan", &token, body).await
            }
            (Artifact::Goal(goal), _) => {
                let deliveries = self.store.deliveries_for_visit(&row.tenant_id, &row.visit_id).await?;
                let mut addresses = Vec::new();
                for diagnosis in &goal.addresses {
                    addresses.extend(fhir_reference(
                        &deliveries,
                        diagnosis,
                        &row.connection_id,
                        "the addressed diagnosis",
                    )?);
                }
                let body = telechart_visit::goal(&ctx, &row.artifact_id, &goal, &addresses);
                self.create_once(&client, claimed, "Goal", &token, body).await
            }
            (Artifact::Consent(record), _) => {
                // Its source is the signed form: that DocumentReference must be in the EHR first.
                let form = match &record.form_artifact {
                    Some(form_artifact) => {
                        let deliveries = self.store.deliveries_for_visit(&row.tenant_id, &row.visit_id).await?;
                        match depends_on(&deliveries, form_artifact, &row.connection_id) {
                            Dependency::Written(id) => Some(id),
                            Dependency::NoPath(plan) => {
                                return Err(EhrError::NotSupported(format!(
                                    "its signed form has no path here ({plan})"
                                ))
                                .into());
                            }
                            Dependency::Waiting => {
                                return Err(SyncError::NotReady(format!(
                                    "the signed form of artifact {form_artifact}"
                                )));
                            }
                        }
                    }
                    None => None,
                };
                let body = telechart_visit::consent(&ctx, &row.identifier, &record, form.as_deref());
                if record.withdraws() {
                    return self.withdraw_consent(&client, &ctx, &token).await.map(Delivered::from);
                }
                self.create_once(&client, claimed, "Consent", &token, body).await
            }
            (Artifact::EncounterDiagnoses(link), _) => {
                self.write_encounter_diagnoses(&client, &item, &row.connection_id, &link).await.map(Delivered::from)
            }
            (Artifact::Provenance(record), _) => self.write_note_provenance(&client, claimed, &record).await,
        }
    }

    /// A drafted note's Provenance, once the note is in the EHR as a DocumentReference and each
    /// cited source is there or has no path here (then it is left out). R4 gives Provenance no
    /// identifier, so an ambiguous earlier attempt is found by its target instead.
    async fn write_note_provenance(
        &self,
        client: &FhirClient,
        claimed: &ClaimedDelivery,
        record: &telechart_visit::NoteProvenance,
    ) -> Result<Delivered, SyncError> {
        let row = &claimed.row;
        let deliveries = self.store.deliveries_for_visit(&row.tenant_id, &row.visit_id).await?;
        let is_fhir = |artifact: &str| {
            deliveries.iter().any(|d| {
                d.artifact_id == artifact
                    && d.connection_id == row.connection_id
                    && !d.plan.as_deref().is_some_and(|p| p.starts_with("fallback"))
            })
        };
        let target = match depends_on(&deliveries, &record.note_artifact, &row.connection_id) {
            Dependency::Written(id) if is_fhir(&record.note_artifact) => {
                telechart_fhir::reference_string("DocumentReference", &id)
            }
            Dependency::Written(_) | Dependency::NoPath(_) => {
                return Err(EhrError::NotSupported("its note is not a DocumentReference in this EHR".into()).into());
            }
            Dependency::Waiting => {
                return Err(SyncError::NotReady(format!("the signed note of artifact {}", record.note_artifact)));
            }
        };
        let mut sources = Vec::with_capacity(record.sources.len());
        for source in &record.sources {
            sources.extend(fhir_reference(&deliveries, source, &row.connection_id, "the cited artifact")?);
        }
        let body = telechart_visit::note_provenance(record, &target, &sources);
        if claimed.must_reconcile
            && let Some(found) = client.search("Provenance", &[("target", target.as_str())]).await?.into_iter().next()
        {
            let readback = Some(telechart_fhir::readback::compare(&body, &found));
            return Ok(Delivered { written: adopt(found, "Provenance")?, adopted: true, readback });
        }
        if self.faults.fires(FaultPoint::BeforeSend) {
            return Err(SyncError::Crashed(FaultPoint::BeforeSend));
        }
        let written = client.create("Provenance", &body).await?;
        let readback = read_back(client, "Provenance", &written, &body).await;
        Ok(Delivered { written, adopted: false, readback })
    }

    /// A withdrawal: the Consent the EHR holds for this consent (found by Telechart's identifier,
    /// which every version carries) becomes `inactive` by an `If-Match` update. Not there yet
    /// (its first version is still on its way): wait for it.
    async fn withdraw_consent(
        &self,
        client: &FhirClient,
        ctx: &VisitContext,
        token: &str,
    ) -> Result<(Written, bool), SyncError> {
        let found = client.find_by_identifier("Consent", token, Some(ctx.patient.as_str())).await?;
        let Some(id) = found.first().and_then(|c| c["id"].as_str()).map(str::to_owned) else {
            return Err(SyncError::NotReady("the Consent being withdrawn, in the EHR".into()));
        };
        let mut current = client.read("Consent", &id).await?;
        if current.resource["status"] == "inactive" {
            return Ok((Written { id, version: current.version, resource: None }, true));
        }
        current.resource["status"] = Value::String("inactive".into());
        if self.faults.fires(FaultPoint::BeforeSend) {
            return Err(SyncError::Crashed(FaultPoint::BeforeSend));
        }
        let written = client.update("Consent", &id, &current.resource, current.version.as_deref()).await?;
        Ok((written, false))
    }

    /// Lists the visit's Conditions on its Encounter (`diagnosis`, use billing, ranked), once
    /// the Conditions are in the EHR. Re-reading and skipping entries already there makes a
    /// replay harmless.
    async fn write_encounter_diagnoses(
        &self,
        client: &FhirClient,
        item: &WorkItem,
        connection_id: &str,
        link: &telechart_visit::EncounterDiagnoses,
    ) -> Result<(Written, bool), SyncError> {
        let encounter = encounter_id(item)?;
        let deliveries = self.store.deliveries_for_visit(&item.visit.tenant_id, &item.visit.id).await?;
        let mut conditions = Vec::with_capacity(link.entries.len());
        for entry in &link.entries {
            match depends_on(&deliveries, &entry.condition_artifact, connection_id) {
                Dependency::Written(id) => {
                    conditions.push((telechart_fhir::reference_string("Condition", &id), entry.rank))
                }
                // A diagnosis this EHR cannot take is not listed; the others still are.
                Dependency::NoPath(_) => {}
                Dependency::Waiting => {
                    return Err(SyncError::NotReady(format!("the Condition of artifact {}", entry.condition_artifact)));
                }
            }
        }
        if conditions.is_empty() {
            return Err(EhrError::NotSupported("none of its Conditions has a path here".into()).into());
        }
        let mut current = client.read("Encounter", &encounter).await?;
        let changed = telechart_visit::apply_encounter_diagnoses(&mut current.resource, &conditions)
            .map_err(|e| SyncError::Mapping { artifact_id: item.artifact.id.clone(), reason: e.to_string() })?;
        if !changed {
            return Ok((Written { id: encounter, version: current.version, resource: None }, true));
        }
        if self.faults.fires(FaultPoint::BeforeSend) {
            return Err(SyncError::Crashed(FaultPoint::BeforeSend));
        }
        let written = client.update("Encounter", &encounter, &current.resource, current.version.as_deref()).await?;
        Ok((written, false))
    }

    /// Creates a resource unless an earlier attempt already did: when the claim says an attempt
    /// may have reached the EHR, search by our identifier first and adopt what is there. Then
    /// compares what the EHR kept with what was sent (read-back).
    async fn create_once(
        &self,
        client: &FhirClient,
        claimed: &ClaimedDelivery,
        resource_type: &str,
        token: &str,
        resource: Value,
    ) -> Result<Delivered, SyncError> {
        let patient = resource["subject"]["reference"].as_str().or_else(|| resource["patient"]["reference"].as_str());
        if claimed.must_reconcile {
            let mut found = client.find_by_identifier(resource_type, token, patient).await?.into_iter().next();
            // Most EHRs keep no identifier of ours: then the same fact is found by what makes it
            // that fact (never a blind re-POST).
            if found.is_none()
                && let Some(patient) = patient
            {
                found = crate::reconcile::find_by_natural_key(client, resource_type, &resource, patient).await?;
            }
            if let Some(found) = found {
                let readback = Some(telechart_fhir::readback::compare(&resource, &found));
                return Ok(Delivered { written: adopt(found, resource_type)?, adopted: true, readback });
            }
        }
        if self.faults.fires(FaultPoint::BeforeSend) {
            return Err(SyncError::Crashed(FaultPoint::BeforeSend));
        }
        let written = client.create(resource_type, &resource).await?;
        let readback = read_back(client, resource_type, &written, &resource).await;
        Ok(Delivered { written, adopted: false, readback })
    }

    /// The Encounter: find the EHR's (by our identifier, then by appointment), apply the status
    /// change with `If-Match`, or create one where the EHR allows it.
    async fn write_encounter(
        &self,
        client: &FhirClient,
        ctx: &VisitContext,
        item: &WorkItem,
        token: &str,
        change: &EncounterStatusChange,
    ) -> Result<Delivered, SyncError> {
        let caps = &client.profile.capabilities;
        let existing = match &item.visit.ehr_encounter_id {
            Some(id) => Some(client.read("Encounter", id).await?),
            None => {
                let patient = Some(ctx.patient.as_str());
                let mut found = client.find_by_identifier("Encounter", token, patient).await?;
                if found.is_empty() {
                    found = client
                        .search(
                            "Encounter",
                            &[("patient", ctx.patient.as_str()), ("appointment", ctx.appointment.as_str())],
                        )
                        .await?;
                }
                // Prefer one not cancelled, should the EHR hold several for the appointment.
                found.sort_by_key(|e| e.get("status").and_then(Value::as_str) == Some("cancelled"));
                match found.into_iter().next() {
                    Some(resource) => {
                        let id = resource_id(&resource, "Encounter")?;
                        Some(client.read("Encounter", &id).await?)
                    }
                    None => None,
                }
            }
        };
        if self.faults.fires(FaultPoint::BeforeSend) {
            return Err(SyncError::Crashed(FaultPoint::BeforeSend));
        }
        match existing {
            Some(mut current) => {
                let id = resource_id(&current.resource, "Encounter")?;
                let changed = telechart_visit::apply_encounter_status(&mut current.resource, ctx, change)
                    .map_err(|e| SyncError::Mapping { artifact_id: item.artifact.id.clone(), reason: e.to_string() })?;
                if changed && !caps.encounter_update && caps.visit_status_on_appointment {
                    // This EHR moves a visit on its Appointment: a JSON Patch of `/status`.
                    self.patch_appointment_status(client, ctx, change).await?;
                    return Ok((Written { id, version: current.version, resource: None }, false).into());
                }
                if !changed || !caps.encounter_update {
                    // Already there (a replay), or the EHR keeps encounter status itself.
                    return Ok((Written { id, version: current.version, resource: None }, true).into());
                }
                let written = client.update("Encounter", &id, &current.resource, current.version.as_deref()).await?;
                let readback = read_back(client, "Encounter", &written, &current.resource).await;
                Ok(Delivered { written, adopted: false, readback })
            }
            None if caps.encounter == EncounterWrite::FindOrCreate => {
                let encounter = telechart_visit::encounter_for_create(ctx, change);
                let body = serde_json::to_value(&encounter)
                    .map_err(|e| SyncError::Mapping { artifact_id: item.artifact.id.clone(), reason: e.to_string() })?;
                let written = client.create("Encounter", &body).await?;
                let readback = read_back(client, "Encounter", &written, &body).await;
                Ok(Delivered { written, adopted: false, readback })
            }
            None => {
                Err(SyncError::NotReady(format!("the EHR's Encounter for {} (it creates its own)", ctx.appointment)))
            }
        }
    }
}

/// What the EHR kept of a write (the reply's body, else a read) compared with what was sent.
/// The write stands either way: a failed read only leaves the accuracy unmeasured.
async fn read_back(client: &FhirClient, resource_type: &str, written: &Written, sent: &Value) -> Option<ReadBack> {
    let kept = match &written.resource {
        Some(kept) => Ok(kept.clone()),
        None => client.read(resource_type, &written.id).await.map(|read| read.resource),
    };
    compared(sent, kept, resource_type)
}

/// `sent` compared with what the EHR kept, when that could be read.
fn compared(sent: &Value, kept: Result<Value, EhrError>, what: &str) -> Option<ReadBack> {
    match kept {
        Ok(kept) => Some(telechart_fhir::readback::compare(sent, &kept)),
        Err(e) => {
            tracing::warn!(what, status = ?e.http_status(), "read-back after a write failed");
            None
        }
    }
}

/// Where an artifact another one refers to stands in the same EHR.
enum Dependency {
    /// In the EHR, with this id.
    Written(String),
    /// Dead because the EHR has no path for it (its plan says why).
    NoPath(String),
    /// Not there yet.
    Waiting,
}

fn depends_on(deliveries: &[DeliveryRow], artifact_id: &str, connection_id: &str) -> Dependency {
    let Some(d) = deliveries.iter().find(|d| d.artifact_id == artifact_id && d.connection_id == connection_id) else {
        return Dependency::Waiting;
    };
    match (d.status.as_str(), &d.ehr_resource_id) {
        ("done", Some(id)) => Dependency::Written(id.clone()),
        ("dead", _) if d.plan.as_deref().is_some_and(|p| p.starts_with("not deliverable")) => {
            Dependency::NoPath(d.plan.clone().unwrap_or_default())
        }
        _ => Dependency::Waiting,
    }
}

/// `Type/id` of the artifact's resource in this EHR, for a reference to it; `None` where it has
/// no FHIR resource there (no delivery to this EHR, not deliverable, or delivered by a fallback
/// outside FHIR), so the referring resource goes without that reference. Not there yet: wait.
fn fhir_reference(
    deliveries: &[DeliveryRow],
    artifact_id: &str,
    connection_id: &str,
    what: &str,
) -> Result<Option<String>, SyncError> {
    let Some(delivery) = deliveries.iter().find(|d| d.artifact_id == artifact_id && d.connection_id == connection_id)
    else {
        return Ok(None);
    };
    match depends_on(deliveries, artifact_id, connection_id) {
        Dependency::Written(_) if delivery.plan.as_deref().is_some_and(|p| p.starts_with("fallback")) => Ok(None),
        Dependency::Written(id) => Ok(Some(telechart_fhir::reference_string(&delivery.resource_type, &id))),
        Dependency::NoPath(_) => Ok(None),
        Dependency::Waiting => Err(SyncError::NotReady(format!("{what} {artifact_id}"))),
    }
}

fn http_status(err: &SyncError) -> Option<u16> {
    match err {
        SyncError::Ehr(e) => e.http_status(),
        _ => None,
    }
}

fn encounter_id(item: &WorkItem) -> Result<String, SyncError> {
    item.visit.ehr_encounter_id.clone().ok_or_else(|| SyncError::NotReady("the visit's Encounter in the EHR".into()))
}

fn to_json<T: serde::Serialize>(value: &T, row: &DeliveryRow) -> Result<Value, SyncError> {
    serde_json::to_value(value)
        .map_err(|e| SyncError::Mapping { artifact_id: row.artifact_id.clone(), reason: e.to_string() })
}

fn resource_id(resource: &Value, resource_type: &str) -> Result<String, SyncError> {
    resource.get("id").and_then(Value::as_str).map(str::to_owned).ok_or_else(|| {
        SyncError::Ehr(EhrError::Protocol {
            method: "search",
            resource_type: resource_type.to_owned(),
            reason: "a resource without an id".to_owned(),
        })
    })
}

fn adopt(found: Value, resource_type: &str) -> Result<Written, SyncError> {
    let id = resource_id(&found, resource_type)?;
    let version = found.pointer("/meta/versionId").and_then(Value::as_str).map(str::to_owned);
    Ok(Written { id, version, resource: Some(found) })
}
