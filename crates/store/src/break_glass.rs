//! Break-glass grants: created, used, expired and reviewed, each step audited with it.

use crate::audit::append_audit;
use crate::keys::PhiSlot;
use crate::{AuditEntry, Phi, Result, Store, StoreError, on_pool};

#[derive(Debug, Clone, PartialEq)]
pub struct BreakGlassGrant {
    pub id: String,
    pub actor: String,
    pub visit_id: String,
    /// HL7 v3 ActReason, e.g. `ETREAT`, `BTG`.
    pub reason_code: String,
    pub reason_text: Phi,
    pub granted_at: i64,
    pub expires_at: i64,
    pub uses: i64,
    /// `pending`, `approved` or `flagged`.
    pub review: String,
    pub reviewer: Option<String>,
    pub review_note: Option<Phi>,
    pub reviewed_at: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    actor: String,
    visit_id: String,
    reason_code: String,
    reason_text: String,
    granted_at: i64,
    expires_at: i64,
    uses: i64,
    review: String,
    reviewer: Option<String>,
    review_note: Option<String>,
    reviewed_at: Option<i64>,
}

const COLUMNS: &str = "id, actor, visit_id, reason_code, reason_text, granted_at, expires_at, uses, review, reviewer, review_note, reviewed_at";

impl Store {
    /// Records `grant` with its audit record, in one transaction.
    pub async fn grant_break_glass(&self, tenant_id: &str, grant: &BreakGlassGrant, audit: &AuditEntry) -> Result<()> {
        let slot = PhiSlot { tenant_id, table: "break_glass", column: "reason_text", row_id: &grant.id };
        let reason = self.seal(slot, &grant.reason_text).await?;
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO break_glass (tenant_id, id, actor, visit_id, reason_code, reason_text, granted_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
                .bind(tenant_id).bind(&grant.id).bind(&grant.actor).bind(&grant.visit_id).bind(&grant.reason_code)
                .bind(&reason).bind(grant.granted_at).bind(grant.expires_at)
                .execute(&mut *tx).await?;
            append_audit!(&mut *tx, audit, grant.granted_at)?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// The grant `actor` holds for `visit_id` at `now_ms`, if one is in force.
    pub async fn active_break_glass(
        &self,
        tenant_id: &str,
        actor: &str,
        visit_id: &str,
        now_ms: i64,
    ) -> Result<Option<BreakGlassGrant>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM break_glass WHERE tenant_id = $1 AND actor = $2 AND visit_id = $3 \
             AND granted_at <= $4 AND expires_at > $4 ORDER BY expires_at DESC LIMIT 1"
        );
        let row = on_pool!(self, pool => sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe(sql))
            .bind(tenant_id).bind(actor).bind(visit_id).bind(now_ms).fetch_optional(pool).await)?;
        match row {
            Some(r) => Ok(Some(self.open_grant(tenant_id, r).await?)),
            None => Ok(None),
        }
    }

    /// Counts one access under the grant.
    pub async fn use_break_glass(&self, tenant_id: &str, id: &str) -> Result<()> {
        on_pool!(self, pool => sqlx::query("UPDATE break_glass SET uses = uses + 1 WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_id).bind(id).execute(pool).await.map(drop))?;
        Ok(())
    }

    /// Grants of the tenant, newest first; only those awaiting review when `pending_only`.
    pub async fn break_glass_grants(&self, tenant_id: &str, pending_only: bool) -> Result<Vec<BreakGlassGrant>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM break_glass WHERE tenant_id = $1 AND ($2 = 0 OR review = 'pending') \
             ORDER BY granted_at DESC, id"
        );
        let rows = on_pool!(self, pool => sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe(sql))
            .bind(tenant_id).bind(i64::from(pending_only)).fetch_all(pool).await)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.push(self.open_grant(tenant_id, r).await?);
        }
        Ok(out)
    }

    /// A compliance officer's verdict on a grant (`approved` or `flagged`), once, audited.
    pub async fn review_break_glass(
        &self,
        tenant_id: &str,
        id: &str,
        verdict: &str,
        note: &Phi,
        audit: &AuditEntry,
        now_ms: i64,
    ) -> Result<()> {
        let slot = PhiSlot { tenant_id, table: "break_glass", column: "review_note", row_id: id };
        let sealed = self.seal(slot, note).await?;
        let changed = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let changed = sqlx::query(
                "UPDATE break_glass SET review = $3, reviewer = $4, review_note = $5, reviewed_at = $6 \
                 WHERE tenant_id = $1 AND id = $2 AND review = 'pending'")
                .bind(tenant_id).bind(id).bind(verdict).bind(&audit.actor).bind(&sealed).bind(now_ms)
                .execute(&mut *tx).await?.rows_affected();
            if changed == 1 {
                append_audit!(&mut *tx, audit, now_ms)?;
                tx.commit().await?;
            }
            changed
        });
        if changed == 1 {
            return Ok(());
        }
        let exists = self.break_glass_grants(tenant_id, false).await?.into_iter().any(|g| g.id == id);
        Err(if exists {
            StoreError::Conflict(format!("break-glass grant {id} is already reviewed"))
        } else {
            StoreError::NotFound { entity: "break-glass grant", id: id.to_owned() }
        })
    }

    async fn open_grant(&self, tenant_id: &str, r: Row) -> Result<BreakGlassGrant> {
        let reason = PhiSlot { tenant_id, table: "break_glass", column: "reason_text", row_id: &r.id };
        let reason_text = self.unseal(reason, &r.reason_text).await?;
        let review_note = match &r.review_note {
            Some(stored) => {
                let slot = PhiSlot { tenant_id, table: "break_glass", column: "review_note", row_id: &r.id };
                Some(self.unseal(slot, stored).await?)
            }
            None => None,
        };
        Ok(BreakGlassGrant {
            id: r.id,
            actor: r.actor,
            visit_id: r.visit_id,
            reason_code: r.reason_code,
            reason_text,
            granted_at: r.granted_at,
            expires_at: r.expires_at,
            uses: r.uses,
            review: r.review,
            reviewer: r.reviewer,
            review_note,
            reviewed_at: r.reviewed_at,
        })
    }
}
