//! The store suite: every test runs on SQLite and on PostgreSQL.
//!
//! PostgreSQL comes from `TELECHART_TEST_POSTGRES_URL` (a fresh database per test is created
//! there). Without it the PostgreSQL half is skipped with a notice, unless
//! `TELECHART_REQUIRE_POSTGRES=1` (CI sets it), in which case its absence fails the suite.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod audit;
mod identity;
mod keys;
mod queue;
mod retention;
mod tokens;
mod visits;
mod webhooks;

use std::future::Future;

use telechart_store::{AuditEntry, ConnectionRow, NewArtifact, NewVisit, Phi, Store};

pub const TENANT: &str = "t1";

/// Runs `test` against a fresh SQLite file and a fresh PostgreSQL database.
pub async fn on_each_engine<F, Fut>(test: F)
where
    F: Fn(Store) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Store::open(&format!("sqlite:{}", dir.path().join("t.db").display()), 4, keys()).await.unwrap();
    test(sqlite.clone()).await;
    sqlite.close().await;
    match fresh_postgres().await {
        Some(pg) => {
            test(pg.clone()).await;
            pg.close().await;
        }
        None => eprintln!("note: TELECHART_TEST_POSTGRES_URL unset; PostgreSQL half skipped"),
    }
}

pub fn keys() -> telechart_store::KeyConfig {
    telechart_store::KeyConfig::new(telechart_store::Kek::generate().unwrap())
}

/// A database URL per engine for tests that reopen the store; the guard keeps SQLite's file.
pub async fn engine_urls() -> Vec<(String, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().unwrap();
    let mut urls = vec![(format!("sqlite:{}", dir.path().join("e.db").display()), Some(dir))];
    if let Some(url) = fresh_postgres_url().await {
        urls.push((url, None));
    }
    urls
}

pub async fn fresh_postgres_url() -> Option<String> {
    let Ok(admin_url) = std::env::var("TELECHART_TEST_POSTGRES_URL") else {
        assert!(
            std::env::var("TELECHART_REQUIRE_POSTGRES").as_deref() != Ok("1"),
            "TELECHART_REQUIRE_POSTGRES=1 but TELECHART_TEST_POSTGRES_URL is unset"
        );
        return None;
    };
    let name = format!("tc_test_{}", uuid::Uuid::new_v4().simple());
    Some(telechart_store::create_postgres_database(&admin_url, &name).await.unwrap())
}

pub async fn fresh_postgres() -> Option<Store> {
    let url = fresh_postgres_url().await?;
    Some(Store::open(&url, 8, keys()).await.unwrap())
}

pub fn audit(action: &str, entity_id: &str) -> AuditEntry {
    AuditEntry {
        tenant_id: TENANT.into(),
        actor: "test".into(),
        action: action.into(),
        entity_type: "visit".into(),
        entity_id: entity_id.into(),
        visit_id: Some(entity_id.into()),
        phi: true,
        detail: String::new(),
        ..AuditEntry::default()
    }
}

pub async fn seed_connection(store: &Store) {
    store
        .upsert_connection(&ConnectionRow {
            tenant_id: TENANT.into(),
            id: "ehr".into(),
            name: "Test EHR".into(),
            profile: "generic".into(),
            base_url: "http://127.0.0.1:1/fhir".into(),
            settings: "{}".into(),
            created_at: 0,
            updated_at: 0,
        })
        .await
        .unwrap();
}

pub async fn open_visit(store: &Store, id: &str) {
    let visit = NewVisit {
        tenant_id: TENANT.into(),
        id: id.into(),
        connection_id: "ehr".into(),
        appointment_id: format!("appt-{id}"),
        patient: Phi::new("Patient/p1"),
        practitioner: Some("Practitioner/d1".into()),
        state: "booked".into(),
        visit_type: None,
        lane: telechart_store::LANE_CLINICAL,
    };
    store.create_visit(&visit, &audit("visit.open", id), 1_000).await.unwrap();
}

pub fn artifact(id: &str, resource_type: &str) -> NewArtifact {
    NewArtifact {
        id: id.into(),
        kind: "vital".into(),
        resource_type: resource_type.into(),
        identifier: id.into(),
        payload: Phi::new(format!("{{\"artifact\":\"{id}\"}}")),
        disclosable: false,
    }
}

/// Records `artifacts` on a visit whose version is `version`, targeting the one test connection.
pub async fn record(store: &Store, visit: &str, version: i64, artifacts: &[NewArtifact]) {
    store
        .record_event(
            TENANT,
            visit,
            version,
            "arrived",
            artifacts,
            &["ehr".to_owned()],
            &[],
            &audit("visit.event", visit),
            2_000,
        )
        .await
        .unwrap();
}
