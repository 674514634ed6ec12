//! The R4 resources Telechart writes, and Bundle for what it reads.

use serde::{Deserialize, Serialize};

use crate::{Attachment, CodeableConcept, Identifier, Meta, Period, Quantity, Reference};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Encounter {
    pub resource_type: ResourceTypeTag<EncounterTag>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identifier: Vec<Identifier>,
    pub status: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub status_history: Vec<EncounterStatusHistory>,
    /// R4 `Encounter.class` is a single Coding (v3 ActCode), `VR` for virtual visits.
    pub class: crate::Coding,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[serde(rename = "type")]
    pub type_: Vec<CodeableConcept>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_type: Vec<CodeableConcept>,
    pub subject: Reference,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub participant: Vec<EncounterParticipant>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub appointment: Vec<Reference>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period: Option<Period>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EncounterStatusHistory {
    pub status: String,
    pub period: Period,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EncounterParticipant {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[serde(rename = "type")]
    pub type_: Vec<CodeableConcept>,
    pub individual: Reference,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Observation {
    pub resource_type: ResourceTypeTag<ObservationTag>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
    /// The home device that measured it, when the patient's own (a contained Device).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contained: Vec<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identifier: Vec<Identifier>,
    pub status: String,
    pub category: Vec<CodeableConcept>,
    pub code: CodeableConcept,
    pub subject: Reference,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encounter: Option<Reference>,
    pub effective_date_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub performer: Vec<Reference>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_quantity: Option<Quantity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<Reference>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub component: Vec<ObservationComponent>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObservationComponent {
    pub code: CodeableConcept,
    pub value_quantity: Quantity,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DocumentReference {
    pub resource_type: ResourceTypeTag<DocumentReferenceTag>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identifier: Vec<Identifier>,
    /// `current` for a live document.
    pub status: String,
    /// `final` once signed, `preliminary` for a draft.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub doc_status: Option<String>,
    #[serde(rename = "type")]
    pub type_: CodeableConcept,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub category: Vec<CodeableConcept>,
    pub subject: Reference,
    pub date: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub author: Vec<Reference>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authenticator: Option<Reference>,
    /// `replaces` for an amended note: the version it supersedes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub relates_to: Vec<DocumentReferenceRelatesTo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub content: Vec<DocumentReferenceContent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context: Option<DocumentReferenceContext>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DocumentReferenceRelatesTo {
    /// `replaces`, `transforms`, `signs` or `appends`.
    pub code: String,
    pub target: Reference,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DocumentReferenceContent {
    pub attachment: Attachment,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct DocumentReferenceContext {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub encounter: Vec<Reference>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period: Option<Period>,
}

/// A searchset or other Bundle as read from an EHR; entries stay raw JSON.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Bundle {
    #[serde(rename = "type", default)]
    pub type_: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub link: Vec<BundleLink>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entry: Vec<BundleEntry>,
}

impl Bundle {
    pub fn next_link(&self) -> Option<&str> {
        self.link.iter().find(|l| l.relation == "next").map(|l| l.url.as_str())
    }

    /// The resources of the entries whose search mode is `match` (or unset), skipping included
    /// resources and the OperationOutcome some servers put in an empty result.
    pub fn matches(&self) -> impl Iterator<Item = &serde_json::Value> {
        self.entry.iter().filter_map(|e| {
            let is_match = e
                .search
                .as_ref()
                .is_none_or(|s| s.mode.as_deref() != Some("outcome") && s.mode.as_deref() != Some("include"));
            let resource = e.resource.as_ref()?;
            let is_outcome = resource.get("resourceType").and_then(|t| t.as_str()) == Some("OperationOutcome");
            (is_match && !is_outcome).then_some(resource)
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct BundleLink {
    pub relation: String,
    pub url: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct BundleEntry {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub full_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search: Option<BundleEntrySearch>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct BundleEntrySearch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
}

/// A diagnosis made in the visit (R4 Condition, category `encounter-diagnosis`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    pub resource_type: ResourceTypeTag<ConditionTag>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identifier: Vec<Identifier>,
    pub clinical_status: CodeableConcept,
    pub verification_status: CodeableConcept,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub category: Vec<CodeableConcept>,
    pub code: CodeableConcept,
    pub subject: Reference,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encounter: Option<Reference>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recorded_date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recorder: Option<Reference>,
}

/// A zero-sized `resourceType` field that serializes as the resource's name and refuses any other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ResourceTypeTag<T>(std::marker::PhantomData<T>);

pub trait ResourceName {
    const NAME: &'static str;
}

macro_rules! resource_tags {
    ($($tag:ident => $name:literal),* $(,)?) => {$(
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
        pub struct $tag;
        impl ResourceName for $tag {
            const NAME: &'static str = $name;
        }
    )*};
}

resource_tags! {
    EncounterTag => "Encounter",
    ObservationTag => "Observation",
    DocumentReferenceTag => "DocumentReference",
    ConditionTag => "Condition",
}

impl<T: ResourceName> Serialize for ResourceTypeTag<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(T::NAME)
    }
}

impl<'de, T: ResourceName> Deserialize<'de> for ResourceTypeTag<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        if name == T::NAME {
            Ok(ResourceTypeTag(std::marker::PhantomData))
        } else {
            Err(serde::de::Error::custom(format!("expected resourceType {}, got {name}", T::NAME)))
        }
    }
}
