//! SMART EHR launch against the sandbox's authorization server: the clinician lands in the
//! workspace of the appointment in context; an unknown `iss` and a replayed state go nowhere.

use std::net::SocketAddr;

use serde_json::json;
use telechart_policy::Role;
use telechart_sandbox::{AppClient, LaunchContext, Sandbox, SandboxConfig};
use telechart_store::ConnectionRow;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub struct LaunchEnv {
    pub store: telechart_store::Store,
    pub sandbox: telechart_sandbox::RunningSandbox,
    pub server: telechart_server::RunningServer,
    /// Telechart's base URL.
    pub base: String,
    pub _dir: tempfile::TempDir,
}

/// A sandbox EHR whose schedule launches Telechart, and Telechart registered with it, with one
/// clinician (Dr Okafor, `sandbox-dr-2`) linked by fhirUser. With `approve_page`, the EHR's
/// authorize step shows its sign-in/approve page instead of approving at once.
pub async fn launch_env(approve_page: bool) -> LaunchEnv {
    launch_env_as(approve_page, telechart_sandbox::Personality::Generic, "generic").await
}

/// As [`launch_env`], the EHR answering as `personality` and the connection on `profile`.
pub async fn launch_env_as(
    approve_page: bool,
    personality: telechart_sandbox::Personality,
    profile: &str,
) -> LaunchEnv {
    launch_env_seeded(approve_page, personality, profile, None).await
}

