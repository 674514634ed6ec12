//! Visit-note drafting with evidence: a transcript (and the visit's vitals, diagnoses, orders and
//! the clinician's own input) → a sectioned draft in which every sentence names the turns or
//! inputs it rests on, checked by code for numbers, medications, doses and sides it cannot show.
//! No I/O here: the server and the CLI hand inputs in and take drafts out.

pub mod builtin;
pub mod care_plan;
pub mod evidence;
pub mod knowledge;
pub mod language;
pub mod llm;
pub mod template;
pub mod transcript;

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

pub use evidence::{Flag, FlagKind};
pub use template::{SectionSource, Template, Templates};
pub use transcript::{Role, Turn};

#[derive(Debug, thiserror::Error)]
pub enum ScribeError {
    #[error("transcript: {0}")]
    Transcript(String),
    #[error("template {0}")]
    Template(String),
    #[error("lexicon: {0}")]
    Lexicon(String),
    #[error("engine: {0}")]
    Engine(String),
    #[error("care knowledge base: {0}")]
    Knowledge(String),
}

/// A note drafter that answers from what it is handed, with no I/O (the builtin engine). The
/// OpenAI-compatible engine is two halves instead ([`llm`]): the request to send and the reading
/// of the answer, with the HTTP between them left to the caller.
pub trait Engine {
    /// As the draft and the Provenance's Device name it.
    fn name(&self) -> &str;
    fn draft(&self, input: &VisitInput, template: &Template) -> Draft;
}

/// A structured input of the visit a sentence can cite (vitals, diagnoses, orders, the
/// clinician's own words).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StructuredInput {
    /// The artifact (or other) id the evidence link names.
    pub id: String,
    pub kind: InputKind,
    /// What it says, as the note may repeat it (`Blood pressure 128/82 mmHg`, `E11.9 Type 2
    /// diabetes mellitus without complications`).
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InputKind {
    /// Demographics, the visit's reason and the chart's problems ([`PatientFacts`]).
    Patient,
    Vital,
    Diagnosis,
    Order,
    ClinicianNote,
}

/// Everything the drafter reads for one visit.
#[derive(Debug, Clone, Default)]
pub struct VisitInput {
    pub turns: Vec<Turn>,
    pub inputs: Vec<StructuredInput>,
    /// Who the patient is, as the EHR's Patient resource says.
    pub patient: Option<PatientFacts>,
}

/// The patient's demographics from the chart (never guessed from the conversation when these
/// are known). Each is also a structured input with `id` = [`PatientFacts::INPUT_ID`], so that
/// the sentences built on them cite it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PatientFacts {
    pub name: Option<String>,
    pub sex: Option<language::Sex>,
    pub age: Option<Age>,
    /// The visit's reason (the Appointment's reasonCode or description).
    pub visit_reason: Option<String>,
    /// Active problems on the chart.
    pub problems: Vec<String>,
}

/// Age as a note states it: months under two years, years after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Age {
    Years(u32),
    Months(u32),
}

impl Age {
    /// `50-year-old`, `22-month-old`.
    pub fn adjective(self) -> String {
        match self {
            Age::Years(y) => format!("{y}-year-old"),
            Age::Months(m) => format!("{m}-month-old"),
        }
    }

    /// `69`, `69.0`, `22-month`, `22 months`, `3 years`.
    pub fn parse(text: &str) -> Option<Age> {
        let t = text.trim().to_ascii_lowercase();
        let (number, unit) = match t.find(|c: char| !c.is_ascii_digit() && c != '.') {
            Some(i) => (&t[..i], t[i..].trim_matches(|c: char| c == '-' || c.is_whitespace())),
            None => (t.as_str(), ""),
        };
        let value: f64 = number.parse().ok()?;
        if value.fract() != 0.0 || !(0.0..=130.0).contains(&value) {
            return None;
        }
        let value = value as u32;
        match unit {
            "" | "year" | "years" | "y" | "yo" => Some(Age::Years(value)),
            "month" | "months" | "mo" => Some(Age::Months(value)),
            _ => None,
        }
    }
}

impl PatientFacts {
    pub const INPUT_ID: &'static str = "patient";

