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
    /// Where the keys were fetched from, when registered by JWKS URL (Epic takes EC keys
    /// only that way, §8.3); `None`: uploaded.
    pub jwks_url: Option<String>,
}

/// An access token issued: its client, expiry (ms), and (backend tokens) the scopes granted.
type IssuedToken = (String, i64, Option<String>);

/// How the backend token endpoint treats scopes and clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum BackendStyle {
    /// SMART: the asked scopes, each of which must be granted.
    #[default]
    Plain,
    /// §8.3/§8.4 (Epic): the asked `scope` is ignored; the grant is the registered APIs in v1
    /// spelling; an unmapped client is `unauthorized_client`; `jti` ≤ 151 characters; EC keys
    /// only from a JWKS URL; an unregistered API answers 403 with an empty body.
    Registered,
    /// §8.15 (Oracle): the app is fixed to v1 or v2 scopes; the other syntax is `invalid_scope`;
    /// an API outside the scopes answers 403 with non-FHIR JSON.
    FixedSyntax,
}

/// Whether `scopes` (v1 `read`/`write`/`*` or v2 `cruds`) allow `write` or read on `rtype`.
pub(crate) fn scopes_cover(scopes: &str, rtype: &str, write: bool) -> bool {
    scopes.split_whitespace().any(|scope| {
        let Some((_, rest)) = scope.split_once('/') else { return false };
        let Some((resource, perms)) = rest.split_once('.') else { return false };
        if resource != "*" && resource != rtype {
            return false;
        }
        match perms {
            "*" => true,
            "read" => !write,
            "write" => write,
            v2 => v2.chars().any(|c| if write { "cud".contains(c) } else { "rs".contains(c) }),
        }
    })
}

/// v2 scope syntax (`.cruds`) rather than v1 (`.read`, `.write`, `.*`).
fn is_v2(scope: &str) -> bool {
    scope.rsplit_once('.').is_some_and(|(_, perms)| !matches!(perms, "read" | "write" | "*"))
}

#[derive(Default)]
pub(crate) struct AuthState {
    pub clients: Vec<BackendClient>,
    /// jti → the assertion's expiry (seconds); a jti is refused until then.
    seen_jti: Mutex<HashMap<String, i64>>,
    /// Issued access token → (client, expiry seconds).
    tokens: Mutex<HashMap<String, IssuedToken>>,
    pub(crate) backend_style: BackendStyle,
    /// §8.2: launch tokens carry Epic's context keys (and `need_patient_banner` as a string).
    pub(crate) epic_launch_keys: bool,
    /// The EHR's Encounter of each launched appointment (`Appointment/x` → encounter id).
    pub(crate) launch_encounters: Mutex<HashMap<String, String>>,
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
        self.issue_scoped_token(client_id, expires_at_ms, None)
    }

    fn issue_scoped_token(&self, client_id: &str, expires_at_ms: i64, scope: Option<String>) -> String {
        let token = crate::app_auth::random_token();
        if let Ok(mut tokens) = self.tokens.lock() {
            tokens.insert(token.clone(), (client_id.to_owned(), expires_at_ms, scope));
        }
        token
    }

    /// The scopes a backend token was granted (`None` for app tokens, which are not checked here).
    pub(crate) fn token_scope(&self, token: &str) -> Option<String> {
        self.tokens.lock().ok().and_then(|t| t.get(token).and_then(|(_, _, scope)| scope.clone()))
    }

    pub(crate) fn token_lifetime_ms(&self) -> i64 {
        self.token_lifetime_ms.max(1000)
    }

    /// `now_ms`: milliseconds since the epoch.
    pub fn valid_token(&self, token: &str, now_ms: i64) -> bool {
        self.tokens.lock().map(|t| t.get(token).is_some_and(|(_, exp, _)| *exp > now_ms)).unwrap_or(false)
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
        let registered = self.backend_style == BackendStyle::Registered;
        let client = self.clients.iter().find(|c| c.client_id == issuer).ok_or_else(|| {
            if registered {
                refuse(400, "unauthorized_client", "the client is not mapped to a background user")
            } else {
                refuse(401, "invalid_client", "unknown client")
            }
        })?;
        if registered && header.alg == Algorithm::ES384 && client.jwks_url.is_none() {
            return Err(refuse(401, "invalid_client", "EC keys are taken from a JWK Set URL only"));
        }
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
        if registered && claims.jti.len() > 151 {
            return Err(refuse(401, "invalid_client", "assertion jti is longer than 151 characters"));
        }
        {
            let mut seen = self.seen_jti.lock().map_err(|_| refuse(500, "server_error", "state"))?;
            seen.retain(|_, exp| *exp >= now);
            if seen.insert(format!("{}|{}", client.client_id, claims.jti), claims.exp).is_some() {
                return Err(refuse(401, "invalid_client", "assertion jti replayed"));
            }
        }
        let asked: Vec<&str> = request.scope.as_deref().unwrap_or_default().split_whitespace().collect();
        let granted = match self.backend_style {
            // The registered APIs, whatever was asked, in v1 spelling.
            BackendStyle::Registered => client.scopes.iter().filter(|s| !is_v2(s)).cloned().collect::<Vec<_>>(),
            style => {
                if style == BackendStyle::FixedSyntax {
                    let app_v2 = client.scopes.iter().any(|s| is_v2(s));
                    if let Some(other) = asked.iter().find(|s| is_v2(s) != app_v2) {
                        return Err(refuse(
                            400,
                            "invalid_scope",
                            format!(
                                "empty-scopes: {other} is not in this app's scope syntax ({})",
                                if app_v2 { "v2" } else { "v1" }
                            ),
                        ));
                    }
                }
                if let Some(extra) = asked.iter().find(|s| !client.scopes.iter().any(|g| g == *s)) {
                    return Err(refuse(400, "invalid_scope", format!("scope {extra} is not granted to this client")));
                }
                asked.iter().map(|s| (*s).to_owned()).collect()
            }
        };
        let scope = granted.join(" ");
        let token =
            self.issue_scoped_token(&client.client_id, now * 1000 + self.token_lifetime_ms, Some(scope.clone()));
        let expires_in = (self.token_lifetime_ms / 1000).max(1);
        Ok(json!({"access_token": token, "token_type": "bearer", "expires_in": expires_in, "scope": scope}))
    }
}
