use std::collections::HashSet;

use crate::*;
use telechart_store::{Completion, DeadLetter};

const LEASE: i64 = 30_000;

#[tokio::test]
async fn per_visit_order_only_offers_the_head_of_each_visit() {
    on_each_engine(|store| async move {
        seed_connection(&store).await;
        open_visit(&store, "v1").await;
        open_visit(&store, "v2").await;
        record(
            &store,
            "v1",
            1,
            &[artifact("e1", "Encounter"), artifact("o1", "Observation"), artifact("o2", "Observation")],
        )
        .await;
        record(&store, "v2", 1, &[artifact("e2", "Encounter")]).await;

        let claimed = store.claim_due(TENANT, "w1", 10_000 + LEASE, 10_000, 10).await.unwrap();
        let mut ids: Vec<_> = claimed.iter().map(|c| c.row.artifact_id.clone()).collect();
        ids.sort();
        assert_eq!(ids, ["e1", "e2"]);
        assert!(claimed.iter().all(|c| !c.must_reconcile && c.row.attempts == 1));

        let e1 = claimed.iter().find(|c| c.row.artifact_id == "e1").unwrap();
        assert!(
            store
                .complete_delivery(
                    &e1.row,
                    "w1",
                    &Completion { ehr_resource_id: "enc-1", ehr_version: Some("1"), ..Default::default() },
                    &audit("delivery.done", "v1"),
                    10_001
                )
                .await
                .unwrap()
        );
        assert_eq!(store.visit(TENANT, "v1").await.unwrap().unwrap().ehr_encounter_id.as_deref(), Some("enc-1"));

        let next = store.claim_due(TENANT, "w1", 10_002 + LEASE, 10_002, 10).await.unwrap();
        assert_eq!(next.iter().map(|c| c.row.artifact_id.as_str()).collect::<Vec<_>>(), ["o1"]);
    })
    .await;
}

#[tokio::test]
async fn an_expired_lease_is_claimed_again_and_told_to_reconcile() {
    on_each_engine(|store| async move {
        seed_connection(&store).await;
        open_visit(&store, "v1").await;
        record(&store, "v1", 1, &[artifact("e1", "Encounter")]).await;
        let first = store.claim_due(TENANT, "dead-worker", 10_000 + LEASE, 10_000, 10).await.unwrap();
        assert_eq!(first.len(), 1);

        // Before the lease runs out nobody else gets it.
        assert!(store.claim_due(TENANT, "w2", 20_000 + LEASE, 20_000, 10).await.unwrap().is_empty());
        let again = store.claim_due(TENANT, "w2", 40_000 + LEASE, 40_000, 10).await.unwrap();
        assert_eq!(again.len(), 1);
        assert!(again[0].must_reconcile, "the dead worker may have written: reconcile first");
        assert_eq!(again[0].row.attempts, 2);

        // The dead worker coming back cannot complete what it no longer holds.
        assert!(
            !store
                .complete_delivery(
                    &first[0].row,
                    "dead-worker",
                    &Completion { ehr_resource_id: "x", ehr_version: None, ..Default::default() },
                    &audit("delivery.done", "v1"),
                    40_001
                )
                .await
                .unwrap()
        );
        let rich = telechart_store::AuditEntry {
            patient: Some("Patient/p1".into()),
            purpose_of_use: Some("TREAT".into()),
            source_ip: Some("10.0.0.7".into()),
            session: Some("s-1".into()),
            consent: Some("Consent/c1 permit".into()),
            labels: vec!["R".into(), "PSY".into()],
            detail: "Encounter written".into(),
            ..audit("delivery.done", "v1")
        };
        assert!(
            store
                .complete_delivery(
                    &again[0].row,
                    "w2",
                    &Completion { ehr_resource_id: "enc-1", ehr_version: None, ..Default::default() },
                    &rich,
                    40_002
                )
                .await
                .unwrap()
        );
        let rows = store.deliveries_for_visit(TENANT, "v1").await.unwrap();
        assert_eq!((rows[0].status.as_str(), rows[0].ehr_resource_id.as_deref()), ("done", Some("enc-1")));

        // The audit record rides in the completion's own statement: none for the refused
        // completion, exactly one, every field kept, for the accepted one.
        let done: Vec<_> = store
            .audit_for_visit(TENANT, "v1")
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.action == "delivery.done")
            .collect();
        assert_eq!(done.len(), 1, "{done:?}");
        assert_eq!(done[0].at, 40_002);
        assert_eq!(done[0].record().entry, rich);
    })
    .await;
}

