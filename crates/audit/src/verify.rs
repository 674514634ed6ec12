//! Verification: recompute every tenant's chain, compare it with the witness, name the first bad
//! record.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::checkpoint::{Checkpoint, CheckpointKind, CheckpointVerifier};
use crate::record::{AuditEntry, GENESIS, Hash, chain_hash};

/// The first thing wrong with one tenant's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub tenant_id: String,
    /// The first bad position in the tenant's chain (for witness faults, the checkpoint's size).
    pub tenant_seq: i64,
    pub problem: &'static str,
    pub detail: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    pub tenants: usize,
    pub records: u64,
    /// Records whose hash a signed checkpoint also holds.
    pub witnessed: u64,
    pub checkpoints: usize,
    /// Records appended but not chained yet (set by the reader, not the verifier).
    pub pending: u64,
    pub findings: Vec<Finding>,
}

impl VerifyReport {
    pub fn intact(&self) -> bool {
        self.findings.is_empty()
    }
}

/// What the witness says of one tenant.
#[derive(Default)]
struct TenantWitness {
    /// Records up to here were purged by retention; the chain continues from `base_head`.
    base: i64,
    base_head: Hash,
    /// Hashes of records `base + 1 ..`.
    leaves: Vec<Hash>,
    fault: Option<Finding>,
}

struct TenantState {
    next: i64,
    prev: Hash,
    done: bool,
}

/// Feed it each tenant's records in chain order; `finish` gives the report.
pub struct Verifier {
    witness: HashMap<String, TenantWitness>,
    state: HashMap<String, TenantState>,
    report: VerifyReport,
    scratch: Vec<u8>,
}

