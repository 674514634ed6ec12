//! Who may do what: roles and permissions as data, FHIR Consent evaluation (`consent`), and the
//! egress registry.
//!
//! Invariant: no I/O. Callers hand in the role, the consents and the request; this crate answers.

pub mod consent;
pub mod governed;

use std::fmt;
use std::str::FromStr;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

/// One thing a route lets its caller do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Permission {
    /// Open a visit from an EHR appointment.
    VisitOpen,
    /// Read a visit (PHI: the patient reference).
    VisitRead,
    /// Move a visit through its states.
    VisitTransition,
    /// Capture vital signs.
    VisitVitals,
    /// Attach a signed clinical note.
    VisitNote,
    /// Have the visit's note drafted from its transcript and inputs (consent decides).
    NoteDraft,
    /// Sign a drafted note: a clinician's act, never a platform's.
    NoteSign,
    /// Attach a transcript, an attachment or a signed consent form.
    VisitDocument,
    /// Record the visit's diagnoses (ICD-10-CM).
    VisitDiagnosis,
    /// Place lab, imaging, referral and medication orders.
    VisitOrder,
    /// Record the visit's billing facts (procedure codes, place of service, modifier).
    VisitBilling,
    /// See where each artifact of a visit is (no PHI).
    VisitTrace,
    /// Read queue depth and dead letters.
    QueueRead,
    /// Return dead letters to the queue.
    QueueReplay,
    /// Scrape Prometheus metrics.
    MetricsRead,
    /// Break the glass: time-boxed access past a consent refusal, with a coded reason.
    BreakGlass,
    /// Review break-glass uses (approve or flag).
    BreakGlassReview,
    /// Share a visit's record with another organisation's EHR connection (consent decides).
    VisitDisclose,
    /// Read the alerts the audit rules fired.
    AuditAlerts,
    /// Publish a version of a consent text patients read and sign.
    ConsentTextPublish,
    /// Read the virtual-care KPIs and the visits behind them — a clinician's own only, unless
    /// `AnalyticsAll` too.
    AnalyticsRead,
    /// Read every clinician's and connection's KPIs.
    AnalyticsAll,
}

impl Permission {
    pub const ALL: [Permission; 22] = [
        Permission::VisitOpen,
        Permission::VisitRead,
        Permission::VisitTransition,
        Permission::VisitVitals,
        Permission::VisitNote,
        Permission::NoteDraft,
        Permission::NoteSign,
        Permission::VisitDocument,
        Permission::VisitDiagnosis,
        Permission::VisitOrder,
        Permission::VisitBilling,
        Permission::VisitTrace,
        Permission::QueueRead,
        Permission::QueueReplay,
        Permission::MetricsRead,
        Permission::BreakGlass,
        Permission::BreakGlassReview,
        Permission::VisitDisclose,
        Permission::AuditAlerts,
        Permission::ConsentTextPublish,
        Permission::AnalyticsRead,
        Permission::AnalyticsAll,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::VisitOpen => "visit:open",
            Permission::VisitRead => "visit:read",
            Permission::VisitTransition => "visit:transition",
            Permission::VisitVitals => "visit:vitals",
            Permission::VisitNote => "visit:note",
            Permission::NoteDraft => "note:draft",
            Permission::NoteSign => "note:sign",
            Permission::VisitDocument => "visit:document",
            Permission::VisitDiagnosis => "visit:diagnosis",
            Permission::VisitOrder => "visit:order",
            Permission::VisitBilling => "visit:billing",
            Permission::VisitTrace => "visit:trace",
            Permission::QueueRead => "queue:read",
            Permission::QueueReplay => "queue:replay",
            Permission::MetricsRead => "metrics:read",
            Permission::BreakGlass => "visit:break-glass",
            Permission::BreakGlassReview => "break-glass:review",
            Permission::VisitDisclose => "visit:disclose",
            Permission::AuditAlerts => "audit:alerts",
            Permission::ConsentTextPublish => "consent-text:publish",
            Permission::AnalyticsRead => "analytics:read",
            Permission::AnalyticsAll => "analytics:all",
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The roles of Telechart's users and API clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Role {
    Clinician,
    Nurse,
    Scheduler,
    Billing,
    ComplianceOfficer,
    IntegrationAdmin,
    /// A practice or service-line manager: the KPIs and the visits behind them, no PHI.
    Manager,
    /// A telehealth platform calling the API with a token.
    Platform,
    /// A metrics scraper.
    Monitor,
    /// A patient acting through a single-use link they were sent: no route permissions.
    Patient,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown role {0:?}; known: clinician, nurse, scheduler, billing, compliance-officer, integration-admin, manager, platform, monitor, patient"
)]
pub struct UnknownRole(pub String);

