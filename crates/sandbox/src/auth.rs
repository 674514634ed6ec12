//! The sandbox's SMART authorization server, Backend Services part: `client_credentials` with a
//! `private_key_jwt` assertion, checked strictly (algorithm allow-list, registered key, signature,
//! issuer = subject = client, audience = this token endpoint, expiry at most five minutes ahead,
//! `jti` never seen before, scopes within the client's grant); and the App Launch part:
//! authorization code with PKCE S256 only, exact redirect URIs, single-use short-lived codes,
//! `aud` bound to this FHIR server, launch context in the token response.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app_auth::{AppClient, LaunchContext};

/// A backend client registered with the sandbox: its public keys and what it may ask for.
#[derive(Debug, Clone)]
pub struct BackendClient {
    pub client_id: String,
    pub jwks: JwkSet,
    pub scopes: Vec<String>,
}

#[derive(Default)]
pub(crate) struct AuthState {
    pub clients: Vec<BackendClient>,
    /// jti → the assertion's expiry (seconds); a jti is refused until then.
    seen_jti: Mutex<HashMap<String, i64>>,
    /// Issued access token → (client, expiry seconds).
    tokens: Mutex<HashMap<String, (String, i64)>>,
    pub token_requests: std::sync::atomic::AtomicU64,
    token_lifetime_ms: i64,
    pub app_clients: Vec<AppClient>,
    pub(crate) codes: Mutex<HashMap<String, crate::app_auth::PendingCode>>,
    pub(crate) launches: Mutex<HashMap<String, LaunchContext>>,
    pub(crate) refresh_tokens: Mutex<HashMap<String, crate::app_auth::RefreshGrant>>,
    /// Issue a new refresh token on every refresh (and retire the old one); Epic and Oracle do not.
    pub(crate) rotate_refresh_tokens: bool,
    /// Refreshes of one refresh token closer together than this are throttled (Oracle: 60 s).
    pub(crate) refresh_min_interval_ms: i64,
    /// When each refresh token was last used.
    pub(crate) last_refresh: Mutex<HashMap<String, i64>>,
    /// Signs id_tokens (RS256); made on first use.
    pub(crate) id_token_key: std::sync::OnceLock<Option<crate::app_auth::IdTokenKey>>,
}

#[derive(Debug, PartialEq)]
pub struct Refusal {
    pub status: u16,
    pub error: &'static str,
    pub description: String,
}

pub(crate) fn refuse(status: u16, error: &'static str, description: impl Into<String>) -> Refusal {
    Refusal { status, error, description: description.into() }
}

#[derive(Deserialize)]
pub(crate) struct TokenRequest {
    grant_type: Option<String>,
    scope: Option<String>,
    client_assertion_type: Option<String>,
    client_assertion: Option<String>,
}

#[derive(Deserialize)]
struct AssertionClaims {
    sub: String,
    exp: i64,
    jti: String,
}

impl AuthState {
    pub fn new(
        clients: Vec<BackendClient>,
        apps: Vec<AppClient>,
        lifetime: std::time::Duration,
        rotate_refresh_tokens: bool,
    ) -> Self {
        AuthState {
            clients,
            app_clients: apps,
            rotate_refresh_tokens,
            token_lifetime_ms: i64::try_from(lifetime.as_millis()).unwrap_or(300_000),
            ..AuthState::default()
        }
    }

    /// Records an access token this server issued, good until `expires_at_ms`.
    pub(crate) fn issue_access_token(&self, client_id: &str, expires_at_ms: i64) -> String {
        let token = crate::app_auth::random_token();
        if let Ok(mut tokens) = self.tokens.lock() {
            tokens.insert(token.clone(), (client_id.to_owned(), expires_at_ms));
        }
        token
    }

    pub(crate) fn token_lifetime_ms(&self) -> i64 {
        self.token_lifetime_ms.max(1000)
    }

    /// `now_ms`: milliseconds since the epoch.
    pub fn valid_token(&self, token: &str, now_ms: i64) -> bool {
        self.tokens.lock().map(|t| t.get(token).is_some_and(|(_, exp)| *exp > now_ms)).unwrap_or(false)
    }

    /// Checks a token request; on success returns the token response body.
    pub fn client_credentials(&self, request: &TokenRequest, token_url: &str, now: i64) -> Result<Value, Refusal> {
        self.token_requests.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if request.grant_type.as_deref() != Some("client_credentials") {
            return Err(refuse(400, "unsupported_grant_type", "grant_type must be client_credentials"));
        }
        if request.client_assertion_type.as_deref() != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer") {
            return Err(refuse(401, "invalid_client", "a jwt-bearer client_assertion is required"));
        }
        let assertion = request.client_assertion.as_deref().unwrap_or_default();
        let header =
            jsonwebtoken::decode_header(assertion).map_err(|_| refuse(401, "invalid_client", "malformed assertion"))?;
        if !matches!(header.alg, Algorithm::RS384 | Algorithm::ES384) {
            return Err(refuse(401, "invalid_client", "assertion algorithm must be RS384 or ES384"));
        }
        // The issuer names the client whose keys verify the signature.
        let issuer = assertion
            .split('.')
            .nth(1)
            .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .and_then(|c| c.get("iss").and_then(Value::as_str).map(str::to_owned))
            .ok_or_else(|| refuse(401, "invalid_client", "assertion has no iss"))?;
        let client = self
            .clients
            .iter()
            .find(|c| c.client_id == issuer)
            .ok_or_else(|| refuse(401, "invalid_client", "unknown client"))?;
        let kid = header.kid.as_deref().ok_or_else(|| refuse(401, "invalid_client", "assertion has no kid"))?;
        let jwk = client.jwks.find(kid).ok_or_else(|| refuse(401, "invalid_client", "unknown kid"))?;
        let key = DecodingKey::from_jwk(jwk).map_err(|_| refuse(401, "invalid_client", "unusable registered key"))?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = 0;
        validation.set_audience(&[token_url]);
        validation.set_issuer(&[client.client_id.as_str()]);
        validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
        let claims = jsonwebtoken::decode::<AssertionClaims>(assertion, &key, &validation)
            .map_err(|e| refuse(401, "invalid_client", format!("assertion refused: {e}")))?
            .claims;
        if claims.sub != client.client_id {
            return Err(refuse(401, "invalid_client", "sub must equal iss"));
        }
        if claims.exp > now + 300 {
            return Err(refuse(401, "invalid_client", "assertion exp is more than five minutes ahead"));
        }
        {
            let mut seen = self.seen_jti.lock().map_err(|_| refuse(500, "server_error", "state"))?;
            seen.retain(|_, exp| *exp >= now);
            if seen.insert(format!("{}|{}", client.client_id, claims.jti), claims.exp).is_some() {
                return Err(refuse(401, "invalid_client", "assertion jti replayed"));
            }
        }
        let asked: Vec<&str> = request.scope.as_deref().unwrap_or_default().split_whitespace().collect();
        if let Some(extra) = asked.iter().find(|s| !client.scopes.iter().any(|g| g == *s)) {
            return Err(refuse(400, "invalid_scope", format!("scope {extra} is not granted to this client")));
        }
        let token = self.issue_access_token(&client.client_id, now * 1000 + self.token_lifetime_ms);
        let expires_in = (self.token_lifetime_ms / 1000).max(1);
        Ok(json!({"access_token": token, "token_type": "bearer", "expires_in": expires_in, "scope": asked.join(" ")}))
    }
}
