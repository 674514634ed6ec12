//! SMART App Launch, the client side: discovery (`.well-known/smart-configuration`, else the
//! CapabilityStatement's oauth-uris), the authorization-code exchange (public client, PKCE S256),
//! id_token verification, and user tokens refreshed single-flight.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::Mutex;

use crate::EhrError;

/// Where to authorize, and how the server signs its id_tokens.
#[derive(Debug, Clone, Deserialize)]
pub struct SmartConfiguration {
    #[serde(default)]
    pub issuer: Option<String>,
    #[serde(default)]
    pub jwks_uri: Option<String>,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    #[serde(default)]
    pub code_challenge_methods_supported: Vec<String>,
    #[serde(default)]
    pub capabilities: Vec<String>,
}

/// A token response: the access token, launch context and, when asked, id_token and refresh token.
#[derive(Debug, Clone, Deserialize)]
pub struct LaunchToken {
    pub access_token: String,
    #[serde(default)]
    pub expires_in: Option<u64>,
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub id_token: Option<String>,
    #[serde(default)]
    pub patient: Option<String>,
    #[serde(default)]
    pub encounter: Option<String>,
    #[serde(default, rename = "fhirContext")]
    pub fhir_context: Vec<Value>,
    /// Epic sends it as a string (`"false"`, VENDORS.md §8.2): both forms are taken.
    #[serde(default, deserialize_with = "lenient_bool")]
    pub need_patient_banner: Option<bool>,
    #[serde(default)]
    pub smart_style_url: Option<String>,
    /// Epic puts the appointment in context this way.
    #[serde(default)]
    pub appointment: Option<String>,
}

impl LaunchToken {
    /// The Appointment in context: SMART 2.1 `fhirContext`, or a vendor's `appointment`.
    pub fn appointment_id(&self) -> Option<String> {
        let from_context = self.fhir_context.iter().find_map(|c| {
            let reference = c.get("reference")?.as_str()?;
            match telechart_fhir::parse_reference(reference) {
                Some(("Appointment", id)) => Some(id.to_owned()),
                _ => None,
            }
        });
        from_context
            .or_else(|| self.appointment.as_deref().map(|a| a.strip_prefix("Appointment/").unwrap_or(a).to_owned()))
    }
}

/// A boolean sent as JSON `true`/`false` or as the string `"true"`/`"false"`.
fn lenient_bool<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<bool>, D::Error> {
    match Option::<Value>::deserialize(deserializer)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(b)),
        Some(Value::String(s)) if s == "true" => Ok(Some(true)),
        Some(Value::String(s)) if s == "false" => Ok(Some(false)),
        Some(other) => Err(serde::de::Error::custom(format!("need_patient_banner: not a boolean: {other}"))),
    }
}

fn http(timeout: Duration) -> Result<reqwest::Client, EhrError> {
    reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| EhrError::BadBaseUrl(e.to_string()))
}

pub(crate) async fn get_json(url: &str, what: &'static str, timeout: Duration) -> Result<Value, EhrError> {
    let unreachable =
        |reason: String| EhrError::Unreachable { method: "discovery", resource_type: what.into(), reason };
    let response = http(timeout)?
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json, application/fhir+json")
        .send()
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let status = response.status();
    if !status.is_success() {
        return Err(EhrError::Refused {
            method: "discovery",
            resource_type: what.into(),
            status: status.as_u16(),
            message: format!("{url} answered {status}"),
        });
    }
    response.json().await.map_err(|e| EhrError::Protocol {
        method: "discovery",
        resource_type: what.into(),
        reason: e.to_string(),
    })
}

/// The `oauth-uris` extension of a CapabilityStatement (servers from before `.well-known`).
fn from_capability_statement(statement: &Value) -> Option<SmartConfiguration> {
    const OAUTH_URIS: &str = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris";
    let uris = statement["rest"]
        .as_array()?
        .iter()
        .filter_map(|rest| rest["security"]["extension"].as_array())
        .flatten()
        .find(|e| e["url"] == OAUTH_URIS)?;
    let uri = |name: &str| {
        uris["extension"].as_array()?.iter().find(|e| e["url"] == name)?["valueUri"].as_str().map(str::to_owned)
    };
    Some(SmartConfiguration {
        issuer: None,
        jwks_uri: None,
        authorization_endpoint: uri("authorize")?,
        token_endpoint: uri("token")?,
        // The CapabilityStatement cannot say; S256 is what we send regardless.
        code_challenge_methods_supported: vec!["S256".into()],
        capabilities: Vec::new(),
    })
}

