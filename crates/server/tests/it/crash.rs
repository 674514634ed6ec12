//! A worker dies at a named fault point for every delivery of a visit; after its lease expires,
//! another worker completes each delivery exactly once (counted in the sandbox by identifier).

use telechart_sync::{DeliveryOutcome, FaultPlan, FaultPoint};

use crate::*;

async fn crash_every_delivery(engine: Engine, point: FaultPoint) {
    let env = TestEnv::start(engine).await;
    for slot in [0, 1] {
        let visit = env.full_visit(slot).await;
        let mut crashes = 0;
        loop {
            let faults = FaultPlan::default();
            faults.arm(point, 1);
            let crasher = env.worker(&format!("crasher-{slot}-{crashes}"), faults);
            let outcomes = crasher.run_once().await.unwrap();
            if outcomes.is_empty() {
                break;
            }
            assert_eq!(outcomes, [DeliveryOutcome::Crashed(point)], "{engine:?} {point:?}");
            crashes += 1;

            // The dead worker's lease holds: nobody else may take the delivery yet.
            let healer = env.worker("healer", FaultPlan::default());
            assert!(healer.run_once().await.unwrap().is_empty());
            env.clock.advance(LEASE + std::time::Duration::from_secs(1));
            let healed = healer.run_once().await.unwrap();
            match healed.as_slice() {
                [DeliveryOutcome::Done { adopted, .. }] => {
                    // After the EHR committed, the healer finds the write and adopts it; before
                    // the send there is nothing to find and it writes.
                    assert_eq!(*adopted, point == FaultPoint::AfterEhrCommitted, "{healed:?}");
                }
                other => panic!("{engine:?} {point:?}: expected one completed delivery, got {other:?}"),
            }
        }
        let deliveries = env.store.deliveries_for_visit(TENANT, &visit).await.unwrap();
        assert_eq!(crashes, deliveries.len(), "every delivery crashed once");
        assert_eq!(crashes, 13);
        for d in &deliveries {
            assert_eq!((d.status.as_str(), d.attempts), ("done", 2), "{}", d.id);
            let token = format!("{SYSTEM}|{}", d.identifier);
            assert_eq!(env.sandbox.sandbox.count_with_identifier(&d.resource_type, &token), 1, "{}", d.resource_type);
        }
        // Three status changes, each written once: no update was applied twice.
        let encounter_id = env.store.visit(TENANT, &visit).await.unwrap().unwrap().ehr_encounter_id.unwrap();
        let (_, encounter) = env.get(&format!("{}/Encounter/{encounter_id}", env.sandbox.fhir_base)).await;
        let expected_version = if slot == 0 { "3" } else { "4" };
        assert_eq!(encounter["meta"]["versionId"], expected_version, "{encounter}");
        assert_eq!(encounter["status"], "finished");
    }
    env.stop().await;
}

#[tokio::test]
async fn a_worker_killed_after_the_ehr_committed_leaves_no_duplicate() {
    for engine in engines() {
        crash_every_delivery(engine, FaultPoint::AfterEhrCommitted).await;
    }
}

#[tokio::test]
async fn a_worker_killed_before_sending_loses_nothing() {
    for engine in engines() {
        crash_every_delivery(engine, FaultPoint::BeforeSend).await;
    }
}
