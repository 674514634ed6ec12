//! What a visit produces: validated vitals, signed notes, documents and encounter status changes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use telechart_fhir::terminology::{self, VitalSpec};
use telechart_fhir::{Decimal, parse_reference};

use crate::{VisitError, VisitState};

/// One artifact, as stored (encrypted) and later mapped to a FHIR resource.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Artifact {
    EncounterStatus(EncounterStatusChange),
    Vital(VitalMeasurement),
    Note(SignedNote),
    Document(crate::VisitDocument),
    Diagnosis(crate::Diagnosis),
    EncounterDiagnoses(crate::EncounterDiagnoses),
    Order(crate::Order),
    CarePlan(crate::CarePlanRecord),
    Goal(crate::GoalRecord),
    Consent(crate::ConsentRecord),
    Provenance(NoteProvenance),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ArtifactKind {
    EncounterStatus,
    Vital,
    Note,
    Document,
    Diagnosis,
    EncounterDiagnoses,
    ServiceOrder,
    MedicationOrder,
    CarePlan,
    Goal,
    Consent,
    Provenance,
}

impl ArtifactKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ArtifactKind::EncounterStatus => "encounter-status",
            ArtifactKind::Vital => "vital",
            ArtifactKind::Note => "note",
            ArtifactKind::Document => "document",
            ArtifactKind::Diagnosis => "diagnosis",
            ArtifactKind::EncounterDiagnoses => "encounter-diagnoses",
            ArtifactKind::ServiceOrder => "service-order",
            ArtifactKind::MedicationOrder => "medication-order",
            ArtifactKind::CarePlan => "care-plan",
            ArtifactKind::Goal => "goal",
            ArtifactKind::Consent => "consent",
            ArtifactKind::Provenance => "provenance",
        }
    }

    /// The FHIR resource type this artifact becomes.
    pub fn resource_type(self) -> &'static str {
        match self {
            ArtifactKind::EncounterStatus | ArtifactKind::EncounterDiagnoses => "Encounter",
            ArtifactKind::Diagnosis => "Condition",
            ArtifactKind::ServiceOrder => "ServiceRequest",
            ArtifactKind::MedicationOrder => "MedicationRequest",
            ArtifactKind::CarePlan => "CarePlan",
            ArtifactKind::Goal => "Goal",
            ArtifactKind::Consent => "Consent",
            ArtifactKind::Provenance => "Provenance",
            ArtifactKind::Vital => "Observation",
            ArtifactKind::Note | ArtifactKind::Document => "DocumentReference",
        }
    }

    /// Whether the artifact also goes to an organisation the visit is disclosed to: the clinical
    /// record of the visit (vitals, notes, documents, diagnoses) — not the visit's Encounter, its
    /// orders, care plan or consents, which belong to the organisation that holds the visit.
    pub fn disclosable(self) -> bool {
        matches!(self, ArtifactKind::Vital | ArtifactKind::Note | ArtifactKind::Document | ArtifactKind::Diagnosis)
    }
}

impl Artifact {
    pub fn kind(&self) -> ArtifactKind {
        match self {
            Artifact::EncounterStatus(_) => ArtifactKind::EncounterStatus,
            Artifact::Vital(_) => ArtifactKind::Vital,
            Artifact::Note(_) => ArtifactKind::Note,
            Artifact::Document(_) => ArtifactKind::Document,
            Artifact::Diagnosis(_) => ArtifactKind::Diagnosis,
            Artifact::EncounterDiagnoses(_) => ArtifactKind::EncounterDiagnoses,
            Artifact::Order(o) if o.kind == crate::OrderKind::Medication => ArtifactKind::MedicationOrder,
            Artifact::Order(_) => ArtifactKind::ServiceOrder,
            Artifact::CarePlan(_) => ArtifactKind::CarePlan,
            Artifact::Goal(_) => ArtifactKind::Goal,
            Artifact::Consent(_) => ArtifactKind::Consent,
            Artifact::Provenance(_) => ArtifactKind::Provenance,
        }
    }
}

