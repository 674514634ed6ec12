//! ICD-10-CM (April 1 2026, CDC/NCHS): every category and code, whether it is billable (a leaf
//! that may stand on a claim), and its description. The table is generated from the PyPI package
//! `simple-icd-10-cm` by `scripts/icd10cm-table` and shipped compressed; it is read on first use.

use std::collections::HashMap;
use std::io::Read;
use std::sync::OnceLock;

/// The code system URI of ICD-10-CM in FHIR.
pub const SYSTEM: &str = "http://hl7.org/fhir/sid/icd-10-cm";

static TABLE_GZ: &[u8] = include_bytes!("../data/icd10cm.tsv.gz");

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Icd10Code {
    /// With its dot, e.g. `E11.9`.
    pub code: String,
    /// A leaf of the classification: the only kind a claim accepts.
    pub billable: bool,
    pub description: String,
}

fn table() -> &'static HashMap<String, (bool, String)> {
    static TABLE: OnceLock<HashMap<String, (bool, String)>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut text = String::new();
        // The table is part of the binary; a failure here is a build defect, and leaves it empty.
        if flate2::read::GzDecoder::new(TABLE_GZ).read_to_string(&mut text).is_err() {
            text.clear();
        }
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|line| {
                let mut parts = line.splitn(3, '\t');
                let code = parts.next()?;
                let billable = parts.next()? == "1";
                let description = parts.next()?;
                Some((code.to_owned(), (billable, description.to_owned())))
            })
            .collect()
    })
}

/// `e119`, `E11.9` or ` E11.9 ` → `E11.9`: upper case, the dot after the category's three characters.
pub fn normalize(code: &str) -> String {
    let compact: String = code.trim().chars().filter(|c| *c != '.').collect::<String>().to_ascii_uppercase();
    match compact.get(3..) {
        Some(rest) if !rest.is_empty() => format!("{}.{rest}", &compact[..3]),
        _ => compact,
    }
}

/// The code, if ICD-10-CM has it (in any of the spellings [`normalize`] accepts).
pub fn lookup(code: &str) -> Option<Icd10Code> {
    let code = normalize(code);
    table().get(&code).map(|(billable, description)| Icd10Code {
        code,
        billable: *billable,
        description: description.clone(),
    })
}

/// Billable codes under a category, for a helpful refusal (`E11` → `E11.0…`); at most `limit`.
pub fn billable_under(category: &str, limit: usize) -> Vec<String> {
    let prefix = normalize(category);
    let mut found: Vec<String> =
        table().iter().filter(|(c, (b, _))| *b && c.starts_with(&prefix)).map(|(c, _)| c.clone()).collect();
    found.sort();
    found.truncate(limit);
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_knows_codes_and_which_are_billable() {
        let e119 = lookup("e119").unwrap();
        assert_eq!((e119.code.as_str(), e119.billable), ("E11.9", true));
        assert_eq!(e119.description, "Type 2 diabetes mellitus without complications");
        assert!(!lookup("E11").unwrap().billable, "a category is not billable");
        assert!(lookup("I10").unwrap().billable);
        assert!(lookup("Z99.999").is_none());
        assert!(table().len() > 90_000, "{}", table().len());
        assert!(billable_under("E11", 3).iter().all(|c| c.starts_with("E11.")));
    }
}
