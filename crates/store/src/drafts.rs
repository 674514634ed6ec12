//! Note drafts, versioned per visit: drafted (sealed, with its audit record), superseded by a
//! newer draft, or signed — the signature commits with the note artifact it becomes
//! ([`Store::record_event_with`] and [`EventRecord::DraftSigned`](crate::EventRecord)).

use crate::audit::append_audit;
use crate::keys::PhiSlot;
use crate::{AuditEntry, Phi, Result, Store, StoreError, on_pool};

/// A draft to keep.
#[derive(Debug, Clone)]
pub struct NewNoteDraft {
    pub id: String,
    pub visit_id: String,
    pub engine: String,
    pub template: String,
    /// The draft as JSON (sections, sentences, evidence, flags).
    pub body: Phi,
    pub sentences: i64,
    pub flagged: i64,
    pub draft_ms: i64,
    pub created_by: String,
    pub created_at: i64,
    /// The signed draft this one amends.
    pub amends: Option<String>,
}

/// A kept draft, opened.
#[derive(Debug, Clone)]
pub struct NoteDraftRow {
    pub id: String,
    pub visit_id: String,
    pub version: i64,
    pub engine: String,
    pub template: String,
    /// `draft`, `signed`, `superseded` (by a newer draft) or `amended` (by a signed amendment).
    pub status: String,
    pub amends: Option<String>,
    pub body: Phi,
    pub sentences: i64,
    pub flagged: i64,
    pub draft_ms: i64,
    pub created_by: String,
    pub created_at: i64,
    pub signed_text: Option<Phi>,
    pub signed_by: Option<String>,
    pub signed_at: Option<i64>,
    pub note_artifact: Option<String>,
    pub edit_distance: Option<i64>,
}

/// The signature of draft `draft_id`, committed with the note artifact `note_artifact`.
#[derive(Debug, Clone)]
pub struct DraftSignature {
    pub draft_id: String,
    pub signed_text: Phi,
    pub signed_by: String,
    pub signed_at: i64,
    pub note_artifact: String,
    pub edit_distance: i64,
    /// The signed draft the signed one amends: marked `amended` in the same transaction.
    pub amends: Option<String>,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    visit_id: String,
    version: i64,
    engine: String,
    template: String,
    status: String,
    amends: Option<String>,
    body: String,
    sentences: i64,
    flagged: i64,
    draft_ms: i64,
    created_by: String,
    created_at: i64,
    signed_text: Option<String>,
    signed_by: Option<String>,
    signed_at: Option<i64>,
    note_artifact: Option<String>,
    edit_distance: Option<i64>,
}

pub(crate) fn body_slot<'a>(tenant_id: &'a str, id: &'a str) -> PhiSlot<'a> {
    PhiSlot { tenant_id, table: "note_drafts", column: "body", row_id: id }
}

pub(crate) fn signed_slot<'a>(tenant_id: &'a str, id: &'a str) -> PhiSlot<'a> {
    PhiSlot { tenant_id, table: "note_drafts", column: "signed_text", row_id: id }
}

