//! The SMART App Launch client against the sandbox's authorization server: discovery, code +
//! PKCE, a verified id_token, and user tokens refreshed once for 64 concurrent callers, keeping
//! or replacing the refresh token as the server does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use telechart_ehr::{AuthProfile, UserTokens};
use telechart_sandbox::{AppClient, LaunchContext, RunningSandbox, Sandbox, SandboxConfig};

const REDIRECT: &str = "https://telechart.example/launch/callback";
const TIMEOUT: Duration = Duration::from_secs(10);

async fn sandbox(rotate: bool) -> RunningSandbox {
    let mut config = SandboxConfig::new("2026-11-26".parse().unwrap());
    config.rotate_refresh_tokens = rotate;
    config.app_clients = vec![AppClient {
        client_id: "telechart-app".into(),
        redirect_uris: vec![REDIRECT.into()],
        scopes: ["launch", "openid", "fhirUser", "offline_access", "user/*.rs"].map(String::from).to_vec(),
    }];
    Sandbox::new(&config).unwrap().spawn(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap()
}

/// An EHR launch up to the token response, as the server's `/launch` drives it.
async fn launch(
    sandbox: &RunningSandbox,
    nonce: &str,
) -> (telechart_ehr::SmartConfiguration, telechart_ehr::LaunchToken) {
    let config = telechart_ehr::smart_configuration(&sandbox.fhir_base, TIMEOUT).await.unwrap();
    let launch = sandbox.sandbox.register_launch(LaunchContext {
        practitioner: "Practitioner/sandbox-dr-1".into(),
        patient: "Patient/sandbox-patient-1".into(),
        appointment: Some("Appointment/a-1".into()),
    });
    let verifier = "v".repeat(64);
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()));
    let query = serde_urlencoded::to_string([
        ("response_type", "code"),
        ("client_id", "telechart-app"),
        ("redirect_uri", REDIRECT),
        ("scope", "launch openid fhirUser offline_access user/*.rs"),
        ("state", "state-0123456789abcdef"),
        ("aud", sandbox.fhir_base.as_str()),
        ("launch", launch.as_str()),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
        ("nonce", nonce),
    ])
    .unwrap();
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let response = http.get(format!("{}?{query}", config.authorization_endpoint)).send().await.unwrap();
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(location.split_once('?').unwrap().1).unwrap();
    let code = pairs.into_iter().find(|(k, _)| k == "code").unwrap().1;
    let token =
        telechart_ehr::exchange_code(&config.token_endpoint, "telechart-app", &code, REDIRECT, &verifier, TIMEOUT)
            .await
            .unwrap();
    (config, token)
}

#[tokio::test]
async fn the_id_token_is_verified_against_the_published_keys() {
    let sandbox = sandbox(false).await;
    let (config, token) = launch(&sandbox, "nonce-abcdef-0123").await;
    assert_eq!(token.appointment_id().as_deref(), Some("a-1"));
    let keys = telechart_ehr::id_token_keys(&config, TIMEOUT).await.unwrap();
    let issuer = config.issuer.clone().unwrap();
    let id_token = token.id_token.clone().unwrap();
    let claims =
        telechart_ehr::verify_id_token(&id_token, &keys, &issuer, "telechart-app", "nonce-abcdef-0123").unwrap();
    assert_eq!(claims.fhir_user, Some(format!("{}/Practitioner/sandbox-dr-1", sandbox.fhir_base)));
    for (what, issuer, client, nonce) in [
        ("wrong nonce", issuer.as_str(), "telechart-app", "another-nonce"),
        ("wrong audience", issuer.as_str(), "another-app", "nonce-abcdef-0123"),
        ("wrong issuer", "https://other-ehr.example/fhir", "telechart-app", "nonce-abcdef-0123"),
    ] {
        assert!(telechart_ehr::verify_id_token(&id_token, &keys, issuer, client, nonce).is_err(), "{what}");
    }
    let no_keys: jsonwebtoken::jwk::JwkSet = serde_json::from_value(serde_json::json!({"keys": []})).unwrap();
    assert!(
        telechart_ehr::verify_id_token(&id_token, &no_keys, &issuer, "telechart-app", "nonce-abcdef-0123").is_err()
    );
    sandbox.shutdown().await;
}

