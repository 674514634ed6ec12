//! Signed checkpoints and the witness file that keeps them outside the database.
//!
//! A checkpoint says "tenant T's chain had `size` records, ending in `head`", signed with an
//! Ed25519 key that lives in a file, not in the database. It also carries the hashes of the
//! records it newly covers, so that a verifier can name the first record that differs even when
//! an attacker with full database access rewrote the chain from there on. A tombstone is a
//! checkpoint written when retention purges a whole expired segment: the chain then starts after it.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use aws_lc_rs::digest;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use crate::record::{Hash, hex, unhex};
use crate::{AuditError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckpointKind {
    Checkpoint,
    /// Records `from..=size` were purged by retention; `head` is the hash the chain continues from.
    Tombstone,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub kind: CheckpointKind,
    pub tenant_id: String,
    /// First record this checkpoint newly covers (1-based).
    pub from: i64,
    /// Records in the chain so far.
    pub size: i64,
    pub head: Hash,
    /// Unix milliseconds.
    pub at: i64,
    /// The hashes of records `from..=size` (empty in a tombstone).
    pub leaves: Vec<Hash>,
    pub signature: Vec<u8>,
}

/// The line form in the witness file.
#[derive(Serialize, Deserialize)]
struct Line {
    kind: CheckpointKind,
    tenant: String,
    from: i64,
    size: i64,
    head: String,
    at: i64,
    leaves: String,
    sig: String,
}

impl Checkpoint {
    /// What the signature covers: every field, the leaves through their digest.
    fn message(&self) -> Vec<u8> {
        let mut leaves = digest::Context::new(&digest::SHA256);
        for l in &self.leaves {
            leaves.update(l);
        }
        let kind = match self.kind {
            CheckpointKind::Checkpoint => "checkpoint",
            CheckpointKind::Tombstone => "tombstone",
        };
        format!(
            "telechart-checkpoint/1\n{kind}\n{}\n{}\n{}\n{}\n{}\n{}",
            self.tenant_id,
            self.from,
            self.size,
            hex(&self.head),
            self.at,
            hex(leaves.finish().as_ref())
        )
        .into_bytes()
    }

    fn to_line(&self) -> Line {
        let mut raw = Vec::with_capacity(self.leaves.len() * 32);
        for l in &self.leaves {
            raw.extend_from_slice(l);
        }
        Line {
            kind: self.kind,
            tenant: self.tenant_id.clone(),
            from: self.from,
            size: self.size,
            head: hex(&self.head),
            at: self.at,
            leaves: B64.encode(raw),
            sig: B64.encode(&self.signature),
        }
    }

    fn from_line(line: Line) -> Option<Checkpoint> {
        let raw = B64.decode(line.leaves).ok()?;
        if raw.len() % 32 != 0 {
            return None;
        }
        let leaves = raw
            .chunks_exact(32)
            .map(|c| {
                let mut h = [0u8; 32];
                h.copy_from_slice(c);
                h
            })
            .collect();
        Some(Checkpoint {
            kind: line.kind,
            tenant_id: line.tenant,
            from: line.from,
            size: line.size,
            head: unhex(&line.head)?,
            at: line.at,
            leaves,
            signature: B64.decode(line.sig).ok()?,
        })
    }
}

/// Signs checkpoints with the Ed25519 key in a PKCS#8 file.
pub struct CheckpointSigner {
    key: Ed25519KeyPair,
}

impl std::fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CheckpointSigner(public {})", hex(self.public_key()))
    }
}

impl CheckpointSigner {
    /// Writes a new key to `path` (owner-only permissions) and returns its signer.
    pub fn generate(path: &Path) -> Result<CheckpointSigner> {
        let err = |reason: String| AuditError::Key { path: path.display().to_string(), reason };
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|e| err(e.to_string()))?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(|e| err(e.to_string()))?;
        file.write_all(pkcs8.as_ref()).map_err(|e| err(e.to_string()))?;
        file.sync_all().map_err(|e| err(e.to_string()))?;
        Self::load(path)
    }

    pub fn load(path: &Path) -> Result<CheckpointSigner> {
        let err = |reason: String| AuditError::Key { path: path.display().to_string(), reason };
        let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        let key = Ed25519KeyPair::from_pkcs8(&bytes).map_err(|e| err(format!("not an Ed25519 PKCS#8 key: {e}")))?;
        Ok(CheckpointSigner { key })
    }

    pub fn public_key(&self) -> &[u8] {
        self.key.public_key().as_ref()
    }

    pub fn verifier(&self) -> CheckpointVerifier {
        CheckpointVerifier { public_key: self.public_key().to_vec() }
    }

    /// Signs `checkpoint` (its `signature` is replaced).
    pub fn sign(&self, mut checkpoint: Checkpoint) -> Checkpoint {
        checkpoint.signature = self.key.sign(&checkpoint.message()).as_ref().to_vec();
        checkpoint
    }
}

