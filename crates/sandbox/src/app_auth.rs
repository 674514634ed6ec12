//! The sandbox's SMART App Launch authorization server: authorization code with PKCE S256 only,
//! exact redirect URIs, single-use codes that live a minute, `aud` bound to this FHIR server;
//! EHR launch (`launch` + a registered launch) and standalone launch (`launch/patient`, the
//! patient picked on the approve page); an RS256 id_token carrying the nonce and `fhirUser` when
//! `openid` is asked; refresh tokens for `offline_access`/`online_access`, rotated on use only
//! when the sandbox is told to (Epic and Oracle keep the same one).

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::KeyPair;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{AuthState, Refusal, refuse};

/// A SMART app (public client using PKCE) registered with the sandbox.
#[derive(Debug, Clone)]
pub struct AppClient {
    pub client_id: String,
    /// Exact redirect URIs; nothing else is ever redirected to.
    pub redirect_uris: Vec<String>,
    pub scopes: Vec<String>,
}

/// What a launch carries: who launched, for which patient and appointment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchContext {
    pub practitioner: String,
    pub patient: String,
    pub appointment: Option<String>,
}

pub(crate) struct PendingCode {
    client_id: String,
    redirect_uri: String,
    code_challenge: String,
    scope: String,
    /// The signed-in person, `Practitioner/{id}`.
    user: String,
    context: Option<LaunchContext>,
    nonce: Option<String>,
    expires_at_ms: i64,
}

pub(crate) struct RefreshGrant {
    client_id: String,
    scope: String,
    user: String,
    context: Option<LaunchContext>,
    expires_at_ms: i64,
}

pub(crate) struct IdTokenKey {
    kid: String,
    encoding: EncodingKey,
    jwk: Value,
}

/// The authorize request's parameters (query string, or the approve page's form).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AuthorizeParams {
    pub response_type: Option<String>,
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub scope: Option<String>,
    pub state: Option<String>,
    pub aud: Option<String>,
    pub launch: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub nonce: Option<String>,
    pub login_hint: Option<String>,
}

impl AuthorizeParams {
    /// The parameters as name/value pairs, for the approve page's hidden fields.
    pub(crate) fn pairs(&self) -> Vec<(&'static str, &str)> {
        [
            ("response_type", &self.response_type),
            ("client_id", &self.client_id),
            ("redirect_uri", &self.redirect_uri),
            ("scope", &self.scope),
            ("state", &self.state),
            ("aud", &self.aud),
            ("launch", &self.launch),
            ("code_challenge", &self.code_challenge),
            ("code_challenge_method", &self.code_challenge_method),
            ("nonce", &self.nonce),
            ("login_hint", &self.login_hint),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
        .collect()
    }
}

/// A request that passed every check: only who signs in (and, standalone, which patient) remains.
pub(crate) struct CheckedRequest {
    client_id: String,
    redirect_uri: String,
    state: String,
    scope: String,
    challenge: String,
    nonce: Option<String>,
    /// The EHR launch's context, fixed by the EHR.
    pub ehr_context: Option<LaunchContext>,
    /// A standalone launch asking the person to pick a patient.
    pub wants_patient: bool,
}

impl CheckedRequest {
    fn back(&self, pairs: &[(&str, &str)]) -> String {
        let mut all = pairs.to_vec();
        all.push(("state", self.state.as_str()));
        format!("{}?{}", self.redirect_uri, serde_urlencoded::to_string(all).unwrap_or_default())
    }

