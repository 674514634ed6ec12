//! The patient portal in a real headless Chromium: a signed care plan's link opens the patient's
//! after-visit summary — in English, and in Spanish for a Spanish-speaking Synthea patient — the
//! patient marks a task done and the care team sees it; a reused, revoked or expired link is
//! refused; axe-core (npm) finds no serious or critical WCAG 2.1 A/AA violation on any portal page.

use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::browser::start_driver;
use crate::launch::{LaunchEnv, launch_env_seeded};

async fn api(base: &str, token: &str, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .request(method, format!("{base}/api/v1{path}"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The first of today's appointments whose patient prefers (or speaks) `language`.
async fn appointment_speaking(env: &LaunchEnv, language: &str) -> String {
    for appointment in env.sandbox.sandbox.appointment_ids() {
        let appt: Value = reqwest::get(format!("{}/Appointment/{appointment}", env.sandbox.fhir_base))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let patient = appt["participant"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["actor"]["reference"].as_str())
            .find(|r| r.starts_with("Patient/"))
            .unwrap()
            .to_owned();
        let person: Value =
            reqwest::get(format!("{}/{patient}", env.sandbox.fhir_base)).await.unwrap().json().await.unwrap();
        let languages: Vec<String> = person["communication"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c.pointer("/language/coding/0/code").and_then(Value::as_str).map(str::to_owned))
            .collect();
        let speaks = |l: &str| languages.iter().any(|x| x == l || x.starts_with(&format!("{l}-")));
        if (language == "es" && speaks("es")) || (language == "en" && !speaks("es")) {
            return appointment;
        }
    }
    panic!("no appointment today with a patient speaking {language}");
}

/// A visit on `appointment` through to a signed care plan (hypertension, a lab order, a
/// follow-up in 2 weeks); its id.
async fn signed_visit(env: &LaunchEnv, platform: &str, clinician: &str, appointment: &str) -> String {
    let post = reqwest::Method::POST;
    let (status, visit) = api(&env.base, platform, post.clone(), "/visits", json!({"appointment": appointment})).await;
    assert_eq!(status, 201, "{visit}");
    let id = visit["id"].as_str().unwrap().to_owned();
    let practitioner = visit["practitioner"].clone();
    for (path, body) in [
        ("transitions", json!({"to": "arrived"})),
        ("consents", json!({"category": "telehealth", "decision": "permit"})),
        ("transitions", json!({"to": "in-progress"})),
        (
            "notes",
            json!({"title": "Visit note", "text": "Blood pressure is above goal. Follow up in 2 weeks.",
                         "author": practitioner, "signedAt": "2026-11-26T09:00:00Z"}),
        ),
        ("diagnoses", json!({"recorder": practitioner, "diagnoses": [{"code": "I10"}]})),
        (
            "orders",
            json!({"requester": practitioner, "orders": [{"kind": "lab", "code": "2160-0", "display": "Creatinine"}]}),
        ),
    ] {
        let (status, reply) = api(&env.base, platform, post.clone(), &format!("/visits/{id}/{path}"), body).await;
        assert_eq!(status, 201, "{path}: {reply}");
    }
    let (status, draft) =
        api(&env.base, clinician, post.clone(), &format!("/visits/{id}/care-plan/draft"), Value::Null).await;
    assert_eq!(status, 201, "{draft}");
    let sign = json!({"draftId": draft["id"], "author": practitioner});
    let (status, signed) = api(&env.base, clinician, post, &format!("/visits/{id}/care-plan/sign"), sign).await;
    assert_eq!(status, 201, "{signed}");
    id
}

async fn issue_link(env: &LaunchEnv, token: &str, visit: &str) -> (String, String) {
    let (status, link) =
        api(&env.base, token, reqwest::Method::POST, &format!("/visits/{visit}/portal-links"), json!({})).await;
    assert_eq!(status, 201, "{link}");
    (link["id"].as_str().unwrap().to_owned(), link["url"].as_str().unwrap().to_owned())
}

/// axe-core's serious and critical WCAG 2.1 A/AA violations on the page shown.
async fn axe_violations(browser: &Client) -> Vec<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests-support/axe/node_modules/axe-core/axe.min.js");
    let source = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("axe-core is missing: npm ci --prefix tests-support/axe ({})", path.display()));
    browser.execute(&source, vec![]).await.unwrap();
    let found = browser
        .execute_async(
            "const done = arguments[arguments.length - 1];
             axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})
                .then(r => done({passes: r.passes.length, serious: r.violations
                                 .filter(v => v.impact === 'serious' || v.impact === 'critical')
                                 .map(v => v.id + ' (' + v.impact + '): ' + v.nodes.map(n => n.target.join(' ')).join(', '))}))
                .catch(e => done({passes: 0, serious: ['axe failed: ' + e]}));",
            vec![],
        )
        .await
        .unwrap();
    // axe ran its rules (colour contrast, names, landmarks, language…), not nothing.
    assert!(found["passes"].as_u64().unwrap_or(0) >= 5, "axe-core ran no checks: {found}");
    serde_json::from_value(found["serious"].clone()).unwrap()
}

