//! Webhooks between Telechart and telehealth platforms, both ways signed the same way:
//! `Telechart-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`. A receiver
//! accepts a signature within five minutes of its own clock, compared in constant time.
//! The sender takes events from the store's outbox, signs and POSTs them, retries with backoff
//! (honouring `Retry-After`), and gives up after `max_attempts` or on a refusal that retrying
//! cannot change — every attempt is in the delivery log.

use std::sync::Arc;
use std::time::Duration;

use telechart_policy::EgressRegistry;
use telechart_policy::consent::{ConsentPolicy, Outcome};
use telechart_policy::governed::GovernedFlow;
use telechart_store::{AuditEntry, AuditOutcome, Clock, Store, WebhookOutcome, WebhookRow};

use crate::{Backoff, SyncError};

/// The signature header's name.
pub const SIGNATURE_HEADER: &str = "telechart-signature";
/// How far a signature's timestamp may be from the receiver's clock.
pub const SIGNATURE_TOLERANCE_SECS: i64 = 300;

/// A telehealth platform Telechart exchanges events with.
#[derive(Clone)]
pub struct Platform {
    pub id: String,
    /// The tenant whose visits it runs.
    pub tenant_id: String,
    /// Where its events go; None for a platform that only sends.
    pub webhook_url: Option<String>,
    /// The shared HMAC secret (never logged).
    pub secret: Vec<u8>,
    /// Event types it wants (`appointment.booked`, `visit.state-changed`, …); empty = all.
    pub events: Vec<String>,
    /// What its `call.ended` does to a visit in the call.
    pub on_call_ended: OnCallEnded,
    /// On what footing it may receive PHI (the patient named in an event).
    pub phi_basis: PhiBasis,
}

/// On what footing a platform receives the PHI in Telechart's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PhiBasis {
    /// It runs the visit for the provider, under a BAA: a disclosure for treatment, which HIPAA
    /// permits without the patient's consent.
    #[default]
    Treatment,
    /// A third party: an event names the patient only with the patient's disclosure consent;
    /// without it the patient is withheld (the rest of the event still goes), and the decision
    /// is audited either way.
    Consent,
}

/// The tenant's rule for a call that ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnCallEnded {
    /// The visit finishes when the clinician has signed the note (at once if signed already).
    #[default]
    FinishWhenSigned,
    /// The visit finishes when the call ends.
    Finish,
}

impl std::fmt::Debug for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Platform").field("id", &self.id).field("webhook_url", &self.webhook_url).finish()
    }
}

impl Platform {
    pub fn wants(&self, event_type: &str) -> bool {
        self.webhook_url.is_some() && (self.events.is_empty() || self.events.iter().any(|e| e == event_type))
    }
}

/// The platforms of one deployment.
#[derive(Clone, Debug, Default)]
pub struct Platforms(pub Arc<Vec<Platform>>);

impl Platforms {
    pub fn get(&self, id: &str) -> Option<&Platform> {
        self.0.iter().find(|p| p.id == id)
    }

    /// Outbox rows for an event: one per platform of the tenant that wants it.
    pub fn webhooks_for(
        &self,
        tenant_id: &str,
        event_type: &str,
        body: &serde_json::Value,
    ) -> Vec<telechart_store::NewWebhook> {
        self.0
            .iter()
            .filter(|p| p.tenant_id == tenant_id && p.wants(event_type))
            .map(|p| telechart_store::NewWebhook {
                id: uuid::Uuid::now_v7().to_string(),
                platform_id: p.id.clone(),
                event_type: event_type.to_owned(),
                payload: telechart_store::Phi::new(body.to_string()),
            })
            .collect()
    }
}

