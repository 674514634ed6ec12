//! The patient-instruction knowledge base (`data/care/conditions.toml`): for each condition common
//! in telehealth, keyed by ICD-10-CM ranges, the goals, activities and red flags the care-plan and
//! after-visit-summary drafter may use, in English and Spanish, each citing its public source,
//! and what makes an item wrong for a patient (an allergy, a medication, another condition).
//!
//! Data, not code: a clinician edits the file; [`Knowledge::load`] refuses it whole when an item
//! lacks a language, a source, or names a drug class or condition the file does not define.

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;

use crate::ScribeError;

/// A patient-facing language the knowledge base is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Language {
    English,
    Spanish,
}

impl Language {
    /// From a BCP-47 tag as `Patient.communication.language` codes it (`es`, `es-MX`, `en-US`);
    /// None for a language the knowledge base lacks.
    pub fn from_tag(tag: &str) -> Option<Language> {
        let primary = tag.split(['-', '_']).next().unwrap_or_default().to_ascii_lowercase();
        match primary.as_str() {
            "en" => Some(Language::English),
            "es" => Some(Language::Spanish),
            _ => None,
        }
    }

    pub fn tag(self) -> &'static str {
        match self {
            Language::English => "en",
            Language::Spanish => "es",
        }
    }
}

/// Words in both languages.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Words {
    pub en: String,
    pub es: String,
}