/// As [`launch_env_as`], the EHR seeded from `seed_dir` (Synthea) instead of generated patients.
pub async fn launch_env_seeded(
    approve_page: bool,
    personality: telechart_sandbox::Personality,
    profile: &str,
    seed_dir: Option<std::path::PathBuf>,
) -> LaunchEnv {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::sqlite_store(dir.path()).await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    // Today by the system clock: the standalone picker offers the EHR's appointments of today.
    let mut config = SandboxConfig::new(telechart_store::Clock::system().now().date_naive());
    config.app_launch_url = Some(format!("{base}/launch"));
    config.approve_page = approve_page;
    config.personality = personality;
    config.seed_dir = seed_dir;
    config.app_clients = vec![AppClient {
        client_id: "telechart-app".into(),
        redirect_uris: vec![format!("{base}/launch/callback")],
        scopes: ["launch", "launch/patient", "openid", "fhirUser", "patient/*.rs"].map(String::from).to_vec(),
    }];
    let sandbox = Sandbox::new(&config).unwrap().spawn(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
    store
        .upsert_connection(&ConnectionRow {
            tenant_id: "default".into(),
            id: "sandbox".into(),
            name: "Sandbox".into(),
            profile: profile.into(),
            base_url: sandbox.fhir_base.clone(),
            settings: json!({"launch": {"client_id": "telechart-app", "scope": "launch openid fhirUser patient/*.rs"}})
                .to_string(),
            created_at: 0,
            updated_at: 0,
        })
        .await
        .unwrap();
    let user = store.add_user("default", "https://idp.example", "dr1", "clinician", 0).await.unwrap();
    // The second slot of the day is Dr Okafor's (sandbox-dr-2).
    store.link_fhir_user("default", &user.id, "Practitioner/sandbox-dr-2").await.unwrap();
    // Sessions come from launches alone here: no OpenID login is configured.
    let state = telechart_server::AppState {
        public_url: Some(base.clone()),
        sessions: std::sync::Arc::new(telechart_server::SessionPolicy {
            mfa_roles: vec![Role::ComplianceOfficer],
            ..Default::default()
        }),
        ..crate::bare_state(&store, None)
    };
    let server = telechart_server::spawn(state, SocketAddr::from(([127, 0, 0, 1], port)), None).await.unwrap();
    LaunchEnv { store, sandbox, server, base, _dir: dir }
}

/// The patient's name as the EHR has it ("Given Family"), which the workspace banner must show.
pub async fn patient_name(sandbox: &telechart_sandbox::RunningSandbox, patient: &str) -> String {
    let read: serde_json::Value =
        reqwest::get(format!("{}/{patient}", sandbox.fhir_base)).await.unwrap().json().await.unwrap();
    format!("{} {}", read["name"][0]["given"][0].as_str().unwrap(), read["name"][0]["family"].as_str().unwrap())
}

/// Runs a worker until the queue is empty, then reads back the Encounter of `appointment` and
/// the Observations that reference it from the sandbox.
pub async fn deliver_and_read_back(
    store: &telechart_store::Store,
    sandbox: &telechart_sandbox::RunningSandbox,
    appointment: &str,
) -> (serde_json::Value, serde_json::Value) {
    let worker = telechart_sync::Worker::new(
        store.clone(),
        telechart_store::Clock::system(),
        telechart_sync::SyncConfig::new("default", "w", "urn:telechart:test"),
        telechart_sync::Connections::new(store.clone(), std::time::Duration::from_secs(5)),
        telechart_sync::QueueSignal::default(),
    );
    while !worker.run_once().await.unwrap().is_empty() {}
    let get = |url: String| async move { reqwest::get(url).await.unwrap().json::<serde_json::Value>().await.unwrap() };
    let encounters = get(format!("{}/Encounter?appointment=Appointment/{appointment}", sandbox.fhir_base)).await;
    let encounter = encounters["entry"][0]["resource"].clone();
    let id = encounter["id"].as_str().unwrap().to_owned();
    let observations = get(format!("{}/Observation?encounter=Encounter/{id}", sandbox.fhir_base)).await;
    (encounter, observations)
}

#[tokio::test]
async fn an_ehr_launch_opens_the_workspace_of_the_appointment_in_context() {
    let LaunchEnv { store, sandbox, server, base, _dir } = launch_env(false).await;
    // The second of today's appointments, as the EHR's schedule would launch it.
    let appointment = sandbox.sandbox.appointment_ids()[1].clone();
    let appt: serde_json::Value =
        reqwest::get(format!("{}/Appointment/{appointment}", sandbox.fhir_base)).await.unwrap().json().await.unwrap();
    let patient = appt["participant"][0]["actor"]["reference"].as_str().unwrap().to_owned();
    let launch = sandbox.sandbox.register_launch(LaunchContext {
        practitioner: "Practitioner/sandbox-dr-2".into(),
        patient: patient.clone(),
        appointment: Some(format!("Appointment/{appointment}")),
    });
    let iss = sandbox.fhir_base.clone();
    let browser = reqwest::Client::builder().cookie_store(true).build().unwrap();
    // The EHR's schedule page: its second "Start video visit" launches that appointment.
    let ehr = sandbox.root.clone();
    let schedule = browser.get(format!("{ehr}/ehr/schedule")).send().await.unwrap().text().await.unwrap();
    let starts: Vec<&str> = schedule.match_indices("href=\"/ehr/launch/").map(|(i, _)| &schedule[i + 6..]).collect();
    let second = starts[1].split('"').next().unwrap().to_owned();
    assert_eq!(second, format!("/ehr/launch/{appointment}"));
    let response = browser.get(format!("{ehr}{second}")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let landed = response.url().path().to_owned();
    let html = response.text().await.unwrap();
    assert!(landed.starts_with("/workspace/visits/"), "{landed}");
    // The banner's demographics come from the EHR, read with the clinician's launch token.
    let name = patient_name(&sandbox, &patient).await;
    assert!(html.contains(&name) && html.contains(&format!("Appointment/{appointment}")), "{html}");

    // The workspace's own forms: arrive, record vitals, start the call, sign a note, finish.
    let csrf = html.split("name=\"csrf_token\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let post = |path: String, fields: Vec<(&'static str, String)>| {
        let (browser, base, csrf) = (browser.clone(), base.clone(), csrf.clone());
        async move {
            let mut form: Vec<(&str, String)> = vec![("csrf_token", csrf)];
            form.extend(fields);
            let body = serde_urlencoded::to_string(&form).unwrap();
            let response = browser
                .post(format!("{base}{path}"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    let visit_id = landed.trim_start_matches("/workspace/visits/").to_owned();
    let at = |what: &str| format!("/workspace/visits/{visit_id}/{what}");
    for (path, fields) in [
        (at("transition"), vec![("to", "arrived".to_owned())]),
        (
            at("vitals"),
            vec![
                ("systolic", "126".into()),
                ("diastolic", "81".into()),
                ("heart_rate", "74".into()),
                ("temperature", "36.9".into()),
            ],
        ),
        (at("consent"), vec![("category", "telehealth".to_owned()), ("decision", "permit".to_owned())]),
        (at("transition"), vec![("to", "in-progress".to_owned())]),
        (at("note"), vec![("title", "Video visit".into()), ("text", "Stable; continue plan.".into())]),
        (at("transition"), vec![("to", "finished".to_owned())]),
    ] {
        let (status, page) = post(path.clone(), fields).await;
        assert_eq!(status, 200, "{path}: {page}");
    }
    // Without the form's CSRF token, nothing happens.
    let forged = browser
        .post(format!("{base}{}", at("transition")))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("to=cancelled")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 403);
    let (encounter, observations) = deliver_and_read_back(&store, &sandbox, &appointment).await;
    let final_page = browser.get(format!("{base}{landed}")).send().await.unwrap().text().await.unwrap();
    assert!(final_page.contains("<span id=\"visit-state\">finished</span>"), "{final_page}");
    assert_eq!((encounter["status"].as_str(), encounter["class"]["code"].as_str()), (Some("finished"), Some("VR")));
    assert_eq!(observations["total"], 3, "BP panel, heart rate, temperature");

    // Launching the same appointment again lands on the same visit.
    let again = browser
        .get(format!("{base}/launch"))
        .query_pairs(&[("iss", iss.as_str()), ("launch", launch.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(again.url().path(), landed);

    // A browser still holding an ended session's cookie launches as if it had none.
    let stop_at_workspace = reqwest::redirect::Policy::custom(|attempt| {
        if attempt.url().path().starts_with("/workspace/") { attempt.stop() } else { attempt.follow() }
    });
    let stale = reqwest::Client::builder().redirect(stop_at_workspace).build().unwrap();
    let relaunch = sandbox.sandbox.register_launch(LaunchContext {
        practitioner: "Practitioner/sandbox-dr-2".into(),
        patient: patient.clone(),
        appointment: Some(format!("Appointment/{appointment}")),
    });
    let landed_stale = stale
        .get(format!("{base}/launch"))
        .query_pairs(&[("iss", iss.as_str()), ("launch", relaunch.as_str())])
        .header("cookie", "telechart_session=ended-long-ago")
        .send()
        .await
        .unwrap();
    assert_eq!(landed_stale.url().path(), "/launch/callback", "stops where the new cookie is set");
    assert_eq!(landed_stale.status().as_u16(), 303);
    assert!(landed_stale.headers()["set-cookie"].to_str().unwrap().starts_with("telechart_session="));

    // An iss that is not a registered EHR: refused before any request leaves.
    let unknown = reqwest::Client::new()
        .get(format!("{base}/launch"))
        .query_pairs(&[("iss", "http://169.254.169.254/latest"), ("launch", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status().as_u16(), 422);

    // A callback replayed with its state: refused the second time.
    let stop_at_callback = reqwest::redirect::Policy::custom(|attempt| {
        if attempt.url().path() == "/launch/callback" { attempt.stop() } else { attempt.follow() }
    });
    let probe = reqwest::Client::builder().redirect(stop_at_callback).build().unwrap();
    let to_callback = probe
        .get(format!("{base}/launch"))
        .query_pairs(&[("iss", iss.as_str()), ("launch", launch.as_str())])
        .send()
        .await
        .unwrap();
    let callback = to_callback.headers()["location"].to_str().unwrap().to_owned();
    let first = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(&callback)
        .send()
        .await
        .unwrap();
    assert_eq!(first.status().as_u16(), 303);
    let second = reqwest::Client::new().get(&callback).send().await.unwrap();
    assert_eq!(second.status().as_u16(), 422);
    server.shutdown().await;
    sandbox.shutdown().await;
}

/// A standalone launch: Telechart starts at the EHR (`iss` alone), the clinician signs in and
/// picks the patient on the EHR's approve page, and Telechart offers that patient's telehealth
/// appointments today, read from the EHR with the clinician's token; the one picked opens.
#[tokio::test]
async fn a_standalone_launch_picks_the_patient_at_the_ehr_and_the_visit_in_telechart() {
    let LaunchEnv { store, sandbox, server, base, _dir } = launch_env(true).await;
    let appointment = sandbox.sandbox.appointment_ids()[1].clone();
    let appt: serde_json::Value =
        reqwest::get(format!("{}/Appointment/{appointment}", sandbox.fhir_base)).await.unwrap().json().await.unwrap();
    let patient = appt["participant"][0]["actor"]["reference"].as_str().unwrap().to_owned();
    let browser = reqwest::Client::builder().cookie_store(true).build().unwrap();
    let page =
        browser.get(format!("{base}/launch")).query_pairs(&[("iss", sandbox.fhir_base.as_str())]).send().await.unwrap();
    let ehr_root = sandbox.root.clone();
    assert_eq!(page.url().path(), "/auth/authorize");
    let html = page.text().await.unwrap();
    assert!(html.contains("launch/patient") && html.contains("name=\"patient\""), "{html}");
    // The approve page's own form, with the clinician and patient chosen.
    let mut form: Vec<(String, String)> = html
        .match_indices("<input type=\"hidden\" name=\"")
        .map(|(i, _)| {
            let rest = &html[i + 27..];
            let name = rest.split('"').next().unwrap().to_owned();
            let value = rest.split("value=\"").nth(1).unwrap().split('"').next().unwrap().replace("&amp;", "&");
            (name, value)
        })
        .collect();
    form.push(("user".into(), "Practitioner/sandbox-dr-2".into()));
    form.push(("patient".into(), patient.clone()));
    form.push(("decision".into(), "approve".into()));
    let picker = browser
        .post(format!("{ehr_root}/auth/authorize"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(&form).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(picker.url().path(), "/launch/callback");
    let html = picker.text().await.unwrap();
    let booked: serde_json::Value = reqwest::get(format!(
        "{}/Appointment?patient={patient}&status=booked&date={}",
        sandbox.fhir_base,
        telechart_store::Clock::system().now().date_naive()
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let offered = html.matches("Open visit").count();
    assert_eq!(offered, booked["entry"].as_array().unwrap().len(), "{html}");
    assert!(offered > 1, "the sandbox books several visits a day for each patient");
    assert!(html.contains(&format!("/workspace/appointments/{appointment}/open")), "{html}");
    let csrf = html.split("name=\"csrf_token\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let opened = browser
        .post(format!("{base}/workspace/appointments/{appointment}/open"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf_token={csrf}"))
        .send()
        .await
        .unwrap();
    assert!(opened.url().path().starts_with("/workspace/visits/"), "{}", opened.url());
    let workspace = opened.text().await.unwrap();
    let name = patient_name(&sandbox, &patient).await;
    assert!(workspace.contains(&name) && workspace.contains(&format!("Appointment/{appointment}")), "{workspace}");
    let visit = store.visit_for_appointment("default", "sandbox", &appointment).await.unwrap().unwrap();
    assert_eq!(visit.patient.expose(), &patient);
    // An appointment the EHR does not have cannot be opened.
    let missing = browser
        .post(format!("{base}/workspace/appointments/no-such-appointment/open"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf_token={csrf}"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status().as_u16(), 404);
    server.shutdown().await;
    sandbox.shutdown().await;
}

trait QueryPairs {
    fn query_pairs(self, pairs: &[(&str, &str)]) -> Self;
}

impl QueryPairs for reqwest::RequestBuilder {
    /// reqwest's `query` needs a feature this workspace leaves off; the URL is built by hand.
    fn query_pairs(self, pairs: &[(&str, &str)]) -> Self {
        let (client, request) = self.build_split();
        let mut request = request.unwrap();
        request.url_mut().query_pairs_mut().extend_pairs(pairs);
        reqwest::RequestBuilder::from_parts(client, request)
    }
}

/// The launch's token response exactly as the EHR sends it: authorize (auto-approved), then the
/// code exchanged with PKCE by hand.
async fn raw_token_response(
    sandbox: &telechart_sandbox::RunningSandbox,
    base: &str,
    launch: Option<&str>,
    scope: &str,
) -> serde_json::Value {
    let config =
        telechart_ehr::smart_configuration(&sandbox.fhir_base, std::time::Duration::from_secs(5)).await.unwrap();
    let request = telechart_ehr::AuthorizationRequest::new().unwrap();
    let redirect = format!("{base}/launch/callback");
    let url = request.url(&config, "telechart-app", &redirect, scope, &sandbox.fhir_base, launch).unwrap();
    let no_redirects = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let back = no_redirects.get(url).send().await.unwrap();
    let location = back.headers()["location"].to_str().unwrap().to_owned();
    let query = location.split_once('?').unwrap().1;
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap();
    let code = pairs.into_iter().find(|(k, _)| k == "code").unwrap().1;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", redirect.as_str()),
        ("code_verifier", request.code_verifier.as_str()),
        ("client_id", "telechart-app"),
    ];
    let response = no_redirects
        .post(&config.token_endpoint)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(form).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    response.json().await.unwrap()
}

/// VENDORS.md §8 item 2: an Epic EHR launch's token adds `__epic.dstu2.patient`, `encounter`,
/// `appointment`, `location`, `loginDepartment` and `need_patient_banner` as the *string*
/// `"false"`; a standalone launch has no visit keys. Telechart takes the string, the appointment
/// from `appointment`, and binds the visit to the EHR's Encounter from `encounter`.
#[tokio::test]
async fn epic_2_launch_tokens_carry_epics_context_keys_and_telechart_binds_the_ehrs_encounter() {
    let LaunchEnv { store, sandbox, server, base, _dir } =
        launch_env_as(false, telechart_sandbox::Personality::Epic, "epic").await;
    let appointment = sandbox.sandbox.appointment_ids()[1].clone();
    let appt: serde_json::Value =
        reqwest::get(format!("{}/Appointment/{appointment}", sandbox.fhir_base)).await.unwrap().json().await.unwrap();
    let patient = appt["participant"][0]["actor"]["reference"].as_str().unwrap().to_owned();
    let context = || LaunchContext {
        practitioner: "Practitioner/sandbox-dr-2".into(),
        patient: patient.clone(),
        appointment: Some(format!("Appointment/{appointment}")),
    };
    let launch = sandbox.sandbox.register_launch(context());
    let token = raw_token_response(&sandbox, &base, Some(&launch), "launch openid fhirUser patient/*.rs").await;
    assert_eq!(token["need_patient_banner"], "false", "a string, as Epic sends it: {token}");
    assert_eq!(token["appointment"], appointment.as_str());
    assert_eq!(token["encounter"], format!("enc-{appointment}"));
    for key in ["__epic.dstu2.patient", "location", "loginDepartment", "patient"] {
        assert!(token[key].is_string(), "{key}: {token}");
    }
    let standalone = raw_token_response(&sandbox, &base, None, "launch/patient openid fhirUser patient/*.rs").await;
    assert!(standalone["patient"].is_string() && standalone["__epic.dstu2.patient"].is_string(), "{standalone}");
    for key in ["encounter", "appointment", "location"] {
        assert!(standalone.get(key).is_none(), "standalone has no {key}: {standalone}");
    }

    // Telechart: the launch opens the appointment's visit, bound to the EHR's Encounter.
    let browser = reqwest::Client::builder().cookie_store(true).build().unwrap();
    let launch = sandbox.sandbox.register_launch(context());
    let landed = browser
        .get(format!("{base}/launch"))
        .query_pairs(&[("iss", sandbox.fhir_base.as_str()), ("launch", launch.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(landed.status().as_u16(), 200);
    let visit_id = landed.url().path().trim_start_matches("/workspace/visits/").to_owned();
    let visit = store.visit("default", &visit_id).await.unwrap().expect("the launch opened a visit");
    assert_eq!(visit.appointment_id, appointment);
    assert_eq!(visit.ehr_encounter_id.as_deref(), Some(format!("enc-{appointment}").as_str()));
    server.shutdown().await;
    sandbox.shutdown().await;
}
