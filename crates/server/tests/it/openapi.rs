//! The API's OpenAPI document against the running server, judged by a third-party tool
//! (schemathesis, from PyPI): no server errors, every status code and content type declared,
//! every response body matching its schema, and requests that break the schema refused.

use std::path::PathBuf;

use crate::*;

fn schemathesis() -> Option<PathBuf> {
    let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv-openapi/bin/schemathesis");
    if bin.exists() {
        return Some(bin);
    }
    assert!(
        std::env::var("TELECHART_REQUIRE_OPENAPI").as_deref() != Ok("1"),
        "schemathesis is missing: python3 -m venv .venv-openapi && .venv-openapi/bin/pip install -r tests-support/openapi/requirements.txt"
    );
    eprintln!("note: .venv-openapi missing; OpenAPI conformance skipped");
    None
}

#[tokio::test]
async fn the_openapi_document_matches_the_running_server() {
    let Some(bin) = schemathesis() else { return };
    let env = TestEnv::start(Engine::Sqlite).await;
    // A visit with some history, so that reads of it have something to show.
    let id = env.full_visit(0).await;
    let (status, _) = env.get(&format!("{}/visits/{id}", env.api)).await;
    assert_eq!(status, 200);
    let (_, token) = env.store.create_api_token(TENANT, "schemathesis", "platform", 0).await.unwrap();
    let base = env.server.base_url.clone();
    let reports = tempfile::tempdir().unwrap();
    let report_dir = reports.path().to_owned();
    // Path ids point at the real visit, so the operations on it are exercised, not only 404s.
    let config = reports.path().join("schemathesis.toml");
    std::fs::write(&config, format!("[parameters]\n\"path.id\" = \"{id}\"\n")).unwrap();
    let header = format!("Authorization: Bearer {}", token.expose());
    // Run beside the server (which needs this runtime's thread to answer).
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(bin)
        .arg("--config-file")
        .arg(config)
        .arg("run")
        .arg(format!("{base}/api/v1/openapi.json"))
        .args(["--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,negative_data_rejection"])
        .args(["--max-examples", "25", "--generation-deterministic", "--workers", "1", "--request-timeout", "10"])
        .arg("--header")
        .arg(header)
        .arg("--report-dir")
        .arg(report_dir)
        .env("NO_COLOR", "1")
        .output()
    })
    .await
    .unwrap()
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    env.stop().await;
}
