//! An EHR's published request quota: with the connection's `quota` configured below the EHR's
//! limit, a visit is charted without a single 429; without it, the same EHR throttles. (The
//! token bucket is real time, so the sandbox's limit is counted per wall-clock second.)

use serde_json::json;
use telechart_store::ConnectionRow;

use crate::*;

async fn set_quota(env: &TestEnv, quota: serde_json::Value) {
    let row = ConnectionRow {
        tenant_id: TENANT.into(),
        id: "sandbox".into(),
        name: "Sandbox".into(),
        profile: "generic".into(),
        base_url: env.sandbox.fhir_base.clone(),
        settings: json!({"auth": {"tenant": "195900"}, "quota": quota}).to_string(),
        created_at: 0,
        updated_at: 0,
    };
    env.store.upsert_connection(&row).await.unwrap();
}

#[tokio::test]
async fn a_configured_quota_keeps_every_request_under_the_ehrs_limit() {
    let env = TestEnv::start(Engine::Sqlite).await;
    let within = env.full_visit(0).await;
    let unbounded = env.full_visit(1).await;
    // The EHR allows 12 requests a second; Telechart's quota for it is 600 a minute (10/s).
    env.sandbox.sandbox.set_rate_limit(12);
    set_quota(&env, json!({"per_minute": 600, "burst": 2})).await;
    let started = std::time::Instant::now();
    let worker = env.instance_worker("quota").await;
    env.drain(&worker).await;
    let within_deliveries = env.store.deliveries_for_visit(TENANT, &within).await.unwrap();
    assert!(within_deliveries.iter().all(|d| d.status == "done"), "{within_deliveries:?}");
    assert_eq!(env.sandbox.sandbox.throttled(), 0, "no 429 within the quota");
    let unbounded_deliveries = env.store.deliveries_for_visit(TENANT, &unbounded).await.unwrap();
    assert!(unbounded_deliveries.iter().all(|d| d.status == "done"));
    assert!(started.elapsed() >= std::time::Duration::from_secs(2), "the quota paced {:?}", started.elapsed());

    // The same EHR with no quota configured: the first pass meets its limit at once.
    env.full_visit(2).await;
    env.sandbox.sandbox.set_rate_limit(3);
    set_quota(&env, serde_json::Value::Null).await;
    let worker = env.instance_worker("unbounded").await;
    worker.run_once().await.unwrap();
    assert!(env.sandbox.sandbox.throttled() > 0, "without a quota the EHR's limit is met");
    env.stop().await;
}

/// An EHR that publishes no limit (Epic-like, Oracle-like) but enforces one: its 429s cut the
/// requests in flight (AIMD) and pause the connection for their Retry-After, and every visit is
/// still charted. Each 429 the EHR sent is one the pacing saw.
#[tokio::test]
async fn without_a_published_limit_429s_teach_the_connection_to_slow_down() {
    let env = TestEnv::start(Engine::Sqlite).await;
    let visits = [env.full_visit(0).await, env.full_visit(1).await, env.full_visit(2).await];
    env.sandbox.sandbox.set_rate_limit(6);
    let worker = env.worker("aimd", telechart_sync::FaultPlan::default());
    env.drain(&worker).await;
    for visit in &visits {
        let deliveries = env.store.deliveries_for_visit(TENANT, visit).await.unwrap();
        assert!(deliveries.iter().all(|d| d.status == "done"), "{deliveries:?}");
    }
    let client = env.connections().client(TENANT, "sandbox").await.unwrap();
    let throttled = env.sandbox.sandbox.throttled();
    assert!(throttled > 0, "the EHR's limit was met");
    assert_eq!(client.pacing().throttles(), throttled, "every 429 reached the pacing");
    assert!(
        client.pacing().limit() < telechart_ehr::DEFAULT_MAX_IN_FLIGHT as f64,
        "in flight was cut: {}",
        client.pacing().limit()
    );
    env.stop().await;
}
