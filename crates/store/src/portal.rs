//! Patient portal links: single-use, expiring, revocable. Only SHA-256 hashes of the link's token
//! and of the session secret it is exchanged for are kept. Opening the link spends it in the same
//! statement that starts the session, so two opens of one link cannot both succeed.

use aws_lc_rs::digest;

use crate::audit::append_audit;
use crate::{AuditEntry, Result, Store, StoreError, on_pool};

/// A portal link (never its token or session secret).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PortalLink {
    pub tenant_id: String,
    pub id: String,
    pub visit_id: String,
    pub language: String,
    pub created_by: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub spent_at: Option<i64>,
    pub session_expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub revoked_by: Option<String>,
}

impl PortalLink {
    /// `open` (not opened yet), `in-use` (its session runs), `used`, `revoked` or `expired`.
    pub fn state(&self, now_ms: i64) -> &'static str {
        match (self.revoked_at, self.spent_at) {
            (Some(_), _) => "revoked",
            (None, Some(_)) if self.session_expires_at.is_some_and(|e| now_ms < e) => "in-use",
            (None, Some(_)) => "used",
            (None, None) if now_ms >= self.expires_at => "expired",
            (None, None) => "open",
        }
    }
}

/// Why a link did not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortalRefusal {
    Unknown,
    Used,
    Revoked,
    Expired,
}

fn hash(secret: &str) -> String {
    digest::digest(&digest::SHA256, secret.as_bytes()).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

const COLUMNS: &str = "tenant_id, id, visit_id, language, created_by, created_at, expires_at, spent_at, \
     session_expires_at, revoked_at, revoked_by";

impl Store {
    /// Keeps a new link whose URL holds `token`, with the webhooks that carry it to the
    /// platforms and its audit record, in one transaction.
    pub async fn create_portal_link(
        &self,
        link: &PortalLink,
        token: &str,
        webhooks: &[crate::NewWebhook],
        audit: &AuditEntry,
    ) -> Result<()> {
        let sealed = self.seal_webhooks(&link.tenant_id, webhooks).await?;
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            crate::webhooks::insert_webhooks!(tx, &link.tenant_id, webhooks, sealed, link.created_at)?;
            sqlx::query(
                "INSERT INTO portal_links (tenant_id, id, token_hash, visit_id, language, created_by, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
                .bind(&link.tenant_id).bind(&link.id).bind(hash(token)).bind(&link.visit_id).bind(&link.language)
                .bind(&link.created_by).bind(link.created_at).bind(link.expires_at)
                .execute(&mut *tx).await?;
            append_audit!(&mut *tx, audit, link.created_at)?;
            tx.commit().await
        })?;
        Ok(())
    }

    /// Spends the link `token` names and starts its session under `session_secret` until
    /// `session_expires_at`; or says why it cannot be opened.
    pub async fn open_portal_link(
        &self,
        token: &str,
        session_secret: &str,
        session_expires_at: i64,
        now_ms: i64,
    ) -> Result<std::result::Result<PortalLink, PortalRefusal>> {
        let token_hash = hash(token);
        let spent = on_pool!(self, pool => sqlx::query(
            "UPDATE portal_links SET spent_at = $1, session_hash = $2, session_expires_at = $3 \
             WHERE token_hash = $4 AND spent_at IS NULL AND revoked_at IS NULL AND expires_at > $1")
            .bind(now_ms).bind(hash(session_secret)).bind(session_expires_at).bind(&token_hash)
            .execute(pool).await.map(|r| r.rows_affected()))?;
        let sql = format!("SELECT {COLUMNS} FROM portal_links WHERE token_hash = $1");
        let link = on_pool!(self, pool => sqlx::query_as::<_, PortalLink>(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(&token_hash).fetch_optional(pool).await)?;
        Ok(match link {
            None => Err(PortalRefusal::Unknown),
            Some(link) if spent == 1 => Ok(link),
            Some(link) if link.revoked_at.is_some() => Err(PortalRefusal::Revoked),
            Some(link) if link.spent_at.is_some() => Err(PortalRefusal::Used),
            Some(_) => Err(PortalRefusal::Expired),
        })
    }

    /// The link whose session `session_secret` is, while that session runs and the link is not revoked.
    pub async fn portal_session(&self, session_secret: &str, now_ms: i64) -> Result<Option<PortalLink>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM portal_links WHERE session_hash = $1 AND revoked_at IS NULL AND session_expires_at > $2"
        );
        Ok(on_pool!(self, pool => sqlx::query_as::<_, PortalLink>(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(hash(session_secret)).bind(now_ms).fetch_optional(pool).await)?)
    }

    pub async fn portal_links_of_visit(&self, tenant_id: &str, visit_id: &str) -> Result<Vec<PortalLink>> {
        let sql =
            format!("SELECT {COLUMNS} FROM portal_links WHERE tenant_id = $1 AND visit_id = $2 ORDER BY created_at");
        Ok(on_pool!(self, pool => sqlx::query_as::<_, PortalLink>(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(tenant_id).bind(visit_id).fetch_all(pool).await)?)
    }

    /// Revokes the link and ends its session, with the audit record. Revoking twice is refused.
    pub async fn revoke_portal_link(
        &self,
        tenant_id: &str,
        visit_id: &str,
        link_id: &str,
        by: &str,
        audit: &AuditEntry,
        now_ms: i64,
    ) -> Result<()> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let n = sqlx::query(
                "UPDATE portal_links SET revoked_at = $1, revoked_by = $2 \
                 WHERE tenant_id = $3 AND visit_id = $4 AND id = $5 AND revoked_at IS NULL")
                .bind(now_ms).bind(by).bind(tenant_id).bind(visit_id).bind(link_id)
                .execute(&mut *tx).await?.rows_affected();
            if n != 1 {
                return Err(StoreError::NotFound { entity: "open portal link", id: link_id.to_owned() });
            }
            append_audit!(&mut *tx, audit, now_ms)?;
            tx.commit().await?;
            Ok(())
        })
    }
}
