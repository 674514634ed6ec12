//! The flows a patient's consent governs, and the FHIR Consent Telechart records when the
//! patient decides. HIPAA lets a provider chart its own treatment without consent, so the
//! visit's own chart writes are not here; starting the telehealth visit, recording and AI
//! drafting, disclosure outside the care team and research use are.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::consent::{
    ACT_CODE, ACT_REASON, AccessRequest, CONSENT_ACTION, CONSENT_SCOPE, Coding, Outcome, RESOURCE_TYPES, Scope,
    TELECHART_CONSENT_CATEGORY,
};

/// LOINC 59284-0 "Patient Consent": the category EHRs file consents under.
const LOINC_PATIENT_CONSENT: (&str, &str) = ("59284-0", "Patient Consent");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConsentCategory {
    /// Care by video or phone instead of in person.
    Telehealth,
    /// Recording the conversation, transcribing it and drafting from it (AI documentation).
    RecordingAi,
    /// Disclosure outside the visit's care team: another organisation's EHR, an LLM endpoint,
    /// platform webhooks carrying PHI.
    Disclosure,
    /// Research and other secondary use.
    Research,
}

impl ConsentCategory {
    pub const ALL: [ConsentCategory; 4] = [
        ConsentCategory::Telehealth,
        ConsentCategory::RecordingAi,
        ConsentCategory::Disclosure,
        ConsentCategory::Research,
    ];

    pub fn code(self) -> &'static str {
        match self {
            ConsentCategory::Telehealth => "telehealth",
            ConsentCategory::RecordingAi => "recording-ai",
            ConsentCategory::Disclosure => "disclosure",
            ConsentCategory::Research => "research",
        }
    }

    pub fn display(self) -> &'static str {
        match self {
            ConsentCategory::Telehealth => "Consent to telehealth care",
            ConsentCategory::RecordingAi => "Consent to recording, transcription and AI-drafted documentation",
            ConsentCategory::Disclosure => "Consent to disclosure outside the care team",
            ConsentCategory::Research => "Consent to research use",
        }
    }

    pub fn parse(code: &str) -> Option<ConsentCategory> {
        ConsentCategory::ALL.into_iter().find(|c| c.code() == code)
    }

    /// The R4 Consent.scope a consent of this category has.
    pub fn scope(self) -> Scope {
        match self {
            ConsentCategory::Telehealth => Scope::Treatment,
            ConsentCategory::RecordingAi | ConsentCategory::Disclosure => Scope::PatientPrivacy,
            ConsentCategory::Research => Scope::Research,
        }
    }
}

/// One flow about to happen, to be decided before any byte moves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GovernedFlow {
    /// Starting the telehealth visit (the Encounter going in-progress).
    StartTelehealthVisit,
    /// Keeping a recording or transcript of the conversation, or drafting from it.
    RecordOrDraft,
    /// Sending the visit's data to `recipient` (a connection, an endpoint), outside the care team.
    Disclose { recipient: String },
    /// Use of the visit's data for research.
    Research,
}

impl GovernedFlow {
    pub fn category(&self) -> ConsentCategory {
        match self {
            GovernedFlow::StartTelehealthVisit => ConsentCategory::Telehealth,
            GovernedFlow::RecordOrDraft => ConsentCategory::RecordingAi,
            GovernedFlow::Disclose { .. } => ConsentCategory::Disclosure,
            GovernedFlow::Research => ConsentCategory::Research,
        }
    }

    /// A short name for audit records and traces.
    pub fn name(&self) -> String {
        match self {
            GovernedFlow::StartTelehealthVisit => "start telehealth visit".into(),
            GovernedFlow::RecordOrDraft => "recording / AI drafting".into(),
            GovernedFlow::Disclose { recipient } => format!("disclosure to {recipient}"),
            GovernedFlow::Research => "research use".into(),
        }
    }

    /// The access request the consent engine decides: category, action, purpose of use and
    /// the class of data the flow touches.
    pub fn request(&self, patient: &str, at: DateTime<Utc>) -> AccessRequest {
        let category = self.category();
        let mut r = AccessRequest::new(patient, category.scope(), at);
        r.categories = vec![Coding::new(TELECHART_CONSENT_CATEGORY, category.code())];
        let (action, purpose, class) = match self {
            GovernedFlow::StartTelehealthVisit => ("use", "TREAT", "Encounter"),
            GovernedFlow::RecordOrDraft => ("collect", "TREAT", "DocumentReference"),
            GovernedFlow::Disclose { .. } => ("disclose", "TREAT", "Bundle"),
            GovernedFlow::Research => ("use", "HRESCH", "Bundle"),
        };
        r.action = Some(Coding::new(CONSENT_ACTION, action));
        r.purpose = Some(Coding::new(ACT_REASON, purpose));
        r.class = Some(Coding::new(RESOURCE_TYPES, class));
        r
    }
}

