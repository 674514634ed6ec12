//! Vendor profiles: what an EHR lets us write and how. Sync asks the profile's [`Capabilities`];
//! it never branches on the vendor's name.

use crate::EhrError;

use serde::{Deserialize, Serialize};

/// How the visit's Encounter gets into this EHR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EncounterWrite {
    /// Find the EHR's Encounter for the appointment; create one if there is none; update status.
    FindOrCreate,
    /// Only adopt an Encounter the EHR made itself; never create or change one.
    FindOnly,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
    /// Goal create: a care plan's goals as their own resources.
    #[serde(default)]
    pub goal_create: bool,
    pub consent_create: bool,
    /// Provenance create: where a drafted note's evidence goes with it.
    pub provenance_create: bool,
    /// Whether the visit's status goes on the Appointment (JSON Patch of `/status`) because the
    /// Encounter's status cannot be changed.
    pub visit_status_on_appointment: bool,
    /// Whether searches accept `_lastUpdated` (else inbound polls use a date window).
    pub last_updated_search: bool,
    /// Whether searching by `identifier` finds what we wrote (needed to reconcile unknown outcomes).
    pub identifier_search: bool,
    /// Whether `_lastUpdated` takes a date only (no time): polls then search from the day.
    #[serde(default)]
    pub last_updated_date_only: bool,
    /// Whether DocumentReference takes plain text only (other documents have no FHIR path).
    pub documents_plain_text_only: bool,
}

/// How an EHR pages search results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
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
    /// Where vital signs go when FHIR takes none: the EHR's own encounter vitals API.
    pub vitals_upload: Option<VitalsUpload>,
    /// A parameter every search must carry, `{tenant}` filled in (athena's `ah-practice`).
    pub search_scope: Option<(&'static str, &'static str)>,
    /// What precedes the EHR's own (numeric) id inside its FHIR ids (athena: `a-1.E-123` →
    /// `123`): its non-FHIR APIs take that id.
    pub native_id_marker: Option<&'static str>,
}

impl VendorProfile {
    /// The id the EHR's own APIs know a FHIR id by.
    pub fn native_id<'a>(&self, fhir_id: &'a str) -> &'a str {
        match self.native_id_marker.and_then(|m| fhir_id.rsplit_once(m)) {
            Some((_, native)) => native,
            None => fhir_id,
        }
    }
}

/// A vendor vitals API taking an encounter's readings in one call: `path` under the EHR's
/// origin with `{tenant}` and `{encounter}` (the EHR's numeric encounter id) filled in; a form
/// whose `vitals` field is a JSON list of readings keyed by the EHR's clinical element ids.
/// `GET` on the same path lists the encounter's readings (for read-back).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VitalsUpload {
    pub path: &'static str,
    /// The EHR's clinical element id for each LOINC code it takes.
    pub elements: &'static [(&'static str, &'static str)],
}

impl VitalsUpload {
    /// The path for an encounter, by the EHR's own encounter id.
    pub fn encounter_path(&self, native_encounter_id: &str) -> String {
        self.path.replace("{encounter}", native_encounter_id)
    }

