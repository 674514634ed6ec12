//! The visit: its state machine, the artifacts a visit produces, their validation, and their
//! mapping to FHIR R4 resources.
//!
//! Invariant: no I/O. Callers hand in the clock's reading and the EHR's resource ids.

mod artifact;
mod billing;
mod careplan;
mod diagnosis;
mod document;
mod mapping;
mod order;
pub mod pdf;
mod state;

pub use artifact::{
    Artifact, ArtifactKind, EncounterStatusChange, HomeDevice, HomeDeviceKind, NoteInput, NoteProvenance, SignedNote,
    VitalInput, VitalMeasurement, VitalValue, validate_note, validate_vitals,
};
pub use billing::{BillingFacts, ClaimCheck, ClaimFacts, Modality, claim_readiness, validate_billing};
pub use careplan::{
    ActivityInput, CarePlanInput, CarePlanLinks, CarePlanRecord, ConsentRecord, GoalRecord, PlanGoal,
    validate_care_plan, validate_goal,
};
pub use diagnosis::{
    DiagnosesInput, Diagnosis, DiagnosisInput, EncounterDiagnoses, EncounterDiagnosisEntry, validate_diagnoses,
};
pub use document::{DOCUMENT_MAX_BYTES, DocumentInput, DocumentKind, VisitDocument, validate_document};
pub use mapping::{
    DRAFTING_ENGINE_SYSTEM, VisitContext, apply_encounter_diagnoses, apply_encounter_status, care_plan, condition,
    consent, detach_practitioners, encounter_for_create, format_instant, goal, medication_request, note_document,
    note_provenance, service_request, visit_document, vital_observation,
};
pub use order::{Order, OrderInput, OrderKind, OrdersInput, validate_orders};
pub use state::VisitState;

/// A precise, field-level refusal of a visit event. Carries ids and field paths, never PHI.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VisitError {
    #[error("illegal transition from {from} to {to}: {hint}")]
    IllegalTransition { from: VisitState, to: VisitState, hint: String },
    #[error("{field}: {message}")]
    InvalidField { field: String, message: String },
    #[error("{event} is not allowed while the visit is {state}")]
    WrongState { event: &'static str, state: VisitState },
}

impl VisitError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        VisitError::InvalidField { field: field.into(), message: message.into() }
    }

    /// The element the error is about, for OperationOutcome.issue.expression.
    pub fn field(&self) -> Option<&str> {
        match self {
            VisitError::InvalidField { field, .. } => Some(field),
            VisitError::IllegalTransition { .. } => Some("to"),
            VisitError::WrongState { .. } => None,
        }
    }
}
