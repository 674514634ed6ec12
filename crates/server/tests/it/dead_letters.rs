//! The dead letters in the workspace: listed with their reason; a monitor sees them, an
//! integration admin retries one (it is delivered) and discards another with a reason (it stops
//! holding its visit back); a visit's later deliveries then go on. Both engines.

use serde_json::json;

use crate::*;

async fn page(env: &TestEnv, token: &str) -> (u16, String) {
    let url = format!("{}/workspace/dead-letters", env.server.base_url);
    let response = reqwest::Client::new().get(url).bearer_auth(token).send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

async fn form(env: &TestEnv, token: &str, path: &str, fields: &[(&str, &str)]) -> u16 {
    let no_redirects = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    no_redirects
        .post(format!("{}{path}", env.server.base_url))
        .bearer_auth(token)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(fields).unwrap())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Delivers what can be, until only dead letters (and what they hold back) are left.
async fn drain_to_dead_letters(env: &TestEnv) {
    let worker = env.worker("w", telechart_sync::FaultPlan::default());
    for _ in 0..200 {
        if !worker.run_once().await.unwrap().is_empty() {
            continue;
        }
        let Some(next) = env.store.next_due_at(TENANT).await.unwrap() else { return };
        env.clock.advance(std::time::Duration::from_millis((next - env.clock.now_ms()).max(1) as u64));
    }
    panic!("the queue did not settle");
}

#[tokio::test]
async fn dead_letters_are_retried_and_discarded_from_the_workspace() {
    for engine in engines() {
        let env = TestEnv::start(engine).await;
        let (first, second) = (env.full_visit(0).await, env.full_visit(1).await);
        // The EHR refuses the first two Observations outright: two dead letters, each holding
        // its visit back.
        env.sandbox.sandbox.inject(
            serde_json::from_value(json!({"status": 422, "count": 2, "method": "POST", "resourceType": "Observation"}))
                .unwrap(),
        );
        drain_to_dead_letters(&env).await;
        let dead = env.store.dead_letters(TENANT).await.unwrap();
        assert_eq!(dead.len(), 2, "{dead:?}");
        let (retried, discarded) = (&dead[0], &dead[1]);

        // The visit's own page shows where each artifact is, the dead one with its reason.
        let (_, clinician) = env.store.create_api_token(TENANT, "doc", "clinician", 0).await.unwrap();
        let visit_page = format!("{}/workspace/visits/{}", env.server.base_url, retried.visit_id);
        let html = reqwest::Client::new()
            .get(&visit_page)
            .bearer_auth(clinician.expose())
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(html.contains("id=\"delivery-trace\"") && html.contains("class=\"delivery-dead\""), "{html}");
        assert!(html.contains("HTTP 422") && html.contains("dead-letters-link"), "{html}");
        assert!(html.contains("Encounter/") && html.contains("written"), "EHR ids and plans: {html}");

        let (_, monitor) = env.store.create_api_token(TENANT, "desk", "monitor", 0).await.unwrap();
        let (_, admin) = env.store.create_api_token(TENANT, "admin", "integration-admin", 0).await.unwrap();
        assert_eq!(page(&env, clinician.expose()).await.0, 403);
        let (status, html) = page(&env, monitor.expose()).await;
        assert_eq!(status, 200, "{html}");
        assert!(html.contains("2 holding their visit back"), "{html}");
        assert!(html.contains(&format!("id=\"delivery-{}\"", retried.id)) && html.contains("HTTP 422"), "{html}");
        assert!(!html.contains("/retry\""), "a monitor is shown no retry: {html}");
        let retry_path = format!("/workspace/dead-letters/{}/retry", retried.id);
        assert_eq!(form(&env, monitor.expose(), &retry_path, &[]).await, 403);

        let (_, html) = page(&env, admin.expose()).await;
        assert!(html.contains(&retry_path), "{html}");
        assert_eq!(form(&env, admin.expose(), &retry_path, &[]).await, 303);
        assert_eq!(form(&env, admin.expose(), &retry_path, &[]).await, 409, "no longer a dead letter");
        let discard_path = format!("/workspace/dead-letters/{}/discard", discarded.id);
        assert_eq!(form(&env, admin.expose(), &discard_path, &[("reason", "x")]).await, 422);
        assert_eq!(form(&env, admin.expose(), &discard_path, &[("reason", "entered in the EHR by hand")]).await, 303);

        env.drain(&env.worker("w2", telechart_sync::FaultPlan::default())).await;
        let retried_now = env.store.delivery(TENANT, &retried.id).await.unwrap().unwrap();
        assert_eq!(retried_now.status, "done");
        let discarded_now = env.store.delivery(TENANT, &discarded.id).await.unwrap().unwrap();
        assert_eq!(discarded_now.status, "discarded");
        for visit in [&first, &second] {
            let deliveries = env.store.deliveries_for_visit(TENANT, visit).await.unwrap();
            assert!(deliveries.iter().all(|d| d.status == "done" || d.id == discarded.id), "{deliveries:?}");
        }
        let (_, html) = page(&env, admin.expose()).await;
        assert!(
            html.contains("0 holding their visit back") && html.contains("No dead letter holds a visit back."),
            "{html}"
        );
        let mut trail = Vec::new();
        env.store.for_each_audit(TENANT, |row| trail.push(row.action)).await.unwrap();
        for action in ["queue.dead.read", "delivery.retry-dead", "delivery.discard"] {
            assert!(trail.iter().any(|a| a == action), "{action} audited");
        }
        env.stop().await;
    }
}

/// A delivery still failing days after it was queued becomes a dead letter with its age, however
/// few its attempts; what its visit queued after it waits (per-visit order), nothing is lost.
#[tokio::test]
async fn a_delivery_failing_past_its_max_age_is_a_dead_letter() {
    let env = TestEnv::start(Engine::Sqlite).await;
    let visit = env.full_visit(0).await;
    env.sandbox.sandbox.inject(
        serde_json::from_value(json!({"status": 503, "count": 5, "method": "POST", "resourceType": "Observation"}))
            .unwrap(),
    );
    let worker = env.worker("w", telechart_sync::FaultPlan::default());
    let mut retried = false;
    for _ in 0..50 {
        let outcomes = worker.run_once().await.unwrap();
        if outcomes.iter().any(|o| matches!(o, telechart_sync::DeliveryOutcome::Retry { .. })) {
            retried = true;
            break;
        }
    }
    assert!(retried, "the 503 was met");
    env.clock.advance(std::time::Duration::from_secs(73 * 3600));
    drain_to_dead_letters(&env).await;
    let dead = env.store.dead_letters(TENANT).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    let reason = dead[0].last_error.clone().unwrap_or_default();
    assert!(reason.starts_with("gave up after 73 h queued (2 attempts)"), "{reason}");
    let deliveries = env.store.deliveries_for_visit(TENANT, &visit).await.unwrap();
    assert!(deliveries.iter().filter(|d| d.seq > dead[0].seq).all(|d| d.status == "pending"), "{deliveries:?}");
    env.stop().await;
}