/// Checks checkpoint signatures with the public key alone.
#[derive(Debug, Clone)]
pub struct CheckpointVerifier {
    public_key: Vec<u8>,
}

impl CheckpointVerifier {
    pub fn new(public_key: Vec<u8>) -> Self {
        CheckpointVerifier { public_key }
    }

    pub fn verify(&self, c: &Checkpoint) -> bool {
        UnparsedPublicKey::new(&signature::ED25519, &self.public_key).verify(&c.message(), &c.signature).is_ok()
    }
}

/// The append-only witness file: one signed checkpoint per line.
#[derive(Debug, Clone)]
pub struct Witness {
    path: PathBuf,
}

impl Witness {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Witness { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, source: std::io::Error) -> AuditError {
        AuditError::Witness { path: self.path.display().to_string(), source }
    }

    /// Appends and syncs one checkpoint; it is durable when this returns.
    pub fn append(&self, c: &Checkpoint) -> Result<()> {
        let mut line = serde_json::to_vec(&c.to_line()).map_err(|e| self.io(std::io::Error::other(e)))?;
        line.push(b'\n');
        let mut file =
            std::fs::OpenOptions::new().create(true).append(true).open(&self.path).map_err(|e| self.io(e))?;
        file.write_all(&line).map_err(|e| self.io(e))?;
        file.sync_data().map_err(|e| self.io(e))
    }

    /// Every checkpoint in the file, in order; a missing file is an empty witness.
    pub fn read(&self) -> Result<Vec<Checkpoint>> {
        let file = match std::fs::File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.io(e)),
        };
        let mut out = Vec::new();
        for (i, line) in BufReader::new(file).lines().enumerate() {
            let line = line.map_err(|e| self.io(e))?;
            if line.trim().is_empty() {
                continue;
            }
            let bad = |reason: &str| AuditError::WitnessLine {
                path: self.path.display().to_string(),
                line: i + 1,
                reason: reason.to_owned(),
            };
            let parsed: Line = serde_json::from_str(&line).map_err(|e| bad(&e.to_string()))?;
            out.push(Checkpoint::from_line(parsed).ok_or_else(|| bad("malformed hash, leaves or signature"))?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_round_trip_through_the_witness_and_forgeries_fail() {
        let dir = tempfile::tempdir().unwrap();
        let signer = CheckpointSigner::generate(&dir.path().join("audit.key")).unwrap();
        let witness = Witness::new(dir.path().join("witness.jsonl"));
        let c = signer.sign(Checkpoint {
            kind: CheckpointKind::Checkpoint,
            tenant_id: "t1".into(),
            from: 1,
            size: 2,
            head: [7; 32],
            at: 1000,
            leaves: vec![[1; 32], [7; 32]],
            signature: Vec::new(),
        });
        witness.append(&c).unwrap();
        let read = witness.read().unwrap();
        assert_eq!(read, vec![c.clone()]);
        let verifier = signer.verifier();
        assert!(verifier.verify(&read[0]));
        for forge in [
            |c: &mut Checkpoint| c.size = 3,
            |c: &mut Checkpoint| c.head[0] ^= 1,
            |c: &mut Checkpoint| c.leaves[0][0] ^= 1,
            |c: &mut Checkpoint| c.tenant_id = "t2".into(),
        ] {
            let mut f = c.clone();
            forge(&mut f);
            assert!(!verifier.verify(&f));
        }
        let other = CheckpointSigner::generate(&dir.path().join("other.key")).unwrap();
        assert!(!other.verifier().verify(&c), "another key's verifier refuses it");
        assert!(CheckpointSigner::generate(&dir.path().join("audit.key")).is_err(), "never overwrites a key");
    }
}
