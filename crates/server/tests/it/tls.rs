//! HTTPS with rustls: a self-signed development certificate, trusted explicitly by the client.

use std::net::SocketAddr;
use std::time::Duration;

use telechart_server::TlsSettings;

#[tokio::test]
async fn https_serves_with_hsts_and_refuses_plain_http() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::sqlite_store(dir.path()).await;
    let state = crate::bare_state(&store, None);
    let (tls, pem) = TlsSettings::self_signed(&["localhost".to_owned()]).unwrap();
    let server = telechart_server::spawn(state, SocketAddr::from(([127, 0, 0, 1], 0)), Some(tls)).await.unwrap();
    assert!(server.base_url.starts_with("https://"));
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap())
        .resolve("localhost", server.addr)
        .build()
        .unwrap();
    let url = format!("https://localhost:{}/healthz", server.addr.port());
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["strict-transport-security"], "max-age=31536000; includeSubDomains");
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    // A client that does not trust the certificate is refused; plain HTTP gets no answer.
    assert!(reqwest::Client::new().get(&url).send().await.is_err());
    let plain = format!("http://127.0.0.1:{}/healthz", server.addr.port());
    assert!(reqwest::Client::new().get(&plain).timeout(Duration::from_secs(5)).send().await.is_err());
    server.shutdown().await;
}
