//! The write planner: for one artifact and one EHR connection, how it gets there — written as
//! mapped, written transformed to fit the EHR, sent by a planned fallback, or not deliverable
//! here (and why). It reads the connection's profile flags only; it never names a vendor.

use telechart_ehr::{EncounterWrite, VendorProfile};
use telechart_visit::{Artifact, OrderKind};

/// A planned non-FHIR path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// The EHR's own document API, one PDF per call.
    DocumentApi,
    /// The EHR's own encounter vitals API.
    VitalsApi,
    /// HL7v2 ORU^R01 over MLLP.
    Hl7Oru,
    /// HL7v2 MDM^T02 over MLLP.
    Hl7Mdm,
}

impl Fallback {
    pub fn as_str(self) -> &'static str {
        match self {
            Fallback::DocumentApi => "document API (PDF)",
            Fallback::VitalsApi => "vitals API",
            Fallback::Hl7Oru => "HL7v2 ORU^R01 over MLLP",
            Fallback::Hl7Mdm => "HL7v2 MDM^T02 over MLLP",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WritePlan {
    /// Written over FHIR as mapped.
    Written {
        resource_type: &'static str,
    },
    /// Written over FHIR, changed to fit this EHR (`how` says what changed).
    Transformed {
        resource_type: &'static str,
        how: String,
    },
    Fallback(Fallback),
    /// This EHR has no path for it at all.
    NotDeliverable {
        reason: String,
    },
}

impl WritePlan {
    /// One line for the trace and the delivery row: `written`, `transformed: …`,
    /// `fallback: …`, `not deliverable: …`.
    pub fn label(&self) -> String {
        match self {
            WritePlan::Written { .. } => "written".to_owned(),
            WritePlan::Transformed { how, .. } => format!("transformed: {how}"),
            WritePlan::Fallback(f) => format!("fallback: {}", f.as_str()),
            WritePlan::NotDeliverable { reason } => format!("not deliverable: {reason}"),
        }
    }
}

fn written(resource_type: &'static str) -> WritePlan {
    WritePlan::Written { resource_type }
}

fn transformed(resource_type: &'static str, how: impl Into<String>) -> WritePlan {
    WritePlan::Transformed { resource_type, how: how.into() }
}

fn not_deliverable(reason: impl Into<String>) -> WritePlan {
    WritePlan::NotDeliverable { reason: reason.into() }
}

/// Plans one artifact for one connection. `mllp`: whether the connection has an HL7v2 listener.
pub fn plan(artifact: &Artifact, profile: &VendorProfile, mllp: bool) -> WritePlan {
    let caps = &profile.capabilities;
    match artifact {
        Artifact::EncounterStatus(_) => {
            if caps.encounter_update {
                written("Encounter")
            } else if caps.visit_status_on_appointment {
                transformed("Encounter", "status by JSON Patch of Appointment.status")
            } else if caps.encounter == EncounterWrite::FindOnly {
                transformed("Encounter", "the EHR's own Encounter adopted; the EHR keeps its status")
            } else {
                transformed("Encounter", "created; later status changes kept by the EHR")
            }
        }
        Artifact::Vital(_) if caps.observation_create => written("Observation"),
        Artifact::Vital(_) if profile.vitals_upload.is_some() => WritePlan::Fallback(Fallback::VitalsApi),
        Artifact::Vital(_) if mllp => WritePlan::Fallback(Fallback::Hl7Oru),
        Artifact::Vital(_) => not_deliverable("no Observation create, vitals API or HL7v2 listener"),
        Artifact::Note(note) if caps.document_reference_create => {
            let takes = profile.note_content_type;
            if caps.documents_plain_text_only && note.content_type == "text/html" {
                return if mllp {
                    WritePlan::Fallback(Fallback::Hl7Mdm)
                } else {
                    not_deliverable("an HTML note, and this EHR takes plain-text notes only")
                };
            }
            let sent = if note.content_type == "text/plain" { "text/plain; charset=utf-8" } else { &note.content_type };
            if takes.starts_with("text/plain") && sent != takes {
                transformed("DocumentReference", format!("content type {takes}"))
            } else {
                written("DocumentReference")
            }
        }
        Artifact::Note(_) if profile.document_upload.is_some() => WritePlan::Fallback(Fallback::DocumentApi),
        Artifact::Note(_) if mllp => WritePlan::Fallback(Fallback::Hl7Mdm),
        Artifact::Note(_) => not_deliverable("no DocumentReference create, document API or HL7v2 listener"),
        Artifact::Document(doc) if caps.document_reference_create => {
            let text = doc.content_type.starts_with("text/");
            match (caps.documents_plain_text_only, text) {
                (false, _) => written("DocumentReference"),
                (true, true) => transformed("DocumentReference", "content type text/plain"),
                (true, false) => {
                    not_deliverable(format!("{} documents: this EHR takes plain text only", doc.content_type))
                }
            }
        }
        Artifact::Document(doc) if profile.document_upload.is_some() => {
            if doc.content_type == "application/pdf" || doc.content_type.starts_with("text/") {
                WritePlan::Fallback(Fallback::DocumentApi)
            } else {
                not_deliverable(format!("{} documents: the document API takes PDF only", doc.content_type))
            }
        }
        Artifact::Document(doc) if mllp && doc.content_type.starts_with("text/") => {
            WritePlan::Fallback(Fallback::Hl7Mdm)
        }
        Artifact::Document(_) => not_deliverable("no DocumentReference create or document API"),
        Artifact::Diagnosis(_) if caps.condition_create => match profile.condition_verification {
            "confirmed" => written("Condition"),
            other => transformed("Condition", format!("verificationStatus {other}")),
        },
        Artifact::Diagnosis(_) => not_deliverable("no Condition create"),
        Artifact::EncounterDiagnoses(_) if caps.encounter_update => written("Encounter"),
        Artifact::EncounterDiagnoses(_) => {
            not_deliverable("no Encounter update; the diagnoses stand as Conditions of the encounter where taken")
        }
        Artifact::Order(order) if order.kind == OrderKind::Medication => {
            if caps.medication_request_create {
                written("MedicationRequest")
            } else {
                not_deliverable(
                    "no MedicationRequest order create (a prescription is never sent as a reported medication)",
                )
            }
        }
        Artifact::Order(_) if caps.service_request_create => written("ServiceRequest"),
        Artifact::Order(_) => not_deliverable("no ServiceRequest create"),
        Artifact::CarePlan(_) if caps.care_plan_create => written("CarePlan"),
        Artifact::CarePlan(_) => not_deliverable("no CarePlan create"),
        Artifact::Consent(_) if caps.consent_create => written("Consent"),
        Artifact::Consent(_) => not_deliverable("no Consent create"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use telechart_visit::{EncounterStatusChange, SignedNote};

    fn note(content_type: &str) -> Artifact {
        Artifact::Note(SignedNote {
            title: "Visit note".into(),
            text: "Stable.".into(),
            author: "Practitioner/p".into(),
            signed_at: chrono::DateTime::UNIX_EPOCH,
            content_type: content_type.into(),
        })
    }

    #[test]
    fn each_profile_gets_the_path_its_flags_allow() {
        let generic = VendorProfile::generic();
        let mut plain_only = generic.clone();
        plain_only.note_content_type = "text/plain";
        plain_only.capabilities.documents_plain_text_only = true;
        plain_only.capabilities.encounter = EncounterWrite::FindOnly;
        plain_only.capabilities.encounter_update = false;
        let mut status_on_appointment = generic.clone();
        status_on_appointment.capabilities.encounter_update = false;
        status_on_appointment.capabilities.visit_status_on_appointment = true;
        let mut read_only = generic.clone();
        read_only.capabilities.document_reference_create = false;
        read_only.capabilities.observation_create = false;
        assert_eq!(plan(&note("text/plain"), &generic, false), written("DocumentReference"));
        assert_eq!(plan(&note("text/plain"), &plain_only, false).label(), "transformed: content type text/plain");
        assert_eq!(plan(&note("text/html"), &plain_only, true), WritePlan::Fallback(Fallback::Hl7Mdm));
        assert!(matches!(plan(&note("text/html"), &plain_only, false), WritePlan::NotDeliverable { .. }));
        let status = Artifact::EncounterStatus(EncounterStatusChange {
            from: telechart_visit::VisitState::Arrived,
            to: telechart_visit::VisitState::InProgress,
            at: chrono::DateTime::UNIX_EPOCH,
        });
        assert_eq!(plan(&status, &generic, false), written("Encounter"));
        assert!(plan(&status, &status_on_appointment, false).label().contains("Appointment.status"));
        assert!(plan(&status, &plain_only, false).label().contains("adopted"));
        // A read-only FHIR server: the document API first, else the HL7v2 listener, else nothing.
        read_only.document_upload =
            Some(telechart_ehr::DocumentUpload { path: "/v1/{tenant}/documents", document_class: "NOTE" });
        assert_eq!(plan(&note("text/plain"), &read_only, true), WritePlan::Fallback(Fallback::DocumentApi));
        read_only.document_upload = None;
        assert_eq!(plan(&note("text/plain"), &read_only, true), WritePlan::Fallback(Fallback::Hl7Mdm));
        assert!(matches!(plan(&note("text/plain"), &read_only, false), WritePlan::NotDeliverable { .. }));
    }
}
