//! The plan made in the visit — a CarePlan with its activities — and the after-visit summary for
//! the patient (a DocumentReference); and the patient's consent to telehealth care, recorded as
//! a Consent whose source is the signed form. (Drafting them is a later step; here they are
//! checked, mapped and delivered; the drafter lives in `scribe`, and a signed draft arrives here as
//! the same records.)

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
    /// The artifact id of the visit's order this activity carries out: the CarePlan then refers
    /// to that ServiceRequest or MedicationRequest where the EHR holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<String>,
}

/// A goal of the plan, kept as its own artifact (a FHIR Goal where the EHR takes one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GoalRecord {
    pub description: String,
    /// The measurable target, when there is one (`home blood pressure < 130/80 mm[Hg]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measure: Option<String>,
    /// Artifact ids of the visit's diagnoses the goal addresses.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// `Practitioner/{id}` who set it.
    pub author: String,
    pub created_at: DateTime<Utc>,
}

/// A goal as the CarePlan names it: its artifact, and its words for an EHR without Goals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanGoal {
    pub artifact: String,
    pub description: String,
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
    /// Artifact ids of the visit's diagnoses the plan addresses (`CarePlan.addresses`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub goals: Vec<PlanGoal>,
    /// The care-plan draft it was signed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draft: Option<String>,
}

/// Where a CarePlan's references point in one EHR: filled in by the worker from what that EHR
/// holds; what it does not hold stays as text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CarePlanLinks {
    /// `Condition/{id}` of each addressed diagnosis the EHR holds.
    pub addresses: Vec<String>,
    /// `Goal/{id}` of each goal the EHR holds.
    pub goals: Vec<String>,
    /// The goals it does not hold, in words (they go in `CarePlan.note`).
    pub goals_as_text: Vec<String>,
    /// Per activity, the order resource it refers to (`ServiceRequest/{id}`), when held.
    pub activity_references: Vec<Option<String>>,
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
        addresses: Vec::new(),
        goals: Vec::new(),
        draft: None,
    })
}

pub fn validate_goal(goal: &GoalRecord) -> Result<(), VisitError> {
    if goal.description.trim().is_empty() {
        return Err(VisitError::invalid("goals[].description", "must not be empty"));
    }
    if !matches!(parse_reference(&goal.author), Some(("Practitioner", _))) {
        return Err(VisitError::invalid("author", "must be a reference Practitioner/{id}"));
    }
    Ok(())
}