pub(crate) async fn assert_accessible(browser: &Client, page: &str) {
    let violations = axe_violations(browser).await;
    assert!(violations.is_empty(), "axe-core on {page}: {violations:#?}");
}

async fn text_of(browser: &Client, css: &str) -> String {
    browser.wait().at_most(Duration::from_secs(10)).for_element(Locator::Css(css)).await.unwrap().text().await.unwrap()
}

#[tokio::test]
async fn a_patient_opens_the_portal_link_reads_the_summary_and_marks_a_task_done() {
    let Some((_driver, webdriver)) = start_driver().await else { return };
    // Synthea's patients: some of them speak Spanish.
    let env =
        launch_env_seeded(false, telechart_sandbox::Personality::Generic, "generic", Some(crate::synthea_dir())).await;
    let (_, platform) = env.store.create_api_token("default", "platform", "platform", 0).await.unwrap();
    let (_, clinician) = env.store.create_api_token("default", "dr okafor", "clinician", 0).await.unwrap();
    let (platform, clinician) = (platform.expose().to_owned(), clinician.expose().to_owned());
    let english = signed_visit(&env, &platform, &clinician, &appointment_speaking(&env, "en").await).await;
    let spanish = signed_visit(&env, &platform, &clinician, &appointment_speaking(&env, "es").await).await;

    let profile = tempfile::tempdir().unwrap();
    let capabilities = json!({"goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": [
        "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--window-size=390,844",
        format!("--user-data-dir={}", profile.path().display())]}});
    let Value::Object(capabilities) = capabilities else { unreachable!() };
    let browser = ClientBuilder::rustls().unwrap().capabilities(capabilities).connect(&webdriver).await.unwrap();

    // English: open → the summary → mark the first task done → the care team sees it.
    let (_, url) = issue_link(&env, &platform, &english).await;
    browser.goto(&url).await.unwrap();
    assert_eq!(text_of(&browser, "h1").await, "Your after-visit summary");
    assert_eq!(browser.find(Locator::Css("html")).await.unwrap().attr("lang").await.unwrap().as_deref(), Some("en"));
    assert!(text_of(&browser, "#tasks-heading").await.contains("to-do"));
    assert_accessible(&browser, "the portal (English)").await;
    browser.find(Locator::Css("button.mark-done")).await.unwrap().click().await.unwrap();
    assert!(text_of(&browser, "p[role=status]").await.contains("Saved"));
    assert!(text_of(&browser, ".task-done").await.contains("Done"));
    assert_accessible(&browser, "the portal after marking a task").await;
    let (_, tasks) =
        api(&env.base, &clinician, reqwest::Method::GET, &format!("/visits/{english}/tasks"), Value::Null).await;
    let done: Vec<&Value> = tasks.as_array().unwrap().iter().filter(|t| !t["doneAt"].is_null()).collect();
    assert_eq!(done.len(), 1, "{tasks}");
    assert_eq!(done[0]["doneBy"], "patient");
    // The summary as PDF, in the session (the link on the page).
    let pdf_href =
        browser.find(Locator::Css("a[href='/portal/summary.pdf']")).await.unwrap().attr("href").await.unwrap();
    assert_eq!(pdf_href.as_deref(), Some("/portal/summary.pdf"));

    // The same link again: spent.
    browser.goto(&url).await.unwrap();
    assert!(text_of(&browser, "#portal-message").await.contains("can no longer be used"));
    assert_accessible(&browser, "the refusal page").await;

    // Spanish, for the Spanish-speaking patient.
    let (spanish_link, url) = issue_link(&env, &platform, &spanish).await;
    browser.goto(&url).await.unwrap();
    assert_eq!(text_of(&browser, "h1").await, "Su resumen de la visita");
    assert_eq!(browser.find(Locator::Css("html")).await.unwrap().attr("lang").await.unwrap().as_deref(), Some("es"));
    assert!(text_of(&browser, "#tasks-heading").await.contains("Sus tareas"));
    assert_accessible(&browser, "the portal (Spanish)").await;
    // Revoked while open: the session ends with it.
    let revoke = format!("/visits/{spanish}/portal-links/{spanish_link}/revoke");
    let (status, revoked) = api(&env.base, &platform, reqwest::Method::POST, &revoke, Value::Null).await;
    assert_eq!((status, revoked["state"].as_str()), (200, Some("revoked")), "{revoked}");
    browser.goto(&format!("{}/portal", env.base)).await.unwrap();
    assert!(
        text_of(&browser, "#portal-message").await.contains("Abra un enlace nuevo")
            || text_of(&browser, "#portal-message").await.contains("open a new link")
    );
    // Revoked before it was opened: refused.
    let (unopened, url) = issue_link(&env, &platform, &spanish).await;
    api(
        &env.base,
        &platform,
        reqwest::Method::POST,
        &format!("/visits/{spanish}/portal-links/{unopened}/revoke"),
        Value::Null,
    )
    .await;
    browser.goto(&url).await.unwrap();
    assert!(text_of(&browser, "#portal-message").await.contains("can no longer be used"));
    // Expired: a link whose time ran out.
    let now = telechart_store::Clock::system().now_ms();
    let expired = telechart_store::PortalLink {
        tenant_id: "default".into(),
        id: "expired-link".into(),
        visit_id: english.clone(),
        language: "en".into(),
        created_by: "test".into(),
        created_at: now - 7_200_000,
        expires_at: now - 3_600_000,
        spent_at: None,
        session_expires_at: None,
        revoked_at: None,
        revoked_by: None,
    };
    let entry = telechart_store::AuditEntry {
        tenant_id: "default".into(),
        actor: "test".into(),
        action: "portal.link.issue".into(),
        entity_type: "visit".into(),
        entity_id: english.clone(),
        ..Default::default()
    };
    env.store.create_portal_link(&expired, "expired-token-0123456789", &[], &entry).await.unwrap();
    browser.goto(&format!("{}/portal/open/expired-token-0123456789", env.base)).await.unwrap();
    assert!(text_of(&browser, "#portal-message").await.contains("can no longer be used"));
    // An unknown token.
    browser.goto(&format!("{}/portal/open/no-such-token", env.base)).await.unwrap();
    assert!(text_of(&browser, "#portal-message").await.contains("could not find"));
    assert_accessible(&browser, "the unknown-link page").await;

    // The care team's views of the portal are audited, and so is every patient action.
    let mut actions: Vec<String> = Vec::new();
    for visit in [&english, &spanish] {
        actions.extend(env.store.audit_for_visit("default", visit).await.unwrap().into_iter().map(|r| r.action));
    }
    for action in ["portal.link.issue", "portal.open", "portal.view", "portal.task.done", "portal.link.revoke"] {
        assert!(actions.iter().any(|a| a == action), "{action} audited: {actions:?}");
    }
    browser.close().await.unwrap();
    env.server.shutdown().await;
    env.sandbox.shutdown().await;
}
