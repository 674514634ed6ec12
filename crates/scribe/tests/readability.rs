//! Every condition of the care knowledge base, as a patient would read it (its goals, activities
//! and red flags together), scored by a third-party implementation (PyPI `textstat`): Flesch-Kincaid
//! grade 6 or lower in English, Fernández-Huerta 70 or higher in Spanish.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;

use telechart_scribe::knowledge::{Knowledge, Language};

#[test]
fn every_condition_reads_at_grade_six_or_lower_in_both_languages() {
    let knowledge = Knowledge::builtin().unwrap();
    let mut passages = Vec::new();
    for c in &knowledge.condition {
        for language in [Language::English, Language::Spanish] {
            let pick = |en: &str, es: &str| if language == Language::English { en.to_owned() } else { es.to_owned() };
            let words: Vec<String> = c
                .goal
                .iter()
                .map(|g| pick(&g.en, &g.es))
                .chain(c.activity.iter().map(|a| pick(&a.en, &a.es)))
                .chain(c.red_flag.iter().map(|r| pick(&r.en, &r.es)))
                .collect();
            passages.push(serde_json::json!({"id": c.id, "language": language.tag(), "text": words.join(" ")}));
        }
    }
    let (ok, report) = score(&passages);
    assert!(ok, "passages miss their readability target:\n{report}");
}

/// Whole after-visit summaries as the drafter writes them — one per condition, and visits with
/// several diagnoses, an order and a follow-up from the note — in English and in Spanish.
#[test]
fn drafted_after_visit_summaries_read_at_grade_six_or_lower() {
    use telechart_scribe::care_plan::{CarePlanInput, Chart, Diagnosis, Order, OrderKind, draft};
    let knowledge = Knowledge::builtin().unwrap();
    let mut visits: Vec<(String, Vec<&str>)> =
        knowledge.condition.iter().map(|c| (c.id.clone(), vec![c.icd10[0].split('-').next().unwrap()])).collect();
    visits.push(("hypertension+diabetes+ckd".into(), vec!["I10", "E11.9", "N18.3"]));
    visits.push(("asthma+rhinitis".into(), vec!["J45.909", "J30.9"]));
    visits.push(("back-pain+anxiety+insomnia".into(), vec!["M54.50", "F41.1", "G47.00"]));
    let mut passages = Vec::new();
    for (id, codes) in &visits {
        for language in ["en", "es"] {
            let input = CarePlanInput {
                diagnoses: codes
                    .iter()
                    .enumerate()
                    .map(|(n, c)| Diagnosis {
                        artifact_id: format!("dx-{n}"),
                        code: (*c).into(),
                        display: String::new(),
                    })
                    .collect(),
                orders: vec![Order { artifact_id: "o1".into(), kind: OrderKind::Lab, text: "blood test".into() }],
                note_sentences: vec!["Follow up in 4 weeks.".into()],
                chart: Chart {
                    conditions: Some(vec![]),
                    medications: Some(vec![]),
                    allergies: Some(vec![]),
                    languages: vec![language.into()],
                },
            };
            let summary = draft(&knowledge, &input);
            assert!(summary.gaps.is_empty(), "{id}: {:?}", summary.gaps);
            passages.push(
                serde_json::json!({"id": format!("avs:{id}"), "language": language, "text": summary.summary_text()}),
            );
        }
    }
    let (ok, report) = score(&passages);
    assert!(ok, "summaries miss their readability target:\n{report}");
}

fn score(passages: &[serde_json::Value]) -> (bool, String) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = root.join(".venv-readability/bin/python");
    assert!(python.exists(), "the readability venv is missing: scripts/test makes .venv-readability");
    let mut child = std::process::Command::new(python)
        .arg(root.join("tests-support/readability/score.py"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(serde_json::to_string(passages).unwrap().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(report.lines().count(), passages.len(), "{report}");
    let scores: Vec<serde_json::Value> = report.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let worst_en = scores.iter().filter_map(|v| v["flesch_kincaid_grade"].as_f64()).fold(f64::MIN, f64::max);
    let worst_es = scores.iter().filter_map(|v| v["fernandez_huerta"].as_f64()).fold(f64::MAX, f64::min);
    eprintln!(
        "readability of {} passages: worst English FK grade {worst_en}, worst Spanish Fernández-Huerta {worst_es}",
        passages.len()
    );
    (out.status.success(), report)
}
