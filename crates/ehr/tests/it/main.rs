//! SMART Backend Services against the sandbox's strict authorization server, over HTTP.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use jsonwebtoken::jwk::JwkSet;
use serde_json::{Value, json};
use telechart_ehr::{BackendServices, SigningAlg, SigningKey};
use telechart_sandbox::{BackendClient, RunningSandbox, Sandbox, SandboxConfig};

async fn sandbox_with(client_id: &str, key: &SigningKey) -> RunningSandbox {
    let mut config = SandboxConfig::new("2026-11-26".parse().unwrap());
    config.backend_clients = vec![BackendClient {
        client_id: client_id.into(),
        jwks: serde_json::from_value::<JwkSet>(json!({"keys": [key.public_jwk()]})).unwrap(),
        scopes: vec!["system/Observation.cruds".into(), "system/Encounter.rs".into()],
        jwks_url: None,
    }];
    Sandbox::new(&config).unwrap().spawn(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap()
}

#[allow(clippy::disallowed_methods)] // the assertions are checked against the sandbox's wall clock
fn now() -> DateTime<Utc> {
    Utc::now()
}

#[tokio::test]
async fn one_token_request_serves_64_concurrent_callers_until_it_nears_expiry() {
    let key = SigningKey::generate(SigningAlg::Rs384).unwrap();
    let sandbox = sandbox_with("telechart-backend", &key).await;
    let discovery: Value = reqwest::get(format!("{}/.well-known/smart-configuration", sandbox.fhir_base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token_url = discovery["token_endpoint"].as_str().unwrap().to_owned();
    let backend =
        Arc::new(BackendServices::new("telechart-backend", &token_url, "system/Observation.cruds", key).unwrap());
    // The first fetch is dated 280 s ago (its assertion is still valid against the sandbox's
    // real clock), so the 300 s token is due for renewal now, 30 s before it ends.
    let real = now();
    let at = real - chrono::Duration::seconds(280);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..64 {
        let backend = backend.clone();
        tasks.spawn(async move { backend.access_token(at).await.unwrap() });
    }
    let mut tokens = Vec::new();
    while let Some(t) = tasks.join_next().await {
        tokens.push(t.unwrap());
    }
    tokens.dedup();
    assert_eq!(tokens.len(), 1, "every caller got the same token");
    assert_eq!(sandbox.sandbox.token_requests(), 1, "one token request for 64 callers");
    // Still fresh 200 s on; renewed once within 30 s of its end.
    backend.access_token(at + chrono::Duration::seconds(200)).await.unwrap();
    assert_eq!(sandbox.sandbox.token_requests(), 1);
    let renewed = backend.access_token(real).await.unwrap();
    assert_eq!(sandbox.sandbox.token_requests(), 2);
    assert_ne!(renewed, tokens[0]);
    sandbox.shutdown().await;
}

#[tokio::test]
async fn the_authorization_server_refuses_every_bad_assertion() {
    let key = SigningKey::generate(SigningAlg::Es384).unwrap();
    let sandbox = sandbox_with("telechart-backend", &key).await;
    let token_url = sandbox.sandbox.token_url();
    let http = reqwest::Client::new();
    let post = |assertion: String, scope: &'static str| {
        let (http, token_url) = (http.clone(), token_url.clone());
        async move {
            let form = serde_urlencoded::to_string([
                ("grant_type", "client_credentials"),
                ("scope", scope),
                ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
                ("client_assertion", assertion.as_str()),
            ])
            .unwrap();
            let response = http
                .post(&token_url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form)
                .send()
                .await
                .unwrap();
            (response.status().as_u16(), response.json::<Value>().await.unwrap())
        }
    };
    let good = key.client_assertion("telechart-backend", &token_url, now()).unwrap();
    let (status, body) = post(good.clone(), "system/Observation.cruds").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "bearer");
    // The same assertion again: its jti is spent.
    let (status, body) = post(good, "system/Observation.cruds").await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")), "{body}");

    // Assertions signed right but wrong in one claim each.
    let pem_key = {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(key.pkcs8());
        format!("-----BEGIN PRIVATE KEY-----\n{b64}\n-----END PRIVATE KEY-----\n")
    };
    let sign = |claims: Value, kid: &str| {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES384);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_ec_pem(pem_key.as_bytes()).unwrap())
            .unwrap()
    };
    let t = now().timestamp();
    let claims = |exp: i64, aud: &str, jti: &str| json!({"iss": "telechart-backend", "sub": "telechart-backend", "aud": aud, "exp": exp, "jti": jti});
    let cases = [
        ("exp more than five minutes ahead", sign(claims(t + 600, &token_url, "j1"), &key.kid)),
        ("expired", sign(claims(t - 10, &token_url, "j2"), &key.kid)),
        ("wrong audience", sign(claims(t + 60, "https://elsewhere.example/token", "j3"), &key.kid)),
        ("unknown kid", sign(claims(t + 60, &token_url, "j4"), "not-registered")),
        (
            "unknown client",
            sign(json!({"iss": "mallory", "sub": "mallory", "aud": token_url, "exp": t + 60, "jti": "j5"}), &key.kid),
        ),
        (
            "HS256",
            jsonwebtoken::encode(
                &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
                &claims(t + 60, &token_url, "j6"),
                &jsonwebtoken::EncodingKey::from_secret(b"guess"),
            )
            .unwrap(),
        ),
    ];
    for (what, assertion) in cases {
        let (status, body) = post(assertion, "system/Observation.cruds").await;
        assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")), "{what}: {body}");
        assert!(body.get("access_token").is_none(), "{what} got a token");
    }
    // A good assertion asking for a scope the client was not granted.
    let fresh = key.client_assertion("telechart-backend", &token_url, now()).unwrap();
    let (status, body) = post(fresh, "system/Patient.cruds").await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_scope")), "{body}");
    sandbox.shutdown().await;
}

