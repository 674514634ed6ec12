//! The after-visit summary as the patient reads it: accessible HTML (the page's language set, one
//! `h1`, a heading per section, lists, large text, high contrast, no script) — the same markup
//! the EHR's DocumentReference carries and the portal shows — and its PDF.

use maud::{DOCTYPE, Markup, html};
use telechart_scribe::care_plan::{CarePlanDraft, Section, SummarySection};

/// Large text, high contrast, one column on a phone: WCAG 2.1 AA for text (contrast ≥ 4.5:1,
/// reflow at 320 px, text resizable to 200 %).
pub(crate) const PATIENT_STYLE: &str = "body{font-family:system-ui,sans-serif;font-size:1.25rem;line-height:1.6;\
color:#111;background:#fff;margin:0 auto;max-width:40rem;padding:1rem}h1{font-size:1.9rem}h2{font-size:1.5rem;\
margin-top:2rem}li{margin:.5rem 0}a{color:#0645ad}.warning{border-left:.4rem solid #b00020;padding-left:1rem}\
button{font-size:1.25rem;padding:.6rem 1rem;min-height:44px}label{display:block;padding:.5rem 0}\
input[type=checkbox]{width:1.5rem;height:1.5rem;vertical-align:middle;margin-right:.6rem}";

pub(crate) struct Words {
    pub lang: &'static str,
    pub title: &'static str,
    pub intro: &'static str,
}

pub(crate) const ENGLISH: Words =
    Words { lang: "en", title: "Your after-visit summary", intro: "What we talked about today, and what to do next." };
pub(crate) const SPANISH: Words =
    Words { lang: "es", title: "Su resumen de la visita", intro: "Lo que hablamos hoy y lo que debe hacer ahora." };

pub(crate) fn words(language: &str) -> &'static Words {
    if language == "es" || language.starts_with("es-") { &SPANISH } else { &ENGLISH }
}

/// The summary's sections, as an `article` to place in a page.
pub(crate) fn sections(summary: &[SummarySection]) -> Markup {
    html! {
        @for part in summary {
            @let urgent = matches!(part.section, Section::CallUs | Section::Emergency);
            section class=[urgent.then_some("warning")] aria-labelledby={ "avs-" (section_id(part.section)) } {
                h2 id={ "avs-" (section_id(part.section)) } { (part.heading) }
                ul { @for line in &part.lines { li { (line) } } }
            }
        }
    }
}

fn section_id(section: Section) -> &'static str {
    match section {
        Section::Goal => "goals",
        Section::FollowUp => "next-steps",
        Section::SelfMonitoring => "at-home",
        Section::Medication => "medicines",
        Section::Lifestyle => "every-day",
        Section::CallUs => "call-us",
        Section::Emergency => "emergency",
    }
}

/// The summary as a whole HTML document (what the EHR files).
pub(crate) fn document(plan: &CarePlanDraft) -> String {
    let words = words(&plan.language);
    html! {
        (DOCTYPE)
        html lang=(words.lang) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (words.title) }
                style { (PATIENT_STYLE) }
            }
            body { main { h1 { (words.title) } p { (words.intro) } (sections(&plan.after_visit_summary())) } }
        }
    }
    .into_string()
}

/// The summary as PDF: the same headings and lines, in the patient's language.
pub(crate) fn pdf(plan: &CarePlanDraft) -> Vec<u8> {
    let words = words(&plan.language);
    let text = format!("{}\n\n{}", words.intro, plan.summary_text());
    telechart_visit::pdf::text_pdf_in(words.title, &text, words.lang)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_says_its_language_and_escapes_what_it_is_given() {
        let plan = CarePlanDraft {
            language: "es".into(),
            addresses: vec![],
            items: vec![telechart_scribe::care_plan::PlanItem {
                section: Section::CallUs,
                text: "Llame si <b>tiene fiebre</b>.".into(),
                measure: None,
                condition: None,
                evidence: vec![],
                due_in_days: None,
            }],
            conflicts: vec![],
            gaps: vec![],
        };
        let html = document(&plan);
        assert!(html.contains(r#"<html lang="es">"#), "{html}");
        assert!(html.contains("Llame si &lt;b&gt;tiene fiebre&lt;/b&gt;."));
        assert!(html.contains(r#"<section class="warning""#));
        let pdf = pdf(&plan);
        assert!(pdf.starts_with(b"%PDF-"));
    }
}
