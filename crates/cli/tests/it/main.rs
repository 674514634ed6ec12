//! The `telechart` binary as users run it, and the architecture's rules as tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod audit;
mod baa;
mod chaos;
mod cli;
mod tidy;
mod trace;

/// Fails unless the shared validator (HL7's R4 schema and an independent parser) accepts every
/// resource of the NDJSON file `path` under `--strict`.
pub fn validate_ndjson(path: &std::path::Path) {
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = std::env::var("TELECHART_FHIR_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| workspace.join(".venv-fhir/bin/python"));
    assert!(python.exists(), "the FHIR validator's venv is missing: scripts/test makes .venv-fhir");
    let out = std::process::Command::new(python)
        .arg(workspace.join("../shared/tools/fhir-validate"))
        .args(["--strict", "--ndjson"])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "fhir-validate refused {}:\n{}{}",
        path.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs the binary in `dir` on database `url` with key-encryption key `kek` and tenant `tenant`,
/// none of the caller's own `TELECHART_*` settings leaking in. Returns whether it succeeded and
/// its stdout followed by its stderr.
pub fn run_telechart(dir: &std::path::Path, url: &str, kek: &str, tenant: &str, args: &[&str]) -> (bool, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_telechart"));
    for (key, _) in std::env::vars() {
        if key.starts_with("TELECHART_") {
            command.env_remove(key);
        }
    }
    let out = command
        .current_dir(dir)
        .env("TELECHART_DATABASE_URL", url)
        .env("TELECHART_KEYS__KEK", kek)
        .env("TELECHART_TENANT", tenant)
        .args(args)
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}
