//! The codemap's invariants, checked: who may depend on what, and what `sync` may not say.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn crates_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Normal (not dev) dependencies of each workspace crate, by folder name.
fn dependencies() -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(crates_dir()).unwrap() {
        let dir = entry.unwrap().path();
        let manifest = dir.join("Cargo.toml");
        if !manifest.exists() {
            continue;
        }
        let parsed: toml::Table = std::fs::read_to_string(&manifest).unwrap().parse().unwrap();
        let deps = parsed
            .get("dependencies")
            .and_then(|d| d.as_table())
            .map(|t| t.keys().cloned().collect())
            .unwrap_or_default();
        out.insert(dir.file_name().unwrap().to_string_lossy().into_owned(), deps);
    }
    out
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

#[test]
fn crate_directions_follow_the_codemap() {
    let deps = dependencies();
    let io = ["tokio", "sqlx", "reqwest", "axum"];
    for pure in ["fhir", "visit", "policy"] {
        let found: Vec<_> = deps[pure].iter().filter(|d| io.contains(&d.as_str())).collect();
        assert!(found.is_empty(), "{pure} must do no I/O but depends on {found:?}");
    }
    for lib in ["fhir", "visit", "store", "ehr", "sync", "sandbox", "server", "policy"] {
        assert!(!deps[lib].contains(&"anyhow".to_owned()), "{lib}: anyhow belongs to the binary only");
    }
    for (name, list) in &deps {
        if name != "cli" {
            assert!(!list.contains(&"telechart-sandbox".to_owned()), "{name} must not use the sandbox outside tests");
        }
    }
    assert!(
        !deps["store"].iter().any(|d| d == "reqwest" || d == "axum" || d == "telechart-ehr"),
        "store knows nothing of HTTP or EHRs"
    );
    assert!(!deps["sync"].contains(&"axum".to_owned()));
    assert!(!deps["server"].contains(&"sqlx".to_owned()), "SQL lives in store");
}

#[test]
fn sync_never_names_a_vendor() {
    for file in rust_files(&crates_dir().join("sync/src")) {
        let text = std::fs::read_to_string(&file).unwrap().to_lowercase();
        for vendor in ["epic", "cerner", "oracle", "athena", "allscripts", "meditech"] {
            assert!(
                !text.contains(vendor),
                "{} names {vendor}: ask the profile's capabilities instead",
                file.display()
            );
        }
    }
}

#[test]
fn only_store_holds_sql() {
    for lib in ["server", "sync", "ehr", "visit", "fhir"] {
        for file in rust_files(&crates_dir().join(lib).join("src")) {
            let text = std::fs::read_to_string(&file).unwrap();
            for needle in ["SELECT ", "INSERT INTO", "UPDATE deliveries", "DELETE FROM"] {
                assert!(!text.contains(needle), "{} contains SQL ({needle})", file.display());
            }
        }
    }
}