#[tokio::test]
async fn retries_wait_for_their_time_and_remember_ambiguous_outcomes() {
    on_each_engine(|store| async move {
        seed_connection(&store).await;
        open_visit(&store, "v1").await;
        open_visit(&store, "v2").await;
        record(&store, "v1", 1, &[artifact("e1", "Encounter")]).await;
        record(&store, "v2", 1, &[artifact("e2", "Encounter")]).await;
        let claimed = store.claim_due(TENANT, "w1", 10_000 + LEASE, 10_000, 10).await.unwrap();
        for c in &claimed {
            let ambiguous = c.row.artifact_id == "e1";
            assert!(
                store
                    .retry_delivery(
                        &c.row,
                        "w1",
                        "timeout",
                        ambiguous,
                        false,
                        15_000,
                        &audit("delivery.retry", "v1"),
                        10_001
                    )
                    .await
                    .unwrap()
            );
        }
        assert!(store.claim_due(TENANT, "w1", 14_000 + LEASE, 14_000, 10).await.unwrap().is_empty());
        assert_eq!(store.next_due_at(TENANT).await.unwrap(), Some(15_000));
        let mut again = store.claim_due(TENANT, "w1", 15_000 + LEASE, 15_000, 10).await.unwrap();
        again.sort_by(|a, b| a.row.artifact_id.cmp(&b.row.artifact_id));
        assert_eq!(again.iter().map(|c| c.must_reconcile).collect::<Vec<_>>(), [true, false]);
        assert_eq!(again[0].row.last_error.as_deref(), Some("timeout"));
    })
    .await;
}

#[tokio::test]
async fn dead_letters_block_their_visit_until_replayed() {
    on_each_engine(|store| async move {
        seed_connection(&store).await;
        open_visit(&store, "v1").await;
        record(&store, "v1", 1, &[artifact("e1", "Encounter"), artifact("o1", "Observation")]).await;
        let claimed = store.claim_due(TENANT, "w1", 10_000 + LEASE, 10_000, 10).await.unwrap();
        assert!(
            store
                .dead_letter(
                    &claimed[0].row,
                    "w1",
                    &DeadLetter { reason: "422 business rule", blocks_visit: true, plan: Some("written") },
                    &audit("delivery.dead", "v1"),
                    10_001
                )
                .await
                .unwrap()
        );
        assert!(store.claim_due(TENANT, "w1", 20_000 + LEASE, 20_000, 10).await.unwrap().is_empty());
        let counts = store.queue_counts(TENANT).await.unwrap();
        assert_eq!((counts.pending, counts.dead), (1, 1));
        assert_eq!(store.dead_letters(TENANT).await.unwrap()[0].last_error.as_deref(), Some("422 business rule"));

        assert_eq!(store.replay_dead(TENANT, "v1", 30_000).await.unwrap(), 1);
        let replayed = store.claim_due(TENANT, "w1", 30_000 + LEASE, 30_000, 10).await.unwrap();
        assert_eq!(replayed[0].row.artifact_id, "e1");
        assert!(replayed[0].must_reconcile);
    })
    .await;
}