/// Client assertions forged by a third-party library (PyJWT, `tests-support/jwt`): each refused
/// with `invalid_client` and no token; a good one works once and its replay is refused.
#[tokio::test]
async fn assertions_forged_by_pyjwt_are_refused() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = root.join(".venv-tests/bin/python");
    if !python.exists() {
        assert!(std::env::var("TELECHART_REQUIRE_OIDC").as_deref() != Ok("1"), "PyJWT's venv (.venv-tests) is missing");
        eprintln!("note: .venv-tests missing; PyJWT assertion forgeries skipped");
        return;
    }
    let key = SigningKey::generate(SigningAlg::Es384).unwrap();
    let sandbox = sandbox_with("telechart-backend", &key).await;
    let token_url = sandbox.sandbox.token_url();
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("key.pem");
    {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(key.pkcs8());
        let lines: Vec<String> = b64.as_bytes().chunks(64).map(|c| String::from_utf8(c.to_vec()).unwrap()).collect();
        std::fs::write(&pem, format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", lines.join("\n")))
            .unwrap();
    }
    let forge = |scenario: &str| {
        let out = std::process::Command::new(&python)
            .arg(root.join("tests-support/jwt/forge_assertion.py"))
            .args([scenario, "telechart-backend", token_url.as_str(), key.kid.as_str()])
            .arg(&pem)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let post = |assertion: String| {
        let token_url = token_url.clone();
        async move {
            let form = serde_urlencoded::to_string([
                ("grant_type", "client_credentials"),
                ("scope", "system/Observation.cruds"),
                ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
                ("client_assertion", assertion.as_str()),
            ])
            .unwrap();
            let response = reqwest::Client::new()
                .post(&token_url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form)
                .send()
                .await
                .unwrap();
            (response.status().as_u16(), response.json::<Value>().await.unwrap())
        }
    };
    let valid = forge("valid");
    let (status, body) = post(valid.clone()).await;
    assert_eq!(status, 200, "PyJWT's well-formed assertion is accepted: {body}");
    let (status, body) = post(valid).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")), "replayed jti: {body}");
    for scenario in ["alg-none", "hs256-public-key", "exp-too-far", "expired", "wrong-aud", "wrong-iss"] {
        let (status, body) = post(forge(scenario)).await;
        assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")), "{scenario}: {body}");
        assert!(body.get("access_token").is_none(), "{scenario} got a token");
    }
    sandbox.shutdown().await;
}

mod launch;

/// athena-like token endpoint (VENDORS.md §8 item 23): five token requests a minute, then 429
/// with `Retry-After` until the minute ends. Telechart's cache serves 64 callers with one request,
/// and a throttled renewal is a wait (`Throttled`, with the server's `Retry-After`), not a refusal.
#[tokio::test]
async fn athena_23_the_token_endpoint_throttles_and_the_cache_keeps_telechart_under_it() {
    let key = SigningKey::generate(SigningAlg::Es384).unwrap();
    let mut config = SandboxConfig::new("2026-11-26".parse().unwrap());
    config.personality = telechart_sandbox::Personality::Athena;
    // Short tokens, so renewals come quickly; assertions are dated in the last five minutes.
    config.token_lifetime = std::time::Duration::from_secs(2);
    config.backend_clients = vec![BackendClient {
        client_id: "telechart".into(),
        jwks: serde_json::from_value::<JwkSet>(json!({"keys": [key.public_jwk()]})).unwrap(),
        scopes: vec!["system/*.rs".into()],
        jwks_url: None,
    }];
    let sandbox = Sandbox::new(&config).unwrap().spawn(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
    // Start well inside a minute, so the sandbox's window does not roll over mid-test.
    let second = now().timestamp() % 60;
    if second > 50 {
        tokio::time::sleep(std::time::Duration::from_secs(u64::try_from(61 - second).unwrap())).await;
    }
    let backend =
        Arc::new(BackendServices::new("telechart", &sandbox.sandbox.token_url(), "system/*.rs", key).unwrap());
    let start = now() - chrono::Duration::seconds(280);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..64 {
        let backend = backend.clone();
        tasks.spawn(async move { backend.access_token(start).await.unwrap() });
    }
    while let Some(t) = tasks.join_next().await {
        t.unwrap();
    }
    assert_eq!(sandbox.sandbox.token_requests(), 1, "64 callers, one request");
    // Four renewals (each asked for as if the token had aged) fill the minute's five.
    for k in 1..=4 {
        backend.access_token(start + chrono::Duration::seconds(2 * k)).await.unwrap();
    }
    assert_eq!(sandbox.sandbox.token_requests(), 5);
    let err = backend.access_token(start + chrono::Duration::seconds(10)).await.unwrap_err();
    assert_eq!(err.kind(), telechart_ehr::ErrorKind::Throttled, "{err}");
    match err {
        telechart_ehr::EhrError::Throttled {
            status: 429,
            retry_after: Some(telechart_ehr::RetryAfter::Delay(d)),
            ..
        } => {
            assert!(d.as_secs() >= 1 && d.as_secs() <= 60, "{d:?}");
        }
        other => panic!("expected a throttled token request with Retry-After, got {other}"),
    }
    sandbox.shutdown().await;
}

/// Posts a client_credentials request with `assertion`; returns the status and JSON body.
async fn token_request(token_url: &str, assertion: &str, scope: &str) -> (u16, Value) {
    let form = serde_urlencoded::to_string([
        ("grant_type", "client_credentials"),
        ("scope", scope),
        ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
        ("client_assertion", assertion),
    ])
    .unwrap();
    let response = reqwest::Client::new()
        .post(token_url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json::<Value>().await.unwrap_or(Value::Null))
}

/// An assertion for `client` signed with `key`, with the given lifetime and jti.
fn assertion_with(key: &SigningKey, client: &str, token_url: &str, lifetime: i64, jti: &str) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(key.pkcs8());
    let pem = format!("-----BEGIN PRIVATE KEY-----\n{b64}\n-----END PRIVATE KEY-----\n");
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES384);
    header.kid = Some(key.kid.clone());
    let t = now().timestamp();
    let claims = json!({"iss": client, "sub": client, "aud": token_url, "exp": t + lifetime, "jti": jti});
    jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_ec_pem(pem.as_bytes()).unwrap()).unwrap()
}