impl Role {
    pub const ALL: [Role; 10] = [
        Role::Clinician,
        Role::Nurse,
        Role::Scheduler,
        Role::Billing,
        Role::ComplianceOfficer,
        Role::IntegrationAdmin,
        Role::Manager,
        Role::Platform,
        Role::Monitor,
        Role::Patient,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Clinician => "clinician",
            Role::Nurse => "nurse",
            Role::Scheduler => "scheduler",
            Role::Billing => "billing",
            Role::ComplianceOfficer => "compliance-officer",
            Role::IntegrationAdmin => "integration-admin",
            Role::Manager => "manager",
            Role::Platform => "platform",
            Role::Monitor => "monitor",
            Role::Patient => "patient",
        }
    }

    /// The role × permission table. Least privilege: billing and compliance read, only clinical
    /// roles write clinical data, only the integration admin replays deliveries.
    pub fn permissions(self) -> &'static [Permission] {
        use Permission::*;
        match self {
            Role::Clinician => &[
                VisitOpen,
                VisitRead,
                VisitTransition,
                VisitVitals,
                VisitNote,
                NoteDraft,
                NoteSign,
                VisitDocument,
                VisitDiagnosis,
                VisitOrder,
                VisitBilling,
                VisitTrace,
                BreakGlass,
                VisitDisclose,
                AnalyticsRead,
            ],
            Role::Nurse => &[VisitRead, VisitTransition, VisitVitals, VisitDocument, VisitTrace],
            Role::Scheduler => &[VisitOpen, VisitRead, VisitTransition],
            Role::Billing => &[VisitRead, VisitBilling, VisitTrace],
            Role::ComplianceOfficer => &[
                VisitRead,
                VisitTrace,
                QueueRead,
                BreakGlassReview,
                AuditAlerts,
                ConsentTextPublish,
                AnalyticsRead,
                AnalyticsAll,
            ],
            Role::IntegrationAdmin => &[VisitTrace, QueueRead, QueueReplay, MetricsRead, AnalyticsRead, AnalyticsAll],
            Role::Manager => &[VisitTrace, QueueRead, AnalyticsRead, AnalyticsAll],
            Role::Platform => &[
                VisitOpen,
                VisitRead,
                VisitTransition,
                VisitVitals,
                VisitNote,
                NoteDraft,
                VisitDocument,
                VisitDiagnosis,
                VisitOrder,
                VisitBilling,
                VisitTrace,
                VisitDisclose,
            ],
            Role::Monitor => &[MetricsRead, QueueRead],
            Role::Patient => &[],
        }
    }

    pub fn allows(self, permission: Permission) -> bool {
        self.permissions().contains(&permission)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_and_unknown_ones_are_named() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert_eq!("admin".parse::<Role>(), Err(UnknownRole("admin".into())));
    }

    #[test]
    fn only_clinical_writers_sign_notes() {
        let signers: Vec<Role> = Role::ALL.into_iter().filter(|r| r.allows(Permission::VisitNote)).collect();
        assert_eq!(signers, [Role::Clinician, Role::Platform]);
        let draft_signers: Vec<Role> = Role::ALL.into_iter().filter(|r| r.allows(Permission::NoteSign)).collect();
        assert_eq!(draft_signers, [Role::Clinician], "a platform drafts, only a clinician signs");
        assert!(!Role::Billing.allows(Permission::VisitVitals));
        assert!(!Role::Monitor.allows(Permission::VisitRead));
    }
}

/// Destinations PHI may be sent to: each registered origin names the business associate
/// agreement (BAA) that covers it. Loopback never leaves the machine and needs no entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressRegistry {
    entries: Vec<EgressEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EgressEntry {
    /// `scheme://host[:port]`, lower-case.
    pub origin: String,
    /// The BAA's reference, e.g. `BAA-2026-0042`.
    pub baa: String,
    /// The other party to the agreement.
    pub counterparty: Option<String>,
    /// First day the agreement is in force.
    pub starts: Option<NaiveDate>,
    /// Last day the agreement is in force; after it, nothing is sent.
    pub expires: Option<NaiveDate>,
}