#[tokio::test]
async fn concurrent_claimers_never_share_a_delivery() {
    on_each_engine(|store| async move {
        seed_connection(&store).await;
        for v in 0..60 {
            let id = format!("v{v}");
            open_visit(&store, &id).await;
            record(&store, &id, 1, &[artifact(&format!("e{v}"), "Encounter")]).await;
        }
        let mut tasks = Vec::new();
        for w in 0..4 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let batch = store.claim_due(TENANT, &format!("w{w}"), 10_000 + LEASE, 10_000, 3).await.unwrap();
                    if batch.is_empty() {
                        return mine;
                    }
                    mine.extend(batch.into_iter().map(|c| c.row.id));
                }
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        let unique: HashSet<_> = all.iter().collect();
        assert_eq!((all.len(), unique.len()), (60, 60));
    })
    .await;
}

/// One instance of many holds a leader role: a second is refused while the lease lives, takes
/// over when it runs out, and a clean release hands it on at once.
#[tokio::test]
async fn one_instance_leads_until_its_lease_runs_out() {
    on_each_engine(|store| async move {
        const ROLE: &str = "audit-checkpointer";
        assert!(store.try_lead(ROLE, "a", 1_000, 10_000).await.unwrap());
        assert!(!store.try_lead(ROLE, "b", 5_000, 10_000).await.unwrap(), "a holds it");
        assert!(store.try_lead(ROLE, "a", 9_000, 10_000).await.unwrap(), "a renews");
        assert!(!store.try_lead(ROLE, "b", 18_999, 10_000).await.unwrap(), "renewed to 19 000");
        assert!(store.try_lead(ROLE, "b", 19_000, 10_000).await.unwrap(), "a's lease ran out");
        assert!(!store.try_lead(ROLE, "a", 19_001, 10_000).await.unwrap());
        store.release_lead(ROLE, "a").await.unwrap();
        assert!(!store.try_lead(ROLE, "a", 19_002, 10_000).await.unwrap(), "a cannot release b's lease");
        store.release_lead(ROLE, "b").await.unwrap();
        assert!(store.try_lead(ROLE, "a", 19_003, 10_000).await.unwrap(), "released: free at once");
        // Many racing for a free role: exactly one wins.
        store.release_lead(ROLE, "a").await.unwrap();
        let mut racers = tokio::task::JoinSet::new();
        for i in 0..8 {
            let store = store.clone();
            racers.spawn(async move { store.try_lead(ROLE, &format!("r{i}"), 30_000, 10_000).await.unwrap() });
        }
        let won = racers.join_all().await;
        assert_eq!(won.iter().filter(|w| **w).count(), 1, "{won:?}");
    })
    .await;
}

