//! E-consent end to end over HTTP: a compliance officer publishes versioned texts (English and
//! Spanish); the care team makes a single-use link; the patient, with no account, reads the text
//! in their language and signs; the signed form (citing the text's version and SHA-256) and the
//! Consent reach the EHR as valid R4, the call may start, and the link cannot be used again.
//! Declining, revoking and expiry each behave as a patient and an auditor would expect.

use std::time::Duration;

use serde_json::{Value, json};
use telechart_sync::FaultPlan;

use crate::*;

const SPANISH_BODY: &str =
    "Acepto recibir atención médica por video.\n\nPuedo retirar mi consentimiento en cualquier momento.";

async fn as_role(env: &TestEnv, role: &str) -> reqwest::Client {
    let (_, token) = env.store.create_api_token(TENANT, role, role, 0).await.unwrap();
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {}", token.expose()).parse().unwrap());
    reqwest::Client::builder().default_headers(headers).build().unwrap()
}

async fn send(client: &reqwest::Client, url: &str, body: Value) -> (u16, Value) {
    let response = client.post(url).json(&body).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Posts the signing form as a browser would (no credentials) and returns status and page.
async fn sign(url: &str, fields: &[(&str, &str)]) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(fields).unwrap())
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn arrived_visit(env: &TestEnv, n: usize) -> String {
    let (status, visit) = env.post("/visits", json!({"appointment": env.appointment(n)})).await;
    assert_eq!(status, 201, "{visit}");
    let id = visit["id"].as_str().unwrap().to_owned();
    let (status, moved) = env.post(&format!("/visits/{id}/transitions"), json!({"to": "arrived"})).await;
    assert_eq!(status, 201, "{moved}");
    id
}

async fn publish_texts(env: &TestEnv) -> reqwest::Client {
    let officer = as_role(env, "compliance-officer").await;
    let texts = format!("{}/consent-texts", env.api);
    let english = json!({"category": "telehealth", "version": "2026.1", "language": "en",
        "title": "Consent to telehealth care",
        "body": "I agree to receive care by video.\n\nI may withdraw this consent at any time."});
    let (status, published) = send(&officer, &texts, english.clone()).await;
    assert_eq!(status, 201, "{published}");
    assert_eq!(published["sha256"].as_str().unwrap().len(), 64);
    // The same words again: accepted, nothing new. Other words under that version: refused.
    assert_eq!(send(&officer, &texts, english.clone()).await.0, 200);
    let mut rewritten = english.clone();
    rewritten["body"] = json!("I agree to anything.");
    let (status, outcome) = send(&officer, &texts, rewritten).await;
    assert_eq!(status, 409, "{outcome}");
    assert!(outcome["issue"][0]["diagnostics"].as_str().unwrap().contains("publish a new version"));
    let spanish = json!({"category": "telehealth", "version": "2026.1", "language": "es",
        "title": "Consentimiento para atención por telesalud", "body": SPANISH_BODY});
    assert_eq!(send(&officer, &texts, spanish).await.0, 201);
    // Bad input names its field; a platform may not publish what patients sign.
    let (status, outcome) = send(
        &officer,
        &texts,
        json!({"category": "telehealth", "version": "v 1",
        "language": "en", "title": "T", "body": "B"}),
    )
    .await;
    assert_eq!((status, outcome["issue"][0]["expression"][0].as_str()), (422, Some("version")), "{outcome}");
    let (status, _) = env.post("/consent-texts", english).await;
    assert_eq!(status, 403);
    let (status, listed) = env.get(&format!("{texts}?category=telehealth")).await;
    assert_eq!((status, listed.as_array().map(Vec::len)), (200, Some(2)), "{listed}");
    officer
}

