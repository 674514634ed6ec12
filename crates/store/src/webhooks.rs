//! The webhook outbox (signed events to telehealth platforms, sent with retries and logged) and
//! the record of platform events already acted on.

use crate::keys::PhiSlot;
use crate::{Phi, Result, Store, StoreError, on_pool};

/// An event for a platform, written with the change it announces.
#[derive(Debug, Clone)]
pub struct NewWebhook {
    pub id: String,
    pub platform_id: String,
    pub event_type: String,
    /// The JSON body sent, as sealed PHI (it names patients and appointments).
    pub payload: Phi,
}

#[derive(sqlx::FromRow)]
struct WebhookRecord {
    tenant_id: String,
    id: String,
    platform_id: String,
    event_type: String,
    payload: String,
    status: String,
    attempts: i64,
    last_status: Option<i64>,
    last_error: Option<String>,
    created_at: i64,
    completed_at: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct WebhookRow {
    pub tenant_id: String,
    pub id: String,
    pub platform_id: String,
    pub event_type: String,
    pub payload: Phi,
    pub status: String,
    pub attempts: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub completed_at: Option<i64>,
}

/// Inserts outbox rows inside a caller's transaction; payloads were sealed before it opened.
macro_rules! insert_webhooks {
    ($tx:expr, $tenant:expr, $webhooks:expr, $sealed:expr, $now:expr) => {{
        let mut result: std::result::Result<(), sqlx::Error> = Ok(());
        for (webhook, payload) in $webhooks.iter().zip($sealed.iter()) {
            let webhook: &$crate::NewWebhook = webhook;
            result = sqlx::query(
                "INSERT INTO webhook_deliveries (tenant_id, id, platform_id, event_type, payload, status, attempts, \
                 next_attempt_at, created_at) VALUES ($1, $2, $3, $4, $5, 'pending', 0, $6, $6)",
            )
            .bind($tenant)
            .bind(&webhook.id)
            .bind(&webhook.platform_id)
            .bind(&webhook.event_type)
            .bind(payload)
            .bind($now)
            .execute(&mut *$tx)
            .await
            .map(|_| ());
            if result.is_err() {
                break;
            }
        }
        result
    }};
}
pub(crate) use insert_webhooks;

impl Store {
    pub(crate) async fn seal_webhooks(&self, tenant_id: &str, webhooks: &[NewWebhook]) -> Result<Vec<String>> {
        let mut sealed = Vec::with_capacity(webhooks.len());
        for w in webhooks {
            let slot = PhiSlot { tenant_id, table: "webhook_deliveries", column: "payload", row_id: &w.id };
            sealed.push(self.seal(slot, &w.payload).await?);
        }
        Ok(sealed)
    }

