//! The facts a clean telehealth claim needs, and the checklist that says whether a visit has
//! them. Procedure codes are input only: CPT is licensed by the AMA, so Telechart ships no CPT
//! table and checks only the code's form (CPT: five digits, or four and F/T; HCPCS: a letter and
//! four digits).

use serde::{Deserialize, Serialize};
use telechart_fhir::parse_reference;

use crate::VisitError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Modality {
    Video,
    Audio,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BillingFacts {
    pub procedure_codes: Vec<String>,
    /// CMS place of service: `02` telehealth other than the patient's home, `10` in the home.
    pub place_of_service: String,
    /// `95` synchronous audio-video, `93` audio-only.
    pub modifier: String,
    pub modality: Modality,
    /// `Practitioner/{id}` who rendered the service.
    pub rendering_provider: String,
}

fn procedure_code_ok(code: &str) -> bool {
    let b = code.as_bytes();
    match b {
        [a, b2, c, d, e] => {
            let digits4 = [a, b2, c, d].iter().all(|x| x.is_ascii_digit());
            (digits4 && (e.is_ascii_digit() || *e == b'F' || *e == b'T'))
                || (a.is_ascii_uppercase() && [b2, c, d, e].iter().all(|x| x.is_ascii_digit()))
        }
        _ => false,
    }
}

pub fn validate_billing(facts: &BillingFacts) -> Result<(), VisitError> {
    if facts.procedure_codes.is_empty() {
        return Err(VisitError::invalid("procedureCodes", "at least one procedure code is required"));
    }
    for (i, code) in facts.procedure_codes.iter().enumerate() {
        if !procedure_code_ok(code) {
            return Err(VisitError::invalid(
                format!("procedureCodes[{i}]"),
                format!("{code:?} is not a CPT (5 digits, or 4 and F/T) or HCPCS (a letter and 4 digits) code"),
            ));
        }
    }
    if !matches!(facts.place_of_service.as_str(), "02" | "10") {
        return Err(VisitError::invalid("placeOfService", "telehealth is place of service 02 or 10"));
    }
    if !matches!(facts.modifier.as_str(), "95" | "93") {
        return Err(VisitError::invalid("modifier", "telehealth takes modifier 95 (video) or 93 (audio-only)"));
    }
    if !matches!(parse_reference(&facts.rendering_provider), Some(("Practitioner", _))) {
        return Err(VisitError::invalid("renderingProvider", "must be a reference Practitioner/{id}"));
    }
    Ok(())
}

/// One line of the claim-readiness checklist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClaimCheck {
    pub check: &'static str,
    pub ok: bool,
    pub detail: String,
}

/// What the checklist looks at.
#[derive(Debug, Clone, Default)]
pub struct ClaimFacts<'a> {
    pub billing: Option<&'a BillingFacts>,
    pub diagnoses: usize,
    pub signed_note: bool,
    pub finished: bool,
    /// Deliveries not done (pending, in flight or dead).
    pub undelivered: usize,
}

pub fn claim_readiness(facts: &ClaimFacts<'_>) -> Vec<ClaimCheck> {
    let check = |check, ok, detail: String| ClaimCheck { check, ok, detail };
    let b = facts.billing;
    vec![
        check(
            "procedure-code",
            b.is_some_and(|b| !b.procedure_codes.is_empty()),
            match b {
                Some(b) => b.procedure_codes.join(", "),
                None => "no billing facts recorded".into(),
            },
        ),
        check("diagnosis", facts.diagnoses > 0, format!("{} diagnosis code(s)", facts.diagnoses)),
        check(
            "place-of-service",
            b.is_some_and(|b| matches!(b.place_of_service.as_str(), "02" | "10")),
            b.map(|b| b.place_of_service.clone()).unwrap_or_default(),
        ),
        check(
            "modifier-matches-modality",
            b.is_some_and(|b| {
                matches!((b.modality, b.modifier.as_str()), (Modality::Video, "95") | (Modality::Audio, "93"))
            }),
            b.map(|b| format!("{} for {:?}", b.modifier, b.modality).to_lowercase()).unwrap_or_default(),
        ),
        check("rendering-provider", b.is_some(), b.map(|b| b.rendering_provider.clone()).unwrap_or_default()),
        check(
            "signed-note",
            facts.signed_note,
            if facts.signed_note { "signed".into() } else { "no signed note".into() },
        ),
        check("visit-finished", facts.finished, String::new()),
        check(
            "charted-in-ehr",
            facts.undelivered == 0,
            format!("{} artifact(s) not yet in the EHR", facts.undelivered),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> BillingFacts {
        BillingFacts {
            procedure_codes: vec!["99213".into()],
            place_of_service: "10".into(),
            modifier: "95".into(),
            modality: Modality::Video,
            rendering_provider: "Practitioner/d1".into(),
        }
    }

    #[test]
    fn billing_facts_are_checked_by_form_not_by_a_cpt_table() {
        assert!(validate_billing(&facts()).is_ok());
        for code in ["0001F", "G2012"] {
            assert!(
                validate_billing(&BillingFacts { procedure_codes: vec![code.into()], ..facts() }).is_ok(),
                "{code}"
            );
        }
        for (bad, field) in [
            (BillingFacts { procedure_codes: vec!["9921".into()], ..facts() }, "procedureCodes[0]"),
            (BillingFacts { place_of_service: "11".into(), ..facts() }, "placeOfService"),
            (BillingFacts { modifier: "GT".into(), ..facts() }, "modifier"),
        ] {
            assert_eq!(validate_billing(&bad).unwrap_err().field(), Some(field));
        }
    }

    #[test]
    fn the_checklist_names_what_is_missing() {
        let audio_with_95 = BillingFacts { modality: Modality::Audio, ..facts() };
        let list = claim_readiness(&ClaimFacts {
            billing: Some(&audio_with_95),
            diagnoses: 1,
            signed_note: true,
            finished: true,
            undelivered: 0,
        });
        let failing: Vec<&str> = list.iter().filter(|c| !c.ok).map(|c| c.check).collect();
        assert_eq!(failing, ["modifier-matches-modality"]);
        let empty = claim_readiness(&ClaimFacts::default());
        assert_eq!(empty.iter().filter(|c| c.ok).count(), 1, "only charted-in-ehr holds for nothing: {empty:?}");
    }
}