#[tokio::test]
async fn a_patient_signs_through_a_single_use_link_and_the_ehr_gets_form_and_consent() {
    for engine in engines() {
        let env = TestEnv::start(engine).await;
        let id = arrived_visit(&env, 0).await;

        // No text published yet: the link cannot be made, and the answer says what to do.
        let links = format!("/visits/{id}/consent-links");
        let (status, outcome) = env.post(&links, json!({"category": "telehealth"})).await;
        assert_eq!(status, 422, "{outcome}");
        assert!(outcome["issue"][0]["diagnostics"].as_str().unwrap().contains("/api/v1/consent-texts"));
        publish_texts(&env).await;

        let (status, link) = env.post(&links, json!({"category": "telehealth", "language": "es"})).await;
        assert_eq!(status, 201, "{link}");
        assert_eq!((link["state"].as_str(), link["textVersion"].as_str()), (Some("open"), Some("2026.1")));
        let url = format!("{}{}", env.server.base_url, link["url"].as_str().unwrap());
        let token = url.rsplit('/').next().unwrap().to_owned();
        assert!(token.starts_with("tcl_") && token.len() > 40, "{token}");

        // The patient reads it in Spanish, with no credentials.
        let page = reqwest::get(&url).await.unwrap();
        assert_eq!(page.status(), 200);
        let html = page.text().await.unwrap();
        assert!(html.contains("lang=\"es\"") && html.contains("Acepto recibir atención médica por video."), "{html}");
        assert!(html.contains("2026.1"));

        // Without a name or the "I have read" box: asked again, nothing recorded, link still open.
        let (status, page) = sign(&url, &[("decision", "permit"), ("name", "")]).await;
        assert_eq!(status, 422, "{page}");
        assert!(page.contains("Escriba su nombre completo"));
        let (_, listed) = env.get(&format!("{}{links}", env.api)).await;
        assert_eq!(listed[0]["state"], "open", "{listed}");
        assert!(listed[0].get("url").is_none(), "the URL is shown once: {listed}");

        let (status, page) =
            sign(&url, &[("name", "María José García"), ("read", "yes"), ("decision", "permit")]).await;
        assert_eq!(status, 200, "{page}");
        assert!(page.contains("Gracias"), "{page}");

        // Single use: the same link again is gone, by GET and by POST.
        assert_eq!(reqwest::get(&url).await.unwrap().status(), 410);
        let (status, _) = sign(&url, &[("name", "Someone Else"), ("read", "yes"), ("decision", "deny")]).await;
        assert_eq!(status, 410);
        let (_, listed) = env.get(&format!("{}{links}", env.api)).await;
        assert_eq!(listed[0]["state"], "used");

        // The Consent the gate reads cites the text version; the call may start.
        let (_, consents) = env.get(&format!("{}/visits/{id}/consents", env.api)).await;
        let consents = consents.as_array().unwrap();
        assert_eq!(consents.len(), 1, "{consents:?}");
        assert_eq!(
            (consents[0]["category"].as_str(), consents[0]["status"].as_str()),
            (Some("telehealth"), Some("active"))
        );
        assert!(consents[0]["recordedBy"].as_str().unwrap().starts_with("patient-link:"));
        let (status, moved) = env.post(&format!("/visits/{id}/transitions"), json!({"to": "in-progress"})).await;
        assert_eq!(status, 201, "{moved}");

        // Both reach the EHR: the signed form as a DocumentReference with the exact words read,
        // their version and digest, and the signature.
        env.drain(&env.worker("w", FaultPlan::default())).await;
        let (_, trace) = env.get(&format!("{}/visits/{id}/trace", env.api)).await;
        let trace = trace.as_array().unwrap();
        let form = trace.iter().find(|t| t["resourceType"] == "DocumentReference").expect("the signed form");
        assert_eq!(form["status"], "done", "{form}");
        let consent = trace.iter().find(|t| t["resourceType"] == "Consent").expect("the Consent");
        assert_eq!(consent["status"], "done", "{consent}");
        let held = |rtype: &str, artifact: &str| {
            let url = format!("{}/{rtype}?identifier={SYSTEM}|{artifact}", env.sandbox.fhir_base);
            async move {
                let bundle: Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
                bundle["entry"][0]["resource"].clone()
            }
        };
        let document = held("DocumentReference", form["identifier"].as_str().unwrap()).await;
        assert_eq!(document["resourceType"], "DocumentReference", "{document}");
        let data = document["content"][0]["attachment"]["data"].as_str().unwrap();
        let text = String::from_utf8(base64::Engine::decode(&base64::engine::general_purpose::STANDARD, data).unwrap())
            .unwrap();
        let (_, texts) = env.get(&format!("{}/consent-texts?category=telehealth", env.api)).await;
        let spanish = texts.as_array().unwrap().iter().find(|t| t["language"] == "es").unwrap();
        assert!(text.contains(SPANISH_BODY), "{text}");
        assert!(text.contains(spanish["sha256"].as_str().unwrap()) && text.contains("version 2026.1"), "{text}");
        assert!(text.contains("Signed electronically by: María José García") && text.contains("Decision: agreed"));
        assert!(
            document["context"]["encounter"][0]["reference"].as_str().is_some(),
            "tied to the encounter: {document}"
        );
        let ehr_consent = held("Consent", consent["identifier"].as_str().unwrap()).await;
        assert_eq!(ehr_consent["status"], "active", "{ehr_consent}");
        crate::validator::assert_valid(&[document.clone(), ehr_consent]);

        // The audit log has the making, the viewing and the signing; the token is nowhere in it.
        let rows = env.store.audit_for_visit(TENANT, &id).await.unwrap();
        let actions: Vec<&str> = rows.iter().map(|r| r.action.as_str()).collect();
        for expected in ["consent.link.create", "consent.link.view", "consent.record"] {
            assert!(actions.contains(&expected), "{expected} missing from {actions:?}");
        }
        assert!(rows.iter().all(|r| !r.detail.contains(&token) && !r.entity_id.contains(&token)));
        env.stop().await;
    }
}

