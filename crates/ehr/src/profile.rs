//! Vendor profiles: what an EHR lets us write and how. Sync asks the profile's [`Capabilities`];
//! it never branches on the vendor's name.

use crate::EhrError;

/// How the visit's Encounter gets into this EHR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncounterWrite {
    /// Find the EHR's Encounter for the appointment; create one if there is none; update status.
    FindOrCreate,
    /// Only adopt an Encounter the EHR made itself; never create or change one.
    FindOnly,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    pub encounter: EncounterWrite,
    /// Whether `PUT` of an Encounter (status changes) is accepted.
    pub encounter_update: bool,
    pub observation_create: bool,
    pub document_reference_create: bool,
    pub condition_create: bool,
    pub service_request_create: bool,
    pub medication_request_create: bool,
    pub care_plan_create: bool,
    pub consent_create: bool,
    /// Whether the visit's status goes on the Appointment (JSON Patch of `/status`) because the
    /// Encounter's status cannot be changed.
    pub visit_status_on_appointment: bool,
    /// Whether searches accept `_lastUpdated` (else inbound polls use a date window).
    pub last_updated_search: bool,
    /// Whether searching by `identifier` finds what we wrote (needed to reconcile unknown outcomes).
    pub identifier_search: bool,
}

/// How an EHR pages search results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paging {
    /// `next` links that are stable (plain FHIR).
    NextLinks,
    /// `next` links holding a server session that expires (Epic's `sessionID`).
    ExpiringSession,
    /// `next` links with a context token; the same record may come again on a later page, so
    /// results are de-duplicated by id, keeping the latest (Oracle's `-pageContext`).
    RepeatingContext,
    /// A `cursor` parameter (athenahealth).
    Cursor,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VendorProfile {
    pub name: &'static str,
    pub capabilities: Capabilities,
    /// Largest `_count` the EHR honours.
    pub max_page_size: u32,
    pub paging: Paging,
    /// The content type a note is sent as (some EHRs take plain text only, some need the charset).
    pub note_content_type: &'static str,
    /// Defaults for the connection's auth profile (scope syntax, token lifetime).
    pub auth: crate::AuthProfile,
    /// The `verificationStatus` a diagnosis is filed with (Epic takes only `provisional`).
    pub condition_verification: &'static str,
    /// Where documents go when FHIR takes none: the EHR's own document API (a planned fallback).
    pub document_upload: Option<DocumentUpload>,
}

/// A vendor document API taking one PDF per call: `path` under the EHR's origin, with
/// `{tenant}` (the practice) and `{patient}` filled in; a form with the base64 PDF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocumentUpload {
    pub path: &'static str,
    pub document_class: &'static str,
}

/// Capabilities of an EHR that takes no FHIR writes but those named.
fn read_only() -> Capabilities {
    Capabilities {
        encounter: EncounterWrite::FindOnly,
        encounter_update: false,
        observation_create: false,
        document_reference_create: false,
        condition_create: false,
        service_request_create: false,
        medication_request_create: false,
        care_plan_create: false,
        consent_create: false,
        last_updated_search: true,
        identifier_search: false,
        visit_status_on_appointment: false,
    }
}

impl VendorProfile {
    /// A standards-following FHIR R4 server (and the sandbox's plain personality).
    pub fn generic() -> Self {
        VendorProfile {
            name: "generic",
            capabilities: Capabilities {
                encounter: EncounterWrite::FindOrCreate,
                encounter_update: true,
                observation_create: true,
                document_reference_create: true,
                condition_create: true,
                service_request_create: true,
                medication_request_create: true,
                care_plan_create: true,
                consent_create: true,
                last_updated_search: true,
                identifier_search: true,
                visit_status_on_appointment: false,
            },
            max_page_size: 100,
            paging: Paging::NextLinks,
            note_content_type: "text/plain; charset=utf-8",
            auth: crate::AuthProfile::default(),
            condition_verification: "confirmed",
            document_upload: None,
        }
    }