impl Verifier {
    /// `checkpoints` come from the witness; with `key`, each signature is checked, and without it
    /// the witness is not trusted at all.
    pub fn new(checkpoints: &[Checkpoint], key: Option<&CheckpointVerifier>) -> Verifier {
        let mut witness: HashMap<String, TenantWitness> = HashMap::new();
        let mut report = VerifyReport::default();
        if let Some(key) = key {
            report.checkpoints = checkpoints.len();
            for c in checkpoints {
                let w = witness.entry(c.tenant_id.clone()).or_default();
                if w.fault.is_some() {
                    continue;
                }
                let fault = |problem: &'static str, detail: String| {
                    Some(Finding { tenant_id: c.tenant_id.clone(), tenant_seq: c.size, problem, detail })
                };
                let covered = w.base + w.leaves.len() as i64;
                if !key.verify(c) {
                    w.fault = fault(
                        "bad checkpoint signature",
                        format!("the witness's checkpoint at size {} is not signed by the audit key", c.size),
                    );
                    continue;
                }
                match c.kind {
                    CheckpointKind::Tombstone => {
                        // Purged records leave the chain; what the witness held of them goes too.
                        let keep = (c.size - w.base).clamp(0, w.leaves.len() as i64) as usize;
                        w.leaves.drain(..keep);
                        w.base = c.size;
                        w.base_head = c.head;
                    }
                    CheckpointKind::Checkpoint => {
                        if c.from != covered + 1 || c.size != c.from + c.leaves.len() as i64 - 1 {
                            w.fault = fault(
                                "witness gap",
                                format!(
                                    "checkpoint covers {}..={} but the witness held {covered} records",
                                    c.from, c.size
                                ),
                            );
                            continue;
                        }
                        if c.leaves.last().is_some_and(|l| *l != c.head) {
                            w.fault = fault(
                                "bad checkpoint",
                                format!("checkpoint at size {}: head is not its last leaf", c.size),
                            );
                            continue;
                        }
                        w.leaves.extend_from_slice(&c.leaves);
                    }
                }
            }
        }
        Verifier { witness, state: HashMap::new(), report, scratch: Vec::with_capacity(512) }
    }

    fn fail(&mut self, tenant_id: &str, tenant_seq: i64, problem: &'static str, detail: String) {
        self.report.findings.push(Finding { tenant_id: tenant_id.to_owned(), tenant_seq, problem, detail });
        if let Some(s) = self.state.get_mut(tenant_id) {
            s.done = true;
        }
    }

    /// One stored record. Records of a tenant must come in `tenant_seq` order.
    pub fn feed(&mut self, tenant_id: &str, tenant_seq: i64, at: i64, entry: &AuditEntry, stored_hash: &Hash) {
        self.report.records += 1;
        if !self.state.contains_key(tenant_id) {
            let (next, prev) = self.witness.get(tenant_id).map_or((1, GENESIS), |w| (w.base + 1, w.base_head));
            self.state.insert(tenant_id.to_owned(), TenantState { next, prev, done: false });
            self.report.tenants += 1;
        }
        let Some(state) = self.state.get(tenant_id) else { return };
        if state.done {
            return;
        }
        let (next, prev) = (state.next, state.prev);
        if tenant_seq != next {
            let (problem, detail) = if tenant_seq > next {
                (
                    "sequence gap",
                    format!(
                        "record {next} is missing here: the next stored record claims position {tenant_seq} (deleted or moved)"
                    ),
                )
            } else {
                (
                    "out of order",
                    format!(
                        "record {tenant_seq} appears where record {next} belongs (reordered, duplicated or inserted)"
                    ),
                )
            };
            self.fail(tenant_id, next, problem, detail);
            return;
        }
        if entry.tenant_id != tenant_id {
            self.fail(
                tenant_id,
                tenant_seq,
                "modified",
                format!("record {tenant_seq} names tenant {:?}", entry.tenant_id),
            );
            return;
        }
        let hash = chain_hash(&prev, tenant_seq, at, entry, &mut self.scratch);
        if hash != *stored_hash {
            self.fail(
                tenant_id,
                tenant_seq,
                "modified",
                format!("record {tenant_seq}: its content or its predecessor does not match its stored hash"),
            );
            return;
        }
        if let Some(w) = self.witness.get(tenant_id)
            && let Some(leaf) = usize::try_from(tenant_seq - w.base - 1).ok().and_then(|i| w.leaves.get(i))
        {
            if *leaf != hash {
                self.fail(
                    tenant_id,
                    tenant_seq,
                    "rewritten",
                    format!("record {tenant_seq} differs from what the signed checkpoint witnessed: the chain was recomputed from here"),
                );
                return;
            }
            self.report.witnessed += 1;
        }
        if let Some(s) = self.state.get_mut(tenant_id) {
            s.next += 1;
            s.prev = hash;
        }
    }

    pub fn finish(mut self) -> VerifyReport {
        let mut tail: BTreeMap<String, Finding> = BTreeMap::new();
        for (tenant, w) in &self.witness {
            if let Some(f) = &w.fault {
                tail.insert(tenant.clone(), f.clone());
                continue;
            }
            let witnessed = w.base + w.leaves.len() as i64;
            let (next, done) = self.state.get(tenant).map_or((w.base + 1, false), |s| (s.next, s.done));
            if !done && next <= witnessed {
                tail.insert(
                    tenant.clone(),
                    Finding {
                        tenant_id: tenant.clone(),
                        tenant_seq: next,
                        problem: "truncated",
                        detail: format!("the log ends before record {next}; the witness holds {witnessed} records"),
                    },
                );
            }
        }
        for (tenant, f) in tail {
            if !self.report.findings.iter().any(|x| x.tenant_id == tenant) {
                self.report.findings.push(f);
            }
        }
        if self.report.tenants == 0 {
            self.report.tenants = self.witness.len();
        }
        self.report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CheckpointSigner;

    struct Log {
        rows: Vec<(i64, i64, AuditEntry, Hash)>,
    }

    fn entry(i: i64) -> AuditEntry {
        AuditEntry {
            tenant_id: "t1".into(),
            actor: "user:dr1".into(),
            action: "visit.read".into(),
            entity_type: "visit".into(),
            entity_id: format!("v{i}"),
            ..AuditEntry::default()
        }
    }

    fn build(n: i64) -> Log {
        let mut prev = GENESIS;
        let mut rows = Vec::new();
        for i in 1..=n {
            let e = entry(i);
            let h = chain_hash(&prev, i, i * 10, &e, &mut Vec::new());
            rows.push((i, i * 10, e, h));
            prev = h;
        }
        Log { rows }
    }

    fn recompute(log: &mut Log) {
        let mut prev = GENESIS;
        for (i, row) in log.rows.iter_mut().enumerate() {
            row.0 = i as i64 + 1;
            row.3 = chain_hash(&prev, row.0, row.1, &row.2, &mut Vec::new());
            prev = row.3;
        }
    }

    fn verify(log: &Log, checkpoints: &[Checkpoint], key: &CheckpointVerifier) -> VerifyReport {
        let mut v = Verifier::new(checkpoints, Some(key));
        for (seq, at, e, h) in &log.rows {
            v.feed("t1", *seq, *at, e, h);
        }
        v.finish()
    }

    #[test]
    fn an_intact_log_verifies_and_each_tampering_names_its_first_record() {
        let dir = tempfile::tempdir().unwrap();
        let signer = CheckpointSigner::generate(&dir.path().join("k")).unwrap();
        let log = build(10);
        let leaves: Vec<Hash> = log.rows.iter().map(|r| r.3).collect();
        let cps = vec![
            signer.sign(Checkpoint {
                kind: CheckpointKind::Checkpoint,
                tenant_id: "t1".into(),
                from: 1,
                size: 6,
                head: leaves[5],
                at: 0,
                leaves: leaves[..6].to_vec(),
                signature: Vec::new(),
            }),
            signer.sign(Checkpoint {
                kind: CheckpointKind::Checkpoint,
                tenant_id: "t1".into(),
                from: 7,
                size: 10,
                head: leaves[9],
                at: 0,
                leaves: leaves[6..].to_vec(),
                signature: Vec::new(),
            }),
        ];
        let key = signer.verifier();
        let report = verify(&log, &cps, &key);
        assert!(report.intact(), "{:?}", report.findings);
        assert_eq!((report.records, report.witnessed), (10, 10));

        type Tamper = fn(&mut Log);
        let cases: [(&str, Tamper, bool, i64, &str); 10] = [
            ("modify", |l| l.rows[3].2.actor = "mallory".into(), false, 4, "modified"),
            ("modify+recompute", |l| l.rows[3].2.actor = "mallory".into(), true, 4, "rewritten"),
            ("delete", |l| drop(l.rows.remove(4)), false, 5, "sequence gap"),
            ("delete+recompute", |l| drop(l.rows.remove(4)), true, 5, "rewritten"),
            ("reorder", |l| l.rows.swap(2, 3), false, 3, "sequence gap"),
            ("reorder+recompute", |l| l.rows.swap(2, 3), true, 3, "rewritten"),
            (
                "insert",
                |l| {
                    let mut e = l.rows[1].clone();
                    e.2.actor = "x".into();
                    l.rows.insert(2, e)
                },
                false,
                3,
                "out of order",
            ),
            (
                "insert+recompute",
                |l| {
                    let mut e = l.rows[1].clone();
                    e.2.actor = "x".into();
                    l.rows.insert(2, e)
                },
                true,
                3,
                "rewritten",
            ),
            ("truncate", |l| l.rows.truncate(7), false, 8, "truncated"),
            ("truncate+recompute", |l| l.rows.truncate(7), true, 8, "truncated"),
        ];
        for (name, tamper, recomputed, first, problem) in cases {
            let mut l = build(10);
            tamper(&mut l);
            if recomputed {
                recompute(&mut l);
            }
            let report = verify(&l, &cps, &key);
            assert_eq!(report.findings.len(), 1, "{name}: {:?}", report.findings);
            assert_eq!((report.findings[0].tenant_seq, report.findings[0].problem), (first, problem), "{name}");
        }
        // A forged checkpoint is a finding, not trust.
        let mut forged = cps.clone();
        forged[1].size = 11;
        assert_eq!(verify(&log, &forged, &key).findings[0].problem, "bad checkpoint signature");
    }

    #[test]
    fn a_tombstone_lets_the_chain_start_after_purged_records() {
        let dir = tempfile::tempdir().unwrap();
        let signer = CheckpointSigner::generate(&dir.path().join("k")).unwrap();
        let mut log = build(6);
        let leaves: Vec<Hash> = log.rows.iter().map(|r| r.3).collect();
        let cps = vec![
            signer.sign(Checkpoint {
                kind: CheckpointKind::Checkpoint,
                tenant_id: "t1".into(),
                from: 1,
                size: 6,
                head: leaves[5],
                at: 0,
                leaves: leaves.clone(),
                signature: Vec::new(),
            }),
            signer.sign(Checkpoint {
                kind: CheckpointKind::Tombstone,
                tenant_id: "t1".into(),
                from: 1,
                size: 4,
                head: leaves[3],
                at: 0,
                leaves: Vec::new(),
                signature: Vec::new(),
            }),
        ];
        log.rows.drain(..4);
        let report = verify(&log, &cps, &signer.verifier());
        assert!(report.intact(), "{:?}", report.findings);
        assert_eq!(report.witnessed, 2);
    }
}
