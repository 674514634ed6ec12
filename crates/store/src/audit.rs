//! The audit log's storage: every PHI read or write appends one record inside the transaction
//! that does it, linked into its tenant's SHA-256 chain (`telechart_audit::chain_hash`). The
//! head row in `audit_heads` serialises appends per tenant; verification never trusts it.

use sqlx::FromRow;
use telechart_audit::{AuditOutcome, AuditRecord, GENESIS, Hash};

pub use telechart_audit::AuditEntry;

use crate::{Result, Store, StoreError, on_pool};

/// One audit record as stored (for the per-visit trace).
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct AuditRow {
    pub seq: i64,
    pub tenant_id: String,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub entity_type: String,
    pub entity_id: String,
    pub visit_id: Option<String>,
    pub phi: i64,
    pub detail: String,
    pub tenant_seq: Option<i64>,
    pub hash: Option<Vec<u8>>,
    pub patient: Option<String>,
    pub purpose_of_use: Option<String>,
    pub outcome: String,
    pub source_ip: Option<String>,
    pub session: Option<String>,
    pub consent: Option<String>,
    pub labels: String,
}

impl AuditRow {
    /// The record as the chain sees it. A row without a position or with a hash of the wrong
    /// length becomes position 0 / a zero hash, which verification reports.
    pub fn record(&self) -> AuditRecord {
        let mut hash = [0u8; 32];
        if let Some(h) = &self.hash
            && h.len() == 32
        {
            hash.copy_from_slice(h);
        }
        AuditRecord {
            tenant_seq: self.tenant_seq.unwrap_or(0),
            at: self.at,
            entry: AuditEntry {
                tenant_id: self.tenant_id.clone(),
                actor: self.actor.clone(),
                action: self.action.clone(),
                entity_type: self.entity_type.clone(),
                entity_id: self.entity_id.clone(),
                visit_id: self.visit_id.clone(),
                phi: self.phi != 0,
                detail: self.detail.clone(),
                patient: self.patient.clone(),
                purpose_of_use: self.purpose_of_use.clone(),
                // An outcome the code does not know is kept as a failure and breaks the hash.
                outcome: AuditOutcome::parse(&self.outcome).unwrap_or(AuditOutcome::Failure),
                source_ip: self.source_ip.clone(),
                session: self.session.clone(),
                consent: self.consent.clone(),
                labels: if self.labels.is_empty() {
                    Vec::new()
                } else {
                    self.labels.split(',').map(str::to_owned).collect()
                },
            },
            hash,
        }
    }
}

pub(crate) const HEAD_ADVANCE: &str = "UPDATE audit_heads SET seq = seq + 1 WHERE tenant_id = $1 RETURNING seq, hash";
pub(crate) const HEAD_CREATE: &str =
    "INSERT INTO audit_heads (tenant_id, seq, hash) VALUES ($1, 0, $2) ON CONFLICT (tenant_id) DO NOTHING";
pub(crate) const HEAD_SET: &str = "UPDATE audit_heads SET hash = $2 WHERE tenant_id = $1";
pub(crate) const INSERT: &str = "INSERT INTO audit_log (tenant_id, at, actor, action, entity_type, entity_id, visit_id, phi, detail, \
     tenant_seq, hash, patient, purpose_of_use, outcome, source_ip, session, consent, labels) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)";

pub(crate) fn prev_hash(bytes: &[u8]) -> std::result::Result<Hash, sqlx::Error> {
    bytes.try_into().map_err(|_| sqlx::Error::Decode("audit_heads.hash is not 32 bytes".into()))
}

pub(crate) fn genesis() -> Vec<u8> {
    GENESIS.to_vec()
}