fn hmac_hex(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    let mut context = aws_lc_rs::hmac::Context::with_key(&key);
    context.update(timestamp.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    context.sign().as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The signature header's value for `body` sent at `timestamp` (Unix seconds).
/// The header of WebSub-style senders (some EHR event platforms): `sha256=<hex HMAC of
/// the raw body>`, no timestamp. Such events are id-only, so a replay only re-reads the EHR.
pub const HUB_SIGNATURE_HEADER: &str = "x-hub-signature";

/// Checks an `X-Hub-Signature: sha256=…` header against the body, in constant time.
pub fn verify_hub_signature(secret: &[u8], header: &str, body: &[u8]) -> bool {
    let Some(hex) = header.trim().strip_prefix("sha256=") else { return false };
    let Some(given) = (0..hex.len())
        .step_by(2)
        .map(|i| hex.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect::<Option<Vec<u8>>>()
    else {
        return false;
    };
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    aws_lc_rs::hmac::verify(&key, body, &given).is_ok()
}

pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    format!("t={timestamp},v1={}", hmac_hex(secret, timestamp, body))
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureRefused {
    #[error("the signature header is missing or malformed")]
    Malformed,
    #[error("the signature's timestamp is outside the {SIGNATURE_TOLERANCE_SECS} s window")]
    Stale,
    #[error("the signature does not match")]
    Mismatch,
}

/// Checks a signature header against `body` and the receiver's clock (`now`, Unix seconds).
pub fn verify(secret: &[u8], header: &str, body: &[u8], now: i64) -> Result<(), SignatureRefused> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", v)) => signatures.push(v.to_owned()),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureRefused::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureRefused::Malformed);
    }
    if (now - timestamp).abs() > SIGNATURE_TOLERANCE_SECS {
        return Err(SignatureRefused::Stale);
    }
    let expected = hmac_hex(secret, timestamp, body);
    // Several v1 values let a sender rotate its secret without a gap.
    let matched = signatures
        .iter()
        .any(|s| aws_lc_rs::constant_time::verify_slices_are_equal(s.as_bytes(), expected.as_bytes()).is_ok());
    if matched { Ok(()) } else { Err(SignatureRefused::Mismatch) }
}

/// Sends the outbox.
pub struct WebhookSender {
    store: Store,
    clock: Clock,
    platforms: Platforms,
    egress: EgressRegistry,
    http: reqwest::Client,
    pub backoff: Backoff,
    pub max_attempts: i64,
    /// The tenant's consent policy, for platforms that receive PHI only by consent.
    pub consent_policy: ConsentPolicy,
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WebhookPass {
    pub delivered: usize,
    pub retried: usize,
    pub dead: usize,
}

impl WebhookSender {
    pub fn new(store: Store, clock: Clock, platforms: Platforms, egress: EgressRegistry) -> Result<Self, SyncError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| SyncError::Egress(format!("webhook client: {e}")))?;
        Ok(WebhookSender {
            store,
            clock,
            platforms,
            egress,
            http,
            backoff: Backoff { base: Duration::from_secs(2), max: Duration::from_secs(600) },
            max_attempts: 12,
            consent_policy: ConsentPolicy::default(),
        })
    }

    /// Sends what is due; returns what happened.
    pub async fn run_once(&self) -> Result<WebhookPass, SyncError> {
        let now = self.clock.now_ms();
        let due = self.store.claim_webhooks(32, 60_000, now).await?;
        let mut pass = WebhookPass::default();
        for row in due {
            match self.send(&row).await? {
                Sent::Done => pass.delivered += 1,
                Sent::Retry => pass.retried += 1,
                Sent::Dead => pass.dead += 1,
            }
        }
        Ok(pass)
    }

    /// Sends until stopped, a pass every `interval` (sooner while there is work).
    pub async fn run(self, interval: Duration, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            let busy = match self.run_once().await {
                Ok(pass) => pass.delivered + pass.retried + pass.dead > 0,
                Err(e) => {
                    tracing::warn!(error = %e, "webhook pass failed");
                    false
                }
            };
            let wait = if busy { Duration::from_millis(50) } else { interval };
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn send(&self, row: &WebhookRow) -> Result<Sent, SyncError> {
        let now = self.clock.now_ms();
        let dead = |error: String, status: Option<u16>| async move {
            tracing::warn!(webhook = %row.id, platform = %row.platform_id, status = ?status, "webhook gave up");
            self.store
                .finish_webhook(&row.tenant_id, &row.id, WebhookOutcome::Dead { error: &error }, status, now)
                .await?;
            Ok::<Sent, SyncError>(Sent::Dead)
        };
        let Some(platform) = self.platforms.get(&row.platform_id) else {
            return dead(format!("platform {} is no longer configured", row.platform_id), None).await;
        };
        let Some(url) = platform.webhook_url.as_deref() else {
            return dead(format!("platform {} has no webhook_url", row.platform_id), None).await;
        };
        // Event bodies name patients: they go only where a BAA covers them.
        if let Err(refused) = self.egress.check(url, self.clock.now().date_naive()) {
            return dead(refused.to_string(), None).await;
        }
        let body = self.minimum_necessary(row, platform).await?;
        let signature = sign(&platform.secret, now.div_euclid(1000), &body);
        let result = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature)
            .header("telechart-event-id", &row.id)
            .header("telechart-event-type", &row.event_type)
            .body(body)
            .send()
            .await;
        let (status, retry_after, error) = match result {
            Ok(response) if response.status().is_success() => {
                let status = response.status().as_u16();
                self.store.finish_webhook(&row.tenant_id, &row.id, WebhookOutcome::Done, Some(status), now).await?;
                return Ok(Sent::Done);
            }
            Ok(response) => {
                let status = response.status().as_u16();
                let retry_after = telechart_ehr::RetryAfter::from_headers(response.headers());
                (Some(status), retry_after, format!("HTTP {status}"))
            }
            Err(e) => {
                (None, None, format!("not delivered: {}", if e.is_timeout() { "timeout" } else { "connection failed" }))
            }
        };
        // A refusal other than throttling or a server error will not change on a retry.
        let permanent = status.is_some_and(|s| (400..500).contains(&s) && s != 408 && s != 429);
        if permanent || row.attempts >= self.max_attempts {
            return dead(format!("{error} after {} attempt(s)", row.attempts), status).await;
        }
        let attempts = u32::try_from(row.attempts).unwrap_or(u32::MAX);
        let backoff = self.backoff.delay(attempts, fastrand::f64());
        let asked = retry_after.map(|r| r.delay_from(self.clock.now())).unwrap_or_default();
        let at_ms = now + i64::try_from(backoff.max(asked).as_millis()).unwrap_or(i64::MAX / 2);
        tracing::info!(webhook = %row.id, platform = %row.platform_id, status = ?status, "webhook will be retried");
        self.store
            .finish_webhook(&row.tenant_id, &row.id, WebhookOutcome::Retry { at_ms, error: &error }, status, now)
            .await?;
        Ok(Sent::Retry)
    }
}

