//! `telechart bench care-plan`: the builtin care-plan + after-visit-summary drafter's time per
//! visit (target < 100 ms, chart reads excluded) on a heavy visit: four diagnoses, orders, a long
//! signed note, and a chart of many conditions, medications and allergies to check against.

use std::time::{Duration, Instant};

use telechart_scribe::care_plan::{CarePlanInput, Chart, ChartEntry, Diagnosis, Order, OrderKind, draft};
use telechart_scribe::knowledge::Knowledge;

#[derive(clap::Args, Clone)]
pub struct CarePlanBenchArgs {
    /// Drafts timed.
    #[arg(long, default_value_t = 1_000)]
    repeats: usize,
}

const TARGET: Duration = Duration::from_millis(100);

fn heavy_visit(language: &str) -> CarePlanInput {
    let entry = |rtype: &str, n: usize, text: &str, code: Option<&str>| ChartEntry {
        reference: format!("{rtype}/{n}"),
        text: text.to_owned(),
        code: code.map(str::to_owned),
    };
    CarePlanInput {
        diagnoses: ["I10", "E11.9", "M54.50", "J06.9"]
            .iter()
            .enumerate()
            .map(|(n, code)| Diagnosis { artifact_id: format!("dx-{n}"), code: (*code).into(), display: String::new() })
            .collect(),
        orders: vec![
            Order { artifact_id: "o1".into(), kind: OrderKind::Lab, text: "Hemoglobin A1c".into() },
            Order { artifact_id: "o2".into(), kind: OrderKind::Medication, text: "lisinopril 10 mg once a day".into() },
        ],
        note_sentences: (0..120)
            .map(|n| format!("Sentence {n} of the signed note about the visit and the plan."))
            .chain(["Follow up in 3 months with labs.".to_owned()])
            .collect(),
        chart: Chart {
            conditions: Some((0..40).map(|n| entry("Condition", n, "Prediabetes", Some("R73.03"))).collect()),
            medications: Some(
                (0..30).map(|n| entry("MedicationRequest", n, "Atorvastatin 20 MG Oral Tablet", None)).collect(),
            ),
            allergies: Some((0..10).map(|n| entry("AllergyIntolerance", n, "Penicillin V", None)).collect()),
            languages: vec![language.to_owned()],
        },
    }
}

pub fn run(args: CarePlanBenchArgs) -> anyhow::Result<()> {
    let knowledge = Knowledge::builtin()?;
    println!(
        "bench care-plan: builtin drafter, 4 diagnoses, 2 orders, a 121-sentence note, a chart of 40 conditions, \
         30 medications and 10 allergies; {} drafts per language",
        args.repeats
    );
    for language in ["en", "es"] {
        let input = heavy_visit(language);
        let mut times = Vec::with_capacity(args.repeats.max(1));
        for _ in 0..args.repeats.max(1) {
            let started = Instant::now();
            let drafted = draft(&knowledge, &input);
            let summary = drafted.summary_text();
            times.push(started.elapsed());
            std::hint::black_box((drafted, summary));
        }
        times.sort();
        let at = |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize];
        let (p50, p99) = (at(0.5), at(0.99));
        println!(
            "  {language}: care plan + AVS p50 {:.3} ms, p99 {:.3} ms; target 100 ms: p99 is {:.4} of the target",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
            p99.as_secs_f64() / TARGET.as_secs_f64()
        );
    }
    Ok(())
}
