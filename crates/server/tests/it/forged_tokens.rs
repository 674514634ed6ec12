//! Forged id_tokens, made by a third-party library (PyJWT, in `tests-support/jwt`), at login and
//! at a SMART launch callback, are refused
//! with a bare 401 and no session: `alg: none`, HS256 keyed with the RSA public key, an unknown
//! `kid`, expired, wrong audience, wrong issuer, a payload changed after signing, a wrong nonce.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use telechart_policy::Role;
use telechart_server::{Oidc, OidcSettings};

struct Forger(Child);

impl Drop for Forger {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn python() -> Option<PathBuf> {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv-tests/bin/python");
    if venv.exists() {
        return Some(venv);
    }
    assert!(
        std::env::var("TELECHART_REQUIRE_OIDC").as_deref() != Ok("1"),
        "PyJWT's venv is missing: python3 -m venv .venv-tests && .venv-tests/bin/pip install -r tests-support/jwt/requirements.txt"
    );
    eprintln!("note: .venv-tests missing; forged-token tests skipped");
    None
}

/// The PyJWT forging provider, up and answering; None where the venv is missing outside CI.
async fn start_forger() -> Option<(Forger, String)> {
    let python = python()?;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests-support/jwt/forging_provider.py");
    let provider_port = free_port();
    let forger = Forger(
        Command::new(python)
            .arg(script)
            .env("PORT", provider_port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let issuer = format!("http://127.0.0.1:{provider_port}");
    for _ in 0..100 {
        if reqwest::get(format!("{issuer}/.well-known/openid-configuration")).await.is_ok() {
            return Some((forger, issuer));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the forging provider did not start");
}

#[tokio::test]
async fn forged_id_tokens_get_a_bare_401_and_no_session() {
    let Some((_forger, issuer)) = start_forger().await else { return };
    let http = reqwest::Client::new();
    let dir = tempfile::tempdir().unwrap();
    let store = crate::sqlite_store(dir.path()).await;
    for (subject, role) in [("alice", "clinician"), ("bob-mfa", "integration-admin")] {
        store.add_user("default", &issuer, subject, role, 0).await.unwrap();
    }
    let port = free_port();
    let oidc = Oidc::new(OidcSettings {
        issuer: issuer.clone(),
        client_id: "telechart".into(),
        client_secret: "telechart-test-secret".into(),
        redirect_url: format!("http://127.0.0.1:{port}/auth/callback"),
        scopes: vec!["profile".into(), "fhirUser".into()],
    })
    .unwrap();
    let state = telechart_server::AppState {
        sessions: std::sync::Arc::new(telechart_server::SessionPolicy {
            mfa_roles: vec![Role::Clinician],
            ..Default::default()
        }),
        ..crate::bare_state(&store, Some(oidc))
    };
    let server = telechart_server::spawn(state, SocketAddr::from(([127, 0, 0, 1], port)), None).await.unwrap();

    let attempt = |scenario: &'static str| {
        let (http, issuer, base) = (http.clone(), issuer.clone(), server.base_url.clone());
        async move {
            http.post(format!("{issuer}/scenario")).body(scenario).send().await.unwrap();
            let browser = reqwest::Client::builder().cookie_store(true).build().unwrap();
            let response = browser.get(format!("{base}/auth/login")).send().await.unwrap();
            let status = response.status().as_u16();
            let cookie = response.headers().get("set-cookie").is_some();
            (status, cookie, response.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    // The harness can succeed: a well-formed token logs alice in.
    let (status, _, session) = attempt("valid").await;
    assert_eq!(
        (status, session["role"].as_str(), session["mfa"].as_bool()),
        (200, Some("clinician"), Some(true)),
        "{session}"
    );

    for scenario in
        ["alg-none", "hs256-public-key", "unknown-kid", "expired", "wrong-aud", "wrong-iss", "tampered", "wrong-nonce"]
    {
        let (status, cookie, body) = attempt(scenario).await;
        assert_eq!(status, 401, "{scenario}: {body}");
        assert!(!cookie, "{scenario} set a cookie");
        assert_eq!(body["issue"][0]["diagnostics"], "authentication required", "{scenario} leaked detail: {body}");
    }
    server.shutdown().await;
    store.close().await;
}

/// The same forgeries arriving through a SMART launch: the EHR (the forging provider playing one)
/// answers the code with a launch context and a forged id_token. Each is refused with a bare 401,
/// no session cookie and no visit opened; the valid control opens the visit.
#[tokio::test]
async fn forged_launch_id_tokens_open_nothing() {
    let Some((_forger, iss)) = start_forger().await else { return };
    let http = reqwest::Client::new();
    let dir = tempfile::tempdir().unwrap();
    let store = crate::sqlite_store(dir.path()).await;
    store
        .upsert_connection(&telechart_store::ConnectionRow {
            tenant_id: "default".into(),
            id: "forging-ehr".into(),
            name: "Forging EHR".into(),
            profile: "generic".into(),
            base_url: iss.clone(),
            settings:
                serde_json::json!({"launch": {"client_id": "telechart", "scope": "launch openid fhirUser user/*.rs"}})
                    .to_string(),
            created_at: 0,
            updated_at: 0,
        })
        .await
        .unwrap();
    let user = store.add_user("default", "https://idp.example", "dr", "clinician", 0).await.unwrap();
    store.link_fhir_user("default", &user.id, "Practitioner/dr-forged").await.unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let state = telechart_server::AppState {
        public_url: Some(base.clone()),
        // Clinicians must prove a second factor: the EHR's id_token says `amr: ["pwd", "otp"]`.
        sessions: std::sync::Arc::new(telechart_server::SessionPolicy {
            mfa_roles: vec![Role::Clinician],
            ..Default::default()
        }),
        ..crate::bare_state(&store, None)
    };
    let server = telechart_server::spawn(state, SocketAddr::from(([127, 0, 0, 1], port)), None).await.unwrap();
    let attempt = |scenario: &'static str| {
        let (http, iss, base) = (http.clone(), iss.clone(), base.clone());
        async move {
            http.post(format!("{iss}/scenario")).body(scenario).send().await.unwrap();
            let browser = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
            let to_ehr = browser.get(format!("{base}/launch?iss={iss}&launch=L1")).send().await.unwrap();
            let authorize = to_ehr.headers()["location"].to_str().unwrap().to_owned();
            assert!(authorize.contains("nonce=") && authorize.contains("code_challenge_method=S256"), "{authorize}");
            let back = browser.get(&authorize).send().await.unwrap();
            let callback = back.headers()["location"].to_str().unwrap().to_owned();
            let response = browser.get(&callback).send().await.unwrap();
            let status = response.status().as_u16();
            let cookie = response.headers().get("set-cookie").map(|c| c.to_str().unwrap().to_owned());
            let landing = response.headers().get("location").map(|l| l.to_str().unwrap().to_owned());
            (status, cookie, landing, response.text().await.unwrap())
        }
    };
    for scenario in
        ["alg-none", "hs256-public-key", "unknown-kid", "expired", "wrong-aud", "wrong-iss", "tampered", "wrong-nonce"]
    {
        let (status, cookie, _, body) = attempt(scenario).await;
        assert_eq!(status, 401, "{scenario}: {body}");
        assert!(cookie.is_none(), "{scenario} set a cookie");
        assert!(body.contains("authentication required"), "{scenario} leaked detail: {body}");
    }
    assert!(store.visit_for_appointment("default", "forging-ehr", "forged-appt").await.unwrap().is_none());
    // The harness can succeed: the well-formed token opens the visit, and the EHR's `amr`
    // counts as the clinician's second factor, so the workspace opens without another prompt.
    let (status, cookie, landing, body) = attempt("valid").await;
    assert_eq!(status, 303, "{body}");
    let visit = store.visit_for_appointment("default", "forging-ehr", "forged-appt").await.unwrap().unwrap();
    assert_eq!(visit.ehr_encounter_id.as_deref(), Some("forged-encounter"), "bound to the EHR's Encounter in context");
    let cookie = cookie.unwrap().split(';').next().unwrap().to_owned();
    let workspace = http.get(format!("{base}{}", landing.unwrap())).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(workspace.status().as_u16(), 200);
    server.shutdown().await;
    store.close().await;
}
