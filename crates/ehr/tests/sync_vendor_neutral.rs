//! Sync never branches on a vendor: its source names none. (The check lives here, in the crate
//! where vendor names belong, so that `crates/sync` itself names none at all.) What an EHR accepts comes from the
//! connection's profile and capabilities, so a new EHR needs a profile, not a code path.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

const VENDOR_NAMES: &[&str] =
    &["epic", "oracle", "cerner", "athena", "meditech", "allscripts", "eclinicalworks", "nextgen"];

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn the_sync_crate_names_no_vendor() {
    let mut files = Vec::new();
    sources(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../sync/src"), &mut files);
    assert!(files.len() >= 5, "{files:?}");
    let mut found = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap().to_lowercase();
        for (n, line) in text.lines().enumerate() {
            for vendor in VENDOR_NAMES {
                if line.contains(vendor) {
                    found.push(format!("{}:{}: {vendor}", file.display(), n + 1));
                }
            }
        }
    }
    assert!(found.is_empty(), "sync names a vendor:\n{}", found.join("\n"));
}