impl Words {
    pub fn get(&self, language: Language) -> &str {
        match language {
            Language::English => &self.en,
            Language::Spanish => &self.es,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActivityKind {
    FollowUp,
    SelfMonitoring,
    Medication,
    Lifestyle,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RedFlagAction {
    /// Call the care team.
    Call,
    /// Go to the emergency department, or call 911.
    Emergency,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Goal {
    pub en: String,
    pub es: String,
    /// The measurable target, where the condition allows one (`home blood pressure < 130/80`).
    #[serde(default)]
    pub measure: Option<String>,
    #[serde(default)]
    pub source: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Activity {
    pub kind: ActivityKind,
    pub en: String,
    pub es: String,
    #[serde(default)]
    pub source: Option<String>,
    /// `allergy:CLASS`, `medication:CLASS` or `condition:ID`: this item is wrong for a patient
    /// with any of them.
    #[serde(default)]
    pub avoid_if: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedFlag {
    pub when: RedFlagAction,
    pub en: String,
    pub es: String,
    #[serde(default)]
    pub source: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    pub id: String,
    /// ICD-10-CM codes or ranges (`I10-I15`, `E11`, `N39.0`): a code matches when it starts with
    /// a listed code, or its category falls within a range.
    pub icd10: Vec<String>,
    pub name: Words,
    pub source: String,
    pub source_es: String,
    #[serde(default)]
    pub goal: Vec<Goal>,
    #[serde(default)]
    pub activity: Vec<Activity>,
    #[serde(default)]
    pub red_flag: Vec<RedFlag>,
}

impl Condition {
    /// Whether the ICD-10-CM `code` (with or without its dot) is this condition's.
    pub fn matches(&self, code: &str) -> bool {
        let code = normalise(code);
        self.icd10.iter().any(|key| match key.split_once('-') {
            Some((low, high)) => {
                let category = code.get(..3).unwrap_or(&code);
                normalise(low).as_str() <= category && category <= normalise(high).as_str()
            }
            None => code.starts_with(&normalise(key)),
        })
    }

    /// The page an item cites: its own, else the condition's in the patient's language.
    pub fn source_for<'a>(&'a self, own: Option<&'a str>, language: Language) -> &'a str {
        own.unwrap_or(match language {
            Language::English => &self.source,
            Language::Spanish => &self.source_es,
        })
    }
}

fn normalise(code: &str) -> String {
    code.trim().replace('.', "").to_ascii_uppercase()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Knowledge {
    /// Drug class → the names (generic and brand, lower case) that belong to it.
    pub drug_classes: BTreeMap<String, Vec<String>>,
    pub condition: Vec<Condition>,
}

/// Where the knowledge base may send a patient: public health sources only.
const SOURCE_ORIGINS: [&str; 3] = ["https://medlineplus.gov/", "https://www.cdc.gov/", "https://www.nimh.nih.gov/"];

impl Knowledge {
    /// The knowledge base shipped with Telechart.
    pub fn builtin() -> Result<Knowledge, ScribeError> {
        Knowledge::load(include_str!("../data/care/conditions.toml"))
    }

    /// Parses and checks a knowledge base: every item in both languages with a source from a
    /// public health origin, every `avoid_if` naming a class or condition defined here, every
    /// condition with goals, activities and both kinds of red flag.
    pub fn load(text: &str) -> Result<Knowledge, ScribeError> {
        let knowledge: Knowledge = toml::from_str(text).map_err(|e| ScribeError::Knowledge(e.to_string()))?;
        let ids: HashSet<&str> = knowledge.condition.iter().map(|c| c.id.as_str()).collect();
        if ids.len() != knowledge.condition.len() {
            return Err(ScribeError::Knowledge("two conditions share an id".into()));
        }
        let bad = |condition: &str, what: String| ScribeError::Knowledge(format!("condition {condition}: {what}"));
        for c in &knowledge.condition {
            if c.icd10.is_empty() {
                return Err(bad(&c.id, "no ICD-10-CM codes".into()));
            }
            if c.goal.is_empty() || c.activity.is_empty() {
                return Err(bad(&c.id, "needs at least one goal and one activity".into()));
            }
            for when in [RedFlagAction::Call, RedFlagAction::Emergency] {
                if !c.red_flag.iter().any(|r| r.when == when) {
                    return Err(bad(&c.id, format!("no red flag of kind {when:?}")));
                }
            }
            let mut sources = vec![c.source.as_str(), c.source_es.as_str()];
            let mut texts: Vec<(&str, &str)> = vec![(&c.name.en, &c.name.es)];
            texts.extend(c.goal.iter().map(|g| (g.en.as_str(), g.es.as_str())));
            texts.extend(c.activity.iter().map(|a| (a.en.as_str(), a.es.as_str())));
            texts.extend(c.red_flag.iter().map(|r| (r.en.as_str(), r.es.as_str())));
            for (en, es) in texts {
                if en.trim().is_empty() || es.trim().is_empty() {
                    return Err(bad(&c.id, "an item lacks its English or Spanish words".into()));
                }
            }
            sources.extend(c.goal.iter().filter_map(|g| g.source.as_deref()));
            sources.extend(c.activity.iter().filter_map(|a| a.source.as_deref()));
            sources.extend(c.red_flag.iter().filter_map(|r| r.source.as_deref()));
            if let Some(s) = sources.iter().find(|s| !SOURCE_ORIGINS.iter().any(|o| s.starts_with(o))) {
                return Err(bad(&c.id, format!("source {s} is not a public health page (MedlinePlus, CDC, NIH)")));
            }
            for avoid in c.activity.iter().flat_map(|a| &a.avoid_if) {
                let known = match avoid.split_once(':') {
                    Some(("allergy" | "medication", class)) => knowledge.drug_classes.contains_key(class),
                    Some(("condition", id)) => ids.contains(id),
                    _ => false,
                };
                if !known {
                    return Err(bad(&c.id, format!("avoid_if {avoid:?} names no drug class or condition here")));
                }
            }
        }
        Ok(knowledge)
    }

    /// The conditions a visit's diagnosis codes match, in the order of the codes.
    pub fn conditions_for<'a>(&'a self, codes: &[&str]) -> Vec<&'a Condition> {
        let mut found: Vec<&Condition> = Vec::new();
        for code in codes {
            for c in self.condition.iter().filter(|c| c.matches(code)) {
                if !found.iter().any(|f| f.id == c.id) {
                    found.push(c);
                }
            }
        }
        found
    }

    /// The drug classes a medication or allergen's words (name, display, text) belong to.
    pub fn drug_classes_of(&self, words: &str) -> Vec<&str> {
        let words = words.to_lowercase();
        self.drug_classes
            .iter()
            .filter(|(_, names)| {
                names.iter().any(|n| {
                    words.split(|ch: char| !ch.is_alphanumeric()).any(|w| w == n) || (n.len() > 5 && words.contains(n))
                })
            })
            .map(|(class, _)| class.as_str())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_knowledge_base_loads_and_covers_thirty_conditions() {
        let k = Knowledge::builtin().unwrap();
        assert!(k.condition.len() >= 30, "{}", k.condition.len());
        for id in [
            "hypertension",
            "type-2-diabetes",
            "asthma",
            "copd",
            "upper-respiratory-infection",
            "influenza",
            "covid-19",
            "urinary-tract-infection",
            "low-back-pain",
            "migraine",
            "depression",
            "anxiety",
            "gerd",
            "allergic-rhinitis",
            "otitis-media",
            "conjunctivitis",
            "dermatitis",
            "hyperlipidemia",
            "hypothyroidism",
            "atrial-fibrillation",
            "heart-failure",
            "chronic-kidney-disease",
            "osteoarthritis",
            "insomnia",
            "obesity",
            "tobacco-use",
            "pregnancy",
            "well-child",
            "sprain",
            "gout",
        ] {
            assert!(k.condition.iter().any(|c| c.id == id), "{id} is missing");
        }
    }

    #[test]
    fn codes_match_by_prefix_and_by_category_range() {
        let k = Knowledge::builtin().unwrap();
        let ids = |codes: &[&str]| k.conditions_for(codes).iter().map(|c| c.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&["I10"]), ["hypertension"]);
        assert_eq!(ids(&["I13.10", "E11.9"]), ["hypertension", "type-2-diabetes"]);
        assert_eq!(ids(&["J06.9"]), ["upper-respiratory-infection"]);
        assert_eq!(ids(&["M54.50"]), ["low-back-pain"]);
        assert_eq!(ids(&["S93.401A"]), ["sprain"]);
        assert_eq!(ids(&["N390"]), ["urinary-tract-infection"], "with or without the dot");
        assert!(ids(&["Q90.9"]).is_empty(), "a code the knowledge base lacks matches nothing");
        assert!(ids(&["I16.0", "I09"]).is_empty(), "ranges are inclusive, not open");
    }

    #[test]
    fn drug_classes_are_found_in_names_and_brands() {
        let k = Knowledge::builtin().unwrap();
        assert_eq!(k.drug_classes_of("Ibuprofen 200 MG Oral Tablet"), ["nsaid"]);
        assert_eq!(k.drug_classes_of("Eliquis 5 mg"), ["anticoagulant"]);
        assert_eq!(k.drug_classes_of("warfarin sodium"), ["anticoagulant"]);
        assert!(k.drug_classes_of("acetaminophen 500 mg").is_empty());
        assert!(k.drug_classes_of("Penicillin V").is_empty());
    }

    #[test]
    fn a_knowledge_base_with_a_gap_is_refused_whole() {
        let good = include_str!("../data/care/conditions.toml");
        let cases = [
            (
                good.replacen("https://medlineplus.gov/highbloodpressure.html", "https://example.com/bp", 1),
                "public health page",
            ),
            (good.replacen("allergy:nsaid", "allergy:opioid", 1), "names no drug class"),
            (
                good.replacen("condition:chronic-kidney-disease", "condition:kidney", 1),
                "names no drug class or condition",
            ),
            (
                good.replacen("es = \"Coma menos sal. Coma más frutas y verduras.\"", "es = \"\"", 1),
                "English or Spanish",
            ),
        ];
        for (text, expected) in cases {
            let err = Knowledge::load(&text).unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
        }
    }

    #[test]
    fn languages_come_from_bcp47_tags() {
        assert_eq!(Language::from_tag("es-MX"), Some(Language::Spanish));
        assert_eq!(Language::from_tag("en"), Some(Language::English));
        assert_eq!(Language::from_tag("vi"), None);
    }
}
