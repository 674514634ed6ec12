//! SMART Backend Services: the client-credentials grant with a `private_key_jwt` client
//! assertion (RS384 or ES384), and an access-token cache that renews single-flight.
//!
//! The assertion follows the SMART Backend Services profile: `iss` = `sub` = client_id,
//! `aud` = the token endpoint, `exp` at most five minutes ahead, a unique `jti`.

use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::EhrError;

/// Signature algorithms SMART Backend Services asks servers to support.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SigningAlg {
    #[serde(rename = "RS384")]
    Rs384,
    #[serde(rename = "ES384")]
    Es384,
}

impl SigningAlg {
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlg::Rs384 => "RS384",
            SigningAlg::Es384 => "ES384",
        }
    }

    fn jwt(self) -> Algorithm {
        match self {
            SigningAlg::Rs384 => Algorithm::RS384,
            SigningAlg::Es384 => Algorithm::ES384,
        }
    }
}

fn key_error(what: &str) -> EhrError {
    EhrError::NotSupported(format!("backend signing key: {what}"))
}

/// A private key for client assertions, with its public JWK. `Debug` shows the kid only.
#[derive(Clone)]
pub struct SigningKey {
    pub kid: String,
    pub alg: SigningAlg,
    encoding: Arc<EncodingKey>,
    pkcs8: Arc<Vec<u8>>,
    public_jwk: Value,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({} {})", self.alg.as_str(), self.kid)
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let lines: Vec<&str> = body.as_bytes().chunks(64).filter_map(|c| std::str::from_utf8(c).ok()).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

impl SigningKey {
    /// A fresh key: RSA 2048 for RS384, P-384 for ES384. The kid is random.
    pub fn generate(alg: SigningAlg) -> Result<Self, EhrError> {
        let pkcs8 = match alg {
            SigningAlg::Rs384 => {
                let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                    .map_err(|_| key_error("RSA key generation failed"))?;
                let der: aws_lc_rs::encoding::Pkcs8V1Der =
                    pair.as_der().map_err(|_| key_error("RSA key export failed"))?;
                der.as_ref().to_vec()
            }
            SigningAlg::Es384 => EcdsaKeyPair::generate(&ECDSA_P384_SHA384_FIXED_SIGNING)
                .and_then(|pair| pair.to_pkcs8v1())
                .map_err(|_| key_error("EC key generation failed"))?
                .as_ref()
                .to_vec(),
        };
        Self::from_pkcs8(&uuid::Uuid::new_v4().simple().to_string(), alg, &pkcs8)
    }

    /// Loads a stored key (PKCS#8 DER).
    pub fn from_pkcs8(kid: &str, alg: SigningAlg, pkcs8: &[u8]) -> Result<Self, EhrError> {
        let pem = pem("PRIVATE KEY", pkcs8);
        let (encoding, public_jwk) = match alg {
            SigningAlg::Rs384 => {
                let pair =
                    aws_lc_rs::rsa::KeyPair::from_pkcs8(pkcs8).map_err(|_| key_error("not an RSA PKCS#8 key"))?;
                let public = pair.public_key();
                let jwk = json!({
                    "kty": "RSA", "alg": "RS384", "use": "sig", "kid": kid, "key_ops": ["verify"],
                    "n": URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
                    "e": URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
                });
                (EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| key_error(&e.to_string()))?, jwk)
            }
            SigningAlg::Es384 => {
                let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, pkcs8)
                    .map_err(|_| key_error("not a P-384 PKCS#8 key"))?;
                // Uncompressed point: 0x04 ‖ X ‖ Y, 48 bytes each on P-384.
                let point = pair.public_key().as_ref();
                let (x, y) =
                    point.get(1..49).zip(point.get(49..97)).ok_or_else(|| key_error("unexpected P-384 point"))?;
                let jwk = json!({
                    "kty": "EC", "crv": "P-384", "alg": "ES384", "use": "sig", "kid": kid, "key_ops": ["verify"],
                    "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y),
                });
                (EncodingKey::from_ec_pem(pem.as_bytes()).map_err(|e| key_error(&e.to_string()))?, jwk)
            }
        };
        Ok(SigningKey {
            kid: kid.to_owned(),
            alg,
            encoding: Arc::new(encoding),
            pkcs8: Arc::new(pkcs8.to_vec()),
            public_jwk,
        })
    }

    /// PKCS#8 DER of the private key, for sealed storage.
    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    pub fn public_jwk(&self) -> &Value {
        &self.public_jwk
    }

    /// A client assertion for `token_url`, valid for five minutes from `now`.
    pub fn client_assertion(&self, client_id: &str, token_url: &str, now: DateTime<Utc>) -> Result<String, EhrError> {
        let mut header = Header::new(self.alg.jwt());
        header.kid = Some(self.kid.clone());
        header.typ = Some("JWT".to_owned());
        let claims = AssertionClaims {
            iss: client_id,
            sub: client_id,
            aud: token_url,
            exp: now.timestamp() + 300,
            iat: now.timestamp(),
            jti: uuid::Uuid::new_v4().to_string(),
        };
        jsonwebtoken::encode(&header, &claims, &self.encoding).map_err(|e| key_error(&e.to_string()))
    }
}

#[derive(Serialize)]
struct AssertionClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: i64,
    iat: i64,
    jti: String,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<i64>,
}

#[derive(Clone)]
struct CachedToken {
    token: String,
    /// Renewal time: before expiry by a tenth of the lifetime, at most 30 s, so a token never
    /// dies in flight and a short-lived one is still reused.
    renew_at: DateTime<Utc>,
}

