//! The permission matrix, walked from the router's own route list: every route × every role,
//! no token, a forged token, and another tenant's token.

use serde_json::json;
use telechart_policy::Role;
use telechart_server::{Access, route_specs};

use crate::*;

#[tokio::test]
async fn every_route_enforces_its_declared_permission_for_every_role() {
    let env = TestEnv::start(Engine::Sqlite).await;
    let visit = env.full_visit(0).await;
    let bare = reqwest::Client::new();
    let specs = route_specs();
    assert!(specs.len() >= 10, "{specs:?}");
    let mut checked = 0;
    for role in Role::ALL {
        let (_, token) = env.store.create_api_token(TENANT, "matrix", role.as_str(), 0).await.unwrap();
        for spec in &specs {
            let url = format!("{}{}", env.server.base_url, spec.path.replace("{id}", &visit));
            let response = bare
                .request(spec.method.clone(), &url)
                .bearer_auth(token.expose())
                .json(&json!({}))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            match spec.access {
                // No credential asked for; a capability in the path (a consent link's token,
                // here the literal placeholder) may still be unknown.
                Access::Public => assert!(
                    status < 400 || (spec.path.contains("{token}") && status == 404),
                    "{} {} public but {status}",
                    spec.method,
                    spec.path
                ),
                // Login endpoints authenticate for themselves; roles do not enter into it.
                Access::SignIn => assert_ne!(status, 403, "{} {}", spec.method, spec.path),
                // Past the role check, a governed flow may still be refused by the patient's
                // consent (the visit has no recording / AI consent): that 403 says so.
                Access::Requires(p) if role.allows(p) => {
                    let by_consent = status == 403 && body.contains("not permitted by the patient's consent");
                    assert!(
                        status != 401 && (status != 403 || by_consent),
                        "{role} may {p} on {} {} but got {status}",
                        spec.method,
                        spec.path
                    )
                }
                Access::Requires(p) => assert_eq!(status, 403, "{role} lacks {p} on {} {}", spec.method, spec.path),
            }
            checked += 1;
        }
    }
    assert_eq!(checked, specs.len() * Role::ALL.len());

    // No token, a malformed header, a forged secret, a revoked token: 401 with no detail.
    let (row, token) = env.store.create_api_token(TENANT, "to revoke", "platform", 0).await.unwrap();
    env.store.revoke_api_token(TENANT, &row.id, 1).await.unwrap();
    let forged = format!("tct_{}_{}", row.id, "x".repeat(43));
    for spec in specs.iter().filter(|s| matches!(s.access, Access::Requires(_))) {
        let url = format!("{}{}", env.server.base_url, spec.path.replace("{id}", &visit));
        for auth in [
            None,
            Some("Basic dXNlcjpwYXNz".to_owned()),
            Some(format!("Bearer {forged}")),
            Some(format!("Bearer {}", token.expose())),
        ] {
            let mut request = bare.request(spec.method.clone(), &url).json(&json!({}));
            if let Some(a) = &auth {
                request = request.header("authorization", a);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status().as_u16(), 401, "{} {} with {auth:?}", spec.method, spec.path);
            assert!(response.headers().contains_key("www-authenticate"));
            let body: serde_json::Value = response.json().await.unwrap();
            assert_eq!(body["issue"][0]["diagnostics"], "authentication required");
        }
    }
    env.stop().await;
}

#[tokio::test]
async fn another_tenant_reads_nothing() {
    let env = TestEnv::start(Engine::Sqlite).await;
    let visit = env.full_visit(0).await;
    let (_, other) = env.store.create_api_token("other-clinic", "platform", "platform", 0).await.unwrap();
    let client = reqwest::Client::new();
    let mut reads = 0;
    for spec in route_specs().iter().filter(|s| s.path.contains("{id}")) {
        let url = format!("{}{}", env.server.base_url, spec.path.replace("{id}", &visit));
        let response = client
            .request(spec.method.clone(), &url)
            .bearer_auth(other.expose())
            .json(&json!({"to": "finished"}))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        // 404 (no such visit in this tenant), 403 (role), or 422 (the body is judged before the
        // visit is looked up, which reveals nothing): never a success.
        assert!(matches!(status, 403 | 404 | 422), "{} {}: {status}", spec.method, spec.path);
        if status < 400 {
            reads += 1;
        }
    }
    assert_eq!(reads, 0);
    // The visit is untouched.
    let (_, v) = env.get(&format!("{}/visits/{visit}", env.api)).await;
    assert_eq!(v["state"], "finished");
    env.stop().await;
}
