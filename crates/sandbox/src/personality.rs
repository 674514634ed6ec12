//! Vendor personalities: the sandbox answers as an Epic-like, Oracle Health-like or
//! athenahealth-like server would, per the numbered checklist of `shared/VENDORS.md` §8 (the item
//! numbers are cited where each behaviour is implemented). `Generic` is plain FHIR R4.

use std::str::FromStr;

use axum::http::{Method, StatusCode};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Personality {
    #[default]
    Generic,
    Epic,
    Oracle,
    Athena,
}

impl FromStr for Personality {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "generic" => Ok(Personality::Generic),
            "epic" => Ok(Personality::Epic),
            "oracle" => Ok(Personality::Oracle),
            "athena" => Ok(Personality::Athena),
            other => Err(format!("unknown vendor {other:?}; expected epic, oracle, athena or generic")),
        }
    }
}

/// A write the personality refuses before looking further: HTTP status, OperationOutcome code,
/// the element at fault, and why.
pub(crate) struct WriteRefusal {
    pub status: StatusCode,
    pub code: &'static str,
    pub expression: Option<&'static str>,
    pub message: String,
    /// The vendor's own error code, in `issue.details.coding` (Epic's error table).
    pub vendor_code: Option<&'static str>,
}

/// The code system of Epic's FHIR error table.
pub(crate) const EPIC_ERRORS: &str = "urn:oid:1.2.840.114350.1.13.0.1.7.2.657369";

fn refusal(
    status: StatusCode,
    code: &'static str,
    expression: Option<&'static str>,
    message: &str,
) -> Option<WriteRefusal> {
    Some(WriteRefusal { status, code, expression, message: message.to_owned(), vendor_code: None })
}

fn epic_refusal(status: StatusCode, code: &'static str, epic: &'static str, message: &str) -> Option<WriteRefusal> {
    Some(WriteRefusal { status, code, expression: None, message: message.to_owned(), vendor_code: Some(epic) })
}

fn is_vital_sign(observation: &Value) -> bool {
    observation["category"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["coding"].as_array().into_iter().flatten())
        .any(|c| c["code"] == "vital-signs")
}

/// How a create is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CreateReply {
    /// Body only when `Prefer: return=representation` asks (`false`: always a body unless minimal).
    pub body_only_when_asked: bool,
    /// Never a body.
    pub never_body: bool,
    pub etag: bool,
    pub absolute_location: bool,
}

impl Personality {
    pub(crate) fn refuse_write(self, method: &Method, rtype: &str, resource: &Value) -> Option<WriteRefusal> {
        match self {
            Personality::Generic => None,
            // §8.22: athena's FHIR API takes no writes but QuestionnaireResponse.
            Personality::Athena if rtype != "QuestionnaireResponse" => refusal(
                StatusCode::METHOD_NOT_ALLOWED,
                "not-supported",
                None,
                &format!("{method} {rtype} is not supported: this FHIR API is read-only; use the practice API"),
            ),
            Personality::Athena => None,
            Personality::Epic => match (method.as_str(), rtype) {
                // §8.5: Encounter create/update and Appointment create are not offered.
                ("POST" | "PUT", "Encounter") | ("POST", "Appointment") => refusal(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "not-supported",
                    None,
                    &format!("{method} {rtype} is not supported by this server"),
                ),
                // §8.7: notes are plain text only, on an encounter.
                ("POST", "DocumentReference") => {
                    let types: Vec<&str> = resource["content"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|c| c["attachment"]["contentType"].as_str())
                        .collect();
                    if types.first() != Some(&"text/plain") {
                        return refusal(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            "value",
                            Some("DocumentReference.content.attachment.contentType"),
                            "only text/plain notes are accepted",
                        );
                    }
                    if resource.pointer("/context/encounter/0/reference").is_none() {
                        return refusal(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            "required",
                            Some("DocumentReference.context.encounter"),
                            "a note must belong to an encounter",
                        );
                    }
                    None
                }
                // §8.8: Conditions go to a holding tank as provisional; anything else is refused.
                ("POST", "Condition") => {
                    let status = resource.pointer("/verificationStatus/coding/0/code").and_then(Value::as_str);
                    if status != Some("provisional") {
                        return epic_refusal(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            "business-rule",
                            "59012",
                            "the value of verificationStatus is not accepted here: it must be provisional",
                        );
                    }
                    None
                }
                // §8.6: only vital signs are filed over FHIR.
                ("POST", "Observation") if !is_vital_sign(resource) => epic_refusal(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "not-supported",
                    "59187",
                    "only vital-sign Observations can be filed",
                ),
                _ => None,
            },
            Personality::Oracle => match (method.as_str(), rtype) {
                // §8.19: `;charset=utf-8` on every text content, and a provider's note final.
                ("POST", "DocumentReference") => {
                    let charset = resource["content"].as_array().into_iter().flatten().all(|c| {
                        c["attachment"]["contentType"]
                            .as_str()
                            .is_some_and(|t| !t.starts_with("text/") || t.replace(' ', "").ends_with(";charset=utf-8"))
                    });
                    if !charset {
                        return refusal(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            "value",
                            Some("DocumentReference.content.attachment.contentType"),
                            "a text content type must carry ;charset=utf-8",
                        );
                    }
                    if resource["docStatus"] != "final" {
                        return refusal(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            "business-rule",
                            Some("DocumentReference.docStatus"),
                            "a provider's document must be final",
                        );
                    }
                    None
                }
                // §8.20: a MedicationRequest is only taken as a reported medication.
                ("POST", "MedicationRequest") if resource["reportedBoolean"] != Value::Bool(true) => refusal(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "business-rule",
                    Some("MedicationRequest.reportedBoolean"),
                    "MedicationRequest create is only for reported medications (reportedBoolean true)",
                ),
                _ => None,
            },
        }
    }

