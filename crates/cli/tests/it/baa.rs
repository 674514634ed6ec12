//! An ended business associate agreement: `telechart baa tasks` opens its return-or-destroy task
//! once; `telechart baa destroy` replaces what Telechart holds for that EHR connection's visits
//! with sealed tombstones (a visit under legal hold kept), withholds what was still to be sent,
//! and closes the task with who and why; a second closing is refused. SQLite and PostgreSQL.

use telechart_store::{AuditEntry, ConnectionRow, Kek, KeyConfig, NewArtifact, NewVisit, PURGED_PAYLOAD, Phi, Store};

const TENANT: &str = "t1";

fn audit(action: &str, visit: &str) -> AuditEntry {
    AuditEntry {
        tenant_id: TENANT.into(),
        actor: "test".into(),
        action: action.into(),
        entity_type: "visit".into(),
        entity_id: visit.into(),
        visit_id: Some(visit.into()),
        phi: true,
        ..AuditEntry::default()
    }
}

async fn database(engine: &str, dir: &std::path::Path) -> Option<String> {
    if engine == "sqlite" {
        return Some(format!("sqlite:{}", dir.join("baa.db").display()));
    }
    let Ok(admin) = std::env::var("TELECHART_TEST_POSTGRES_URL") else {
        assert!(std::env::var("TELECHART_REQUIRE_POSTGRES").as_deref() != Ok("1"), "PostgreSQL required");
        return None;
    };
    let name = format!("tc_baa_{}", uuid::Uuid::new_v4().simple());
    Some(telechart_store::create_postgres_database(&admin, &name).await.unwrap())
}