#[tokio::test]
async fn one_refresh_serves_64_concurrent_callers_and_the_refresh_token_is_kept_or_replaced() {
    for rotate in [false, true] {
        let sandbox = sandbox(rotate).await;
        let (config, token) = launch(&sandbox, "nonce-refresh-0001").await;
        assert!(token.refresh_token.is_some(), "offline_access yields a refresh token");
        let issued = chrono::DateTime::parse_from_rfc3339("2026-11-26T09:00:00Z").unwrap().to_utc();
        let tokens = Arc::new(UserTokens::new(
            &config.token_endpoint,
            "telechart-app",
            &token,
            &AuthProfile::default(),
            TIMEOUT,
            issued,
        ));
        let before = sandbox.sandbox.token_requests();
        assert_eq!(tokens.access_token(issued + chrono::Duration::seconds(200)).await.unwrap(), token.access_token);
        // Past the renewal point (300 s token, renewed 30 s early): 64 callers, one refresh.
        for round in 1..=2_i64 {
            let at = issued + chrono::Duration::seconds(280 * round);
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..64 {
                let tokens = tokens.clone();
                tasks.spawn(async move { tokens.access_token(at).await.unwrap() });
            }
            let mut seen = Vec::new();
            while let Some(t) = tasks.join_next().await {
                seen.push(t.unwrap());
            }
            seen.sort();
            seen.dedup();
            assert_eq!(seen.len(), 1, "rotate={rotate} round {round}: everyone got the same token");
            assert_ne!(seen[0], token.access_token);
            // The second round only works if the kept (or replaced) refresh token is still good.
            assert_eq!(tokens.refreshes(), u64::try_from(round).unwrap(), "rotate={rotate}");
            assert_eq!(sandbox.sandbox.token_requests() - before, u64::try_from(round).unwrap());
        }
        sandbox.shutdown().await;
    }
}

/// Oracle-like tokens (VENDORS.md §8 item 14): 570 s, the refresh token never rotated, refreshes
/// less than a minute apart throttled. Telechart's single-flight refresh sends one refresh for
/// 64 callers — never the burst that would be throttled — and keeps the one refresh token.
#[tokio::test]
async fn oracle_14_tokens_last_570_s_refresh_never_rotates_and_bursts_are_throttled() {
    let mut config = SandboxConfig::new("2026-11-26".parse().unwrap());
    config.personality = telechart_sandbox::Personality::Oracle;
    config.rotate_refresh_tokens = true; // asked for, but an Oracle-like server does not rotate
    config.app_clients = vec![AppClient {
        client_id: "telechart-app".into(),
        redirect_uris: vec![REDIRECT.into()],
        scopes: ["launch", "openid", "fhirUser", "offline_access", "user/*.rs"].map(String::from).to_vec(),
    }];
    let sandbox = Sandbox::new(&config).unwrap().spawn(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
    let (config, token) = launch(&sandbox, "nonce-oracle-14").await;
    assert_eq!(token.expires_in, Some(570));
    let refresh_token = token.refresh_token.clone().unwrap();
    let issued = chrono::DateTime::parse_from_rfc3339("2026-11-26T09:00:00Z").unwrap().to_utc();
    let tokens = Arc::new(UserTokens::new(
        &config.token_endpoint,
        "telechart-app",
        &token,
        &AuthProfile::default(),
        TIMEOUT,
        issued,
    ));
    let at = issued + chrono::Duration::seconds(560);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..64 {
        let tokens = tokens.clone();
        tasks.spawn(async move { tokens.access_token(at).await.unwrap() });
    }
    while let Some(t) = tasks.join_next().await {
        t.unwrap();
    }
    assert_eq!(tokens.refreshes(), 1, "one refresh for 64 callers");
    // Right after, the same refresh token again: throttled, 429 slow_down.
    let body = serde_urlencoded::to_string([
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token.as_str()),
        ("client_id", "telechart-app"),
    ])
    .unwrap();
    let response = reqwest::Client::new()
        .post(&config.token_endpoint)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 429);
    let reply: serde_json::Value = response.json().await.unwrap();
    assert_eq!(reply["error"], "slow_down");
    sandbox.shutdown().await;
}
