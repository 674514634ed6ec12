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