/// Discovers `iss`'s authorization server; the caller has checked `iss` is registered.
/// `.well-known/smart-configuration` first, then the CapabilityStatement.
pub async fn smart_configuration(iss: &str, timeout: Duration) -> Result<SmartConfiguration, EhrError> {
    let base = iss.trim_end_matches('/');
    let config =
        match get_json(&format!("{base}/.well-known/smart-configuration"), "smart-configuration", timeout).await {
            Ok(json) => serde_json::from_value::<SmartConfiguration>(json).map_err(|e| EhrError::Protocol {
                method: "discovery",
                resource_type: "smart-configuration".into(),
                reason: e.to_string(),
            })?,
            Err(EhrError::Refused { .. }) => {
                let statement = get_json(&format!("{base}/metadata"), "CapabilityStatement", timeout).await?;
                from_capability_statement(&statement).ok_or_else(|| {
                    EhrError::NotSupported(format!("{base} publishes neither a SMART configuration nor oauth-uris"))
                })?
            }
            Err(other) => return Err(other),
        };
    if !config.code_challenge_methods_supported.iter().any(|m| m == "S256") {
        return Err(EhrError::NotSupported("the EHR does not offer PKCE S256".into()));
    }
    Ok(config)
}

async fn token_request(
    token_endpoint: &str,
    form: &[(&str, &str)],
    timeout: Duration,
) -> Result<LaunchToken, EhrError> {
    let body = serde_urlencoded::to_string(form).map_err(|e| EhrError::NotSupported(e.to_string()))?;
    let response = http(timeout)?
        .post(token_endpoint)
        .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(reqwest::header::ACCEPT, "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| EhrError::Unreachable { method: "token", resource_type: "token".into(), reason: e.to_string() })?;
    let status = response.status();
    if !status.is_success() {
        let error = response
            .json::<Value>()
            .await
            .ok()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| format!("HTTP {status}"));
        return Err(EhrError::Refused {
            method: "token",
            resource_type: "token".into(),
            status: status.as_u16(),
            message: error,
        });
    }
    response.json().await.map_err(|e| EhrError::Protocol {
        method: "token",
        resource_type: "token".into(),
        reason: e.to_string(),
    })
}

/// One authorization request's secrets: `state` (256 random bits), the PKCE verifier (384 bits,
/// sent only as its S256 challenge) and the OpenID `nonce` (256 bits). The caller keeps them
/// server-side, bound to the EHR, until the callback.
#[derive(Debug, Clone)]
pub struct AuthorizationRequest {
    pub state: String,
    pub code_verifier: String,
    pub nonce: String,
}

fn random(bytes: usize) -> Result<String, EhrError> {
    use base64::Engine;
    let mut buffer = vec![0_u8; bytes];
    aws_lc_rs::rand::fill(&mut buffer).map_err(|_| EhrError::NotSupported("no random source".into()))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buffer))
}

impl AuthorizationRequest {
    pub fn new() -> Result<Self, EhrError> {
        Ok(AuthorizationRequest { state: random(32)?, code_verifier: random(48)?, nonce: random(32)? })
    }

    pub fn code_challenge(&self) -> String {
        use base64::Engine;
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, self.code_verifier.as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
    }

    /// The authorize URL: code flow, PKCE S256, `aud` = the FHIR base, `launch` for an EHR launch.
    pub fn url(
        &self,
        config: &SmartConfiguration,
        client_id: &str,
        redirect_uri: &str,
        scope: &str,
        aud: &str,
        launch: Option<&str>,
    ) -> Result<String, EhrError> {
        let challenge = self.code_challenge();
        let mut query = vec![
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", redirect_uri),
            ("scope", scope),
            ("state", self.state.as_str()),
            ("aud", aud),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("nonce", self.nonce.as_str()),
        ];
        if let Some(launch) = launch {
            query.push(("launch", launch));
        }
        let query = serde_urlencoded::to_string(query).map_err(|e| EhrError::NotSupported(e.to_string()))?;
        let separator = if config.authorization_endpoint.contains('?') { '&' } else { '?' };
        Ok(format!("{}{separator}{query}", config.authorization_endpoint))
    }
}