/// Appends `entry` on a connection of either engine, normally an open transaction's, so the
/// record commits or rolls back with the work it describes. Evaluates to `Result<(), sqlx::Error>`.
macro_rules! append_audit {
    ($conn:expr, $entry:expr, $now:expr) => {{
        let conn = $conn;
        let entry: &$crate::AuditEntry = $entry;
        let now: i64 = $now;
        async {
            let mut head: Option<(i64, Vec<u8>)> =
                sqlx::query_as($crate::audit::HEAD_ADVANCE).bind(&entry.tenant_id).fetch_optional(&mut *conn).await?;
            if head.is_none() {
                sqlx::query($crate::audit::HEAD_CREATE)
                    .bind(&entry.tenant_id)
                    .bind($crate::audit::genesis())
                    .execute(&mut *conn)
                    .await?;
                head = Some(
                    sqlx::query_as($crate::audit::HEAD_ADVANCE).bind(&entry.tenant_id).fetch_one(&mut *conn).await?,
                );
            }
            let (seq, prev) = head.unwrap_or_default();
            let prev = $crate::audit::prev_hash(&prev)?;
            let hash = telechart_audit::chain_hash(&prev, seq, now, entry, &mut Vec::new());
            sqlx::query($crate::audit::HEAD_SET).bind(&entry.tenant_id).bind(hash.to_vec()).execute(&mut *conn).await?;
            sqlx::query($crate::audit::INSERT)
                .bind(&entry.tenant_id)
                .bind(now)
                .bind(&entry.actor)
                .bind(&entry.action)
                .bind(&entry.entity_type)
                .bind(&entry.entity_id)
                .bind(&entry.visit_id)
                .bind(i64::from(entry.phi))
                .bind(&entry.detail)
                .bind(seq)
                .bind(hash.to_vec())
                .bind(&entry.patient)
                .bind(&entry.purpose_of_use)
                .bind(entry.outcome.as_str())
                .bind(&entry.source_ip)
                .bind(&entry.session)
                .bind(&entry.consent)
                .bind(entry.labels.join(","))
                .execute(&mut *conn)
                .await?;
            Ok::<(), sqlx::Error>(())
        }
        .await
    }};
}
pub(crate) use append_audit;

/// A page of records when streaming the log.
const PAGE: i64 = 5_000;

