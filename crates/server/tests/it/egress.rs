//! BAA-gated egress: PHI goes only to destinations registered with a business associate
//! agreement (loopback aside). Refused before any byte is sent, on the API and in the worker.

use serde_json::json;
use telechart_store::{ConnectionRow, NewArtifact, NewVisit, Phi};
use telechart_sync::{DeliveryOutcome, FaultPlan};
use telechart_visit::{Artifact, EncounterStatusChange, VisitState};

use crate::*;

#[tokio::test]
async fn phi_never_goes_where_no_baa_covers_it() {
    let env = TestEnv::start(Engine::Sqlite).await;
    env.store
        .upsert_connection(&ConnectionRow {
            tenant_id: TENANT.into(),
            id: "offsite".into(),
            name: "An EHR without a BAA".into(),
            profile: "generic".into(),
            base_url: "https://ehr.unregistered.example/fhir".into(),
            settings: "{}".into(),
            created_at: 0,
            updated_at: 0,
        })
        .await
        .unwrap();
    let (status, body) = env.post("/visits", json!({"appointment": "Appointment/x", "connection": "offsite"})).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("no business associate agreement is registered for https://ehr.unregistered.example")
    );

    // A delivery already queued for such a destination becomes a dead letter with the reason.
    let visit = NewVisit {
        tenant_id: TENANT.into(),
        id: "v-offsite".into(),
        connection_id: "offsite".into(),
        appointment_id: "a1".into(),
        patient: Phi::new("Patient/p1"),
        practitioner: None,
        state: "booked".into(),
        visit_type: None,
        lane: telechart_store::LANE_CLINICAL,
    };
    let entry = telechart_store::AuditEntry {
        tenant_id: TENANT.into(),
        actor: "test".into(),
        action: "test".into(),
        entity_type: "visit".into(),
        entity_id: "v-offsite".into(),
        visit_id: Some("v-offsite".into()),
        phi: true,
        detail: String::new(),
        ..Default::default()
    };
    env.store.create_visit(&visit, &entry, 0).await.unwrap();
    let change = Artifact::EncounterStatus(EncounterStatusChange {
        from: VisitState::Booked,
        to: VisitState::Arrived,
        at: env.clock.now(),
    });
    let artifact = NewArtifact {
        id: "art-offsite".into(),
        kind: "encounter-status".into(),
        resource_type: "Encounter".into(),
        identifier: "v-offsite".into(),
        payload: Phi::new(serde_json::to_string(&change).unwrap()),
        disclosable: false,
    };
    env.store
        .record_event(TENANT, "v-offsite", 1, "arrived", &[artifact], &["offsite".to_owned()], &[], &entry, 0)
        .await
        .unwrap();
    let outcomes = env.drain(&env.worker("w", FaultPlan::default())).await;
    assert!(
        matches!(outcomes.as_slice(), [DeliveryOutcome::Dead { reason }] if reason.contains("no business associate agreement")),
        "{outcomes:?}"
    );
    env.stop().await;
}

/// A BAA covers the days it is in force: the client to that EHR works through its last day and
/// is refused from the next — even one already made and cached.
#[tokio::test]
async fn egress_stops_the_day_after_the_baa_expires() {
    let env = TestEnv::start(Engine::Sqlite).await;
    env.store
        .upsert_connection(&ConnectionRow {
            tenant_id: TENANT.into(),
            id: "partner".into(),
            name: "A partner EHR".into(),
            profile: "generic".into(),
            base_url: "https://ehr.partner.example/fhir".into(),
            settings: "{}".into(),
            created_at: 0,
            updated_at: 0,
        })
        .await
        .unwrap();
    let clock = telechart_store::Clock::manual("2026-12-31T23:00:00Z".parse().unwrap());
    let registry = telechart_policy::EgressRegistry::new(vec![telechart_policy::EgressEntry {
        origin: "https://ehr.partner.example".into(),
        baa: "BAA-7".into(),
        counterparty: Some("Partner Health".into()),
        starts: Some("2026-01-01".parse().unwrap()),
        expires: Some("2026-12-31".parse().unwrap()),
    }]);
    let connections = telechart_sync::Connections::new(env.store.clone(), std::time::Duration::from_secs(5))
        .with_clock(clock.clone())
        .with_egress(registry);
    assert!(connections.client(TENANT, "partner").await.is_ok(), "in force on its last day");
    clock.advance(std::time::Duration::from_secs(2 * 3600));
    let refused = connections.client(TENANT, "partner").await.unwrap_err().to_string();
    assert!(
        refused.contains("BAA-7 expired on 2026-12-31") && refused.contains("PHI may not be sent there"),
        "{refused}"
    );
    env.stop().await;
}