/// One dead letter retried, another discarded: the retried one is claimable again (and told to
/// reconcile), the discarded one ends with the operator's reason and no longer holds back its
/// visit; each is audited, and neither applies twice.
#[tokio::test]
async fn a_dead_letter_is_retried_or_discarded_once() {
    on_each_engine(|store| async move {
        seed_connection(&store).await;
        open_visit(&store, "v1").await;
        record(&store, "v1", 1, &[artifact("e1", "Encounter"), artifact("o1", "Observation")]).await;
        let kill = |row: telechart_store::DeliveryRow, owner: &'static str, at: i64| {
            let store = store.clone();
            async move {
                let letter = DeadLetter { reason: "422 business rule", blocks_visit: true, plan: Some("written") };
                assert!(store.dead_letter(&row, owner, &letter, &audit("delivery.dead", "v1"), at).await.unwrap());
            }
        };
        let claimed = store.claim_due(TENANT, "w1", 10_000 + LEASE, 10_000, 10).await.unwrap();
        let e1 = claimed[0].row.clone();
        kill(e1.clone(), "w1", 10_001).await;
        assert!(store.claim_due(TENANT, "w1", 11_000 + LEASE, 11_000, 10).await.unwrap().is_empty(), "o1 waits");

        // Retry: claimable again, reconciling first.
        let retried = audit("delivery.retry-dead", "v1");
        assert!(store.retry_dead_delivery(TENANT, &e1.id, &retried, 12_000).await.unwrap());
        assert!(!store.retry_dead_delivery(TENANT, &e1.id, &retried, 12_001).await.unwrap(), "not dead any more");
        let again = store.claim_due(TENANT, "w2", 13_000 + LEASE, 13_000, 10).await.unwrap();
        assert_eq!(again.len(), 1);
        assert!(again[0].must_reconcile);
        kill(again[0].row.clone(), "w2", 13_001).await;

        // Discard: ended with the reason, and o1 goes ahead.
        let discarded = audit("delivery.discard", "v1");
        assert!(
            store
                .discard_dead_delivery(TENANT, &e1.id, "entered in the EHR by hand", &discarded, 14_000)
                .await
                .unwrap()
        );
        assert!(!store.discard_dead_delivery(TENANT, &e1.id, "again", &discarded, 14_001).await.unwrap());
        let row = store.delivery(TENANT, &e1.id).await.unwrap().unwrap();
        assert_eq!((row.status.as_str(), row.last_error.as_deref()), ("discarded", Some("entered in the EHR by hand")));
        let next = store.claim_due(TENANT, "w2", 15_000 + LEASE, 15_000, 10).await.unwrap();
        assert_eq!(next.iter().map(|c| c.row.artifact_id.as_str()).collect::<Vec<_>>(), ["o1"]);
        let counts = store.queue_counts(TENANT).await.unwrap();
        assert_eq!((counts.discarded, counts.dead, counts.in_flight), (1, 0, 1));
        let actions: Vec<String> =
            store.audit_for_visit(TENANT, "v1").await.unwrap().into_iter().map(|r| r.action).collect();
        assert_eq!(actions.iter().filter(|a| *a == "delivery.retry-dead").count(), 1, "{actions:?}");
        assert_eq!(actions.iter().filter(|a| *a == "delivery.discard").count(), 1, "{actions:?}");
    })
    .await;
}

/// Backfill queued first and due earlier still waits for a clinical delivery due now; with no
/// clinical work due, backfill is claimed. A disclosure's deliveries take their visit's lane.
#[tokio::test]
async fn the_clinical_lane_is_claimed_before_any_backfill() {
    on_each_engine(|store| async move {
        seed_connection(&store).await;
        for n in 0..5 {
            let visit = NewVisit {
                tenant_id: TENANT.into(),
                id: format!("history-{n}"),
                connection_id: "ehr".into(),
                appointment_id: format!("appt-history-{n}"),
                patient: Phi::new("Patient/p1"),
                practitioner: None,
                state: "booked".into(),
                visit_type: None,
                lane: telechart_store::LANE_BACKFILL,
            };
            store.create_visit(&visit, &audit("visit.open", &visit.id), 1_000).await.unwrap();
            record(&store, &visit.id, 1, &[artifact(&format!("h{n}"), "Encounter")]).await;
        }
        open_visit(&store, "now").await;
        store
            .record_event(
                TENANT,
                "now",
                1,
                "arrived",
                &[artifact("c1", "Encounter")],
                &["ehr".to_owned()],
                &[],
                &audit("visit.event", "now"),
                5_000,
            )
            .await
            .unwrap();
        let visit = store.visit(TENANT, "history-0").await.unwrap().unwrap();
        assert_eq!(visit.lane, telechart_store::LANE_BACKFILL);

        let first = store.claim_due(TENANT, "w1", 10_000 + LEASE, 10_000, 1).await.unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!((first[0].row.artifact_id.as_str(), first[0].row.lane), ("c1", telechart_store::LANE_CLINICAL));
        let rest = store.claim_due(TENANT, "w1", 10_000 + LEASE, 10_000, 10).await.unwrap();
        assert_eq!(rest.len(), 5);
        assert!(rest.iter().all(|c| c.row.lane == telechart_store::LANE_BACKFILL));
    })
    .await;
}
