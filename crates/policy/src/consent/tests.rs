//! The consent table: each case names the R4 element it checks, or "Telechart policy" where R4
//! leaves the choice to the implementer.

use serde_json::{Value, json};

use super::*;

const NOW: &str = "2026-12-01T10:00:00Z";
const LOINC: &str = "http://loinc.org";

fn t(s: &str) -> DateTime<Utc> {
    parse_fhir_instant(s, false).unwrap()
}

fn cc(system: &str, code: &str) -> Value {
    json!({"coding": [{"system": system, "code": code}]})
}

/// An active consent of Patient/p1, dated 2026-11-01.
fn consent(id: &str, scope: &str, category: &str, rule: Option<&str>, provision: Option<Value>) -> Value {
    let mut c = json!({
        "resourceType": "Consent", "id": id, "status": "active",
        "scope": cc(CONSENT_SCOPE, scope),
        "category": [cc(TELECHART_CONSENT_CATEGORY, category)],
        "patient": {"reference": "Patient/p1"},
        "dateTime": "2026-11-01T09:00:00Z",
    });
    if let Some(rule) = rule {
        c["policyRule"] = cc(ACT_CODE, rule);
    }
    if let Some(p) = provision {
        c["provision"] = p;
    }
    c
}

fn with(mut v: Value, key: &str, value: Value) -> Value {
    v[key] = value;
    v
}

fn telehealth(id: &str, rule: &str) -> Value {
    consent(id, "treatment", "telehealth", Some(rule), None)
}

fn privacy(id: &str, rule: &str, nested: Value) -> Value {
    consent(id, "patient-privacy", "disclosure", Some(rule), Some(json!({"provision": nested})))
}

fn labels(codes: &[(&str, &str)]) -> Vec<Coding> {
    codes.iter().map(|(s, c)| Coding::new(s, c)).collect()
}

/// Starting a telehealth visit.
fn treat() -> AccessRequest {
    let mut r = AccessRequest::new("Patient/p1", Scope::Treatment, t(NOW));
    r.categories = vec![Coding::new(TELECHART_CONSENT_CATEGORY, "telehealth")];
    r.action = Some(Coding::new(CONSENT_ACTION, "use"));
    r.purpose = Some(Coding::new(ACT_REASON, "TREAT"));
    r.class = Some(Coding::new(RESOURCE_TYPES, "Encounter"));
    r
}

/// Sending a visit note to another organisation.
fn disclose(org: &str) -> AccessRequest {
    let mut r = AccessRequest::new("Patient/p1", Scope::PatientPrivacy, t(NOW));
    r.action = Some(Coding::new(CONSENT_ACTION, "disclose"));
    r.purpose = Some(Coding::new(ACT_REASON, "TREAT"));
    r.class = Some(Coding::new(RESOURCE_TYPES, "DocumentReference"));
    r.actors = vec![RequestActor { reference: org.into(), roles: labels(&[(PARTICIPATION_TYPE, "IRCP")]) }];
    r.data = Some(RequestData { reference: "DocumentReference/d2".into(), ..Default::default() });
    r.data_time = Some(t("2026-12-01T09:30:00Z"));
    r
}

fn research() -> AccessRequest {
    let mut r = AccessRequest::new("Patient/p1", Scope::Research, t(NOW));
    r.action = Some(Coding::new(CONSENT_ACTION, "use"));
    r.purpose = Some(Coding::new(ACT_REASON, "HRESCH"));
    r
}

struct Case {
    name: &'static str,
    rule: &'static str,
    consents: Vec<Value>,
    request: AccessRequest,
    policy: ConsentPolicy,
    expect: Outcome,
    consent: Option<&'static str>,
    provision: Option<&'static str>,
}

fn case(name: &'static str, rule: &'static str, consents: Vec<Value>, request: AccessRequest, expect: Outcome) -> Case {
    Case { name, rule, consents, request, policy: ConsentPolicy::default(), expect, consent: None, provision: None }
}

