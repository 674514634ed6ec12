//! `telechart bench scribe`: the builtin drafter's time per visit on the longest dialogue of a
//! file in the ACI-Bench layout (target < 50 ms), and its throughput over the whole file, in
//! one run. Drafting is pure CPU: no I/O is timed.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use telechart_scribe::builtin::Builtin;
use telechart_scribe::{Templates, VisitInput, transcript};

#[derive(clap::Args, Clone)]
pub struct ScribeBenchArgs {
    /// A CSV with `encounter_id` and `dialogue` columns (ACI-Bench layout).
    #[arg(long, default_value = "../shared/data/aci-bench/valid.csv")]
    dialogues: PathBuf,
    /// Drafts of the longest dialogue timed.
    #[arg(long, default_value_t = 200)]
    repeats: usize,
    /// Passes over the whole file for the throughput figure.
    #[arg(long, default_value_t = 5)]
    passes: usize,
}

/// The target of issue 13: one visit drafted in under 50 ms.
const TARGET: Duration = Duration::from_millis(50);

pub fn run(args: ScribeBenchArgs) -> anyhow::Result<()> {
    let mut reader =
        csv::Reader::from_path(&args.dialogues).with_context(|| format!("reading {}", args.dialogues.display()))?;
    let headers = reader.headers()?.clone();
    let Some(column) = headers.iter().position(|h| h.trim() == "dialogue") else {
        bail!("{}: no \"dialogue\" column", args.dialogues.display());
    };
    let mut visits = Vec::new();
    for row in reader.records() {
        let row = row?;
        let dialogue = row.get(column).unwrap_or_default();
        let turns = transcript::parse(dialogue.as_bytes())?;
        visits.push((dialogue.len(), VisitInput { turns, inputs: Vec::new(), patient: None }));
    }
    if visits.is_empty() {
        bail!("{}: no dialogues", args.dialogues.display());
    }
    let engine = Builtin::new()?;
    let templates = Templates::builtin()?;
    let template = templates.for_visit_type(None);
    let (longest_bytes, longest) =
        visits.iter().max_by_key(|(len, _)| *len).map(|(l, v)| (*l, v.clone())).unwrap_or_default();

    let mut times = Vec::with_capacity(args.repeats.max(1));
    for _ in 0..args.repeats.max(1) {
        let started = Instant::now();
        let draft = engine.draft(&longest, template);
        times.push(started.elapsed());
        std::hint::black_box(draft);
    }
    times.sort();
    let at = |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize];
    let (p50, p99, max) = (at(0.5), at(0.99), times[times.len() - 1]);

    let started = Instant::now();
    let mut drafts = 0usize;
    for _ in 0..args.passes.max(1) {
        for (_, visit) in &visits {
            std::hint::black_box(engine.draft(visit, template));
            drafts += 1;
        }
    }
    let elapsed = started.elapsed();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let report = format!(
        "scribe bench (builtin engine, template {}), {}\n\
         longest dialogue: {longest_bytes} bytes, {} turns; {} drafts timed\n\
         draft time p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; target {} ms: p99 is {:.3} of the target\n\
         throughput over {} dialogues x {} passes: {drafts} drafts in {:.2} s = {:.1} drafts/s ({:.2} ms each)\n",
        template.id,
        args.dialogues.display(),
        longest.turns.len(),
        times.len(),
        ms(p50),
        ms(p99),
        ms(max),
        TARGET.as_millis(),
        ms(p99) / ms(TARGET),
        visits.len(),
        args.passes.max(1),
        elapsed.as_secs_f64(),
        drafts as f64 / elapsed.as_secs_f64(),
        ms(elapsed) / drafts as f64,
    );
    print!("{report}");
    Ok(())
}