    /// The readings as the vitals API takes them; a LOINC code it has no element for is an error.
    pub fn readings(&self, readings: &[crate::hl7v2::VitalReading<'_>]) -> Result<serde_json::Value, EhrError> {
        let mut out = Vec::with_capacity(readings.len());
        for r in readings {
            let element =
                self.elements.iter().find(|(loinc, _)| *loinc == r.loinc).map(|(_, e)| *e).ok_or_else(|| {
                    EhrError::NotSupported(format!("the vitals API has no element for LOINC {} ({})", r.loinc, r.name))
                })?;
            out.push(serde_json::json!({"clinicalelementid": element, "value": r.value, "unitofmeasure": r.ucum,
                "readingtaken": r.observed}));
        }
        Ok(serde_json::Value::Array(out))
    }
}

/// athenahealth's encounter vital elements by LOINC (VENDORS.md A6; element names as its
/// vitals configuration lists them).
const ATHENA_VITAL_ELEMENTS: &[(&str, &str)] = &[
    ("8480-6", "VITALS.BLOODPRESSURE.SYSTOLIC"),
    ("8462-4", "VITALS.BLOODPRESSURE.DIASTOLIC"),
    ("8867-4", "VITALS.PULSE.RATE"),
    ("9279-1", "VITALS.RESPIRATIONRATE"),
    ("8310-5", "VITALS.TEMPERATURE"),
    ("2708-6", "VITALS.O2SATURATION"),
    ("59408-5", "VITALS.O2SATURATION"),
    ("29463-7", "VITALS.WEIGHT"),
    ("8302-2", "VITALS.HEIGHT"),
    ("39156-5", "VITALS.BMI"),
];

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
        goal_create: false,
        consent_create: false,
        provenance_create: false,
        last_updated_search: true,
        identifier_search: false,
        visit_status_on_appointment: false,
        documents_plain_text_only: false,
        last_updated_date_only: false,
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
                goal_create: true,
                consent_create: true,
                provenance_create: true,
                last_updated_search: true,
                identifier_search: true,
                visit_status_on_appointment: false,
                documents_plain_text_only: false,
                last_updated_date_only: false,
            },
            max_page_size: 100,
            paging: Paging::NextLinks,
            note_content_type: "text/plain; charset=utf-8",
            auth: crate::AuthProfile::default(),
            condition_verification: "confirmed",
            document_upload: None,
            vitals_upload: None,
            search_scope: None,
            native_id_marker: None,
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
                documents_plain_text_only: true,
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
            vitals_upload: None,
            search_scope: None,
            native_id_marker: None,
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
            vitals_upload: None,
            search_scope: None,
            native_id_marker: None,
        }
    }

    /// athenahealth-like: FHIR is read-only; writes go through the practice's own API
    /// (documents, vitals) — the write planner's fallbacks; cursor paging; 1 h tokens.
    pub fn athena() -> Self {
        VendorProfile {
            name: "athena",
            capabilities: Capabilities { last_updated_date_only: true, ..read_only() },
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
            vitals_upload: Some(VitalsUpload {
                path: "/v1/{tenant}/chart/encounter/{encounter}/vitals",
                elements: ATHENA_VITAL_ELEMENTS,
            }),
            search_scope: Some(("ah-practice", "Organization/a-1.Practice-{tenant}")),
            native_id_marker: Some(".E-"),
        }
    }

    /// A connection's profile: a vendor name, or a JSON object naming a `base` vendor and the
    /// flags that differ from it (for an EHR configured unlike its vendor's default):
    /// `{"base": "athena", "vitals_api": false, "capabilities": {"observation_create": true}}`.
    /// Keys: `capabilities` (any of [`Capabilities`]), `paging`, `max_page_size`,
    /// `note_content_type` (`text/plain` or `text/plain; charset=utf-8`),
    /// `condition_verification` (`confirmed` or `provisional`), `document_api`, `vitals_api`.
    pub fn parse(spec: &str) -> Result<Self, EhrError> {
        let spec = spec.trim();
        if !spec.starts_with('{') {
            return Self::by_name(spec);
        }
        let bad = |why: String| EhrError::UnknownProfile(format!("{spec}: {why}"));
        let overrides: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(spec).map_err(|e| bad(e.to_string()))?;
        let base = overrides.get("base").and_then(|b| b.as_str()).unwrap_or("generic");
        let mut profile = Self::by_name(base)?;
        for (key, value) in &overrides {
            match key.as_str() {
                "base" => {}
                "capabilities" => {
                    let mut caps = serde_json::to_value(&profile.capabilities).map_err(|e| bad(e.to_string()))?;
                    let Some(changes) = value.as_object() else {
                        return Err(bad("capabilities must be an object".into()));
                    };
                    for (flag, v) in changes {
                        caps[flag] = v.clone();
                    }
                    profile.capabilities = serde_json::from_value(caps).map_err(|e| bad(e.to_string()))?;
                }
                "paging" => profile.paging = serde_json::from_value(value.clone()).map_err(|e| bad(e.to_string()))?,
                "max_page_size" => {
                    profile.max_page_size = value
                        .as_u64()
                        .and_then(|n| u32::try_from(n).ok())
                        .filter(|n| *n > 0)
                        .ok_or_else(|| bad("max_page_size must be a positive integer".into()))?;
                }
                "note_content_type" => {
                    profile.note_content_type = match value.as_str() {
                        Some("text/plain") => "text/plain",
                        Some("text/plain; charset=utf-8") => "text/plain; charset=utf-8",
                        _ => return Err(bad("note_content_type: text/plain or text/plain; charset=utf-8".into())),
                    }
                }
                "condition_verification" => {
                    profile.condition_verification = match value.as_str() {
                        Some("confirmed") => "confirmed",
                        Some("provisional") => "provisional",
                        _ => return Err(bad("condition_verification: confirmed or provisional".into())),
                    }
                }
                "document_api" => match value.as_bool() {
                    Some(false) => profile.document_upload = None,
                    Some(true) => profile.document_upload = Self::athena().document_upload,
                    None => return Err(bad("document_api must be true or false".into())),
                },
                "vitals_api" => match value.as_bool() {
                    Some(false) => profile.vitals_upload = None,
                    Some(true) => profile.vitals_upload = Self::athena().vitals_upload,
                    None => return Err(bad("vitals_api must be true or false".into())),
                },
                other => return Err(bad(format!("unknown key {other:?}"))),
            }
        }
        Ok(profile)
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
        let custom = VendorProfile::parse(
            r#"{"base": "athena", "vitals_api": false, "capabilities": {"condition_create": true}}"#,
        )
        .unwrap();
        assert!(
            custom.vitals_upload.is_none() && custom.document_upload.is_some() && custom.capabilities.condition_create
        );
        assert_eq!(VendorProfile::parse("oracle").unwrap(), oracle);
        for bad in [r#"{"base": "x"}"#, r#"{"capabilities": {"flying": true}}"#, r#"{"paging": "sideways"}"#, "{"] {
            assert!(VendorProfile::parse(bad).is_err(), "{bad}");
        }
    }
}
