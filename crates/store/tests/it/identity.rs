use telechart_store::{SessionLimits, SmartLaunchState, StoreError};

use crate::*;

const LIMITS: SessionLimits = SessionLimits { idle_ms: 30 * 60_000, absolute_ms: 12 * 3_600_000 };

#[tokio::test]
async fn sessions_end_when_idle_expired_or_logged_out() {
    on_each_engine(|store| async move {
        let user = store.add_user(TENANT, "https://idp", "alice", "clinician", 0).await.unwrap();
        let err = store.add_user(TENANT, "https://idp", "alice", "billing", 0).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err}");
        assert_eq!(store.user_by_subject("https://idp", "alice").await.unwrap().unwrap().id, user.id);
        assert!(store.user_by_subject("https://other-idp", "alice").await.unwrap().is_none());

        let (cookie, row) = store.create_session(&user, true, LIMITS, 1_000).await.unwrap();
        assert_eq!(row.mfa, 1);
        assert!(store.session(&cookie, LIMITS, 2_000).await.unwrap().is_some());
        assert!(store.session("forged", LIMITS, 2_000).await.unwrap().is_none());
        // Used within the idle limit it lives on; 31 idle minutes end it.
        let t = 2_000 + 29 * 60_000;
        assert!(store.session(&cookie, LIMITS, t).await.unwrap().is_some());
        assert!(store.session(&cookie, LIMITS, t + 31 * 60_000).await.unwrap().is_none());

        // The absolute lifetime ends a session however busy it is.
        let (busy, _) = store.create_session(&user, false, LIMITS, 0).await.unwrap();
        let mut now = 0;
        while now < 12 * 3_600_000 - 20 * 60_000 {
            now += 20 * 60_000;
            assert!(store.session(&busy, LIMITS, now).await.unwrap().is_some(), "at {now}");
        }
        assert!(store.session(&busy, LIMITS, 12 * 3_600_000 + 1).await.unwrap().is_none());

        let (ended, _) = store.create_session(&user, false, LIMITS, 5).await.unwrap();
        assert!(store.end_session(&ended, 6).await.unwrap());
        assert!(store.session(&ended, LIMITS, 7).await.unwrap().is_none());
    })
    .await;
}

#[tokio::test]
async fn a_login_state_is_good_once_and_briefly() {
    on_each_engine(|store| async move {
        store.begin_login("s1", "verifier", "nonce", true, 0).await.unwrap();
        let pending = store.finish_login("s1", 600_000, 1).await.unwrap().unwrap();
        assert_eq!(
            (pending.pkce_verifier.as_str(), pending.nonce.as_str(), pending.embedded),
            ("verifier", "nonce", true)
        );
        assert_eq!(store.finish_login("s1", 600_000, 2).await.unwrap(), None, "replayed state");
        store.begin_login("s2", "v", "n", false, 0).await.unwrap();
        assert_eq!(store.finish_login("s2", 600_000, 700_000).await.unwrap(), None, "stale state");
    })
    .await;
}

#[tokio::test]
async fn a_smart_launch_state_is_good_once_and_for_ten_minutes() {
    on_each_engine(|store| async move {
        const TEN_MINUTES: i64 = 10 * 60_000;
        let launch = |state: &str| SmartLaunchState {
            state: state.into(),
            tenant_id: TENANT.into(),
            connection_id: "ehr".into(),
            code_verifier: format!("verifier-{state}"),
            nonce: format!("nonce-{state}"),
            redirect_uri: "https://telechart.example/launch/callback".into(),
            created_at: 0,
        };
        store.begin_smart_launch(&launch("state-1")).await.unwrap();
        let taken = store.finish_smart_launch("state-1", TEN_MINUTES, 60_000).await.unwrap();
        assert_eq!(taken, Some(launch("state-1")));
        assert_eq!(store.finish_smart_launch("state-1", TEN_MINUTES, 60_001).await.unwrap(), None, "replayed state");
        store.begin_smart_launch(&launch("state-2")).await.unwrap();
        assert_eq!(
            store.finish_smart_launch("state-2", TEN_MINUTES, TEN_MINUTES + 1).await.unwrap(),
            None,
            "expired state"
        );
        assert_eq!(store.finish_smart_launch("never-issued", TEN_MINUTES, 1).await.unwrap(), None);
    })
    .await;
}
