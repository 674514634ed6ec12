//! Users (matched by OpenID issuer and subject), their sessions, and logins in flight.

use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sqlx::FromRow;

use crate::keys::PhiSlot;
use crate::{Phi, Result, Store, StoreError, on_pool};

#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct UserRow {
    pub tenant_id: String,
    pub id: String,
    pub issuer: String,
    pub subject: String,
    pub role: String,
    pub created_at: i64,
    /// `Practitioner/…` the identity provider or an EHR launch names for this person.
    pub fhir_user: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct SessionRow {
    pub tenant_id: String,
    pub user_id: String,
    pub role: String,
    pub mfa: i64,
    pub csrf_token: String,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
}

/// A SMART launch between `/launch` and its callback: `state` is bound to the EHR connection
/// (its `iss`), the PKCE verifier, the OpenID nonce and the redirect URI.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SmartLaunchState {
    pub state: String,
    pub tenant_id: String,
    pub connection_id: String,
    pub code_verifier: String,
    pub nonce: String,
    pub redirect_uri: String,
    pub created_at: i64,
}

/// A login between its authorization request and its callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingLogin {
    pub pkce_verifier: String,
    pub nonce: String,
    /// It began inside an EHR's frame.
    pub embedded: bool,
}

/// How long sessions live: idle (since last use) and absolute (since login).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    pub idle_ms: i64,
    pub absolute_ms: i64,
}

