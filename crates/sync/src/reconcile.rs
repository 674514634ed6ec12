//! Reconciling a write whose outcome is unknown, where the EHR keeps no identifier of ours: the
//! same fact found by its natural key within the patient.

use serde_json::Value;
use telechart_ehr::FhirClient;

use crate::SyncError;

/// What makes a write the same fact, for an EHR that keeps no identifier of ours: the search
/// that narrows it within the patient, the elements that must be equal in what was sent and what
/// is there, and those compared only where the EHR kept them (EHRs drop what they do not
/// support). None for a type without one (its identifier is its only key).
struct NaturalKey {
    search: &'static [(&'static str, &'static str)],
    required: &'static [&'static str],
    optional: &'static [&'static str],
}

fn natural_key(resource_type: &str) -> Option<NaturalKey> {
    Some(match resource_type {
        "Observation" => NaturalKey {
            search: &[("code", "/code/coding/0")],
            required: &["/code/coding/0/code", "/effectiveDateTime"],
            optional: &["/valueQuantity/value", "/valueString", "/encounter/reference"],
        },
        "DocumentReference" => NaturalKey {
            search: &[],
            required: &["/type/coding/0/code", "/date"],
            optional: &["/content/0/attachment/hash", "/description", "/context/encounter/0/reference"],
        },
        "Condition" => NaturalKey {
            search: &[("code", "/code/coding/0")],
            required: &["/code/coding/0/code", "/recordedDate"],
            optional: &["/encounter/reference"],
        },
        "ServiceRequest" => NaturalKey {
            search: &[],
            required: &["/code/coding/0/code", "/authoredOn"],
            optional: &["/encounter/reference"],
        },
        "MedicationRequest" => NaturalKey {
            search: &[],
            required: &["/medicationCodeableConcept/coding/0/code", "/authoredOn"],
            optional: &["/encounter/reference"],
        },
        _ => return None,
    })
}

/// The patient's resource that is `sent` by its natural key, if the EHR has it.
pub(crate) async fn find_by_natural_key(
    client: &FhirClient,
    resource_type: &str,
    sent: &Value,
    patient: &str,
) -> Result<Option<Value>, SyncError> {
    let Some(key) = natural_key(resource_type) else { return Ok(None) };
    // A key element missing from what was sent: no natural key to go by.
    if key.required.iter().any(|p| sent.pointer(p).is_none()) {
        return Ok(None);
    }
    let mut params: Vec<(&str, String)> = vec![("patient", patient.to_owned())];
    for (name, pointer) in key.search {
        if let Some(coding) = sent.pointer(pointer).filter(|c| c["code"].is_string()) {
            let system = coding["system"].as_str().unwrap_or_default();
            params.push((name, format!("{system}|{}", coding["code"].as_str().unwrap_or_default())));
        }
    }
    let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let candidates = client.search(resource_type, &params).await?;
    Ok(candidates.into_iter().find(|found| {
        let required = key.required.iter().all(|p| {
            matches!(
                (sent.pointer(p), found.pointer(p)), (Some(a), Some(b)) if same_value(a, b)
            )
        });
        let optional = key.optional.iter().all(|p| match (sent.pointer(p), found.pointer(p)) {
            (Some(a), Some(b)) => same_value(a, b),
            _ => true,
        });
        required && optional
    }))
}

/// Equal as FHIR means it: numbers by value (36.8 and 36.80 are one measurement), the rest exactly.
fn same_value(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) if a.is_number() && b.is_number() => (x - y).abs() < 1e-9,
        _ => a == b,
    }
}
