//! The worker authenticates to an EHR that demands SMART Backend Services tokens: a whole visit is
//! charted with one token request, and the EHR refuses anyone without a token.

use telechart_sync::{DeliveryOutcome, FaultPlan};

use crate::*;

#[tokio::test]
async fn a_visit_is_charted_through_backend_services_tokens() {
    let env = TestEnv::start_with(Engine::Sqlite, true).await;
    let anonymous =
        reqwest::get(format!("{}/Appointment/{}", env.sandbox.fhir_base, env.appointment(0))).await.unwrap();
    assert_eq!(anonymous.status().as_u16(), 401, "the EHR wants a token");
    let visit = env.full_visit(0).await;
    let outcomes = env.drain(&env.worker("w", FaultPlan::default())).await;
    assert_eq!(outcomes.len(), 13);
    assert!(outcomes.iter().all(|o| matches!(o, DeliveryOutcome::Done { .. })), "{outcomes:?}");
    assert_eq!(env.sandbox.sandbox.token_requests(), 1, "one token served the open and all 13 deliveries");
    let (_, jwks) = env.get(&format!("{}/.well-known/jwks.json", env.server.base_url)).await;
    assert_eq!(jwks["keys"][0]["alg"], "ES384");
    assert!(jwks["keys"][0].get("d").is_none(), "no private part is published");
    let deliveries = env.store.deliveries_for_visit(TENANT, &visit).await.unwrap();
    assert!(deliveries.iter().all(|d| d.status == "done"));
    env.stop().await;
}
