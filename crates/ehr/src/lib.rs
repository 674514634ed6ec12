//! Everything that talks to an EHR: the FHIR REST client, vendor profiles and their write
//! capabilities, and the classification of EHR failures into permanent, transient and
//! unknown-outcome.
//!
//! Invariant: no sync policy here (no retries, no queue); the caller decides what to do with an
//! [`EhrError`]'s [`FailureClass`].

mod auth_profile;
mod backend;
mod client;
mod contract;
pub mod hl7v2;
mod launch;
mod pacing;
mod profile;

pub use auth_profile::{AuthProfile, ScopeSyntax};
pub use backend::{BackendServices, SigningAlg, SigningKey, discover_token_endpoint};
pub use client::{DEFAULT_MAX_IN_FLIGHT, FhirClient, SentRequest, WireTap, Written};
pub use contract::{CapabilityContract, ResourceContract};
pub use launch::{
    AuthorizationRequest, IdClaims, IdTokenRefused, LaunchToken, SmartConfiguration, UserTokens, exchange_code,
    id_token_keys, smart_configuration, verify_id_token,
};
pub use pacing::{Answer, Lane, Pacing, Slot};
pub use profile::{Capabilities, DocumentUpload, EncounterWrite, Paging, VendorProfile, VitalsUpload};

use std::time::Duration;

/// What kind of failure an EHR reported, whatever its own words for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Transient,
    Throttled,
    OutcomeUnknown,
    Conflict,
    Forbidden,
    NotFound,
    BreakGlassRequiredInEhr,
    NotSupported,
    Invalid,
}

/// How the caller should treat a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureClass {
    /// The EHR refused the content; sending it again cannot help.
    Permanent,
    /// The EHR did not act; try again later (after `retry_after` if it said so).
    Transient { retry_after: Option<RetryAfter> },
    /// The EHR may or may not have acted (timeout, reset, 5xx): reconcile before writing again.
    Unknown { retry_after: Option<RetryAfter> },
}

/// An EHR's `Retry-After`: delay-seconds, or an HTTP-date the caller compares with its clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAfter {
    Delay(Duration),
    At(chrono::DateTime<chrono::Utc>),
}

impl RetryAfter {
    pub fn parse(value: &str) -> Option<RetryAfter> {
        let value = value.trim();
        if let Ok(seconds) = value.parse::<u64>() {
            return Some(RetryAfter::Delay(Duration::from_secs(seconds)));
        }
        chrono::DateTime::parse_from_rfc2822(value).ok().map(|at| RetryAfter::At(at.with_timezone(&chrono::Utc)))
    }