fn random_token() -> Result<String> {
    let mut bytes = [0_u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| StoreError::Key("the system random source failed".to_owned()))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

fn hash(secret: &str) -> String {
    digest::digest(&digest::SHA256, secret.as_bytes()).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// A user's TOTP enrolment as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotpState {
    /// Base32 secret; None before enrolment.
    pub secret: Option<Phi>,
    pub confirmed: bool,
    pub last_step: i64,
    pub locked_until: i64,
}

impl Store {
    /// Stores a new, unconfirmed TOTP secret. Refused (false) once a secret is confirmed:
    /// replacing a working factor needs an administrator, not just a session.
    pub async fn enroll_totp(&self, user: &UserRow, secret_base32: &Phi) -> Result<bool> {
        let slot = PhiSlot { tenant_id: &user.tenant_id, table: "users", column: "totp_secret", row_id: &user.id };
        let sealed = self.seal(slot, secret_base32).await?;
        let n = on_pool!(self, pool => sqlx::query(
            "UPDATE users SET totp_secret = $1, totp_last_step = 0, totp_failures = 0 \
             WHERE tenant_id = $2 AND id = $3 AND totp_confirmed = 0")
            .bind(&sealed).bind(&user.tenant_id).bind(&user.id).execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    pub async fn totp_state(&self, tenant_id: &str, user_id: &str) -> Result<Option<TotpState>> {
        let row = on_pool!(self, pool => sqlx::query_as::<_, (Option<String>, i64, i64, i64)>(
            "SELECT totp_secret, totp_confirmed, totp_last_step, totp_locked_until FROM users WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_id).bind(user_id).fetch_optional(pool).await)?;
        let Some((sealed, confirmed, last_step, locked_until)) = row else { return Ok(None) };
        let secret = match sealed {
            Some(s) => Some(
                self.unseal(PhiSlot { tenant_id, table: "users", column: "totp_secret", row_id: user_id }, &s).await?,
            ),
            None => None,
        };
        Ok(Some(TotpState { secret, confirmed: confirmed == 1, last_step, locked_until }))
    }

    /// Accepts a verified code's time step once: false when this step (or a later one) was used.
    pub async fn accept_totp_step(&self, tenant_id: &str, user_id: &str, step: i64) -> Result<bool> {
        let n = on_pool!(self, pool => sqlx::query(
            "UPDATE users SET totp_confirmed = 1, totp_last_step = $1, totp_failures = 0 \
             WHERE tenant_id = $2 AND id = $3 AND totp_last_step < $1")
            .bind(step).bind(tenant_id).bind(user_id).execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    /// Counts a wrong code; after `limit` in a row, verification is locked for `lock_ms`.
    pub async fn reject_totp(
        &self,
        tenant_id: &str,
        user_id: &str,
        limit: i64,
        lock_ms: i64,
        now_ms: i64,
    ) -> Result<()> {
        on_pool!(self, pool => sqlx::query(
            "UPDATE users SET \
               totp_locked_until = CASE WHEN totp_failures + 1 >= $1 THEN $2 ELSE totp_locked_until END, \
               totp_failures = CASE WHEN totp_failures + 1 >= $1 THEN 0 ELSE totp_failures + 1 END \
             WHERE tenant_id = $3 AND id = $4")
            .bind(limit).bind(now_ms + lock_ms).bind(tenant_id).bind(user_id).execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn user(&self, tenant_id: &str, id: &str) -> Result<Option<UserRow>> {
        let row = on_pool!(self, pool => sqlx::query_as::<_, UserRow>(
            "SELECT tenant_id, id, issuer, subject, role, created_at, fhir_user FROM users WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_id).bind(id).fetch_optional(pool).await)?;
        Ok(row)
    }

    /// Records the FHIR user (`Practitioner/…`) the identity provider names for this person.
    pub async fn link_fhir_user(&self, tenant_id: &str, user_id: &str, fhir_user: &str) -> Result<()> {
        on_pool!(self, pool => sqlx::query("UPDATE users SET fhir_user = $1 WHERE tenant_id = $2 AND id = $3")
            .bind(fhir_user).bind(tenant_id).bind(user_id).execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// The user a SMART launch's `fhirUser` names, in `tenant_id`.
    pub async fn user_by_fhir_user(&self, tenant_id: &str, fhir_user: &str) -> Result<Option<UserRow>> {
        let row = on_pool!(self, pool => sqlx::query_as::<_, UserRow>(
            "SELECT tenant_id, id, issuer, subject, role, created_at, fhir_user FROM users WHERE tenant_id = $1 AND fhir_user = $2")
            .bind(tenant_id).bind(fhir_user).fetch_optional(pool).await)?;
        Ok(row)
    }

    /// Remembers a SMART launch's state, bound to its connection and PKCE verifier.
    pub async fn begin_smart_launch(&self, launch: &SmartLaunchState) -> Result<()> {
        on_pool!(self, pool => sqlx::query(
            "INSERT INTO smart_launches (state, tenant_id, connection_id, code_verifier, nonce, redirect_uri, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(&launch.state).bind(&launch.tenant_id).bind(&launch.connection_id).bind(&launch.code_verifier)
            .bind(&launch.nonce).bind(&launch.redirect_uri).bind(launch.created_at)
            .execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Takes (and deletes) a launch state younger than `max_age_ms`; used or expired → None.
    pub async fn finish_smart_launch(
        &self,
        state: &str,
        max_age_ms: i64,
        now_ms: i64,
    ) -> Result<Option<SmartLaunchState>> {
        let row = on_pool!(self, pool => sqlx::query_as::<_, SmartLaunchState>(
            "DELETE FROM smart_launches WHERE state = $1 \
             RETURNING state, tenant_id, connection_id, code_verifier, nonce, redirect_uri, created_at")
            .bind(state).fetch_optional(pool).await)?;
        Ok(row.filter(|l| now_ms - l.created_at <= max_age_ms))
    }

    /// The EHR connection whose FHIR base is `iss` (exactly, trailing slash aside), in any tenant.
    pub async fn connection_by_base_url(&self, iss: &str) -> Result<Option<crate::ConnectionRow>> {
        let trimmed = iss.trim_end_matches('/');
        let rows = on_pool!(self, pool => sqlx::query_as::<_, crate::ConnectionRow>(
            "SELECT * FROM ehr_connections WHERE base_url = $1 OR base_url = $2")
            .bind(trimmed).bind(format!("{trimmed}/")).fetch_all(pool).await)?;
        // The same base in two tenants would make the launch ambiguous: refuse rather than guess.
        Ok(if rows.len() == 1 { rows.into_iter().next() } else { None })
    }

    /// Marks the session as having proven a second factor.
    pub async fn confirm_session_mfa(&self, secret: &str) -> Result<()> {
        on_pool!(self, pool => sqlx::query("UPDATE sessions SET mfa = 1 WHERE id_hash = $1")
            .bind(hash(secret)).execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    pub async fn add_user(
        &self,
        tenant_id: &str,
        issuer: &str,
        subject: &str,
        role: &str,
        now_ms: i64,
    ) -> Result<UserRow> {
        let row = UserRow {
            tenant_id: tenant_id.to_owned(),
            id: uuid::Uuid::now_v7().to_string(),
            issuer: issuer.to_owned(),
            subject: subject.to_owned(),
            role: role.to_owned(),
            created_at: now_ms,
            fhir_user: None,
        };
        let inserted = on_pool!(self, pool => sqlx::query(
            "INSERT INTO users (tenant_id, id, issuer, subject, role, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(&row.tenant_id).bind(&row.id).bind(&row.issuer).bind(&row.subject).bind(&row.role).bind(now_ms)
            .execute(pool).await.map(|r| r.rows_affected()));
        match inserted {
            Ok(_) => Ok(row),
            Err(e) if StoreError::is_unique_violation(&e) => {
                Err(StoreError::Conflict(format!("a user with subject {subject} at {issuer} exists")))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub async fn user_by_subject(&self, issuer: &str, subject: &str) -> Result<Option<UserRow>> {
        let row = on_pool!(self, pool => sqlx::query_as::<_, UserRow>(
            "SELECT tenant_id, id, issuer, subject, role, created_at, fhir_user FROM users WHERE issuer = $1 AND subject = $2")
            .bind(issuer).bind(subject).fetch_optional(pool).await)?;
        Ok(row)
    }

    /// Starts a session; returns the cookie secret (shown to the browser only) and the row.
    pub async fn create_session(
        &self,
        user: &UserRow,
        mfa: bool,
        limits: SessionLimits,
        now_ms: i64,
    ) -> Result<(String, SessionRow)> {
        let secret = random_token()?;
        let row = SessionRow {
            tenant_id: user.tenant_id.clone(),
            user_id: user.id.clone(),
            role: user.role.clone(),
            mfa: i64::from(mfa),
            csrf_token: random_token()?,
            created_at: now_ms,
            last_seen_at: now_ms,
            expires_at: now_ms + limits.absolute_ms,
        };
        on_pool!(self, pool => sqlx::query(
            "INSERT INTO sessions (id_hash, tenant_id, user_id, role, mfa, csrf_token, created_at, last_seen_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8)")
            .bind(hash(&secret)).bind(&row.tenant_id).bind(&row.user_id).bind(&row.role).bind(row.mfa)
            .bind(&row.csrf_token).bind(now_ms).bind(row.expires_at)
            .execute(pool).await.map(|r| r.rows_affected()))?;
        Ok((secret, row))
    }

    /// The live session a cookie names, touched now; None when unknown, revoked, idle too long or
    /// past its absolute lifetime.
    pub async fn session(&self, secret: &str, limits: SessionLimits, now_ms: i64) -> Result<Option<SessionRow>> {
        let id_hash = hash(secret);
        let row = on_pool!(self, pool => sqlx::query_as::<_, SessionRow>(
            "UPDATE sessions SET last_seen_at = $1 WHERE id_hash = $2 AND revoked_at IS NULL \
             AND expires_at > $1 AND last_seen_at > $3 \
             RETURNING tenant_id, user_id, role, mfa, csrf_token, created_at, last_seen_at, expires_at")
            .bind(now_ms).bind(&id_hash).bind(now_ms - limits.idle_ms).fetch_optional(pool).await)?;
        Ok(row)
    }

    pub async fn end_session(&self, secret: &str, now_ms: i64) -> Result<bool> {
        let n = on_pool!(self, pool => sqlx::query("UPDATE sessions SET revoked_at = $1 WHERE id_hash = $2 AND revoked_at IS NULL")
            .bind(now_ms).bind(hash(secret)).execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(n == 1)
    }

    pub async fn begin_login(
        &self,
        state: &str,
        pkce_verifier: &str,
        nonce: &str,
        embedded: bool,
        now_ms: i64,
    ) -> Result<()> {
        on_pool!(self, pool => sqlx::query(
            "INSERT INTO oidc_logins (state, pkce_verifier, nonce, embedded, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(state).bind(pkce_verifier).bind(nonce).bind(i64::from(embedded)).bind(now_ms)
            .execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Takes (and deletes) the login for `state` if it is younger than `max_age_ms`: a state is
    /// good for one callback only.
    pub async fn finish_login(&self, state: &str, max_age_ms: i64, now_ms: i64) -> Result<Option<PendingLogin>> {
        let row = on_pool!(self, pool => sqlx::query_as::<_, (String, String, i64, i64)>(
            "DELETE FROM oidc_logins WHERE state = $1 RETURNING pkce_verifier, nonce, embedded, created_at")
            .bind(state).fetch_optional(pool).await)?;
        Ok(row
            .filter(|(_, _, _, created)| now_ms - created <= max_age_ms)
            .map(|(pkce_verifier, nonce, embedded, _)| PendingLogin { pkce_verifier, nonce, embedded: embedded == 1 }))
    }
}
