//! PHI at rest: ciphertext only, bound to its row, and keys that rotate under load.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use telechart_store::{Db, Kek, KeyConfig, PHI_COLUMNS, Phi, Store, StoreError};

use crate::*;

async fn raw_values(store: &Store, sql: &str) -> Vec<String> {
    match store.db() {
        Db::Sqlite(p) => {
            sqlx::query_as::<_, (String,)>(sqlx::AssertSqlSafe(sql.to_owned())).fetch_all(p).await.unwrap()
        }
        Db::Postgres(p) => {
            sqlx::query_as::<_, (String,)>(sqlx::AssertSqlSafe(sql.to_owned())).fetch_all(p).await.unwrap()
        }
    }
    .into_iter()
    .map(|(v,)| v)
    .collect()
}

async fn execute(store: &Store, sql: String) {
    match store.db() {
        Db::Sqlite(p) => sqlx::query(sqlx::AssertSqlSafe(sql)).execute(p).await.unwrap().rows_affected(),
        Db::Postgres(p) => sqlx::query(sqlx::AssertSqlSafe(sql)).execute(p).await.unwrap().rows_affected(),
    };
}

#[tokio::test]
async fn phi_columns_hold_only_ciphertext() {
    on_each_engine(|store| async move {
        seed_connection(&store).await;
        open_visit(&store, "v1").await;
        let mut a = artifact("a1", "Observation");
        a.payload = Phi::new("CANARY-7731 blood pressure 128/82");
        record(&store, "v1", 1, &[a]).await;
        for (table, column) in PHI_COLUMNS {
            for value in raw_values(&store, &format!("SELECT {column} FROM {table}")).await {
                assert!(value.starts_with("e1:"), "{table}.{column} is not sealed: {value}");
                assert!(!value.contains("CANARY") && !value.contains("Patient/p1"), "{table}.{column} leaks");
            }
        }
        assert_eq!(store.visit(TENANT, "v1").await.unwrap().unwrap().patient, Phi::new("Patient/p1"));
        assert_eq!(
            store.artifacts(TENANT, "v1").await.unwrap()[0].payload.expose(),
            "CANARY-7731 blood pressure 128/82"
        );
    })
    .await;
}

/// Crypto-shredding: once a tenant's data keys are destroyed, its PHI is unreadable — even by
/// a process that had them, and from a copy of the database made before — while the ciphertext
/// and every other tenant's data stay as they were. A legal hold stops it.
#[tokio::test]
async fn shredded_keys_leave_only_unreadable_ciphertext() {
    on_each_engine(|store| async move {
        seed_connection(&store).await;
        open_visit(&store, "v1").await;
        let mut a = artifact("a1", "Observation");
        a.payload = Phi::new("CANARY-5150 heart rate 88");
        record(&store, "v1", 1, &[a]).await;
        // Another tenant's data is its own key's.
        store
            .upsert_connection(&telechart_store::ConnectionRow {
                tenant_id: "other".into(),
                id: "ehr".into(),
                name: "Other EHR".into(),
                profile: "generic".into(),
                base_url: "http://127.0.0.1:1/fhir".into(),
                settings: "{}".into(),
                created_at: 0,
                updated_at: 0,
            })
            .await
            .unwrap();
        let other = telechart_store::NewVisit {
            tenant_id: "other".into(),
            id: "o1".into(),
            connection_id: "ehr".into(),
            appointment_id: "appt-o1".into(),
            patient: Phi::new("Patient/o1"),
            practitioner: None,
            state: "booked".into(),
            visit_type: None,
            lane: telechart_store::LANE_CLINICAL,
        };
        store
            .create_visit(
                &other,
                &telechart_store::AuditEntry { tenant_id: "other".into(), ..audit("visit.open", "o1") },
                1,
            )
            .await
            .unwrap();

        let hold = telechart_store::LegalHold {
            id: "h1".into(),
            visit_id: Some("v1".into()),
            patient: None,
            reason: "matter 1".into(),
            placed_by: "counsel".into(),
            placed_at: 1,
            released_by: None,
            released_at: None,
        };
        store.place_legal_hold(TENANT, &hold, &audit("legal-hold.place", "v1")).await.unwrap();
        let shred = audit("keys.shred", "tenant");
        let refused = store.shred_tenant_data_keys(TENANT, "cli:ops", "tenant offboarded", &shred, 5).await;
        assert!(matches!(&refused, Err(StoreError::Conflict(m)) if m.contains("legal hold")), "{refused:?}");
        assert!(store.visit(TENANT, "v1").await.unwrap().is_some(), "nothing destroyed while held");
        store.release_legal_hold(TENANT, "h1", "counsel", &audit("legal-hold.release", "v1"), 6).await.unwrap();

        let before = raw_values(&store, "SELECT payload FROM artifacts WHERE id = 'a1'").await;
        let shredded = store.shred_tenant_data_keys(TENANT, "cli:ops", "tenant offboarded", &shred, 7).await.unwrap();
        assert_eq!(shredded.len(), 1, "{shredded:?}");
        let err = store.visit(TENANT, "v1").await.unwrap_err();
        assert!(err.to_string().contains("crypto-shredded") && err.to_string().contains("tenant offboarded"), "{err}");
        assert!(store.artifacts(TENANT, "v1").await.is_err());
        // The ciphertext is still there, untouched — and worthless.
        assert_eq!(raw_values(&store, "SELECT payload FROM artifacts WHERE id = 'a1'").await, before);
        assert!(before[0].starts_with("e1:") && !before[0].contains("CANARY"));
        assert_eq!(store.visit("other", "o1").await.unwrap().unwrap().patient, Phi::new("Patient/o1"));
        assert!(store.audit_for_visit(TENANT, "tenant").await.unwrap().iter().any(|r| r.action == "keys.shred"));
    })
    .await;
}

