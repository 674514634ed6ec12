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