/// Exchanges the code (public client: `client_id` in the body, PKCE verifier).
pub async fn exchange_code(
    token_endpoint: &str,
    client_id: &str,
    code: &str,
    redirect_uri: &str,
    code_verifier: &str,
    timeout: Duration,
) -> Result<LaunchToken, EhrError> {
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri),
        ("code_verifier", code_verifier),
        ("client_id", client_id),
    ];
    token_request(token_endpoint, &form, timeout).await
}

/// The keys that verify the server's id_tokens: `jwks_uri` from the SMART configuration, else
/// from the issuer's OpenID configuration.
pub async fn id_token_keys(config: &SmartConfiguration, timeout: Duration) -> Result<JwkSet, EhrError> {
    let jwks_uri = match (&config.jwks_uri, &config.issuer) {
        (Some(uri), _) => uri.clone(),
        (None, Some(issuer)) => {
            let url = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
            let openid = get_json(&url, "openid-configuration", timeout).await?;
            openid["jwks_uri"].as_str().map(str::to_owned).ok_or_else(|| EhrError::Protocol {
                method: "discovery",
                resource_type: "openid-configuration".into(),
                reason: "no jwks_uri".into(),
            })?
        }
        (None, None) => return Err(EhrError::NotSupported("the EHR publishes no id_token keys".into())),
    };
    let keys = get_json(&jwks_uri, "jwks", timeout).await?;
    serde_json::from_value(keys).map_err(|e| EhrError::Protocol {
        method: "discovery",
        resource_type: "jwks".into(),
        reason: e.to_string(),
    })
}

/// What Telechart takes from a verified id_token.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct IdClaims {
    pub sub: String,
    #[serde(default, rename = "fhirUser")]
    pub fhir_user: Option<String>,
    /// How the person authenticated at the EHR (RFC 8176), e.g. `["pwd", "otp"]`.
    #[serde(default)]
    pub amr: Vec<String>,
    #[serde(default)]
    nonce: Option<String>,
    #[serde(default)]
    azp: Option<String>,
}

/// Why an id_token was refused. Shown to no one but the log; the browser gets a bare refusal.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("id_token refused: {0}")]
pub struct IdTokenRefused(pub String);

/// Algorithms an EHR may sign id_tokens with (SMART requires RS256). Never `none`, never HMAC:
/// a public key must not double as a shared secret.
const ID_TOKEN_ALGORITHMS: &[Algorithm] =
    &[Algorithm::RS256, Algorithm::RS384, Algorithm::RS512, Algorithm::PS256, Algorithm::ES256, Algorithm::ES384];

