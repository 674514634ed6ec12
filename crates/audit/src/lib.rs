//! The audit log as evidence: what an audit record holds, its canonical encoding, the per-tenant
//! SHA-256 hash chain, Ed25519-signed checkpoints kept by an outside witness, verification that
//! names the first bad record, and export as FHIR AuditEvent (IHE BALP) and NDJSON.
//!
//! Invariant: no SQL. `store` appends records (linking each to its tenant's chain inside the
//! transaction that does the audited work) and streams them back; this crate computes and judges.
//! Its only I/O is the witness file, which by design lives outside the database.

mod alerts;
mod checkpoint;
mod export;

mod record;
mod verify;

pub use alerts::{Alert, AlertEngine, AlertRule, AlertRules, Observed, PersonAccess};
pub use checkpoint::{Checkpoint, CheckpointKind, CheckpointSigner, CheckpointVerifier, Witness};

pub use export::{audit_event, ndjson_line};
pub use record::{AuditEntry, AuditOutcome, AuditRecord, GENESIS, Hash, chain_hash, hex};
pub use verify::{Finding, Verifier, VerifyReport};

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("witness file {path}: {source}")]
    Witness { path: String, source: std::io::Error },
    #[error("witness file {path}, line {line}: {reason}")]
    WitnessLine { path: String, line: usize, reason: String },
    #[error("checkpoint signing key {path}: {reason}")]
    Key { path: String, reason: String },
}

pub type Result<T, E = AuditError> = std::result::Result<T, E>;
