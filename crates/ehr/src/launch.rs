//! SMART App Launch, the client side: discovery, and the authorization-code exchange (public
//! client with PKCE S256) that yields the launch context.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::EhrError;

/// What `.well-known/smart-configuration` says about where to authorize.
#[derive(Debug, Clone, Deserialize)]
pub struct SmartConfiguration {
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    #[serde(default)]
    pub code_challenge_methods_supported: Vec<String>,
}

/// The token response of a launch, with its context.
#[derive(Debug, Clone, Deserialize)]
pub struct LaunchToken {
    pub access_token: String,
    #[serde(default)]
    pub patient: Option<String>,
    #[serde(default)]
    pub encounter: Option<String>,
    #[serde(default, rename = "fhirContext")]
    pub fhir_context: Vec<Value>,
    /// Some servers return the user here; others only in the id_token.
    #[serde(default, rename = "fhirUser")]
    pub fhir_user: Option<String>,
    #[serde(default)]
    pub need_patient_banner: Option<bool>,
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
        from_context.or_else(|| self.appointment.clone())
    }
}

fn client(timeout: Duration) -> Result<reqwest::Client, EhrError> {
    reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| EhrError::BadBaseUrl(e.to_string()))
}

/// Reads `{iss}/.well-known/smart-configuration`; the caller has checked `iss` is registered.
pub async fn smart_configuration(iss: &str, timeout: Duration) -> Result<SmartConfiguration, EhrError> {
    let url = format!("{}/.well-known/smart-configuration", iss.trim_end_matches('/'));
    let response =
        client(timeout)?.get(&url).header(reqwest::header::ACCEPT, "application/json").send().await.map_err(|e| {
            EhrError::Unreachable {
                method: "discovery",
                resource_type: "smart-configuration".into(),
                reason: e.to_string(),
            }
        })?;
    if !response.status().is_success() {
        return Err(EhrError::Refused {
            method: "discovery",
            resource_type: "smart-configuration".into(),
            status: response.status().as_u16(),
            message: "no SMART configuration".into(),
        });
    }
    let config: SmartConfiguration = response.json().await.map_err(|e| EhrError::Protocol {
        method: "discovery",
        resource_type: "smart-configuration".into(),
        reason: e.to_string(),
    })?;
    if !config.code_challenge_methods_supported.iter().any(|m| m == "S256") {
        return Err(EhrError::NotSupported("the EHR does not offer PKCE S256".into()));
    }
    Ok(config)
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
    let form = serde_urlencoded::to_string([
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri),
        ("code_verifier", code_verifier),
        ("client_id", client_id),
    ])
    .map_err(|e| EhrError::NotSupported(e.to_string()))?;
    let response = client(timeout)?
        .post(token_endpoint)
        .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(reqwest::header::ACCEPT, "application/json")
        .body(form)
        .send()
        .await
        .map_err(|e| EhrError::Unreachable { method: "token", resource_type: "token".into(), reason: e.to_string() })?;
    let status = response.status();
    if !status.is_success() {
        return Err(EhrError::Refused {
            method: "token",
            resource_type: "token".into(),
            status: status.as_u16(),
            message: "code refused".into(),
        });
    }
    response.json().await.map_err(|e| EhrError::Protocol {
        method: "token",
        resource_type: "token".into(),
        reason: e.to_string(),
    })
}
