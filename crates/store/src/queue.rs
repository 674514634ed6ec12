//! The durable delivery queue: claim with a lease, complete, retry later, dead-letter.
//!
//! A claimed row (`in_flight`, lease owner, identifier) is committed before any request leaves, so
//! it is the write intent: whoever claims the row after an expired lease, or after an ambiguous
//! failure, is told to reconcile (search the EHR by identifier) before writing again.

use sqlx::FromRow;

use crate::audit::{audited_update, bind_audit};
use crate::{AuditEntry, Result, Store, on_pool};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    Pending,
    InFlight,
    Done,
    Dead,
    /// Not sent: the patient's consent does not let it leave (a disclosure). Terminal.
    Withheld,
    /// A dead letter an operator chose not to send, with a reason. Terminal.
    Discarded,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::InFlight => "in_flight",
            DeliveryStatus::Done => "done",
            DeliveryStatus::Dead => "dead",
            DeliveryStatus::Withheld => "withheld",
            DeliveryStatus::Discarded => "discarded",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct DeliveryRow {
    pub tenant_id: String,
    pub id: String,
    pub artifact_id: String,
    pub visit_id: String,
    pub connection_id: String,
    pub seq: i64,
    pub resource_type: String,
    pub identifier: String,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<i64>,
    pub outcome_unknown: i64,
    pub reconcile: i64,
    pub last_error: Option<String>,
    pub ehr_resource_id: Option<String>,
    pub ehr_version: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub completed_at: Option<i64>,
    /// How the delivery was planned for its EHR (`written`, `transformed: …`, `fallback: …`,
    /// `not deliverable: …`), once attempted.
    pub plan: Option<String>,
    /// What the EHR kept on read-back (JSON of `telechart_fhir::readback::ReadBack`).
    pub readback: Option<String>,
    /// 0 for a dead letter of an artifact this EHR has no path for (see [`Self::blocks_visit`]).
    pub blocks_visit: i64,
    /// Its visit's priority lane (`LANE_CLINICAL`, `LANE_BACKFILL`).
    pub lane: i64,
}

impl DeliveryRow {
    /// Whether this delivery, while unfinished or dead, holds back the later ones of its visit.
    pub fn blocks_visit(&self) -> bool {
        self.blocks_visit != 0
    }
}

/// What a finished delivery records: the EHR's id and version, the plan it took, the read-back.
#[derive(Debug, Clone, Copy, Default)]
pub struct Completion<'a> {
    pub ehr_resource_id: &'a str,
    pub ehr_version: Option<&'a str>,
    pub plan: Option<&'a str>,
    pub readback: Option<&'a str>,
}

/// Why a delivery became a dead letter.
#[derive(Debug, Clone, Copy)]
pub struct DeadLetter<'a> {
    pub reason: &'a str,
    /// False for an artifact the EHR has no path for at all: it then does not hold back the
    /// rest of its visit.
    pub blocks_visit: bool,
    pub plan: Option<&'a str>,
}

/// A delivery this worker now holds a lease on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedDelivery {
    pub row: DeliveryRow,
    /// An earlier attempt may have reached the EHR: search by identifier before writing.
    pub must_reconcile: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueCounts {
    pub pending: i64,
    pub in_flight: i64,
    pub done: i64,
    pub dead: i64,
    pub withheld: i64,
    pub discarded: i64,
}

impl QueueCounts {
    pub fn total(&self) -> i64 {
        self.pending + self.in_flight + self.done + self.dead + self.withheld + self.discarded
    }
}

// Per-visit ordering: only the lowest unfinished seq of a (visit, connection) may be claimed, so
// the Encounter is written before anything references it and status changes land in order.
const HEAD_OF_VISIT: &str = "NOT EXISTS (SELECT 1 FROM deliveries e WHERE e.tenant_id = d.tenant_id \
    AND e.visit_id = d.visit_id AND e.connection_id = d.connection_id AND e.seq < d.seq AND e.status NOT IN ('done', 'withheld', 'discarded') \
    AND NOT (e.status = 'dead' AND e.blocks_visit = 0))";

// Two kinds of due row, each found through its own index in due order, so a claim reads only
// as many rows as it takes instead of sorting the whole backlog: in flight with an expired lease
// (its worker died), and pending whose time has come.
const EXPIRED: &str = "SELECT d.tenant_id, d.id FROM deliveries d \
    WHERE d.tenant_id = $5 AND d.status = 'in_flight' AND d.lease_expires_at <= $3 AND ";