impl WebhookSender {
    /// The event body as `platform` may have it: unchanged for a platform that receives PHI for
    /// treatment; for a third party, the patient it names is kept only if the patient's
    /// disclosure consent permits it now (decided at send time, so a withdrawal stops what is
    /// still queued), and withheld otherwise. Each decision is audited before anything is sent.
    async fn minimum_necessary(&self, row: &WebhookRow, platform: &Platform) -> Result<Vec<u8>, SyncError> {
        let raw = row.payload.expose();
        if platform.phi_basis == PhiBasis::Treatment {
            return Ok(raw.as_bytes().to_vec());
        }
        let mut body: serde_json::Value =
            serde_json::from_str(raw).map_err(|e| SyncError::Egress(format!("webhook {} is not JSON: {e}", row.id)))?;
        let Some(patient) = body["data"]["patient"].as_str().map(str::to_owned) else {
            return Ok(raw.as_bytes().to_vec());
        };
        let flow = GovernedFlow::Disclose { recipient: format!("platform {}", platform.id) };
        let (_, decision) = crate::consent::decide(
            &self.store,
            &row.tenant_id,
            &patient,
            &flow,
            self.clock.now(),
            &self.consent_policy,
        )
        .await?;
        let said = match &decision.consent_id {
            Some(id) => format!("{}: Consent/{id}: {}", decision.outcome.as_str(), decision.explanation),
            None => format!("{}: {}", decision.outcome.as_str(), decision.explanation),
        };
        let denied = decision.outcome == Outcome::Deny;
        let entry = AuditEntry {
            tenant_id: row.tenant_id.clone(),
            actor: "system:webhooks".into(),
            action: "consent.decision".into(),
            entity_type: "webhook".into(),
            entity_id: row.id.clone(),
            visit_id: body["data"]["visitId"].as_str().map(str::to_owned),
            phi: true,
            detail: format!("{} ({} event)", flow.name(), row.event_type),
            patient: Some(patient),
            purpose_of_use: Some("TREAT".into()),
            outcome: if denied { AuditOutcome::Denied } else { AuditOutcome::Success },
            consent: Some(said),
            ..AuditEntry::default()
        };
        // Fail closed: an unaudited disclosure decision sends nothing (the event is retried).
        self.store.audit(&entry, self.clock.now_ms()).await?;
        if denied {
            if let Some(data) = body["data"].as_object_mut() {
                data.remove("patient");
                data.insert("withheld".into(), serde_json::json!(["patient"]));
            }
            return Ok(body.to_string().into_bytes());
        }
        Ok(raw.as_bytes().to_vec())
    }
}

enum Sent {
    Done,
    Retry,
    Dead,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_only_for_the_same_body_secret_and_time() {
        let secret = b"whsec-test";
        let body = br#"{"type":"call.ended"}"#;
        let header = sign(secret, 1_764_150_000, body);
        assert_eq!(verify(secret, &header, body, 1_764_150_100), Ok(()));
        assert_eq!(
            verify(secret, &header, br#"{"type":"call.ended "}"#, 1_764_150_000),
            Err(SignatureRefused::Mismatch)
        );
        assert_eq!(verify(b"other", &header, body, 1_764_150_000), Err(SignatureRefused::Mismatch));
        assert_eq!(verify(secret, &header, body, 1_764_150_000 + 301), Err(SignatureRefused::Stale));
        assert_eq!(verify(secret, &header, body, 1_764_150_000 - 301), Err(SignatureRefused::Stale));
        assert_eq!(verify(secret, "v1=abc", body, 1_764_150_000), Err(SignatureRefused::Malformed));
        // A rotated secret: either of two v1 values may match.
        let rotated = format!("{header},v1={}", "0".repeat(64));
        assert_eq!(verify(secret, &rotated, body, 1_764_150_000), Ok(()));
    }
}