impl Store {
    /// Appends one audit record in its own transaction (for reads that have none). Callers
    /// must not go on with the PHI access when this fails: the access is then unaudited.
    pub async fn audit(&self, entry: &AuditEntry, now_ms: i64) -> Result<()> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            append_audit!(&mut *tx, entry, now_ms)?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Appends `entries` (each with its instant) in one transaction, in order: all or none.
    /// For imports of earlier logs and for benchmarks; live PHI access appends one at a time.
    /// Each tenant's run moves its chain head once and goes in as multi-row inserts.
    pub async fn audit_batch(&self, entries: &[(AuditEntry, i64)]) -> Result<()> {
        // 18 columns a row: 1 000 rows stay under both engines' bound-parameter limits.
        const ROWS: usize = 1_000;
        let mut scratch = Vec::with_capacity(512);
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let mut rest = entries;
            while let Some((first, _)) = rest.first() {
                let tenant = first.tenant_id.as_str();
                let run = rest.iter().take_while(|(e, _)| e.tenant_id == tenant).count();
                let (this, next) = rest.split_at(run);
                rest = next;
                sqlx::query(HEAD_CREATE).bind(tenant).bind(genesis()).execute(&mut *tx).await?;
                let (last, prev): (i64, Vec<u8>) =
                    sqlx::query_as("UPDATE audit_heads SET seq = seq + $2 WHERE tenant_id = $1 RETURNING seq, hash")
                        .bind(tenant)
                        .bind(run as i64)
                        .fetch_one(&mut *tx)
                        .await?;
                let mut prev = prev_hash(&prev)?;
                let mut seq = last - run as i64;
                for chunk in this.chunks(ROWS) {
                    let mut hashes = Vec::with_capacity(chunk.len());
                    for (entry, at) in chunk {
                        seq += 1;
                        prev = telechart_audit::chain_hash(&prev, seq, *at, entry, &mut scratch);
                        hashes.push((seq, prev));
                    }
                    let mut insert = sqlx::QueryBuilder::new(
                        "INSERT INTO audit_log (tenant_id, at, actor, action, entity_type, entity_id, visit_id, phi, \
                         detail, tenant_seq, hash, patient, purpose_of_use, outcome, source_ip, session, consent, labels) ",
                    );
                    insert.push_values(chunk.iter().zip(&hashes), |mut row, ((e, at), (seq, hash))| {
                        row.push_bind(&e.tenant_id)
                            .push_bind(*at)
                            .push_bind(&e.actor)
                            .push_bind(&e.action)
                            .push_bind(&e.entity_type)
                            .push_bind(&e.entity_id)
                            .push_bind(&e.visit_id)
                            .push_bind(i64::from(e.phi))
                            .push_bind(&e.detail)
                            .push_bind(*seq)
                            .push_bind(hash.to_vec())
                            .push_bind(&e.patient)
                            .push_bind(&e.purpose_of_use)
                            .push_bind(e.outcome.as_str())
                            .push_bind(&e.source_ip)
                            .push_bind(&e.session)
                            .push_bind(&e.consent)
                            .push_bind(e.labels.join(","));
                    });
                    insert.build().execute(&mut *tx).await?;
                }
                sqlx::query(HEAD_SET).bind(tenant).bind(prev.to_vec()).execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    pub async fn audit_for_visit(&self, tenant_id: &str, visit_id: &str) -> Result<Vec<AuditRow>> {
        let rows = on_pool!(self, pool => sqlx::query_as::<_, AuditRow>(
            "SELECT * FROM audit_log WHERE tenant_id = $1 AND visit_id = $2 ORDER BY seq")
            .bind(tenant_id).bind(visit_id).fetch_all(pool).await)?;
        Ok(rows)
    }

    /// Every tenant with audit records or a chain head.
    pub async fn audit_tenants(&self) -> Result<Vec<String>> {
        let rows: Vec<(String,)> = on_pool!(self, pool => sqlx::query_as(
            "SELECT tenant_id FROM audit_heads UNION SELECT DISTINCT tenant_id FROM audit_log ORDER BY 1")
            .fetch_all(pool).await)?;
        Ok(rows.into_iter().map(|r| r.0).collect())
    }

    /// Records of `tenant_id` after chain position `after`, in chain order, a page at a time
    /// (through the chain's index). Rows without a position are not here: `for_each_audit`
    /// gives them to verification, which flags them.
    pub async fn audit_page(&self, tenant_id: &str, after: i64, limit: i64) -> Result<Vec<AuditRow>> {
        let rows = on_pool!(self, pool => sqlx::query_as::<_, AuditRow>(
            "SELECT * FROM audit_log WHERE tenant_id = $1 AND tenant_seq > $2 ORDER BY tenant_seq, seq LIMIT $3")
            .bind(tenant_id).bind(after).bind(limit.min(PAGE * 4)).fetch_all(pool).await)?;
        Ok(rows)
    }

    /// Calls `each` for every record of `tenant_id` in chain order, without holding them all:
    /// rows without a position first (verification flags them), then the chain a page at a time.
    pub async fn for_each_audit(&self, tenant_id: &str, mut each: impl FnMut(&AuditRow)) -> Result<()> {
        let first = on_pool!(self, pool => sqlx::query_as::<_, AuditRow>(
            "SELECT * FROM audit_log WHERE tenant_id = $1 AND tenant_seq IS NULL ORDER BY seq")
            .bind(tenant_id).fetch_all(pool).await)?;
        first.iter().for_each(&mut each);
        let mut after = i64::MIN;
        loop {
            let page = self.audit_page(tenant_id, after, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.tenant_seq.unwrap_or(after);
            page.iter().for_each(&mut each);
            if (page.len() as i64) < PAGE {
                break;
            }
        }
        Ok(())
    }

    /// The last checkpoint the checkpointer wrote for `tenant_id`: (size, head).
    pub async fn last_audit_checkpoint(&self, tenant_id: &str) -> Result<Option<(i64, Vec<u8>)>> {
        let row = on_pool!(self, pool => sqlx::query_as(
            "SELECT size, head FROM audit_checkpoints WHERE tenant_id = $1 ORDER BY size DESC LIMIT 1")
            .bind(tenant_id).fetch_optional(pool).await)?;
        Ok(row)
    }

    pub async fn record_audit_checkpoint(
        &self,
        tenant_id: &str,
        size: i64,
        head: &[u8],
        at: i64,
        kind: &str,
    ) -> Result<()> {
        on_pool!(self, pool => sqlx::query(
            "INSERT INTO audit_checkpoints (tenant_id, size, head, at, kind) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT DO NOTHING")
            .bind(tenant_id).bind(size).bind(head).bind(at).bind(kind).execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    /// Chains records written before the chain existed (migration 0018), once, in their order.
    pub(crate) async fn chain_legacy_audit(&self) -> Result<()> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let rows = sqlx::query_as::<_, AuditRow>("SELECT * FROM audit_log WHERE tenant_seq IS NULL ORDER BY seq")
                .fetch_all(&mut *tx).await?;
            if rows.is_empty() {
                return Ok(());
            }
            for row in rows {
                let head: Option<(i64, Vec<u8>)> = sqlx::query_as(HEAD_ADVANCE).bind(&row.tenant_id).fetch_optional(&mut *tx).await?;
                let (seq, prev) = match head {
                    Some(h) => h,
                    None => {
                        sqlx::query(HEAD_CREATE).bind(&row.tenant_id).bind(genesis()).execute(&mut *tx).await?;
                        sqlx::query_as(HEAD_ADVANCE).bind(&row.tenant_id).fetch_one(&mut *tx).await?
                    }
                };
                let prev = prev_hash(&prev)?;
                let record = row.record();
                let hash = telechart_audit::chain_hash(&prev, seq, row.at, &record.entry, &mut Vec::new());
                sqlx::query(HEAD_SET).bind(&row.tenant_id).bind(hash.to_vec()).execute(&mut *tx).await?;
                sqlx::query("UPDATE audit_log SET tenant_seq = $2, hash = $3 WHERE seq = $1")
                    .bind(row.seq).bind(seq).bind(hash.to_vec()).execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok::<(), StoreError>(())
    }
}

/// What one checkpointer pass did for one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointPass {
    /// A signed checkpoint now covers records up to `size`.
    Written { tenant_id: String, from: i64, size: i64 },
    /// Records since the last checkpoint are fewer than the interval asks for and not old enough.
    NotDue { tenant_id: String, pending: i64 },
    /// The records since the last checkpoint do not continue the witnessed chain: nothing was
    /// signed (signing them would launder the tampering).
    Broken(telechart_audit::Finding),
}

impl Store {
    /// Witnesses every tenant's new records: recomputes the chain from the last checkpoint, and
    /// when at least `every_records` are new or the oldest new one is `every_ms` old, signs a
    /// checkpoint and appends it to the witness file (synced) before recording it here.
    pub async fn checkpoint_audit(
        &self,
        signer: &telechart_audit::CheckpointSigner,
        witness: &telechart_audit::Witness,
        now_ms: i64,
        every_records: i64,
        every_ms: i64,
    ) -> Result<Vec<CheckpointPass>> {
        let mut passes = Vec::new();
        for tenant in self.audit_tenants().await? {
            let (base, base_head) = match self.last_audit_checkpoint(&tenant).await? {
                Some((size, head)) => (size, prev_hash(&head)?),
                None => (0, GENESIS),
            };
            let mut prev = base_head;
            let mut next = base + 1;
            let mut leaves: Vec<Hash> = Vec::new();
            let mut oldest: Option<i64> = None;
            let mut broken: Option<telechart_audit::Finding> = None;
            let mut scratch = Vec::new();
            let mut after = base;
            'pages: loop {
                let page = self.audit_page(&tenant, after, PAGE).await?;
                let Some(last) = page.last() else { break };
                after = last.tenant_seq.unwrap_or(after);
                for row in &page {
                    let r = row.record();
                    let hash = telechart_audit::chain_hash(&prev, r.tenant_seq, r.at, &r.entry, &mut scratch);
                    if r.tenant_seq != next || hash != r.hash {
                        broken = Some(telechart_audit::Finding {
                            tenant_id: tenant.clone(),
                            tenant_seq: next,
                            problem: "chain broken before checkpoint",
                            detail: format!(
                                "record {next} does not continue the chain witnessed up to {base}; no checkpoint signed"
                            ),
                        });
                        break 'pages;
                    }
                    oldest.get_or_insert(r.at);
                    leaves.push(hash);
                    prev = hash;
                    next += 1;
                }
                if (page.len() as i64) < PAGE {
                    break;
                }
            }
            if let Some(f) = broken {
                passes.push(CheckpointPass::Broken(f));
                continue;
            }
            let pending = leaves.len() as i64;
            let due = pending > 0 && (pending >= every_records || oldest.is_some_and(|t| now_ms - t >= every_ms));
            if !due {
                passes.push(CheckpointPass::NotDue { tenant_id: tenant, pending });
                continue;
            }
            let size = base + pending;
            let checkpoint = signer.sign(telechart_audit::Checkpoint {
                kind: telechart_audit::CheckpointKind::Checkpoint,
                tenant_id: tenant.clone(),
                from: base + 1,
                size,
                head: prev,
                at: now_ms,
                leaves,
                signature: Vec::new(),
            });
            witness.append(&checkpoint)?;
            self.record_audit_checkpoint(&tenant, size, &prev, now_ms, "checkpoint").await?;
            passes.push(CheckpointPass::Written { tenant_id: tenant, from: base + 1, size });
        }
        Ok(passes)
    }

    /// Verifies every tenant's log against the witness's checkpoints (signatures checked with
    /// `key`); `progress` hears the count of records read so far.
    pub async fn verify_audit(
        &self,
        checkpoints: &[telechart_audit::Checkpoint],
        key: Option<&telechart_audit::CheckpointVerifier>,
        mut progress: impl FnMut(u64),
    ) -> Result<telechart_audit::VerifyReport> {
        let mut verifier = telechart_audit::Verifier::new(checkpoints, key);
        let mut tenants = self.audit_tenants().await?;
        for c in checkpoints {
            if !tenants.contains(&c.tenant_id) {
                tenants.push(c.tenant_id.clone());
            }
        }
        let mut read = 0u64;
        for tenant in tenants {
            self.for_each_audit(&tenant, |row| {
                let r = row.record();
                verifier.feed(&tenant, r.tenant_seq, r.at, &r.entry, &r.hash);
                read += 1;
                if read.is_multiple_of(10_000) {
                    progress(read);
                }
            })
            .await?;
        }
        progress(read);
        Ok(verifier.finish())
    }

    /// Audit records for export, oldest first: since `since_ms`, optionally of one patient.
    pub async fn audit_export_page(
        &self,
        tenant_id: &str,
        since_ms: i64,
        patient: Option<&str>,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<AuditRow>> {
        let rows = on_pool!(self, pool => sqlx::query_as::<_, AuditRow>(
            "SELECT * FROM audit_log WHERE tenant_id = $1 AND at >= $2 AND ($3 IS NULL OR patient = $3) \
             AND seq > $4 ORDER BY seq LIMIT $5")
            .bind(tenant_id).bind(since_ms).bind(patient).bind(after_seq).bind(limit).fetch_all(pool).await)?;
        Ok(rows)
    }
}