const EXPIRED_ORDER: &str = " ORDER BY d.lease_expires_at LIMIT $4";
const PENDING: &str = "SELECT d.tenant_id, d.id FROM deliveries d \
    WHERE d.tenant_id = $5 AND d.status = 'pending' AND d.next_attempt_at <= $3 AND ";
// The clinical lane first: a backlog of backfill never delays a chart closing now. Within a
// lane, lowest seq first among equally due rows: visits advance side by side (breadth first), so
// no visit is left with a long serial tail while others are finished.
const PENDING_ORDER: &str = " ORDER BY d.lane, d.next_attempt_at, d.seq LIMIT $4";

// `reconcile` is computed from the row's values *before* this update (SET sees the old row on
// both engines): an expired in-flight lease or a recorded ambiguous outcome.
const CLAIM: &str = "UPDATE deliveries SET \
    reconcile = CASE WHEN status = 'in_flight' THEN 1 ELSE outcome_unknown END, \
    status = 'in_flight', lease_owner = $1, lease_expires_at = $2, attempts = attempts + 1, updated_at = $3 \
    WHERE (tenant_id, id) IN (";

impl Store {
    /// Claims up to `limit` due deliveries for `owner` with a lease until `lease_until_ms`.
    /// PostgreSQL: `FOR UPDATE SKIP LOCKED`, so many instances claim disjoint rows. SQLite: one
    /// statement under SQLite's single writer, so claims never overlap either.
    pub async fn claim_due(
        &self,
        tenant_id: &str,
        owner: &str,
        lease_until_ms: i64,
        now_ms: i64,
        limit: i64,
    ) -> Result<Vec<ClaimedDelivery>> {
        let mut rows = Vec::new();
        for (select, order) in [(EXPIRED, EXPIRED_ORDER), (PENDING, PENDING_ORDER)] {
            let remaining = limit - i64::try_from(rows.len()).unwrap_or(limit);
            if remaining <= 0 {
                break;
            }
            // The only difference between the engines: PostgreSQL skips rows another claimer holds.
            let lock = match &self.db {
                crate::Db::Sqlite(_) => "",
                crate::Db::Postgres(_) => " FOR UPDATE OF d SKIP LOCKED",
            };
            let sql = format!("{CLAIM}{select}{HEAD_OF_VISIT}{order}{lock}) RETURNING *");
            let claimed = on_pool!(self, pool => sqlx::query_as::<_, DeliveryRow>(sqlx::AssertSqlSafe(sql))
                .bind(owner)
                .bind(lease_until_ms)
                .bind(now_ms)
                .bind(remaining)
                .bind(tenant_id)
                .fetch_all(pool)
                .await)?;
            rows.extend(claimed);
        }
        Ok(rows.into_iter().map(|row| ClaimedDelivery { must_reconcile: row.reconcile != 0, row }).collect())
    }

