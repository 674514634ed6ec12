//! Code systems and the vital-signs table (LOINC code, UCUM unit, physiological range).

pub const LOINC: &str = "http://loinc.org";
pub const UCUM: &str = "http://unitsofmeasure.org";
pub const OBSERVATION_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";
pub const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
pub const PARTICIPATION_TYPE: &str = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";
pub const DOCUMENT_CLASS_US_CORE: &str = "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category";
pub const VITAL_SIGNS_PROFILE: &str = "http://hl7.org/fhir/StructureDefinition/vitalsigns";
pub const SNOMED: &str = "http://snomed.info/sct";
pub const RXNORM: &str = "http://www.nlm.nih.gov/research/umls/rxnorm";
pub const CONDITION_CLINICAL: &str = "http://terminology.hl7.org/CodeSystem/condition-clinical";
pub const CONDITION_VERIFICATION: &str = "http://terminology.hl7.org/CodeSystem/condition-ver-status";
pub const CONDITION_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/condition-category";
pub const DIAGNOSIS_ROLE: &str = "http://terminology.hl7.org/CodeSystem/diagnosis-role";
pub const BP_PROFILE: &str = "http://hl7.org/fhir/StructureDefinition/bp";

/// The encounter class of every telehealth visit: v3 ActCode `VR` (virtual).
pub const ENCOUNTER_CLASS_VIRTUAL: (&str, &str) = ("VR", "virtual");

/// LOINC document type of a signed visit note ("Progress note").
pub const NOTE_PROGRESS: (&str, &str) = ("11506-3", "Progress note");
/// LOINC document type of a note of no more specific kind (chat and video transcripts, PDFs).
pub const NOTE_GENERIC: (&str, &str) = ("34109-9", "Note");
/// LOINC document type of the after-visit summary ("Summary of episode note").
pub const EPISODE_SUMMARY: (&str, &str) = ("34133-9", "Summary of episode note");
/// LOINC document type of a signed consent form.
pub const CONSENT_DOCUMENT: (&str, &str) = ("59284-0", "Consent Document");
/// LOINC document type of a photograph (a rash, a wound, a device reading).
pub const PHOTOGRAPHIC_IMAGE: (&str, &str) = ("72170-4", "Photographic image");

/// A UCUM unit a vital sign accepts, with the range a living patient can show in it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VitalUnit {
    pub ucum: &'static str,
    pub display: &'static str,
    pub min: f64,
    pub max: f64,
}

/// One row of the vital-signs table of the FHIR R4 vital-signs profile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VitalSpec {
    /// Our API name, kebab-case.
    pub name: &'static str,
    pub loinc: &'static str,
    pub display: &'static str,
    /// The first unit is the profile's canonical one.
    pub units: &'static [VitalUnit],
    /// The R4 profile the Observation claims in `meta.profile`.
    pub profile: &'static str,
}

const fn unit(ucum: &'static str, display: &'static str, min: f64, max: f64) -> VitalUnit {
    VitalUnit { ucum, display, min, max }
}

const MMHG: &[VitalUnit] = &[unit("mm[Hg]", "mmHg", 10.0, 300.0)];

pub const BLOOD_PRESSURE_PANEL: VitalSpec = VitalSpec {
    name: "blood-pressure",
    loinc: "85354-9",
    display: "Blood pressure panel with all children optional",
    units: MMHG,
    profile: BP_PROFILE,
};
pub const SYSTOLIC: VitalSpec = VitalSpec {
    name: "systolic",
    loinc: "8480-6",
    display: "Systolic blood pressure",
    units: &[unit("mm[Hg]", "mmHg", 40.0, 300.0)],
    profile: BP_PROFILE,
};
pub const DIASTOLIC: VitalSpec = VitalSpec {
    name: "diastolic",
    loinc: "8462-4",
    display: "Diastolic blood pressure",
    units: &[unit("mm[Hg]", "mmHg", 10.0, 200.0)],
    profile: BP_PROFILE,
};

