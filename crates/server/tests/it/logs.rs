//! PHI never reaches the logs: a whole visit, with failures on the way, logged at TRACE for every
//! target, and the log searched for each PHI value that went through.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::json;
use telechart_sync::FaultPlan;

use crate::*;

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

static LOGS: OnceLock<Buffer> = OnceLock::new();

fn capture() -> Buffer {
    LOGS.get_or_init(|| {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("trace"))
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .try_init()
            .expect("the log capture is the only subscriber in this test binary");
        buffer
    })
    .clone()
}

#[tokio::test]
async fn no_phi_reaches_the_logs() {
    let logs = capture();
    let env = TestEnv::start(Engine::Sqlite).await;
    let appointment = env.appointment(0);
    let (_, appt) = env.get(&format!("{}/Appointment/{appointment}", env.sandbox.fhir_base)).await;
    let patient =
        appt["participant"][0]["actor"]["reference"].as_str().unwrap().trim_start_matches("Patient/").to_owned();
    let note_canary = "CANARY-NOTE-Jabberwock";

    let (status, visit) = env.post("/visits", json!({"appointment": appointment})).await;
    assert_eq!(status, 201);
    let id = visit["id"].as_str().unwrap().to_owned();
    env.post(&format!("/visits/{id}/transitions"), json!({"to": "arrived"})).await;
    // Refused input carrying a canary: answered to the caller, never logged.
    let (status, _) = env
        .post(
            &format!("/visits/{id}/vitals"),
            json!({"vitals": [{"type": "heart-rate", "value": 72, "unit": note_canary}]}),
        )
        .await;
    assert_eq!(status, 422);
    env.post(&format!("/visits/{id}/vitals"), json!({"vitals": [{"type": "heart-rate", "value": 71, "unit": "/min"}]}))
        .await;
    env.consent_to_telehealth(&id).await;
    env.post(&format!("/visits/{id}/transitions"), json!({"to": "in-progress"})).await;
    let note = json!({"title": format!("{note_canary} title"), "text": format!("{note_canary} text"),
                      "author": visit["practitioner"], "signedAt": "2026-11-26T09:00:00Z"});
    assert_eq!(env.post(&format!("/visits/{id}/notes"), note).await.0, 201);
    // The EHR refuses once and loses a reply once, so the retry and reconcile paths log too.
    env.sandbox.sandbox.inject(serde_json::from_value(json!({"status": 503, "resourceType": "Observation"})).unwrap());
    env.sandbox.sandbox.inject(
        serde_json::from_value(json!({"status": 500, "afterCommit": true, "resourceType": "DocumentReference"}))
            .unwrap(),
    );
    env.drain(&env.worker("logger", FaultPlan::default())).await;
    let trace = env.store.deliveries_for_visit(TENANT, &id).await.unwrap();
    assert!(trace.iter().all(|d| d.status == "done"));
    let db_dir = env.dir.path().to_owned();
    let files = [db_dir.join("t.db"), db_dir.join("t.db-wal")];
    // At rest too: the SQLite file and its write-ahead log hold neither value.
    for file in &files {
        if let Ok(bytes) = std::fs::read(file) {
            for phi in [patient.as_str(), note_canary] {
                let found = bytes.windows(phi.len()).filter(|w| *w == phi.as_bytes()).count();
                assert_eq!(found, 0, "{phi} in {}", file.display());
            }
        }
    }
    assert!(files[0].exists());
    env.stop().await;

    let text = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    assert!(text.contains("delivery will be retried"), "the failure paths ran and logged");
    for phi in [patient.as_str(), note_canary] {
        assert_eq!(text.matches(phi).count(), 0, "{phi} is in the logs");
    }
}
