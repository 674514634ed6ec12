//! FHIR R4 (4.0.1) types that Telechart exchanges, terminology tables and OperationOutcome.
//!
//! Invariant: this crate does no I/O. Resource structs are for what we *write*; resources we read
//! and modify are handled as `serde_json::Value` so that every element the EHR sent is preserved.

mod datatypes;
pub mod icd10cm;
mod outcome;
pub mod readback;
mod resources;
pub mod terminology;

pub use datatypes::*;
pub use outcome::{IssueSeverity, IssueType, OperationOutcome, OutcomeIssue};
pub use resources::*;

/// FHIR decimals keep their written precision (`36.50` stays `36.50`): the workspace enables
/// serde_json's `arbitrary_precision`, so a `Number` carries its text.
pub type Decimal = serde_json::Number;

/// `Type/id` of a resource, the form FHIR references use.
pub fn reference_string(resource_type: &str, id: &str) -> String {
    format!("{resource_type}/{id}")
}

/// Splits `Type/id` (or an absolute URL ending in `Type/id`, with or without `/_history/n`) into
/// its type and id.
pub fn parse_reference(reference: &str) -> Option<(&str, &str)> {
    let trimmed = match reference.find("/_history/") {
        Some(at) => &reference[..at],
        None => reference,
    };
    let (head, id) = trimmed.rsplit_once('/')?;
    let resource_type = head.rsplit('/').next()?;
    let valid_type = resource_type.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && resource_type.chars().all(|c| c.is_ascii_alphanumeric());
    let valid_id =
        !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    (valid_type && valid_id).then_some((resource_type, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_relative_absolute_and_versioned() {
        assert_eq!(parse_reference("Patient/123"), Some(("Patient", "123")));
        assert_eq!(parse_reference("http://ehr.example/fhir/Encounter/e-1/_history/3"), Some(("Encounter", "e-1")));
        assert_eq!(parse_reference("Patient/"), None);
        assert_eq!(parse_reference("patient/1"), None);
        assert_eq!(parse_reference("123"), None);
    }
}
