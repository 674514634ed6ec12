//! The workspace's server-rendered pages (maud: every value escaped by the template, no HTML
//! assembled by hand): the visit page with its patient banner, forms and delivery table, and the
//! standalone launch's appointment picker.

use maud::{DOCTYPE, Markup, html};

/// The patient as the EHR shows them, for the banner.
pub(crate) struct Banner {
    pub name: String,
    pub birth_date: String,
    pub gender: String,
    pub mrn: String,
}

/// One row of the delivery table: where an artifact is.
pub(crate) struct DeliveryLine {
    pub seq: i64,
    pub resource_type: String,
    pub status: String,
    /// `Type/id vN` once the EHR holds it.
    pub in_ehr: String,
    pub attempts: i64,
    /// How it was planned for this EHR (written, transformed, fallback, not deliverable).
    pub plan: String,
    /// The last error of an unfinished or dead delivery, with its next attempt.
    pub reason: String,
}

pub(crate) struct WorkspacePage<'a> {
    pub visit_id: &'a str,
    pub appointment_id: &'a str,
    pub state: &'a str,
    /// The EHR's banner, or the patient reference when this session cannot read the EHR.
    pub banner: Option<Banner>,
    pub patient_reference: &'a str,
    /// Forms only for a browser session (they carry its CSRF token).
    pub csrf: Option<&'a str>,
    pub next_states: Vec<&'static str>,
    pub deliveries: Vec<DeliveryLine>,
}

const VITAL_FIELDS: [(&str, &str); 8] = [
    ("systolic", "Systolic (mmHg)"),
    ("diastolic", "Diastolic (mmHg)"),
    ("heart_rate", "Heart rate (/min)"),
    ("respiratory_rate", "Respiratory rate (/min)"),
    ("temperature", "Temperature (°C)"),
    ("spo2", "SpO2 (%)"),
    ("weight", "Weight (kg)"),
    ("height", "Height (cm)"),
];

const CONSENTS: [(&str, &str); 2] = [("telehealth", "Telehealth care"), ("recording-ai", "Recording and AI drafting")];

pub(crate) fn workspace(page: &WorkspacePage<'_>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; title { "Telechart visit" } }
            body {
                header id="patient-banner" {
                    @match &page.banner {
                        Some(b) => {
                            h1 id="patient-name" { (b.name) }
                            p { "Born " (b.birth_date) " · " (b.gender) " · MRN " (b.mrn) }
                        }
                        None => { h1 { (page.patient_reference) } }
                    }
                    p { "Appointment/" (page.appointment_id) " · visit " span id="visit-state" { (page.state) } }
                }
                @if let Some(csrf) = page.csrf {
                    (forms(page.visit_id, csrf, &page.next_states))
                }
                section {
                    h2 { "Where every artifact is" }
                    table id="delivery-trace" {
                        thead { tr {
                            th { "#" } th { "Resource" } th { "Status" } th { "Attempts" } th { "Plan" }
                            th { "In the EHR" } th { "Why not yet" }
                        } }
                        tbody {
                            @for d in &page.deliveries {
                                tr class={ "delivery-" (d.status) } {
                                    td { (d.seq) } td { (d.resource_type) } td { (d.status) } td { (d.attempts) }
                                    td { (d.plan) } td { (d.in_ehr) } td { (d.reason) }
                                }
                            }
                        }
                    }
                    @if page.deliveries.iter().any(|d| d.status == "dead") {
                        p { a id="dead-letters-link" href="/workspace/dead-letters" { "Dead letters: retry or discard" } }
                    }
                }
            }
        }
    }
}

