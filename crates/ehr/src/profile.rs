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
    /// Whether searches accept `_lastUpdated` (else inbound polls use a date window).
    pub last_updated_search: bool,
    /// Whether searching by `identifier` finds what we wrote (needed to reconcile unknown outcomes).
    pub identifier_search: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VendorProfile {
    pub name: &'static str,
    pub capabilities: Capabilities,
    /// Largest `_count` the EHR honours.
    pub max_page_size: u32,
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
            },
            max_page_size: 100,
        }
    }

    pub fn by_name(name: &str) -> Result<Self, EhrError> {
        match name {
            "generic" => Ok(Self::generic()),
            other => Err(EhrError::UnknownProfile(other.to_owned())),
        }
    }
}
