//! HL7's schema (and an independent parser) judge our FHIR, through the shared validator.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::Value;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Python with the validator's pinned packages: `TELECHART_FHIR_PYTHON`, else the project's
/// `.venv-fhir` (the README's test command creates it).
fn python() -> PathBuf {
    if let Ok(p) = std::env::var("TELECHART_FHIR_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = workspace().join(".venv-fhir/bin/python");
    assert!(
        venv.exists(),
        "the FHIR validator's venv is missing: python3 -m venv .venv-fhir && .venv-fhir/bin/pip install -r ../shared/tools/requirements.txt"
    );
    venv
}

/// Fails the test with the validator's report unless every resource passes
/// `fhir-validate --strict --require-profile vital-signs`.
pub fn assert_valid(resources: &[Value]) {
    assert!(!resources.is_empty(), "nothing to validate");
    let mut file = tempfile::Builder::new().suffix(".ndjson").tempfile().unwrap();
    for r in resources {
        writeln!(file, "{r}").unwrap();
    }
    file.flush().unwrap();
    let script = workspace().join("../shared/tools/fhir-validate");
    let output = std::process::Command::new(python())
        .arg(&script)
        .args(["--strict", "--require-profile", "vital-signs", "--ndjson"])
        .arg(file.path())
        .output()
        .expect("running fhir-validate");
    let report = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "fhir-validate refused our FHIR:\n{report}");
    assert!(report.contains(&format!("{} resources, 0 invalid", resources.len())), "{report}");
}

#[test]
fn the_validator_can_fail() {
    // A vital sign without its UCUM unit must be refused, or the checks above prove nothing.
    let bad = serde_json::json!({"resourceType": "Observation", "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}, "subject": {"reference": "Patient/1"},
        "effectiveDateTime": "2026-11-26T09:00:00Z", "valueQuantity": {"value": 72, "unit": "bpm"}});
    let result = std::panic::catch_unwind(|| assert_valid(&[bad]));
    assert!(result.is_err());
}
