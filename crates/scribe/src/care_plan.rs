//! The care-plan and after-visit-summary drafter (the builtin, deterministic engine): the visit's
//! diagnoses, orders and signed note, and the patient's chart as read at draft time → goals,
//! activities and red flags in the patient's language, each item naming its evidence (a
//! diagnosis, an order, a note sentence, a chart resource) and, for knowledge-base advice, its
//! public source.
//!
//! It never invents: a diagnosis the knowledge base lacks gets no instructions but a gap saying
//! so; an item the patient's allergies, medications or conditions rule out is left out and
//! flagged; where the chart could not be read, advice that depends on it is left out too.

use serde::{Deserialize, Serialize};

use crate::knowledge::{ActivityKind, Condition, Knowledge, Language, RedFlagAction};

/// A visit diagnosis (its artifact id is the evidence).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnosis {
    pub artifact_id: String,
    pub code: String,
    pub display: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OrderKind {
    Lab,
    Imaging,
    Referral,
    Medication,
}

/// An order placed in the visit: the ServiceRequest or MedicationRequest it became.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub artifact_id: String,
    pub kind: OrderKind,
    /// As the patient should read it (`Hemoglobin A1c`, `lisinopril 10 mg once a day`).
    pub text: String,
}

/// A resource of the patient's chart (`AllergyIntolerance/12`) and the words it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChartEntry {
    pub reference: String,
    pub text: String,
    /// ICD-10-CM code, for a Condition.
    pub code: Option<String>,
}

