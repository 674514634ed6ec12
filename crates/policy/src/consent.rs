//! FHIR R4 Consent evaluation: may this access happen, under which Consent, through which
//! provision, and why.
//!
//! R4 semantics (http://hl7.org/fhir/R4/consent.html): only `status = active` permits or denies;
//! `scope` and `category` select the consents that speak to a request; `policyRule` gives the base
//! rule; the root `provision` bounds the consent (its criteria must match) and nested provisions,
//! each with a `type`, are exceptions to their parent, so the deepest matching provision decides.
//! Where R4 leaves the choice open — no consent at all, several active ones, siblings that both
//! match, codings without a system — the rule is [`ConsentPolicy`], labelled "Telechart policy" in
//! every explanation it produces.
//!
//! Parsing happens once ([`Consent::from_fhir`]); [`ConsentSet::decide`] does no allocation beyond
//! the explanation, so a decision over a tenant's thousand consents takes microseconds.

use std::collections::HashMap;
use std::fmt::{self, Write as _};

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const CONSENT_SCOPE: &str = "http://terminology.hl7.org/CodeSystem/consentscope";
pub const CONSENT_ACTION: &str = "http://terminology.hl7.org/CodeSystem/consentaction";
pub const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
pub const ACT_REASON: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";
pub const PARTICIPATION_TYPE: &str = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";
pub const CONFIDENTIALITY: &str = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality";
pub const RESOURCE_TYPES: &str = "http://hl7.org/fhir/resource-types";
/// Telechart's own consent categories, for flows no public code names (telehealth, recording).
pub const TELECHART_CONSENT_CATEGORY: &str = "https://telechart.dev/fhir/CodeSystem/consent-category";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsentError {
    #[error("resourceType must be \"Consent\"")]
    NotAConsent,
    #[error("{0} is required")]
    Missing(&'static str),
    #[error(
        "{path}: {value:?} is not a Consent status (draft, proposed, active, rejected, inactive, entered-in-error)"
    )]
    Status { path: &'static str, value: String },
    #[error("{path}: {value:?} is not a FHIR dateTime")]
    Date { path: String, value: String },
    #[error("{path}.type: {value:?} must be permit or deny")]
    ProvisionType { path: String, value: String },
    #[error("{path}.type is required in a nested provision (R4 Consent.provision.type)")]
    NestedWithoutType { path: String },
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: &'static str },
}

/// A code in a code system. A coding without a system matches on its code alone (Telechart
/// policy: consents written by hand often leave the system out).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Coding {
    pub system: Option<String>,
    pub code: String,
}

impl Coding {
    pub fn new(system: &str, code: &str) -> Self {
        Coding { system: Some(system.to_owned()), code: code.to_owned() }
    }

    fn matches(&self, other: &Coding) -> bool {
        self.code == other.code
            && match (&self.system, &other.system) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

impl fmt::Display for Coding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.system {
            Some(system) => write!(f, "{system}|{}", self.code),
            None => f.write_str(&self.code),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConsentStatus {
    Draft,
    Proposed,
    Active,
    Rejected,
    Inactive,
    EnteredInError,
}

impl ConsentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentStatus::Draft => "draft",
            ConsentStatus::Proposed => "proposed",
            ConsentStatus::Active => "active",
            ConsentStatus::Rejected => "rejected",
            ConsentStatus::Inactive => "inactive",
            ConsentStatus::EnteredInError => "entered-in-error",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "draft" => ConsentStatus::Draft,
            "proposed" => ConsentStatus::Proposed,
            "active" => ConsentStatus::Active,
            "rejected" => ConsentStatus::Rejected,
            "inactive" => ConsentStatus::Inactive,
            "entered-in-error" => ConsentStatus::EnteredInError,
            _ => return None,
        })
    }
}

/// The four R4 consent scopes (`Consent.scope`, http://terminology.hl7.org/CodeSystem/consentscope).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    Adr,
    Research,
    PatientPrivacy,
    Treatment,
}

impl Scope {
    pub fn code(self) -> &'static str {
        match self {
            Scope::Adr => "adr",
            Scope::Research => "research",
            Scope::PatientPrivacy => "patient-privacy",
            Scope::Treatment => "treatment",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Permit,
    Deny,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Permit => "permit",
            Outcome::Deny => "deny",
        }
    }
}