    /// The person said no.
    pub fn deny(&self) -> String {
        self.back(&[("error", "access_denied"), ("error_description", "the user declined")])
    }
}

#[derive(Deserialize)]
pub(crate) struct AppTokenRequest {
    grant_type: Option<String>,
    code: Option<String>,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
    client_id: Option<String>,
    refresh_token: Option<String>,
}

/// Authorization codes live one minute and are good once.
const CODE_LIFETIME_MS: i64 = 60_000;
/// `offline_access` refresh tokens live 30 days; `online_access` ones 12 hours.
const OFFLINE_REFRESH_MS: i64 = 30 * 24 * 3_600_000;
const ONLINE_REFRESH_MS: i64 = 12 * 3_600_000;

pub(crate) fn random_token() -> String {
    let mut bytes = Vec::with_capacity(32);
    bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    URL_SAFE_NO_PAD.encode(bytes)
}

fn has_scope(scope: &str, wanted: &str) -> bool {
    scope.split_whitespace().any(|s| s == wanted)
}

fn make_id_token_key() -> Option<IdTokenKey> {
    let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).ok()?;
    let der: aws_lc_rs::encoding::Pkcs8V1Der = pair.as_der().ok()?;
    let body = STANDARD.encode(der.as_ref());
    let lines: Vec<&str> = body.as_bytes().chunks(64).filter_map(|c| std::str::from_utf8(c).ok()).collect();
    let pem = format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", lines.join("\n"));
    let encoding = EncodingKey::from_rsa_pem(pem.as_bytes()).ok()?;
    let kid = uuid::Uuid::new_v4().simple().to_string();
    let public = pair.public_key();
    let jwk = json!({
        "kty": "RSA", "alg": "RS256", "use": "sig", "kid": kid,
        "n": URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
        "e": URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
    });
    Some(IdTokenKey { kid, encoding, jwk })
}

impl AuthState {
    pub fn register_launch(&self, context: LaunchContext) -> String {
        let token = random_token();
        if let Ok(mut launches) = self.launches.lock() {
            launches.insert(token.clone(), context);
        }
        token
    }

    fn id_token_key(&self) -> Option<&IdTokenKey> {
        self.id_token_key.get_or_init(make_id_token_key).as_ref()
    }

    /// The public keys that verify this server's id_tokens.
    pub fn jwks(&self) -> Value {
        json!({"keys": self.id_token_key().map(|k| vec![k.jwk.clone()]).unwrap_or_default()})
    }

    /// Checks an authorize request. Until the client and its redirect URI are known good,
    /// errors are shown here (`Err(None)` carries the refusal); after that they go back to the
    /// app as `error=…` (`Err(Some(url))`).
    pub(crate) fn check_authorize(
        &self,
        params: &AuthorizeParams,
        fhir_base: &str,
    ) -> Result<CheckedRequest, Result<String, Refusal>> {
        let client = params
            .client_id
            .as_deref()
            .and_then(|id| self.app_clients.iter().find(|c| c.client_id == id))
            .ok_or_else(|| Err(refuse(400, "invalid_client", "unknown client_id")))?;
        let redirect_uri = params
            .redirect_uri
            .as_deref()
            .filter(|r| client.redirect_uris.iter().any(|u| u == r))
            .ok_or_else(|| Err(refuse(400, "invalid_request", "redirect_uri is not registered for this client")))?;
        let mut checked = CheckedRequest {
            client_id: client.client_id.clone(),
            redirect_uri: redirect_uri.to_owned(),
            state: params.state.clone().unwrap_or_default(),
            scope: params.scope.clone().unwrap_or_default(),
            challenge: String::new(),
            nonce: params.nonce.clone().filter(|n| !n.is_empty()),
            ehr_context: None,
            wants_patient: false,
        };
        let back = |checked: &CheckedRequest, error: &str, description: &str| {
            Ok(checked.back(&[("error", error), ("error_description", description)]))
        };
        if params.response_type.as_deref() != Some("code") {
            return Err(back(&checked, "unsupported_response_type", "response_type must be code"));
        }
        if checked.state.len() < 16 {
            return Err(back(&checked, "invalid_request", "state is required (at least 128 bits)"));
        }
        if params.aud.as_deref() != Some(fhir_base) {
            return Err(back(&checked, "invalid_request", "aud must be this FHIR server's base URL"));
        }
        if params.code_challenge_method.as_deref() != Some("S256") {
            return Err(back(&checked, "invalid_request", "PKCE with code_challenge_method S256 is required"));
        }
        match params.code_challenge.clone().filter(|c| (43..=128).contains(&c.len())) {
            Some(challenge) => checked.challenge = challenge,
            None => return Err(back(&checked, "invalid_request", "code_challenge is required")),
        }
        if let Some(extra) = checked.scope.split_whitespace().find(|s| !client.scopes.iter().any(|g| g == s)) {
            let message = format!("scope {extra} is not granted");
            return Err(back(&checked, "invalid_scope", &message));
        }
        if has_scope(&checked.scope, "launch") {
            let found =
                params.launch.as_deref().and_then(|l| self.launches.lock().ok().and_then(|m| m.get(l).cloned()));
            match found {
                Some(c) => checked.ehr_context = Some(c),
                None => return Err(back(&checked, "invalid_request", "unknown launch")),
            }
        } else {
            checked.wants_patient = has_scope(&checked.scope, "launch/patient");
        }
        Ok(checked)
    }

