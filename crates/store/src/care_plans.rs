//! Care-plan drafts, versioned per visit (drafted, superseded by a newer draft, or signed — the
//! signature commits with the CarePlan, Goal and summary artifacts it becomes, and with the
//! patient's tasks: [`EventRecord::CarePlanSigned`](crate::EventRecord)); the tasks and the
//! follow-up adherence events analytics reads.

use crate::audit::append_audit;
use crate::keys::PhiSlot;
use crate::{AuditEntry, Phi, Result, Store, StoreError, on_pool};

/// A care-plan draft to keep.
#[derive(Debug, Clone)]
pub struct NewCarePlanDraft {
    pub id: String,
    pub visit_id: String,
    pub language: String,
    /// The draft as JSON (items with evidence, conflicts, gaps).
    pub body: Phi,
    pub items: i64,
    pub conflicts: i64,
    pub gaps: i64,
    pub draft_us: i64,
    pub created_by: String,
    pub created_at: i64,
}

/// A kept care-plan draft, opened.
#[derive(Debug, Clone)]
pub struct CarePlanDraftRow {
    pub id: String,
    pub visit_id: String,
    pub version: i64,
    /// `draft`, `signed` or `superseded`.
    pub status: String,
    pub language: String,
    pub body: Phi,
    pub items: i64,
    pub conflicts: i64,
    pub gaps: i64,
    pub draft_us: i64,
    pub created_by: String,
    pub created_at: i64,
    pub signed_body: Option<Phi>,
    pub signed_by: Option<String>,
    pub signed_at: Option<i64>,
    pub care_plan_artifact: Option<String>,
    pub summary_artifact: Option<String>,
    pub items_kept: Option<i64>,
    pub items_edited: Option<i64>,
    pub items_removed: Option<i64>,
    pub items_added: Option<i64>,
}

/// A task of the signed plan for the patient.
#[derive(Debug, Clone)]
pub struct NewPatientTask {
    pub id: String,
    pub position: i64,
    /// The plan section (`follow-up`, `medication`, `self-monitoring`, `lifestyle`).
    pub section: String,
    pub text: Phi,
    pub due_at: Option<i64>,
}

/// The signature of care-plan draft `draft_id`, committed with its artifacts and tasks.
#[derive(Debug, Clone)]
pub struct CarePlanSignature {
    pub draft_id: String,
    pub visit_id: String,
    /// The plan as signed (JSON).
    pub signed_body: Phi,
    pub signed_by: String,
    pub signed_at: i64,
    pub care_plan_artifact: String,
    pub summary_artifact: String,
    pub items_kept: i64,
    pub items_edited: i64,
    pub items_removed: i64,
    pub items_added: i64,
    pub tasks: Vec<NewPatientTask>,
}

