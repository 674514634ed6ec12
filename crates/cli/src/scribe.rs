//! `telechart scribe eval`: drafts a note for every dialogue of a CSV in the ACI-Bench layout
//! (`dataset, encounter_id, dialogue[, note]`) or the MTS-Dialog layout (`ID, section_header,
//! section_text, dialogue`) and writes `encounter_id,note` (or `ID,section_text`) for
//! `../shared/tools/note-score`; prints what the drafts hold and how long they took.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Subcommand, ValueEnum};
use telechart_scribe::builtin::Builtin;
use telechart_scribe::language::Sex;
use telechart_scribe::template::TemplateSection;
use telechart_scribe::{Age, PatientFacts, SectionSource, Template, Templates, VisitInput, transcript};

#[derive(Subcommand)]
pub enum ScribeCommand {
    /// Draft every dialogue of a CSV and write the notes for scoring.
    Eval {
        /// The dialogues: a CSV with a `dialogue` column (ACI-Bench or MTS-Dialog layout).
        #[arg(long)]
        dialogues: PathBuf,
        /// Where to write the drafted notes (CSV).
        #[arg(long)]
        out: PathBuf,
        /// The drafting engine.
        #[arg(long, value_enum, default_value_t = EngineName::Builtin)]
        engine: EngineName,
        /// The note template (ACI-Bench layout only): general-follow-up, urgent-virtual-consult,
        /// chronic-care, behavioural-health, paediatric.
        #[arg(long, default_value = "general-follow-up")]
        template: String,
        /// The file's layout.
        #[arg(long, value_enum, default_value_t = Format::AciBench)]
        format: Format,
        /// What the EHR would supply beside the conversation, per encounter: a CSV in the
        /// ACI-Bench metadata layout (`encounter_id, patient_gender, patient_age,
        /// patient_firstname, patient_familyname, cc, 2nd_complaints`) — the Patient resource's
        /// name, gender and age, the Appointment's reason, the chart's problems.
        #[arg(long)]
        metadata: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum EngineName {
    Builtin,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    AciBench,
    MtsDialog,
}

pub fn run(which: ScribeCommand) -> anyhow::Result<ExitCode> {
    match which {
        ScribeCommand::Eval { dialogues, out, engine: EngineName::Builtin, template, format, metadata } => {
            let facts = match metadata {
                Some(path) => read_metadata(&path)?,
                None => HashMap::new(),
            };
            eval(&dialogues, &out, &template, format, &facts)
        }
    }
}

/// The single section an MTS-Dialog row asks for, as a one-section template.
fn mts_template(header: &str) -> Template {
    let source = match header.to_ascii_uppercase().as_str() {
        "CC" => SectionSource::ChiefComplaint,
        "ROS" => SectionSource::ReviewOfSystems,
        "MEDICATIONS" => SectionSource::Medications,
        "FAM/SOCHX" => SectionSource::SocialHistory,
        "EXAM" => SectionSource::Exam,
        "LABS" | "IMAGING" => SectionSource::Results,
        "ASSESSMENT" | "PLAN" | "DIAGNOSIS" | "DISPOSITION" | "EDCOURSE" => SectionSource::AssessmentAndPlan,
        _ => SectionSource::History,
    };
    Template {
        id: format!("mts-{}", header.to_ascii_lowercase()),
        title: header.to_owned(),
        visit_types: Vec::new(),
        sections: vec![TemplateSection {
            id: "section".into(),
            title: header.to_owned(),
            source,
            required: false,
            max_words: Some(120),
        }],
    }
}

/// Encounter id → what the chart says of the patient.
fn read_metadata(path: &PathBuf) -> anyhow::Result<HashMap<String, PatientFacts>> {
    let mut reader = csv::Reader::from_path(path).with_context(|| format!("reading {}", path.display()))?;
    let headers = reader.headers().with_context(|| format!("{}: no header row", path.display()))?.clone();
    let column = |name: &str| headers.iter().position(|h| h.trim() == name);
    let Some(id_col) = column("encounter_id") else {
        bail!("{}: no \"encounter_id\" column", path.display());
    };
    let mut out = HashMap::new();
    for (n, row) in reader.records().enumerate() {
        let row = row.with_context(|| format!("{}: row {}", path.display(), n + 1))?;
        let field = |name: &str| {
            column(name).and_then(|c| row.get(c)).map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned)
        };
        let name = [field("patient_firstname"), field("patient_familyname")]
            .into_iter()
            .flatten()
            .map(|n| title_case(&n))
            .collect::<Vec<_>>()
            .join(" ");
        let sex = match field("patient_gender").as_deref().map(str::to_ascii_lowercase).as_deref() {
            Some("female") => Some(Sex::Female),
            Some("male") => Some(Sex::Male),
            _ => None,
        };
        let age = match field("patient_age") {
            Some(a) => match Age::parse(&a) {
                Some(age) => Some(age),
                None => bail!("{}: row {}: patient_age {a:?} is not an age in years or months", path.display(), n + 1),
            },
            None => None,
        };
        let problems = field("2nd_complaints")
            .map(|p| p.split(';').map(str::trim).filter(|p| !p.is_empty()).map(str::to_owned).collect())
            .unwrap_or_default();
        let facts =
            PatientFacts { name: (!name.is_empty()).then_some(name), sex, age, visit_reason: field("cc"), problems };
        out.insert(row.get(id_col).unwrap_or_default().trim().to_owned(), facts);
    }
    Ok(out)
}

fn title_case(name: &str) -> String {
    name.split_whitespace().map(telechart_scribe::language::capitalize).collect::<Vec<_>>().join(" ")
}

fn eval(
    dialogues: &PathBuf,
    out: &PathBuf,
    template: &str,
    format: Format,
    facts: &HashMap<String, PatientFacts>,
) -> anyhow::Result<ExitCode> {
    let engine = Builtin::new()?;
    let templates = Templates::builtin()?;
    let note_template = templates.get(template)?.clone();
    let mut reader = csv::Reader::from_path(dialogues).with_context(|| format!("reading {}", dialogues.display()))?;
    let headers = reader.headers().with_context(|| format!("{}: no header row", dialogues.display()))?.clone();
    let column = |name: &str| headers.iter().position(|h| h.trim() == name);
    let (id_name, note_name) = match format {
        Format::AciBench => ("encounter_id", "note"),
        Format::MtsDialog => ("ID", "section_text"),
    };
    let Some(id_col) = column(id_name) else {
        bail!(
            "{}: no {id_name:?} column (columns: {})",
            dialogues.display(),
            headers.iter().collect::<Vec<_>>().join(", ")
        );
    };
    let Some(dialogue_col) = column("dialogue") else {
        bail!("{}: no \"dialogue\" column", dialogues.display());
    };
    let header_col = column("section_header");
    if format == Format::MtsDialog && header_col.is_none() {
        bail!("{}: the mts-dialog layout needs a \"section_header\" column", dialogues.display());
    }
    let rows: Vec<csv::StringRecord> =
        reader.records().collect::<Result<_, _>>().with_context(|| format!("reading {}", dialogues.display()))?;
    let bar = indicatif::ProgressBar::new(rows.len() as u64);
    let mut writer = csv::Writer::from_path(out).with_context(|| format!("writing {}", out.display()))?;
    writer.write_record([id_name, note_name])?;
    let (mut drafted, mut sentences, mut flagged, mut refused) = (0usize, 0usize, 0usize, 0usize);
    let (mut cited, mut numbers, mut numbers_said, mut unflagged_unsupported) = (0usize, 0usize, 0usize, 0usize);
    let mut spent = Duration::ZERO;
    let mut slowest = Duration::ZERO;
    for (n, row) in rows.iter().enumerate() {
        bar.inc(1);
        let id = row.get(id_col).unwrap_or_default();
        let dialogue = row.get(dialogue_col).unwrap_or_default();
        let started = Instant::now();
        let note = match transcript::parse(dialogue.as_bytes()) {
            Ok(turns) => {
                let template = match (format, header_col.and_then(|c| row.get(c))) {
                    (Format::MtsDialog, Some(header)) => mts_template(header),
                    _ => note_template.clone(),
                };
                let input = VisitInput { turns, inputs: Vec::new(), patient: facts.get(id.trim()).cloned() };
                let draft = engine.draft(&input, &template);
                drafted += 1;
                sentences += draft.sentences().count();
                cited += draft.sentences().filter(|s| !s.evidence.is_empty()).count();
                // Numbers the draft states that its own dialogue holds.
                let said: std::collections::HashSet<String> =
                    telechart_scribe::evidence::numbers(dialogue).into_iter().collect();
                for s in draft.sentences() {
                    for n in telechart_scribe::evidence::numbers(&s.text) {
                        numbers += 1;
                        numbers_said += usize::from(said.contains(&n));
                    }
                    unflagged_unsupported += usize::from(s.flags.is_empty() && s.evidence.is_empty());
                }
                flagged += draft.flagged();
                match format {
                    Format::AciBench => draft.to_text(),
                    // The section's text alone, as the references hold it.
                    Format::MtsDialog => {
                        draft.sentences().map(|s| s.text.trim_start_matches("• ")).collect::<Vec<_>>().join(" ")
                    }
                }
            }
            Err(e) => {
                refused += 1;
                bar.println(format!("row {} ({id}): {e}", n + 1));
                String::new()
            }
        };
        let took = started.elapsed();
        spent += took;
        slowest = slowest.max(took);
        writer.write_record([id, note.as_str()])?;
    }
    writer.flush()?;
    bar.finish_and_clear();
    let per = if drafted > 0 { spent / drafted as u32 } else { Duration::ZERO };
    let share = |a: usize, b: usize| if b == 0 { 1.0 } else { a as f64 / b as f64 };
    println!(
        "{drafted} drafts ({refused} refused) → {}: {sentences} sentences, {:.1}% with evidence links, {flagged} flagged for the clinician, {unflagged_unsupported} without evidence unflagged; {numbers} numbers stated, {:.3} of them in their own dialogue; {:.2} ms per draft, slowest {:.2} ms",
        out.display(),
        100.0 * share(cited, sentences),
        share(numbers_said, numbers),
        per.as_secs_f64() * 1e3,
        slowest.as_secs_f64() * 1e3
    );
    Ok(if refused > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