    /// Enqueues events on their own (when nothing else changes with them).
    pub async fn enqueue_webhooks(&self, tenant_id: &str, webhooks: &[NewWebhook], now_ms: i64) -> Result<()> {
        let sealed = self.seal_webhooks(tenant_id, webhooks).await?;
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            insert_webhooks!(tx, tenant_id, webhooks, sealed, now_ms)?;
            tx.commit().await
        })?;
        Ok(())
    }

    async fn webhook_row(&self, r: WebhookRecord) -> Result<WebhookRow> {
        let slot = PhiSlot { tenant_id: &r.tenant_id, table: "webhook_deliveries", column: "payload", row_id: &r.id };
        let payload = self.unseal(slot, &r.payload).await?;
        Ok(WebhookRow {
            tenant_id: r.tenant_id,
            id: r.id,
            platform_id: r.platform_id,
            event_type: r.event_type,
            payload,
            status: r.status,
            attempts: r.attempts,
            last_status: r.last_status,
            last_error: r.last_error,
            created_at: r.created_at,
            completed_at: r.completed_at,
        })
    }

    /// Claims up to `limit` due webhooks (or ones whose sender's lease ran out) for `lease_ms`.
    pub async fn claim_webhooks(&self, limit: i64, lease_ms: i64, now_ms: i64) -> Result<Vec<WebhookRow>> {
        let records = on_pool!(self, pool => sqlx::query_as::<_, WebhookRecord>(
            "UPDATE webhook_deliveries SET status = 'in_flight', attempts = attempts + 1, lease_until = $1 \
             WHERE (tenant_id, id) IN (SELECT tenant_id, id FROM webhook_deliveries \
               WHERE (status = 'pending' AND next_attempt_at <= $2) OR (status = 'in_flight' AND lease_until < $2) \
               ORDER BY created_at, id LIMIT $3) \
             RETURNING tenant_id, id, platform_id, event_type, payload, status, attempts, last_status, last_error, \
               created_at, completed_at")
            .bind(now_ms + lease_ms).bind(now_ms).bind(limit).fetch_all(pool).await)?;
        let mut rows = Vec::with_capacity(records.len());
        for r in records {
            rows.push(self.webhook_row(r).await?);
        }
        rows.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(rows)
    }

    /// The outcome of one attempt: `Done`, `Retry` at a time, or `Dead`.
    pub async fn finish_webhook(
        &self,
        tenant_id: &str,
        id: &str,
        outcome: WebhookOutcome<'_>,
        http_status: Option<u16>,
        now_ms: i64,
    ) -> Result<()> {
        let status = http_status.map(i64::from);
        on_pool!(self, pool => match outcome {
            WebhookOutcome::Done => sqlx::query(
                "UPDATE webhook_deliveries SET status = 'done', last_status = $1, last_error = NULL, completed_at = $2, \
                 lease_until = NULL WHERE tenant_id = $3 AND id = $4")
                .bind(status).bind(now_ms).bind(tenant_id).bind(id).execute(pool).await.map(|r| r.rows_affected()),
            WebhookOutcome::Retry { at_ms, error } => sqlx::query(
                "UPDATE webhook_deliveries SET status = 'pending', last_status = $1, last_error = $2, next_attempt_at = $3, \
                 lease_until = NULL WHERE tenant_id = $4 AND id = $5")
                .bind(status).bind(error).bind(at_ms).bind(tenant_id).bind(id).execute(pool).await.map(|r| r.rows_affected()),
            WebhookOutcome::Dead { error } => sqlx::query(
                "UPDATE webhook_deliveries SET status = 'dead', last_status = $1, last_error = $2, completed_at = $3, \
                 lease_until = NULL WHERE tenant_id = $4 AND id = $5")
                .bind(status).bind(error).bind(now_ms).bind(tenant_id).bind(id).execute(pool).await.map(|r| r.rows_affected()),
        })?;
        Ok(())
    }

    /// The delivery log, newest first.
    pub async fn webhook_log(&self, tenant_id: &str, limit: i64) -> Result<Vec<WebhookRow>> {
        let records = on_pool!(self, pool => sqlx::query_as::<_, WebhookRecord>(
            "SELECT tenant_id, id, platform_id, event_type, payload, status, attempts, last_status, last_error, \
             created_at, completed_at FROM webhook_deliveries WHERE tenant_id = $1 ORDER BY created_at DESC LIMIT $2")
            .bind(tenant_id).bind(limit).fetch_all(pool).await)?;
        let mut rows = Vec::with_capacity(records.len());
        for r in records {
            rows.push(self.webhook_row(r).await?);
        }
        Ok(rows)
    }

    /// Notes a platform event as acted on; false if it was already (a duplicate delivery).
    pub async fn first_platform_event(
        &self,
        tenant_id: &str,
        platform_id: &str,
        event_id: &str,
        now_ms: i64,
    ) -> Result<bool> {
        let inserted = on_pool!(self, pool => sqlx::query(
            "INSERT INTO platform_events (tenant_id, platform_id, event_id, received_at) VALUES ($1, $2, $3, $4)")
            .bind(tenant_id).bind(platform_id).bind(event_id).bind(now_ms).execute(pool).await.map(|r| r.rows_affected()));
        match inserted {
            Ok(_) => Ok(true),
            Err(e) if StoreError::is_unique_violation(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Records that the platform's call ended (once; a later report keeps the first time).
    pub async fn mark_call_ended(&self, tenant_id: &str, visit_id: &str, at_ms: i64) -> Result<()> {
        on_pool!(self, pool => sqlx::query(
            "UPDATE visits SET call_ended_at = COALESCE(call_ended_at, $1) WHERE tenant_id = $2 AND id = $3")
            .bind(at_ms).bind(tenant_id).bind(visit_id).execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(())
    }
}

/// How one webhook attempt ended.
#[derive(Debug, Clone, Copy)]
pub enum WebhookOutcome<'a> {
    Done,
    Retry { at_ms: i64, error: &'a str },
    Dead { error: &'a str },
}