impl Case {
    fn by(mut self, consent: &'static str, provision: &'static str) -> Self {
        self.consent = Some(consent);
        self.provision = Some(provision);
        self
    }
    fn from(mut self, consent: &'static str) -> Self {
        self.consent = Some(consent);
        self
    }
    fn policy(mut self, f: impl FnOnce(&mut ConsentPolicy)) -> Self {
        f(&mut self.policy);
        self
    }
}

fn req(mut r: AccessRequest, f: impl FnOnce(&mut AccessRequest)) -> AccessRequest {
    f(&mut r);
    r
}

use Outcome::{Deny, Permit};

fn cases() -> Vec<Case> {
    let nested = |p: Value| consent("c1", "treatment", "telehealth", Some("OPTIN"), Some(json!({"provision": [p]})));
    let period = |start: &str, end: &str| {
        consent("c1", "treatment", "telehealth", Some("OPTIN"), Some(json!({"period": {"start": start, "end": end}})))
    };
    let deny_org = privacy(
        "c1",
        "OPTIN",
        json!([{"type": "deny", "actor": [{"role": cc(PARTICIPATION_TYPE, "IRCP"), "reference": {"reference": "Organization/other"}}]}]),
    );
    let deny_data = |meaning: &str, reference: &str| {
        privacy(
            "c1",
            "OPTIN",
            json!([{"type": "deny", "data": [{"meaning": meaning, "reference": {"reference": reference}}]}]),
        )
    };
    let deny_label = |labels: Value| privacy("c1", "OPTIN", json!([{"type": "deny", "securityLabel": labels}]));
    let dated = |v: Value, at: &str| with(v, "dateTime", json!(at));
    vec![
        // Consent.status
        case("an active opt-in permits", "R4 Consent.status", vec![telehealth("c1", "OPTIN")], treat(), Permit).from("c1"),
        case("inactive (withdrawn) does not permit", "R4 Consent.status", vec![with(telehealth("c1", "OPTIN"), "status", json!("inactive"))], treat(), Deny),
        case("rejected never permits", "R4 Consent.status", vec![with(telehealth("c1", "OPTIN"), "status", json!("rejected"))], treat(), Deny),
        case("draft never permits", "R4 Consent.status", vec![with(telehealth("c1", "OPTIN"), "status", json!("draft"))], treat(), Deny),
        case("proposed never permits", "R4 Consent.status", vec![with(telehealth("c1", "OPTIN"), "status", json!("proposed"))], treat(), Deny),
        case("entered-in-error never permits", "R4 Consent.status", vec![with(telehealth("c1", "OPTIN"), "status", json!("entered-in-error"))], treat(), Deny),
        case("an inactive opt-out does not deny either", "R4 Consent.status", vec![with(telehealth("c1", "OPTOUT"), "status", json!("inactive"))], treat(), Permit)
            .policy(|p| p.absent_treatment = Permit),
        case("a withdrawn newer consent leaves the older active one deciding", "R4 Consent.status",
            vec![telehealth("c1", "OPTIN"), dated(with(telehealth("c2", "OPTOUT"), "status", json!("inactive")), "2026-11-20T00:00:00Z")], treat(), Permit).from("c1"),
        // Consent.scope
        case("a treatment consent does not speak to disclosure", "R4 Consent.scope", vec![telehealth("c1", "OPTIN")], disclose("Organization/other"), Deny),
        case("a research consent speaks to research", "R4 Consent.scope", vec![consent("c1", "research", "research", Some("OPTIN"), None)], research(), Permit),
        case("a privacy opt-out does not stop treatment", "R4 Consent.scope",
            vec![telehealth("c1", "OPTIN"), consent("c2", "patient-privacy", "telehealth", Some("OPTOUT"), None)], treat(), Permit).from("c1"),
        case("a scope without a system matches on its code", "Telechart policy",
            vec![with(telehealth("c1", "OPTIN"), "scope", json!({"coding": [{"code": "treatment"}]}))], treat(), Permit),
        case("a scope in another code system does not match", "R4 Consent.scope",
            vec![with(telehealth("c1", "OPTIN"), "scope", cc("http://example.org/scopes", "treatment"))], treat(), Deny),
        // Consent.category
        case("a consent of another category does not apply", "R4 Consent.category",
            vec![consent("c1", "treatment", "recording", Some("OPTIN"), None)], treat(), Deny),
        case("one matching category of several is enough", "R4 Consent.category",
            vec![with(telehealth("c1", "OPTIN"), "category", json!([cc(LOINC, "59284-0"), cc(TELECHART_CONSENT_CATEGORY, "telehealth")]))], treat(), Permit),
        case("a request naming no category hears every consent of the scope", "R4 Consent.category",
            vec![consent("c1", "treatment", "recording", Some("OPTIN"), None)], req(treat(), |r| r.categories.clear()), Permit),
        // Consent.patient
        case("another patient's consent does not apply", "R4 Consent.patient",
            vec![with(telehealth("c1", "OPTIN"), "patient", json!({"reference": "Patient/p2"}))], treat(), Deny),
        // Consent.policyRule / Consent.policy
        case("OPTIN gives a permit base", "R4 Consent.policyRule", vec![telehealth("c1", "OPTIN")], treat(), Permit),
        case("OPTOUT gives a deny base", "R4 Consent.policyRule", vec![telehealth("c1", "OPTOUT")], treat(), Deny).from("c1"),
        case("OPTINR (opt-in with restrictions) permits", "R4 Consent.policyRule", vec![telehealth("c1", "OPTINR")], treat(), Permit),
        case("OPTOUTE (opt-out with exceptions) denies", "R4 Consent.policyRule", vec![telehealth("c1", "OPTOUTE")], treat(), Deny),
        case("an unknown policyRule falls to the unstated base", "Telechart policy", vec![telehealth("c1", "NOPP")], treat(), Deny),
        case("the unstated base is configurable", "Telechart policy", vec![telehealth("c1", "NOPP")], treat(), Permit)
            .policy(|p| p.unstated_base = Permit),
        case("a Consent.policy uri the tenant knows gives the base", "Telechart policy",
            vec![with(consent("c1", "treatment", "telehealth", None, None), "policy", json!([{"uri": "https://hospital.example/policy/telehealth-optin"}]))], treat(), Permit)
            .policy(|p| p.policy_uris.push(("https://hospital.example/policy/telehealth-optin".into(), Permit))),
        case("a root provision type is read as the base when nothing else states one", "Telechart policy",
            vec![consent("c1", "treatment", "telehealth", None, Some(json!({"type": "permit"})))], treat(), Permit),
        case("policyRule outranks a root provision type", "R4 Consent.policyRule",
            vec![consent("c1", "treatment", "telehealth", Some("OPTOUT"), Some(json!({"type": "permit"})))], treat(), Deny),
        // Consent.provision.period (root: bounds the consent)
        case("inside the root period the consent applies", "R4 Consent.provision.period", vec![period("2026-01-01", "2027-01-01")], treat(), Permit),
        case("after the root period the consent does not apply", "R4 Consent.provision.period", vec![period("2025-01-01", "2026-06-30")], treat(), Deny),
        case("before the root period the consent does not apply", "R4 Consent.provision.period", vec![period("2026-12-02T00:00:00Z", "2027-12-31")], treat(), Deny),
        case("a date-only end covers its whole day", "R4 Consent.provision.period", vec![period("2026-01-01", "2026-12-01")], treat(), Permit),
        case("a year-only end ends with that year", "R4 Consent.provision.period", vec![period("2024", "2025")], treat(), Deny),
        // Nested provisions: exceptions to their parent, the deepest match decides
        case("a nested deny is an exception to an opt-in", "R4 Consent.provision.provision",
            vec![privacy("c1", "OPTIN", json!([{"type": "deny", "action": [cc(CONSENT_ACTION, "disclose")]}]))], disclose("Organization/other"), Deny)
            .by("c1", "Consent.provision.provision[0]"),
        case("a nested deny that does not match leaves the base", "R4 Consent.provision.provision",
            vec![privacy("c1", "OPTIN", json!([{"type": "deny", "action": [cc(CONSENT_ACTION, "disclose")]}]))],
            req(disclose("Organization/other"), |r| r.action = Some(Coding::new(CONSENT_ACTION, "access"))), Permit).by("c1", "Consent.provision"),
        case("a nested permit is an exception to an opt-out", "R4 Consent.provision.provision",
            vec![privacy("c1", "OPTOUT", json!([{"type": "permit", "purpose": [{"system": ACT_REASON, "code": "TREAT"}]}]))], disclose("Organization/other"), Permit),
        case("the opt-out stands for other purposes", "R4 Consent.provision.purpose",
            vec![privacy("c1", "OPTOUT", json!([{"type": "permit", "purpose": [{"system": ACT_REASON, "code": "TREAT"}]}]))],
            req(disclose("Organization/other"), |r| r.purpose = Some(Coding::new(ACT_REASON, "HMARKT"))), Deny),
        case("the deepest matching provision decides", "R4 Consent.provision.provision",
            vec![privacy("c1", "OPTIN", json!([{"type": "deny", "class": [{"system": RESOURCE_TYPES, "code": "DocumentReference"}],
                "provision": [{"type": "permit", "code": [cc(LOINC, "11506-3")]}]}]))],
            req(disclose("Organization/other"), |r| r.codes = labels(&[(LOINC, "11506-3")])), Permit).by("c1", "Consent.provision.provision[0].provision[0]"),
        case("a grandchild that does not match leaves its parent deciding", "R4 Consent.provision.provision",
            vec![privacy("c1", "OPTIN", json!([{"type": "deny", "class": [{"system": RESOURCE_TYPES, "code": "DocumentReference"}],
                "provision": [{"type": "permit", "code": [cc(LOINC, "11506-3")]}]}]))],
            req(disclose("Organization/other"), |r| r.codes = labels(&[(LOINC, "34117-2")])), Deny).by("c1", "Consent.provision.provision[0]"),
        case("matching siblings of equal depth: deny wins", "Telechart policy",
            vec![privacy("c1", "OPTOUT", json!([{"type": "permit", "purpose": [{"system": ACT_REASON, "code": "TREAT"}]},
                {"type": "deny", "class": [{"system": RESOURCE_TYPES, "code": "DocumentReference"}]}]))], disclose("Organization/other"), Deny)
            .by("c1", "Consent.provision.provision[1]"),
        case("a deeper match beats a shallower sibling", "R4 Consent.provision.provision",
            vec![privacy("c1", "OPTIN", json!([{"type": "deny", "purpose": [{"system": ACT_REASON, "code": "TREAT"}]},
                {"type": "deny", "class": [{"system": RESOURCE_TYPES, "code": "DocumentReference"}], "provision": [{"type": "permit", "actor": [{"role": cc(PARTICIPATION_TYPE, "IRCP"), "reference": {"reference": "Organization/other"}}]}]}]))],
            disclose("Organization/other"), Permit).by("c1", "Consent.provision.provision[1].provision[0]"),
        case("a nested provision outside its period does not match", "R4 Consent.provision.period",
            vec![nested(json!({"type": "deny", "period": {"start": "2025-01-01", "end": "2025-12-31"}}))], treat(), Permit),
        case("a nested provision inside its period matches", "R4 Consent.provision.period",
            vec![nested(json!({"type": "deny", "period": {"start": "2026-11-30"}}))], treat(), Deny),
        // Consent.provision.actor
        case("a deny naming the recipient organisation stops disclosure to it", "R4 Consent.provision.actor", vec![deny_org.clone()], disclose("Organization/other"), Deny),
        case("the deny does not reach another recipient", "R4 Consent.provision.actor", vec![deny_org.clone()], disclose("Organization/third"), Permit),
        case("the actor's role must match too", "R4 Consent.provision.actor.role", vec![deny_org.clone()],
            req(disclose("Organization/other"), |r| r.actors[0].roles = labels(&[(PARTICIPATION_TYPE, "PRCP")])), Permit),
        case("one matching actor of several is enough", "R4 Consent.provision.actor", vec![deny_org.clone()],
            req(disclose("Organization/other"), |r| r.actors.insert(0, RequestActor { reference: "Practitioner/dr1".into(), roles: labels(&[(PARTICIPATION_TYPE, "PRCP")]) })), Deny),
        case("a request with no actor does not match an actor rule", "R4 Consent.provision.actor", vec![deny_org],
            req(disclose("Organization/other"), |r| r.actors.clear()), Permit),
        // Consent.provision.action
        case("a permitted action under an opt-out", "R4 Consent.provision.action",
            vec![privacy("c1", "OPTOUT", json!([{"type": "permit", "action": [cc(CONSENT_ACTION, "access")]}]))],
            req(disclose("Organization/other"), |r| r.action = Some(Coding::new(CONSENT_ACTION, "access"))), Permit),
        case("another action stays under the opt-out", "R4 Consent.provision.action",
            vec![privacy("c1", "OPTOUT", json!([{"type": "permit", "action": [cc(CONSENT_ACTION, "access")]}]))],
            req(disclose("Organization/other"), |r| r.action = Some(Coding::new(CONSENT_ACTION, "correct"))), Deny),
        case("an action code in another system does not match", "R4 Consent.provision.action",
            vec![privacy("c1", "OPTOUT", json!([{"type": "permit", "action": [cc("http://example.org/actions", "disclose")]}]))], disclose("Organization/other"), Deny),
        // Consent.provision.purpose
        case("a deny for marketing stops marketing use", "R4 Consent.provision.purpose",
            vec![privacy("c1", "OPTIN", json!([{"type": "deny", "purpose": [{"system": ACT_REASON, "code": "HMARKT"}]}]))],
            req(disclose("Organization/other"), |r| r.purpose = Some(Coding::new(ACT_REASON, "HMARKT"))), Deny),
        case("a request without a purpose does not match a purpose rule", "R4 Consent.provision.purpose",
            vec![privacy("c1", "OPTIN", json!([{"type": "deny", "purpose": [{"system": ACT_REASON, "code": "HMARKT"}]}]))],
            req(disclose("Organization/other"), |r| r.purpose = None), Permit),
        // Consent.provision.class
        case("a deny on a resource type stops that type", "R4 Consent.provision.class",
            vec![privacy("c1", "OPTIN", json!([{"type": "deny", "class": [{"system": RESOURCE_TYPES, "code": "Observation"}]}]))],
            req(disclose("Organization/other"), |r| r.class = Some(Coding::new(RESOURCE_TYPES, "Observation"))), Deny),
        case("other resource types pass", "R4 Consent.provision.class",
            vec![privacy("c1", "OPTIN", json!([{"type": "deny", "class": [{"system": RESOURCE_TYPES, "code": "Observation"}]}]))], disclose("Organization/other"), Permit),
        // Consent.provision.code
        case("a deny on a document type stops that type", "R4 Consent.provision.code",
            vec![privacy("c1", "OPTIN", json!([{"type": "deny", "code": [cc(LOINC, "11506-3")]}]))],
            req(disclose("Organization/other"), |r| r.codes = labels(&[(LOINC, "11506-3")])), Deny),
        case("data without that code passes", "R4 Consent.provision.code",
            vec![privacy("c1", "OPTIN", json!([{"type": "deny", "code": [cc(LOINC, "11506-3")]}]))],
            req(disclose("Organization/other"), |r| r.codes = labels(&[(LOINC, "18842-5")])), Permit),
        // Consent.provision.securityLabel
        case("a deny on a label stops data carrying it", "R4 Consent.provision.securityLabel",
            vec![deny_label(json!([{"system": ACT_CODE, "code": "PSY"}]))], req(disclose("Organization/other"), |r| r.security_labels = labels(&[(ACT_CODE, "PSY")])), Deny),
        case("data with other labels passes", "R4 Consent.provision.securityLabel",
            vec![deny_label(json!([{"system": ACT_CODE, "code": "PSY"}]))], req(disclose("Organization/other"), |r| r.security_labels = labels(&[(CONFIDENTIALITY, "N")])), Permit),
        case("any one of the listed labels matches", "R4 Consent.provision.securityLabel",
            vec![deny_label(json!([{"system": ACT_CODE, "code": "SUD"}, {"system": ACT_CODE, "code": "ETH"}]))],
            req(disclose("Organization/other"), |r| { r.security_labels = labels(&[(ACT_CODE, "ETH")]); r.action = Some(Coding::new(CONSENT_ACTION, "use")) }), Deny),
        // Consent.provision.dataPeriod
        case("a deny on a data period stops data from then", "R4 Consent.provision.dataPeriod",
            vec![privacy("c1", "OPTIN", json!([{"type": "deny", "dataPeriod": {"start": "2020-01-01", "end": "2020-12-31"}}]))],
            req(disclose("Organization/other"), |r| r.data_time = Some(t("2020-06-15T00:00:00Z"))), Deny),
        case("data from outside the period passes", "R4 Consent.provision.dataPeriod",
            vec![privacy("c1", "OPTIN", json!([{"type": "deny", "dataPeriod": {"start": "2020-01-01", "end": "2020-12-31"}}]))], disclose("Organization/other"), Permit),
        case("data of unknown time does not match a data period", "R4 Consent.provision.dataPeriod",
            vec![privacy("c1", "OPTIN", json!([{"type": "deny", "dataPeriod": {"start": "2020-01-01"}}]))],
            req(disclose("Organization/other"), |r| r.data_time = None), Permit),
        // Consent.provision.data.meaning
        case("meaning instance: that resource", "R4 Consent.provision.data.meaning", vec![deny_data("instance", "DocumentReference/d2")], disclose("Organization/other"), Deny),
        case("meaning instance: not another resource", "R4 Consent.provision.data.meaning", vec![deny_data("instance", "DocumentReference/d1")], disclose("Organization/other"), Permit),
        case("meaning instance: not what relates to it", "R4 Consent.provision.data.meaning", vec![deny_data("instance", "Encounter/e1")],
            req(disclose("Organization/other"), |r| r.data.as_mut().unwrap().related = vec!["Encounter/e1".into()]), Permit),
        case("meaning related: the resource and what relates to it", "R4 Consent.provision.data.meaning", vec![deny_data("related", "Encounter/e1")],
            req(disclose("Organization/other"), |r| r.data.as_mut().unwrap().related = vec!["Encounter/e1".into()]), Deny),
        case("meaning dependents: resources that refer to it", "R4 Consent.provision.data.meaning", vec![deny_data("dependents", "Encounter/e1")],
            req(disclose("Organization/other"), |r| r.data.as_mut().unwrap().refers_to = vec!["Encounter/e1".into()]), Deny),
        case("meaning dependents: not resources it merely relates to", "R4 Consent.provision.data.meaning", vec![deny_data("dependents", "Encounter/e1")],
            req(disclose("Organization/other"), |r| r.data.as_mut().unwrap().related = vec!["Encounter/e1".into()]), Permit),
        case("meaning authoredby: resources that author wrote", "R4 Consent.provision.data.meaning", vec![deny_data("authoredby", "Practitioner/dr9")],
            req(disclose("Organization/other"), |r| r.data.as_mut().unwrap().author = Some("Practitioner/dr9".into())), Deny),
        case("meaning authoredby: not the author's own resource", "R4 Consent.provision.data.meaning", vec![deny_data("authoredby", "Practitioner/dr9")],
            req(disclose("Organization/other"), |r| r.data.as_mut().unwrap().reference = "Practitioner/dr9".into()), Permit),
        case("a data rule does not match a request naming no data", "R4 Consent.provision.data", vec![deny_data("instance", "DocumentReference/d2")],
            req(disclose("Organization/other"), |r| r.data = None), Permit),
        // Several active consents of one scope
        case("several apply: the newest decides (re-consent after opt-out)", "Telechart policy",
            vec![telehealth("c1", "OPTOUT"), dated(telehealth("c2", "OPTIN"), "2026-11-20T00:00:00Z")], treat(), Permit).from("c2"),
        case("several apply: the newest decides (opt-out after consent)", "Telechart policy",
            vec![telehealth("c1", "OPTIN"), dated(telehealth("c2", "OPTOUT"), "2026-11-20T00:00:00Z")], treat(), Deny).from("c2"),
        case("several apply, deny-wins tenant: any deny decides", "Telechart policy",
            vec![dated(telehealth("c1", "OPTOUT"), "2026-01-01T00:00:00Z"), telehealth("c2", "OPTIN")], treat(), Deny)
            .policy(|p| p.several_active = Precedence::DenyWins).from("c1"),
        case("several apply with the same dateTime: a tie denies", "Telechart policy",
            vec![telehealth("c1", "OPTIN"), telehealth("c2", "OPTOUT")], treat(), Deny).from("c2"),
        // No applicable consent
        case("no consent at all: the tenant's default for treatment", "Telechart policy", vec![], treat(), Deny),
        case("no research consent: no research use", "Telechart policy", vec![telehealth("c1", "OPTIN")], research(), Deny),
        case("the tenant may permit disclosure without a privacy consent", "Telechart policy", vec![], disclose("Organization/other"), Permit)
            .policy(|p| p.absent_patient_privacy = Permit),
        // Protected data leaving the care team
        case("SUD data is not disclosed under a general opt-in", "Telechart policy",
            vec![consent("c1", "patient-privacy", "disclosure", Some("OPTIN"), None)],
            req(disclose("Organization/other"), |r| r.security_labels = labels(&[(ACT_CODE, "SUD")])), Deny),
        case("SUD data is disclosed under a provision naming SUD", "Telechart policy",
            vec![privacy("c1", "OPTOUT", json!([{"type": "permit", "action": [cc(CONSENT_ACTION, "disclose")], "securityLabel": [{"system": ACT_CODE, "code": "SUD"}]}]))],
            req(disclose("Organization/other"), |r| r.security_labels = labels(&[(ACT_CODE, "SUD")])), Permit).by("c1", "Consent.provision.provision[0]"),
        case("protected data used inside the care team is not a disclosure", "Telechart policy",
            vec![consent("c1", "patient-privacy", "disclosure", Some("OPTIN"), None)],
            req(disclose("Organization/other"), |r| { r.security_labels = labels(&[(ACT_CODE, "PSY")]); r.action = Some(Coding::new(CONSENT_ACTION, "use")) }), Permit),
        case("restricted (R) data is not disclosed under a general opt-in", "Telechart policy",
            vec![privacy("c1", "OPTIN", json!([]))],
            req(disclose("Organization/other"), |r| r.security_labels = labels(&[(CONFIDENTIALITY, "R")])), Deny),
    ]
}