async fn personality_sandbox(
    personality: telechart_sandbox::Personality,
    clients: Vec<BackendClient>,
    require_bearer: bool,
) -> RunningSandbox {
    let mut config = SandboxConfig::new("2026-11-26".parse().unwrap());
    config.personality = personality;
    config.backend_clients = clients;
    config.require_bearer = require_bearer;
    Sandbox::new(&config).unwrap().spawn(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap()
}

fn client(id: &str, key: &SigningKey, scopes: &[&str], jwks_url: Option<&str>) -> BackendClient {
    BackendClient {
        client_id: id.into(),
        jwks: serde_json::from_value::<JwkSet>(json!({"keys": [key.public_jwk()]})).unwrap(),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        jwks_url: jwks_url.map(str::to_owned),
    }
}

/// VENDORS.md §8 item 3: Epic refuses a backend assertion whose `exp` is more than 5 minutes
/// ahead, whose `jti` is reused or longer than 151 characters, or signed with an EC key not
/// registered by JWK Set URL (the test says 310 s, not 301: whole seconds tick between signing
/// and checking); an unmapped client is 400 `unauthorized_client`. Telechart's own
/// assertions keep every rule (exp = now + 300 s, a 36-character jti, its JWKS by URL).
#[tokio::test]
async fn epic_3_backend_assertions_follow_epics_jwt_rules() {
    let key = SigningKey::generate(SigningAlg::Es384).unwrap();
    let scopes = ["system/Observation.read"];
    let sandbox = personality_sandbox(
        telechart_sandbox::Personality::Epic,
        vec![
            client("by-url", &key, &scopes, Some("https://telechart.example/.well-known/jwks.json")),
            client("uploaded", &key, &scopes, None),
        ],
        false,
    )
    .await;
    let url = sandbox.sandbox.token_url();
    let long_jti = "j".repeat(152);
    let cases = [
        (
            "an EC key uploaded, not from a JWK Set URL",
            assertion_with(&key, "uploaded", &url, 60, "u1"),
            401,
            "invalid_client",
        ),
        ("exp more than five minutes ahead", assertion_with(&key, "by-url", &url, 310, "e1"), 401, "invalid_client"),
        ("a jti of 152 characters", assertion_with(&key, "by-url", &url, 60, &long_jti), 401, "invalid_client"),
        (
            "a client mapped to no background user",
            assertion_with(&key, "unmapped", &url, 60, "m1"),
            400,
            "unauthorized_client",
        ),
    ];
    for (what, assertion, status, error) in cases {
        let (got, body) = token_request(&url, &assertion, "system/Observation.read").await;
        assert_eq!((got, body["error"].as_str()), (status, Some(error)), "{what}: {body}");
        assert!(body.get("access_token").is_none(), "{what}");
    }
    let edge = assertion_with(&key, "by-url", &url, 300, &"j".repeat(151));
    let (status, body) = token_request(&url, &edge, "system/Observation.read").await;
    assert_eq!(status, 200, "exp at 5 min and a 151-character jti pass: {body}");
    let (status, body) = token_request(&url, &edge, "system/Observation.read").await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")), "the jti again: {body}");
    // Telechart: its assertion passes Epic's rules, and it gets its token.
    let assertion = key.client_assertion("by-url", &url, now()).unwrap();
    let claims: Value = {
        use base64::Engine;
        let part = assertion.split('.').nth(1).unwrap();
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    };
    assert!(claims["exp"].as_i64().unwrap() - now().timestamp() <= 300);
    assert!(claims["jti"].as_str().unwrap().len() <= 151);
    let backend = BackendServices::new("by-url", &url, "system/Observation.read", key).unwrap();
    assert!(backend.access_token(now()).await.is_ok());
    sandbox.shutdown().await;
}

/// VENDORS.md §8 item 4: Epic ignores the backend `scope` asked for: the grant is the client's
/// registered APIs, in v1 spelling; a call to an API not registered is 403 with an empty body.
/// Telechart: such a refusal is `Forbidden` in its taxonomy — a dead letter, never retried.
#[tokio::test]
async fn epic_4_backend_scope_is_ignored_and_an_unregistered_api_is_403_empty() {
    let key = SigningKey::generate(SigningAlg::Es384).unwrap();
    let registered = ["system/Observation.read", "system/Observation.write", "system/Encounter.read"];
    let sandbox = personality_sandbox(
        telechart_sandbox::Personality::Epic,
        vec![client("telechart", &key, &registered, Some("https://telechart.example/.well-known/jwks.json"))],
        true,
    )
    .await;
    let url = sandbox.sandbox.token_url();
    let (status, body) =
        token_request(&url, &key.client_assertion("telechart", &url, now()).unwrap(), "system/*.cruds").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], registered.join(" "), "the registered APIs, v1, whatever was asked");
    let token = body["access_token"].as_str().unwrap().to_owned();
    let get = |path: &str| {
        let url = format!("{}/{path}", sandbox.fhir_base);
        let token = token.clone();
        async move { reqwest::Client::new().get(url).bearer_auth(token).send().await.unwrap() }
    };
    assert_eq!(get("Observation?patient=x").await.status().as_u16(), 200);
    let refused = get("Patient?_id=x").await;
    assert_eq!(refused.status().as_u16(), 403);
    assert!(refused.bytes().await.unwrap().is_empty(), "an empty body");
    // Telechart's client over the same grant.
    let backend = Arc::new(BackendServices::new("telechart", &url, "system/*.cruds", key).unwrap());
    let client = telechart_ehr::FhirClient::new(
        &sandbox.fhir_base,
        telechart_ehr::VendorProfile::by_name("epic").unwrap(),
        std::time::Duration::from_secs(5),
    )
    .unwrap()
    .with_backend_auth(backend, Arc::new(now));
    let err = client.read("Patient", "x").await.unwrap_err();
    assert_eq!(err.kind(), telechart_ehr::ErrorKind::Forbidden, "{err}");
    assert_eq!(err.class(), telechart_ehr::FailureClass::Permanent);
    sandbox.shutdown().await;
}

