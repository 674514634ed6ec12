//! The audit log's storage: every PHI read or write appends one record inside the transaction
//! that does it, linked into its tenant's SHA-256 chain (`telechart_audit::chain_hash`). The
//! head row in `audit_heads` serialises appends per tenant; verification never trusts it.

use sqlx::FromRow;
use telechart_audit::{AuditOutcome, AuditRecord, GENESIS, Hash};

pub use telechart_audit::AuditEntry;

use crate::{Result, Store, on_pool};

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
        self.clone().into_record()
    }

    /// As [`Self::record`], moving the strings (the verifier reads millions).
    pub fn into_record(self) -> AuditRecord {
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
                tenant_id: self.tenant_id,
                actor: self.actor,
                action: self.action,
                entity_type: self.entity_type,
                entity_id: self.entity_id,
                visit_id: self.visit_id,
                phi: self.phi != 0,
                detail: self.detail,
                patient: self.patient,
                purpose_of_use: self.purpose_of_use,
                // An outcome the code does not know is kept as a failure and breaks the hash.
                outcome: AuditOutcome::parse(&self.outcome).unwrap_or(AuditOutcome::Failure),
                source_ip: self.source_ip,
                session: self.session,
                consent: self.consent,
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

/// Takes the tenant's chain head (its row lock serialises chainers on every instance).
const HEAD_LOCK: &str = "UPDATE audit_heads SET seq = seq WHERE tenant_id = $1 RETURNING seq, hash";
const HEAD_CREATE: &str =
    "INSERT INTO audit_heads (tenant_id, seq, hash) VALUES ($1, 0, $2) ON CONFLICT (tenant_id) DO NOTHING";
const HEAD_SET: &str = "UPDATE audit_heads SET seq = $2, hash = $3 WHERE tenant_id = $1";
const AUDIT_COLUMNS: &str = "tenant_id, at, actor, action, entity_type, entity_id, visit_id, phi, detail, \
     patient, purpose_of_use, outcome, source_ip, session, consent, labels";
pub(crate) const INSERT: &str = "INSERT INTO audit_log (tenant_id, at, actor, action, entity_type, entity_id, visit_id, phi, detail, \
     patient, purpose_of_use, outcome, source_ip, session, consent, labels) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)";

/// `update` (a guarded UPDATE that changes one row or none, with `binds` parameters) and the
/// audit record of what it did, appended only if it changed a row — in one statement round
/// trip, so auditing a delivery's outcome costs the INSERT's own work and no extra trip to the
/// database (on SQLite each trip is a hand-off to its worker thread, ~30 µs, more than the
/// INSERT). The audit values are bound after the update's, with `bind_audit!`. The result's
/// `rows_affected()` is 0 when the guard did not match.
pub(crate) fn audited_update(engine: &str, update: &str, binds: usize) -> String {
    let values: Vec<String> = (binds + 1..=binds + 16).map(|n| format!("${n}")).collect();
    let values = values.join(", ");
    if engine == "postgres" {
        format!(
            "WITH changed AS ({update} RETURNING 1) INSERT INTO audit_log ({AUDIT_COLUMNS}) SELECT {values} FROM changed"
        )
    } else {
        // SQLite has no writing CTEs; changes() is the row count of the UPDATE just before.
        format!("{update}; INSERT INTO audit_log ({AUDIT_COLUMNS}) SELECT {values} WHERE changes() = 1")
    }
}
/// Records chained per transaction.
const CHAIN_BATCH: i64 = 5_000;
/// Rows per chaining UPDATE (three binds each, under both engines' limits).
const CHAIN_ROWS: usize = 5_000;

fn prev_hash(bytes: &[u8]) -> std::result::Result<Hash, sqlx::Error> {
    bytes.try_into().map_err(|_| sqlx::Error::Decode("audit_heads.hash is not 32 bytes".into()))
}

fn genesis() -> Vec<u8> {
    GENESIS.to_vec()
}

/// Binds an audit record's sixteen values, in `AUDIT_COLUMNS` order, after whatever `$query`
/// already has bound.
macro_rules! bind_audit {
    ($query:expr, $entry:expr, $now:expr) => {{
        let entry: &$crate::AuditEntry = $entry;
        let now: i64 = $now;
        $query
            .bind(&entry.tenant_id)
            .bind(now)
            .bind(&entry.actor)
            .bind(&entry.action)
            .bind(&entry.entity_type)
            .bind(&entry.entity_id)
            .bind(&entry.visit_id)
            .bind(i64::from(entry.phi))
            .bind(&entry.detail)
            .bind(&entry.patient)
            .bind(&entry.purpose_of_use)
            .bind(entry.outcome.as_str())
            .bind(&entry.source_ip)
            .bind(&entry.session)
            .bind(&entry.consent)
            .bind(entry.labels.join(","))
    }};
}
pub(crate) use bind_audit;

/// Appends `entry` on a connection of either engine, normally an open transaction's, so the
/// record commits or rolls back with the work it describes: one INSERT. Its place in the
/// tenant's hash chain is given after commit by `chain_pending_audit` (the checkpointer runs it
/// every second), so concurrent writers never queue on the chain head. Evaluates to
/// `Result<(), sqlx::Error>`.
macro_rules! append_audit {
    ($conn:expr, $entry:expr, $now:expr) => {{
        let conn = $conn;
        $crate::audit::bind_audit!(sqlx::query($crate::audit::INSERT), $entry, $now)
            .execute(&mut *conn)
            .await
            .map(|_| ())
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
    /// For imports of earlier logs and for benchmarks; each is the same INSERT a PHI write makes.
    pub async fn audit_batch(&self, entries: &[(AuditEntry, i64)]) -> Result<()> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            for (entry, at) in entries {
                append_audit!(&mut *tx, entry, *at)?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// For `bench audit`: in one transaction, per entry, the guarded one-row UPDATE a delivery's
    /// outcome makes (on a scratch table made for it) with, when `audited`, its record riding in
    /// the same statement as `complete_delivery` does. The difference between the two runs is what
    /// auditing adds to such a write.
    pub async fn audit_alongside_updates(&self, entries: &[(AuditEntry, i64)], audited: bool) -> Result<()> {
        const UPDATE: &str = "UPDATE audit_probe SET n = n + 1 WHERE id = $1 AND n >= $2";
        let sql = if audited { audited_update(self.engine(), UPDATE, 2) } else { UPDATE.to_owned() };
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query("CREATE TEMP TABLE IF NOT EXISTS audit_probe (id BIGINT PRIMARY KEY, n BIGINT NOT NULL)")
                .execute(&mut *tx).await?;
            sqlx::query("INSERT INTO audit_probe (id, n) VALUES (1, 0) ON CONFLICT (id) DO NOTHING")
                .execute(&mut *tx).await?;
            for (entry, at) in entries {
                let query = sqlx::query(sqlx::AssertSqlSafe(sql.as_str())).bind(1_i64).bind(0_i64);
                let changed = if audited {
                    bind_audit!(query, entry, *at).execute(&mut *tx).await?
                } else {
                    query.execute(&mut *tx).await?
                };
                if changed.rows_affected() == 0 {
                    return Err(crate::StoreError::Conflict("the audit probe row is missing".into()));
                }
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Gives every record not yet chained its place in its tenant's chain, in append order
    /// (`seq`), and its hash; a transaction per tenant and batch, under the tenant's head lock.
    /// Returns how many were chained.
    pub async fn chain_pending_audit(&self) -> Result<u64> {
        let tenants: Vec<(String,)> = on_pool!(self, pool => sqlx::query_as(
            "SELECT DISTINCT tenant_id FROM audit_log WHERE tenant_seq IS NULL ORDER BY 1")
            .fetch_all(pool).await)?;
        let mut chained = 0u64;
        let mut scratch = Vec::with_capacity(512);
        for (tenant,) in tenants {
            loop {
                let n = on_pool!(self, pool => {
                    let mut tx = pool.begin().await?;
                    sqlx::query(HEAD_CREATE).bind(&tenant).bind(genesis()).execute(&mut *tx).await?;
                    let (mut seq, prev): (i64, Vec<u8>) =
                        sqlx::query_as(HEAD_LOCK).bind(&tenant).fetch_one(&mut *tx).await?;
                    let mut prev = prev_hash(&prev)?;
                    let rows = sqlx::query_as::<_, AuditRow>(
                        "SELECT * FROM audit_log WHERE tenant_id = $1 AND tenant_seq IS NULL ORDER BY seq LIMIT $2")
                        .bind(&tenant).bind(CHAIN_BATCH).fetch_all(&mut *tx).await?;
                    for chunk in rows.chunks(CHAIN_ROWS) {
                        let mut placed = Vec::with_capacity(chunk.len());
                        for row in chunk {
                            seq += 1;
                            let r = row.record();
                            prev = telechart_audit::chain_hash(&prev, seq, r.at, &r.entry, &mut scratch);
                            placed.push((row.seq, seq, prev.to_vec()));
                        }
                        // UPDATE … FROM VALUES: both engines name the columns column1…3.
                        let mut update = sqlx::QueryBuilder::new(
                            "UPDATE audit_log SET tenant_seq = v.column2, hash = v.column3 FROM (",
                        );
                        update.push_values(&placed, |mut row, (id, position, hash)| {
                            row.push_bind(*id).push_bind(*position).push_bind(hash.clone());
                        });
                        update.push(") AS v WHERE audit_log.seq = v.column1 AND audit_log.tenant_seq IS NULL");
                        update.build().execute(&mut *tx).await?;
                    }
                    sqlx::query(HEAD_SET).bind(&tenant).bind(seq).bind(prev.to_vec()).execute(&mut *tx).await?;
                    tx.commit().await?;
                    rows.len() as i64
                });
                chained += n as u64;
                if n < CHAIN_BATCH {
                    break;
                }
            }
        }
        Ok(chained)
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
    pub async fn for_each_audit(&self, tenant_id: &str, mut each: impl FnMut(AuditRow)) -> Result<()> {
        let first = on_pool!(self, pool => sqlx::query_as::<_, AuditRow>(
            "SELECT * FROM audit_log WHERE tenant_id = $1 AND tenant_seq IS NULL ORDER BY seq")
            .bind(tenant_id).fetch_all(pool).await)?;
        first.into_iter().for_each(&mut each);
        // The next page is read while `each` works through this one: decoding rows and hashing
        // them then run side by side.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Vec<AuditRow>>>(2);
        let (store, tenant) = (self.clone(), tenant_id.to_owned());
        let reader = tokio::spawn(async move {
            let mut after = i64::MIN;
            loop {
                let page = store.audit_page(&tenant, after, PAGE).await;
                let (last, full) = match &page {
                    Ok(rows) => (rows.last().and_then(|r| r.tenant_seq), rows.len() as i64 >= PAGE),
                    Err(_) => (None, false),
                };
                if tx.send(page).await.is_err() {
                    return;
                }
                match last {
                    Some(seq) if full => after = seq,
                    _ => return,
                }
            }
        });
        let mut outcome = Ok(());
        while let Some(page) = rx.recv().await {
            match page {
                Ok(rows) => rows.into_iter().for_each(&mut each),
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
        }
        drop(rx);
        // A reader that stopped early must not pass for the end of the log.
        if let Err(e) = reader.await
            && outcome.is_ok()
        {
            outcome = Err(crate::StoreError::Corrupt(format!("reading tenant {tenant_id}'s audit log stopped: {e}")));
        }
        outcome
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
        self.chain_pending_audit().await?;
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
        let (mut read, mut pending) = (0u64, 0u64);
        for tenant in tenants {
            self.for_each_audit(&tenant, |row| {
                // Appended, not yet chained: the next checkpointer pass places it.
                if row.tenant_seq.is_none() && row.hash.is_none() {
                    pending += 1;
                    return;
                }
                let r = row.into_record();
                verifier.feed(&tenant, r.tenant_seq, r.at, &r.entry, &r.hash);
                read += 1;
                if read.is_multiple_of(10_000) {
                    progress(read);
                }
            })
            .await?;
        }
        progress(read);
        let mut report = verifier.finish();
        report.pending = pending;
        Ok(report)
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
