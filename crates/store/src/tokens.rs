//! API tokens: `tct_{id}_{secret}`. The id finds the row; only SHA-256(secret) is stored and it
//! is compared in constant time. A token is shown once, scoped to a tenant and a role, and
//! revocable.

use std::fmt;

use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sqlx::FromRow;

use crate::{Result, Store, StoreError, on_pool};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiTokenRow {
    pub tenant_id: String,
    pub id: String,
    pub name: String,
    pub role: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

#[derive(FromRow)]
struct TokenRecord {
    tenant_id: String,
    id: String,
    name: String,
    role: String,
    secret_hash: String,
    created_at: i64,
    revoked_at: Option<i64>,
}

impl From<TokenRecord> for ApiTokenRow {
    fn from(r: TokenRecord) -> Self {
        ApiTokenRow {
            tenant_id: r.tenant_id,
            id: r.id,
            name: r.name,
            role: r.role,
            created_at: r.created_at,
            revoked_at: r.revoked_at,
        }
    }
}

/// A token's plaintext, shown once. `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedToken(String);

impl IssuedToken {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IssuedToken(<redacted>)")
    }
}

fn hash(secret: &str) -> String {
    digest::digest(&digest::SHA256, secret.as_bytes()).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

impl Store {
    pub async fn create_api_token(
        &self,
        tenant_id: &str,
        name: &str,
        role: &str,
        now_ms: i64,
    ) -> Result<(ApiTokenRow, IssuedToken)> {
        let mut secret = [0_u8; 32];
        aws_lc_rs::rand::fill(&mut secret)
            .map_err(|_| StoreError::Key("the system random source failed".to_owned()))?;
        let secret = URL_SAFE_NO_PAD.encode(secret);
        let id = uuid::Uuid::new_v4().simple().to_string();
        let row = ApiTokenRow {
            tenant_id: tenant_id.to_owned(),
            id: id.clone(),
            name: name.to_owned(),
            role: role.to_owned(),
            created_at: now_ms,
            revoked_at: None,
        };
        on_pool!(self, pool => sqlx::query(
            "INSERT INTO api_tokens (tenant_id, id, name, role, secret_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(&row.tenant_id).bind(&row.id).bind(&row.name).bind(&row.role).bind(hash(&secret)).bind(now_ms)
            .execute(pool).await.map(|r| r.rows_affected()))?;
        Ok((row, IssuedToken(format!("tct_{id}_{secret}"))))
    }

    /// The live token a presented bearer string names, or None (unknown, malformed, wrong
    /// secret or revoked — the caller learns nothing about which).
    pub async fn authenticate_api_token(&self, presented: &str) -> Result<Option<ApiTokenRow>> {
        let Some((id, secret)) = presented.strip_prefix("tct_").and_then(|rest| rest.split_once('_')) else {
            return Ok(None);
        };
        if id.len() != 32 || !id.chars().all(|c| c.is_ascii_hexdigit()) {
            return Ok(None);
        }
        let record = on_pool!(self, pool => sqlx::query_as::<_, TokenRecord>(
            "SELECT tenant_id, id, name, role, secret_hash, created_at, revoked_at FROM api_tokens WHERE id = $1")
            .bind(id).fetch_optional(pool).await)?;
        let Some(record) = record else { return Ok(None) };
        let matches =
            aws_lc_rs::constant_time::verify_slices_are_equal(hash(secret).as_bytes(), record.secret_hash.as_bytes())
                .is_ok();
        Ok((matches && record.revoked_at.is_none()).then(|| record.into()))
    }

    pub async fn revoke_api_token(&self, tenant_id: &str, id: &str, now_ms: i64) -> Result<bool> {
        let n = on_pool!(self, pool => sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 WHERE tenant_id = $2 AND id = $3 AND revoked_at IS NULL")
            .bind(now_ms).bind(tenant_id).bind(id).execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    pub async fn api_tokens(&self, tenant_id: &str) -> Result<Vec<ApiTokenRow>> {
        let rows = on_pool!(self, pool => sqlx::query_as::<_, TokenRecord>(
            "SELECT tenant_id, id, name, role, secret_hash, created_at, revoked_at FROM api_tokens \
             WHERE tenant_id = $1 ORDER BY created_at, id")
            .bind(tenant_id).fetch_all(pool).await)?;
        Ok(rows.into_iter().map(ApiTokenRow::from).collect())
    }
}
