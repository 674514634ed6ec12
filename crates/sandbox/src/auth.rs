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
    codes: Mutex<HashMap<String, PendingCode>>,
    launches: Mutex<HashMap<String, LaunchContext>>,
}

#[derive(Debug, PartialEq)]
pub(crate) struct Refusal {
    pub status: u16,
    pub error: &'static str,
    pub description: String,
}

fn refuse(status: u16, error: &'static str, description: impl Into<String>) -> Refusal {
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
    pub fn new(clients: Vec<BackendClient>, apps: Vec<AppClient>, lifetime: std::time::Duration) -> Self {
        AuthState {
            clients,
            app_clients: apps,
            token_lifetime_ms: i64::try_from(lifetime.as_millis()).unwrap_or(300_000),
            ..AuthState::default()
        }
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
        let mut bytes = [0_u8; 32];
        for (i, b) in uuid::Uuid::new_v4().as_bytes().iter().chain(uuid::Uuid::new_v4().as_bytes()).enumerate() {
            if let Some(slot) = bytes.get_mut(i) {
                *slot = *b;
            }
        }
        let token = URL_SAFE_NO_PAD.encode(bytes);
        if let Ok(mut tokens) = self.tokens.lock() {
            tokens.insert(token.clone(), (client.client_id.clone(), now * 1000 + self.token_lifetime_ms));
        }
        let expires_in = (self.token_lifetime_ms / 1000).max(1);
        Ok(json!({"access_token": token, "token_type": "bearer", "expires_in": expires_in, "scope": asked.join(" ")}))
    }
}

/// A SMART app (public client using PKCE) registered with the sandbox.
#[derive(Debug, Clone)]
pub struct AppClient {
    pub client_id: String,
    /// Exact redirect URIs; nothing else is ever redirected to.
    pub redirect_uris: Vec<String>,
    pub scopes: Vec<String>,
}

/// What an EHR launch carries: who launched, for which patient and appointment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchContext {
    pub practitioner: String,
    pub patient: String,
    pub appointment: Option<String>,
}

struct PendingCode {
    client_id: String,
    redirect_uri: String,
    code_challenge: String,
    scope: String,
    context: Option<LaunchContext>,
    expires_at_ms: i64,
}