#[tokio::test]
async fn declined_revoked_and_expired_links_behave_as_said() {
    for engine in engines() {
        let env = TestEnv::start(engine).await;
        publish_texts(&env).await;

        // Declining what was agreed before revokes it: that Consent becomes inactive (version 2,
        // no second Consent), the call cannot start, and the page says the decision is recorded.
        let declining = arrived_visit(&env, 0).await;
        let (status, earlier) = env
            .post(&format!("/visits/{declining}/consents"), json!({"category": "telehealth", "decision": "permit"}))
            .await;
        assert_eq!(status, 201, "{earlier}");
        let (_, link) =
            env.post(&format!("/visits/{declining}/consent-links"), json!({"category": "telehealth"})).await;
        let url = format!("{}{}", env.server.base_url, link["url"].as_str().unwrap());
        let (status, page) = sign(&url, &[("name", "Pat Doe"), ("read", "yes"), ("decision", "deny")]).await;
        assert_eq!(status, 200, "{page}");
        assert!(page.contains("decision not to consent is recorded"), "{page}");
        let (status, outcome) =
            env.post(&format!("/visits/{declining}/transitions"), json!({"to": "in-progress"})).await;
        assert_eq!(status, 403, "{outcome}");
        let (_, versions) = env.get(&format!("{}/visits/{declining}/consents", env.api)).await;
        let versions = versions.as_array().unwrap();
        assert_eq!(versions.len(), 2, "{versions:?}");
        assert!(versions.iter().all(|v| v["id"] == earlier["id"]), "the same consent, withdrawn: {versions:?}");
        assert_eq!((versions[1]["version"].as_i64(), versions[1]["status"].as_str()), (Some(2), Some("inactive")));
        assert!(versions[1]["recordedBy"].as_str().unwrap().starts_with("patient-link:"));
        // Without an earlier permit, declining records a refusal of its own.
        let refusing = arrived_visit(&env, 2).await;
        let (_, link) = env.post(&format!("/visits/{refusing}/consent-links"), json!({"category": "telehealth"})).await;
        let url = format!("{}{}", env.server.base_url, link["url"].as_str().unwrap());
        let (status, _) = sign(&url, &[("name", "Sam Roe"), ("read", "yes"), ("decision", "deny")]).await;
        assert_eq!(status, 200);
        let (_, refused) = env.get(&format!("{}/visits/{refusing}/consents", env.api)).await;
        assert_eq!(refused[0]["resource"]["policyRule"]["coding"][0]["code"], "OPTOUT", "{refused}");

        // A revoked link opens nothing; revoking twice is a conflict.
        let revoking = arrived_visit(&env, 1).await;
        let (_, link) = env.post(&format!("/visits/{revoking}/consent-links"), json!({"category": "telehealth"})).await;
        let url = format!("{}{}", env.server.base_url, link["url"].as_str().unwrap());
        let revoke = format!("/visits/{revoking}/consent-links/{}/revoke", link["id"].as_str().unwrap());
        let (status, revoked) = env.post(&revoke, json!({})).await;
        assert_eq!((status, revoked["state"].as_str()), (200, Some("revoked")), "{revoked}");
        assert_eq!(env.post(&revoke, json!({})).await.0, 409);
        let (status, _) = sign(&url, &[("name", "Pat Doe"), ("read", "yes"), ("decision", "permit")]).await;
        assert_eq!(status, 410);

        // An expired link opens nothing either, and a forged token is simply unknown.
        let (_, link) = env
            .post(
                &format!("/visits/{revoking}/consent-links"),
                json!({"category": "telehealth", "expiresInMinutes": 5}),
            )
            .await;
        let url = format!("{}{}", env.server.base_url, link["url"].as_str().unwrap());
        env.clock.advance(Duration::from_secs(5 * 60 + 1));
        let (status, page) = sign(&url, &[("name", "Pat Doe"), ("read", "yes"), ("decision", "permit")]).await;
        assert_eq!(status, 410, "{page}");
        let forged = format!("{}/consent/tcl_{}", env.server.base_url, "A".repeat(43));
        assert_eq!(reqwest::get(&forged).await.unwrap().status(), 404);
        let (_, consents) = env.get(&format!("{}/visits/{revoking}/consents", env.api)).await;
        assert_eq!(consents.as_array().map(Vec::len), Some(0), "nothing recorded: {consents}");

        // A link for a language with no published text is refused, naming what exists.
        let (status, outcome) = env
            .post(&format!("/visits/{revoking}/consent-links"), json!({"category": "telehealth", "language": "fr"}))
            .await;
        assert_eq!(status, 422, "{outcome}");
        assert!(outcome["issue"][0]["diagnostics"].as_str().unwrap().contains("en, es"), "{outcome}");
        env.stop().await;
    }
}
