//! The visit state machine. Each state is exactly one R4 Appointment status and at most one R4
//! Encounter status, so the two EHR vocabularies never disagree.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::VisitError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VisitState {
    /// Appointment `booked`; no Encounter yet (it would be `planned`).
    Booked,
    /// Appointment `arrived`; Encounter `arrived` (the patient is in the virtual waiting room).
    Arrived,
    /// Appointment `arrived`; Encounter `in-progress` (the call is on).
    InProgress,
    /// Appointment `fulfilled`; Encounter `finished`.
    Finished,
    /// Appointment `cancelled`; Encounter `cancelled` if one was opened.
    Cancelled,
    /// Appointment `noshow`; Encounter `cancelled` if one was opened.
    NoShow,
}

impl VisitState {
    pub const ALL: [VisitState; 6] = [
        VisitState::Booked,
        VisitState::Arrived,
        VisitState::InProgress,
        VisitState::Finished,
        VisitState::Cancelled,
        VisitState::NoShow,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            VisitState::Booked => "booked",
            VisitState::Arrived => "arrived",
            VisitState::InProgress => "in-progress",
            VisitState::Finished => "finished",
            VisitState::Cancelled => "cancelled",
            VisitState::NoShow => "noshow",
        }
    }

    /// R4 `Appointment.status` for this state.
    pub fn appointment_status(self) -> &'static str {
        match self {
            VisitState::Booked => "booked",
            VisitState::Arrived | VisitState::InProgress => "arrived",
            VisitState::Finished => "fulfilled",
            VisitState::Cancelled => "cancelled",
            VisitState::NoShow => "noshow",
        }
    }

    /// R4 `Encounter.status` for this state.
    pub fn encounter_status(self) -> &'static str {
        match self {
            VisitState::Booked => "planned",
            VisitState::Arrived => "arrived",
            VisitState::InProgress => "in-progress",
            VisitState::Finished => "finished",
            VisitState::Cancelled | VisitState::NoShow => "cancelled",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, VisitState::Finished | VisitState::Cancelled | VisitState::NoShow)
    }

    /// The states reachable in one step. R4 Encounter `cancelled` means "ended before it began",
    /// so a visit in progress can only finish.
    pub fn next_states(self) -> &'static [VisitState] {
        match self {
            VisitState::Booked => &[VisitState::Arrived, VisitState::Cancelled, VisitState::NoShow],
            VisitState::Arrived => &[VisitState::InProgress, VisitState::Cancelled],
            VisitState::InProgress => &[VisitState::Finished],
            VisitState::Finished | VisitState::Cancelled | VisitState::NoShow => &[],
        }
    }

    pub fn transition(self, to: VisitState) -> Result<VisitState, VisitError> {
        if self.next_states().contains(&to) {
            return Ok(to);
        }
        let allowed = self.next_states().iter().map(|s| s.as_str()).collect::<Vec<_>>();
        let hint = if allowed.is_empty() {
            format!("{self} is final")
        } else {
            format!("from {self} the visit may go to {}", allowed.join(", "))
        };
        Err(VisitError::IllegalTransition { from: self, to, hint })
    }
}

impl VisitState {
    /// The artifacts of moving from `self` to `to` by the state machine's rules: the Encounter's
    /// status change, or nothing for a visit cancelled or missed before arrival (it never opened
    /// an Encounter).
    pub fn move_to(
        self,
        to: VisitState,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<crate::Artifact>, VisitError> {
        self.transition(to)?;
        if self == VisitState::Booked && matches!(to, VisitState::Cancelled | VisitState::NoShow) {
            return Ok(Vec::new());
        }
        Ok(vec![crate::Artifact::EncounterStatus(crate::EncounterStatusChange { from: self, to, at })])
    }

    /// Vitals are taken while the patient is present: arrived or in the call.
    pub fn capture_vitals(
        self,
        inputs: &[crate::VitalInput],
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<crate::VitalMeasurement>, VisitError> {
        if !matches!(self, VisitState::Arrived | VisitState::InProgress) {
            return Err(VisitError::WrongState { event: "capturing vitals", state: self });
        }
        crate::validate_vitals(inputs, now)
    }

    /// A note is signed during the call or after it ends.
    pub fn sign_note(
        self,
        input: crate::NoteInput,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<crate::SignedNote, VisitError> {
        if !matches!(self, VisitState::InProgress | VisitState::Finished) {
            return Err(VisitError::WrongState { event: "attaching a signed note", state: self });
        }
        crate::validate_note(input, now)
    }

    /// Orders are placed in the call or after it.
    pub fn place_orders(
        self,
        input: crate::OrdersInput,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<crate::Order>, VisitError> {
        if !matches!(self, VisitState::InProgress | VisitState::Finished) {
            return Err(VisitError::WrongState { event: "placing orders", state: self });
        }
        crate::validate_orders(input, now)
    }

    /// Diagnoses are made in the call or after it.
    pub fn diagnose(
        self,
        input: crate::DiagnosesInput,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<crate::Diagnosis>, VisitError> {
        if !matches!(self, VisitState::InProgress | VisitState::Finished) {
            return Err(VisitError::WrongState { event: "recording diagnoses", state: self });
        }
        crate::validate_diagnoses(input, now)
    }

    /// Documents (the consent form in the waiting room, transcripts and attachments during or
    /// after the call) belong to a visit whose Encounter exists: arrived, in the call, finished.
    pub fn attach_document(
        self,
        input: crate::DocumentInput,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<crate::VisitDocument, VisitError> {
        if !matches!(self, VisitState::Arrived | VisitState::InProgress | VisitState::Finished) {
            return Err(VisitError::WrongState { event: "attaching a document", state: self });
        }
        crate::validate_document(input, now)
    }
}

impl fmt::Display for VisitState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for VisitState {
    type Err = VisitError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        VisitState::ALL.into_iter().find(|state| state.as_str() == s).ok_or_else(|| {
            let names = VisitState::ALL.map(|s| s.as_str()).join(", ");
            VisitError::invalid("to", format!("unknown visit state {s:?}; expected one of {names}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_map_onto_both_r4_vocabularies() {
        let table: Vec<_> =
            VisitState::ALL.iter().map(|s| (s.as_str(), s.appointment_status(), s.encounter_status())).collect();
        assert_eq!(
            table,
            vec![
                ("booked", "booked", "planned"),
                ("arrived", "arrived", "arrived"),
                ("in-progress", "arrived", "in-progress"),
                ("finished", "fulfilled", "finished"),
                ("cancelled", "cancelled", "cancelled"),
                ("noshow", "noshow", "cancelled"),
            ]
        );
    }

    #[test]
    fn every_pair_of_states_is_either_allowed_or_refused() {
        let mut allowed = Vec::new();
        for from in VisitState::ALL {
            for to in VisitState::ALL {
                if from.transition(to).is_ok() {
                    allowed.push(format!("{from}->{to}"));
                }
            }
        }
        assert_eq!(
            allowed,
            [
                "booked->arrived",
                "booked->cancelled",
                "booked->noshow",
                "arrived->in-progress",
                "arrived->cancelled",
                "in-progress->finished"
            ]
        );
        let err = VisitState::Finished.transition(VisitState::Arrived).unwrap_err();
        assert_eq!(err.to_string(), "illegal transition from finished to arrived: finished is final");
    }
}