/// The signature's sealed parts: the signed body and each task's words.
pub(crate) struct SealedSignature {
    pub body: String,
    pub tasks: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct PatientTask {
    pub id: String,
    pub visit_id: String,
    pub position: i64,
    pub section: String,
    pub text: Phi,
    pub due_at: Option<i64>,
    pub created_at: i64,
    pub done_at: Option<i64>,
    /// `patient` (through the portal) or the care-team member's user id.
    pub done_by: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AdherenceEvent {
    pub id: String,
    pub visit_id: String,
    pub task_id: String,
    /// `task-done`, `task-undone` or `follow-up-overdue`.
    pub kind: String,
    pub actor: String,
    pub at: i64,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    visit_id: String,
    version: i64,
    status: String,
    language: String,
    body: String,
    items: i64,
    conflicts: i64,
    gaps: i64,
    draft_us: i64,
    created_by: String,
    created_at: i64,
    signed_body: Option<String>,
    signed_by: Option<String>,
    signed_at: Option<i64>,
    care_plan_artifact: Option<String>,
    summary_artifact: Option<String>,
    items_kept: Option<i64>,
    items_edited: Option<i64>,
    items_removed: Option<i64>,
    items_added: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct TaskRow {
    id: String,
    visit_id: String,
    position: i64,
    section: String,
    text: String,
    due_at: Option<i64>,
    created_at: i64,
    done_at: Option<i64>,
    done_by: Option<String>,
}

fn body_slot<'a>(tenant_id: &'a str, id: &'a str) -> PhiSlot<'a> {
    PhiSlot { tenant_id, table: "care_plan_drafts", column: "body", row_id: id }
}

fn signed_slot<'a>(tenant_id: &'a str, id: &'a str) -> PhiSlot<'a> {
    PhiSlot { tenant_id, table: "care_plan_drafts", column: "signed_body", row_id: id }
}

fn task_slot<'a>(tenant_id: &'a str, id: &'a str) -> PhiSlot<'a> {
    PhiSlot { tenant_id, table: "patient_tasks", column: "text", row_id: id }
}

const DRAFT_COLUMNS: &str = "id, visit_id, version, status, language, body, items, conflicts, gaps, draft_us, \
     created_by, created_at, signed_body, signed_by, signed_at, care_plan_artifact, summary_artifact, items_kept, \
     items_edited, items_removed, items_added";

const TASK_COLUMNS: &str = "id, visit_id, position, section, text, due_at, created_at, done_at, done_by";

impl Store {
    /// Keeps `draft` as the visit's next version, superseding its unsigned drafts, with its
    /// audit record, in one transaction. A visit whose plan is signed takes no new draft.
    pub async fn insert_care_plan_draft(
        &self,
        tenant_id: &str,
        draft: &NewCarePlanDraft,
        audit: &AuditEntry,
    ) -> Result<CarePlanDraftRow> {
        let body = self.seal(body_slot(tenant_id, &draft.id), &draft.body).await?;
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let (latest,): (Option<i64>,) =
                sqlx::query_as("SELECT MAX(version) FROM care_plan_drafts WHERE tenant_id = $1 AND visit_id = $2")
                    .bind(tenant_id).bind(&draft.visit_id).fetch_one(&mut *tx).await?;
            let signed: Option<(String,)> = sqlx::query_as(
                "SELECT id FROM care_plan_drafts WHERE tenant_id = $1 AND visit_id = $2 AND status = 'signed'")
                .bind(tenant_id).bind(&draft.visit_id).fetch_optional(&mut *tx).await?;
            if let Some((signed,)) = signed {
                return Err(StoreError::Conflict(format!(
                    "the care plan of visit {} is signed already (draft {signed})", draft.visit_id)));
            }
            sqlx::query("UPDATE care_plan_drafts SET status = 'superseded' WHERE tenant_id = $1 AND visit_id = $2 AND status = 'draft'")
                .bind(tenant_id).bind(&draft.visit_id).execute(&mut *tx).await?;
            sqlx::query(
                "INSERT INTO care_plan_drafts (tenant_id, id, visit_id, version, status, language, body, items, \
                 conflicts, gaps, draft_us, created_by, created_at) \
                 VALUES ($1, $2, $3, $4, 'draft', $5, $6, $7, $8, $9, $10, $11, $12)")
                .bind(tenant_id).bind(&draft.id).bind(&draft.visit_id).bind(latest.unwrap_or(0) + 1)
                .bind(&draft.language).bind(&body).bind(draft.items).bind(draft.conflicts).bind(draft.gaps)
                .bind(draft.draft_us).bind(&draft.created_by).bind(draft.created_at)
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
        self.care_plan_draft(tenant_id, &draft.id)
            .await?
            .ok_or_else(|| StoreError::NotFound { entity: "care-plan draft", id: draft.id.clone() })
    }

    /// One care-plan draft, by id.
    pub async fn care_plan_draft(&self, tenant_id: &str, id: &str) -> Result<Option<CarePlanDraftRow>> {
        self.one_care_plan_draft("WHERE tenant_id = $1 AND id = $2", tenant_id, id).await
    }

    /// The visit's latest care-plan draft (signed or not).
    pub async fn latest_care_plan_draft(&self, tenant_id: &str, visit_id: &str) -> Result<Option<CarePlanDraftRow>> {
        self.one_care_plan_draft(
            "WHERE tenant_id = $1 AND visit_id = $2 ORDER BY version DESC LIMIT 1",
            tenant_id,
            visit_id,
        )
        .await
    }

    async fn one_care_plan_draft(
        &self,
        filter: &'static str,
        tenant_id: &str,
        key: &str,
    ) -> Result<Option<CarePlanDraftRow>> {
        let sql = format!("SELECT {DRAFT_COLUMNS} FROM care_plan_drafts {filter}");
        let row = on_pool!(self, pool => sqlx::query_as::<_, Row>(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(tenant_id).bind(key).fetch_optional(pool).await)?;
        let Some(r) = row else { return Ok(None) };
        let body = self.unseal(body_slot(tenant_id, &r.id), &r.body).await?;
        let signed_body = match &r.signed_body {
            Some(sealed) => Some(self.unseal(signed_slot(tenant_id, &r.id), sealed).await?),
            None => None,
        };
        Ok(Some(CarePlanDraftRow {
            id: r.id,
            visit_id: r.visit_id,
            version: r.version,
            status: r.status,
            language: r.language,
            body,
            items: r.items,
            conflicts: r.conflicts,
            gaps: r.gaps,
            draft_us: r.draft_us,
            created_by: r.created_by,
            created_at: r.created_at,
            signed_body,
            signed_by: r.signed_by,
            signed_at: r.signed_at,
            care_plan_artifact: r.care_plan_artifact,
            summary_artifact: r.summary_artifact,
            items_kept: r.items_kept,
            items_edited: r.items_edited,
            items_removed: r.items_removed,
            items_added: r.items_added,
        }))
    }

    pub(crate) async fn seal_care_plan_signature(
        &self,
        tenant_id: &str,
        s: &CarePlanSignature,
    ) -> Result<SealedSignature> {
        let body = self.seal(signed_slot(tenant_id, &s.draft_id), &s.signed_body).await?;
        let mut tasks = Vec::with_capacity(s.tasks.len());
        for t in &s.tasks {
            tasks.push(self.seal(task_slot(tenant_id, &t.id), &t.text).await?);
        }
        Ok(SealedSignature { body, tasks })
    }

    /// The visit's tasks, in plan order.
    pub async fn patient_tasks(&self, tenant_id: &str, visit_id: &str) -> Result<Vec<PatientTask>> {
        let sql = format!(
            "SELECT {TASK_COLUMNS} FROM patient_tasks WHERE tenant_id = $1 AND visit_id = $2 ORDER BY position"
        );
        let rows = on_pool!(self, pool => sqlx::query_as::<_, TaskRow>(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(tenant_id).bind(visit_id).fetch_all(pool).await)?;
        self.open_tasks(tenant_id, rows).await
    }

    /// Open tasks of the tenant whose due time has passed at `now_ms`, the longest overdue first.
    pub async fn overdue_tasks(&self, tenant_id: &str, now_ms: i64, limit: i64) -> Result<Vec<PatientTask>> {
        let sql = format!(
            "SELECT {TASK_COLUMNS} FROM patient_tasks WHERE tenant_id = $1 AND done_at IS NULL AND due_at < $2 \
             ORDER BY due_at, id LIMIT $3"
        );
        let rows = on_pool!(self, pool => sqlx::query_as::<_, TaskRow>(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(tenant_id).bind(now_ms).bind(limit).fetch_all(pool).await)?;
        self.open_tasks(tenant_id, rows).await
    }

    async fn open_tasks(&self, tenant_id: &str, rows: Vec<TaskRow>) -> Result<Vec<PatientTask>> {
        let mut tasks = Vec::with_capacity(rows.len());
        for r in rows {
            let text = self.unseal(task_slot(tenant_id, &r.id), &r.text).await?;
            tasks.push(PatientTask {
                id: r.id,
                visit_id: r.visit_id,
                position: r.position,
                section: r.section,
                text,
                due_at: r.due_at,
                created_at: r.created_at,
                done_at: r.done_at,
                done_by: r.done_by,
            });
        }
        Ok(tasks)
    }

    /// Marks a task of the visit done (or not done) by the audit record's actor, with its
    /// adherence event and that record, in one transaction. Returns false when the task already
    /// was in that state (nothing recorded) and an error when the visit has no such task.
    pub async fn set_task_done(
        &self,
        tenant_id: &str,
        visit_id: &str,
        task_id: &str,
        done: bool,
        audit: &AuditEntry,
        now_ms: i64,
    ) -> Result<bool> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let exists: Option<(Option<i64>,)> = sqlx::query_as(
                "SELECT done_at FROM patient_tasks WHERE tenant_id = $1 AND visit_id = $2 AND id = $3")
                .bind(tenant_id).bind(visit_id).bind(task_id).fetch_optional(&mut *tx).await?;
            let Some((done_at,)) = exists else {
                return Err(StoreError::NotFound { entity: "task", id: task_id.to_owned() });
            };
            if done_at.is_some() == done {
                return Ok(false);
            }
            let actor = audit.actor.as_str();
            let (done_at, done_by, kind) =
                if done { (Some(now_ms), Some(actor), "task-done") } else { (None, None, "task-undone") };
            sqlx::query("UPDATE patient_tasks SET done_at = $1, done_by = $2 WHERE tenant_id = $3 AND id = $4")
                .bind(done_at).bind(done_by).bind(tenant_id).bind(task_id).execute(&mut *tx).await?;
            sqlx::query(
                "INSERT INTO adherence_events (tenant_id, id, visit_id, task_id, kind, actor, at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)")
                .bind(tenant_id).bind(uuid::Uuid::now_v7().to_string()).bind(visit_id).bind(task_id).bind(kind)
                .bind(actor).bind(now_ms).execute(&mut *tx).await?;
            append_audit!(&mut *tx, audit, now_ms)?;
            tx.commit().await?;
            Ok(true)
        })
    }

    /// Records a `follow-up-overdue` event for each open task past due at `now_ms` that has none
    /// yet (once per task); returns how many were recorded.
    pub async fn record_overdue_follow_ups(&self, tenant_id: &str, now_ms: i64) -> Result<u64> {
        let due: Vec<(String, String)> = on_pool!(self, pool => sqlx::query_as(
            "SELECT t.id, t.visit_id FROM patient_tasks t WHERE t.tenant_id = $1 AND t.done_at IS NULL \
             AND t.due_at < $2 AND NOT EXISTS (SELECT 1 FROM adherence_events e WHERE e.tenant_id = t.tenant_id \
             AND e.task_id = t.id AND e.kind = 'follow-up-overdue')")
            .bind(tenant_id).bind(now_ms).fetch_all(pool).await)?;
        let mut recorded = 0;
        for (task_id, visit_id) in due {
            recorded += on_pool!(self, pool => sqlx::query(
                "INSERT INTO adherence_events (tenant_id, id, visit_id, task_id, kind, actor, at) \
                 VALUES ($1, $2, $3, $4, 'follow-up-overdue', 'telechart', $5) ON CONFLICT DO NOTHING")
                .bind(tenant_id).bind(uuid::Uuid::now_v7().to_string()).bind(&visit_id).bind(&task_id)
                .bind(now_ms).execute(pool).await.map(|r| r.rows_affected()))?;
        }
        Ok(recorded)
    }

    /// The tenant's adherence events from `since_ms` on, oldest first.
    pub async fn adherence_events(&self, tenant_id: &str, since_ms: i64) -> Result<Vec<AdherenceEvent>> {
        Ok(on_pool!(self, pool => sqlx::query_as::<_, AdherenceEvent>(
            "SELECT id, visit_id, task_id, kind, actor, at FROM adherence_events WHERE tenant_id = $1 AND at >= $2 \
             ORDER BY at, id")
            .bind(tenant_id).bind(since_ms).fetch_all(pool).await)?)
    }
}

/// Marks the care-plan draft signed and inserts its tasks inside the event's transaction; a
/// draft no longer `draft` (signed or superseded meanwhile) fails the whole event.
macro_rules! sign_care_plan {
    ($tx:ident, $tenant:expr, $signature:expr, $sealed:expr, $now:expr) => {{
        let s: &$crate::CarePlanSignature = $signature;
        let sealed: &$crate::care_plans::SealedSignature = $sealed;
        let n = sqlx::query(
            "UPDATE care_plan_drafts SET status = 'signed', signed_body = $1, signed_by = $2, signed_at = $3, \
             care_plan_artifact = $4, summary_artifact = $5, items_kept = $6, items_edited = $7, items_removed = $8, \
             items_added = $9 WHERE tenant_id = $10 AND id = $11 AND status = 'draft'",
        )
        .bind(&sealed.body)
        .bind(&s.signed_by)
        .bind(s.signed_at)
        .bind(&s.care_plan_artifact)
        .bind(&s.summary_artifact)
        .bind(s.items_kept)
        .bind(s.items_edited)
        .bind(s.items_removed)
        .bind(s.items_added)
        .bind($tenant)
        .bind(&s.draft_id)
        .execute(&mut *$tx)
        .await?
        .rows_affected();
        if n != 1 {
            Err($crate::StoreError::Conflict(format!(
                "care-plan draft {} is no longer open for signature (signed or superseded meanwhile)",
                s.draft_id
            )))
        } else {
            for (task, text) in s.tasks.iter().zip(&sealed.tasks) {
                sqlx::query(
                    "INSERT INTO patient_tasks (tenant_id, id, visit_id, draft_id, position, section, text, due_at, \
                     created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind($tenant)
                .bind(&task.id)
                .bind(&s.visit_id)
                .bind(&s.draft_id)
                .bind(task.position)
                .bind(&task.section)
                .bind(text)
                .bind(task.due_at)
                .bind($now)
                .execute(&mut *$tx)
                .await?;
            }
            Ok::<(), $crate::StoreError>(())
        }
    }};
}
pub(crate) use sign_care_plan;