    /// Records the EHR's id and version and marks the delivery done, if `owner` still holds the
    /// lease. Returns false when the lease was lost (another worker took over; it reconciles).
    /// For an Encounter, the visit remembers the EHR's Encounter id in the same transaction.
    pub async fn complete_delivery(
        &self,
        delivery: &DeliveryRow,
        owner: &str,
        completion: &Completion<'_>,
        audit: &AuditEntry,
        now_ms: i64,
    ) -> Result<bool> {
        let ehr_resource_id = completion.ehr_resource_id;
        let sql = audited_update(
            self.engine(),
            "UPDATE deliveries SET status = 'done', ehr_resource_id = $1, ehr_version = $2, completed_at = $3, \
             updated_at = $3, lease_owner = NULL, lease_expires_at = NULL, last_error = NULL, outcome_unknown = 0, \
             plan = COALESCE($7, plan), readback = $8 \
             WHERE tenant_id = $4 AND id = $5 AND status = 'in_flight' AND lease_owner = $6",
            8,
        );
        let done = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let updated = bind_audit!(sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(ehr_resource_id).bind(completion.ehr_version).bind(now_ms)
                .bind(&delivery.tenant_id).bind(&delivery.id).bind(owner)
                .bind(completion.plan).bind(completion.readback), audit, now_ms)
                .execute(&mut *tx).await?;
            if updated.rows_affected() > 0 {
                if delivery.resource_type == "Encounter" {
                    sqlx::query("UPDATE visits SET ehr_encounter_id = $1 WHERE tenant_id = $2 AND id = $3")
                        .bind(ehr_resource_id).bind(&delivery.tenant_id).bind(&delivery.visit_id)
                        .execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok::<bool, crate::StoreError>(true)
            } else {
                Ok(false)
            }
        })?;
        Ok(done)
    }

    /// Puts the delivery back for another attempt at `next_attempt_at_ms`. `outcome_unknown`
    /// records that the failed attempt may have reached the EHR.
    #[allow(clippy::too_many_arguments)]
    pub async fn retry_delivery(
        &self,
        delivery: &DeliveryRow,
        owner: &str,
        error: &str,
        outcome_unknown: bool,
        throttled: bool,
        next_attempt_at_ms: i64,
        audit: &AuditEntry,
        now_ms: i64,
    ) -> Result<bool> {
        let sql = audited_update(
            self.engine(),
            "UPDATE deliveries SET status = 'pending', next_attempt_at = $1, last_error = $2, \
             outcome_unknown = CASE WHEN $3 = 1 THEN 1 ELSE outcome_unknown END, \
             lease_owner = NULL, lease_expires_at = NULL, updated_at = $4, throttled = throttled + $8 \
             WHERE tenant_id = $5 AND id = $6 AND status = 'in_flight' AND lease_owner = $7",
            8,
        );
        let ours = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let updated = bind_audit!(sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(next_attempt_at_ms).bind(error).bind(i64::from(outcome_unknown)).bind(now_ms)
                .bind(&delivery.tenant_id).bind(&delivery.id).bind(owner).bind(i64::from(throttled)), audit, now_ms)
                .execute(&mut *tx).await?;
            if updated.rows_affected() > 0 {
                tx.commit().await?;
                Ok::<bool, crate::StoreError>(true)
            } else {
                Ok(false)
            }
        })?;
        Ok(ours)
    }

    /// Moves the delivery to the dead letters with its reason.
    pub async fn dead_letter(
        &self,
        delivery: &DeliveryRow,
        owner: &str,
        letter: &DeadLetter<'_>,
        audit: &AuditEntry,
        now_ms: i64,
    ) -> Result<bool> {
        let sql = audited_update(
            self.engine(),
            "UPDATE deliveries SET status = 'dead', last_error = $1, lease_owner = NULL, lease_expires_at = NULL, \
             updated_at = $2, blocks_visit = $6, plan = COALESCE($7, plan), was_dead = 1 \
             WHERE tenant_id = $3 AND id = $4 AND status = 'in_flight' AND lease_owner = $5",
            7,
        );
        let dead = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let updated = bind_audit!(sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(letter.reason).bind(now_ms).bind(&delivery.tenant_id).bind(&delivery.id).bind(owner)
                .bind(i64::from(letter.blocks_visit)).bind(letter.plan), audit, now_ms)
                .execute(&mut *tx).await?;
            if updated.rows_affected() > 0 {
                tx.commit().await?;
                Ok::<bool, crate::StoreError>(true)
            } else {
                Ok(false)
            }
        })?;
        Ok(dead)
    }

    /// Returns dead deliveries of a visit to the queue (operator replay after fixing the cause).
    pub async fn replay_dead(&self, tenant_id: &str, visit_id: &str, now_ms: i64) -> Result<u64> {
        let updated = on_pool!(self, pool => sqlx::query(
            "UPDATE deliveries SET status = 'pending', next_attempt_at = $1, updated_at = $1, outcome_unknown = 1, \
             manual_touches = manual_touches + 1 WHERE tenant_id = $2 AND visit_id = $3 AND status = 'dead'")
            .bind(now_ms).bind(tenant_id).bind(visit_id).execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(updated)
    }

    /// One delivery, by id.
    pub async fn delivery(&self, tenant_id: &str, id: &str) -> Result<Option<DeliveryRow>> {
        Ok(on_pool!(self, pool => sqlx::query_as::<_, DeliveryRow>(
            "SELECT * FROM deliveries WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_id).bind(id).fetch_optional(pool).await)?)
    }

    /// Returns one dead letter to the queue, with its audit record. The worker plans it afresh
    /// (fresh token, the connection's current contract) and reconciles first, since an earlier
    /// attempt may have reached the EHR. False when it is not a dead letter.
    pub async fn retry_dead_delivery(
        &self,
        tenant_id: &str,
        id: &str,
        audit: &AuditEntry,
        now_ms: i64,
    ) -> Result<bool> {
        let sql = audited_update(
            self.engine(),
            "UPDATE deliveries SET status = 'pending', next_attempt_at = $1, updated_at = $1, outcome_unknown = 1, \
             manual_touches = manual_touches + 1 WHERE tenant_id = $2 AND id = $3 AND status = 'dead'",
            3,
        );
        // In a transaction: on SQLite the two statements would otherwise commit one by one.
        let changed = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let changed = bind_audit!(sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(now_ms).bind(tenant_id).bind(id), audit, now_ms)
                .execute(&mut *tx).await?.rows_affected();
            tx.commit().await?;
            Ok::<u64, crate::StoreError>(changed)
        })?;
        Ok(changed > 0)
    }

    /// Ends one dead letter without sending it (`discarded`, with the operator's reason), with its
    /// audit record; later deliveries of its visit no longer wait for it. False when it is not a
    /// dead letter.
    pub async fn discard_dead_delivery(
        &self,
        tenant_id: &str,
        id: &str,
        reason: &str,
        audit: &AuditEntry,
        now_ms: i64,
    ) -> Result<bool> {
        let sql = audited_update(
            self.engine(),
            "UPDATE deliveries SET status = 'discarded', last_error = $1, updated_at = $2, manual_touches = manual_touches + 1 \
             WHERE tenant_id = $3 AND id = $4 AND status = 'dead'",
            4,
        );
        // In a transaction: on SQLite the two statements would otherwise commit one by one.
        let changed = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let changed = bind_audit!(sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(reason).bind(now_ms).bind(tenant_id).bind(id), audit, now_ms)
                .execute(&mut *tx).await?.rows_affected();
            tx.commit().await?;
            Ok::<u64, crate::StoreError>(changed)
        })?;
        Ok(changed > 0)
    }

    pub async fn deliveries_for_visit(&self, tenant_id: &str, visit_id: &str) -> Result<Vec<DeliveryRow>> {
        let rows = on_pool!(self, pool => sqlx::query_as::<_, DeliveryRow>(
            "SELECT * FROM deliveries WHERE tenant_id = $1 AND visit_id = $2 ORDER BY seq, connection_id")
            .bind(tenant_id).bind(visit_id).fetch_all(pool).await)?;
        Ok(rows)
    }

    pub async fn dead_letters(&self, tenant_id: &str) -> Result<Vec<DeliveryRow>> {
        let rows = on_pool!(self, pool => sqlx::query_as::<_, DeliveryRow>(
            "SELECT * FROM deliveries WHERE tenant_id = $1 AND status = 'dead' ORDER BY updated_at")
            .bind(tenant_id).fetch_all(pool).await)?;
        Ok(rows)
    }

    /// Folds SQLite's write-ahead log back into the database file (nothing on PostgreSQL), so
    /// that work timed right after a bulk load does not also pay for checkpointing that load.
    pub async fn checkpoint_wal(&self) -> Result<()> {
        if let crate::Db::Sqlite(pool) = &self.db {
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(pool).await?;
        }
        Ok(())
    }

    /// How many of a tenant's deliveries have `status`, through the due index (cheap for the
    /// small statuses however long the backlog).
    pub async fn count_with_status(&self, tenant_id: &str, status: DeliveryStatus) -> Result<i64> {
        let (n,): (i64,) = on_pool!(self, pool => sqlx::query_as(
            "SELECT COUNT(*) FROM deliveries WHERE tenant_id = $1 AND status = $2")
            .bind(tenant_id).bind(status.as_str()).fetch_one(pool).await)?;
        Ok(n)
    }

    /// Counts of a tenant's deliveries by status (for metrics and the demo summary).
    pub async fn queue_counts(&self, tenant_id: &str) -> Result<QueueCounts> {
        let rows = on_pool!(self, pool => sqlx::query_as::<_, (String, i64)>(
            "SELECT status, COUNT(*) FROM deliveries WHERE tenant_id = $1 GROUP BY status")
            .bind(tenant_id).fetch_all(pool).await)?;
        let mut counts = QueueCounts::default();
        for (status, n) in rows {
            match status.as_str() {
                "pending" => counts.pending = n,
                "in_flight" => counts.in_flight = n,
                "done" => counts.done = n,
                "dead" => counts.dead = n,
                "withheld" => counts.withheld = n,
                "discarded" => counts.discarded = n,
                _ => {}
            }
        }
        Ok(counts)
    }

    /// The earliest time a delivery becomes claimable (a pending head of its visit, or an
    /// in-flight one whose lease runs out), so idle workers sleep exactly that long.
    pub async fn next_due_at(&self, tenant_id: &str) -> Result<Option<i64>> {
        let row = on_pool!(self, pool => sqlx::query_as::<_, (Option<i64>,)>(
            sqlx::AssertSqlSafe(format!("SELECT MIN(CASE WHEN d.status = 'pending' THEN d.next_attempt_at ELSE d.lease_expires_at END) \
             FROM deliveries d WHERE d.tenant_id = $1 AND d.status IN ('pending', 'in_flight') AND {HEAD_OF_VISIT}")))
            .bind(tenant_id).fetch_one(pool).await)?;
        Ok(row.0)
    }
}