    /// Epic-like (shared/VENDORS.md §1–3): Encounter and Appointment read-only, vitals and
    /// plain-text notes on an open encounter, Conditions as provisional, no orders over FHIR;
    /// `_lastUpdated` only on DocumentReference; session paging; v1 scopes; ~55 min tokens.
    pub fn epic() -> Self {
        VendorProfile {
            name: "epic",
            capabilities: Capabilities {
                observation_create: true,
                document_reference_create: true,
                condition_create: true,
                last_updated_search: false,
                ..read_only()
            },
            max_page_size: 1000,
            paging: Paging::ExpiringSession,
            note_content_type: "text/plain",
            auth: crate::AuthProfile {
                scope_syntax: crate::ScopeSyntax::V1,
                assumed_token_lifetime: std::time::Duration::from_secs(3300),
                ..crate::AuthProfile::default()
            },
            condition_verification: "provisional",
            document_upload: None,
        }
    }

    /// Oracle Health-like: the tenant in the path, Encounter created but its status not
    /// patchable (visit state goes on the Appointment), vitals, notes with a charset,
    /// encounter diagnoses; no orders (a reported medication is not an order); 570 s tokens.
    pub fn oracle() -> Self {
        VendorProfile {
            name: "oracle",
            capabilities: Capabilities {
                encounter: EncounterWrite::FindOrCreate,
                observation_create: true,
                document_reference_create: true,
                condition_create: true,
                identifier_search: true,
                visit_status_on_appointment: true,
                ..read_only()
            },
            max_page_size: 200,
            paging: Paging::RepeatingContext,
            note_content_type: "text/plain; charset=utf-8",
            auth: crate::AuthProfile {
                assumed_token_lifetime: std::time::Duration::from_secs(570),
                ..crate::AuthProfile::default()
            },
            condition_verification: "confirmed",
            document_upload: None,
        }
    }

    /// athenahealth-like: FHIR is read-only; writes go through the practice's own API
    /// (documents, vitals) — the write planner's fallbacks; cursor paging; 1 h tokens.
    pub fn athena() -> Self {
        VendorProfile {
            name: "athena",
            capabilities: read_only(),
            max_page_size: 100,
            paging: Paging::Cursor,
            note_content_type: "application/pdf",
            auth: crate::AuthProfile {
                assumed_token_lifetime: std::time::Duration::from_secs(3600),
                ..crate::AuthProfile::default()
            },
            condition_verification: "confirmed",
            document_upload: Some(DocumentUpload {
                path: "/v1/{tenant}/patients/{patient}/documents/clinicaldocument",
                document_class: "CLINICALDOCUMENT",
            }),
        }
    }

    pub fn by_name(name: &str) -> Result<Self, EhrError> {
        match name {
            "generic" => Ok(Self::generic()),
            "epic" => Ok(Self::epic()),
            "oracle" => Ok(Self::oracle()),
            "athena" => Ok(Self::athena()),
            other => Err(EhrError::UnknownProfile(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_carry_what_each_ehr_accepts() {
        let epic = VendorProfile::by_name("epic").unwrap();
        assert_eq!(epic.capabilities.encounter, EncounterWrite::FindOnly);
        assert!(!epic.capabilities.encounter_update && epic.capabilities.observation_create);
        assert!(!epic.capabilities.service_request_create, "orders are not written over Epic's FHIR API");
        let oracle = VendorProfile::by_name("oracle").unwrap();
        assert!(!oracle.capabilities.encounter_update, "Oracle moves a visit on the Appointment");
        assert!(!oracle.capabilities.medication_request_create, "a reported medication is not an order");
        assert_eq!(oracle.paging, Paging::RepeatingContext);
        let athena = VendorProfile::by_name("athena").unwrap();
        assert!(!athena.capabilities.observation_create && !athena.capabilities.document_reference_create);
        assert!(VendorProfile::by_name("allscripts").is_err());
    }
}