#[derive(Debug, Deserialize)]
pub(crate) struct AuthorizeParams {
    response_type: Option<String>,
    client_id: Option<String>,
    redirect_uri: Option<String>,
    scope: Option<String>,
    state: Option<String>,
    aud: Option<String>,
    launch: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct CodeTokenRequest {
    grant_type: Option<String>,
    code: Option<String>,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
    client_id: Option<String>,
}

/// Authorization codes live one minute and are good once.
const CODE_LIFETIME_MS: i64 = 60_000;

fn random_token() -> String {
    let mut bytes = Vec::with_capacity(32);
    bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Where the authorize endpoint sends the browser, or why it refuses to send it anywhere.
pub(crate) enum AuthorizeOutcome {
    Redirect(String),
    Refused(Refusal),
}

impl AuthState {
    pub fn register_launch(&self, context: LaunchContext) -> String {
        let token = random_token();
        if let Ok(mut launches) = self.launches.lock() {
            launches.insert(token.clone(), context);
        }
        token
    }

    /// The authorize endpoint in auto-approve mode. Until the client and its redirect URI are
    /// known good, errors are shown here; after that they go back to the app as `error=…`.
    pub fn authorize(&self, params: &AuthorizeParams, fhir_base: &str, now_ms: i64) -> AuthorizeOutcome {
        let client =
            match params.client_id.as_deref().and_then(|id| self.app_clients.iter().find(|c| c.client_id == id)) {
                Some(c) => c,
                None => return AuthorizeOutcome::Refused(refuse(400, "invalid_client", "unknown client_id")),
            };
        let Some(redirect_uri) = params.redirect_uri.as_deref().filter(|r| client.redirect_uris.iter().any(|u| u == r))
        else {
            return AuthorizeOutcome::Refused(refuse(
                400,
                "invalid_request",
                "redirect_uri is not registered for this client",
            ));
        };
        let state = params.state.clone().unwrap_or_default();
        let back = |error: &str, description: &str| {
            let query = serde_urlencoded::to_string([
                ("error", error),
                ("error_description", description),
                ("state", state.as_str()),
            ])
            .unwrap_or_default();
            AuthorizeOutcome::Redirect(format!("{redirect_uri}?{query}"))
        };
        if params.response_type.as_deref() != Some("code") {
            return back("unsupported_response_type", "response_type must be code");
        }
        if state.len() < 16 {
            return back("invalid_request", "state is required (at least 128 bits)");
        }
        if params.aud.as_deref() != Some(fhir_base) {
            return back("invalid_request", "aud must be this FHIR server's base URL");
        }
        if params.code_challenge_method.as_deref() != Some("S256") {
            return back("invalid_request", "PKCE with code_challenge_method S256 is required");
        }
        let Some(challenge) = params.code_challenge.clone().filter(|c| (43..=128).contains(&c.len())) else {
            return back("invalid_request", "code_challenge is required");
        };
        let scope = params.scope.clone().unwrap_or_default();
        if let Some(extra) = scope.split_whitespace().find(|s| !client.scopes.iter().any(|g| g == s)) {
            return back("invalid_scope", &format!("scope {extra} is not granted"));
        }
        let context = if scope.split_whitespace().any(|s| s == "launch") {
            let found =
                params.launch.as_deref().and_then(|l| self.launches.lock().ok().and_then(|m| m.get(l).cloned()));
            match found {
                Some(c) => Some(c),
                None => return back("invalid_request", "unknown launch"),
            }
        } else {
            None
        };
        let code = random_token();
        if let Ok(mut codes) = self.codes.lock() {
            codes.retain(|_, c| c.expires_at_ms > now_ms);
            codes.insert(
                code.clone(),
                PendingCode {
                    client_id: client.client_id.clone(),
                    redirect_uri: redirect_uri.to_owned(),
                    code_challenge: challenge,
                    scope,
                    context,
                    expires_at_ms: now_ms + CODE_LIFETIME_MS,
                },
            );
        }
        let query =
            serde_urlencoded::to_string([("code", code.as_str()), ("state", state.as_str())]).unwrap_or_default();
        AuthorizeOutcome::Redirect(format!("{redirect_uri}?{query}"))
    }

    /// The authorization-code grant: the code once, its client and redirect URI, and the PKCE
    /// verifier that hashes to its challenge.
    pub fn authorization_code(&self, request: &CodeTokenRequest, now_ms: i64) -> Result<Value, Refusal> {
        self.token_requests.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if request.grant_type.as_deref() != Some("authorization_code") {
            return Err(refuse(400, "unsupported_grant_type", "grant_type must be authorization_code"));
        }
        // Taken out whatever happens next: a code is good for one attempt.
        let pending = request
            .code
            .as_deref()
            .and_then(|c| self.codes.lock().ok().and_then(|mut codes| codes.remove(c)))
            .ok_or_else(|| refuse(400, "invalid_grant", "unknown or already used code"))?;
        if pending.expires_at_ms <= now_ms {
            return Err(refuse(400, "invalid_grant", "the code expired"));
        }
        if request.client_id.as_deref() != Some(pending.client_id.as_str()) {
            return Err(refuse(400, "invalid_grant", "the code was issued to another client"));
        }
        if request.redirect_uri.as_deref() != Some(pending.redirect_uri.as_str()) {
            return Err(refuse(400, "invalid_grant", "redirect_uri differs from the authorization request"));
        }
        let verifier = request.code_verifier.as_deref().unwrap_or_default();
        let hashed = URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()));
        if verifier.len() < 43 || hashed != pending.code_challenge {
            return Err(refuse(400, "invalid_grant", "code_verifier does not match the code_challenge"));
        }
        let token = random_token();
        let lifetime = self.token_lifetime_ms.max(1000);
        if let Ok(mut tokens) = self.tokens.lock() {
            tokens.insert(token.clone(), (pending.client_id.clone(), now_ms + lifetime));
        }
        let mut body = json!({"access_token": token, "token_type": "Bearer", "expires_in": lifetime / 1000, "scope": pending.scope});
        if let Some(context) = pending.context {
            body["patient"] = json!(context.patient.trim_start_matches("Patient/"));
            body["need_patient_banner"] = json!(true);
            body["smart_style_url"] = json!("about:blank");
            if let Some(appointment) = &context.appointment {
                body["fhirContext"] = json!([{"reference": appointment}]);
            }
            body["fhirUser"] = json!(context.practitioner);
        }
        Ok(body)
    }
}