async fn ended_agreement_is_returned_or_destroyed(engine: &str) {
    let dir = tempfile::tempdir().unwrap();
    let Some(url) = database(engine, dir.path()).await else { return };
    let kek = Kek::generate().unwrap().to_base64();
    let store = Store::open(&url, 2, KeyConfig::new(Kek::from_base64(&kek).unwrap())).await.unwrap();
    for (id, base) in [("ended-ehr", "https://ehr-a.example/fhir/r4"), ("live-ehr", "https://ehr-b.example/fhir")] {
        let row = ConnectionRow {
            tenant_id: TENANT.into(),
            id: id.into(),
            name: id.into(),
            profile: "generic".into(),
            base_url: base.into(),
            settings: "{}".into(),
            created_at: 0,
            updated_at: 0,
        };
        store.upsert_connection(&row).await.unwrap();
    }
    // Two visits on the connection whose agreement ended (one under legal hold), one elsewhere.
    for (visit, connection) in [("v-ended", "ended-ehr"), ("v-held", "ended-ehr"), ("v-live", "live-ehr")] {
        let new = NewVisit {
            tenant_id: TENANT.into(),
            id: visit.into(),
            connection_id: connection.into(),
            appointment_id: format!("appt-{visit}"),
            patient: Phi::new("Patient/p1"),
            practitioner: None,
            state: "booked".into(),
            visit_type: None,
            lane: telechart_store::LANE_CLINICAL,
        };
        store.create_visit(&new, &audit("visit.open", visit), 1_000).await.unwrap();
        let artifact = NewArtifact {
            id: format!("a-{visit}"),
            kind: "vital".into(),
            resource_type: "Observation".into(),
            identifier: format!("a-{visit}"),
            payload: Phi::new(r#"{"heartRate":72}"#),
            disclosable: false,
        };
        store
            .record_event(
                TENANT,
                visit,
                1,
                "arrived",
                &[artifact],
                &[connection.to_owned()],
                &[],
                &audit("visit.event", visit),
                2_000,
            )
            .await
            .unwrap();
    }
    let hold = telechart_store::LegalHold {
        id: "h-1".into(),
        visit_id: Some("v-held".into()),
        patient: None,
        reason: "matter 2026-7".into(),
        placed_by: "cli:counsel".into(),
        placed_at: 3_000,
        released_by: None,
        released_at: None,
    };
    store.place_legal_hold(TENANT, &hold, &audit("legal-hold.place", "v-held")).await.unwrap();

    let config = dir.path().join("telechart.toml");
    std::fs::write(
        &config,
        r#"tenant = "t1"

[[connections]]
id = "ended-ehr"
name = "Ended EHR"
profile = "generic"
base_url = "https://ehr-a.example/fhir/r4"

[[connections]]
id = "live-ehr"
name = "Live EHR"
profile = "generic"
base_url = "https://ehr-b.example/fhir"

[[egress]]
origin = "https://ehr-a.example"
baa = "BAA-2024-0007"
counterparty = "Hospital A"
starts = "2024-01-01"
expires = "2026-01-31"

[[egress]]
origin = "https://ehr-b.example"
baa = "BAA-2026-0100"
counterparty = "Hospital B"
starts = "2026-01-01"
expires = "2099-12-31"
"#,
    )
    .unwrap();
    let config_path = config.display().to_string();
    let telechart = |args: &[&str]| {
        crate::run_telechart(dir.path(), &url, &kek, TENANT, &[&["--config", config_path.as_str()], args].concat())
    };

    let (ok, out) = telechart(&["baa", "tasks"]);
    assert!(ok, "{out}");
    assert!(out.contains("1 task(s), 1 open"), "only the ended agreement: {out}");
    assert!(
        out.contains("BAA-2024-0007") && out.contains("Hospital A") && out.contains("connections: ended-ehr"),
        "{out}"
    );
    assert_eq!(telechart(&["baa", "tasks"]).1.matches("BAA-2024-0007").count(), 1, "opened once");

    let (ok, out) = telechart(&["baa", "destroy", "--baa", "BAA-2024-0007", "--origin", "https://ehr-a.example"]);
    assert!(!ok && out.contains("--note"), "a destruction says who authorised it: {out}");
    let note = "privacy officer J. Reyes, ticket PRIV-311";
    let (ok, out) =
        telechart(&["baa", "destroy", "--baa", "BAA-2024-0007", "--origin", "https://ehr-a.example", "--note", note]);
    assert!(ok, "{out}");
    assert!(out.contains("1 payload(s) destroyed") && out.contains("1 visit(s) under legal hold kept"), "{out}");

    let payload = |visit: &str| {
        let store = store.clone();
        let visit = visit.to_owned();
        async move { store.artifacts(TENANT, &visit).await.unwrap().remove(0) }
    };
    let destroyed = payload("v-ended").await;
    assert_eq!((destroyed.kind.as_str(), destroyed.payload.expose()), ("purged", PURGED_PAYLOAD));
    assert_eq!(payload("v-held").await.payload.expose(), r#"{"heartRate":72}"#, "the legal hold wins");
    assert_eq!(payload("v-live").await.payload.expose(), r#"{"heartRate":72}"#, "another party's data is untouched");
    let deliveries = store.deliveries_for_visit(TENANT, "v-ended").await.unwrap();
    assert_eq!(deliveries[0].status, "withheld", "nothing is left to send there");

    let (_, out) = telechart(&["baa", "tasks"]);
    assert!(out.contains("0 open") && out.contains("destroyed") && out.contains(note), "{out}");
    let (ok, out) = telechart(&[
        "baa",
        "returned",
        "--baa",
        "BAA-2024-0007",
        "--origin",
        "https://ehr-a.example",
        "--note",
        "again",
    ]);
    assert!(!ok && out.contains("closed already"), "{out}");
    let tasks = store.baa_tasks(TENANT).await.unwrap();
    assert_eq!((tasks.len(), tasks[0].status.as_str()), (1, "destroyed"));
    assert!(tasks[0].closed_by.as_deref().unwrap().starts_with("cli:"));

    // Offboarding the tenant: crypto-shredding waits for the legal hold, then leaves nothing
    // readable.
    let shred = ["keys", "shred", "--tenant", TENANT, "--reason", "contract ended, ticket PRIV-400"];
    let (ok, out) = telechart(&[&shred[..], &["--confirm", "t2"]].concat());
    assert!(!ok && out.contains("--confirm"), "{out}");
    let (ok, out) = telechart(&[&shred[..], &["--confirm", TENANT]].concat());
    assert!(!ok && out.contains("legal hold"), "{out}");
    let (ok, out) = telechart(&["hold", "release", "h-1", "--tenant", TENANT]);
    assert!(ok, "{out}");
    let (ok, out) = telechart(&[&shred[..], &["--confirm", TENANT]].concat());
    assert!(ok && out.contains("1 data key(s) destroyed"), "{out}");
    store.close().await;
    let reopened = Store::open(&url, 2, KeyConfig::new(Kek::from_base64(&kek).unwrap())).await.unwrap();
    let err = reopened.visit(TENANT, "v-live").await.unwrap_err();
    assert!(err.to_string().contains("crypto-shredded"), "{err}");
    reopened.close().await;
}

#[tokio::test]
async fn an_ended_agreement_is_destroyed_on_sqlite() {
    ended_agreement_is_returned_or_destroyed("sqlite").await;
}

#[tokio::test]
async fn an_ended_agreement_is_destroyed_on_postgres() {
    ended_agreement_is_returned_or_destroyed("postgres").await;
}