/// An inclusive time span; a missing end is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
}

impl Span {
    fn contains(&self, t: DateTime<Utc>) -> bool {
        self.start.is_none_or(|s| s <= t) && self.end.is_none_or(|e| t <= e)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DataMeaning {
    Instance,
    Related,
    Dependents,
    AuthoredBy,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct DataRef {
    meaning: DataMeaning,
    reference: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Actor {
    roles: Vec<Coding>,
    reference: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Provision {
    kind: Option<Outcome>,
    period: Option<Span>,
    actors: Vec<Actor>,
    actions: Vec<Coding>,
    security_labels: Vec<Coding>,
    purposes: Vec<Coding>,
    classes: Vec<Coding>,
    codes: Vec<Coding>,
    data_period: Option<Span>,
    data: Vec<DataRef>,
    children: Vec<Provision>,
}

/// One parsed R4 Consent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consent {
    pub id: String,
    pub status: ConsentStatus,
    /// `Patient/{id}`.
    pub patient: String,
    pub date_time: Option<DateTime<Utc>>,
    scope: Vec<Coding>,
    categories: Vec<Coding>,
    policy_rule: Vec<Coding>,
    policy_uris: Vec<String>,
    root: Option<Provision>,
}

fn str_at<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn coding(v: &Value) -> Option<Coding> {
    Some(Coding { system: str_at(v, "system").map(str::to_owned), code: str_at(v, "code")?.to_owned() })
}

fn codings_of_concept(v: Option<&Value>) -> Vec<Coding> {
    v.and_then(|c| c.get("coding"))
        .and_then(Value::as_array)
        .map_or_else(Vec::new, |a| a.iter().filter_map(coding).collect())
}

fn codings_of_concepts(v: Option<&Value>) -> Vec<Coding> {
    v.and_then(Value::as_array).map_or_else(Vec::new, |a| a.iter().flat_map(|c| codings_of_concept(Some(c))).collect())
}

fn codings(v: Option<&Value>) -> Vec<Coding> {
    v.and_then(Value::as_array).map_or_else(Vec::new, |a| a.iter().filter_map(coding).collect())
}

/// A FHIR dateTime of any precision, as the first (`end = false`) or last instant it covers.
pub fn parse_fhir_instant(s: &str, end: bool) -> Option<DateTime<Utc>> {
    let date = |y: i32, m: u32, d: u32| NaiveDate::from_ymd_opt(y, m, d);
    let (first, next) = match s.len() {
        4 => {
            let y = s.parse().ok()?;
            (date(y, 1, 1)?, date(y + 1, 1, 1)?)
        }
        7 => {
            let y = s.get(..4)?.parse().ok()?;
            let m: u32 = s.get(5..)?.parse().ok()?;
            let first = date(y, m, 1)?;
            let next = if m == 12 { date(y + 1, 1, 1)? } else { date(y, m + 1, 1)? };
            (first, next)
        }
        10 => {
            let d = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
            (d, d.succ_opt()?)
        }
        _ => return DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc)),
    };
    let day = if end { next } else { first };
    let t = Utc.from_utc_datetime(&day.and_hms_opt(0, 0, 0)?);
    Some(if end { t - chrono::Duration::milliseconds(1) } else { t })
}

fn span(v: Option<&Value>, path: &str) -> Result<Option<Span>, ConsentError> {
    let Some(v) = v else { return Ok(None) };
    let bound = |key: &str, end: bool| -> Result<Option<DateTime<Utc>>, ConsentError> {
        match str_at(v, key) {
            None => Ok(None),
            Some(s) => parse_fhir_instant(s, end)
                .map(Some)
                .ok_or_else(|| ConsentError::Date { path: format!("{path}.{key}"), value: s.to_owned() }),
        }
    };
    Ok(Some(Span { start: bound("start", false)?, end: bound("end", true)? }))
}

fn provision(v: &Value, path: &str, root: bool) -> Result<Provision, ConsentError> {
    let kind = match str_at(v, "type") {
        None if root => None,
        None => return Err(ConsentError::NestedWithoutType { path: path.to_owned() }),
        Some("permit") => Some(Outcome::Permit),
        Some("deny") => Some(Outcome::Deny),
        Some(other) => return Err(ConsentError::ProvisionType { path: path.to_owned(), value: other.to_owned() }),
    };
    let mut actors = Vec::new();
    for (i, a) in v.get("actor").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let reference = a.get("reference").and_then(|r| str_at(r, "reference")).ok_or_else(|| {
            ConsentError::Invalid { path: format!("{path}.actor[{i}].reference"), reason: "a reference is required" }
        })?;
        actors.push(Actor { roles: codings_of_concept(a.get("role")), reference: reference.to_owned() });
    }
    let mut data = Vec::new();
    for (i, d) in v.get("data").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let meaning = match str_at(d, "meaning") {
            Some("instance") => DataMeaning::Instance,
            Some("related") => DataMeaning::Related,
            Some("dependents") => DataMeaning::Dependents,
            Some("authoredby") => DataMeaning::AuthoredBy,
            _ => {
                return Err(ConsentError::Invalid {
                    path: format!("{path}.data[{i}].meaning"),
                    reason: "must be instance, related, dependents or authoredby",
                });
            }
        };
        let reference = d.get("reference").and_then(|r| str_at(r, "reference")).ok_or_else(|| {
            ConsentError::Invalid { path: format!("{path}.data[{i}].reference"), reason: "a reference is required" }
        })?;
        data.push(DataRef { meaning, reference: reference.to_owned() });
    }
    let mut children = Vec::new();
    for (i, c) in v.get("provision").and_then(Value::as_array).into_iter().flatten().enumerate() {
        children.push(provision(c, &format!("{path}.provision[{i}]"), false)?);
    }
    Ok(Provision {
        kind,
        period: span(v.get("period"), &format!("{path}.period"))?,
        actors,
        actions: codings_of_concepts(v.get("action")),
        security_labels: codings(v.get("securityLabel")),
        purposes: codings(v.get("purpose")),
        classes: codings(v.get("class")),
        codes: codings_of_concepts(v.get("code")),
        data_period: span(v.get("dataPeriod"), &format!("{path}.dataPeriod"))?,
        data,
        children,
    })
}

