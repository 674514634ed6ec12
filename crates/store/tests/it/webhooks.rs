//! The webhook outbox and platform-event record, on both engines.

use telechart_store::{NewWebhook, Phi, WebhookOutcome};

use crate::*;

fn webhook(id: &str) -> NewWebhook {
    NewWebhook {
        id: id.into(),
        platform_id: "video".into(),
        event_type: "appointment.booked".into(),
        payload: Phi::new(format!("{{\"id\":\"{id}\",\"patient\":\"Patient/p1\"}}")),
    }
}

#[tokio::test]
async fn the_outbox_is_claimed_leased_retried_and_logged() {
    on_each_engine(|store| async move {
        store.enqueue_webhooks(TENANT, &[webhook("w1"), webhook("w2")], 1_000).await.unwrap();
        let claimed = store.claim_webhooks(10, 60_000, 1_000).await.unwrap();
        assert_eq!(claimed.iter().map(|w| w.id.as_str()).collect::<Vec<_>>(), ["w1", "w2"]);
        assert_eq!(claimed[0].payload.expose(), "{\"id\":\"w1\",\"patient\":\"Patient/p1\"}");
        assert_eq!(claimed[0].attempts, 1);
        // Leased: nobody else gets them until the lease ends.
        assert!(store.claim_webhooks(10, 60_000, 2_000).await.unwrap().is_empty());
        store.finish_webhook(TENANT, "w1", WebhookOutcome::Done, Some(204), 2_000).await.unwrap();
        store
            .finish_webhook(TENANT, "w2", WebhookOutcome::Retry { at_ms: 10_000, error: "HTTP 503" }, Some(503), 2_000)
            .await
            .unwrap();
        assert!(store.claim_webhooks(10, 60_000, 9_999).await.unwrap().is_empty(), "not due yet");
        let again = store.claim_webhooks(10, 60_000, 10_000).await.unwrap();
        assert_eq!((again.len(), again[0].attempts), (1, 2));
        // A sender that dies mid-send: its lease runs out and the event goes again.
        let after_lease = store.claim_webhooks(10, 60_000, 70_001).await.unwrap();
        assert_eq!((after_lease.len(), after_lease[0].attempts), (1, 3));
        store
            .finish_webhook(TENANT, "w2", WebhookOutcome::Dead { error: "HTTP 410" }, Some(410), 70_002)
            .await
            .unwrap();
        let log = store.webhook_log(TENANT, 10).await.unwrap();
        let status: Vec<(&str, &str, Option<i64>)> =
            log.iter().map(|w| (w.id.as_str(), w.status.as_str(), w.last_status)).collect();
        assert!(
            status.contains(&("w1", "done", Some(204))) && status.contains(&("w2", "dead", Some(410))),
            "{status:?}"
        );

        assert!(store.first_platform_event(TENANT, "video", "evt-1", 1).await.unwrap());
        assert!(!store.first_platform_event(TENANT, "video", "evt-1", 2).await.unwrap(), "a duplicate");
        assert!(store.first_platform_event(TENANT, "other", "evt-1", 2).await.unwrap(), "ids are per platform");
    })
    .await;
}

#[tokio::test]
async fn appointments_are_kept_when_newer_and_watermarks_only_advance() {
    use telechart_store::AppointmentSnapshot;
    on_each_engine(|store| async move {
        let snap = |status: &str, at: i64| AppointmentSnapshot {
            connection_id: "ehr".into(),
            appointment_id: "a1".into(),
            status: status.into(),
            start: Some("2026-11-26T10:00:00Z".into()),
            patient: Phi::new("Patient/p1"),
            practitioner: None,
            last_updated_ms: at,
        };
        assert!(store.apply_appointment(TENANT, &snap("booked", 10), None, &[webhook("b1")], 1).await.unwrap());
        // A second writer that read "nothing stored" loses, and writes no event.
        assert!(!store.apply_appointment(TENANT, &snap("booked", 10), None, &[webhook("b2")], 1).await.unwrap());
        let known = store.known_appointment(TENANT, "ehr", "a1").await.unwrap().unwrap();
        assert_eq!((known.status.as_str(), known.last_updated_ms), ("booked", 10));
        assert!(
            store.apply_appointment(TENANT, &snap("cancelled", 20), Some(&known), &[webhook("c1")], 2).await.unwrap()
        );
        // Expected state no longer current: refused.
        assert!(!store.apply_appointment(TENANT, &snap("booked", 30), Some(&known), &[], 3).await.unwrap());
        let ids: Vec<String> = store.webhook_log(TENANT, 10).await.unwrap().into_iter().map(|w| w.id).collect();
        assert_eq!(ids.len(), 2, "{ids:?}");
        store.advance_poll_watermark(TENANT, "ehr", 500, 1).await.unwrap();
        store.advance_poll_watermark(TENANT, "ehr", 400, 2).await.unwrap();
        assert_eq!(store.poll_watermark(TENANT, "ehr").await.unwrap(), Some(500));
        store.advance_poll_watermark(TENANT, "ehr", 600, 3).await.unwrap();
        assert_eq!(store.poll_watermark(TENANT, "ehr").await.unwrap(), Some(600));
    })
    .await;
}

#[tokio::test]
async fn capability_contracts_are_versioned_only_when_they_change() {
    on_each_engine(|store| async move {
        assert_eq!(store.latest_contract(TENANT, "ehr").await.unwrap(), None);
        assert_eq!(store.save_contract(TENANT, "ehr", "{\"a\":1}", 1).await.unwrap(), 1);
        assert_eq!(store.save_contract(TENANT, "ehr", "{\"a\":1}", 2).await.unwrap(), 1, "unchanged");
        assert_eq!(store.save_contract(TENANT, "ehr", "{\"a\":2}", 3).await.unwrap(), 2);
        assert_eq!(store.latest_contract(TENANT, "ehr").await.unwrap(), Some((2, "{\"a\":2}".to_owned())));
    })
    .await;
}