/// Where a drafted-then-signed note came from: the note artifact it is the Provenance of, the
/// visit's artifacts its sentences cite (transcripts, vitals, diagnoses, orders), the engine that
/// drafted it and the clinician who signed it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoteProvenance {
    pub note_artifact: String,
    pub sources: Vec<String>,
    /// The engine's name (`telechart-builtin`, or the configured model).
    pub engine: String,
    /// `Practitioner/{id}` of the signer.
    pub signer: String,
    pub signed_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncounterStatusChange {
    pub from: VisitState,
    pub to: VisitState,
    pub at: DateTime<Utc>,
}

/// A vital sign as the telehealth platform sends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VitalInput {
    /// API name from the vital-signs table, e.g. `heart-rate`, `blood-pressure`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub value: Option<Decimal>,
    #[serde(default)]
    pub systolic: Option<Decimal>,
    #[serde(default)]
    pub diastolic: Option<Decimal>,
    /// UCUM code, e.g. `/min`, `Cel`, `mm[Hg]`.
    pub unit: String,
    #[serde(default)]
    pub effective: Option<DateTime<Utc>>,
    /// The patient's home device that took it.
    #[serde(default)]
    pub device: Option<HomeDevice>,
}

/// A home measuring device (a cuff, a pulse oximeter, …) as the platform reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HomeDevice {
    #[serde(rename = "type")]
    pub kind: HomeDeviceKind,
    #[serde(default)]
    pub manufacturer: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub serial_number: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HomeDeviceKind {
    BloodPressureCuff,
    PulseOximeter,
    Thermometer,
    Scale,
}

impl HomeDeviceKind {
    /// SNOMED CT where there is a well-known code, and the text always.
    pub fn coding(self) -> (Option<&'static str>, &'static str) {
        match self {
            HomeDeviceKind::BloodPressureCuff => (Some("70665002"), "Blood pressure cuff"),
            HomeDeviceKind::PulseOximeter => (Some("448703006"), "Pulse oximeter"),
            HomeDeviceKind::Thermometer => (None, "Thermometer"),
            HomeDeviceKind::Scale => (None, "Weighing scale"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VitalValue {
    Single(Decimal),
    BloodPressure { systolic: Decimal, diastolic: Decimal },
}

/// A vital sign that passed validation: known type, accepted UCUM unit, physiological range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VitalMeasurement {
    /// API name, e.g. `heart-rate`.
    pub name: String,
    pub value: VitalValue,
    pub unit: String,
    pub effective: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<HomeDevice>,
}

impl VitalMeasurement {
    pub fn spec(&self) -> Option<&'static VitalSpec> {
        if self.name == terminology::BLOOD_PRESSURE_PANEL.name {
            Some(&terminology::BLOOD_PRESSURE_PANEL)
        } else {
            terminology::vital_by_name(&self.name)
        }
    }
}

/// Validates a batch of vitals; the first error names its field (`vitals[2].value`).
pub fn validate_vitals(inputs: &[VitalInput], now: DateTime<Utc>) -> Result<Vec<VitalMeasurement>, VisitError> {
    if inputs.is_empty() {
        return Err(VisitError::invalid("vitals", "at least one vital sign is required"));
    }
    inputs.iter().enumerate().map(|(i, input)| validate_vital(&format!("vitals[{i}]"), input, now)).collect()
}

fn validate_vital(path: &str, input: &VitalInput, now: DateTime<Utc>) -> Result<VitalMeasurement, VisitError> {
    let effective = input.effective.unwrap_or(now);
    if effective > now + chrono::Duration::minutes(5) {
        return Err(VisitError::invalid(format!("{path}.effective"), "is in the future"));
    }
    let value = if input.kind == terminology::BLOOD_PRESSURE_PANEL.name {
        if input.value.is_some() {
            return Err(VisitError::invalid(
                format!("{path}.value"),
                "blood-pressure takes systolic and diastolic, not value",
            ));
        }
        let systolic = required(path, "systolic", &input.systolic)?;
        let diastolic = required(path, "diastolic", &input.diastolic)?;
        let s = in_range(path, "systolic", &terminology::SYSTOLIC, &input.unit, systolic)?;
        let d = in_range(path, "diastolic", &terminology::DIASTOLIC, &input.unit, diastolic)?;
        if s <= d {
            return Err(VisitError::invalid(
                format!("{path}.systolic"),
                format!("systolic {s} must be greater than diastolic {d}"),
            ));
        }
        VitalValue::BloodPressure { systolic: systolic.clone(), diastolic: diastolic.clone() }
    } else {
        let spec = terminology::vital_by_name(&input.kind).ok_or_else(|| {
            let known: Vec<_> = std::iter::once(terminology::BLOOD_PRESSURE_PANEL.name)
                .chain(terminology::VITALS.iter().map(|v| v.name))
                .collect();
            VisitError::invalid(
                format!("{path}.type"),
                format!("unknown vital sign {:?}; expected one of {}", input.kind, known.join(", ")),
            )
        })?;
        if input.systolic.is_some() || input.diastolic.is_some() {
            return Err(VisitError::invalid(
                format!("{path}.systolic"),
                format!("only blood-pressure takes systolic/diastolic; {} takes value", spec.name),
            ));
        }
        let value = required(path, "value", &input.value)?;
        in_range(path, "value", spec, &input.unit, value)?;
        VitalValue::Single(value.clone())
    };
    Ok(VitalMeasurement {
        name: input.kind.clone(),
        value,
        unit: input.unit.clone(),
        effective,
        device: input.device.clone(),
    })
}

fn required<'a>(path: &str, field: &str, value: &'a Option<Decimal>) -> Result<&'a Decimal, VisitError> {
    value.as_ref().ok_or_else(|| VisitError::invalid(format!("{path}.{field}"), "is required"))
}