    /// Issues the code for an approved request and returns where the browser goes.
    /// `user` is the signed-in practitioner; `patient` the one picked in a standalone launch.
    pub(crate) fn approve(
        &self,
        checked: CheckedRequest,
        user: String,
        patient: Option<String>,
        now_ms: i64,
    ) -> String {
        let context = match (&checked.ehr_context, patient) {
            (Some(c), _) => Some(c.clone()),
            (None, Some(patient)) if checked.wants_patient => {
                Some(LaunchContext { practitioner: user.clone(), patient, appointment: None })
            }
            _ => None,
        };
        let code = random_token();
        let redirect = checked.back(&[("code", code.as_str())]);
        if let Ok(mut codes) = self.codes.lock() {
            codes.retain(|_, c| c.expires_at_ms > now_ms);
            codes.insert(
                code,
                PendingCode {
                    client_id: checked.client_id,
                    redirect_uri: checked.redirect_uri,
                    code_challenge: checked.challenge,
                    scope: checked.scope,
                    user,
                    context,
                    nonce: checked.nonce,
                    expires_at_ms: now_ms + CODE_LIFETIME_MS,
                },
            );
        }
        redirect
    }

    /// The token endpoint for apps: `authorization_code` or `refresh_token`.
    pub fn app_token(&self, request: &AppTokenRequest, fhir_base: &str, now_ms: i64) -> Result<Value, Refusal> {
        self.token_requests.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        match request.grant_type.as_deref() {
            Some("authorization_code") => self.authorization_code(request, fhir_base, now_ms),
            Some("refresh_token") => self.refresh(request, fhir_base, now_ms),
            _ => Err(refuse(400, "unsupported_grant_type", "grant_type must be authorization_code or refresh_token")),
        }
    }

    /// The code once, its client and redirect URI, and the PKCE verifier that hashes to its challenge.
    fn authorization_code(&self, request: &AppTokenRequest, fhir_base: &str, now_ms: i64) -> Result<Value, Refusal> {
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
        let grant = RefreshGrant {
            client_id: pending.client_id,
            scope: pending.scope,
            user: pending.user,
            context: pending.context,
            expires_at_ms: 0,
        };
        self.token_body(grant, pending.nonce.as_deref(), true, fhir_base, now_ms)
    }

    /// A refresh token of this client, still live; rotated only when the sandbox rotates.
    fn refresh(&self, request: &AppTokenRequest, fhir_base: &str, now_ms: i64) -> Result<Value, Refusal> {
        let presented = request.refresh_token.as_deref().unwrap_or_default();
        let mut grants = self.refresh_tokens.lock().map_err(|_| refuse(500, "server_error", "state"))?;
        grants.retain(|_, g| g.expires_at_ms > now_ms);
        let grant =
            grants.get(presented).ok_or_else(|| refuse(400, "invalid_grant", "unknown or expired refresh token"))?;
        if request.client_id.as_deref() != Some(grant.client_id.as_str()) {
            return Err(refuse(400, "invalid_grant", "the refresh token was issued to another client"));
        }
        // §8.14: refreshes less than a minute apart are throttled (Oracle-like).
        if self.refresh_min_interval_ms > 0
            && let Ok(mut last) = self.last_refresh.lock()
        {
            if last.get(presented).is_some_and(|at| now_ms - at < self.refresh_min_interval_ms) {
                return Err(refuse(429, "slow_down", "refreshed less than a minute ago"));
            }
            last.insert(presented.to_owned(), now_ms);
        }
        if !self.rotate_refresh_tokens {
            let grant = RefreshGrant {
                client_id: grant.client_id.clone(),
                scope: grant.scope.clone(),
                user: grant.user.clone(),
                context: grant.context.clone(),
                expires_at_ms: grant.expires_at_ms,
            };
            drop(grants);
            return self.token_body(grant, None, false, fhir_base, now_ms);
        }
        let grant = grants.remove(presented).ok_or_else(|| refuse(400, "invalid_grant", "refresh token gone"))?;
        drop(grants);
        self.token_body(grant, None, true, fhir_base, now_ms)
    }

