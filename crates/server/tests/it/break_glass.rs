//! Break-glass end to end: a clinician without the patient's telehealth consent breaks the glass
//! with a coded reason; the call starts under the grant (its purpose of use on the audit record);
//! the grant expires after its time box; compliance is alerted (the review queue) and reviews it
//! once; the roles that may not do either are refused.

use serde_json::{Value, json};

use crate::*;

async fn call(env: &TestEnv, token: &str, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .request(method, format!("{}{path}", env.api))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn grant_access_expiry_alert_and_review() {
    for engine in engines() {
        let env = TestEnv::start(engine).await;
        let (_, clinician) = env.store.create_api_token(TENANT, "dr okafor", "clinician", 0).await.unwrap();
        let (_, compliance) =
            env.store.create_api_token(TENANT, "privacy office", "compliance-officer", 0).await.unwrap();
        let (clinician, compliance) = (clinician.expose().to_owned(), compliance.expose().to_owned());
        let post = reqwest::Method::POST;
        let open = |n: usize| {
            let env = &env;
            let clinician = clinician.clone();
            async move {
                let (_, v) =
                    call(env, &clinician, reqwest::Method::POST, "/visits", json!({"appointment": env.appointment(n)}))
                        .await;
                let id = v["id"].as_str().unwrap().to_owned();
                call(
                    env,
                    &clinician,
                    reqwest::Method::POST,
                    &format!("/visits/{id}/transitions"),
                    json!({"to": "arrived"}),
                )
                .await;
                id
            }
        };
        let id = open(0).await;
        let start = format!("/visits/{id}/transitions");
        let (status, _) = call(&env, &clinician, post.clone(), &start, json!({"to": "in-progress"})).await;
        assert_eq!(status, 403, "no consent, no grant");

        // Bad reasons are refused; a platform token may not break the glass at all.
        for (body, field) in [
            (json!({"reason": "TREAT", "text": "patient unconscious on camera"}), "reason"),
            (json!({"reason": "ETREAT", "text": "urgent"}), "text"),
        ] {
            let (status, outcome) =
                call(&env, &clinician, post.clone(), &format!("/visits/{id}/break-glass"), body).await;
            assert_eq!((status, outcome["issue"][0]["expression"][0].as_str()), (422, Some(field)), "{outcome}");
        }
        let reason = json!({"reason": "ETREAT", "text": "patient collapsed on camera; cannot consent"});
        let (status, _) = env.post(&format!("/visits/{id}/break-glass"), reason.clone()).await;
        assert_eq!(status, 403, "the platform role may not break the glass");

        let (status, grant) = call(&env, &clinician, post.clone(), &format!("/visits/{id}/break-glass"), reason).await;
        assert_eq!(status, 201, "{grant}");
        let grant_id = grant["id"].as_str().unwrap().to_owned();
        assert_eq!((grant["reason"].as_str(), grant["review"].as_str()), (Some("ETREAT"), Some("pending")));

        // Under the grant the call starts; the audit record carries ETREAT and the override.
        let (status, moved) = call(&env, &clinician, post.clone(), &start, json!({"to": "in-progress"})).await;
        assert_eq!(status, 201, "{moved}");
        let audit = env.store.audit_for_visit(TENANT, &id).await.unwrap();
        let decision = audit.iter().rev().find(|a| a.action == "consent.decision").unwrap();
        assert_eq!((decision.outcome.as_str(), decision.purpose_of_use.as_deref()), ("success", Some("ETREAT")));
        assert!(decision.consent.as_deref().unwrap().contains(&format!("break-glass {grant_id}")));
        assert!(audit.iter().any(|a| a.action == "break-glass.grant" && a.purpose_of_use.as_deref() == Some("ETREAT")));

        // The grant covers this visit's patient only, and only its time box.
        let other = open(1).await;
        let (status, _) =
            call(&env, &clinician, post.clone(), &format!("/visits/{other}/transitions"), json!({"to": "in-progress"}))
                .await;
        assert_eq!(status, 403, "another visit is not covered");
        // A recording consent refusal on the granted visit is also passed under the grant…
        let transcript = json!({"kind": "chat-transcript", "title": "Chat", "contentType": "text/plain", "text": "Nurse: pulse weak"});
        let (status, _) =
            call(&env, &clinician, post.clone(), &format!("/visits/{id}/documents"), transcript.clone()).await;
        assert_eq!(status, 201);
        // …until it expires.
        env.clock.advance(std::time::Duration::from_secs(61 * 60));
        let (status, outcome) =
            call(&env, &clinician, post.clone(), &format!("/visits/{id}/documents"), transcript).await;
        assert_eq!(status, 403, "expired: {outcome}");

        // Compliance: the queue shows the grant, its two uses; the review is recorded once.
        let (status, _) = call(&env, &clinician, reqwest::Method::GET, "/break-glass", Value::Null).await;
        assert_eq!(status, 403, "clinicians do not review themselves");
        let (status, queue) = call(&env, &compliance, reqwest::Method::GET, "/break-glass", Value::Null).await;
        assert_eq!(status, 200, "{queue}");
        let listed = queue.as_array().unwrap().iter().find(|g| g["id"] == grant_id.as_str()).unwrap().clone();
        assert_eq!((listed["uses"].as_i64(), listed["review"].as_str()), (Some(2), Some("pending")), "{listed}");
        let review = format!("/break-glass/{grant_id}/review");
        let (status, outcome) =
            call(&env, &compliance, post.clone(), &review, json!({"verdict": "fine", "note": "x"})).await;
        assert_eq!(status, 422, "{outcome}");
        // The review queue page: the grant waits there with its reason and uses; the officer
        // approves it through the page's form.
        let page_url = format!("{}/workspace/break-glass", env.server.base_url);
        let page = |token: String| {
            let url = page_url.clone();
            async move {
                let response = reqwest::Client::new().get(&url).bearer_auth(token).send().await.unwrap();
                (response.status().as_u16(), response.text().await.unwrap())
            }
        };
        assert_eq!(page(clinician.clone()).await.0, 403);
        let (status, html) = page(compliance.clone()).await;
        assert_eq!(status, 200, "{html}");
        assert!(html.contains(&format!("id=\"grant-{grant_id}\"")), "{html}");
        assert!(html.contains("1 waiting for review") && html.contains("emergency treatment"), "{html}");
        assert!(html.contains(&format!("/workspace/break-glass/{grant_id}/review")), "{html}");
        let no_redirects = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let response = no_redirects
            .post(format!("{}/workspace/break-glass/{grant_id}/review", env.server.base_url))
            .bearer_auth(&compliance)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(
                serde_urlencoded::to_string([("verdict", "approved"), ("note", "emergency confirmed with the ED")])
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 303);
        let (_, html) = page(compliance.clone()).await;
        assert!(
            html.contains("0 waiting for review · 1 reviewed") && html.contains("Nothing waits for review."),
            "{html}"
        );
        assert!(!html.contains(&format!("/workspace/break-glass/{grant_id}/review")), "no second verdict: {html}");
        let (_, queue) = call(&env, &compliance, reqwest::Method::GET, "/break-glass", Value::Null).await;
        let reviewed = queue.as_array().unwrap().iter().find(|g| g["id"] == grant_id.as_str()).unwrap().clone();
        assert_eq!(
            (reviewed["review"].as_str(), reviewed["reviewNote"].as_str()),
            (Some("approved"), Some("emergency confirmed with the ED"))
        );
        let (status, _) =
            call(&env, &compliance, post.clone(), &review, json!({"verdict": "flagged", "note": "again"})).await;
        assert_eq!(status, 409, "reviewed once");
        let (status, _) = call(
            &env,
            &compliance,
            post.clone(),
            "/break-glass/no-such/review",
            json!({"verdict": "flagged", "note": "n"}),
        )
        .await;
        assert_eq!(status, 404);
        env.stop().await;
    }
}

/// The tenant's own choices: a break-glass grant lasts the configured span, and where R4 leaves
/// the absence of a consent open, the tenant's policy decides — labelled as Telechart policy.
#[tokio::test]
async fn the_tenants_consent_policy_and_break_glass_span_apply() {
    let mut compliance = telechart_server::Compliance { break_glass_minutes: 15, ..Default::default() };
    compliance.consent_policy.absent_treatment = telechart_policy::consent::Outcome::Permit;
    let env = TestEnv::start_with_compliance(Engine::Sqlite, compliance).await;
    let (_, clinician) = env.store.create_api_token(TENANT, "dr okafor", "clinician", 0).await.unwrap();
    let clinician = clinician.expose().to_owned();
    let (_, visit) = env.post("/visits", json!({"appointment": env.appointment(0)})).await;
    let id = visit["id"].as_str().unwrap().to_owned();
    env.post(&format!("/visits/{id}/transitions"), json!({"to": "arrived"})).await;
    // No telehealth consent on record, and this tenant's policy permits treatment without one.
    let (status, moved) = env.post(&format!("/visits/{id}/transitions"), json!({"to": "in-progress"})).await;
    assert_eq!(status, 201, "{moved}");
    let audit = env.store.audit_for_visit(TENANT, &id).await.unwrap();
    let decision = audit.iter().find(|a| a.action == "consent.decision").unwrap();
    assert_eq!(decision.outcome.as_str(), "success");
    assert!(decision.consent.as_deref().unwrap().contains("Telechart policy"), "{:?}", decision.consent);

    let body = json!({"reason": "ETREAT", "text": "patient unconscious, history needed now"});
    let (status, grant) =
        call(&env, &clinician, reqwest::Method::POST, &format!("/visits/{id}/break-glass"), body).await;
    assert_eq!(status, 201, "{grant}");
    let at = |k: &str| chrono::DateTime::parse_from_rfc3339(grant[k].as_str().unwrap()).unwrap();
    assert_eq!((at("expiresAt") - at("grantedAt")).num_minutes(), 15);
    env.stop().await;
}
