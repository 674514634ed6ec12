//! Diagnoses made in the visit: ICD-10-CM codes checked against the published code set (only
//! billable codes — leaves of the classification — are accepted, as a claim requires), ranked.
//! Each becomes a Condition (category `encounter-diagnosis`), and the batch one update of the
//! Encounter's `diagnosis` list that references them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use telechart_fhir::{icd10cm, parse_reference};

use crate::VisitError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DiagnosisInput {
    /// ICD-10-CM, with or without its dot: `E11.9`, `e119`.
    pub code: String,
    /// 1 = principal; default: the order given.
    #[serde(default)]
    pub rank: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DiagnosesInput {
    pub diagnoses: Vec<DiagnosisInput>,
    /// `Practitioner/{id}` who made them.
    pub recorder: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Diagnosis {
    pub code: String,
    pub display: String,
    pub rank: u32,
    pub recorder: String,
    pub recorded_at: DateTime<Utc>,
}

/// The Encounter's `diagnosis` entries for a batch: each names the artifact whose Condition it
/// references, so the worker can find that Condition's id in the EHR once it is written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EncounterDiagnoses {
    pub entries: Vec<EncounterDiagnosisEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EncounterDiagnosisEntry {
    pub condition_artifact: String,
    pub rank: u32,
}

pub fn validate_diagnoses(input: DiagnosesInput, now: DateTime<Utc>) -> Result<Vec<Diagnosis>, VisitError> {
    if input.diagnoses.is_empty() {
        return Err(VisitError::invalid("diagnoses", "at least one diagnosis is required"));
    }
    if !matches!(parse_reference(&input.recorder), Some(("Practitioner", _))) {
        return Err(VisitError::invalid("recorder", "must be a reference Practitioner/{id}"));
    }
    let mut out: Vec<Diagnosis> = Vec::with_capacity(input.diagnoses.len());
    for (i, d) in input.diagnoses.iter().enumerate() {
        let path = format!("diagnoses[{i}]");
        let found = icd10cm::lookup(&d.code).ok_or_else(|| {
            VisitError::invalid(format!("{path}.code"), format!("{:?} is not an ICD-10-CM code", d.code))
        })?;
        if !found.billable {
            let examples = icd10cm::billable_under(&found.code, 3).join(", ");
            return Err(VisitError::invalid(
                format!("{path}.code"),
                format!(
                    "{} ({}) is a category, not a billable code; choose a more specific one, e.g. {examples}",
                    found.code, found.description
                ),
            ));
        }
        let rank = d.rank.unwrap_or(u32::try_from(i + 1).unwrap_or(u32::MAX));
        if rank == 0 {
            return Err(VisitError::invalid(format!("{path}.rank"), "ranks start at 1"));
        }
        if out.iter().any(|o| o.code == found.code) {
            return Err(VisitError::invalid(format!("{path}.code"), format!("{} is listed twice", found.code)));
        }
        if out.iter().any(|o| o.rank == rank) {
            return Err(VisitError::invalid(format!("{path}.rank"), format!("rank {rank} is given twice")));
        }
        out.push(Diagnosis {
            code: found.code,
            display: found.description,
            rank,
            recorder: input.recorder.clone(),
            recorded_at: now,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-11-26T10:00:00Z".parse().unwrap()
    }

    fn input(codes: &[&str]) -> DiagnosesInput {
        DiagnosesInput {
            diagnoses: codes.iter().map(|c| DiagnosisInput { code: (*c).into(), rank: None }).collect(),
            recorder: "Practitioner/d1".into(),
        }
    }

    #[test]
    fn billable_icd10cm_codes_are_ranked_in_order() {
        let got = validate_diagnoses(input(&["i10", "E11.9"]), now()).unwrap();
        assert_eq!(got[0].code, "I10");
        assert_eq!((got[1].code.as_str(), got[1].rank), ("E11.9", 2));
        assert_eq!(got[1].display, "Type 2 diabetes mellitus without complications");
    }

    #[test]
    fn categories_unknown_codes_and_duplicates_name_the_field() {
        let category = validate_diagnoses(input(&["I10", "E11"]), now()).unwrap_err();
        assert_eq!(category.field(), Some("diagnoses[1].code"));
        assert!(category.to_string().contains("E11.0"), "{category}");
        assert_eq!(validate_diagnoses(input(&["XYZ.1"]), now()).unwrap_err().field(), Some("diagnoses[0].code"));
        assert_eq!(validate_diagnoses(input(&["I10", "i10"]), now()).unwrap_err().field(), Some("diagnoses[1].code"));
        let mut by_patient = input(&["I10"]);
        by_patient.recorder = "Patient/1".into();
        assert_eq!(validate_diagnoses(by_patient, now()).unwrap_err().field(), Some("recorder"));
    }
}