/// VENDORS.md §8 item 15: an Oracle app is fixed to v1 or v2 scopes; asking in the other
/// syntax is 400 `invalid_scope`; a call outside the scopes is 403 with non-FHIR JSON.
/// Telechart renders the connection's scopes in its configured syntax (`auth.scope_syntax`).
#[tokio::test]
async fn oracle_15_scopes_in_the_apps_syntax_only_and_insufficient_scope_is_non_fhir_json() {
    let key = SigningKey::generate(SigningAlg::Es384).unwrap();
    let v1 = ["system/Observation.read", "system/Observation.write"];
    let sandbox =
        personality_sandbox(telechart_sandbox::Personality::Oracle, vec![client("telechart", &key, &v1, None)], true)
            .await;
    let url = sandbox.sandbox.token_url();
    let assertion = || key.client_assertion("telechart", &url, now()).unwrap();
    let (status, body) = token_request(&url, &assertion(), "system/Observation.rs").await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_scope")), "{body}");
    assert!(body["error_description"].as_str().unwrap().contains("empty-scopes"), "{body}");
    // Telechart: the same wanted scopes, rendered per the connection's syntax.
    let wanted = "system/Observation.rs system/Observation.cud";
    let v1_profile = telechart_ehr::AuthProfile { scope_syntax: telechart_ehr::ScopeSyntax::V1, ..Default::default() };
    let v2_profile = telechart_ehr::AuthProfile::default();
    let v2_backend = BackendServices::new("telechart", &url, &v2_profile.render_scopes(wanted), key.clone()).unwrap();
    let refused = v2_backend.access_token(now()).await.unwrap_err();
    assert!(refused.to_string().contains("invalid_scope"), "{refused}");
    let rendered = v1_profile.render_scopes(wanted);
    let v1_backend = Arc::new(BackendServices::new("telechart", &url, &rendered, key).unwrap());
    let token = v1_backend.access_token(now()).await.unwrap();
    let outside = reqwest::Client::new()
        .get(format!("{}/Condition?patient=x", sandbox.fhir_base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(outside.status().as_u16(), 403);
    let body: Value = outside.json().await.unwrap();
    assert_eq!(body["error"], "urn:cerner:error:oauth2:resource-access:insufficient-scopes");
    assert!(body.get("resourceType").is_none(), "not an OperationOutcome");
    let client = telechart_ehr::FhirClient::new(
        &sandbox.fhir_base,
        telechart_ehr::VendorProfile::by_name("oracle").unwrap(),
        std::time::Duration::from_secs(5),
    )
    .unwrap()
    .with_backend_auth(v1_backend, Arc::new(now));
    let err = client.search("Condition", &[("patient", "x")]).await.unwrap_err();
    assert_eq!(err.kind(), telechart_ehr::ErrorKind::Forbidden, "{err}");
    assert!(client.search("Observation", &[("patient", "x")]).await.is_ok());
    sandbox.shutdown().await;
}

/// athena-like searches carry the connection's practice (`ah-practice`); without a tenant the
/// client says what to configure instead of sending a search the EHR refuses.
#[tokio::test]
async fn searches_carry_the_practice_the_profile_names() {
    let sandbox = personality_sandbox(telechart_sandbox::Personality::Athena, Vec::new(), false).await;
    let athena = || {
        telechart_ehr::FhirClient::new(
            &sandbox.fhir_base,
            telechart_ehr::VendorProfile::by_name("athena").unwrap(),
            std::time::Duration::from_secs(5),
        )
        .unwrap()
    };
    let err = athena().search("Appointment", &[("date", "ge2026-11-26")]).await.unwrap_err();
    assert!(err.to_string().contains("auth.tenant"), "{err}");
    let found = athena()
        .with_tenant(Some(telechart_sandbox::ATHENA_PRACTICE.into()))
        .search("Appointment", &[("date", "ge2026-11-26")])
        .await
        .unwrap();
    assert_eq!(found.len(), sandbox.sandbox.appointment_ids().len());
    sandbox.shutdown().await;
}
