//! Note templates as configuration (`data/templates/*.toml`): which sections, in which order,
//! under which titles, which are required, and which visit types pick the template.

use serde::Deserialize;

use crate::ScribeError;

/// What fills a section: the part of the visit the builtin engine draws it from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SectionSource {
    ChiefComplaint,
    History,
    ReviewOfSystems,
    Medications,
    SocialHistory,
    Vitals,
    Exam,
    Results,
    AssessmentAndPlan,
    Instructions,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateSection {
    pub id: String,
    pub title: String,
    pub source: SectionSource,
    #[serde(default)]
    pub required: bool,
    /// A soft length cap (words) for what the engine writes there.
    pub max_words: Option<usize>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    pub id: String,
    pub title: String,
    /// Visit types (the Appointment's `appointmentType` / service type codes, lower-case) that
    /// pick this template.
    #[serde(default)]
    pub visit_types: Vec<String>,
    #[serde(rename = "section")]
    pub sections: Vec<TemplateSection>,
}

/// The templates a deployment offers; the first is the default.
#[derive(Debug, Clone)]
pub struct Templates {
    templates: Vec<Template>,
}

const BUILTIN: [&str; 5] = [
    include_str!("../data/templates/general-follow-up.toml"),
    include_str!("../data/templates/urgent-virtual-consult.toml"),
    include_str!("../data/templates/chronic-care.toml"),
    include_str!("../data/templates/behavioural-health.toml"),
    include_str!("../data/templates/paediatric.toml"),
];

impl Templates {
    pub fn builtin() -> Result<Templates, ScribeError> {
        let templates = BUILTIN.iter().map(|t| Template::parse(t)).collect::<Result<Vec<_>, _>>()?;
        Ok(Templates { templates })
    }

    /// Parses a deployment's own template file and adds it (replacing one of the same id).
    pub fn add(&mut self, text: &str) -> Result<(), ScribeError> {
        let template = Template::parse(text)?;
        self.templates.retain(|t| t.id != template.id);
        self.templates.push(template);
        Ok(())
    }

    pub fn get(&self, id: &str) -> Result<&Template, ScribeError> {
        self.templates.iter().find(|t| t.id == id).ok_or_else(|| {
            let known: Vec<&str> = self.templates.iter().map(|t| t.id.as_str()).collect();
            ScribeError::Template(format!("{id:?} is unknown; known: {}", known.join(", ")))
        })
    }

    /// The template a visit type picks; the default (the first) when none names it.
    pub fn for_visit_type(&self, visit_type: Option<&str>) -> &Template {
        let wanted = visit_type.map(str::to_lowercase);
        // Never empty: `builtin` makes five and `add` only adds.
        wanted.and_then(|w| self.templates.iter().find(|t| t.visit_types.contains(&w))).unwrap_or(&self.templates[0])
    }

    pub fn all(&self) -> &[Template] {
        &self.templates
    }
}

impl Template {
    pub fn parse(text: &str) -> Result<Template, ScribeError> {
        let template: Template = toml::from_str(text).map_err(|e| ScribeError::Template(format!("file: {e}")))?;
        if template.sections.is_empty() {
            return Err(ScribeError::Template(format!("{}: has no [[section]]", template.id)));
        }
        let mut seen = std::collections::HashSet::new();
        for s in &template.sections {
            if !seen.insert(s.id.as_str()) {
                return Err(ScribeError::Template(format!("{}: section id {:?} twice", template.id, s.id)));
            }
        }
        Ok(template)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_five_builtin_templates_parse_and_visit_types_pick_them() {
        let t = Templates::builtin().unwrap();
        assert_eq!(t.all().len(), 5);
        assert_eq!(t.for_visit_type(Some("behavioral-health")).id, "behavioural-health");
        assert_eq!(t.for_visit_type(Some("nothing-known")).id, "general-follow-up");
        assert_eq!(t.for_visit_type(None).id, "general-follow-up");
        assert!(t.get("cardiology").unwrap_err().to_string().contains("unknown"));
    }

    #[test]
    fn a_bad_template_is_refused_with_the_reason() {
        let err =
            Template::parse("id = \"x\"\ntitle = \"X\"\n[[section]]\nid = \"a\"\ntitle = \"A\"\nsource = \"magic\"\n")
                .unwrap_err();
        assert!(err.to_string().contains("magic"), "{err}");
    }
}
