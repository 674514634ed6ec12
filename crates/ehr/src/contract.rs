//! A connection's capability contract: what the EHR's CapabilityStatement offers, intersected
//! with what its vendor profile knows it takes, for every resource type Telechart writes. Stored
//! and versioned per connection; shown by `telechart connections show`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::VendorProfile;

/// The resource types Telechart writes, and the profile capability that governs each.
const WRITTEN: &[&str] = &[
    "Encounter",
    "Observation",
    "DocumentReference",
    "Condition",
    "ServiceRequest",
    "MedicationRequest",
    "CarePlan",
    "Goal",
    "Consent",
    "Provenance",
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceContract {
    /// Interactions the server's CapabilityStatement lists.
    pub server_offers: Vec<String>,
    pub conditional_create: bool,
    /// What Telechart will do: the server offers it and the profile takes it.
    pub create: bool,
    pub update: bool,
    pub search_params: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapabilityContract {
    pub profile: String,
    pub fhir_version: Option<String>,
    pub software: Option<String>,
    pub paging: String,
    pub note_content_type: String,
    pub scope_syntax: String,
    pub resources: BTreeMap<String, ResourceContract>,
}

fn profile_allows(profile: &VendorProfile, rtype: &str) -> (bool, bool) {
    let c = &profile.capabilities;
    match rtype {
        "Encounter" => (c.encounter == crate::EncounterWrite::FindOrCreate, c.encounter_update),
        "Observation" => (c.observation_create, c.observation_create),
        "DocumentReference" => (c.document_reference_create, false),
        "Condition" => (c.condition_create, false),
        "ServiceRequest" => (c.service_request_create, false),
        "MedicationRequest" => (c.medication_request_create, false),
        "CarePlan" => (c.care_plan_create, false),
        "Goal" => (c.goal_create, false),
        "Consent" => (c.consent_create, false),
        "Provenance" => (c.provenance_create, false),
        _ => (false, false),
    }
}

impl CapabilityContract {
    /// From the server's CapabilityStatement (JSON) and the connection's profile.
    pub fn build(profile: &VendorProfile, statement: &Value) -> CapabilityContract {
        let rest = statement["rest"].as_array().and_then(|r| r.iter().find(|r| r["mode"] == "server"));
        let mut resources = BTreeMap::new();
        for rtype in WRITTEN {
            let declared =
                rest.and_then(|r| r["resource"].as_array()).and_then(|list| list.iter().find(|r| r["type"] == *rtype));
            let server_offers: Vec<String> = declared
                .and_then(|d| d["interaction"].as_array())
                .into_iter()
                .flatten()
                .filter_map(|i| i["code"].as_str().map(str::to_owned))
                .collect();
            let search_params: Vec<String> = declared
                .and_then(|d| d["searchParam"].as_array())
                .into_iter()
                .flatten()
                .filter_map(|p| p["name"].as_str().map(str::to_owned))
                .collect();
            let (profile_create, profile_update) = profile_allows(profile, rtype);
            let offers = |code: &str| server_offers.iter().any(|o| o == code);
            resources.insert(
                (*rtype).to_owned(),
                ResourceContract {
                    create: profile_create && offers("create"),
                    update: profile_update && offers("update"),
                    conditional_create: declared.is_some_and(|d| d["conditionalCreate"] == true),
                    server_offers,
                    search_params,
                },
            );
        }
        CapabilityContract {
            profile: profile.name.to_owned(),
            fhir_version: statement["fhirVersion"].as_str().map(str::to_owned),
            software: statement["software"]["name"].as_str().map(str::to_owned),
            paging: format!("{:?}", profile.paging),
            note_content_type: profile.note_content_type.to_owned(),
            scope_syntax: format!("{:?}", profile.auth.scope_syntax),
            resources,
        }
    }
}

impl CapabilityContract {
    /// The profile as this EHR's contract narrows it: a resource the contract will not create
    /// (the server does not offer it) is not written, whatever the profile says.
    pub fn narrow(&self, profile: &VendorProfile) -> VendorProfile {
        let mut narrowed = profile.clone();
        let create = |rtype: &str| self.resources.get(rtype).is_none_or(|r| r.create);
        let c = &mut narrowed.capabilities;
        c.observation_create &= create("Observation");
        c.document_reference_create &= create("DocumentReference");
        c.condition_create &= create("Condition");
        c.service_request_create &= create("ServiceRequest");
        c.medication_request_create &= create("MedicationRequest");
        c.care_plan_create &= create("CarePlan");
        c.goal_create &= create("Goal");
        c.consent_create &= create("Consent");
        c.provenance_create &= create("Provenance");
        c.encounter_update &= self.resources.get("Encounter").is_none_or(|r| r.update);
        narrowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_contract_narrows_the_profile_to_what_the_server_offers() {
        let statement = json!({"rest": [{"mode": "server", "resource": [
            {"type": "Observation", "interaction": [{"code": "create"}]},
            {"type": "Encounter", "interaction": [{"code": "create"}, {"code": "update"}]}]}]});
        let generic = VendorProfile::generic();
        let narrowed = CapabilityContract::build(&generic, &statement).narrow(&generic);
        assert!(narrowed.capabilities.observation_create && narrowed.capabilities.encounter_update);
        assert!(!narrowed.capabilities.condition_create, "the server offers no Condition create");
        assert!(generic.capabilities.condition_create);
    }

    #[test]
    fn the_contract_is_what_both_the_server_and_the_profile_allow() {
        let statement = json!({"fhirVersion": "4.0.1", "rest": [{"mode": "server", "resource": [
            {"type": "Encounter", "interaction": [{"code": "read"}, {"code": "create"}, {"code": "update"}]},
            {"type": "Observation", "interaction": [{"code": "create"}, {"code": "search-type"}], "conditionalCreate": false,
             "searchParam": [{"name": "patient", "type": "reference"}]}]}]});
        let generic = CapabilityContract::build(&VendorProfile::generic(), &statement);
        assert!(generic.resources["Encounter"].create && generic.resources["Encounter"].update);
        assert!(!generic.resources["Consent"].create, "the server does not offer it");
        let epic = CapabilityContract::build(&VendorProfile::epic(), &statement);
        assert!(!epic.resources["Encounter"].create, "the profile knows better than the statement");
        assert!(epic.resources["Observation"].create);
        assert_eq!(epic.resources["Observation"].search_params, ["patient"]);
    }
}