impl Consent {
    /// Parses an R4 Consent; what the engine needs is checked, what it does not use is ignored.
    pub fn from_fhir(v: &Value) -> Result<Consent, ConsentError> {
        if str_at(v, "resourceType") != Some("Consent") {
            return Err(ConsentError::NotAConsent);
        }
        let status_text = str_at(v, "status").ok_or(ConsentError::Missing("Consent.status"))?;
        let status = ConsentStatus::parse(status_text)
            .ok_or_else(|| ConsentError::Status { path: "Consent.status", value: status_text.to_owned() })?;
        let scope = codings_of_concept(v.get("scope"));
        if scope.is_empty() {
            return Err(ConsentError::Missing("Consent.scope"));
        }
        let patient = v
            .get("patient")
            .and_then(|p| str_at(p, "reference"))
            .ok_or(ConsentError::Missing("Consent.patient.reference"))?
            .to_owned();
        let date_time = match str_at(v, "dateTime") {
            None => None,
            Some(s) => Some(
                parse_fhir_instant(s, false)
                    .ok_or_else(|| ConsentError::Date { path: "Consent.dateTime".into(), value: s.to_owned() })?,
            ),
        };
        let root = v.get("provision").map(|p| provision(p, "Consent.provision", true)).transpose()?;
        Ok(Consent {
            id: str_at(v, "id").unwrap_or("(no id)").to_owned(),
            status,
            patient,
            date_time,
            scope,
            categories: codings_of_concepts(v.get("category")),
            policy_rule: codings_of_concept(v.get("policyRule")),
            policy_uris: v
                .get("policy")
                .and_then(Value::as_array)
                .map_or_else(Vec::new, |a| a.iter().filter_map(|p| str_at(p, "uri").map(str::to_owned)).collect()),
            root,
        })
    }

    fn has_scope(&self, scope: Scope) -> bool {
        let wanted = Coding::new(CONSENT_SCOPE, scope.code());
        self.scope.iter().any(|c| c.matches(&wanted))
    }