/// Verifies signature (a key of `keys` named by `kid`), `iss`, `aud` (and `azp` when there are
/// several audiences), `exp` (60 s leeway) and `nonce`.
pub fn verify_id_token(
    id_token: &str,
    keys: &JwkSet,
    issuer: &str,
    client_id: &str,
    nonce: &str,
) -> Result<IdClaims, IdTokenRefused> {
    let refused = |why: &str| IdTokenRefused(why.to_owned());
    let header = jsonwebtoken::decode_header(id_token).map_err(|_| refused("malformed"))?;
    if !ID_TOKEN_ALGORITHMS.contains(&header.alg) {
        return Err(refused(&format!("algorithm {:?} is not accepted", header.alg)));
    }
    let jwk = match header.kid.as_deref() {
        Some(kid) => keys.find(kid).ok_or_else(|| refused("unknown kid"))?,
        None if keys.keys.len() == 1 => keys.keys.first().ok_or_else(|| refused("no keys"))?,
        None => return Err(refused("no kid and several keys")),
    };
    if jwk.common.key_algorithm.is_some_and(|a| format!("{a:?}") != format!("{:?}", header.alg)) {
        return Err(refused("the key is for another algorithm"));
    }
    let key = DecodingKey::from_jwk(jwk).map_err(|_| refused("unusable key"))?;
    let mut validation = Validation::new(header.alg);
    validation.leeway = 60;
    validation.set_issuer(&[issuer.trim_end_matches('/'), &format!("{}/", issuer.trim_end_matches('/'))]);
    validation.set_audience(&[client_id]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    let data = jsonwebtoken::decode::<Value>(id_token, &key, &validation).map_err(|e| refused(&e.to_string()))?;
    let several_audiences = data.claims["aud"].as_array().is_some_and(|a| a.len() > 1);
    let claims: IdClaims = serde_json::from_value(data.claims).map_err(|e| refused(&e.to_string()))?;
    if several_audiences && claims.azp.as_deref() != Some(client_id) {
        return Err(refused("azp is not this client"));
    }
    // Constant-time comparison is not needed: the nonce is not a secret once the token exists.
    if claims.nonce.as_deref() != Some(nonce) {
        return Err(refused("nonce mismatch"));
    }
    Ok(claims)
}

struct CurrentTokens {
    access_token: String,
    refresh_token: Option<String>,
    renew_at: DateTime<Utc>,
}

/// A clinician's tokens from a launch, renewed with the refresh token shortly before they expire.
/// Concurrent callers share one refresh; a refresh token the server sends replaces the old one,
/// otherwise the old one is kept (Epic and Oracle Health do not rotate).
pub struct UserTokens {
    token_endpoint: String,
    client_id: String,
    timeout: Duration,
    assumed_lifetime: Duration,
    current: Mutex<CurrentTokens>,
    refreshes: AtomicU64,
}

fn renew_at(now: DateTime<Utc>, expires_in: Option<u64>, assumed: Duration) -> DateTime<Utc> {
    let seconds = expires_in.unwrap_or(assumed.as_secs()).clamp(1, 86_400);
    let lifetime = chrono::Duration::seconds(i64::try_from(seconds).unwrap_or(300));
    now + lifetime - (lifetime / 10).min(chrono::Duration::seconds(30))
}

impl UserTokens {
    pub fn new(
        token_endpoint: &str,
        client_id: &str,
        token: &LaunchToken,
        profile: &crate::AuthProfile,
        timeout: Duration,
        now: DateTime<Utc>,
    ) -> Self {
        UserTokens {
            token_endpoint: token_endpoint.to_owned(),
            client_id: client_id.to_owned(),
            timeout,
            assumed_lifetime: profile.assumed_token_lifetime,
            current: Mutex::new(CurrentTokens {
                access_token: token.access_token.clone(),
                refresh_token: token.refresh_token.clone(),
                renew_at: renew_at(now, token.expires_in, profile.assumed_token_lifetime),
            }),
            refreshes: AtomicU64::new(0),
        }
    }

    /// A live access token: the current one, or one refresh shared by every caller waiting.
    pub async fn access_token(&self, now: DateTime<Utc>) -> Result<String, EhrError> {
        let mut current = self.current.lock().await;
        if current.renew_at > now {
            return Ok(current.access_token.clone());
        }
        let refresh_token = current.refresh_token.clone().ok_or_else(|| {
            EhrError::NotSupported("the access token expired and the EHR gave no refresh token".into())
        })?;
        self.refreshes.fetch_add(1, Ordering::SeqCst);
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.as_str()),
            ("client_id", self.client_id.as_str()),
        ];
        let token = token_request(&self.token_endpoint, &form, self.timeout).await?;
        current.access_token = token.access_token.clone();
        if let Some(rotated) = token.refresh_token {
            current.refresh_token = Some(rotated);
        }
        current.renew_at = renew_at(now, token.expires_in, self.assumed_lifetime);
        Ok(token.access_token)
    }

    /// Refresh requests sent so far.
    pub fn refreshes(&self) -> u64 {
        self.refreshes.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oauth_uris_are_read_from_a_capability_statement() {
        let statement = serde_json::json!({"resourceType": "CapabilityStatement", "rest": [{"mode": "server", "security": {
            "extension": [{"url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris", "extension": [
                {"url": "token", "valueUri": "https://ehr.example/token"},
                {"url": "authorize", "valueUri": "https://ehr.example/authorize"}]}]}}]});
        let config = from_capability_statement(&statement).unwrap();
        assert_eq!(config.authorization_endpoint, "https://ehr.example/authorize");
        assert_eq!(config.token_endpoint, "https://ehr.example/token");
        assert!(from_capability_statement(&serde_json::json!({"rest": [{}]})).is_none());
    }

    #[test]
    fn the_appointment_comes_from_fhir_context_or_the_vendor_field() {
        let token: LaunchToken = serde_json::from_value(serde_json::json!({
            "access_token": "a", "fhirContext": [{"reference": "Encounter/e"}, {"reference": "Appointment/a-1"}]}))
        .unwrap();
        assert_eq!(token.appointment_id().as_deref(), Some("a-1"));
        let epic: LaunchToken =
            serde_json::from_value(serde_json::json!({"access_token": "a", "appointment": "eAbC123"})).unwrap();
        assert_eq!(epic.appointment_id().as_deref(), Some("eAbC123"));
    }
}
