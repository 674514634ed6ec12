use crate::*;

#[tokio::test]
async fn tokens_authenticate_only_while_valid() {
    on_each_engine(|store| async move {
        let (row, token) = store.create_api_token(TENANT, "video platform", "platform", 5).await.unwrap();
        assert!(token.expose().starts_with(&format!("tct_{}_", row.id)));
        assert_eq!(format!("{token:?}"), "IssuedToken(<redacted>)");
        let found = store.authenticate_api_token(token.expose()).await.unwrap().unwrap();
        assert_eq!((found.tenant_id.as_str(), found.role.as_str()), (TENANT, "platform"));

        let forged = format!("tct_{}_{}", row.id, "A".repeat(43));
        for bad in [forged.as_str(), "tct_nope", "Bearer x", "", "tct_0123456789abcdef0123456789abcdef_x"] {
            assert!(store.authenticate_api_token(bad).await.unwrap().is_none(), "{bad}");
        }
        // Secrets are stored only as hashes.
        let stored: Vec<(String,)> = match store.db() {
            telechart_store::Db::Sqlite(p) => {
                sqlx::query_as("SELECT secret_hash FROM api_tokens").fetch_all(p).await.unwrap()
            }
            telechart_store::Db::Postgres(p) => {
                sqlx::query_as("SELECT secret_hash FROM api_tokens").fetch_all(p).await.unwrap()
            }
        };
        let secret = token.expose().rsplit('_').next().unwrap();
        assert!(stored.iter().all(|(h,)| !h.contains(secret)));

        assert!(store.revoke_api_token(TENANT, &row.id, 6).await.unwrap());
        assert!(store.authenticate_api_token(token.expose()).await.unwrap().is_none());
        assert!(!store.revoke_api_token("other-tenant", &row.id, 7).await.unwrap());
        assert_eq!(store.api_tokens(TENANT).await.unwrap()[0].revoked_at, Some(6));
        assert!(store.api_tokens("other-tenant").await.unwrap().is_empty());
    })
    .await;
}
