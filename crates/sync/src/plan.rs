//! The write planner: for one artifact and one EHR connection, how it gets there — written as
//! mapped, written transformed to fit the EHR, sent by a planned fallback, or not deliverable
//! here (and why). It reads the connection's profile flags only; it never names a vendor.

use telechart_ehr::{EncounterWrite, VendorProfile};
use telechart_visit::{Artifact, ArtifactKind};

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

/// What the planner looks at in an artifact: its kind, and a note's or document's content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape<'a> {
    pub kind: ArtifactKind,
    pub content_type: Option<&'a str>,
}

impl<'a> Shape<'a> {
    pub fn of(artifact: &'a Artifact) -> Self {
        let content_type = match artifact {
            Artifact::Note(note) => Some(note.content_type.as_str()),
            Artifact::Document(doc) => Some(doc.content_type.as_str()),
            _ => None,
        };
        Shape { kind: artifact.kind(), content_type }
    }
}

/// Plans one artifact for one connection. `mllp`: whether the connection has an HL7v2 listener.
pub fn plan(artifact: &Artifact, profile: &VendorProfile, mllp: bool) -> WritePlan {
    plan_shape(Shape::of(artifact), profile, mllp)
}

/// Every kind of artifact a visit makes (documents by content type): the name a site
/// blueprint uses, what it is, and its shape.
const ARTIFACT_KINDS: [(&str, &str, ArtifactKind, Option<&str>); 14] = [
    ("encounter-status", "encounter status", ArtifactKind::EncounterStatus, None),
    ("vital", "vital sign", ArtifactKind::Vital, None),
    ("note", "signed note (text/plain)", ArtifactKind::Note, Some("text/plain")),
    ("document:text", "document: text (chat, transcript)", ArtifactKind::Document, Some("text/plain")),
    ("document:pdf", "document: PDF (consent form, summary)", ArtifactKind::Document, Some("application/pdf")),
    ("document:image", "document: image (photo)", ArtifactKind::Document, Some("image/png")),
    ("diagnosis", "diagnosis", ArtifactKind::Diagnosis, None),
    ("encounter-diagnoses", "Encounter.diagnosis", ArtifactKind::EncounterDiagnoses, None),
    ("order", "lab / imaging / referral order", ArtifactKind::ServiceOrder, None),
    ("prescription", "prescription", ArtifactKind::MedicationOrder, None),
    ("care-plan", "care plan", ArtifactKind::CarePlan, None),
    ("goal", "care plan's goal", ArtifactKind::Goal, None),
    ("consent", "consent", ArtifactKind::Consent, None),
    ("provenance", "drafted note's provenance", ArtifactKind::Provenance, None),
];

/// The names `plan_named` takes, in the table's order.
pub fn artifact_names() -> impl Iterator<Item = &'static str> {
    ARTIFACT_KINDS.iter().map(|(name, ..)| *name)
}

/// The plan of the artifact kind a blueprint names (`vital`, `document:pdf`, …), with what it
/// is; `None` for a name not in [`artifact_names`].
pub fn plan_named(name: &str, profile: &VendorProfile, mllp: bool) -> Option<(&'static str, WritePlan)> {
    ARTIFACT_KINDS.iter().find(|(n, ..)| *n == name).map(|(_, label, kind, content_type)| {
        (*label, plan_shape(Shape { kind: *kind, content_type: *content_type }, profile, mllp))
    })
}

/// The plan for every kind of artifact a visit makes (documents by content type) on one
/// connection: what `telechart connections show` prints before any visit.
pub fn plan_table(profile: &VendorProfile, mllp: bool) -> Vec<(String, WritePlan)> {
    ARTIFACT_KINDS
        .iter()
        .map(|(_, label, kind, content_type)| {
            ((*label).to_owned(), plan_shape(Shape { kind: *kind, content_type: *content_type }, profile, mllp))
        })
        .collect()
}

