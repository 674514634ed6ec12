//! Export: FHIR R4 AuditEvent in the style of IHE Basic Audit Log Patterns (BALP), one JSON
//! object per line for NDJSON.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::record::{AuditOutcome, AuditRecord, hex};

const EVENT_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-event-type";
const RESTFUL: &str = "http://hl7.org/fhir/restful-interaction";
const TELECHART_EVENT: &str = "https://telechart.dev/fhir/CodeSystem/audit-action";
const PURPOSE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";
const SOURCE_TYPE: &str = "http://terminology.hl7.org/CodeSystem/security-source-type";
const ENTITY_TYPE: &str = "http://terminology.hl7.org/CodeSystem/audit-entity-type";
const OBJECT_ROLE: &str = "http://terminology.hl7.org/CodeSystem/object-role";
const PARTICIPATION: &str = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";
const CONFIDENTIALITY: &str = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality";
const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";

/// The CRUDE letter and the RESTful interaction an action name implies.
fn crude(action: &str) -> (&'static str, Option<&'static str>) {
    let verb = action.rsplit(['.', ':']).next().unwrap_or(action);
    match verb {
        "read" | "view" | "export" | "show" | "trace" => ("R", Some("read")),
        "search" | "list" => ("E", Some("search-type")),
        "create" | "open" | "created" | "opened" | "signed" | "captured" | "attached" | "recorded" => {
            ("C", Some("create"))
        }
        "update" | "updated" | "transition" | "transitioned" | "written" | "delivered" | "revoked" | "withdrawn" => {
            ("U", Some("update"))
        }
        "delete" | "deleted" | "purged" | "discarded" => ("D", Some("delete")),
        _ => ("E", None),
    }
}

fn label_coding(label: &str) -> Value {
    let system = if matches!(label, "U" | "L" | "M" | "N" | "R" | "V") { CONFIDENTIALITY } else { ACT_CODE };
    json!({"system": system, "code": label})
}

fn instant(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default().to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// One record as an AuditEvent. The chain position and hash ride along as an entity detail so
/// an exported event can be checked against the log it came from.
pub fn audit_event(r: &AuditRecord) -> Value {
    let e = &r.entry;
    let (letter, interaction) = crude(&e.action);
    let mut subtype = vec![json!({"system": TELECHART_EVENT, "code": e.action})];
    if let Some(i) = interaction {
        subtype.insert(0, json!({"system": RESTFUL, "code": i}));
    }
    let (outcome, outcome_desc) = match e.outcome {
        AuditOutcome::Success => ("0", None),
        AuditOutcome::Denied => ("4", Some(format!("denied: {}", e.detail))),
        AuditOutcome::Failure => ("8", Some(format!("failed: {}", e.detail))),
    };
    let mut agent = json!({
        "type": {"coding": [{"system": PARTICIPATION, "code": "IRCP", "display": "information recipient"}]},
        "who": {"identifier": {"system": "https://telechart.dev/actor", "value": e.actor}},
        "requestor": true,
    });
    if let Some(ip) = &e.source_ip {
        agent["network"] = json!({"address": ip, "type": "2"});
    }
    if let Some(session) = &e.session {
        agent["policy"] = json!([format!("urn:telechart:session:{session}")]);
    }
    let mut details = vec![
        json!({"type": "telechart-chain", "valueString": format!("{}:{}:{}", e.tenant_id, r.tenant_seq, hex(&r.hash))}),
    ];
    if let Some(visit) = &e.visit_id {
        details.push(json!({"type": "visit", "valueString": visit}));
    }
    if let Some(consent) = &e.consent {
        details.push(json!({"type": "consent-decision", "valueString": consent}));
    }
    let mut object = json!({
        "what": {"identifier": {"system": format!("https://telechart.dev/{}", e.entity_type), "value": e.entity_id}},
        "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
        "detail": details,
    });
    if !e.labels.is_empty() {
        object["securityLabel"] = Value::Array(e.labels.iter().map(|l| label_coding(l)).collect());
    }
    let mut entities = vec![object];
    if let Some(patient) = &e.patient {
        entities.insert(
            0,
            json!({
                "what": {"reference": patient},
                "type": {"system": ENTITY_TYPE, "code": "1", "display": "Person"},
                "role": {"system": OBJECT_ROLE, "code": "1", "display": "Patient"},
            }),
        );
    }
    let mut event = json!({
        "resourceType": "AuditEvent",
        "id": format!("{}-{}", safe_id(&e.tenant_id), r.tenant_seq),
        "type": {"system": EVENT_TYPE, "code": "rest", "display": "RESTful Operation"},
        "subtype": subtype,
        "action": letter,
        "recorded": instant(r.at),
        "outcome": outcome,
        "agent": [agent],
        "source": {
            "site": e.tenant_id,
            "observer": {"display": "Telechart"},
            "type": [{"system": SOURCE_TYPE, "code": "4", "display": "Application Server"}],
        },
        "entity": entities,
    });
    if let Some(desc) = outcome_desc {
        event["outcomeDesc"] = json!(desc);
    }
    if let Some(p) = &e.purpose_of_use {
        event["purposeOfEvent"] = json!([{"coding": [{"system": PURPOSE, "code": p}]}]);
    }
    if !e.labels.is_empty() {
        event["meta"] = json!({"security": e.labels.iter().map(|l| label_coding(l)).collect::<Vec<_>>()});
    }
    event
}

/// A FHIR id from a tenant name: `[A-Za-z0-9-.]`, at most 40 characters (room for the position).
fn safe_id(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '-' }).take(40).collect()
}

pub fn ndjson_line(r: &AuditRecord) -> String {
    let mut line = audit_event(r).to_string();
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AuditEntry;

    #[test]
    fn a_denied_read_of_protected_data_exports_with_its_purpose_labels_and_chain_position() {
        let r = AuditRecord {
            tenant_seq: 7,
            at: 1_764_000_000_000,
            entry: AuditEntry {
                tenant_id: "acme".into(),
                actor: "user:dr1".into(),
                action: "visit.read".into(),
                entity_type: "visit".into(),
                entity_id: "v1".into(),
                patient: Some("Patient/p1".into()),
                purpose_of_use: Some("ETREAT".into()),
                outcome: AuditOutcome::Denied,
                labels: vec!["R".into(), "SUD".into()],
                source_ip: Some("10.0.0.9".into()),
                detail: "consent".into(),
                ..AuditEntry::default()
            },
            hash: [0xab; 32],
        };
        let e = audit_event(&r);
        assert_eq!(e["action"], "R");
        assert_eq!(e["outcome"], "4");
        assert_eq!(e["purposeOfEvent"][0]["coding"][0]["code"], "ETREAT");
        assert_eq!(e["entity"][0]["what"]["reference"], "Patient/p1");
        assert_eq!(e["meta"]["security"][0]["system"], CONFIDENTIALITY);
        assert_eq!(e["meta"]["security"][1]["system"], ACT_CODE);
        assert_eq!(e["id"], "acme-7");
        assert!(e["entity"][1]["detail"][0]["valueString"].as_str().unwrap().starts_with("acme:7:abab"));
    }
}
