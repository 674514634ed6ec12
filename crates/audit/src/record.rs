//! One audit record and its place in the chain.

use std::fmt::Write as _;

use aws_lc_rs::digest;
use serde::{Deserialize, Serialize};

pub type Hash = [u8; 32];

/// The hash before a tenant's first record.
pub const GENESIS: Hash = [0; 32];

/// How an audited action ended (the four codes of AuditEvent.outcome).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuditOutcome {
    #[default]
    Success,
    /// Refused by policy (consent, permission, BAA): nothing happened.
    Denied,
    /// The action failed.
    Failure,
}

impl AuditOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Success => "success",
            AuditOutcome::Denied => "denied",
            AuditOutcome::Failure => "failure",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [AuditOutcome::Success, AuditOutcome::Denied, AuditOutcome::Failure].into_iter().find(|o| o.as_str() == s)
    }
}

/// What happened: who, to which patient's which resource, why, with what result. `detail` holds
/// ids and outcomes, never PHI values; `patient` is the EHR's logical reference, never a name.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AuditEntry {
    pub tenant_id: String,
    pub actor: String,
    pub action: String,
    pub entity_type: String,
    pub entity_id: String,
    pub visit_id: Option<String>,
    /// Whether the action touched PHI.
    pub phi: bool,
    pub detail: String,
    /// `Patient/{id}` whose data this was — only where no visit is named: a patient reference
    /// is PHI, so a record of a visit leaves it to the visit's sealed column (export resolves it).
    pub patient: Option<String>,
    /// HL7 v3 PurposeOfUse code (TREAT, ETREAT, BTG, HRESCH…).
    pub purpose_of_use: Option<String>,
    pub outcome: AuditOutcome,
    pub source_ip: Option<String>,
    /// A session's public id (never its secret).
    pub session: Option<String>,
    /// The consent decision the action rested on, e.g. `permit Consent/c1 Consent.provision`.
    pub consent: Option<String>,
    /// HL7 security labels of the data (`N`, `R`, `SUD`, `PSY`…).
    pub labels: Vec<String>,
}

/// A stored record: its entry, its place in its tenant's chain, and its chain hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// 1-based position in the tenant's chain.
    pub tenant_seq: i64,
    /// Unix milliseconds.
    pub at: i64,
    pub entry: AuditEntry,
    pub hash: Hash,
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u64).to_be_bytes());
    out.extend_from_slice(b);
}

fn put_opt(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            put_bytes(out, s.as_bytes());
        }
    }
}

/// The canonical encoding: a version tag, then every field in a fixed order, each length-prefixed
/// (so no two different records encode alike), times and positions as big-endian integers.
pub fn canonical(tenant_seq: i64, at: i64, e: &AuditEntry, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(b"telechart-audit/1\0");
    put_bytes(out, e.tenant_id.as_bytes());
    out.extend_from_slice(&tenant_seq.to_be_bytes());
    out.extend_from_slice(&at.to_be_bytes());
    for s in [&e.actor, &e.action, &e.entity_type, &e.entity_id] {
        put_bytes(out, s.as_bytes());
    }
    put_opt(out, e.visit_id.as_deref());
    out.push(u8::from(e.phi));
    put_bytes(out, e.detail.as_bytes());
    put_opt(out, e.patient.as_deref());
    put_opt(out, e.purpose_of_use.as_deref());
    put_bytes(out, e.outcome.as_str().as_bytes());
    put_opt(out, e.source_ip.as_deref());
    put_opt(out, e.session.as_deref());
    put_opt(out, e.consent.as_deref());
    out.extend_from_slice(&(e.labels.len() as u64).to_be_bytes());
    for l in &e.labels {
        put_bytes(out, l.as_bytes());
    }
}

/// `SHA-256(prev ‖ canonical(record))`: each record commits to everything before it.
pub fn chain_hash(prev: &Hash, tenant_seq: i64, at: i64, entry: &AuditEntry, scratch: &mut Vec<u8>) -> Hash {
    canonical(tenant_seq, at, entry, scratch);
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(prev);
    ctx.update(scratch);
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

pub fn hex(h: &[u8]) -> String {
    let mut s = String::with_capacity(h.len() * 2);
    for b in h {
        let _ = write!(s, "{b:02x}");
    }
    s
}

pub(crate) fn unhex(s: &str) -> Option<Hash> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
        let pair = std::str::from_utf8(chunk).ok()?;
        out[i] = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> AuditEntry {
        AuditEntry {
            tenant_id: "t1".into(),
            actor: "user:dr1".into(),
            action: "visit.read".into(),
            entity_type: "visit".into(),
            entity_id: "v1".into(),
            phi: true,
            ..AuditEntry::default()
        }
    }

    type Edit = Box<dyn Fn(&mut AuditEntry)>;

    #[test]
    fn every_field_changes_the_hash() {
        let mut scratch = Vec::new();
        let base = chain_hash(&GENESIS, 1, 10, &entry(), &mut scratch);
        let variants: Vec<Edit> = vec![
            Box::new(|e| e.tenant_id = "t2".into()),
            Box::new(|e| e.actor.push('x')),
            Box::new(|e| e.action.push('x')),
            Box::new(|e| e.entity_type.push('x')),
            Box::new(|e| e.entity_id.push('x')),
            Box::new(|e| e.visit_id = Some(String::new())),
            Box::new(|e| e.phi = false),
            Box::new(|e| e.detail.push('x')),
            Box::new(|e| e.patient = Some("Patient/p1".into())),
            Box::new(|e| e.purpose_of_use = Some("TREAT".into())),
            Box::new(|e| e.outcome = AuditOutcome::Denied),
            Box::new(|e| e.source_ip = Some("10.0.0.1".into())),
            Box::new(|e| e.session = Some("s".into())),
            Box::new(|e| e.consent = Some("permit".into())),
            Box::new(|e| e.labels = vec!["R".into()]),
        ];
        for (i, change) in variants.iter().enumerate() {
            let mut e = entry();
            change(&mut e);
            assert_ne!(chain_hash(&GENESIS, 1, 10, &e, &mut scratch), base, "field change {i} left the hash alone");
        }
        assert_ne!(chain_hash(&GENESIS, 2, 10, &entry(), &mut scratch), base);
        assert_ne!(chain_hash(&GENESIS, 1, 11, &entry(), &mut scratch), base);
        assert_ne!(chain_hash(&[1; 32], 1, 10, &entry(), &mut scratch), base);
        // Length prefixes: moving a character between fields is a different record.
        let mut a = entry();
        a.actor = "ab".into();
        a.action = "c".into();
        let mut b = entry();
        b.actor = "a".into();
        b.action = "bc".into();
        assert_ne!(chain_hash(&GENESIS, 1, 10, &a, &mut scratch), chain_hash(&GENESIS, 1, 10, &b, &mut scratch));
    }

    #[test]
    fn hex_round_trips() {
        let h = chain_hash(&GENESIS, 1, 1, &entry(), &mut Vec::new());
        assert_eq!(unhex(&hex(&h)), Some(h));
        assert_eq!(unhex("zz"), None);
    }
}