/// What the patient decided, as Telechart records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientDecision {
    pub consent_id: String,
    pub patient: String,
    pub category: ConsentCategory,
    pub decision: Outcome,
    pub decided_at: DateTime<Utc>,
    /// The signed form (`DocumentReference/{id}` once delivered, or Telechart's artifact id).
    pub form: Option<String>,
    /// The version of the consent text the patient read.
    pub text_version: Option<String>,
}

/// The FHIR R4 Consent for `d`: active, the category's scope, opt-in or opt-out as the base
/// rule, in force from the decision on, for all of the patient's data (no `provision.data`: a
/// consent tied to one encounter would not speak for the next visit). `status` is `active`, or
/// `inactive` for a withdrawal.
pub fn consent_resource(d: &PatientDecision, status: &str) -> Value {
    let at = d.decided_at.to_rfc3339_opts(SecondsFormat::Secs, true);
    let scope = d.category.scope().code();
    let rule = match d.decision {
        Outcome::Permit => ("OPTIN", "opt-in"),
        Outcome::Deny => ("OPTOUT", "opt-out"),
    };
    let mut c = json!({
        "resourceType": "Consent",
        "id": d.consent_id,
        "status": status,
        "scope": {"coding": [{"system": CONSENT_SCOPE, "code": scope}]},
        "category": [
            {"coding": [{"system": TELECHART_CONSENT_CATEGORY, "code": d.category.code(), "display": d.category.display()}]},
            {"coding": [{"system": "http://loinc.org", "code": LOINC_PATIENT_CONSENT.0, "display": LOINC_PATIENT_CONSENT.1}]}
        ],
        "patient": {"reference": d.patient},
        "dateTime": at,
        "performer": [{"reference": d.patient}],
        "policyRule": {"coding": [{"system": ACT_CODE, "code": rule.0, "display": rule.1}]},
        "provision": {"period": {"start": at}},
    });
    if let Some(form) = &d.form {
        c["sourceReference"] = json!({"reference": form});
    }
    if let Some(version) = &d.text_version {
        c["policy"] = json!([{"uri": format!("https://telechart.dev/consent-text/{}/{version}", d.category.code())}]);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consent::{Consent, ConsentPolicy, ConsentSet, parse_fhir_instant};

    fn at(s: &str) -> DateTime<Utc> {
        parse_fhir_instant(s, false).unwrap()
    }

    fn decision(category: ConsentCategory, decision: Outcome) -> PatientDecision {
        PatientDecision {
            consent_id: format!("c-{}", category.code()),
            patient: "Patient/p1".into(),
            category,
            decision,
            decided_at: at("2026-12-06T09:00:00Z"),
            form: None,
            text_version: Some("2026-11".into()),
        }
    }

    fn decide(consents: &[Value], flow: &GovernedFlow, when: &str) -> Outcome {
        let set = ConsentSet::new(consents.iter().map(|c| Consent::from_fhir(c).unwrap()));
        set.decide(&ConsentPolicy::default(), &flow.request("Patient/p1", at(when))).outcome
    }

    #[test]
    fn each_flow_is_decided_by_the_consent_of_its_category_alone() {
        let telehealth = consent_resource(&decision(ConsentCategory::Telehealth, Outcome::Permit), "active");
        let no_recording = consent_resource(&decision(ConsentCategory::RecordingAi, Outcome::Deny), "active");
        let consents = [telehealth.clone(), no_recording];
        assert_eq!(decide(&consents, &GovernedFlow::StartTelehealthVisit, "2026-12-06T09:05:00Z"), Outcome::Permit);
        assert_eq!(decide(&consents, &GovernedFlow::RecordOrDraft, "2026-12-06T09:05:00Z"), Outcome::Deny);
        // No disclosure consent at all: the tenant's default for patient-privacy (deny).
        let disclose = GovernedFlow::Disclose { recipient: "connection other-org".into() };
        assert_eq!(decide(&consents, &disclose, "2026-12-06T09:05:00Z"), Outcome::Deny);
        // Before the patient decided, the consent is not in force.
        assert_eq!(decide(&consents, &GovernedFlow::StartTelehealthVisit, "2026-12-06T08:59:00Z"), Outcome::Deny);
        // Withdrawn (status inactive): no longer counts.
        let withdrawn = consent_resource(&decision(ConsentCategory::Telehealth, Outcome::Permit), "inactive");
        assert_eq!(decide(&[withdrawn], &GovernedFlow::StartTelehealthVisit, "2026-12-06T09:05:00Z"), Outcome::Deny);
    }

    #[test]
    fn the_recorded_consent_parses_back_with_its_category_and_rule() {
        let mut d = decision(ConsentCategory::Research, Outcome::Permit);
        d.form = Some("DocumentReference/f1".into());
        let c = consent_resource(&d, "active");
        assert_eq!(c["scope"]["coding"][0]["code"], "research");
        assert_eq!(c["policyRule"]["coding"][0]["code"], "OPTIN");
        assert!(Consent::from_fhir(&c).is_ok());
        assert_eq!(decide(&[c], &GovernedFlow::Research, "2026-12-06T10:00:00Z"), Outcome::Permit);
    }
}