fn in_range(path: &str, field: &str, spec: &VitalSpec, unit: &str, value: &Decimal) -> Result<f64, VisitError> {
    let Some(accepted) = spec.unit(unit) else {
        return Err(VisitError::invalid(
            format!("{path}.unit"),
            format!("{unit:?} is not a unit for {}; expected UCUM {}", spec.name, spec.accepted_units()),
        ));
    };
    let number = value
        .as_f64()
        .filter(|n| n.is_finite())
        .ok_or_else(|| VisitError::invalid(format!("{path}.{field}"), "is not a finite number"))?;
    if !(accepted.min..=accepted.max).contains(&number) {
        return Err(VisitError::invalid(
            format!("{path}.{field}"),
            format!(
                "{number} {unit} is outside the physiological range {}–{} {unit} for {}",
                accepted.min, accepted.max, spec.name
            ),
        ));
    }
    Ok(number)
}

/// A note as the clinician signs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NoteInput {
    pub title: String,
    pub text: String,
    /// `Practitioner/{id}` of the signing clinician.
    pub author: String,
    pub signed_at: DateTime<Utc>,
    #[serde(default)]
    pub content_type: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignedNote {
    pub title: String,
    pub text: String,
    pub author: String,
    pub signed_at: DateTime<Utc>,
    pub content_type: String,
    /// The note artifact this one amends (its DocumentReference `replaces` that one's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaces: Option<String>,
}

const NOTE_MAX_BYTES: usize = 1 << 20;
const NOTE_CONTENT_TYPES: &[&str] = &["text/plain", "text/markdown", "text/html"];

