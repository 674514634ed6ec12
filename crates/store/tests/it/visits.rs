use telechart_store::{Phi, StoreError};

use crate::*;

#[tokio::test]
async fn one_visit_per_appointment() {
    on_each_engine(|store| async move {
        seed_connection(&store).await;
        open_visit(&store, "v1").await;
        let again = telechart_store::NewVisit {
            tenant_id: TENANT.into(),
            id: "v2".into(),
            connection_id: "ehr".into(),
            appointment_id: "appt-v1".into(),
            patient: Phi::new("Patient/p1"),
            practitioner: None,
            state: "booked".into(),
            visit_type: None,
            lane: telechart_store::LANE_CLINICAL,
        };
        let err = store.create_visit(&again, &audit("visit.open", "v2"), 1).await.unwrap_err();
        assert!(matches!(&err, StoreError::Conflict(m) if m.contains("already has visit v1")), "{err}");
        assert!(store.visit(TENANT, "v2").await.unwrap().is_none());
        let v1 = store.visit(TENANT, "v1").await.unwrap().unwrap();
        assert_eq!(v1.patient, Phi::new("Patient/p1"));
        assert_eq!(v1.version, 1);
        // Another tenant sees nothing.
        assert!(store.visit("other", "v1").await.unwrap().is_none());
    })
    .await;
}

#[tokio::test]
async fn an_event_writes_artifacts_deliveries_and_audit_in_one_transaction() {
    on_each_engine(|store| async move {
        seed_connection(&store).await;
        open_visit(&store, "v1").await;
        record(&store, "v1", 1, &[artifact("a1", "Encounter"), artifact("a2", "Observation")]).await;
        let visit = store.visit(TENANT, "v1").await.unwrap().unwrap();
        assert_eq!((visit.state.as_str(), visit.version, visit.artifact_count), ("arrived", 2, 2));
        let deliveries = store.deliveries_for_visit(TENANT, "v1").await.unwrap();
        let summary: Vec<_> = deliveries.iter().map(|d| (d.seq, d.resource_type.as_str(), d.status.as_str())).collect();
        assert_eq!(summary, [(1, "Encounter", "pending"), (2, "Observation", "pending")]);
        let actions: Vec<_> =
            store.audit_for_visit(TENANT, "v1").await.unwrap().into_iter().map(|a| a.action).collect();
        assert_eq!(actions, ["visit.open", "visit.event"]);

        // A stale version writes nothing at all: no artifact, no delivery, no audit, same version.
        let err = store
            .record_event(
                TENANT,
                "v1",
                1,
                "finished",
                &[artifact("a3", "Observation")],
                &["ehr".to_owned()],
                &[],
                &audit("visit.event", "v1"),
                3,
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err}");
        assert_eq!(store.artifacts(TENANT, "v1").await.unwrap().len(), 2);
        assert_eq!(store.deliveries_for_visit(TENANT, "v1").await.unwrap().len(), 2);
        assert_eq!(store.audit_for_visit(TENANT, "v1").await.unwrap().len(), 2);
        assert_eq!(store.visit(TENANT, "v1").await.unwrap().unwrap().state, "arrived");

        // A failure half-way (duplicate artifact id) rolls the whole event back.
        let err = store
            .record_event(
                TENANT,
                "v1",
                2,
                "finished",
                &[artifact("a4", "Observation"), artifact("a1", "Observation")],
                &["ehr".to_owned()],
                &[],
                &audit("visit.event", "v1"),
                3,
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Database(_)), "{err}");
        assert_eq!(store.artifacts(TENANT, "v1").await.unwrap().len(), 2);
        assert_eq!(store.visit(TENANT, "v1").await.unwrap().unwrap().version, 2);
    })
    .await;
}
