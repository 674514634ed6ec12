//! E-consent: the versioned texts patients read (per tenant, category and language), and the
//! single-use, expiring links through which a patient signs one without an account.

use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::audit::append_audit;
use crate::{AuditEntry, Result, Store, StoreError, on_pool};

/// One published version of a consent text. Never changed once published.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ConsentText {
    pub tenant_id: String,
    /// Telechart's consent category (`telehealth`, `recording-ai`, `disclosure`, `research`).
    pub category: String,
    pub version: String,
    /// BCP 47 language tag, e.g. `en`, `es`.
    pub language: String,
    pub title: String,
    pub body: String,
    /// Lower-case hex SHA-256 of `title`, a newline and `body`: what the signed form cites.
    pub sha256: String,
    pub published_by: String,
    pub published_at: i64,
}

impl ConsentText {
    /// The digest a text of this title and body is published under.
    pub fn digest(title: &str, body: &str) -> String {
        let mut context = digest::Context::new(&digest::SHA256);
        context.update(title.as_bytes());
        context.update(b"\n");
        context.update(body.as_bytes());
        hex(context.finish().as_ref())
    }
}

/// A signing link (never its token, which only the patient's URL holds).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ConsentLink {
    pub tenant_id: String,
    pub id: String,
    pub visit_id: String,
    pub category: String,
    pub text_version: String,
    pub language: String,
    pub created_by: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl ConsentLink {
    /// Whether the link can still be signed through at `now_ms`.
    pub fn is_open(&self, now_ms: i64) -> bool {
        self.used_at.is_none() && self.revoked_at.is_none() && now_ms < self.expires_at
    }

    /// `open`, `used`, `revoked` or `expired` at `now_ms`.
    pub fn state(&self, now_ms: i64) -> &'static str {
        match (self.used_at, self.revoked_at) {
            (Some(_), _) => "used",
            (None, Some(_)) => "revoked",
            (None, None) if now_ms >= self.expires_at => "expired",
            (None, None) => "open",
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn token_hash(token: &str) -> String {
    hex(digest::digest(&digest::SHA256, token.as_bytes()).as_ref())
}

const LINK_COLUMNS: &str = "tenant_id, id, visit_id, category, text_version, language, created_by, created_at, \
     expires_at, used_at, revoked_at";

/// Spends the link `$link_id` of `$tenant` at `$now` inside the open transaction `$tx`, or
/// fails the transaction with a conflict when it was used, revoked or has expired meanwhile.
macro_rules! spend_consent_link {
    ($tx:ident, $tenant:expr, $link_id:expr, $now:expr) => {{
        let spent = sqlx::query(
            "UPDATE consent_links SET used_at = $1 WHERE tenant_id = $2 AND id = $3 \
             AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $1",
        )
        .bind($now)
        .bind($tenant)
        .bind($link_id)
        .execute(&mut *$tx)
        .await?;
        if spent.rows_affected() == 1 {
            Ok(())
        } else {
            Err($crate::StoreError::Conflict(format!(
                "consent link {} was used, revoked or expired meanwhile",
                $link_id
            )))
        }
    }};
}
pub(crate) use spend_consent_link;

impl Store {
    /// Publishes `text` with its audit record. Publishing the same version again with the same
    /// words is a no-op (returns false); with other words it is a conflict — a published text is
    /// evidence of what patients read and is never rewritten.
    pub async fn publish_consent_text(&self, text: &ConsentText, audit: &AuditEntry) -> Result<bool> {
        let inserted = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let inserted = sqlx::query(
                "INSERT INTO consent_texts (tenant_id, category, version, language, title, body, sha256, \
                 published_by, published_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (tenant_id, category, version, language) DO NOTHING")
                .bind(&text.tenant_id).bind(&text.category).bind(&text.version).bind(&text.language)
                .bind(&text.title).bind(&text.body).bind(&text.sha256).bind(&text.published_by)
                .bind(text.published_at)
                .execute(&mut *tx).await?.rows_affected() == 1;
            if inserted {
                append_audit!(&mut *tx, audit, text.published_at)?;
                tx.commit().await?;
            }
            Ok::<bool, StoreError>(inserted)
        })?;
        if inserted {
            return Ok(true);
        }
        let existing = self
            .consent_text(&text.tenant_id, &text.category, &text.version, &text.language)
            .await?
            .ok_or_else(|| StoreError::Conflict("consent text vanished while publishing".into()))?;
        if existing.sha256 == text.sha256 {
            Ok(false)
        } else {
            Err(StoreError::Conflict(format!(
                "{} consent text version {} ({}) is published with other words (SHA-256 {}); publish a new version",
                text.category, text.version, text.language, existing.sha256
            )))
        }
    }

    pub async fn consent_text(
        &self,
        tenant_id: &str,
        category: &str,
        version: &str,
        language: &str,
    ) -> Result<Option<ConsentText>> {
        Ok(on_pool!(self, pool => sqlx::query_as::<_, ConsentText>(
            "SELECT * FROM consent_texts WHERE tenant_id = $1 AND category = $2 AND version = $3 AND language = $4")
            .bind(tenant_id).bind(category).bind(version).bind(language)
            .fetch_optional(pool).await)?)
    }

    /// Every published version of the tenant's texts (of one category, when given), oldest first.
    pub async fn consent_texts(&self, tenant_id: &str, category: Option<&str>) -> Result<Vec<ConsentText>> {
        Ok(on_pool!(self, pool => sqlx::query_as::<_, ConsentText>(
            "SELECT * FROM consent_texts WHERE tenant_id = $1 AND ($2 IS NULL OR category = $2) \
             ORDER BY category, published_at, version, language")
            .bind(tenant_id).bind(category)
            .fetch_all(pool).await)?)
    }

    /// The text a patient is given now: the latest published version of `category` in
    /// `language`.
    pub async fn current_consent_text(
        &self,
        tenant_id: &str,
        category: &str,
        language: &str,
    ) -> Result<Option<ConsentText>> {
        Ok(on_pool!(self, pool => sqlx::query_as::<_, ConsentText>(
            "SELECT * FROM consent_texts WHERE tenant_id = $1 AND category = $2 AND language = $3 \
             ORDER BY published_at DESC, version DESC LIMIT 1")
            .bind(tenant_id).bind(category).bind(language)
            .fetch_optional(pool).await)?)
    }

    /// Creates a signing link with its audit record and returns the token (32 random bytes):
    /// the only copy, for the patient's URL.
    pub async fn create_consent_link(&self, link: &ConsentLink, audit: &AuditEntry) -> Result<String> {
        let mut secret = [0_u8; 32];
        aws_lc_rs::rand::fill(&mut secret)
            .map_err(|_| StoreError::Key("the system random source failed".to_owned()))?;
        let token = format!("tcl_{}", URL_SAFE_NO_PAD.encode(secret));
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO consent_links (tenant_id, id, token_hash, visit_id, category, text_version, language, \
                 created_by, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)")
                .bind(&link.tenant_id).bind(&link.id).bind(token_hash(&token)).bind(&link.visit_id)
                .bind(&link.category).bind(&link.text_version).bind(&link.language).bind(&link.created_by)
                .bind(link.created_at).bind(link.expires_at)
                .execute(&mut *tx).await?;
            append_audit!(&mut *tx, audit, link.created_at)?;
            tx.commit().await?;
        });
        Ok(token)
    }

    /// The link a presented token opens, in whatever state it is; None for an unknown token.
    pub async fn consent_link_by_token(&self, token: &str) -> Result<Option<ConsentLink>> {
        if !token.starts_with("tcl_") || token.len() > 64 {
            return Ok(None);
        }
        let sql = format!("SELECT {LINK_COLUMNS} FROM consent_links WHERE token_hash = $1");
        Ok(on_pool!(self, pool => sqlx::query_as::<_, ConsentLink>(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(token_hash(token)).fetch_optional(pool).await)?)
    }

    pub async fn consent_links_of_visit(&self, tenant_id: &str, visit_id: &str) -> Result<Vec<ConsentLink>> {
        let sql = format!(
            "SELECT {LINK_COLUMNS} FROM consent_links WHERE tenant_id = $1 AND visit_id = $2 ORDER BY created_at, id"
        );
        Ok(on_pool!(self, pool => sqlx::query_as::<_, ConsentLink>(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(tenant_id).bind(visit_id).fetch_all(pool).await)?)
    }

    /// Revokes an unused link, with its audit record. False when it is not the visit's, or was
    /// used or revoked already.
    pub async fn revoke_consent_link(
        &self,
        tenant_id: &str,
        visit_id: &str,
        link_id: &str,
        audit: &AuditEntry,
        now_ms: i64,
    ) -> Result<bool> {
        Ok(on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let revoked = sqlx::query(
                "UPDATE consent_links SET revoked_at = $1 WHERE tenant_id = $2 AND visit_id = $3 AND id = $4 \
                 AND used_at IS NULL AND revoked_at IS NULL")
                .bind(now_ms).bind(tenant_id).bind(visit_id).bind(link_id)
                .execute(&mut *tx).await?.rows_affected() == 1;
            if revoked {
                append_audit!(&mut *tx, audit, now_ms)?;
                tx.commit().await?;
            }
            Ok::<bool, StoreError>(revoked)
        })?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_is_open_until_used_revoked_or_expired() {
        let link = ConsentLink {
            tenant_id: "t".into(),
            id: "l".into(),
            visit_id: "v".into(),
            category: "telehealth".into(),
            text_version: "1".into(),
            language: "en".into(),
            created_by: "user:c".into(),
            created_at: 0,
            expires_at: 1_000,
            used_at: None,
            revoked_at: None,
        };
        assert_eq!((link.is_open(999), link.state(999)), (true, "open"));
        assert_eq!((link.is_open(1_000), link.state(1_000)), (false, "expired"));
        let used = ConsentLink { used_at: Some(5), ..link.clone() };
        assert_eq!((used.is_open(10), used.state(10)), (false, "used"));
        let revoked = ConsentLink { revoked_at: Some(5), ..link };
        assert_eq!((revoked.is_open(10), revoked.state(10)), (false, "revoked"));
    }

    #[test]
    fn the_digest_covers_title_and_body() {
        assert_ne!(ConsentText::digest("A", "b"), ConsentText::digest("A\nb", ""));
        assert_eq!(ConsentText::digest("A", "b").len(), 64);
        // Different token, different hash; the stored hash never equals the token.
        assert_ne!(token_hash("tcl_a"), token_hash("tcl_b"));
    }
}
