//! The sandbox EHR over real HTTP: CRUD with versions, search and paging, and an
//! OperationOutcome (never a 500) for every kind of bad request.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::PathBuf;

use serde_json::{Value, json};
use telechart_sandbox::{RunningSandbox, Sandbox, SandboxConfig};

fn config() -> SandboxConfig {
    let mut config = SandboxConfig::new("2026-11-26".parse().unwrap());
    config.seed_dir = Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/synthea"));
    config
}

async fn start(config: &SandboxConfig) -> RunningSandbox {
    Sandbox::new(config).unwrap().spawn(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap()
}

struct Reply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

async fn send(request: reqwest::RequestBuilder) -> Reply {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    Reply { status, headers, body: serde_json::from_str(&text).unwrap_or(Value::Null) }
}

fn assert_outcome(reply: &Reply, status: u16, expression: Option<&str>) {
    assert_eq!(reply.status, status, "{}", reply.body);
    assert_eq!(reply.body["resourceType"], "OperationOutcome", "{}", reply.body);
    assert!(reply.body["issue"][0]["diagnostics"].as_str().is_some_and(|d| !d.is_empty()));
    if let Some(e) = expression {
        assert_eq!(reply.body["issue"][0]["expression"][0], e, "{}", reply.body);
    }
}

fn observation(patient: &str) -> Value {
    json!({"resourceType": "Observation", "status": "final",
           "identifier": [{"system": "urn:test", "value": "obs-1"}],
           "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
           "subject": {"reference": patient}, "effectiveDateTime": "2026-11-26T09:00:00Z",
           "valueQuantity": {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}})
}

async fn patient_of_first_appointment(http: &reqwest::Client, sandbox: &RunningSandbox) -> String {
    let id = sandbox.sandbox.appointment_ids()[0].clone();
    let appt = send(http.get(format!("{}/Appointment/{id}", sandbox.fhir_base))).await;
    appt.body["participant"][0]["actor"]["reference"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn create_read_vread_and_versioned_update() {
    let sandbox = start(&config()).await;
    let http = reqwest::Client::new();
    let base = sandbox.fhir_base.clone();
    let meta = send(http.get(format!("{base}/metadata"))).await;
    assert_eq!((meta.status, meta.body["fhirVersion"].as_str()), (200, Some("4.0.1")));

    let patient = patient_of_first_appointment(&http, &sandbox).await;
    let created = send(http.post(format!("{base}/Observation")).json(&observation(&patient))).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(created.headers["etag"], "W/\"1\"");
    assert!(created.headers["location"].to_str().unwrap().ends_with(&format!("/Observation/{id}/_history/1")));
    assert_eq!(created.body["meta"]["versionId"], "1");
    assert!(created.body["meta"]["lastUpdated"].as_str().is_some());

    let mut changed = created.body.clone();
    changed["status"] = json!("amended");
    let stale = send(http.put(format!("{base}/Observation/{id}")).header("If-Match", "W/\"7\"").json(&changed)).await;
    assert_outcome(&stale, 412, None);
    let updated = send(http.put(format!("{base}/Observation/{id}")).header("If-Match", "W/\"1\"").json(&changed)).await;
    assert_eq!((updated.status, updated.body["meta"]["versionId"].as_str()), (200, Some("2")));
    // The old version stays readable; the current one is the update.
    let v1 = send(http.get(format!("{base}/Observation/{id}/_history/1"))).await;
    assert_eq!(v1.body["status"], "final");
    let now = send(http.get(format!("{base}/Observation/{id}"))).await;
    assert_eq!((now.body["status"].as_str(), now.headers["etag"].to_str().unwrap()), (Some("amended"), "W/\"2\""));
    // Replaying the stale If-Match now fails too: the version moved on.
    let replay = send(http.put(format!("{base}/Observation/{id}")).header("If-Match", "W/\"1\"").json(&changed)).await;
    assert_outcome(&replay, 412, None);
    sandbox.shutdown().await;
}

#[tokio::test]
async fn search_filters_and_pages_with_next_links() {
    let sandbox = start(&config()).await;
    let http = reqwest::Client::new();
    let base = sandbox.fhir_base.clone();
    let today = send(http.get(format!("{base}/Appointment?date=2026-11-26&status=booked&_count=5"))).await;
    assert_eq!(today.status, 200);
    let total = today.body["total"].as_u64().unwrap() as usize;
    assert_eq!(total, sandbox.sandbox.appointment_ids().len());
    assert_eq!(today.body["entry"].as_array().unwrap().len(), 5);
    // Follow next links to the end: every appointment exactly once.
    let mut seen = Vec::new();
    let mut page = today.body;
    loop {
        for e in page["entry"].as_array().unwrap() {
            let appt = &e["resource"];
            assert_eq!(appt["serviceType"][0]["coding"][0]["code"], "448337001");
            assert!(appt.get("class").is_none(), "R4 Appointment has no class");
            seen.push(appt["id"].as_str().unwrap().to_owned());
        }
        let next = page["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
            .map(|l| l["url"].as_str().unwrap().to_owned());
        match next {
            Some(url) => page = send(http.get(url)).await.body,
            None => break,
        }
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), total);

    let patient = patient_of_first_appointment(&http, &sandbox).await;
    let by_patient = send(http.get(format!("{base}/Appointment?patient={patient}"))).await;
    assert!(by_patient.body["total"].as_u64().unwrap() >= 1);
    let none = send(http.get(format!("{base}/Appointment?date=lt2000-01-01"))).await;
    assert_eq!((none.body["total"].as_u64(), none.body.get("entry")), (Some(0), None));

    let created = send(http.post(format!("{base}/Observation")).json(&observation(&patient))).await;
    let by_identifier = send(http.get(format!("{base}/Observation?identifier=urn:test|obs-1"))).await;
    assert_eq!(by_identifier.body["total"], 1);
    assert_eq!(by_identifier.body["entry"][0]["resource"]["id"], created.body["id"]);
    let stamp = created.body["meta"]["lastUpdated"].as_str().unwrap();
    let query = serde_urlencoded::to_string([("_lastUpdated", format!("ge{stamp}"))]).unwrap();
    let recent = send(http.get(format!("{base}/Observation?{query}"))).await;
    assert_eq!(recent.body["total"], 1);
    let unknown = send(http.get(format!("{base}/Observation?colour=red"))).await;
    assert_outcome(&unknown, 400, Some("colour"));
    let bad_date = send(http.get(format!("{base}/Observation?date=yesterday"))).await;
    assert_outcome(&bad_date, 400, Some("date"));
    sandbox.shutdown().await;
}

#[tokio::test]
async fn every_bad_request_gets_an_operation_outcome() {
    let sandbox = start(&config()).await;
    let http = reqwest::Client::new();
    let base = sandbox.fhir_base.clone();
    let patient = patient_of_first_appointment(&http, &sandbox).await;

    assert_outcome(&send(http.get(format!("{base}/VitalSign/1"))).await, 404, None);
    assert_outcome(&send(http.post(format!("{base}/VitalSign")).json(&json!({}))).await, 404, None);
    assert_outcome(&send(http.get(format!("{base}/Observation/nope"))).await, 404, None);
    let malformed = send(
        http.post(format!("{base}/Observation"))
            .header("content-type", "application/fhir+json")
            .body("{\"resourceType\":"),
    )
    .await;
    assert_outcome(&malformed, 400, None);
    let mut no_code = observation(&patient);
    no_code.as_object_mut().unwrap().remove("code");
    assert_outcome(&send(http.post(format!("{base}/Observation")).json(&no_code)).await, 400, Some("Observation.code"));
    let mut bad_status = observation(&patient);
    bad_status["status"] = json!("done");
    assert_outcome(
        &send(http.post(format!("{base}/Observation")).json(&bad_status)).await,
        400,
        Some("Observation.status"),
    );
    let dangling = observation("Patient/does-not-exist");
    assert_outcome(
        &send(http.post(format!("{base}/Observation")).json(&dangling)).await,
        422,
        Some("Observation.subject.reference"),
    );
    let wrong_type = observation(&patient);
    assert_outcome(&send(http.post(format!("{base}/Encounter")).json(&wrong_type)).await, 400, Some("resourceType"));
    let not_object = send(http.post(format!("{base}/Observation")).json(&json!([1, 2]))).await;
    assert_outcome(&not_object, 400, None);
    let put_unknown =
        send(http.put(format!("{base}/Observation/nope")).json(&json!({"resourceType": "Observation", "id": "nope"})))
            .await;
    assert_outcome(&put_unknown, 404, None);
    assert_outcome(&send(http.get(format!("{base}/Observation/1/extra/path"))).await, 404, None);
    assert_outcome(&send(http.delete(format!("{base}/Observation/1"))).await, 405, None);
    // Nothing refused was stored.
    assert_eq!(sandbox.sandbox.count_with_identifier("Observation", "urn:test|obs-1"), 0);
    sandbox.shutdown().await;
}

#[tokio::test]
async fn what_the_sandbox_is_sent_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config();
    config.data_file = Some(dir.path().join("journal.ndjson"));
    let http = reqwest::Client::new();
    let first = start(&config).await;
    let patient = patient_of_first_appointment(&http, &first).await;
    let created = send(http.post(format!("{}/Observation", first.fhir_base)).json(&observation(&patient))).await;
    let id = created.body["id"].as_str().unwrap().to_owned();
    first.shutdown().await;

    let second = start(&config).await;
    let read = send(http.get(format!("{}/Observation/{id}", second.fhir_base))).await;
    assert_eq!(read.status, 200);
    assert_eq!(second.sandbox.count_with_identifier("Observation", "urn:test|obs-1"), 1);
    // New ids do not collide with restored ones.
    let another = send(http.post(format!("{}/Observation", second.fhir_base)).json(&observation(&patient))).await;
    assert_ne!(another.body["id"], created.body["id"]);
    second.shutdown().await;
}

/// The App Launch half of the sandbox's authorization server, driven as an app would drive it.
mod app_launch {
    use super::*;
    use base64::Engine;
    use telechart_sandbox::{AppClient, LaunchContext};

    const REDIRECT: &str = "https://telechart.example/launch/callback";

    fn pkce() -> (String, String) {
        let verifier = format!("{}{}", uuid_like(), uuid_like());
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
        (verifier, base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest))
    }

    fn uuid_like() -> String {
        format!("{:032x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos())
    }

    async fn start_app() -> RunningSandbox {
        let mut config = config();
        config.seed_dir = None;
        config.app_clients = vec![AppClient {
            client_id: "telechart-app".into(),
            redirect_uris: vec![REDIRECT.into()],
            scopes: ["launch", "launch/patient", "openid", "fhirUser", "offline_access", "patient/*.rs"]
                .map(String::from)
                .to_vec(),
        }];
        start(&config).await
    }

    /// Checks an id_token with the keys the sandbox publishes; returns its claims.
    async fn verified_id_token(sandbox: &RunningSandbox, id_token: &str, nonce: &str) -> Value {
        let root = sandbox.root.as_str();
        let jwks: jsonwebtoken::jwk::JwkSet =
            reqwest::get(format!("{root}/auth/jwks")).await.unwrap().json().await.unwrap();
        let header = jsonwebtoken::decode_header(id_token).unwrap();
        assert_eq!(header.alg, jsonwebtoken::Algorithm::RS256);
        let key = jsonwebtoken::DecodingKey::from_jwk(jwks.find(header.kid.as_deref().unwrap()).unwrap()).unwrap();
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.set_audience(&["telechart-app"]);
        validation.set_issuer(&[sandbox.fhir_base.as_str()]);
        let claims = jsonwebtoken::decode::<Value>(id_token, &key, &validation).unwrap().claims;
        assert_eq!(claims["nonce"], nonce);
        claims
    }

    /// Calls authorize without following the redirect; returns (status, Location or body).
    async fn authorize(sandbox: &RunningSandbox, params: &[(&str, &str)]) -> (u16, String) {
        let root = sandbox.root.as_str();
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let query = serde_urlencoded::to_string(params).unwrap();
        let response = http.get(format!("{root}/auth/authorize?{query}")).send().await.unwrap();
        let status = response.status().as_u16();
        let location = response.headers().get("location").map(|l| l.to_str().unwrap().to_owned());
        (status, location.unwrap_or(response.text().await.unwrap()))
    }

    fn code_from(location: &str) -> Option<String> {
        let query = location.split_once('?')?.1;
        serde_urlencoded::from_str::<Vec<(String, String)>>(query)
            .ok()?
            .into_iter()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v)
    }

    async fn exchange(sandbox: &RunningSandbox, form: &[(&str, &str)]) -> (u16, Value) {
        let body = serde_urlencoded::to_string(form).unwrap();
        let response = reqwest::Client::new()
            .post(sandbox.sandbox.token_url())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    #[tokio::test]
    async fn an_ehr_launch_yields_a_token_with_its_context_once() {
        let sandbox = start_app().await;
        let launch = sandbox.sandbox.register_launch(LaunchContext {
            practitioner: "Practitioner/sandbox-dr-1".into(),
            patient: "Patient/p-1".into(),
            appointment: Some("Appointment/a-2".into()),
        });
        let (verifier, challenge) = pkce();
        let state = "s".repeat(22);
        let base = sandbox.fhir_base.clone();
        let good = [
            ("response_type", "code"),
            ("client_id", "telechart-app"),
            ("redirect_uri", REDIRECT),
            ("scope", "launch openid fhirUser patient/*.rs"),
            ("state", state.as_str()),
            ("aud", base.as_str()),
            ("launch", launch.as_str()),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("nonce", "n-0123456789abcdef"),
        ];
        let (status, location) = authorize(&sandbox, &good).await;
        assert_eq!(status, 303, "{location}");
        assert!(location.starts_with(REDIRECT) && location.contains(&format!("state={state}")));
        let code = code_from(&location).unwrap();
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier.as_str()),
            ("client_id", "telechart-app"),
        ];
        let (status, token) = exchange(&sandbox, &form).await;
        assert_eq!(status, 200, "{token}");
        assert_eq!(token["patient"], "p-1");
        assert_eq!(token["fhirContext"][0]["reference"], "Appointment/a-2");
        let claims = verified_id_token(&sandbox, token["id_token"].as_str().unwrap(), "n-0123456789abcdef").await;
        assert_eq!(claims["fhirUser"], format!("{base}/Practitioner/sandbox-dr-1"));
        assert!(token.get("refresh_token").is_none(), "no offline_access, no refresh token");
        // The same code again: refused, no token.
        let (status, again) = exchange(&sandbox, &form).await;
        assert_eq!((status, again["error"].as_str()), (400, Some("invalid_grant")));
        assert!(again.get("access_token").is_none());
        sandbox.shutdown().await;
    }

    #[tokio::test]
    async fn authorize_and_token_refuse_what_the_spec_forbids() {
        let sandbox = start_app().await;
        let launch = sandbox.sandbox.register_launch(LaunchContext {
            practitioner: "Practitioner/sandbox-dr-1".into(),
            patient: "Patient/p-1".into(),
            appointment: None,
        });
        let (verifier, challenge) = pkce();
        let state = "s".repeat(22);
        let base = sandbox.fhir_base.clone();
        let params = |overrides: &[(&'static str, &str)]| {
            let mut p: Vec<(&str, String)> = vec![
                ("response_type", "code".into()),
                ("client_id", "telechart-app".into()),
                ("redirect_uri", REDIRECT.into()),
                ("scope", "launch patient/*.rs".into()),
                ("state", state.clone()),
                ("aud", base.clone()),
                ("launch", launch.clone()),
                ("code_challenge", challenge.clone()),
                ("code_challenge_method", "S256".into()),
            ];
            for (k, v) in overrides {
                p.retain(|(key, _)| key != k);
                if !v.is_empty() {
                    p.push((k, (*v).to_owned()));
                }
            }
            p
        };
        // A redirect URI that is not registered: refused here, never redirected to.
        let p = params(&[("redirect_uri", "https://evil.example/cb")]);
        let (status, body) = authorize(&sandbox, &p.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>()).await;
        assert_eq!(status, 400, "{body}");
        // Errors after the redirect URI is known good go back to the app, with the state.
        for (what, overrides) in [
            ("plain PKCE", vec![("code_challenge_method", "plain")]),
            ("no PKCE", vec![("code_challenge", ""), ("code_challenge_method", "")]),
            ("wrong aud", vec![("aud", "https://other-ehr.example/fhir")]),
            ("unknown launch", vec![("launch", "forged")]),
            ("short state", vec![("state", "abc")]),
            ("scope not granted", vec![("scope", "launch system/*.cruds")]),
        ] {
            let p = params(&overrides);
            let (status, location) =
                authorize(&sandbox, &p.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>()).await;
            assert_eq!(status, 303, "{what}");
            assert!(location.starts_with(REDIRECT) && location.contains("error="), "{what}: {location}");
            assert!(code_from(&location).is_none(), "{what} issued a code");
        }
        // A good code with the wrong verifier, or for another redirect URI: refused, and spent.
        let p = params(&[]);
        for (what, redirect, verifier_used) in [
            ("wrong verifier", REDIRECT, "x".repeat(43)),
            ("redirect mismatch", "https://telechart.example/other", verifier.clone()),
        ] {
            let (_, location) = authorize(&sandbox, &p.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>()).await;
            let code = code_from(&location).unwrap();
            let form = [
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", redirect),
                ("code_verifier", verifier_used.as_str()),
                ("client_id", "telechart-app"),
            ];
            let (status, body) = exchange(&sandbox, &form).await;
            assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{what}: {body}");
            let retry = [
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", REDIRECT),
                ("code_verifier", verifier.as_str()),
                ("client_id", "telechart-app"),
            ];
            assert_eq!(exchange(&sandbox, &retry).await.0, 400, "{what}: a failed code is spent");
        }
        sandbox.shutdown().await;
    }

    /// A standalone launch through the sign-in/approve page, then refresh tokens: kept as they
    /// are by default (as Epic and Oracle do), rotated (the old one dead) when the sandbox rotates.
    #[tokio::test]
    async fn standalone_launch_through_the_approve_page_then_refresh() {
        for rotate in [false, true] {
            let mut config = config();
            config.seed_dir = None;
            config.approve_page = true;
            config.rotate_refresh_tokens = rotate;
            config.app_clients = vec![AppClient {
                client_id: "telechart-app".into(),
                redirect_uris: vec![REDIRECT.into()],
                scopes: ["launch/patient", "openid", "fhirUser", "offline_access", "user/*.rs"]
                    .map(String::from)
                    .to_vec(),
            }];
            let sandbox = start(&config).await;
            let (verifier, challenge) = pkce();
            let base = sandbox.fhir_base.clone();
            let params = [
                ("response_type", "code"),
                ("client_id", "telechart-app"),
                ("redirect_uri", REDIRECT),
                ("scope", "launch/patient openid fhirUser offline_access user/*.rs"),
                ("state", "standalone-state-0123456789"),
                ("aud", base.as_str()),
                ("code_challenge", challenge.as_str()),
                ("code_challenge_method", "S256"),
                ("nonce", "nonce-standalone"),
            ];
            let (status, page) = authorize(&sandbox, &params).await;
            assert_eq!(status, 200);
            assert!(page.contains("id=\"approve\"") && page.contains("name=\"patient\""), "{page}");
            let root = base.trim_end_matches("/fhir").to_owned();
            let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
            let post = |extra: Vec<(&'static str, String)>| {
                let mut form: Vec<(&str, String)> = params.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
                form.extend(extra);
                http.post(format!("{root}/auth/authorize"))
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(serde_urlencoded::to_string(form).unwrap())
                    .send()
            };
            let denied = post(vec![("decision", "deny".into())]).await.unwrap();
            let location = denied.headers()["location"].to_str().unwrap().to_owned();
            assert!(location.contains("error=access_denied") && code_from(&location).is_none(), "{location}");
            let unknown = post(vec![
                ("decision", "approve".into()),
                ("user", "Practitioner/sandbox-dr-2".into()),
                ("patient", "Patient/nobody".into()),
            ])
            .await
            .unwrap();
            assert_eq!(unknown.status().as_u16(), 400);
            let approved = post(vec![
                ("decision", "approve".into()),
                ("user", "Practitioner/sandbox-dr-2".into()),
                ("patient", "Patient/sandbox-patient-2".into()),
            ])
            .await
            .unwrap();
            let location = approved.headers()["location"].to_str().unwrap().to_owned();
            let code = code_from(&location).unwrap();
            let (status, token) = exchange(
                &sandbox,
                &[
                    ("grant_type", "authorization_code"),
                    ("code", code.as_str()),
                    ("redirect_uri", REDIRECT),
                    ("code_verifier", verifier.as_str()),
                    ("client_id", "telechart-app"),
                ],
            )
            .await;
            assert_eq!(status, 200, "{token}");
            assert_eq!(token["patient"], "sandbox-patient-2");
            let claims = verified_id_token(&sandbox, token["id_token"].as_str().unwrap(), "nonce-standalone").await;
            assert_eq!(claims["fhirUser"], format!("{base}/Practitioner/sandbox-dr-2"));
            let first = token["refresh_token"].as_str().unwrap().to_owned();
            let refresh = |presented: String| {
                let sandbox = &sandbox;
                async move {
                    exchange(
                        sandbox,
                        &[
                            ("grant_type", "refresh_token"),
                            ("refresh_token", &presented),
                            ("client_id", "telechart-app"),
                        ],
                    )
                    .await
                }
            };
            let (status, refreshed) = refresh(first.clone()).await;
            assert_eq!(status, 200, "{refreshed}");
            assert_ne!(refreshed["access_token"], token["access_token"]);
            assert_eq!(refreshed["patient"], "sandbox-patient-2", "the context survives a refresh");
            if rotate {
                let second = refreshed["refresh_token"].as_str().unwrap().to_owned();
                assert_ne!(second, first);
                assert_eq!(refresh(first).await.0, 400, "a rotated-out refresh token is dead");
                assert_eq!(refresh(second).await.0, 200);
            } else {
                assert!(refreshed.get("refresh_token").is_none(), "no new refresh token is issued");
                assert_eq!(refresh(first).await.0, 200, "the one refresh token keeps working");
            }
            let (status, wrong_client) = exchange(
                &sandbox,
                &[("grant_type", "refresh_token"), ("refresh_token", "nope"), ("client_id", "telechart-app")],
            )
            .await;
            assert_eq!((status, wrong_client["error"].as_str()), (400, Some("invalid_grant")));
            sandbox.shutdown().await;
        }
    }
}