/// Access tokens for one EHR connection, fetched with client credentials and reused until shortly
/// before they expire. Concurrent callers share one renewal.
pub struct BackendServices {
    pub client_id: String,
    pub token_url: String,
    pub scope: String,
    key: SigningKey,
    http: reqwest::Client,
    cached: Mutex<Option<CachedToken>>,
}

impl BackendServices {
    pub fn new(client_id: &str, token_url: &str, scope: &str, key: SigningKey) -> Result<Self, EhrError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| EhrError::BadBaseUrl(format!("{token_url}: {e}")))?;
        Ok(BackendServices {
            client_id: client_id.to_owned(),
            token_url: token_url.to_owned(),
            scope: scope.to_owned(),
            key,
            http,
            cached: Mutex::new(None),
        })
    }

    /// A valid access token, from the cache or freshly fetched (one fetch however many wait).
    pub async fn access_token(&self, now: DateTime<Utc>) -> Result<String, EhrError> {
        let mut cached = self.cached.lock().await;
        if let Some(token) = cached.as_ref().filter(|t| t.renew_at > now) {
            return Ok(token.token.clone());
        }
        let assertion = self.key.client_assertion(&self.client_id, &self.token_url, now)?;
        let form = serde_urlencoded::to_string([
            ("grant_type", "client_credentials"),
            ("scope", self.scope.as_str()),
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
            ("client_assertion", assertion.as_str()),
        ])
        .map_err(|e| key_error(&e.to_string()))?;
        let response = self
            .http
            .post(&self.token_url)
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(reqwest::header::ACCEPT, "application/json")
            .body(form)
            .send()
            .await
            .map_err(|e| EhrError::Unreachable {
                method: "token",
                resource_type: "token".into(),
                reason: e.to_string(),
            })?;
        let status = response.status();
        let retry_after = crate::RetryAfter::from_headers(response.headers());
        let body = response.bytes().await.map_err(|e| EhrError::Unreachable {
            method: "token",
            resource_type: "token".into(),
            reason: e.to_string(),
        })?;
        if !status.is_success() {
            let error = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or_else(|| format!("HTTP {status}"));
            // A throttled or failing token endpoint is a wait, not a refusal.
            if status.as_u16() == 429 || status.is_server_error() {
                return Err(EhrError::Throttled {
                    method: "token",
                    resource_type: "token".into(),
                    status: status.as_u16(),
                    retry_after,
                    message: error,
                    slow_down: status.as_u16() == 429,
                });
            }
            return Err(EhrError::Refused {
                method: "token",
                resource_type: "token".into(),
                status: status.as_u16(),
                message: error,
            });
        }
        let token: TokenResponse = serde_json::from_slice(&body).map_err(|e| EhrError::Protocol {
            method: "token",
            resource_type: "token".into(),
            reason: format!("not a token response: {e}"),
        })?;
        let lifetime = chrono::Duration::seconds(token.expires_in.unwrap_or(300).clamp(1, 86_400));
        let margin = (lifetime / 10).min(chrono::Duration::seconds(30));
        *cached = Some(CachedToken { token: token.access_token.clone(), renew_at: now + lifetime - margin });
        Ok(token.access_token)
    }
}

/// The `token_endpoint` from `{fhir_base}/.well-known/smart-configuration` (a backend-only
/// server may publish no authorize endpoint, so only this field is required).
pub async fn discover_token_endpoint(fhir_base: &str, timeout: Duration) -> Result<String, EhrError> {
    let url = format!("{}/.well-known/smart-configuration", fhir_base.trim_end_matches('/'));
    let config = crate::launch::get_json(&url, "smart-configuration", timeout).await?;
    config.get("token_endpoint").and_then(Value::as_str).map(str::to_owned).ok_or_else(|| EhrError::Protocol {
        method: "discovery",
        resource_type: "smart-configuration".into(),
        reason: "no token_endpoint".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};

    #[derive(Deserialize)]
    struct Claims {
        iss: String,
        sub: String,
        exp: i64,
        iat: i64,
        jti: String,
    }

    #[test]
    fn assertions_verify_with_the_published_jwk_for_both_algorithms() {
        let now: DateTime<Utc> = "2026-11-26T10:00:00Z".parse().unwrap();
        for alg in [SigningAlg::Rs384, SigningAlg::Es384] {
            let key = SigningKey::generate(alg).unwrap();
            let jwt = key.client_assertion("telechart", "https://ehr.example/token", now).unwrap();
            let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(key.public_jwk().clone()).unwrap();
            let mut validation = Validation::new(alg.jwt());
            validation.set_audience(&["https://ehr.example/token"]);
            validation.validate_exp = false;
            let data =
                jsonwebtoken::decode::<Claims>(&jwt, &DecodingKey::from_jwk(&jwk).unwrap(), &validation).unwrap();
            assert_eq!((data.claims.iss.as_str(), data.claims.sub.as_str()), ("telechart", "telechart"));
            assert_eq!(data.claims.exp - data.claims.iat, 300);
            assert_eq!(data.header.kid.as_deref(), Some(key.kid.as_str()));
            assert!(!data.claims.jti.is_empty());
            // Reloaded from its PKCS#8, the key is the same key.
            let again = SigningKey::from_pkcs8(&key.kid, alg, key.pkcs8()).unwrap();
            assert_eq!(again.public_jwk(), key.public_jwk());
            assert_eq!(format!("{key:?}"), format!("SigningKey({} {})", alg.as_str(), key.kid));
        }
    }
}