    /// The scope matched only through a coding without a system.
    fn scope_by_code_alone(&self, scope: Scope) -> bool {
        !self.scope.iter().any(|c| c.system.as_deref() == Some(CONSENT_SCOPE) && c.code == scope.code())
    }
}

/// An actor in the request: who receives or uses the data, in which role.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequestActor {
    pub reference: String,
    pub roles: Vec<Coding>,
}

/// The data a request touches, with what it relates to (for `data.meaning`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequestData {
    /// `Type/id` of the resource itself.
    pub reference: String,
    /// Resources it is related to (`meaning = related`).
    pub related: Vec<String>,
    /// Resources it refers to (it is their dependent: `meaning = dependents`).
    pub refers_to: Vec<String>,
    /// Its author (`meaning = authoredby`).
    pub author: Option<String>,
}

/// One access to decide: what, by whom, why, on which data, when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRequest {
    pub patient: String,
    pub scope: Scope,
    /// Consents must carry one of these categories; empty means any consent of the scope speaks.
    pub categories: Vec<Coding>,
    pub at: DateTime<Utc>,
    pub actors: Vec<RequestActor>,
    pub action: Option<Coding>,
    pub purpose: Option<Coding>,
    /// The resource type of the data (http://hl7.org/fhir/resource-types).
    pub class: Option<Coding>,
    pub codes: Vec<Coding>,
    pub security_labels: Vec<Coding>,
    pub data: Option<RequestData>,
    /// When the data was produced (for `dataPeriod`).
    pub data_time: Option<DateTime<Utc>>,
}

impl AccessRequest {
    pub fn new(patient: &str, scope: Scope, at: DateTime<Utc>) -> Self {
        AccessRequest {
            patient: patient.to_owned(),
            scope,
            categories: Vec::new(),
            at,
            actors: Vec::new(),
            action: None,
            purpose: None,
            class: None,
            codes: Vec::new(),
            security_labels: Vec::new(),
            data: None,
            data_time: None,
        }
    }

    fn is_disclosure(&self) -> bool {
        self.action.as_ref().is_some_and(|a| a.matches(&Coding::new(CONSENT_ACTION, "disclose")))
    }
}

/// How several applicable active consents of one scope combine (R4 does not say).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Precedence {
    /// The consent with the latest `dateTime` decides; a tie denies.
    NewestWins,
    /// Any applicable deny decides.
    DenyWins,
}

/// The choices R4 leaves to the implementer, per tenant. Every decision that rests on one of
/// these says "Telechart policy" in its explanation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "snake_case", deny_unknown_fields)]
pub struct ConsentPolicy {
    pub several_active: Precedence,
    /// What happens when no active consent of the scope applies.
    pub absent_treatment: Outcome,
    pub absent_patient_privacy: Outcome,
    pub absent_research: Outcome,
    pub absent_adr: Outcome,
    /// The base rule of a consent that states none (no known `policyRule` or `policy`, no root type).
    pub unstated_base: Outcome,
    /// Labels whose data may leave the care team (action `disclose`) only under a provision that
    /// names the label: 42 CFR Part 2 (SUD), psychotherapy notes (PSY), restricted (R).
    pub protected_labels: Vec<Coding>,
    /// `Consent.policy.uri` values this tenant knows, with the base rule each implies.
    pub policy_uris: Vec<(String, Outcome)>,
}

impl Default for ConsentPolicy {
    fn default() -> Self {
        ConsentPolicy {
            several_active: Precedence::NewestWins,
            absent_treatment: Outcome::Deny,
            absent_patient_privacy: Outcome::Deny,
            absent_research: Outcome::Deny,
            absent_adr: Outcome::Deny,
            unstated_base: Outcome::Deny,
            protected_labels: vec![
                Coding::new(ACT_CODE, "SUD"),
                Coding::new(ACT_CODE, "PSY"),
                Coding::new(ACT_CODE, "ETH"),
                Coding::new(ACT_CODE, "HIV"),
                Coding::new(CONFIDENTIALITY, "R"),
            ],
            policy_uris: Vec::new(),
        }
    }
}

