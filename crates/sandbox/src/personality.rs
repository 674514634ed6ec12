//! Vendor personalities: the sandbox answers as an Epic-like, Oracle Health-like or
//! athenahealth-like server would, per the numbered checklist of `shared/VENDORS.md` §8 (the item
//! numbers are cited where each behaviour is implemented). `Generic` is plain FHIR R4. What a
//! write meets is a set of [`Quirks`]: each named vendor is a preset of them, and `Custom` is any
//! other combination (the tests draw one at random: an unnamed fifth EHR).

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
    /// An EHR with these quirks and no name.
    Custom(Quirks),
}

/// Resource types a `Custom` EHR may refuse outright (bit i of [`Quirks::refused`]).
pub const REFUSABLE: [&str; 4] = ["ServiceRequest", "CarePlan", "Consent", "Condition"];

/// How an EHR treats writes and pages, flag by flag (`shared/VENDORS.md` §8 item in brackets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quirks {
    /// FHIR takes no writes (405) [22].
    pub fhir_read_only: bool,
    /// The EHR opens encounters itself; Encounter create/update and Appointment create → 405 [5].
    pub encounter_owned_by_ehr: bool,
    /// A visit moves by JSON Patch of `Appointment.status`; an Encounter's status is not
    /// patchable and an Encounter is never replaced (PUT) [18].
    pub status_on_appointment: bool,
    /// Observation create takes vital signs only (59187) [6].
    pub vitals_only: bool,
    /// DocumentReference takes `text/plain` first content only, on an encounter; only the first
    /// attachment is kept [7].
    pub plain_text_documents_only: bool,
    /// Text content needs `;charset=utf-8`, and a document must be final [19].
    pub text_needs_charset_and_final: bool,
    /// Condition create takes `provisional` only (59012) [8].
    pub provisional_conditions_only: bool,
    /// MedicationRequest create takes reported medications only [20].
    pub reported_medications_only: bool,
    /// Resource types refused outright (405), a bit per [`REFUSABLE`] entry.
    pub refused: u8,
    /// Update/patch without `If-Match` → 412; stale → 409 [17].
    pub update_needs_if_match: bool,
    /// Elements it does not support (an Observation's device) are dropped silently.
    pub drops_unsupported: bool,
    /// `-pageContext` paging that repeats a record, no `total` [21].
    pub context_paging: bool,
    /// How a create is answered [9, 16].
    pub create_reply: CreateReply,
    /// The practice's own document and encounter vitals APIs beside FHIR [22].
    pub practice_apis: bool,
}

impl Quirks {
    /// Plain FHIR R4.
    pub const PLAIN: Quirks = Quirks {
        fhir_read_only: false,
        encounter_owned_by_ehr: false,
        status_on_appointment: false,
        vitals_only: false,
        plain_text_documents_only: false,
        text_needs_charset_and_final: false,
        provisional_conditions_only: false,
        reported_medications_only: false,
        refused: 0,
        update_needs_if_match: false,
        drops_unsupported: false,
        context_paging: false,
        create_reply: CreateReply::PLAIN,
        practice_apis: false,
    };

    /// Quirks drawn at random from `seed` (the same seed, the same EHR).
    pub fn drawn(seed: u64) -> Quirks {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut flip = || rng.bool();
        let fhir_read_only = flip() && flip();
        let plain_text_documents_only = flip();
        let text_needs_charset_and_final = !plain_text_documents_only && flip();
        Quirks {
            fhir_read_only,
            encounter_owned_by_ehr: fhir_read_only || flip(),
            status_on_appointment: flip(),
            vitals_only: flip(),
            plain_text_documents_only,
            text_needs_charset_and_final,
            provisional_conditions_only: flip(),
            reported_medications_only: flip(),
            refused: rng.u8(..16),
            update_needs_if_match: rng.bool(),
            drops_unsupported: rng.bool(),
            context_paging: rng.bool(),
            create_reply: CreateReply {
                body_only_when_asked: rng.bool(),
                never_body: rng.bool(),
                etag: rng.bool(),
                absolute_location: rng.bool(),
            },
            practice_apis: rng.bool(),
        }
    }

    pub fn refuses(&self, rtype: &str) -> bool {
        REFUSABLE.iter().position(|t| *t == rtype).is_some_and(|i| self.refused & (1 << i) != 0)
    }
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
pub struct CreateReply {
    /// Body only when `Prefer: return=representation` asks (`false`: always a body unless minimal).
    pub body_only_when_asked: bool,
    /// Never a body.
    pub never_body: bool,
    pub etag: bool,
    pub absolute_location: bool,
}

impl CreateReply {
    const PLAIN: CreateReply =
        CreateReply { body_only_when_asked: false, never_body: false, etag: true, absolute_location: true };
}

impl Personality {
    /// The quirks this personality answers with.
    pub fn quirks(self) -> Quirks {
        match self {
            Personality::Generic => Quirks::PLAIN,
            Personality::Epic => Quirks {
                encounter_owned_by_ehr: true,
                vitals_only: true,
                plain_text_documents_only: true,
                provisional_conditions_only: true,
                // §8.9: 201, empty unless asked, relative Location, no ETag.
                create_reply: CreateReply {
                    body_only_when_asked: true,
                    never_body: false,
                    etag: false,
                    absolute_location: false,
                },
                ..Quirks::PLAIN
            },
            Personality::Oracle => Quirks {
                status_on_appointment: true,
                text_needs_charset_and_final: true,
                reported_medications_only: true,
                update_needs_if_match: true,
                drops_unsupported: true,
                context_paging: true,
                // §8.16: 201, empty body, absolute Location, ETag.
                create_reply: CreateReply {
                    body_only_when_asked: false,
                    never_body: true,
                    etag: true,
                    absolute_location: true,
                },
                ..Quirks::PLAIN
            },
            Personality::Athena => {
                Quirks { fhir_read_only: true, encounter_owned_by_ehr: true, practice_apis: true, ..Quirks::PLAIN }
            }
            Personality::Custom(quirks) => quirks,
        }
    }