/// Every single-value vital sign Telechart captures, keyed by API name.
pub const VITALS: &[VitalSpec] = &[
    VitalSpec {
        name: "heart-rate",
        loinc: "8867-4",
        display: "Heart rate",
        units: &[unit("/min", "beats/minute", 20.0, 300.0)],
        profile: "http://hl7.org/fhir/StructureDefinition/heartrate",
    },
    VitalSpec {
        name: "respiratory-rate",
        loinc: "9279-1",
        display: "Respiratory rate",
        units: &[unit("/min", "breaths/minute", 2.0, 100.0)],
        profile: "http://hl7.org/fhir/StructureDefinition/resprate",
    },
    VitalSpec {
        name: "body-temperature",
        loinc: "8310-5",
        display: "Body temperature",
        units: &[unit("Cel", "C", 25.0, 45.0), unit("[degF]", "F", 77.0, 113.0)],
        profile: "http://hl7.org/fhir/StructureDefinition/bodytemp",
    },
    VitalSpec {
        name: "oxygen-saturation",
        loinc: "2708-6",
        display: "Oxygen saturation in Arterial blood",
        units: &[unit("%", "%", 40.0, 100.0)],
        profile: "http://hl7.org/fhir/StructureDefinition/oxygensat",
    },
    VitalSpec {
        name: "body-weight",
        loinc: "29463-7",
        display: "Body weight",
        units: &[unit("kg", "kg", 0.2, 650.0), unit("g", "g", 200.0, 650_000.0), unit("[lb_av]", "lb", 0.5, 1_430.0)],
        profile: "http://hl7.org/fhir/StructureDefinition/bodyweight",
    },
    VitalSpec {
        name: "body-height",
        loinc: "8302-2",
        display: "Body height",
        units: &[unit("cm", "cm", 20.0, 280.0), unit("[in_i]", "in", 8.0, 110.0)],
        profile: "http://hl7.org/fhir/StructureDefinition/bodyheight",
    },
    VitalSpec {
        name: "bmi",
        loinc: "39156-5",
        display: "Body mass index (BMI) [Ratio]",
        units: &[unit("kg/m2", "kg/m2", 5.0, 150.0)],
        profile: "http://hl7.org/fhir/StructureDefinition/bmi",
    },
];

pub fn vital_by_name(name: &str) -> Option<&'static VitalSpec> {
    VITALS.iter().find(|v| v.name == name)
}

impl VitalSpec {
    pub fn unit(&self, ucum: &str) -> Option<&'static VitalUnit> {
        self.units.iter().find(|u| u.ucum == ucum)
    }

    pub fn accepted_units(&self) -> String {
        self.units.iter().map(|u| u.ucum).collect::<Vec<_>>().join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pins the LOINC code and canonical UCUM unit of every vital sign: a change here changes what
    /// lands in every EHR chart, so it must be deliberate.
    #[test]
    fn vital_sign_codes_and_units_are_pinned() {
        let table: Vec<(&str, &str, &str)> = std::iter::once(&BLOOD_PRESSURE_PANEL)
            .chain([&SYSTOLIC, &DIASTOLIC])
            .chain(VITALS.iter())
            .map(|v| (v.name, v.loinc, v.units[0].ucum))
            .collect();
        assert_eq!(
            table,
            vec![
                ("blood-pressure", "85354-9", "mm[Hg]"),
                ("systolic", "8480-6", "mm[Hg]"),
                ("diastolic", "8462-4", "mm[Hg]"),
                ("heart-rate", "8867-4", "/min"),
                ("respiratory-rate", "9279-1", "/min"),
                ("body-temperature", "8310-5", "Cel"),
                ("oxygen-saturation", "2708-6", "%"),
                ("body-weight", "29463-7", "kg"),
                ("body-height", "8302-2", "cm"),
                ("bmi", "39156-5", "kg/m2"),
            ]
        );
    }

    #[test]
    fn temperature_accepts_celsius_and_fahrenheit_only() {
        let temp = vital_by_name("body-temperature").unwrap();
        assert!(temp.unit("Cel").is_some());
        assert!(temp.unit("[degF]").is_some());
        assert!(temp.unit("K").is_none());
        assert_eq!(temp.accepted_units(), "Cel, [degF]");
    }
}