impl ConsentPolicy {
    fn absent(&self, scope: Scope) -> Outcome {
        match scope {
            Scope::Treatment => self.absent_treatment,
            Scope::PatientPrivacy => self.absent_patient_privacy,
            Scope::Research => self.absent_research,
            Scope::Adr => self.absent_adr,
        }
    }
}

/// Which rule a decision rests on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Basis {
    /// The R4 Consent semantics applied to a consent.
    FhirR4,
    /// A choice R4 leaves open, made by the tenant's [`ConsentPolicy`].
    TelechartPolicy,
}

/// A decision with its explanation: which Consent, which provision path, why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub outcome: Outcome,
    pub basis: Basis,
    pub consent_id: Option<String>,
    /// e.g. `Consent.provision.provision[1]`.
    pub provision: Option<String>,
    pub explanation: String,
}

impl Decision {
    pub fn permitted(&self) -> bool {
        self.outcome == Outcome::Permit
    }
}

fn any_match(list: &[Coding], wanted: &Coding) -> bool {
    list.iter().any(|c| c.matches(wanted))
}

impl Provision {
    /// Do all of this provision's criteria hold for `req`? A criterion the request cannot answer
    /// (no purpose given, say) does not hold.
    fn matches(&self, req: &AccessRequest) -> bool {
        if let Some(period) = &self.period
            && !period.contains(req.at)
        {
            return false;
        }
        if !self.actors.is_empty()
            && !self.actors.iter().any(|a| {
                req.actors.iter().any(|r| {
                    r.reference == a.reference
                        && (a.roles.is_empty() || a.roles.iter().any(|role| any_match(&r.roles, role)))
                })
            })
        {
            return false;
        }
        let one_of = |list: &[Coding], got: Option<&Coding>| list.is_empty() || got.is_some_and(|g| any_match(list, g));
        if !one_of(&self.actions, req.action.as_ref())
            || !one_of(&self.purposes, req.purpose.as_ref())
            || !one_of(&self.classes, req.class.as_ref())
        {
            return false;
        }
        if !self.codes.is_empty() && !req.codes.iter().any(|c| any_match(&self.codes, c)) {
            return false;
        }
        if !self.security_labels.is_empty() && !req.security_labels.iter().any(|c| any_match(&self.security_labels, c))
        {
            return false;
        }
        if let Some(period) = &self.data_period
            && !req.data_time.is_some_and(|t| period.contains(t))
        {
            return false;
        }
        if !self.data.is_empty() {
            let Some(data) = &req.data else { return false };
            let hit = self.data.iter().any(|d| {
                data.reference == d.reference && d.meaning != DataMeaning::AuthoredBy
                    || match d.meaning {
                        DataMeaning::Instance => false,
                        DataMeaning::Related => data.related.contains(&d.reference),
                        DataMeaning::Dependents => data.refers_to.contains(&d.reference),
                        DataMeaning::AuthoredBy => data.author.as_deref() == Some(d.reference.as_str()),
                    }
            });
            if !hit {
                return false;
            }
        }
        true
    }
}

/// The deepest matching provision below `p`.
struct Deepest {
    depth: usize,
    outcome: Outcome,
    path: Vec<usize>,
    /// Equally deep matching siblings disagreed and deny won.
    tie_denied: bool,
}

fn deepest(p: &Provision, req: &AccessRequest, depth: usize, path: &mut Vec<usize>) -> Option<Deepest> {
    let mut best: Option<Deepest> = None;
    for (i, child) in p.children.iter().enumerate() {
        if !child.matches(req) {
            continue;
        }
        path.push(i);
        let found = deepest(child, req, depth + 1, path).or_else(|| {
            child.kind.map(|outcome| Deepest { depth: depth + 1, outcome, path: path.clone(), tie_denied: false })
        });
        path.pop();
        let Some(mut f) = found else { continue };
        best = match best {
            None => Some(f),
            Some(b) if f.depth > b.depth => Some(f),
            // Among equally deep matches deny wins (Telechart policy: the most restrictive).
            Some(b) if f.depth == b.depth && f.outcome != b.outcome => {
                if f.outcome == Outcome::Deny {
                    f.tie_denied = true;
                    Some(f)
                } else {
                    Some(Deepest { tie_denied: true, ..b })
                }
            }
            keep => keep,
        };
    }
    best
}