#[tokio::test]
async fn a_ciphertext_moved_to_another_row_fails_to_decrypt() {
    on_each_engine(|store| async move {
        seed_connection(&store).await;
        open_visit(&store, "v1").await;
        open_visit(&store, "v2").await;
        execute(
            &store,
            "UPDATE visits SET patient = (SELECT patient FROM visits WHERE id = 'v1') WHERE id = 'v2'".into(),
        )
        .await;
        let err = store.visit(TENANT, "v2").await.unwrap_err();
        assert!(matches!(&err, StoreError::Corrupt(m) if m.contains("fails authentication")), "{err}");
        assert!(store.visit(TENANT, "v1").await.unwrap().is_some());
    })
    .await;
}

#[tokio::test]
async fn without_the_key_encryption_key_nothing_decrypts() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("k.db").display());
    let store = Store::open(&url, 1, keys()).await.unwrap();
    seed_connection(&store).await;
    open_visit(&store, "v1").await;
    store.close().await;
    let stranger = Store::open(&url, 1, keys()).await.unwrap();
    let err = stranger.visit(TENANT, "v1").await.unwrap_err();
    assert!(matches!(&err, StoreError::Key(m) if m.contains("not configured")), "{err}");
}

/// A visit whose patient id is `canary` and whose one artifact's text is `text`.
async fn store_canary_visit(store: &Store, canary: &str, text: &str) {
    let visit = telechart_store::NewVisit {
        tenant_id: TENANT.into(),
        id: "v1".into(),
        connection_id: "ehr".into(),
        appointment_id: "appt".into(),
        patient: Phi::new(format!("Patient/{canary}")),
        practitioner: None,
        state: "booked".into(),
        visit_type: None,
        lane: telechart_store::LANE_CLINICAL,
    };
    store.create_visit(&visit, &audit("visit.open", "v1"), 1).await.unwrap();
    let mut a = artifact("a1", "DocumentReference");
    a.payload = Phi::new(format!("{{\"text\":\"{text}\"}}"));
    record(store, "v1", 1, &[a]).await;
}

#[tokio::test]
async fn the_sqlite_file_and_its_wal_never_hold_phi() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("canary.db");
    let store = Store::open(&format!("sqlite:{}", path.display()), 1, keys()).await.unwrap();
    seed_connection(&store).await;
    let canary = "CANARY-NAME-Zyxwvut";
    store_canary_visit(&store, canary, &format!("{canary} says hello")).await;
    for file in [path.clone(), dir.path().join("canary.db-wal")] {
        if let Ok(bytes) = std::fs::read(&file) {
            let found = bytes.windows(canary.len()).filter(|w| *w == canary.as_bytes()).count();
            assert_eq!(found, 0, "{} holds the canary", file.display());
        }
    }
    store.close().await;
}