/// The chart as read at draft time; `None` for a read that failed, which the draft says.
#[derive(Debug, Clone, Default)]
pub struct Chart {
    pub conditions: Option<Vec<ChartEntry>>,
    pub medications: Option<Vec<ChartEntry>>,
    pub allergies: Option<Vec<ChartEntry>>,
    /// `Patient.communication` (preferred first), BCP-47.
    pub languages: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct CarePlanInput {
    pub diagnoses: Vec<Diagnosis>,
    pub orders: Vec<Order>,
    /// The signed note, as sentences; a sentence's index is its evidence.
    pub note_sentences: Vec<String>,
    pub chart: Chart,
}

/// What an item rests on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "ref", rename_all = "kebab-case")]
pub enum Evidence {
    Diagnosis(String),
    Order(String),
    NoteSentence(usize),
    Chart(String),
    /// A public page the instruction follows.
    Source(String),
    /// The signing clinician's own words, added at review.
    Clinician(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Section {
    Goal,
    FollowUp,
    SelfMonitoring,
    Medication,
    Lifestyle,
    /// Call the care team.
    CallUs,
    /// Go to the emergency department, call 911.
    Emergency,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanItem {
    pub section: Section,
    /// In the patient's language.
    pub text: String,
    /// The measurable target of a goal.
    pub measure: Option<String>,
    /// The knowledge-base condition it comes from, if any.
    pub condition: Option<String>,
    pub evidence: Vec<Evidence>,
    /// For a follow-up with a timing: days from the visit until it is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_in_days: Option<u32>,
}

/// Advice the patient's chart rules out: left out of the plan, and shown to the clinician.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conflict {
    pub condition: String,
    /// The advice as the knowledge base words it (English, for the clinician).
    pub advice: String,
    pub reason: String,
    pub evidence: Vec<Evidence>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CarePlanDraft {
    pub language: String,
    /// The conditions the plan addresses (knowledge-base ids) and the diagnoses behind them.
    pub addresses: Vec<(String, String)>,
    pub items: Vec<PlanItem>,
    pub conflicts: Vec<Conflict>,
    /// What the draft could not do, in words for the clinician.
    pub gaps: Vec<String>,
}

/// Drafts the plan in the patient's preferred language the knowledge base has (else English,
/// said as a gap).
pub fn draft(knowledge: &Knowledge, input: &CarePlanInput) -> CarePlanDraft {
    let mut gaps = Vec::new();
    let language = match input.chart.languages.iter().find_map(|t| Language::from_tag(t)) {
        Some(l) => l,
        None => {
            if let Some(first) = input.chart.languages.first() {
                gaps.push(format!("the patient's language ({first}) is not in the knowledge base: written in English"));
            }
            Language::English
        }
    };
    if input.diagnoses.is_empty() {
        gaps.push("the visit has no diagnosis: no condition-specific instructions were drafted".into());
    }
    let mut addresses: Vec<(&Condition, &Diagnosis)> = Vec::new();
    for d in &input.diagnoses {
        let matched = knowledge.conditions_for(&[d.code.as_str()]);
        if matched.is_empty() {
            gaps.push(format!(
                "{} {} is not in the care knowledge base: no instructions were drafted for it",
                d.code, d.display
            ));
        }
        for c in matched {
            if !addresses.iter().any(|(a, _)| a.id == c.id) {
                addresses.push((c, d));
            }
        }
    }
    for (what, read) in [
        ("allergies", input.chart.allergies.is_none()),
        ("medications", input.chart.medications.is_none()),
        ("conditions", input.chart.conditions.is_none()),
    ] {
        if read {
            gaps.push(format!("the chart's {what} could not be read: advice that depends on them was left out"));
        }
    }

    let mut items = Vec::new();
    let mut conflicts = Vec::new();
    for (condition, diagnosis) in &addresses {
        let because = |own: Option<&str>| {
            vec![
                Evidence::Diagnosis(diagnosis.artifact_id.clone()),
                Evidence::Source(condition.source_for(own, language).to_owned()),
            ]
        };
        for g in &condition.goal {
            items.push(PlanItem {
                section: Section::Goal,
                text: pick(language, &g.en, &g.es),
                measure: g.measure.clone(),
                condition: Some(condition.id.clone()),
                evidence: because(g.source.as_deref()),
                due_in_days: None,
            });
        }
        for a in &condition.activity {
            match ruled_out(knowledge, input, &addresses, &a.avoid_if) {
                Ruling::Fine => items.push(PlanItem {
                    section: match a.kind {
                        ActivityKind::FollowUp => Section::FollowUp,
                        ActivityKind::SelfMonitoring => Section::SelfMonitoring,
                        ActivityKind::Medication => Section::Medication,
                        ActivityKind::Lifestyle => Section::Lifestyle,
                    },
                    text: pick(language, &a.en, &a.es),
                    measure: None,
                    condition: Some(condition.id.clone()),
                    evidence: because(a.source.as_deref()),
                    due_in_days: None,
                }),
                Ruling::Conflict { reason, evidence } => {
                    conflicts.push(Conflict { condition: condition.id.clone(), advice: a.en.clone(), reason, evidence })
                }
                Ruling::Unchecked(what) => conflicts.push(Conflict {
                    condition: condition.id.clone(),
                    advice: a.en.clone(),
                    reason: format!("left out: the chart's {what} could not be read to check it"),
                    evidence: vec![Evidence::Diagnosis(diagnosis.artifact_id.clone())],
                }),
            }
        }
        for r in &condition.red_flag {
            let text = pick(language, &r.en, &r.es);
            // One warning once, however many conditions give it (988, chest pain).
            if items.iter().any(|i: &PlanItem| i.text == text) {
                continue;
            }
            items.push(PlanItem {
                section: match r.when {
                    RedFlagAction::Call => Section::CallUs,
                    RedFlagAction::Emergency => Section::Emergency,
                },
                text,
                measure: None,
                condition: Some(condition.id.clone()),
                evidence: because(r.source.as_deref()),
                due_in_days: None,
            });
        }
    }
    items.extend(order_items(language, &input.orders));
    items.extend(follow_up_items(language, &input.note_sentences));
    CarePlanDraft {
        language: language.tag().to_owned(),
        addresses: addresses.iter().map(|(c, d)| (c.id.clone(), d.artifact_id.clone())).collect(),
        items,
        conflicts,
        gaps,
    }
}

/// One part of the after-visit summary: its heading and lines, in the plan's language.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SummarySection {
    pub section: Section,
    pub heading: &'static str,
    pub lines: Vec<String>,
}

impl CarePlanDraft {
    /// The after-visit summary: the plan's items under plain headings, most urgent last so the
    /// warnings close the page; empty sections left out.
    pub fn after_visit_summary(&self) -> Vec<SummarySection> {
        let spanish = self.language == "es";
        let order = [
            (Section::Goal, "Your goals", "Sus metas"),
            (Section::FollowUp, "Your next steps", "Sus próximos pasos"),
            (Section::Medication, "Your medicines", "Sus medicinas"),
            (Section::SelfMonitoring, "Keep track at home", "Lleve la cuenta en casa"),
            (Section::Lifestyle, "Every day", "Cada día"),
            (Section::CallUs, "Call us if", "Llámenos si"),
            (Section::Emergency, "Get help now if", "Busque ayuda ya si"),
        ];
        order
            .into_iter()
            .filter_map(|(section, en, es)| {
                let lines: Vec<String> =
                    self.items.iter().filter(|i| i.section == section).map(|i| i.text.clone()).collect();
                (!lines.is_empty()).then_some(SummarySection { section, heading: if spanish { es } else { en }, lines })
            })
            .collect()
    }

    /// The summary as plain text (headings on their own lines), e.g. for the DocumentReference.
    pub fn summary_text(&self) -> String {
        let mut text = String::new();
        for part in self.after_visit_summary() {
            text.push_str(part.heading);
            text.push_str(".\n");
            for line in &part.lines {
                text.push_str(line);
                text.push('\n');
            }
            text.push('\n');
        }
        text
    }
}

fn pick(language: Language, en: &str, es: &str) -> String {
    match language {
        Language::English => en.to_owned(),
        Language::Spanish => es.to_owned(),
    }
}

enum Ruling {
    Fine,
    Conflict {
        reason: String,
        evidence: Vec<Evidence>,
    },
    /// The chart part it depends on could not be read.
    Unchecked(&'static str),
}

/// Whether `avoid_if` rules the item out for this patient, and on what evidence.
fn ruled_out(
    knowledge: &Knowledge,
    input: &CarePlanInput,
    addresses: &[(&Condition, &Diagnosis)],
    avoid_if: &[String],
) -> Ruling {
    for avoid in avoid_if {
        let Some((what, name)) = avoid.split_once(':') else { continue };
        let (entries, label) = match what {
            "allergy" => (input.chart.allergies.as_ref(), "allergies"),
            "medication" => (input.chart.medications.as_ref(), "medications"),
            "condition" => {
                // A condition on this visit's diagnoses, or on the chart.
                if let Some((_, d)) = addresses.iter().find(|(c, _)| c.id == name) {
                    return Ruling::Conflict {
                        reason: format!("the patient has {} ({})", d.display, d.code),
                        evidence: vec![Evidence::Diagnosis(d.artifact_id.clone())],
                    };
                }
                (input.chart.conditions.as_ref(), "conditions")
            }
            _ => continue,
        };
        let Some(entries) = entries else { return Ruling::Unchecked(label) };
        for entry in entries {
            let hit = match what {
                "condition" => {
                    let condition = knowledge.condition.iter().find(|c| c.id == name);
                    entry.code.as_deref().is_some_and(|code| condition.is_some_and(|c| c.matches(code)))
                }
                _ => knowledge.drug_classes_of(&entry.text).contains(&name),
            };
            if hit {
                let reason = match what {
                    "allergy" => format!("allergy to {} ({name})", entry.text),
                    "medication" => format!("takes {} ({name})", entry.text),
                    _ => format!("the chart lists {}", entry.text),
                };
                return Ruling::Conflict { reason, evidence: vec![Evidence::Chart(entry.reference.clone())] };
            }
        }
    }
    Ruling::Fine
}

/// What the visit ordered, as tasks for the patient.
fn order_items(language: Language, orders: &[Order]) -> Vec<PlanItem> {
    orders
        .iter()
        .map(|o| {
            let (section, en, es) = match o.kind {
                OrderKind::Lab => (
                    Section::FollowUp,
                    format!("Get your lab test: {}.", o.text),
                    format!("Hágase su examen: {}.", o.text),
                ),
                OrderKind::Imaging => (
                    Section::FollowUp,
                    format!("Get your imaging test: {}.", o.text),
                    format!("Hágase su estudio: {}.", o.text),
                ),
                OrderKind::Referral => (
                    Section::FollowUp,
                    format!("See the specialist: {}.", o.text),
                    format!("Vea al especialista: {}.", o.text),
                ),
                OrderKind::Medication => {
                    (Section::Medication, format!("New medicine: {}.", o.text), format!("Medicina nueva: {}.", o.text))
                }
            };
            PlanItem {
                section,
                text: pick(language, &en, &es),
                measure: None,
                condition: None,
                evidence: vec![Evidence::Order(o.artifact_id.clone())],
                due_in_days: None,
            }
        })
        .collect()
}

/// A follow-up the note states ("follow up in 2 weeks"), with its timing, citing the sentence.
fn follow_up_items(language: Language, sentences: &[String]) -> Vec<PlanItem> {
    let mut items = Vec::new();
    for (index, sentence) in sentences.iter().enumerate() {
        let lower = sentence.to_lowercase();
        if !(lower.contains("follow up") || lower.contains("follow-up") || lower.contains("return")) {
            continue;
        }
        let Some((count, unit)) = timing(&lower) else { continue };
        let (en_unit, es_unit) = match (unit, count == 1) {
            ("day", true) => ("day", "día"),
            ("day", false) => ("days", "días"),
            ("week", true) => ("week", "semana"),
            ("week", false) => ("weeks", "semanas"),
            ("month", true) => ("month", "mes"),
            _ => ("months", "meses"),
        };
        items.push(PlanItem {
            section: Section::FollowUp,
            text: pick(
                language,
                &format!("Come back for a follow-up visit in {count} {en_unit}."),
                &format!("Vuelva a una cita de control en {count} {es_unit}."),
            ),
            measure: None,
            condition: None,
            evidence: vec![Evidence::NoteSentence(index)],
            due_in_days: Some(match unit {
                "day" => count,
                "week" => count * 7,
                _ => count * 30,
            }),
        });
        break;
    }
    items
}

/// `in 2 weeks`, `in three months`, `in 10 days` → (2, "week").
fn timing(lower: &str) -> Option<(u32, &'static str)> {
    let words: Vec<&str> = lower.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).collect();
    words.windows(2).find_map(|w| {
        let count = w[0].parse::<u32>().ok().or_else(|| {
            ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"]
                .iter()
                .position(|n| *n == w[0])
                .and_then(|p| u32::try_from(p + 1).ok())
        })?;
        let unit = match w[1].trim_end_matches('s') {
            "day" => "day",
            "week" => "week",
            "month" => "month",
            _ => return None,
        };
        (1..=365).contains(&count).then_some((count, unit))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diagnosis(id: &str, code: &str, display: &str) -> Diagnosis {
        Diagnosis { artifact_id: id.into(), code: code.into(), display: display.into() }
    }

    fn chart() -> Chart {
        Chart { conditions: Some(vec![]), medications: Some(vec![]), allergies: Some(vec![]), languages: vec![] }
    }

    #[test]
    fn every_item_carries_evidence_and_knowledge_base_advice_its_source() {
        let k = Knowledge::builtin().unwrap();
        let input = CarePlanInput {
            diagnoses: vec![
                diagnosis("dx-1", "I10", "Essential hypertension"),
                diagnosis("dx-2", "E11.9", "Type 2 diabetes"),
            ],
            orders: vec![Order { artifact_id: "ord-1".into(), kind: OrderKind::Lab, text: "Hemoglobin A1c".into() }],
            note_sentences: vec![
                "Blood pressure is above goal.".into(),
                "Follow up in 2 weeks with home readings.".into(),
            ],
            chart: chart(),
        };
        let draft = draft(&k, &input);
        assert_eq!(draft.language, "en");
        assert!(draft.gaps.is_empty(), "{:?}", draft.gaps);
        assert_eq!(
            draft.addresses,
            [("hypertension".to_owned(), "dx-1".to_owned()), ("type-2-diabetes".to_owned(), "dx-2".to_owned())]
        );
        assert!(draft.items.iter().all(|i| !i.evidence.is_empty()), "100 % of items carry evidence");
        for item in draft.items.iter().filter(|i| i.condition.is_some()) {
            assert!(
                item.evidence.iter().any(|e| matches!(e, Evidence::Source(s) if s.starts_with("https://"))),
                "{item:?}"
            );
            assert!(item.evidence.iter().any(|e| matches!(e, Evidence::Diagnosis(_))), "{item:?}");
        }
        let goal = draft
            .items
            .iter()
            .find(|i| i.section == Section::Goal && i.condition.as_deref() == Some("hypertension"))
            .unwrap();
        assert_eq!(goal.measure.as_deref(), Some("home blood pressure < 130/80 mm[Hg]"));
        let lab = draft.items.iter().find(|i| i.evidence == [Evidence::Order("ord-1".into())]).unwrap();
        assert_eq!(lab.text, "Get your lab test: Hemoglobin A1c.");
        let follow_up = draft.items.iter().find(|i| i.evidence == [Evidence::NoteSentence(1)]).unwrap();
        assert_eq!(follow_up.text, "Come back for a follow-up visit in 2 weeks.");
        assert!(draft.items.iter().any(|i| i.section == Section::Emergency));
        assert!(draft.items.iter().any(|i| i.section == Section::CallUs));
    }

    #[test]
    fn an_nsaid_allergy_or_an_anticoagulant_rules_out_nsaid_advice_and_is_flagged() {
        let k = Knowledge::builtin().unwrap();
        let mut input =
            CarePlanInput { diagnoses: vec![diagnosis("dx-1", "S93.401A", "Sprain of ankle")], ..Default::default() };
        input.chart = chart();
        let plain = draft(&k, &input);
        assert!(plain.items.iter().any(|i| i.text.contains("ibuprofen")), "no conflict: the advice stands");
        assert!(plain.conflicts.is_empty());

        input.chart.allergies =
            Some(vec![ChartEntry { reference: "AllergyIntolerance/a1".into(), text: "Ibuprofen".into(), code: None }]);
        let allergic = draft(&k, &input);
        assert!(!allergic.items.iter().any(|i| i.text.contains("ibuprofen")), "never silently kept");
        assert_eq!(allergic.conflicts.len(), 1, "{:?}", allergic.conflicts);
        assert_eq!(allergic.conflicts[0].evidence, [Evidence::Chart("AllergyIntolerance/a1".into())]);
        assert!(allergic.conflicts[0].reason.contains("allergy to Ibuprofen"));
        assert!(allergic.items.iter().any(|i| i.text.contains("acetaminophen")), "other advice stays");

        input.chart.allergies = Some(vec![]);
        input.chart.medications = Some(vec![ChartEntry {
            reference: "MedicationRequest/m1".into(),
            text: "Apixaban 5 MG Oral Tablet".into(),
            code: None,
        }]);
        let anticoagulated = draft(&k, &input);
        assert!(anticoagulated.conflicts[0].reason.contains("anticoagulant"), "{:?}", anticoagulated.conflicts);

        input.chart.medications = Some(vec![]);
        input.chart.conditions = Some(vec![ChartEntry {
            reference: "Condition/c1".into(),
            text: "Chronic kidney disease stage 3".into(),
            code: Some("N18.30".into()),
        }]);
        let kidney = draft(&k, &input);
        assert_eq!(kidney.conflicts[0].evidence, [Evidence::Chart("Condition/c1".into())]);
    }

    #[test]
    fn spanish_speakers_get_spanish_and_an_unknown_language_says_so() {
        let k = Knowledge::builtin().unwrap();
        let mut input = CarePlanInput {
            diagnoses: vec![diagnosis("dx-1", "J06.9", "Acute URI")],
            chart: chart(),
            ..Default::default()
        };
        input.chart.languages = vec!["es-MX".into()];
        let es = draft(&k, &input);
        assert_eq!(es.language, "es");
        assert!(es.items.iter().any(|i| i.text == "Descanse y tome muchos líquidos."));
        assert!(es.items.iter().all(|i| {
            i.evidence
                .iter()
                .all(|e| !matches!(e, Evidence::Source(s) if !s.contains("/spanish/") && s.contains("medlineplus")))
        }));
        input.chart.languages = vec!["vi".into()];
        let vi = draft(&k, &input);
        assert_eq!(vi.language, "en");
        assert!(vi.gaps.iter().any(|g| g.contains("(vi)")), "{:?}", vi.gaps);
    }

    #[test]
    fn what_it_cannot_do_is_said_never_invented() {
        let k = Knowledge::builtin().unwrap();
        // No diagnosis: nothing condition-specific.
        let none = draft(&k, &CarePlanInput { chart: chart(), ..Default::default() });
        assert!(none.items.is_empty());
        assert!(none.gaps.iter().any(|g| g.contains("no diagnosis")));
        // A diagnosis the knowledge base lacks: a gap, no instruction.
        let unknown = draft(
            &k,
            &CarePlanInput {
                diagnoses: vec![diagnosis("dx-1", "Q90.9", "Down syndrome")],
                chart: chart(),
                ..Default::default()
            },
        );
        assert!(unknown.items.is_empty());
        assert!(unknown.gaps.iter().any(|g| g.contains("Q90.9") && g.contains("not in the care knowledge base")));
        // A chart read that failed: advice depending on it is left out, and why.
        let unread =
            draft(&k, &CarePlanInput { diagnoses: vec![diagnosis("dx-1", "M10.9", "Gout")], ..Default::default() });
        assert!(!unread.items.iter().any(|i| i.text.contains("naproxen")));
        assert!(unread.conflicts.iter().any(|c| c.reason.contains("could not be read")));
        assert!(unread.gaps.iter().any(|g| g.contains("allergies could not be read")));
    }

    #[test]
    fn the_summary_groups_items_under_plain_headings_warnings_last() {
        let k = Knowledge::builtin().unwrap();
        let mut input = CarePlanInput {
            diagnoses: vec![diagnosis("dx-1", "I10", "Hypertension")],
            chart: chart(),
            ..Default::default()
        };
        let summary = draft(&k, &input).after_visit_summary();
        let headings: Vec<&str> = summary.iter().map(|s| s.heading).collect();
        assert_eq!(headings, ["Your goals", "Keep track at home", "Every day", "Call us if", "Get help now if"]);
        input.chart.languages = vec!["es".into()];
        let text = draft(&k, &input).summary_text();
        assert!(text.starts_with("Sus metas.\nMantenga su presión en casa"), "{text}");
        assert!(text.contains("Busque ayuda ya si.\n"));
    }

    #[test]
    fn follow_up_timing_is_read_from_the_note() {
        assert_eq!(timing("follow up in 2 weeks"), Some((2, "week")));
        assert_eq!(timing("return in three months for labs"), Some((3, "month")));
        assert_eq!(timing("follow up as needed"), None);
    }
}