fn forms(id: &str, csrf: &str, next_states: &[&'static str]) -> Markup {
    let hidden = html! { input type="hidden" name="csrf_token" value=(csrf); };
    html! {
        section {
            h2 { "Consent" }
            @for (category, label) in CONSENTS {
                form method="post" action={ "/workspace/visits/" (id) "/consent" } {
                    (hidden)
                    input type="hidden" name="category" value=(category);
                    (label) ": "
                    button name="decision" value="permit" id={ "consent-" (category) "-permit" } { "patient consents" }
                    button name="decision" value="deny" id={ "consent-" (category) "-deny" } { "patient declines" }
                }
            }
        }
        section {
            h2 { "Consent signed by the patient" }
            form method="post" action={ "/workspace/visits/" (id) "/consent-link" } {
                (hidden)
                label { "Form " select name="category" id="consent-link-category" {
                    @for (category, label) in CONSENTS { option value=(category) { (label) } }
                } }
                " "
                label { "Language " select name="language" id="consent-link-language" {
                    option value="en" { "English" }
                    option value="es" { "Español" }
                } }
                " "
                button id="consent-link-create" { "Make a single-use signing link" }
            }
        }
        section {
            h2 { "Status" }
            @for s in next_states {
                form method="post" action={ "/workspace/visits/" (id) "/transition" } {
                    (hidden)
                    button name="to" value=(s) id={ "to-" (s) } { (s) }
                }
            }
        }
        section {
            h2 { "Vitals" }
            form method="post" action={ "/workspace/visits/" (id) "/vitals" } {
                (hidden)
                @for (name, label) in VITAL_FIELDS {
                    label { (label) " " input name=(name) id=(name) inputmode="decimal"; }
                }
                button id="save-vitals" { "Save vitals" }
            }
        }
        section {
            h2 { "Drafted note" }
            p { a id="review-draft" href={ "/workspace/visits/" (id) "/draft" } { "Draft and review the note from the transcript" } }
            p { a id="review-care-plan" href={ "/workspace/visits/" (id) "/care-plan" } { "Draft, review and sign the care plan and after-visit summary" } }
        }
        section {
            h2 { "Note" }
            form method="post" action={ "/workspace/visits/" (id) "/note" } {
                (hidden)
                input name="title" id="note-title";
                textarea name="text" id="note-text" {}
                button id="sign-note" { "Sign note" }
            }
        }
    }
}

/// One of today's appointments in the standalone launch's picker.
pub(crate) struct PickableAppointment {
    pub id: String,
    pub start: String,
    pub what: String,
}

pub(crate) fn appointment_picker(appointments: &[PickableAppointment], csrf: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; title { "Telechart — choose the visit" } }
            body {
                h1 { "Today's telehealth appointments" }
                @if appointments.is_empty() {
                    p id="no-appointments" { "This patient has no telehealth appointment booked today." }
                } @else {
                    ul {
                        @for a in appointments {
                            li {
                                form method="post" action={ "/workspace/appointments/" (a.id) "/open" } {
                                    input type="hidden" name="csrf_token" value=(csrf);
                                    (a.start) " — " (a.what) " "
                                    button id={ "open-" (a.id) } { "Open visit" }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The signing link just made: shown once (only its hash is kept).
pub(crate) fn consent_link_created(visit_id: &str, url: &str, expires_at: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; title { "Signing link" } }
            body {
                h1 { "Single-use signing link" }
                p { "Send it to the patient, or open it on this device for them to read and sign here. It works once and expires at " (expires_at) "; it is not shown again." }
                p { a id="consent-link" href=(url) { (url) } }
                p { a href={ "/workspace/visits/" (visit_id) } { "← back to the visit" } }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_by_the_template() {
        let page = WorkspacePage {
            visit_id: "v1",
            appointment_id: "a1",
            state: "arrived",
            banner: Some(Banner {
                name: "<script>alert(1)</script>".into(),
                birth_date: "1970-01-01".into(),
                gender: "female".into(),
                mrn: "M\"1".into(),
            }),
            patient_reference: "Patient/p1",
            csrf: Some("tok\"en"),
            next_states: vec!["in-progress"],
            deliveries: vec![],
        };
        let html = workspace(&page).into_string();
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(html.contains("&lt;script&gt;"));
        assert!(html.contains("value=\"tok&quot;en\""));
        assert!(html.contains("id=\"to-in-progress\""));
    }
}