/// Rotates the KEK and the data keys twice while a writer keeps adding visits; then a store with
/// only the newest KEK reads everything, and the old data keys are gone.
#[tokio::test]
async fn keys_rotate_twice_under_a_running_workload() {
    for (url, _guard) in engine_urls().await {
        let mut kek = Kek::generate().unwrap();
        let store = Store::open(&url, 4, KeyConfig::new(kek.clone())).await.unwrap();
        seed_connection(&store).await;
        let stop = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicUsize::new(0));
        let workload = {
            let (store, stop, written) = (store.clone(), stop.clone(), written.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    let id = format!("w{n}");
                    open_visit(&store, &id).await;
                    record(&store, &id, 1, &[artifact(&format!("a{n}"), "Observation")]).await;
                    n += 1;
                    written.fetch_add(1, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                }
            })
        };
        for _round in 0..2 {
            while written.load(Ordering::SeqCst) < 5 {
                tokio::task::yield_now().await;
            }
            written.store(0, Ordering::SeqCst);
            let next = Kek::generate().unwrap();
            store.reload_keys(KeyConfig { current: next.clone(), previous: vec![kek.clone()] });
            store.rewrap_data_keys().await.unwrap();
            let old: Vec<String> = store.data_key_status().await.unwrap().into_iter().map(|k| k.id).collect();
            store.rotate_data_keys(0).await.unwrap();
            // Re-encrypt and retire until every old data key is gone, the writer still going.
            for _ in 0..100 {
                store.reencrypt_batch(50).await.unwrap();
                store.retire_data_keys().await.unwrap();
                let left: Vec<String> = store.data_key_status().await.unwrap().into_iter().map(|k| k.id).collect();
                if old.iter().all(|id| !left.contains(id)) {
                    break;
                }
            }
            let status = store.data_key_status().await.unwrap();
            assert!(old.iter().all(|id| status.iter().all(|k| &k.id != id)), "old data keys retired: {status:?}");
            assert!(status.iter().all(|k| k.kek_id == next.id()), "every data key wrapped by the new KEK");
            kek = next;
        }
        stop.store(true, Ordering::SeqCst);
        workload.await.unwrap();
        store.close().await;

        // The previous KEKs are no longer needed: the newest alone reads every value.
        let fresh = Store::open(&url, 4, KeyConfig::new(kek.clone())).await.unwrap();
        let visits = raw_values(&fresh, "SELECT id FROM visits").await;
        assert!(visits.len() >= 10);
        for id in &visits {
            let visit = fresh.visit(TENANT, id).await.unwrap().unwrap();
            assert_eq!(visit.patient, Phi::new("Patient/p1"));
            for a in fresh.artifacts(TENANT, id).await.unwrap() {
                assert!(a.payload.expose().contains("artifact"));
            }
        }
        fresh.close().await;
    }
}

#[tokio::test]
async fn a_postgresql_dump_never_holds_phi() {
    let Some(url) = fresh_postgres_url().await else { return };
    let store = Store::open(&url, 2, keys()).await.unwrap();
    seed_connection(&store).await;
    let canary = "CANARY-DUMP-Qwertz";
    store_canary_visit(&store, canary, canary).await;
    store.close().await;
    let dump = std::process::Command::new("pg_dump")
        .arg("--data-only")
        .arg(&url)
        .output()
        .expect("pg_dump (postgresql-client) is needed");
    assert!(dump.status.success(), "{}", String::from_utf8_lossy(&dump.stderr));
    let text = String::from_utf8_lossy(&dump.stdout);
    assert!(text.contains("e1:"), "the dump holds the sealed rows");
    assert_eq!(text.matches(canary).count(), 0);
}

#[tokio::test]
async fn signing_keys_are_sealed_newest_first_and_retire() {
    on_each_engine(|store| async move {
        store.add_signing_key("k-old", "ES384", b"old-private-key-bytes", "{\"kid\":\"k-old\"}", 1).await.unwrap();
        store.add_signing_key("k-new", "RS384", b"new-private-key-bytes", "{\"kid\":\"k-new\"}", 2).await.unwrap();
        let keys = store.signing_keys().await.unwrap();
        assert_eq!(keys.iter().map(|k| k.kid.as_str()).collect::<Vec<_>>(), ["k-new", "k-old"]);
        assert_eq!(keys[0].pkcs8, b"new-private-key-bytes");
        for value in raw_values(&store, "SELECT private_key FROM signing_keys").await {
            assert!(value.starts_with("e1:") && !value.contains("cHJpdmF0ZS1rZXk"), "sealed: {value}");
        }
        assert!(store.retire_signing_key("k-old", 3).await.unwrap());
        assert_eq!(store.signing_keys().await.unwrap().len(), 1);
    })
    .await;
}