    /// The token response: access token, launch context, id_token when `openid` was asked,
    /// and a refresh token when `offline_access`/`online_access` was asked and a new one is due.
    fn token_body(
        &self,
        grant: RefreshGrant,
        nonce: Option<&str>,
        new_refresh_token: bool,
        fhir_base: &str,
        now_ms: i64,
    ) -> Result<Value, Refusal> {
        let lifetime = self.token_lifetime_ms();
        let token = self.issue_access_token(&grant.client_id, now_ms + lifetime);
        let mut body =
            json!({"access_token": token, "token_type": "Bearer", "expires_in": lifetime / 1000, "scope": grant.scope});
        if let Some(context) = &grant.context {
            let patient = context.patient.trim_start_matches("Patient/");
            body["patient"] = json!(patient);
            body["smart_style_url"] = json!("about:blank");
            if self.epic_launch_keys {
                // §8.2: Epic's keys, the banner flag as a string; visit keys on an EHR launch only.
                body["need_patient_banner"] = json!("false");
                body["__epic.dstu2.patient"] = json!(format!("T{patient}"));
                body["loginDepartment"] = json!("10501101");
                if let Some(appointment) = &context.appointment {
                    body["appointment"] = json!(appointment.trim_start_matches("Appointment/"));
                    body["location"] = json!("e4W4rmGe9QzuGm2Dy4NBqVc0KDe6yGC4FnM");
                    let encounter = self.launch_encounters.lock().ok().and_then(|m| m.get(appointment).cloned());
                    if let Some(encounter) = encounter {
                        body["encounter"] = json!(encounter);
                    }
                }
            } else {
                body["need_patient_banner"] = json!(true);
                if let Some(appointment) = &context.appointment {
                    body["fhirContext"] = json!([{"reference": appointment}]);
                }
            }
        }
        if has_scope(&grant.scope, "openid") {
            body["id_token"] = json!(self.id_token(&grant, nonce, fhir_base, now_ms)?);
        }
        let refresh_lifetime = if has_scope(&grant.scope, "offline_access") {
            Some(OFFLINE_REFRESH_MS)
        } else if has_scope(&grant.scope, "online_access") {
            Some(ONLINE_REFRESH_MS)
        } else {
            None
        };
        if let (Some(refresh_lifetime), true) = (refresh_lifetime, new_refresh_token) {
            let refresh = random_token();
            body["refresh_token"] = json!(refresh);
            if let Ok(mut grants) = self.refresh_tokens.lock() {
                grants.insert(refresh, RefreshGrant { expires_at_ms: now_ms + refresh_lifetime, ..grant });
            }
        }
        Ok(body)
    }

    fn id_token(
        &self,
        grant: &RefreshGrant,
        nonce: Option<&str>,
        fhir_base: &str,
        now_ms: i64,
    ) -> Result<String, Refusal> {
        let key = self.id_token_key().ok_or_else(|| refuse(500, "server_error", "no id_token signing key"))?;
        let now = now_ms / 1000;
        let mut claims = json!({
            "iss": fhir_base,
            "sub": grant.user.trim_start_matches("Practitioner/"),
            "aud": grant.client_id,
            "iat": now,
            "exp": now + 300,
        });
        if let Some(nonce) = nonce {
            claims["nonce"] = json!(nonce);
        }
        if has_scope(&grant.scope, "fhirUser") {
            claims["fhirUser"] = json!(format!("{fhir_base}/{}", grant.user));
        }
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, &claims, &key.encoding).map_err(|_| refuse(500, "server_error", "signing failed"))
    }
}

/// `login_hint` as a Practitioner reference, or the default.
pub(crate) fn practitioner_or_default(hint: Option<&str>, default: &str) -> String {
    match hint.filter(|h| !h.is_empty()) {
        Some(h) if h.starts_with("Practitioner/") => h.to_owned(),
        Some(h) => format!("Practitioner/{h}"),
        None => default.to_owned(),
    }
}