fn path_text(path: &[usize]) -> String {
    let mut s = String::from("Consent.provision");
    for i in path {
        let _ = write!(s, ".provision[{i}]");
    }
    s
}

/// The provisions along `path` from the root.
fn along<'a>(root: &'a Provision, path: &[usize]) -> Vec<&'a Provision> {
    let mut out = vec![root];
    let mut at = root;
    for &i in path {
        match at.children.get(i) {
            Some(c) => {
                out.push(c);
                at = c;
            }
            None => break,
        }
    }
    out
}

struct Verdict<'a> {
    consent: &'a Consent,
    outcome: Outcome,
    path: Vec<usize>,
    why: String,
    basis: Basis,
}

impl ConsentPolicy {
    /// One consent's verdict on `req`, or `None` when it does not speak to it.
    fn evaluate<'a>(&self, consent: &'a Consent, req: &AccessRequest) -> Option<Verdict<'a>> {
        let rule = consent.policy_rule.iter().find_map(|c| {
            let known = c.system.as_deref().is_none_or(|s| s == ACT_CODE);
            match c.code.as_str() {
                "OPTIN" | "OPTINR" if known => Some((Outcome::Permit, c)),
                "OPTOUT" | "OPTOUTE" if known => Some((Outcome::Deny, c)),
                _ => None,
            }
        });
        let (base, base_why, basis) = if let Some((outcome, code)) = rule {
            (outcome, format!("policyRule {} gives base {}", code.code, outcome.as_str()), Basis::FhirR4)
        } else if let Some((uri, outcome)) =
            consent.policy_uris.iter().find_map(|u| self.policy_uris.iter().find(|(known, _)| known == u))
        {
            let why =
                format!("policy {uri} gives base {} (Telechart policy: the tenant's policy table)", outcome.as_str());
            (*outcome, why, Basis::TelechartPolicy)
        } else if let Some(kind) = consent.root.as_ref().and_then(|r| r.kind) {
            let why = format!(
                "root provision type {} read as the base rule (Telechart policy: R4 forbids a root type, many servers send one)",
                kind.as_str()
            );
            (kind, why, Basis::TelechartPolicy)
        } else {
            let why = format!("no policyRule: base {} (Telechart policy)", self.unstated_base.as_str());
            (self.unstated_base, why, Basis::TelechartPolicy)
        };
        let Some(root) = &consent.root else {
            return Some(Verdict { consent, outcome: base, path: Vec::new(), why: base_why, basis });
        };
        if !root.matches(req) {
            return None;
        }
        match deepest(root, req, 0, &mut Vec::new()) {
            Some(Deepest { outcome, path, tie_denied, .. }) => {
                let mut why =
                    format!("{base_why}; deepest matching provision {} is {}", path_text(&path), outcome.as_str());
                let basis = if tie_denied {
                    why.push_str(" (equally deep matching provisions disagree: deny wins, Telechart policy)");
                    Basis::TelechartPolicy
                } else {
                    Basis::FhirR4
                };
                Some(Verdict { consent, outcome, path, why, basis })
            }
            None => {
                let why = format!("{base_why}; no nested provision matches");
                Some(Verdict { consent, outcome: base, path: Vec::new(), why, basis })
            }
        }
    }
}

/// A tenant's consents, indexed by patient.
#[derive(Debug, Clone, Default)]
pub struct ConsentSet {
    by_patient: HashMap<String, Vec<Consent>>,
}

impl ConsentSet {
    pub fn new(consents: impl IntoIterator<Item = Consent>) -> Self {
        let mut by_patient: HashMap<String, Vec<Consent>> = HashMap::new();
        for c in consents {
            by_patient.entry(c.patient.clone()).or_default().push(c);
        }
        ConsentSet { by_patient }
    }

    pub fn len(&self) -> usize {
        self.by_patient.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.by_patient.is_empty()
    }