impl Store {
    /// Keeps `draft` as the visit's next version, superseding its unsigned drafts, with its
    /// audit record, in one transaction. A visit whose note is signed takes no new draft but an
    /// amendment of that signed one.
    pub async fn insert_note_draft(
        &self,
        tenant_id: &str,
        draft: &NewNoteDraft,
        audit: &AuditEntry,
    ) -> Result<NoteDraftRow> {
        let body = self.seal(body_slot(tenant_id, &draft.id), &draft.body).await?;
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let (latest,): (Option<i64>,) =
                sqlx::query_as("SELECT MAX(version) FROM note_drafts WHERE tenant_id = $1 AND visit_id = $2")
                    .bind(tenant_id).bind(&draft.visit_id).fetch_one(&mut *tx).await?;
            let signed: Option<(String,)> = sqlx::query_as(
                "SELECT id FROM note_drafts WHERE tenant_id = $1 AND visit_id = $2 AND status = 'signed'")
                .bind(tenant_id).bind(&draft.visit_id).fetch_optional(&mut *tx).await?;
            match (signed.map(|(id,)| id), &draft.amends) {
                (Some(_), None) => return Err(StoreError::Conflict(format!(
                    "the note of visit {} is signed already; amend it (amend: true) instead", draft.visit_id))),
                (None, Some(_)) => return Err(StoreError::Conflict(format!(
                    "visit {} has no signed note to amend", draft.visit_id))),
                (Some(current), Some(amends)) if &current != amends => return Err(StoreError::Conflict(format!(
                    "draft {amends} is not the signed note of visit {}; amend {current}", draft.visit_id))),
                _ => {}
            }
            sqlx::query("UPDATE note_drafts SET status = 'superseded' WHERE tenant_id = $1 AND visit_id = $2 AND status = 'draft'")
                .bind(tenant_id).bind(&draft.visit_id).execute(&mut *tx).await?;
            let version = latest.unwrap_or(0) + 1;
            sqlx::query(
                "INSERT INTO note_drafts (tenant_id, id, visit_id, version, engine, template, status, amends, body, \
                 sentences, flagged, draft_ms, created_by, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, 'draft', $7, $8, $9, $10, $11, $12, $13)")
                .bind(tenant_id).bind(&draft.id).bind(&draft.visit_id).bind(version).bind(&draft.engine)
                .bind(&draft.template).bind(&draft.amends).bind(&body).bind(draft.sentences).bind(draft.flagged)
                .bind(draft.draft_ms).bind(&draft.created_by).bind(draft.created_at)
                .execute(&mut *tx).await.map_err(|e| {
                    if StoreError::is_unique_violation(&e) {
                        StoreError::Conflict(format!("visit {} was drafted concurrently; retry", draft.visit_id))
                    } else {
                        e.into()
                    }
                })?;
            append_audit!(&mut *tx, audit, draft.created_at)?;
            tx.commit().await?;
        });
        self.note_draft(tenant_id, &draft.id)
            .await?
            .ok_or_else(|| StoreError::NotFound { entity: "note draft", id: draft.id.clone() })
    }

    /// One draft, by id.
    pub async fn note_draft(&self, tenant_id: &str, id: &str) -> Result<Option<NoteDraftRow>> {
        self.one_draft("WHERE tenant_id = $1 AND id = $2", tenant_id, id).await
    }

    /// The visit's signed draft, if its note is signed (an amended one is not).
    pub async fn signed_note_draft(&self, tenant_id: &str, visit_id: &str) -> Result<Option<NoteDraftRow>> {
        self.one_draft("WHERE tenant_id = $1 AND visit_id = $2 AND status = 'signed'", tenant_id, visit_id).await
    }

    /// The visit's latest draft (signed or not).
    pub async fn latest_note_draft(&self, tenant_id: &str, visit_id: &str) -> Result<Option<NoteDraftRow>> {
        self.one_draft("WHERE tenant_id = $1 AND visit_id = $2 ORDER BY version DESC LIMIT 1", tenant_id, visit_id)
            .await
    }

    /// The first draft `filter` (binding the tenant and one key) selects, opened.
    async fn one_draft(&self, filter: &'static str, tenant_id: &str, key: &str) -> Result<Option<NoteDraftRow>> {
        let sql = format!(
            "SELECT id, visit_id, version, engine, template, status, amends, body, sentences, flagged, draft_ms, \
             created_by, created_at, signed_text, signed_by, signed_at, note_artifact, edit_distance \
             FROM note_drafts {filter}"
        );
        let row = on_pool!(self, pool => sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(tenant_id).bind(key).fetch_optional(pool).await)?;
        match row {
            Some(r) => Ok(Some(self.open_draft(tenant_id, r).await?)),
            None => Ok(None),
        }
    }

    async fn open_draft(&self, tenant_id: &str, r: Row) -> Result<NoteDraftRow> {
        let body = self.unseal(body_slot(tenant_id, &r.id), &r.body).await?;
        let signed_text = match &r.signed_text {
            Some(sealed) => Some(self.unseal(signed_slot(tenant_id, &r.id), sealed).await?),
            None => None,
        };
        Ok(NoteDraftRow {
            id: r.id,
            visit_id: r.visit_id,
            version: r.version,
            engine: r.engine,
            template: r.template,
            status: r.status,
            amends: r.amends,
            body,
            sentences: r.sentences,
            flagged: r.flagged,
            draft_ms: r.draft_ms,
            created_by: r.created_by,
            created_at: r.created_at,
            signed_text,
            signed_by: r.signed_by,
            signed_at: r.signed_at,
            note_artifact: r.note_artifact,
            edit_distance: r.edit_distance,
        })
    }
}

/// Marks the draft signed inside the event's transaction; a draft no longer `draft` (signed
/// or superseded meanwhile) fails the whole event.
macro_rules! sign_draft {
    ($tx:ident, $tenant:expr, $signature:expr, $sealed:expr) => {{
        let s: &$crate::DraftSignature = $signature;
        let n = sqlx::query(
            "UPDATE note_drafts SET status = 'signed', signed_text = $1, signed_by = $2, signed_at = $3, \
             note_artifact = $4, edit_distance = $5 WHERE tenant_id = $6 AND id = $7 AND status = 'draft'",
        )
        .bind($sealed)
        .bind(&s.signed_by)
        .bind(s.signed_at)
        .bind(&s.note_artifact)
        .bind(s.edit_distance)
        .bind($tenant)
        .bind(&s.draft_id)
        .execute(&mut *$tx)
        .await?
        .rows_affected();
        if n != 1 {
            Err($crate::StoreError::Conflict(format!(
                "draft {} is no longer open for signature (signed or superseded meanwhile)",
                s.draft_id
            )))
        } else if let Some(amended) = &s.amends {
            let n = sqlx::query(
                "UPDATE note_drafts SET status = 'amended' WHERE tenant_id = $1 AND id = $2 AND status = 'signed'",
            )
            .bind($tenant)
            .bind(amended)
            .execute(&mut *$tx)
            .await?
            .rows_affected();
            if n == 1 {
                Ok(())
            } else {
                Err($crate::StoreError::Conflict(format!(
                    "draft {amended} is no longer the signed note; it was amended meanwhile"
                )))
            }
        } else {
            Ok(())
        }
    }};
}
pub(crate) use sign_draft;
