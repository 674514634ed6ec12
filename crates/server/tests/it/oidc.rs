//! Login against a real OpenID provider (panva/oidc-provider, run by Node from
//! `tests-support/oidc`): code + PKCE, id_token verification, sessions, MFA via `amr`, CSRF,
//! logout.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use telechart_policy::Role;
use telechart_server::{AppState, Oidc, OidcSettings, RunningServer};
use telechart_store::Store;

struct Provider {
    child: Child,
    issuer: String,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts the provider, or None (with a notice) where Node or its packages are missing — unless
/// `TELECHART_REQUIRE_OIDC=1` (CI), where that is a failure.
async fn start_provider(redirect_uri: &str) -> Option<Provider> {
    start_provider_with(redirect_uri, "http://127.0.0.1:9/launch/callback").await
}

async fn start_provider_with(redirect_uri: &str, smart_redirect_uri: &str) -> Option<Provider> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests-support/oidc");
    let installed = dir.join("node_modules/oidc-provider").is_dir();
    let node = Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success());
    if !(installed && node) {
        assert!(
            std::env::var("TELECHART_REQUIRE_OIDC").as_deref() != Ok("1"),
            "the test OpenID provider is not installed: npm ci --prefix tests-support/oidc"
        );
        eprintln!("note: test OpenID provider not installed (npm ci --prefix tests-support/oidc); login tests skipped");
        return None;
    }
    let port = free_port();
    let child = Command::new("node")
        .arg("provider.mjs")
        .current_dir(&dir)
        .env("PORT", port.to_string())
        .env("REDIRECT_URI", redirect_uri)
        .env("SMART_REDIRECT_URI", smart_redirect_uri)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let provider = Provider { child, issuer: format!("http://127.0.0.1:{port}") };
    let discovery = format!("{}/.well-known/openid-configuration", provider.issuer);
    for _ in 0..100 {
        if reqwest::get(&discovery).await.is_ok_and(|r| r.status().is_success()) {
            return Some(provider);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the OpenID provider did not start");
}

struct Login {
    server: RunningServer,
    store: Store,
    _provider: Provider,
    _dir: tempfile::TempDir,
}

async fn start() -> Option<Login> {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let redirect = format!("http://127.0.0.1:{port}/auth/callback");
    let provider = start_provider(&redirect).await?;
    let store = crate::sqlite_store(dir.path()).await;
    let oidc = Oidc::new(OidcSettings {
        issuer: provider.issuer.clone(),
        client_id: "telechart".into(),
        client_secret: "telechart-test-secret".into(),
        redirect_url: redirect,
        scopes: vec!["profile".into(), "fhirUser".into()],
    })
    .unwrap();
    let state = AppState {
        embedding: Arc::new(telechart_server::Embedding {
            origins_by_connection: [("ehr-frame".to_owned(), vec!["https://ehr.example".to_owned()])].into(),
        }),
        sessions: Arc::new(telechart_server::SessionPolicy {
            mfa_roles: vec![Role::Clinician, Role::ComplianceOfficer],
            ..Default::default()
        }),
        ..crate::bare_state(&store, Some(oidc))
    };
    let server = telechart_server::spawn(state, SocketAddr::from(([127, 0, 0, 1], port)), None).await.unwrap();
    for (subject, role) in [("bob-mfa", "clinician"), ("alice", "clinician"), ("carol", "billing")] {
        store.add_user("default", &provider.issuer, subject, role, 0).await.unwrap();
    }
    Some(Login { server, store, _provider: provider, _dir: dir })
}

/// Logs in as `hint` through the provider; returns the browser (with its cookies) and where the
/// login landed.
async fn login(env: &Login, hint: &str) -> (reqwest::Client, u16, Value) {
    let browser = reqwest::Client::builder().cookie_store(true).build().unwrap();
    let response = browser.get(format!("{}/auth/login?login_hint={hint}", env.server.base_url)).send().await.unwrap();
    let status = response.status().as_u16();
    (browser, status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn people_log_in_with_openid_and_sessions_follow_the_rules() {
    let Some(env) = start().await else { return };
    let api = format!("{}/api/v1", env.server.base_url);

    // A clinician whose provider proved a second factor.
    let (bob, status, session) = login(&env, "bob-mfa").await;
    assert_eq!(status, 200, "{session}");
    assert_eq!(
        (session["role"].as_str(), session["mfa"].as_bool(), session["mfaRequired"].as_bool()),
        (Some("clinician"), Some(true), Some(true))
    );
    let csrf = session["csrfToken"].as_str().unwrap().to_owned();
    // The provider's fhirUser claim links the person to the FHIR user a SMART launch will name.
    let linked = env.store.user_by_fhir_user("default", "Practitioner/bob-mfa").await.unwrap().unwrap();
    assert_eq!(linked.subject, "bob-mfa");
    let visit = bob.get(format!("{api}/visits/00000000-0000-0000-0000-000000000000")).send().await.unwrap();
    assert_eq!(visit.status().as_u16(), 404, "authenticated and permitted: the visit just does not exist");
    assert_eq!(
        bob.get(format!("{api}/queue")).send().await.unwrap().status().as_u16(),
        403,
        "clinicians do not read the queue"
    );
    // A state-changing request without the CSRF token is refused; with it, it goes through.
    let open = bob.post(format!("{api}/visits")).json(&serde_json::json!({})).send().await.unwrap();
    assert_eq!(open.status().as_u16(), 403);
    let open = bob
        .post(format!("{api}/visits"))
        .header("x-csrf-token", &csrf)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(open.status().as_u16(), 422, "past authentication and CSRF, the body is judged");

    // Logout ends the session.
    let out =
        bob.post(format!("{}/auth/logout", env.server.base_url)).header("x-csrf-token", &csrf).send().await.unwrap();
    assert_eq!(out.status().as_u16(), 204);
    assert_eq!(bob.get(format!("{}/auth/session", env.server.base_url)).send().await.unwrap().status().as_u16(), 401);

    // A clinician with a password only: a session, but no data until a second factor.
    let (alice, status, session) = login(&env, "alice").await;
    assert_eq!(status, 200, "{session}");
    assert_eq!(session["mfa"], false);
    let refused = alice.get(format!("{api}/visits/00000000-0000-0000-0000-000000000000")).send().await.unwrap();
    assert_eq!(refused.status().as_u16(), 401);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["issue"][0]["diagnostics"], "a second factor is required for this role");

    // Alice enrols TOTP: the code proves the factor once; replayed, it is refused.
    let alice_csrf = session["csrfToken"].as_str().unwrap().to_owned();
    let base = env.server.base_url.clone();
    assert_eq!(alice.post(format!("{base}/auth/totp/enroll")).send().await.unwrap().status().as_u16(), 403, "CSRF");
    let enrolment: Value = alice
        .post(format!("{base}/auth/totp/enroll"))
        .header("x-csrf-token", &alice_csrf)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(enrolment["otpauthUri"].as_str().unwrap().starts_with("otpauth://totp/Telechart:alice?secret="));
    let secret = totp_rs::Secret::try_from_base32(enrolment["secret"].as_str().unwrap()).unwrap();
    let totp = totp_rs::Builder::new().with_secret(secret).build().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let code = totp.generate(now).to_string();
    let wrong = if code == "123456" { "654321" } else { "123456" };
    let verify = |client: &reqwest::Client, csrf: &str, code: &str| {
        client
            .post(format!("{base}/auth/totp/verify"))
            .header("x-csrf-token", csrf)
            .json(&serde_json::json!({"code": code}))
            .send()
    };
    assert_eq!(verify(&alice, &alice_csrf, wrong).await.unwrap().status().as_u16(), 403);
    assert_eq!(verify(&alice, &alice_csrf, &code).await.unwrap().status().as_u16(), 204);
    assert_eq!(
        alice.get(format!("{api}/visits/00000000-0000-0000-0000-000000000000")).send().await.unwrap().status().as_u16(),
        404
    );
    let (again, _, second) = login(&env, "alice").await;
    let again_csrf = second["csrfToken"].as_str().unwrap().to_owned();
    assert_eq!(verify(&again, &again_csrf, &code).await.unwrap().status().as_u16(), 403, "a used code is refused");
    let reenrol =
        again.post(format!("{base}/auth/totp/enroll")).header("x-csrf-token", &again_csrf).send().await.unwrap();
    assert_eq!(reenrol.status().as_u16(), 409, "a session cannot replace a working factor");
    // Five refusals in a row (the replay above was the first) lock verification.
    for _ in 0..4 {
        assert_eq!(verify(&again, &again_csrf, wrong).await.unwrap().status().as_u16(), 403);
    }
    assert_eq!(verify(&again, &again_csrf, wrong).await.unwrap().status().as_u16(), 429);

    // Billing needs no second factor.
    let (carol, _, session) = login(&env, "carol").await;
    assert_eq!(session["role"], "billing");
    assert_eq!(
        carol.get(format!("{api}/visits/00000000-0000-0000-0000-000000000000")).send().await.unwrap().status().as_u16(),
        404
    );

    // The EHR that frames Telechart is the only frame ancestor; a login begun inside its frame
    // gets a cookie that lives in a cross-site frame, a top-level login a Lax one.
    let health = reqwest::get(format!("{}/healthz", env.server.base_url)).await.unwrap();
    assert_eq!(health.headers()["content-security-policy"], "default-src 'none'; frame-ancestors https://ehr.example");
    let callback_cookie = |query: &'static str| {
        let base = env.server.base_url.clone();
        async move {
            let stop_at_session = reqwest::redirect::Policy::custom(|attempt| {
                if attempt.url().path() == "/auth/session" { attempt.stop() } else { attempt.follow() }
            });
            let browser = reqwest::Client::builder().cookie_store(true).redirect(stop_at_session).build().unwrap();
            let response = browser.get(format!("{base}/auth/login?login_hint=carol{query}")).send().await.unwrap();
            assert_eq!(response.status().as_u16(), 303);
            response.headers()["set-cookie"].to_str().unwrap().to_owned()
        }
    };
    let framed = callback_cookie("&connection=ehr-frame").await;
    assert!(framed.ends_with("; Path=/; HttpOnly; Secure; SameSite=None; Partitioned"), "{framed}");
    let top = callback_cookie("").await;
    assert!(top.ends_with("; Path=/; HttpOnly; SameSite=Lax"), "{top}");
    let unknown = reqwest::Client::new()
        .get(format!("{}/auth/login?connection=elsewhere", env.server.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status().as_u16(), 422);

    // Someone the provider knows but Telechart does not: no session.
    let (_, status, body) = login(&env, "mallory").await;
    assert_eq!(status, 403, "{body}");

    // A forged session cookie is nobody.
    let forged = reqwest::Client::new()
        .get(format!("{api}/visits/x"))
        .header("cookie", format!("{}=forged", telechart_server::SESSION_COOKIE))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 401);

    // A callback replayed with a used state is refused.
    let replay = reqwest::Client::new()
        .get(format!("{}/auth/callback?code=x&state=y", env.server.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status().as_u16(), 422);
    env.store.close().await;
    env.server.shutdown().await;
}

/// Telechart's SMART client against oidc-provider behind a `.well-known/smart-configuration`
/// shim: discovery, code + PKCE S256, a verified id_token with `fhirUser`, and refresh — one
/// refresh for 16 concurrent callers, and the rotated refresh token (oidc-provider rotates them
/// for public clients, and revokes the grant if an old one is replayed) replacing the old one.
#[tokio::test]
async fn the_smart_client_works_against_oidc_provider() {
    let redirect = format!("http://127.0.0.1:{}/launch/callback", free_port());
    let Some(provider) = start_provider_with("http://127.0.0.1:9/auth/callback", &redirect).await else { return };
    let timeout = Duration::from_secs(10);
    let config = telechart_ehr::smart_configuration(&provider.issuer, timeout).await.unwrap();
    assert_eq!(config.issuer.as_deref(), Some(provider.issuer.as_str()));
    let request = telechart_ehr::AuthorizationRequest::new().unwrap();
    let url = request
        .url(&config, "telechart-smart", &redirect, "openid fhirUser offline_access user/*.rs", &provider.issuer, None)
        .unwrap();
    let callback = redirect.clone();
    let stop_at_callback = reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.url().as_str().starts_with(&callback) { attempt.stop() } else { attempt.follow() }
    });
    let browser = reqwest::Client::builder().cookie_store(true).redirect(stop_at_callback).build().unwrap();
    let response = browser.get(&url).send().await.unwrap();
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(&redirect), "{location}");
    let query: Vec<(String, String)> = serde_urlencoded::from_str(location.split_once('?').unwrap().1).unwrap();
    let param = |name: &str| query.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    assert_eq!(param("state").as_deref(), Some(request.state.as_str()));
    let code = param("code").unwrap();
    // The code without its PKCE verifier is refused; with it, exchanged once.
    let wrong = telechart_ehr::exchange_code(
        &config.token_endpoint,
        "telechart-smart",
        &code,
        &redirect,
        &"x".repeat(64),
        timeout,
    )
    .await;
    assert!(wrong.is_err(), "a wrong verifier must not get a token");
    let response = browser.get(&url).send().await.unwrap();
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let query: Vec<(String, String)> = serde_urlencoded::from_str(location.split_once('?').unwrap().1).unwrap();
    let code = query.iter().find(|(k, _)| k == "code").unwrap().1.clone();
    let token = telechart_ehr::exchange_code(
        &config.token_endpoint,
        "telechart-smart",
        &code,
        &redirect,
        &request.code_verifier,
        timeout,
    )
    .await
    .unwrap();
    let keys = telechart_ehr::id_token_keys(&config, timeout).await.unwrap();
    let id_token = token.id_token.clone().unwrap();
    let issuer = config.issuer.clone().unwrap();
    let claims = telechart_ehr::verify_id_token(&id_token, &keys, &issuer, "telechart-smart", &request.nonce).unwrap();
    assert_eq!((claims.sub.as_str(), claims.fhir_user.as_deref()), ("alice", Some("Practitioner/alice")));
    assert!(telechart_ehr::verify_id_token(&id_token, &keys, &issuer, "telechart-smart", "other-nonce").is_err());
    assert!(telechart_ehr::verify_id_token(&id_token, &keys, &issuer, "telechart", &request.nonce).is_err());

    let first_refresh_token = token.refresh_token.clone().expect("a refresh token");
    let issued = telechart_store::Clock::system().now();
    let tokens = Arc::new(telechart_ehr::UserTokens::new(
        &config.token_endpoint,
        "telechart-smart",
        &token,
        &telechart_ehr::AuthProfile::default(),
        timeout,
        issued,
    ));
    for round in 1..=2_u64 {
        let at = issued + chrono::Duration::seconds(290 * i64::try_from(round).unwrap());
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..16 {
            let tokens = tokens.clone();
            tasks.spawn(async move { tokens.access_token(at).await.unwrap() });
        }
        let mut seen = Vec::new();
        while let Some(t) = tasks.join_next().await {
            seen.push(t.unwrap());
        }
        seen.dedup();
        assert_eq!(seen.len(), 1, "round {round}: one token for everyone");
        assert_ne!(seen[0], token.access_token);
        assert_eq!(tokens.refreshes(), round, "round {round}: one refresh for 16 callers");
    }
    // The first refresh token was rotated out: replaying it is refused.
    let replay = reqwest::Client::new()
        .post(&config.token_endpoint)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            serde_urlencoded::to_string([
                ("grant_type", "refresh_token"),
                ("refresh_token", first_refresh_token.as_str()),
                ("client_id", "telechart-smart"),
            ])
            .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status().as_u16(), 400);
}
