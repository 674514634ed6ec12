use telechart_store::{PURGED_PAYLOAD, Phi};

use crate::*;

#[tokio::test]
async fn delivered_payloads_are_purged_after_their_time_and_nothing_else() {
    on_each_engine(|store| async move {
        seed_connection(&store).await;
        open_visit(&store, "v1").await;
        let mut delivered = artifact("done-old", "Observation");
        delivered.payload = Phi::new("{\"secret\":\"CANARY-RETENTION\"}");
        record(&store, "v1", 1, &[delivered, artifact("pending-old", "Observation")]).await;
        // Deliver the first; the second stays pending (it is next in the visit's order).
        let claimed = store.claim_due(TENANT, "w", 100_000, 3_000, 1).await.unwrap();
        assert_eq!(claimed[0].row.artifact_id, "done-old");
        store
            .complete_delivery(
                &claimed[0].row,
                "w",
                &telechart_store::Completion { ehr_resource_id: "obs-1", ehr_version: Some("1"), ..Default::default() },
                &audit("delivery.written", "v1"),
                3_001,
            )
            .await
            .unwrap();

        // Too young: nothing goes.
        assert_eq!(store.purge_delivered_payloads(TENANT, 1_000, 10).await.unwrap(), 0);
        assert_eq!(store.purge_delivered_payloads(TENANT, 10_000, 10).await.unwrap(), 1);
        assert_eq!(store.purge_delivered_payloads(TENANT, 10_000, 10).await.unwrap(), 0, "idempotent");
        let artifacts = store.artifacts(TENANT, "v1").await.unwrap();
        assert_eq!(artifacts[0].payload.expose(), PURGED_PAYLOAD);
        assert_eq!(artifacts[0].kind, "purged");
        assert!(artifacts[1].payload.expose().contains("pending-old"), "undelivered PHI is kept");
        // The trail remains: the delivery still says where the record went.
        let trail = store.deliveries_for_visit(TENANT, "v1").await.unwrap();
        assert_eq!(trail[0].ehr_resource_id.as_deref(), Some("obs-1"));
        // Another tenant's purge touches nothing here.
        assert_eq!(store.purge_delivered_payloads("other", i64::MAX, 10).await.unwrap(), 0);
    })
    .await;
}

#[tokio::test]
async fn a_legal_hold_keeps_a_visits_payloads_until_it_is_released() {
    on_each_engine(|store| async move {
        seed_connection(&store).await;
        open_visit(&store, "v1").await;
        record(&store, "v1", 1, &[artifact("held", "Observation")]).await;
        let claimed = store.claim_due(TENANT, "w", 100_000, 3_000, 1).await.unwrap();
        store
            .complete_delivery(
                &claimed[0].row,
                "w",
                &telechart_store::Completion { ehr_resource_id: "obs-1", ehr_version: Some("1"), ..Default::default() },
                &audit("delivery.written", "v1"),
                3_001,
            )
            .await
            .unwrap();
        // A hold on the patient (sealed) holds every visit of theirs.
        let visit = store.visit(TENANT, "v1").await.unwrap().unwrap();
        let hold = telechart_store::LegalHold {
            id: "h-1".into(),
            visit_id: None,
            patient: Some(Phi::new(visit.patient.expose())),
            reason: "matter 2026-114".into(),
            placed_by: "cli:counsel".into(),
            placed_at: 4_000,
            released_by: None,
            released_at: None,
        };
        store.place_legal_hold(TENANT, &hold, &audit("legal-hold.place", "h-1")).await.unwrap();
        assert_eq!(store.held_visits(TENANT).await.unwrap().into_iter().collect::<Vec<_>>(), ["v1"]);
        assert_eq!(store.purge_delivered_payloads(TENANT, 10_000, 10).await.unwrap(), 0, "held");
        let listed = store.legal_holds(TENANT, true).await.unwrap();
        assert_eq!(listed[0].patient.as_ref().map(Phi::expose), Some(visit.patient.expose()));

        store
            .release_legal_hold(TENANT, "h-1", "cli:counsel", &audit("legal-hold.release", "h-1"), 5_000)
            .await
            .unwrap();
        let release = audit("legal-hold.release", "h-1");
        let again = store.release_legal_hold(TENANT, "h-1", "cli:counsel", &release, 5_001).await;
        assert!(matches!(again, Err(telechart_store::StoreError::Conflict(_))), "{again:?}");
        let unknown = store.release_legal_hold(TENANT, "nope", "cli:counsel", &release, 5_001).await;
        assert!(matches!(unknown, Err(telechart_store::StoreError::NotFound { .. })), "{unknown:?}");
        assert!(store.legal_holds(TENANT, true).await.unwrap().is_empty());
        assert_eq!(store.legal_holds(TENANT, false).await.unwrap()[0].released_by.as_deref(), Some("cli:counsel"));
        assert_eq!(store.purge_delivered_payloads(TENANT, 10_000, 10).await.unwrap(), 1, "released: purged");
        // Placing and releasing are audited (the refused second release is not).
        let actions: Vec<String> =
            store.audit_for_visit(TENANT, "h-1").await.unwrap().into_iter().map(|a| a.action).collect();
        assert_eq!(actions, ["legal-hold.place", "legal-hold.release"]);
    })
    .await;
}
