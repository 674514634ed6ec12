//! Retention: PHI is kept no longer than the visit's work needs. Once every delivery of an
//! artifact is done (the EHR holds the record) and the artifact is older than the configured
//! age, its payload is replaced by a sealed tombstone; ids, times and the delivery trail stay.

use std::collections::HashSet;

use crate::audit::append_audit;
use crate::keys::PhiSlot;
use crate::{AuditEntry, Phi, Result, Store, StoreError, on_pool};

/// What a purged payload says instead of the PHI it held.
pub const PURGED_PAYLOAD: &str = r#"{"kind":"purged","reason":"retention"}"#;

impl Store {
    /// Purges up to `limit` payloads of `tenant_id` created before `older_than_ms` whose
    /// deliveries are all done (or withheld), outside visits under a legal hold. Returns how many;
    /// run until 0.
    pub async fn purge_delivered_payloads(&self, tenant_id: &str, older_than_ms: i64, limit: i64) -> Result<u64> {
        let held = self.held_visits(tenant_id).await?;
        let (mut purged, mut after) = (0, String::new());
        while purged < limit.max(0) as u64 {
            let page =
                self.purge_delivered_page(tenant_id, older_than_ms, None, &after, limit, &held, |_| true).await?;
            purged += page.purged;
            match page.next {
                Some(next) => after = next,
                None => break,
            }
        }
        Ok(purged)
    }
}

/// A legal hold on one visit, or on every visit of one patient.
#[derive(Debug, Clone, PartialEq)]
pub struct LegalHold {
    pub id: String,
    pub visit_id: Option<String>,
    pub patient: Option<Phi>,
    pub reason: String,
    pub placed_by: String,
    pub placed_at: i64,
    pub released_by: Option<String>,
    pub released_at: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct HoldRow {
    id: String,
    visit_id: Option<String>,
    patient: Option<String>,
    reason: String,
    placed_by: String,
    placed_at: i64,
    released_by: Option<String>,
    released_at: Option<i64>,
}

/// One page of a purge: how many payloads went, and where the next page starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurgePage {
    pub purged: u64,
    /// The last artifact id examined; `None` when there is nothing more.
    pub next: Option<String>,
}

/// What an audit retention pass did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditPurge {
    pub tenant_id: String,
    /// Records `from..=to` (chain positions) were deleted behind a signed tombstone.
    pub from: i64,
    pub to: i64,
}

