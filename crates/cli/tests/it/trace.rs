//! `telechart trace VISIT`: each delivery with its attempts in order (a retry, then the write),
//! its plan, the EHR's id and version — what a support desk reads.

use telechart_store::{AuditEntry, Completion, ConnectionRow, Kek, KeyConfig, NewArtifact, NewVisit, Phi, Store};

const TENANT: &str = "t1";

fn audit(action: &str, entity_type: &str, entity: &str, detail: &str) -> AuditEntry {
    AuditEntry {
        tenant_id: TENANT.into(),
        actor: "worker:w".into(),
        action: action.into(),
        entity_type: entity_type.into(),
        entity_id: entity.into(),
        visit_id: Some("v1".into()),
        phi: true,
        detail: detail.into(),
        ..AuditEntry::default()
    }
}

#[tokio::test]
async fn trace_shows_every_attempt_of_every_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("trace.db").display());
    let kek = Kek::generate().unwrap().to_base64();
    let store = Store::open(&url, 2, KeyConfig::new(Kek::from_base64(&kek).unwrap())).await.unwrap();
    let row = ConnectionRow {
        tenant_id: TENANT.into(),
        id: "ehr".into(),
        name: "EHR".into(),
        profile: "generic".into(),
        base_url: "http://127.0.0.1:1/fhir".into(),
        settings: "{}".into(),
        created_at: 0,
        updated_at: 0,
    };
    store.upsert_connection(&row).await.unwrap();
    let visit = NewVisit {
        tenant_id: TENANT.into(),
        id: "v1".into(),
        connection_id: "ehr".into(),
        appointment_id: "appt-1".into(),
        patient: Phi::new("Patient/p1"),
        practitioner: None,
        state: "booked".into(),
        visit_type: None,
        lane: telechart_store::LANE_CLINICAL,
    };
    store.create_visit(&visit, &audit("visit.open", "visit", "v1", ""), 1_000).await.unwrap();
    let artifact = NewArtifact {
        id: "a1".into(),
        kind: "vital".into(),
        resource_type: "Observation".into(),
        identifier: "a1".into(),
        payload: Phi::new("{}"),
        disclosable: false,
    };
    store
        .record_event(
            TENANT,
            "v1",
            1,
            "arrived",
            &[artifact],
            &["ehr".to_owned()],
            &[],
            &audit("visit.event", "visit", "v1", ""),
            2_000,
        )
        .await
        .unwrap();
    let claimed = store.claim_due(TENANT, "w", 40_000, 10_000, 10).await.unwrap();
    let delivery = &claimed[0].row;
    let retry = audit("delivery.retry", "delivery", &delivery.id, "attempt 1 failed; next in 1000 ms: HTTP 503");
    assert!(store.retry_delivery(delivery, "w", "HTTP 503", false, false, 11_000, &retry, 10_001).await.unwrap());
    let claimed = store.claim_due(TENANT, "w", 50_000, 12_000, 10).await.unwrap();
    let written = audit(
        "delivery.written",
        "delivery",
        &delivery.id,
        "wrote Observation/77 version 1 on connection ehr (written)",
    );
    let completion =
        Completion { ehr_resource_id: "77", ehr_version: Some("1"), plan: Some("written"), ..Default::default() };
    assert!(store.complete_delivery(&claimed[0].row, "w", &completion, &written, 12_500).await.unwrap());
    store.close().await;

    let (ok, stdout) = crate::run_telechart(dir.path(), &url, &kek, TENANT, &["trace", "v1"]);
    assert!(ok, "{stdout}");
    assert!(stdout.contains("visit v1 (arrived)") && stdout.contains("1 deliveries, 1 done"), "{stdout}");
    assert!(stdout.contains("written · Observation/77 v1 · artifact a1"), "{stdout}");
    let retry_at = stdout.find("1970-01-01 00:00:10.001Z  retry").expect(&stdout);
    let written_at = stdout.find("1970-01-01 00:00:12.500Z  written").expect(&stdout);
    assert!(retry_at < written_at, "attempts in order: {stdout}");
    assert!(stdout.contains("HTTP 503"), "{stdout}");
    let queue = |args: &[&str]| crate::run_telechart(dir.path(), &url, &kek, TENANT, &[&["queue"], args].concat());
    let (ok, shown) = queue(&["show", "a1:ehr"]);
    assert!(
        ok && shown.contains("status done  attempts 2") && shown.contains("in the EHR Observation/77 v1"),
        "{shown}"
    );
    let (ok, refused) = queue(&["retry", "a1:ehr"]);
    assert!(!ok && refused.contains("is not a dead letter"), "{refused}");
    let (ok, refused) = queue(&["discard", "a1:ehr", "--reason", "entered by hand"]);
    assert!(!ok && refused.contains("is not a dead letter"), "{refused}");
    let (ok, status) = queue(&["status"]);
    assert!(ok && status.contains("done 1") && status.contains("discarded 0"), "{status}");
    let (ok, missing) = crate::run_telechart(dir.path(), &url, &kek, TENANT, &["trace", "nope"]);
    assert!(!ok && missing.contains("no visit nope in tenant t1"), "{missing}");
}