impl EgressEntry {
    /// Why the agreement does not cover `today`, if it does not.
    pub fn not_in_force(&self, today: NaiveDate) -> Option<String> {
        if let Some(starts) = self.starts.filter(|s| today < *s) {
            return Some(format!("{} is not in force until {starts}", self.baa));
        }
        self.expires.filter(|e| today > *e).map(|e| format!("{} expired on {e}", self.baa))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressRefused {
    #[error("{0} is not a URL with a host")]
    NotAUrl(String),
    #[error("no business associate agreement is registered for {0}; PHI may not be sent there")]
    NoBaa(String),
    #[error("the business associate agreement for {origin} is not in force: {reason}; PHI may not be sent there")]
    BaaNotInForce { origin: String, reason: String },
}

impl EgressRegistry {
    pub fn new(entries: Vec<EgressEntry>) -> Self {
        let entries = entries
            .into_iter()
            .map(|e| EgressEntry {
                origin: Self::origin_of(&e.origin).map_or_else(|| e.origin.to_ascii_lowercase(), |(o, _)| o),
                ..e
            })
            .collect();
        EgressRegistry { entries }
    }

    /// The origin (`scheme://host[:port]`, default port left out) and host of an absolute URL.
    pub fn origin_of(url: &str) -> Option<(String, String)> {
        let parsed = url::Url::parse(url).ok()?;
        let host = parsed.host_str()?.to_ascii_lowercase();
        Some((parsed.origin().ascii_serialization(), host))
    }

    pub fn entries(&self) -> &[EgressEntry] {
        &self.entries
    }

    /// May PHI go to `url` on `today`? Answers with the covering BAA (registered and in force
    /// that day), `None` for loopback.
    pub fn check(&self, url: &str, today: NaiveDate) -> Result<Option<&EgressEntry>, EgressRefused> {
        let (origin, host) = Self::origin_of(url).ok_or_else(|| EgressRefused::NotAUrl(url.to_owned()))?;
        let loopback = host == "localhost"
            || host == "[::1]"
            || host.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_loopback());
        if loopback {
            return Ok(None);
        }
        let entry =
            self.entries.iter().find(|e| e.origin == origin).ok_or_else(|| EgressRefused::NoBaa(origin.clone()))?;
        match entry.not_in_force(today) {
            Some(reason) => Err(EgressRefused::BaaNotInForce { origin, reason }),
            None => Ok(Some(entry)),
        }
    }
}

#[cfg(test)]
mod egress_tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn only_registered_origins_and_loopback_receive_phi() {
        let registry = EgressRegistry::new(vec![EgressEntry {
            origin: "https://EHR.example/".into(),
            baa: "BAA-1".into(),
            ..Default::default()
        }]);
        let today = day("2026-12-06");
        assert_eq!(registry.check("https://ehr.example/fhir/r4", today).unwrap().unwrap().baa, "BAA-1");
        assert!(registry.check("http://127.0.0.1:8090/fhir", today).unwrap().is_none());
        assert!(registry.check("http://localhost/fhir", today).unwrap().is_none());
        assert_eq!(
            registry.check("https://ehr.example:8443/fhir", today),
            Err(EgressRefused::NoBaa("https://ehr.example:8443".into())),
            "another port is another origin"
        );
        assert!(matches!(registry.check("https://evil.example/ehr.example", today), Err(EgressRefused::NoBaa(_))));
        assert!(
            matches!(registry.check("https://user@evil.example", today), Err(EgressRefused::NoBaa(o)) if o == "https://evil.example")
        );
        assert!(matches!(registry.check("not a url", today), Err(EgressRefused::NotAUrl(_))));
    }

    #[test]
    fn a_baa_covers_only_the_days_it_is_in_force() {
        let registry = EgressRegistry::new(vec![EgressEntry {
            origin: "https://ehr.example".into(),
            baa: "BAA-2".into(),
            counterparty: Some("General Hospital".into()),
            starts: Some(day("2026-01-01")),
            expires: Some(day("2026-12-31")),
        }]);
        let url = "https://ehr.example/fhir";
        assert!(registry.check(url, day("2026-01-01")).is_ok(), "from its first day");
        assert!(registry.check(url, day("2026-12-31")).is_ok(), "through its last day");
        let refused = registry.check(url, day("2027-01-01")).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "the business associate agreement for https://ehr.example is not in force: BAA-2 expired on 2026-12-31; PHI may not be sent there"
        );
        assert!(
            matches!(registry.check(url, day("2025-12-31")), Err(EgressRefused::BaaNotInForce { reason, .. }) if reason.contains("not in force until 2026-01-01"))
        );
        // Loopback never needed one.
        assert!(registry.check("http://127.0.0.1/fhir", day("2030-01-01")).is_ok());
    }
}
