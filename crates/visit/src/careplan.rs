//! The plan made in the visit — a CarePlan with its activities — and the after-visit summary for
//! the patient (a DocumentReference); and the patient's consent to telehealth care, recorded as
//! a Consent whose source is the signed form. (Drafting them is a later step; here they are
//! checked, mapped and delivered.)

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use telechart_fhir::parse_reference;

use crate::VisitError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ActivityInput {
    pub description: String,
    /// When, as the clinician says it ("in 3 months", "2027-02-26").
    #[serde(default)]
    pub scheduled: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CarePlanInput {
    pub title: String,
    #[serde(default)]
    pub description: Option<String>,
    pub activities: Vec<ActivityInput>,
    /// The after-visit summary for the patient, plain text.
    #[serde(default)]
    pub after_visit_summary: Option<String>,
    /// `Practitioner/{id}`.
    pub author: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CarePlanRecord {
    pub title: String,
    pub description: Option<String>,
    pub activities: Vec<ActivityInput>,
    pub author: String,
    pub created_at: DateTime<Utc>,
}

/// A patient's consent on its way to the EHR: the FHIR Consent Telechart's engine reads (active,
/// or inactive for a withdrawal), with the signed form it rests on when there is one. Records
/// kept before consents carried their resource hold only the form: a telehealth opt-in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsentRecord {
    /// The signed form's artifact id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub form_artifact: Option<String>,
    pub signed_at: DateTime<Utc>,
    /// Telechart's id of the consent: the identifier each of its versions carries in the EHR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent_id: Option<String>,
    /// The FHIR R4 Consent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<serde_json::Value>,
}

impl ConsentRecord {
    /// Whether this version withdraws the consent (R4: status `inactive`).
    pub fn withdraws(&self) -> bool {
        self.resource.as_ref().is_some_and(|r| r["status"] == "inactive")
    }
}

pub fn validate_care_plan(input: &CarePlanInput, now: DateTime<Utc>) -> Result<CarePlanRecord, VisitError> {
    if input.title.trim().is_empty() {
        return Err(VisitError::invalid("title", "must not be empty"));
    }
    if input.activities.is_empty() {
        return Err(VisitError::invalid("activities", "a plan needs at least one activity"));
    }
    for (i, a) in input.activities.iter().enumerate() {
        if a.description.trim().is_empty() {
            return Err(VisitError::invalid(format!("activities[{i}].description"), "must not be empty"));
        }
    }
    if !matches!(parse_reference(&input.author), Some(("Practitioner", _))) {
        return Err(VisitError::invalid("author", "must be a reference Practitioner/{id}"));
    }
    if input.after_visit_summary.as_deref().is_some_and(|s| s.trim().is_empty()) {
        return Err(VisitError::invalid("afterVisitSummary", "must not be empty when given"));
    }
    Ok(CarePlanRecord {
        title: input.title.trim().to_owned(),
        description: input.description.clone(),
        activities: input.activities.clone(),
        author: input.author.clone(),
        created_at: now,
    })
}