    /// Decides `req` under `policy`.
    pub fn decide(&self, policy: &ConsentPolicy, req: &AccessRequest) -> Decision {
        let mut applicable: Vec<Verdict<'_>> = Vec::new();
        let mut not_active: Vec<(&str, ConsentStatus)> = Vec::new();
        for consent in self.by_patient.get(&req.patient).into_iter().flatten() {
            if !consent.has_scope(req.scope)
                || (!req.categories.is_empty() && !req.categories.iter().any(|c| any_match(&consent.categories, c)))
            {
                continue;
            }
            if consent.status != ConsentStatus::Active {
                not_active.push((&consent.id, consent.status));
                continue;
            }
            if let Some(v) = policy.evaluate(consent, req) {
                applicable.push(v);
            }
        }
        let chosen = match applicable.len() {
            0 => {
                let outcome = policy.absent(req.scope);
                let mut explanation =
                    format!("no active {} consent applies: {} (Telechart policy)", req.scope.code(), outcome.as_str());
                for (id, status) in &not_active {
                    let _ = write!(explanation, "; Consent/{id} is {} and does not count", status.as_str());
                }
                return Decision {
                    outcome,
                    basis: Basis::TelechartPolicy,
                    consent_id: None,
                    provision: None,
                    explanation,
                };
            }
            1 => applicable.swap_remove(0),
            n => {
                let pick = match policy.several_active {
                    Precedence::DenyWins => applicable.iter().position(|v| v.outcome == Outcome::Deny).unwrap_or(0),
                    Precedence::NewestWins => {
                        let newest = applicable.iter().map(|v| v.consent.date_time).max().flatten();
                        let tied: Vec<usize> = (0..n).filter(|&i| applicable[i].consent.date_time == newest).collect();
                        tied.iter()
                            .copied()
                            .find(|&i| applicable[i].outcome == Outcome::Deny)
                            .or(tied.first().copied())
                            .unwrap_or(0)
                    }
                };
                let mut v = applicable.swap_remove(pick);
                let rule = match policy.several_active {
                    Precedence::DenyWins => "any deny wins",
                    Precedence::NewestWins => "the newest decides, a tie denies",
                };
                v.why = format!("{} active consents apply, {rule} (Telechart policy); {}", n, v.why);
                v.basis = Basis::TelechartPolicy;
                v
            }
        };
        let mut chosen = chosen;
        if chosen.consent.scope_by_code_alone(req.scope) {
            chosen.why.push_str(" (its scope has no system and matched on the code: Telechart policy)");
            chosen.basis = Basis::TelechartPolicy;
        }
        let provision = chosen.consent.root.as_ref().map(|_| path_text(&chosen.path));
        let protected: Vec<&Coding> =
            req.security_labels.iter().filter(|l| any_match(&policy.protected_labels, l)).collect();
        if chosen.outcome == Outcome::Permit && !protected.is_empty() {
            let names: Vec<&str> = protected.iter().map(|l| l.code.as_str()).collect();
            let names = names.join(", ");
            chosen.basis = Basis::TelechartPolicy;
            if req.is_disclosure() {
                let _ = write!(chosen.why, "; protected label {names} named on the provision path (Telechart policy)");
            } else {
                let _ = write!(
                    chosen.why,
                    "; protected label {names}, but not a disclosure: the data stays with the care team (Telechart policy)"
                );
            }
        }
        if chosen.outcome == Outcome::Permit && req.is_disclosure() {
            let on_path = chosen.consent.root.as_ref().map(|root| along(root, &chosen.path)).unwrap_or_default();
            let unnamed = protected.iter().find(|label| !on_path.iter().any(|p| any_match(&p.security_labels, label)));
            if let Some(label) = unnamed {
                return Decision {
                    outcome: Outcome::Deny,
                    basis: Basis::TelechartPolicy,
                    consent_id: Some(chosen.consent.id.clone()),
                    provision,
                    explanation: format!(
                        "Consent/{} would permit, but the data carries protected label {} and no provision on the path names it (Telechart policy: 42 CFR Part 2 and psychotherapy data leave the care team only under consent that names them)",
                        chosen.consent.id, label.code
                    ),
                };
            }
        }
        Decision {
            outcome: chosen.outcome,
            basis: chosen.basis,
            consent_id: Some(chosen.consent.id.clone()),
            explanation: format!("Consent/{}: {}", chosen.consent.id, chosen.why),
            provision,
        }
    }
}

#[cfg(test)]
mod tests;