#[test]
fn the_consent_table() {
    let cases = cases();
    assert!(cases.len() >= 60, "the table has {} cases", cases.len());
    let mut failures = Vec::new();
    for c in &cases {
        let consents: Vec<Consent> = c.consents.iter().map(|v| Consent::from_fhir(v).unwrap()).collect();
        let set = ConsentSet::new(consents);
        let d = set.decide(&c.policy, &c.request);
        let mut wrong = Vec::new();
        if d.outcome != c.expect {
            wrong.push(format!("outcome {:?}, expected {:?}", d.outcome, c.expect));
        }
        if c.consent.is_some() && d.consent_id.as_deref() != c.consent {
            wrong.push(format!("consent {:?}, expected {:?}", d.consent_id, c.consent));
        }
        if c.provision.is_some() && d.provision.as_deref() != c.provision {
            wrong.push(format!("provision {:?}, expected {:?}", d.provision, c.provision));
        }
        if c.rule == "Telechart policy" {
            if d.basis != Basis::TelechartPolicy || !d.explanation.contains("Telechart policy") {
                wrong.push("not labelled Telechart policy".into());
            }
        } else {
            assert!(c.rule.starts_with("R4 Consent"), "{}: rule {:?} names no R4 element", c.name, c.rule);
        }
        if d.explanation.is_empty() || d.consent_id.as_ref().is_some_and(|id| !d.explanation.contains(id.as_str())) {
            wrong.push(format!("explanation {:?} does not name the consent", d.explanation));
        }
        if !wrong.is_empty() {
            failures.push(format!("{} [{}]: {} — {}", c.name, c.rule, wrong.join("; "), d.explanation));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[test]
fn a_withdrawal_is_explained() {
    let set =
        ConsentSet::new([Consent::from_fhir(&with(telehealth("c9", "OPTIN"), "status", json!("inactive"))).unwrap()]);
    let d = set.decide(&ConsentPolicy::default(), &treat());
    assert_eq!(d.outcome, Deny);
    assert!(d.explanation.contains("Consent/c9 is inactive"), "{}", d.explanation);
}

#[test]
fn malformed_consents_are_refused_with_their_path() {
    let nested_untyped =
        consent("c1", "treatment", "telehealth", Some("OPTIN"), Some(json!({"provision": [{"purpose": []}]})));
    assert_eq!(
        Consent::from_fhir(&nested_untyped),
        Err(ConsentError::NestedWithoutType { path: "Consent.provision.provision[0]".into() })
    );
    let bad_status = with(telehealth("c1", "OPTIN"), "status", json!("revoked"));
    assert!(matches!(Consent::from_fhir(&bad_status), Err(ConsentError::Status { .. })));
    let bad_date =
        consent("c1", "treatment", "telehealth", Some("OPTIN"), Some(json!({"period": {"start": "yesterday"}})));
    assert_eq!(
        Consent::from_fhir(&bad_date),
        Err(ConsentError::Date { path: "Consent.provision.period.start".into(), value: "yesterday".into() })
    );
    let bad_meaning = privacy(
        "c1",
        "OPTIN",
        json!([{"type": "deny", "data": [{"meaning": "all", "reference": {"reference": "Encounter/e1"}}]}]),
    );
    assert!(matches!(Consent::from_fhir(&bad_meaning), Err(ConsentError::Invalid { .. })));
    assert_eq!(Consent::from_fhir(&json!({"resourceType": "Patient"})), Err(ConsentError::NotAConsent));
    let no_patient = with(telehealth("c1", "OPTIN"), "patient", json!({}));
    assert_eq!(Consent::from_fhir(&no_patient), Err(ConsentError::Missing("Consent.patient.reference")));
}

#[test]
fn partial_dates_cover_their_whole_span() {
    assert_eq!(parse_fhir_instant("2026", false), Some(t("2026-01-01T00:00:00Z")));
    assert_eq!(parse_fhir_instant("2026-02", true), Some(t("2026-02-28T23:59:59.999Z")));
    assert_eq!(parse_fhir_instant("2026-12", true), Some(t("2026-12-31T23:59:59.999Z")));
    assert_eq!(parse_fhir_instant("2026-13", false), None);
    assert_eq!(parse_fhir_instant("2026-12-01T10:00:00+02:00", false), Some(t("2026-12-01T08:00:00Z")));
}