pub fn validate_note(input: NoteInput, now: DateTime<Utc>) -> Result<SignedNote, VisitError> {
    if input.title.trim().is_empty() {
        return Err(VisitError::invalid("title", "must not be empty"));
    }
    if input.text.trim().is_empty() {
        return Err(VisitError::invalid("text", "must not be empty"));
    }
    if input.text.len() > NOTE_MAX_BYTES {
        return Err(VisitError::invalid("text", format!("is longer than {NOTE_MAX_BYTES} bytes")));
    }
    match parse_reference(&input.author) {
        Some(("Practitioner", _)) => {}
        _ => return Err(VisitError::invalid("author", "must be a reference Practitioner/{id}")),
    }
    if input.signed_at > now + chrono::Duration::minutes(5) {
        return Err(VisitError::invalid("signedAt", "is in the future"));
    }
    let content_type = input.content_type.unwrap_or_else(|| "text/plain".to_owned());
    if !NOTE_CONTENT_TYPES.contains(&content_type.as_str()) {
        return Err(VisitError::invalid(
            "contentType",
            format!("{content_type:?} is not accepted; expected one of {}", NOTE_CONTENT_TYPES.join(", ")),
        ));
    }
    Ok(SignedNote {
        title: input.title,
        text: input.text,
        author: input.author,
        signed_at: input.signed_at,
        content_type,
        replaces: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-11-26T10:00:00Z".parse().unwrap()
    }

    fn vital(json: serde_json::Value) -> VitalInput {
        serde_json::from_value(json).unwrap()
    }

    fn check(json: serde_json::Value) -> Result<VitalMeasurement, VisitError> {
        validate_vitals(&[vital(json)], now()).map(|mut v| v.remove(0))
    }

    #[test]
    fn vitals_outside_physiology_or_in_wrong_units_name_the_field() {
        let cases = [
            (serde_json::json!({"type":"heart-rate","value":900,"unit":"/min"}), "vitals[0].value"),
            (serde_json::json!({"type":"body-temperature","value":80,"unit":"Cel"}), "vitals[0].value"),
            (serde_json::json!({"type":"body-temperature","value":37,"unit":"K"}), "vitals[0].unit"),
            (serde_json::json!({"type":"heart-rate","value":70,"unit":"bpm"}), "vitals[0].unit"),
            (serde_json::json!({"type":"pulse","value":70,"unit":"/min"}), "vitals[0].type"),
            (
                serde_json::json!({"type":"blood-pressure","systolic":80,"diastolic":120,"unit":"mm[Hg]"}),
                "vitals[0].systolic",
            ),
            (serde_json::json!({"type":"blood-pressure","systolic":120,"unit":"mm[Hg]"}), "vitals[0].diastolic"),
            (serde_json::json!({"type":"heart-rate","unit":"/min"}), "vitals[0].value"),
        ];
        for (input, field) in cases {
            let err = check(input.clone()).unwrap_err();
            assert_eq!(err.field(), Some(field), "{input}: {err}");
        }
    }

    #[test]
    fn valid_vitals_keep_their_decimal_precision() {
        let m = check(serde_json::json!({"type":"body-temperature","value":36.50,"unit":"Cel"})).unwrap();
        let VitalValue::Single(v) = m.value else { panic!("single") };
        // serde_json's json! macro goes through f64; parse the text to see arbitrary precision at work.
        let parsed: VitalInput = serde_json::from_str(r#"{"type":"body-weight","value":70.50,"unit":"kg"}"#).unwrap();
        assert_eq!(parsed.value.unwrap().to_string(), "70.50");
        assert_eq!(v.as_f64(), Some(36.5));
    }

    #[test]
    fn notes_need_a_practitioner_author_and_a_known_content_type() {
        let input = NoteInput {
            title: "Visit note".into(),
            text: "S: cough".into(),
            author: "Patient/1".into(),
            signed_at: now(),
            content_type: None,
        };
        assert_eq!(validate_note(input.clone(), now()).unwrap_err().field(), Some("author"));
        let ok = NoteInput { author: "Practitioner/p1".into(), ..input.clone() };
        assert_eq!(validate_note(ok, now()).unwrap().content_type, "text/plain");
        let bad = NoteInput { author: "Practitioner/p1".into(), content_type: Some("image/png".into()), ..input };
        assert_eq!(validate_note(bad, now()).unwrap_err().field(), Some("contentType"));
    }
}