impl Store {
    /// Places `hold` with its audit record.
    pub async fn place_legal_hold(&self, tenant_id: &str, hold: &LegalHold, audit: &AuditEntry) -> Result<()> {
        let patient = match &hold.patient {
            Some(p) => Some(self.seal(hold_slot(tenant_id, &hold.id), p).await?),
            None => None,
        };
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO legal_holds (tenant_id, id, visit_id, patient, reason, placed_by, placed_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)")
                .bind(tenant_id).bind(&hold.id).bind(&hold.visit_id).bind(&patient).bind(&hold.reason)
                .bind(&hold.placed_by).bind(hold.placed_at)
                .execute(&mut *tx).await?;
            append_audit!(&mut *tx, audit, hold.placed_at)?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Releases hold `id` (once) with its audit record.
    pub async fn release_legal_hold(
        &self,
        tenant_id: &str,
        id: &str,
        actor: &str,
        audit: &AuditEntry,
        now_ms: i64,
    ) -> Result<()> {
        let released = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let n = sqlx::query(
                "UPDATE legal_holds SET released_by = $1, released_at = $2 \
                 WHERE tenant_id = $3 AND id = $4 AND released_at IS NULL")
                .bind(actor).bind(now_ms).bind(tenant_id).bind(id)
                .execute(&mut *tx).await?.rows_affected();
            if n == 1 {
                append_audit!(&mut *tx, audit, now_ms)?;
            }
            tx.commit().await?;
            n == 1
        });
        if released {
            return Ok(());
        }
        match self.legal_holds(tenant_id, false).await?.into_iter().find(|h| h.id == id) {
            Some(_) => Err(StoreError::Conflict(format!("legal hold {id} is released already"))),
            None => Err(StoreError::NotFound { entity: "legal hold", id: id.to_owned() }),
        }
    }

    /// The tenant's holds (only those in force with `active_only`), oldest first.
    pub async fn legal_holds(&self, tenant_id: &str, active_only: bool) -> Result<Vec<LegalHold>> {
        let rows = on_pool!(self, pool => sqlx::query_as::<_, HoldRow>(
            "SELECT id, visit_id, patient, reason, placed_by, placed_at, released_by, released_at FROM legal_holds \
             WHERE tenant_id = $1 AND ($2 = 0 OR released_at IS NULL) ORDER BY placed_at, id")
            .bind(tenant_id).bind(i64::from(active_only)).fetch_all(pool).await)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let patient = match &r.patient {
                Some(sealed) => Some(self.unseal(hold_slot(tenant_id, &r.id), sealed).await?),
                None => None,
            };
            out.push(LegalHold {
                id: r.id,
                visit_id: r.visit_id,
                patient,
                reason: r.reason,
                placed_by: r.placed_by,
                placed_at: r.placed_at,
                released_by: r.released_by,
                released_at: r.released_at,
            });
        }
        Ok(out)
    }

    /// The visits nothing may be purged from: each held visit, and every visit of a held patient.
    pub async fn held_visits(&self, tenant_id: &str) -> Result<HashSet<String>> {
        let holds = self.legal_holds(tenant_id, true).await?;
        let mut held: HashSet<String> = holds.iter().filter_map(|h| h.visit_id.clone()).collect();
        let patients: HashSet<&str> = holds.iter().filter_map(|h| h.patient.as_ref().map(Phi::expose)).collect();
        if !patients.is_empty() {
            // Patients are sealed per visit: each visit is opened to see whose it is.
            let ids = on_pool!(self, pool => sqlx::query_as::<_, (String,)>(
                "SELECT id FROM visits WHERE tenant_id = $1").bind(tenant_id).fetch_all(pool).await)?;
            for (id,) in ids {
                if let Some(v) = self.visit(tenant_id, &id).await?
                    && patients.contains(v.patient.expose())
                {
                    held.insert(id);
                }
            }
        }
        Ok(held)
    }

    /// One page (by artifact id, after `after`) of fully delivered artifacts of `kind` (any kind
    /// when `None`) created before `older_than_ms`, outside `held` visits: those whose payload
    /// `matches` are replaced by a sealed tombstone.
    #[allow(clippy::too_many_arguments)] // a page of one purge: each argument narrows it
    pub async fn purge_delivered_page(
        &self,
        tenant_id: &str,
        older_than_ms: i64,
        kind: Option<&str>,
        after: &str,
        limit: i64,
        held: &HashSet<String>,
        matches: impl Fn(&Phi) -> bool,
    ) -> Result<PurgePage> {
        let rows = on_pool!(self, pool => sqlx::query_as::<_, (String, String, String)>(
            "SELECT a.id, a.visit_id, a.payload FROM artifacts a WHERE a.tenant_id = $1 AND a.created_at < $2 \
             AND a.kind <> 'purged' AND ($3 = '' OR a.kind = $3) AND a.id > $4 \
             AND EXISTS (SELECT 1 FROM deliveries d WHERE d.tenant_id = a.tenant_id AND d.artifact_id = a.id) \
             AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.tenant_id = a.tenant_id AND d.artifact_id = a.id \
               AND d.status NOT IN ('done', 'withheld', 'discarded')) ORDER BY a.id LIMIT $5")
            .bind(tenant_id).bind(older_than_ms).bind(kind.unwrap_or("")).bind(after).bind(limit)
            .fetch_all(pool).await)?;
        let mut page = PurgePage { purged: 0, next: rows.last().map(|r| r.0.clone()) };
        for (id, visit_id, stored) in rows {
            if held.contains(&visit_id) {
                continue;
            }
            let slot = PhiSlot { tenant_id, table: "artifacts", column: "payload", row_id: &id };
            if !matches(&self.unseal(slot, &stored).await?) {
                continue;
            }
            let tombstone = self.seal(slot, &Phi::new(PURGED_PAYLOAD)).await?;
            page.purged += on_pool!(self, pool => sqlx::query(
                "UPDATE artifacts SET payload = $1, kind = 'purged' WHERE tenant_id = $2 AND id = $3 AND kind <> 'purged'")
                .bind(&tombstone).bind(tenant_id).bind(&id).execute(pool).await.map(|r| r.rows_affected()))?;
        }
        Ok(page)
    }

    /// Retention of the audit log: deletes the tenant's oldest records — a whole segment, from the
    /// start of what is left — that are all older than `older_than_ms`, already witnessed by a
    /// signed checkpoint, and before the first record of a `held` visit; a signed tombstone
    /// checkpoint in the witness (written first) says where the chain now starts, so verification
    /// still holds. `None` when no such segment exists.
    pub async fn purge_audit_segment(
        &self,
        signer: &telechart_audit::CheckpointSigner,
        witness: &telechart_audit::Witness,
        tenant_id: &str,
        older_than_ms: i64,
        held: &HashSet<String>,
        now_ms: i64,
    ) -> Result<Option<AuditPurge>> {
        let Some((witnessed, _)) = self.last_audit_checkpoint(tenant_id).await? else { return Ok(None) };
        let (first, first_young) = on_pool!(self, pool => sqlx::query_as::<_, (Option<i64>, Option<i64>)>(
            "SELECT MIN(tenant_seq), MIN(CASE WHEN at >= $2 THEN tenant_seq END) FROM audit_log \
             WHERE tenant_id = $1 AND tenant_seq IS NOT NULL")
            .bind(tenant_id).bind(older_than_ms).fetch_one(pool).await)?;
        let Some(first) = first else { return Ok(None) };
        let mut to = witnessed.min(first_young.map_or(i64::MAX, |y| y - 1));
        for visit in held {
            let (held_first,) = on_pool!(self, pool => sqlx::query_as::<_, (Option<i64>,)>(
                "SELECT MIN(tenant_seq) FROM audit_log WHERE tenant_id = $1 AND visit_id = $2")
                .bind(tenant_id).bind(visit).fetch_one(pool).await)?;
            if let Some(h) = held_first {
                to = to.min(h - 1);
            }
        }
        if to < first {
            return Ok(None);
        }
        let head = on_pool!(self, pool => sqlx::query_as::<_, (Option<Vec<u8>>,)>(
            "SELECT hash FROM audit_log WHERE tenant_id = $1 AND tenant_seq = $2")
            .bind(tenant_id).bind(to).fetch_optional(pool).await)?;
        let head: telechart_audit::Hash = head
            .and_then(|(h,)| h)
            .and_then(|h| h.try_into().ok())
            .ok_or_else(|| StoreError::Corrupt(format!("audit record {to} of tenant {tenant_id} has no chain hash")))?;
        let tombstone = signer.sign(telechart_audit::Checkpoint {
            kind: telechart_audit::CheckpointKind::Tombstone,
            tenant_id: tenant_id.to_owned(),
            from: first,
            size: to,
            head,
            at: now_ms,
            leaves: Vec::new(),
            signature: Vec::new(),
        });
        // The witness first: a crash before the delete leaves records the next pass removes.
        witness.append(&tombstone)?;
        self.record_audit_checkpoint(tenant_id, to, &head, now_ms, "tombstone").await?;
        on_pool!(self, pool => sqlx::query("DELETE FROM audit_log WHERE tenant_id = $1 AND tenant_seq <= $2")
            .bind(tenant_id).bind(to).execute(pool).await.map(|_| ()))?;
        Ok(Some(AuditPurge { tenant_id: tenant_id.to_owned(), from: first, to }))
    }
}

fn hold_slot<'a>(tenant_id: &'a str, id: &'a str) -> PhiSlot<'a> {
    PhiSlot { tenant_id, table: "legal_holds", column: "patient", row_id: id }
}