    /// §8.18: an Oracle-like server patches only listed paths: an Appointment's `/status` (to
    /// arrived, checked-in, cancelled, booked, fulfilled), never an Encounter's `/status`.
    pub(crate) fn refuse_patch(self, rtype: &str, path: &str, value: &Value) -> Option<WriteRefusal> {
        match (self, rtype, path) {
            (Personality::Oracle, "Appointment", "/status") => {
                let allowed = ["arrived", "checked-in", "cancelled", "booked", "fulfilled"];
                if value.as_str().is_some_and(|v| allowed.contains(&v)) {
                    None
                } else {
                    refusal(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "code-invalid",
                        Some("Appointment.status"),
                        "not a status this server moves to",
                    )
                }
            }
            (Personality::Oracle, "Encounter", "/status") => refusal(
                StatusCode::UNPROCESSABLE_ENTITY,
                "business-rule",
                Some("Encounter.status"),
                "Encounter status is not patchable; move the visit on its Appointment",
            ),
            (Personality::Oracle, _, _)
                if !matches!(path, "/period/start" | "/period/end" | "/type" | "/extension") =>
            {
                refusal(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "not-supported",
                    None,
                    &format!("{path} is not a patchable path of {rtype}"),
                )
            }
            (Personality::Epic | Personality::Athena, _, _) => {
                refusal(StatusCode::METHOD_NOT_ALLOWED, "not-supported", None, "PATCH is not supported")
            }
            _ => None,
        }
    }

    /// What the EHR keeps of a write. §8.7: Epic keeps the first attachment only. Oracle drops
    /// elements it does not support (here: an Observation's device and the contained Device it
    /// points to) without an error.
    pub(crate) fn keep(self, rtype: &str, resource: &mut Value) {
        if self == Personality::Epic
            && rtype == "DocumentReference"
            && let Some(content) = resource.get_mut("content").and_then(Value::as_array_mut)
        {
            content.truncate(1);
        }
        if self == Personality::Oracle
            && rtype == "Observation"
            && let Some(fields) = resource.as_object_mut()
        {
            fields.remove("device");
            fields.remove("contained");
        }
    }

    /// §8.17: Oracle refuses an update without `If-Match` (412); a stale one is a conflict (409).
    pub(crate) fn update_needs_if_match(self) -> bool {
        self == Personality::Oracle
    }

    pub(crate) fn stale_status(self) -> StatusCode {
        if self == Personality::Oracle { StatusCode::CONFLICT } else { StatusCode::PRECONDITION_FAILED }
    }

    pub(crate) fn create_reply(self) -> CreateReply {
        match self {
            // §8.9: 201, empty unless asked, relative Location, no ETag.
            Personality::Epic => {
                CreateReply { body_only_when_asked: true, never_body: false, etag: false, absolute_location: false }
            }
            // §8.16: 201, empty body, absolute Location, ETag.
            Personality::Oracle => {
                CreateReply { body_only_when_asked: false, never_body: true, etag: true, absolute_location: true }
            }
            Personality::Generic | Personality::Athena => {
                CreateReply { body_only_when_asked: false, never_body: false, etag: true, absolute_location: true }
            }
        }
    }
}
