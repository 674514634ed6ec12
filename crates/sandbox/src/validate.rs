//! What the sandbox refuses on create and update, each with the element at fault: the checks a
//! real EHR makes before it files anything (required elements, status codes, resolvable
//! references).

use serde_json::Value;

use crate::db::Db;
use crate::types::is_r4_type;

#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// HTTP status: 400 for structure, 422 for business rules such as dangling references.
    pub status: u16,
    pub code: &'static str,
    pub expression: String,
    pub message: String,
}

fn refuse(status: u16, code: &'static str, expression: impl Into<String>, message: impl Into<String>) -> Refusal {
    Refusal { status, code, expression: expression.into(), message: message.into() }
}

/// Required elements (R4 cardinality 1..*) of the types Telechart writes, and the allowed status
/// codes of their required bindings.
fn rules(rtype: &str) -> (&'static [&'static str], &'static [&'static str]) {
    match rtype {
        "Observation" => (
            &["status", "code"],
            &["registered", "preliminary", "final", "amended", "corrected", "cancelled", "entered-in-error", "unknown"],
        ),
        "Encounter" => (
            &["status", "class"],
            &[
                "planned",
                "arrived",
                "triaged",
                "in-progress",
                "onleave",
                "finished",
                "cancelled",
                "entered-in-error",
                "unknown",
            ],
        ),
        "DocumentReference" => (&["status", "content"], &["current", "superseded", "entered-in-error"]),
        "Condition" => (&["subject"], &[]),
        "CarePlan" => (
            &["status", "intent", "subject"],
            &["draft", "active", "on-hold", "revoked", "completed", "entered-in-error", "unknown"],
        ),
        // Goal's status element is `lifecycleStatus`: required here, its codes left to the validator.
        "Goal" => (&["lifecycleStatus", "description", "subject"], &[]),
        "Appointment" => (
            &["status", "participant"],
            &[
                "proposed",
                "pending",
                "booked",
                "arrived",
                "fulfilled",
                "cancelled",
                "noshow",
                "entered-in-error",
                "checked-in",
                "waitlist",
            ],
        ),
        _ => (&[], &[]),
    }
}

pub fn check(db: &Db, rtype: &str, resource: &Value) -> Result<(), Refusal> {
    let Some(object) = resource.as_object() else {
        return Err(refuse(400, "structure", rtype, "the body must be a JSON object"));
    };
    match object.get("resourceType").and_then(Value::as_str) {
        None => return Err(refuse(400, "required", "resourceType", "resourceType is required")),
        Some(t) if t != rtype => {
            return Err(refuse(
                400,
                "invalid",
                "resourceType",
                format!("resourceType {t} does not match the URL's {rtype}"),
            ));
        }
        Some(_) => {}
    }
    let (required, statuses) = rules(rtype);
    for element in required {
        let present = match object.get(*element) {
            None | Some(Value::Null) => false,
            Some(Value::Array(a)) => !a.is_empty(),
            Some(Value::String(s)) => !s.is_empty(),
            Some(_) => true,
        };
        if !present {
            return Err(refuse(
                400,
                "required",
                format!("{rtype}.{element}"),
                format!("{rtype}.{element} is required"),
            ));
        }
    }
    if !statuses.is_empty()
        && let Some(status) = object.get("status")
    {
        match status.as_str() {
            Some(s) if statuses.contains(&s) => {}
            _ => {
                return Err(refuse(
                    400,
                    "code-invalid",
                    format!("{rtype}.status"),
                    format!("{rtype}.status {status} is not one of {}", statuses.join(", ")),
                ));
            }
        }
    }
    check_references(db, resource, rtype)
}

/// Every relative `Type/id` reference must name a known type and a resource that exists here.
fn check_references(db: &Db, node: &Value, path: &str) -> Result<(), Refusal> {
    match node {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get("reference") {
                check_reference(db, reference, &format!("{path}.reference"))?;
            }
            for (key, value) in map {
                if key != "reference" && (value.is_object() || value.is_array()) {
                    check_references(db, value, &format!("{path}.{key}"))?;
                }
            }
            Ok(())
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                check_references(db, item, &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn check_reference(db: &Db, reference: &str, path: &str) -> Result<(), Refusal> {
    // Contained (#x), absolute, URN and conditional references are not ours to resolve.
    if reference.starts_with('#') || reference.contains(':') || reference.contains('?') {
        return Ok(());
    }
    let mut parts = reference.split('/');
    let (Some(target), Some(id)) = (parts.next(), parts.next()) else {
        return Err(refuse(400, "invalid", path, format!("reference {reference:?} is not of the form Type/id")));
    };
    if !is_r4_type(target) {
        return Err(refuse(
            400,
            "invalid",
            path,
            format!("reference {reference:?} names {target}, which is not an R4 resource type"),
        ));
    }
    if !db.exists(target, id) {
        return Err(refuse(
            422,
            "not-found",
            path,
            format!("{path} refers to {target}/{id}, which does not exist on this server"),
        ));
    }
    // A merged-away patient takes no new data: it lives on in the survivor.
    if target == "Patient"
        && let Some(survivor) = db.latest("Patient", id).and_then(|p| replaced_by(p))
    {
        return Err(refuse(
            422,
            "business-rule",
            path,
            format!("Patient/{id} was merged into {survivor}; write to that patient instead"),
        ));
    }
    Ok(())
}

/// The patient a merged-away Patient was replaced by (`link` of type `replaced-by`).
pub fn replaced_by(patient: &Value) -> Option<String> {
    patient["link"]
        .as_array()?
        .iter()
        .find(|l| l["type"] == "replaced-by")
        .and_then(|l| l["other"]["reference"].as_str())
        .map(str::to_owned)
}
