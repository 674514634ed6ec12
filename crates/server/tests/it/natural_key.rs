//! Exactly-once effect where the EHR keeps no identifier of ours (most do not): replies lost
//! after the EHR committed (a 500 after commit, several in a row) are reconciled by the write's
//! natural key — patient, code and time, content — never by a blind re-POST. Duplicates are
//! counted by the sandbox's own record of every create it accepted.

use serde_json::json;
use telechart_sandbox::Personality;
use telechart_sync::FaultPlan;

use crate::*;

#[tokio::test]
async fn lost_replies_leave_no_duplicate_where_identifiers_are_not_kept() {
    for (personality, profile) in
        [(Personality::Epic, "epic"), (Personality::Oracle, "oracle"), (Personality::Generic, "generic")]
    {
        let env = TestEnv::start_vendor(Engine::Sqlite, personality, profile).await;
        env.sandbox.sandbox.set_keeps_client_identifiers(false);
        let id = env.full_visit(0).await;
        for (resource_type, count) in [("Observation", 3), ("DocumentReference", 2), ("Condition", 1)] {
            let fault = json!({"status": 500, "count": count, "method": "POST", "resourceType": resource_type, "afterCommit": true});
            env.sandbox.sandbox.inject(serde_json::from_value(fault).unwrap());
        }
        env.drain(&env.worker("w", FaultPlan::default())).await;
        let deliveries = env.store.deliveries_for_visit(TENANT, &id).await.unwrap();
        let mut reconciled = 0;
        for d in deliveries
            .iter()
            .filter(|d| matches!(d.resource_type.as_str(), "Observation" | "DocumentReference" | "Condition"))
        {
            if d.status != "done" {
                continue;
            }
            let token = format!("{SYSTEM}|{}", d.identifier);
            assert_eq!(
                env.sandbox.sandbox.accepted_creates_with_identifier(&d.resource_type, &token),
                1,
                "{profile}: {} {} written {} time(s)",
                d.resource_type,
                d.id,
                env.sandbox.sandbox.accepted_creates_with_identifier(&d.resource_type, &token)
            );
            assert_eq!(env.sandbox.sandbox.count_with_identifier(&d.resource_type, &token), 0, "{profile}: not kept");
            if d.attempts > 1 {
                reconciled += 1;
            }
        }
        assert!(reconciled >= 4, "{profile}: the lost replies were reconciled ({reconciled}): {deliveries:?}");
        env.stop().await;
    }
}