fn plan_shape(shape: Shape<'_>, profile: &VendorProfile, mllp: bool) -> WritePlan {
    let caps = &profile.capabilities;
    let content_type = shape.content_type.unwrap_or_default();
    match shape.kind {
        ArtifactKind::EncounterStatus => {
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
        ArtifactKind::Vital if caps.observation_create => written("Observation"),
        ArtifactKind::Vital if profile.vitals_upload.is_some() => WritePlan::Fallback(Fallback::VitalsApi),
        ArtifactKind::Vital if mllp => WritePlan::Fallback(Fallback::Hl7Oru),
        ArtifactKind::Vital => not_deliverable("no Observation create, vitals API or HL7v2 listener"),
        ArtifactKind::Note if caps.document_reference_create => {
            let takes = profile.note_content_type;
            if caps.documents_plain_text_only && content_type == "text/html" {
                return if mllp {
                    WritePlan::Fallback(Fallback::Hl7Mdm)
                } else {
                    not_deliverable("an HTML note, and this EHR takes plain-text notes only")
                };
            }
            let sent = if content_type == "text/plain" { "text/plain; charset=utf-8" } else { content_type };
            if takes.starts_with("text/plain") && sent != takes {
                transformed("DocumentReference", format!("content type {takes}"))
            } else {
                written("DocumentReference")
            }
        }
        ArtifactKind::Note if profile.document_upload.is_some() => WritePlan::Fallback(Fallback::DocumentApi),
        ArtifactKind::Note if mllp => WritePlan::Fallback(Fallback::Hl7Mdm),
        ArtifactKind::Note => not_deliverable("no DocumentReference create, document API or HL7v2 listener"),
        ArtifactKind::Document if caps.document_reference_create => {
            match (caps.documents_plain_text_only, content_type.starts_with("text/")) {
                (false, _) => written("DocumentReference"),
                (true, true) => transformed("DocumentReference", "content type text/plain"),
                (true, false) => not_deliverable(format!("{content_type} documents: this EHR takes plain text only")),
            }
        }
        ArtifactKind::Document if profile.document_upload.is_some() => {
            if content_type == "application/pdf" || content_type.starts_with("text/") {
                WritePlan::Fallback(Fallback::DocumentApi)
            } else {
                not_deliverable(format!("{content_type} documents: the document API takes PDF only"))
            }
        }
        ArtifactKind::Document if mllp && content_type.starts_with("text/") => WritePlan::Fallback(Fallback::Hl7Mdm),
        ArtifactKind::Document => not_deliverable("no DocumentReference create or document API"),
        ArtifactKind::Diagnosis if caps.condition_create => match profile.condition_verification {
            "confirmed" => written("Condition"),
            other => transformed("Condition", format!("verificationStatus {other}")),
        },
        ArtifactKind::Diagnosis => not_deliverable("no Condition create"),
        ArtifactKind::EncounterDiagnoses if caps.encounter_update => written("Encounter"),
        ArtifactKind::EncounterDiagnoses => {
            not_deliverable("no Encounter update; the diagnoses stand as Conditions of the encounter where taken")
        }
        ArtifactKind::MedicationOrder if caps.medication_request_create => written("MedicationRequest"),
        ArtifactKind::MedicationOrder => {
            not_deliverable("no MedicationRequest order create (a prescription is never sent as a reported medication)")
        }
        ArtifactKind::ServiceOrder if caps.service_request_create => written("ServiceRequest"),
        ArtifactKind::ServiceOrder => not_deliverable("no ServiceRequest create"),
        ArtifactKind::CarePlan if caps.care_plan_create => written("CarePlan"),
        ArtifactKind::CarePlan => {
            not_deliverable("no CarePlan create; the plan reaches the chart in the after-visit summary")
        }
        ArtifactKind::Goal if caps.goal_create => written("Goal"),
        ArtifactKind::Goal => {
            not_deliverable("no Goal create; the goal is in the CarePlan's note where one is taken, and in the summary")
        }
        ArtifactKind::Consent if caps.consent_create => written("Consent"),
        ArtifactKind::Consent => not_deliverable("no Consent create"),
        ArtifactKind::Provenance if caps.provenance_create => written("Provenance"),
        ArtifactKind::Provenance => {
            not_deliverable("no Provenance create; the note's evidence stays with its draft in Telechart")
        }
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
            replaces: None,
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
        // The table a connection shows holds every kind, and agrees with the per-artifact plan.
        let table = plan_table(&plain_only, false);
        assert_eq!(table.len(), 14);
        assert_eq!(table[13].1, WritePlan::Written { resource_type: "Provenance" });
        assert_eq!(table[2].1, plan(&note("text/plain"), &plain_only, false));
        assert!(table.iter().all(|(_, p)| !p.label().is_empty()));
    }
}