    pub(crate) fn refuse_write(self, method: &Method, rtype: &str, resource: &Value) -> Option<WriteRefusal> {
        let q = self.quirks();
        let not_supported = |why: &str| {
            refusal(StatusCode::METHOD_NOT_ALLOWED, "not-supported", None, &format!("{method} {rtype} {why}"))
        };
        // §8.22: athena's FHIR API takes no writes but QuestionnaireResponse.
        if q.fhir_read_only {
            return if rtype == "QuestionnaireResponse" {
                None
            } else {
                not_supported("is not supported: this FHIR API is read-only; use the practice API")
            };
        }
        match (method.as_str(), rtype) {
            // §8.5: Encounter create/update and Appointment create are not offered.
            ("POST" | "PUT", "Encounter") | ("POST", "Appointment") if q.encounter_owned_by_ehr => {
                not_supported("is not supported by this server")
            }
            // §8.18 (VENDORS.md §2): an Encounter is created and patched on listed paths, never
            // replaced.
            ("PUT", "Encounter") if q.status_on_appointment => {
                not_supported("is not supported: patch listed paths; move the visit on its Appointment")
            }
            ("POST", t) if q.refuses(t) => not_supported("is not supported by this server"),
            // §8.7: notes are plain text only, on an encounter.
            ("POST", "DocumentReference") if q.plain_text_documents_only => {
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
            // §8.19: `;charset=utf-8` on every text content, and a provider's note final.
            ("POST", "DocumentReference") if q.text_needs_charset_and_final => {
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
            // §8.8: Conditions go to a holding tank as provisional; anything else is refused.
            ("POST", "Condition") if q.provisional_conditions_only => {
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
            ("POST", "Observation") if q.vitals_only && !is_vital_sign(resource) => epic_refusal(
                StatusCode::UNPROCESSABLE_ENTITY,
                "not-supported",
                "59187",
                "only vital-sign Observations can be filed",
            ),
            // §8.20: a MedicationRequest is only taken as a reported medication.
            ("POST", "MedicationRequest")
                if q.reported_medications_only && resource["reportedBoolean"] != Value::Bool(true) =>
            {
                refusal(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "business-rule",
                    Some("MedicationRequest.reportedBoolean"),
                    "MedicationRequest create is only for reported medications (reportedBoolean true)",
                )
            }
            _ => None,
        }
    }

    /// §8.18: an Oracle-like server patches only listed paths: an Appointment's `/status` (to
    /// arrived, checked-in, cancelled, booked, fulfilled), never an Encounter's `/status`.
    pub(crate) fn refuse_patch(self, rtype: &str, path: &str, value: &Value) -> Option<WriteRefusal> {
        let q = self.quirks();
        if q.fhir_read_only || (q.encounter_owned_by_ehr && !q.status_on_appointment) {
            return refusal(StatusCode::METHOD_NOT_ALLOWED, "not-supported", None, "PATCH is not supported");
        }
        if !q.status_on_appointment {
            return None;
        }
        match (rtype, path) {
            ("Appointment", "/status") => {
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
            ("Encounter", "/status") => refusal(
                StatusCode::UNPROCESSABLE_ENTITY,
                "business-rule",
                Some("Encounter.status"),
                "Encounter status is not patchable; move the visit on its Appointment",
            ),
            _ if !matches!(path, "/period/start" | "/period/end" | "/type" | "/extension") => refusal(
                StatusCode::UNPROCESSABLE_ENTITY,
                "not-supported",
                None,
                &format!("{path} is not a patchable path of {rtype}"),
            ),
            _ => None,
        }
    }

    /// What the EHR keeps of a write. §8.7: Epic keeps the first attachment only. Oracle drops
    /// elements it does not support (here: an Observation's device and the contained Device it
    /// points to) without an error.
    pub(crate) fn keep(self, rtype: &str, resource: &mut Value) {
        let q = self.quirks();
        if q.plain_text_documents_only
            && rtype == "DocumentReference"
            && let Some(content) = resource.get_mut("content").and_then(Value::as_array_mut)
        {
            content.truncate(1);
        }
        if q.drops_unsupported
            && rtype == "Observation"
            && let Some(fields) = resource.as_object_mut()
        {
            fields.remove("device");
            fields.remove("contained");
        }
    }

    /// §8.17: Oracle refuses an update without `If-Match` (412); a stale one is a conflict (409).
    pub(crate) fn update_needs_if_match(self) -> bool {
        self.quirks().update_needs_if_match
    }

    pub(crate) fn stale_status(self) -> StatusCode {
        if self.quirks().update_needs_if_match { StatusCode::CONFLICT } else { StatusCode::PRECONDITION_FAILED }
    }

    pub(crate) fn create_reply(self) -> CreateReply {
        self.quirks().create_reply
    }
}