    /// The `Retry-After` of a reply, when it has a readable one.
    pub fn from_headers(headers: &reqwest::header::HeaderMap) -> Option<RetryAfter> {
        headers.get(reqwest::header::RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(RetryAfter::parse)
    }

    /// The delay from `now`, never negative.
    pub fn delay_from(&self, now: chrono::DateTime<chrono::Utc>) -> Duration {
        match self {
            RetryAfter::Delay(d) => *d,
            RetryAfter::At(at) => (*at - now).to_std().unwrap_or(Duration::ZERO),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EhrError {
    #[error("{method} {resource_type} refused with HTTP {status}: {message}")]
    Refused { method: &'static str, resource_type: String, status: u16, message: String },
    /// The patient's record is restricted: a person must break the glass in the EHR itself.
    #[error(
        "{method} {resource_type}: the record is restricted; break the glass in the EHR (HTTP {status}): {message}"
    )]
    BreakGlassRequired { method: &'static str, resource_type: String, status: u16, message: String },
    #[error("{method} {resource_type}: version conflict (HTTP {status}): {message}")]
    VersionConflict { method: &'static str, resource_type: String, status: u16, message: String },
    #[error("{method} {resource_type} not processed (HTTP {status}): {message}")]
    Throttled {
        method: &'static str,
        resource_type: String,
        status: u16,
        retry_after: Option<RetryAfter>,
        message: String,
        /// The EHR said "slow down" (a 429, or its own words for it, whatever the status).
        slow_down: bool,
    },
    #[error("{method} {resource_type}: outcome unknown: {reason}")]
    OutcomeUnknown { method: &'static str, resource_type: String, reason: String, retry_after: Option<RetryAfter> },
    #[error("{method} {resource_type}: the EHR could not be reached: {reason}")]
    Unreachable { method: &'static str, resource_type: String, reason: String },
    #[error("{0}")]
    NotSupported(String),
    #[error("the EHR's reply to {method} {resource_type} is not usable: {reason}")]
    Protocol { method: &'static str, resource_type: String, reason: String },
    #[error("invalid EHR base URL {0:?}")]
    BadBaseUrl(String),
    #[error("unknown vendor profile {0:?}; known: generic, epic, oracle, athena")]
    UnknownProfile(String),
}

impl EhrError {
    pub fn class(&self) -> FailureClass {
        match self {
            EhrError::Refused { .. }
            | EhrError::BreakGlassRequired { .. }
            | EhrError::NotSupported(_)
            | EhrError::BadBaseUrl(_)
            | EhrError::UnknownProfile(_) => FailureClass::Permanent,
            EhrError::VersionConflict { .. } | EhrError::Unreachable { .. } => {
                FailureClass::Transient { retry_after: None }
            }
            EhrError::Throttled { retry_after, .. } => FailureClass::Transient { retry_after: *retry_after },
            EhrError::OutcomeUnknown { retry_after, .. } => FailureClass::Unknown { retry_after: *retry_after },
            EhrError::Protocol { .. } => FailureClass::Unknown { retry_after: None },
        }
    }

    /// The one taxonomy every vendor's errors map to (for the trace, metrics and the planner).
    pub fn kind(&self) -> ErrorKind {
        match self {
            EhrError::Throttled { status: 429 | 423 | 408, .. } | EhrError::Throttled { slow_down: true, .. } => {
                ErrorKind::Throttled
            }
            EhrError::Throttled { .. } | EhrError::Unreachable { .. } => ErrorKind::Transient,
            EhrError::OutcomeUnknown { .. } | EhrError::Protocol { .. } => ErrorKind::OutcomeUnknown,
            EhrError::VersionConflict { .. } => ErrorKind::Conflict,
            EhrError::BreakGlassRequired { .. } => ErrorKind::BreakGlassRequiredInEhr,
            EhrError::Refused { status: 401 | 403, .. } => ErrorKind::Forbidden,
            EhrError::Refused { status: 404 | 410, .. } => ErrorKind::NotFound,
            EhrError::Refused { status: 405 | 501, .. } | EhrError::NotSupported(_) | EhrError::UnknownProfile(_) => {
                ErrorKind::NotSupported
            }
            EhrError::Refused { .. } | EhrError::BadBaseUrl(_) => ErrorKind::Invalid,
        }
    }

    pub fn http_status(&self) -> Option<u16> {
        match self {
            EhrError::Refused { status, .. }
            | EhrError::BreakGlassRequired { status, .. }
            | EhrError::VersionConflict { status, .. }
            | EhrError::Throttled { status, .. } => Some(*status),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_has_one_kind() {
        let refused = |status| EhrError::Refused {
            method: "create",
            resource_type: "Observation".into(),
            status,
            message: String::new(),
        };
        assert_eq!(refused(403).kind(), ErrorKind::Forbidden);
        assert_eq!(refused(405).kind(), ErrorKind::NotSupported);
        assert_eq!(refused(422).kind(), ErrorKind::Invalid);
        assert_eq!(refused(404).kind(), ErrorKind::NotFound);
        let throttled = EhrError::Throttled {
            method: "create",
            resource_type: "Observation".into(),
            status: 429,
            retry_after: None,
            message: String::new(),
            slow_down: true,
        };
        assert_eq!(throttled.kind(), ErrorKind::Throttled);
        // A vendor's "slow down" under another status is throttling too; a plain 503 is not.
        let vendor_slow_down = EhrError::Throttled {
            method: "create",
            resource_type: "Observation".into(),
            status: 503,
            retry_after: None,
            message: String::new(),
            slow_down: true,
        };
        assert_eq!(vendor_slow_down.kind(), ErrorKind::Throttled);
        let unavailable = EhrError::Throttled {
            method: "create",
            resource_type: "Observation".into(),
            status: 503,
            retry_after: None,
            message: String::new(),
            slow_down: false,
        };
        assert_eq!(unavailable.kind(), ErrorKind::Transient);
        let btg = EhrError::BreakGlassRequired {
            method: "read",
            resource_type: "Patient".into(),
            status: 403,
            message: String::new(),
        };
        assert_eq!((btg.kind(), btg.class()), (ErrorKind::BreakGlassRequiredInEhr, FailureClass::Permanent));
    }
}