    /// The structured input that sentences built on these facts cite.
    pub fn as_input(&self) -> StructuredInput {
        let sex = match self.sex {
            Some(language::Sex::Female) => "female",
            Some(language::Sex::Male) => "male",
            _ => "",
        };
        let mut text = vec![self.name.clone().unwrap_or_default(), sex.to_owned()];
        if let Some(age) = self.age {
            text.push(age.adjective());
        }
        if let Some(reason) = &self.visit_reason {
            text.push(format!("reason for visit: {reason}"));
        }
        if !self.problems.is_empty() {
            text.push(format!("problems: {}", self.problems.join(", ")));
        }
        StructuredInput { id: Self::INPUT_ID.into(), kind: InputKind::Patient, text: text.join("; ") }
    }
}

/// What one sentence rests on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Evidence {
    /// A transcript turn, by index.
    Turn { turn: usize },
    /// A structured input, by id.
    Input { id: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sentence {
    pub text: String,
    pub evidence: Vec<Evidence>,
    /// Empty when code found every fact in the evidence.
    pub flags: Vec<Flag>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Section {
    pub id: String,
    pub title: String,
    pub sentences: Vec<Sentence>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Draft {
    pub engine: String,
    pub template: String,
    pub sections: Vec<Section>,
    /// Required sections the visit gave nothing for, by title: the draft says so instead of
    /// inventing them.
    pub missing: Vec<String>,
}

impl Draft {
    /// The note as plain text: each section's title on its own line, then its sentences.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for section in &self.sections {
            if !out.is_empty() {
                out.push_str("\n\n");
            }
            out.push_str(&section.title);
            out.push_str("\n\n");
            if section.sentences.is_empty() {
                out.push_str("Not discussed during this visit.");
            }
            let mut first = true;
            for s in &section.sentences {
                if !first {
                    out.push(if s.text.starts_with("• ") || section_is_list(section) { '\n' } else { ' ' });
                }
                out.push_str(&s.text);
                first = false;
            }
        }
        out.push('\n');
        out
    }

    pub fn sentences(&self) -> impl Iterator<Item = &Sentence> {
        self.sections.iter().flat_map(|s| s.sentences.iter())
    }

    pub fn flagged(&self) -> usize {
        self.sentences().filter(|s| !s.flags.is_empty()).count()
    }

    /// Re-runs the evidence check on every sentence (after an edit, or on an engine's own
    /// output): what each sentence states against what it cites.
    pub fn check(&mut self, input: &VisitInput, lexicon: &Lexicon) {
        let turns: HashMap<usize, &str> = input.turns.iter().map(|t| (t.id, t.text.as_str())).collect();
        let facts = input.patient.as_ref().map(PatientFacts::as_input);
        let inputs: HashMap<&str, &str> =
            input.inputs.iter().chain(facts.iter()).map(|i| (i.id.as_str(), i.text.as_str())).collect();
        for section in &mut self.sections {
            for sentence in &mut section.sentences {
                let cited: Vec<&str> = sentence
                    .evidence
                    .iter()
                    .filter_map(|e| match e {
                        Evidence::Turn { turn } => turns.get(turn).copied(),
                        Evidence::Input { id } => inputs.get(id.as_str()).copied(),
                    })
                    .collect();
                sentence.flags = evidence::check(&sentence.text, &cited, lexicon);
            }
        }
    }
}

fn section_is_list(section: &Section) -> bool {
    section.sentences.iter().any(|s| s.text.contains(": "))
}

/// The drafter's vocabulary (`data/lexicon.toml`).
#[derive(Debug, Clone, Deserialize)]
pub struct Lexicon {
    pub medications: Vec<String>,
    pub dose_units: Vec<String>,
    pub laterality: Vec<String>,
    /// Review-of-systems system → symptom phrases.
    pub ros: std::collections::BTreeMap<String, Vec<String>>,
    /// Exam system → words that name it.
    pub exam: std::collections::BTreeMap<String, Vec<String>>,
    #[serde(skip)]
    medication_set: HashSet<String>,
}

impl Lexicon {
    pub fn builtin() -> Result<Lexicon, ScribeError> {
        let mut lexicon: Lexicon =
            toml::from_str(include_str!("../data/lexicon.toml")).map_err(|e| ScribeError::Lexicon(e.to_string()))?;
        lexicon.medication_set = lexicon.medications.iter().cloned().collect();
        Ok(lexicon)
    }

    pub fn is_medication(&self, word: &str) -> bool {
        self.medication_set.contains(word)
    }
}
