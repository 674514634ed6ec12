//! The analytics read side: the recorded rows a visit's facts are derived from, the
//! `visit_facts` table the refresh keeps, and the KPI aggregates over it. Ids, codes, counts and
//! times only — nothing here reads a sealed column.

use crate::{Result, Store, on_pool};

/// Rows changed within this margin before the last refresh are looked at again: a transaction
/// that took its timestamp before the refresh began may commit after it looked.
pub const REFRESH_OVERLAP_MS: i64 = 10_000;

/// A visit as the facts need it (no patient).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FactVisit {
    pub id: String,
    pub connection_id: String,
    pub practitioner: Option<String>,
    pub visit_type: Option<String>,
    pub state: String,
    pub created_at: i64,
    pub call_ended_at: Option<i64>,
    pub ehr_encounter_id: Option<String>,
    pub billing: Option<String>,
}

/// A delivery as the facts need it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FactDelivery {
    pub visit_id: String,
    pub connection_id: String,
    pub resource_type: String,
    pub status: String,
    pub attempts: i64,
    pub created_at: i64,
    pub completed_at: Option<i64>,
    pub readback: Option<String>,
    pub was_dead: i64,
    pub manual_touches: i64,
    pub throttled: i64,
    pub plan: Option<String>,
}

/// A note draft's times and edit distance.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FactDraft {
    pub visit_id: String,
    pub status: String,
    pub created_at: i64,
    pub signed_at: Option<i64>,
    pub edit_distance: Option<i64>,
}

/// A consent gate's decision, as the audit log holds it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FactDecision {
    pub visit_id: String,
    /// The flow's name (`start telehealth visit`, `recording / AI drafting`, …).
    pub detail: String,
    pub outcome: String,
    pub consent: Option<String>,
}

/// Everything recorded about a batch of visits that their facts are derived from.
#[derive(Debug, Default)]
pub struct FactSources {
    pub visits: Vec<FactVisit>,
    pub deliveries: Vec<FactDelivery>,
    pub drafts: Vec<FactDraft>,
    /// Visits with a note artifact (a signed note).
    pub noted: Vec<String>,
    pub decisions: Vec<FactDecision>,
}

/// What one connection kept of one resource type's fields in one visit: a row of
/// `visit_fact_readbacks`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct FactReadback {
    pub connection_id: String,
    pub resource_type: String,
    pub sent: i64,
    pub kept: i64,
}

/// One visit's facts: a row of `visit_facts`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct VisitFact {
    pub tenant_id: String,
    pub visit_id: String,
    pub connection_id: String,
    pub clinician: String,
    pub visit_type: String,
    pub state: String,
    pub started_at: i64,
    pub call_ended_at: Option<i64>,
    pub encounter_in_ehr: i64,
    pub deliveries: i64,
    pub delivered: i64,
    pub dead: i64,
    pub ever_dead: i64,
    pub manual_touches: i64,
    pub throttled: i64,
    pub retries: i64,
    pub chart_closed_at: Option<i64>,
    pub slowest_delivery_ms: Option<i64>,
    pub auto_logged: i64,
    pub note_drafted: i64,
    pub note_signed_at: Option<i64>,
    pub edit_distance: Option<i64>,
    pub readback_sent: i64,
    pub readback_kept: i64,
    pub claim_ready: i64,
    /// The claim checks that fail, comma-separated.
    pub claim_missing: String,
    /// `captured` (decided on a Consent on file), `policy` (no Consent; the tenant's policy
    /// decided), `denied`, or `none` (never asked).
    pub consent_telehealth: String,
    pub consent_ai: String,
    pub consent_denials: i64,
    pub refreshed_at: i64,
    /// By connection and resource type (kept in `visit_fact_readbacks`).
    #[sqlx(skip)]
    #[serde(skip)]
    pub readbacks: Vec<FactReadback>,
}

const FACT_COLUMNS: [&str; 32] = [
    "tenant_id",
    "visit_id",
    "connection_id",
    "clinician",
    "visit_type",
    "state",
    "started_at",
    "call_ended_at",
    "encounter_in_ehr",
    "deliveries",
    "delivered",
    "dead",
    "ever_dead",
    "manual_touches",
    "throttled",
    "retries",
    "chart_closed_at",
    "slowest_delivery_ms",
    "auto_logged",
    "note_drafted",
    "note_signed_at",
    "edit_distance",
    "readback_sent",
    "readback_kept",
    "claim_ready",
    "claim_missing",
    "consent_telehealth",
    "consent_ai",
    "consent_denials",
    "refreshed_at",
    "chart_closure_ms",
    "documentation_ms",
];

/// Which visits a KPI query covers: one tenant, visits started in `[from_ms, to_ms)`, and
/// optionally one connection, clinician and visit type.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FactFilter {
    pub tenant_id: String,
    pub from_ms: i64,
    pub to_ms: i64,
    pub connection: Option<String>,
    pub clinician: Option<String>,
    pub visit_type: Option<String>,
}

/// A dimension the facts are grouped or filtered by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FactDimension {
    Connection,
    Clinician,
    VisitType,
    /// The UTC day the visit started (Unix days).
    Day,
}

impl FactDimension {
    /// Its name in `analytics_dimensions` (the day has none: it is not a menu).
    fn stored_name(self) -> &'static str {
        match self {
            FactDimension::Connection => "connection",
            FactDimension::Clinician => "clinician",
            FactDimension::VisitType => "visit-type",
            FactDimension::Day => "day",
        }
    }

    fn expression(self) -> &'static str {
        match self {
            FactDimension::Connection => "connection_id",
            FactDimension::Clinician => "clinician",
            FactDimension::VisitType => "visit_type",
            FactDimension::Day => "CAST(started_at / 86400000 AS TEXT)",
        }
    }
}

/// The sums every KPI is a ratio of, over the visits of a filter.
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct FactTotals {
    pub visits: i64,
    pub finished: i64,
    pub cancelled: i64,
    pub no_show: i64,
    /// Visits that reached the call (in progress or finished).
    pub started: i64,
    pub auto_logged: i64,
    pub charted: i64,
    pub notes_drafted: i64,
    pub notes_signed: i64,
    pub edit_distance_sum: i64,
    pub edit_distance_count: i64,
    pub readback_sent: i64,
    pub readback_kept: i64,
    pub claim_ready: i64,
    pub consent_telehealth_captured: i64,
    pub consent_ai_captured: i64,
    pub consent_denials: i64,
    pub deliveries: i64,
    pub delivered: i64,
    pub dead: i64,
    pub ever_dead_visits: i64,
    pub manual_touch_visits: i64,
    pub throttled: i64,
    pub retries: i64,
    /// Visits having each duration [`FactDuration`] takes quantiles of.
    pub chart_closure_n: i64,
    pub documentation_n: i64,
    pub slowest_delivery_n: i64,
}

impl FactTotals {
    /// Adds another group's sums (groups partition the visits, so their sums are the total).
    pub fn add(&mut self, o: &FactTotals) {
        let pairs: [(&mut i64, i64); 27] = [
            (&mut self.visits, o.visits),
            (&mut self.finished, o.finished),
            (&mut self.cancelled, o.cancelled),
            (&mut self.no_show, o.no_show),
            (&mut self.started, o.started),
            (&mut self.auto_logged, o.auto_logged),
            (&mut self.charted, o.charted),
            (&mut self.notes_drafted, o.notes_drafted),
            (&mut self.notes_signed, o.notes_signed),
            (&mut self.edit_distance_sum, o.edit_distance_sum),
            (&mut self.edit_distance_count, o.edit_distance_count),
            (&mut self.readback_sent, o.readback_sent),
            (&mut self.readback_kept, o.readback_kept),
            (&mut self.claim_ready, o.claim_ready),
            (&mut self.consent_telehealth_captured, o.consent_telehealth_captured),
            (&mut self.consent_ai_captured, o.consent_ai_captured),
            (&mut self.consent_denials, o.consent_denials),
            (&mut self.deliveries, o.deliveries),
            (&mut self.delivered, o.delivered),
            (&mut self.dead, o.dead),
            (&mut self.ever_dead_visits, o.ever_dead_visits),
            (&mut self.manual_touch_visits, o.manual_touch_visits),
            (&mut self.throttled, o.throttled),
            (&mut self.retries, o.retries),
            (&mut self.chart_closure_n, o.chart_closure_n),
            (&mut self.documentation_n, o.documentation_n),
            (&mut self.slowest_delivery_n, o.slowest_delivery_n),
        ];
        for (a, b) in pairs {
            *a += b;
        }
    }
}

/// The sums of one (connection, clinician, visit type) of a filter, with how many of its
/// finished visits fail each claim check asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct Breakdown {
    pub connection: String,
    pub clinician: String,
    pub visit_type: String,
    #[sqlx(flatten)]
    pub totals: FactTotals,
    #[sqlx(flatten)]
    pub claim_missing: ClaimMissing,
}

/// Finished visits failing each of the eight claim checks, in the order asked.
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct ClaimMissing {
    pub m0: i64,
    pub m1: i64,
    pub m2: i64,
    pub m3: i64,
    pub m4: i64,
    pub m5: i64,
    pub m6: i64,
    pub m7: i64,
}

impl ClaimMissing {
    pub fn counts(&self) -> [i64; 8] {
        [self.m0, self.m1, self.m2, self.m3, self.m4, self.m5, self.m6, self.m7]
    }
}

#[derive(sqlx::FromRow)]
struct KeyedTotals {
    key: String,
    #[sqlx(flatten)]
    totals: FactTotals,
}

/// The sums of [`FactTotals`]: each field's name (also its column in `analytics_daily`) and
/// what one visit adds to it.
const TOTAL_SUMS: [(&str, &str); 27] = [
    ("visits", "1"),
    ("finished", "CASE WHEN state = 'finished' THEN 1 ELSE 0 END"),
    ("cancelled", "CASE WHEN state = 'cancelled' THEN 1 ELSE 0 END"),
    ("no_show", "CASE WHEN state = 'noshow' THEN 1 ELSE 0 END"),
    ("started", "CASE WHEN state IN ('in-progress', 'finished') THEN 1 ELSE 0 END"),
    ("auto_logged", "CASE WHEN state = 'finished' THEN auto_logged ELSE 0 END"),
    ("charted", "CASE WHEN state = 'finished' AND chart_closed_at IS NOT NULL THEN 1 ELSE 0 END"),
    ("notes_drafted", "CASE WHEN state = 'finished' THEN note_drafted ELSE 0 END"),
    ("notes_signed", "CASE WHEN state = 'finished' AND note_signed_at IS NOT NULL THEN 1 ELSE 0 END"),
    ("edit_distance_sum", "CASE WHEN state = 'finished' THEN edit_distance ELSE 0 END"),
    ("edit_distance_count", "CASE WHEN state = 'finished' AND edit_distance IS NOT NULL THEN 1 ELSE 0 END"),
    ("readback_sent", "readback_sent"),
    ("readback_kept", "readback_kept"),
    ("claim_ready", "CASE WHEN state = 'finished' THEN claim_ready ELSE 0 END"),
    (
        "consent_telehealth_captured",
        "CASE WHEN state IN ('in-progress', 'finished') AND consent_telehealth = 'captured' THEN 1 ELSE 0 END",
    ),
    (
        "consent_ai_captured",
        "CASE WHEN state IN ('in-progress', 'finished') AND consent_ai = 'captured' THEN 1 ELSE 0 END",
    ),
    ("consent_denials", "consent_denials"),
    ("deliveries", "deliveries"),
    ("delivered", "delivered"),
    ("dead", "dead"),
    ("ever_dead_visits", "CASE WHEN ever_dead > 0 THEN 1 ELSE 0 END"),
    ("manual_touch_visits", "CASE WHEN manual_touches > 0 THEN 1 ELSE 0 END"),
    ("throttled", "throttled"),
    ("retries", "retries"),
    ("chart_closure_n", "CASE WHEN chart_closure_ms IS NOT NULL THEN 1 ELSE 0 END"),
    ("documentation_n", "CASE WHEN documentation_ms IS NOT NULL THEN 1 ELSE 0 END"),
    ("slowest_delivery_n", "CASE WHEN slowest_delivery_ms IS NOT NULL THEN 1 ELSE 0 END"),
];

/// `SUM(expression) AS name` of every total, over visit facts.
fn fact_sums() -> String {
    TOTAL_SUMS
        .iter()
        .map(|(name, e)| format!("CAST(COALESCE(SUM({e}), 0) AS BIGINT) AS {name}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `SUM(name) AS name` of every total, over `analytics_daily`.
fn rollup_sums() -> String {
    TOTAL_SUMS
        .iter()
        .map(|(name, _)| format!("CAST(COALESCE(SUM({name}), 0) AS BIGINT) AS {name}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The figures of the per-clinician table, as `analytics_daily_clinicians` holds them.
const CLINICIAN_SUMS: [&str; 6] =
    ["visits", "finished", "auto_logged", "claim_ready", "readback_sent", "readback_kept"];

/// A duration the KPIs take percentiles of, per visit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FactDuration {
    /// Call end → the last artifact in the EHR (finished, fully charted visits).
    ChartClosure,
    /// Call end → note signed (finished visits).
    Documentation,
    /// The visit's slowest delivery, queued → in the EHR.
    SlowestDelivery,
}

impl FactDuration {
    /// Its column in `visit_facts` (NULL where the visit has none), indexed in order.
    fn column(self) -> &'static str {
        match self {
            FactDuration::ChartClosure => "chart_closure_ms",
            FactDuration::Documentation => "documentation_ms",
            FactDuration::SlowestDelivery => "slowest_delivery_ms",
        }
    }
}

/// What the two stored durations of a fact are: call end → chart closed, and call end → note
/// signed, of finished visits having both ends.
fn stored_durations(f: &VisitFact) -> (Option<i64>, Option<i64>) {
    if f.state != "finished" {
        return (None, None);
    }
    let since_call = |at: Option<i64>| at.zip(f.call_ended_at).map(|(at, ended)| at - ended);
    (since_call(f.chart_closed_at), since_call(f.note_signed_at))
}

/// Which of a filter's visits a drill-down lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FactPredicate {
    All,
    Finished,
    Started,
    AutoLogged,
    NotAutoLogged,
    Charted,
    NoteSigned,
    NoteNotSigned,
    ClaimReady,
    ClaimNotReady,
    /// Finished visits failing this claim check.
    ClaimMissing(String),
    ConsentTelehealthCaptured,
    ConsentTelehealthNotCaptured,
    ConsentAiCaptured,
    ConsentAiNotCaptured,
    ConsentDenied,
    EverDead,
    DeadNow,
    ManualTouch,
    Throttled,
    Retried,
    Cancelled,
    NoShow,
}

impl FactPredicate {
    /// The SQL condition, and the one value it binds (a claim check).
    fn condition(&self) -> (&'static str, Option<String>) {
        let started = "state IN ('in-progress', 'finished')";
        let c = match self {
            FactPredicate::All => "1 = 1",
            FactPredicate::Finished => "state = 'finished'",
            FactPredicate::Started => started,
            FactPredicate::AutoLogged => "state = 'finished' AND auto_logged = 1",
            FactPredicate::NotAutoLogged => "state = 'finished' AND auto_logged = 0",
            FactPredicate::Charted => "state = 'finished' AND chart_closed_at IS NOT NULL",
            FactPredicate::NoteSigned => "state = 'finished' AND note_signed_at IS NOT NULL",
            FactPredicate::NoteNotSigned => "state = 'finished' AND note_signed_at IS NULL",
            FactPredicate::ClaimReady => "state = 'finished' AND claim_ready = 1",
            FactPredicate::ClaimNotReady => "state = 'finished' AND claim_ready = 0",
            FactPredicate::ClaimMissing(check) => {
                return ("state = 'finished' AND (',' || claim_missing || ',') LIKE $N", Some(format!("%,{check},%")));
            }
            FactPredicate::ConsentTelehealthCaptured => {
                "state IN ('in-progress', 'finished') AND consent_telehealth = 'captured'"
            }
            FactPredicate::ConsentTelehealthNotCaptured => {
                "state IN ('in-progress', 'finished') AND consent_telehealth <> 'captured'"
            }
            FactPredicate::ConsentAiCaptured => "state IN ('in-progress', 'finished') AND consent_ai = 'captured'",
            FactPredicate::ConsentAiNotCaptured => "state IN ('in-progress', 'finished') AND consent_ai <> 'captured'",
            FactPredicate::ConsentDenied => "consent_denials > 0",
            FactPredicate::EverDead => "ever_dead > 0",
            FactPredicate::DeadNow => "dead > 0",
            FactPredicate::ManualTouch => "manual_touches > 0",
            FactPredicate::Throttled => "throttled > 0",
            FactPredicate::Retried => "retries > 0",
            FactPredicate::Cancelled => "state = 'cancelled'",
            FactPredicate::NoShow => "state = 'noshow'",
        };
        (c, None)
    }
}

/// The WHERE clause of a filter (binds `$1..$n`), and its values in order.
fn filter_clause(filter: &FactFilter) -> (String, Vec<String>) {
    let mut clause = "tenant_id = $1 AND started_at >= $2 AND started_at < $3".to_owned();
    let mut values = Vec::new();
    for (column, value) in
        [("connection_id", &filter.connection), ("clinician", &filter.clinician), ("visit_type", &filter.visit_type)]
    {
        if let Some(v) = value {
            values.push(v.clone());
            clause.push_str(&format!(" AND {column} = ${}", values.len() + 3));
        }
    }
    (clause, values)
}

/// `$1, $2, …` from `first`.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
}

/// Binds a filter's values onto a query built with [`filter_clause`].
macro_rules! bind_filter {
    ($query:expr, $filter:expr, $values:expr) => {{
        let mut q = $query.bind(&$filter.tenant_id).bind($filter.from_ms).bind($filter.to_ms);
        for v in $values {
            q = q.bind(v);
        }
        q
    }};
}

impl Store {
    /// Visits of the tenant with anything recorded since `changed_at` (visit, delivery, note
    /// draft) or a consent decision after its chain position `audit_seq` or not chained yet,
    /// in id order. (Chain positions are given in append order under the chain's lock, so none
    /// is skipped; records wait unchained for a second or so.)
    pub async fn changed_visits(&self, tenant_id: &str, changed_at: i64, audit_seq: i64) -> Result<Vec<String>> {
        let since = changed_at - REFRESH_OVERLAP_MS;
        let seq = audit_seq;
        let rows = on_pool!(self, pool => sqlx::query_as::<_, (String,)>(
            "SELECT id FROM visits WHERE tenant_id = $1 AND updated_at >= $2 \
             UNION SELECT visit_id FROM deliveries WHERE tenant_id = $1 AND updated_at >= $2 \
             UNION SELECT visit_id FROM note_drafts WHERE tenant_id = $1 AND created_at >= $2 \
             UNION SELECT visit_id FROM note_drafts WHERE tenant_id = $1 AND signed_at >= $2 \
             UNION SELECT visit_id FROM audit_log WHERE tenant_id = $1 AND (tenant_seq > $3 OR tenant_seq IS NULL) \
                 AND action = 'consent.decision' AND visit_id IS NOT NULL \
             ORDER BY 1")
            .bind(tenant_id).bind(since).bind(seq).fetch_all(pool).await)?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// The tenant's refresh watermark: (changed_at, audit_seq), or (0, 0) before the first.
    pub async fn analytics_watermark(&self, tenant_id: &str) -> Result<(i64, i64)> {
        let row = on_pool!(self, pool => sqlx::query_as::<_, (i64, i64)>(
            "SELECT changed_at, audit_seq FROM analytics_watermarks WHERE tenant_id = $1")
            .bind(tenant_id).fetch_optional(pool).await)?;
        Ok(row.unwrap_or((0, 0)))
    }

    /// The tenant's highest chain position now (what a refresh starting now has seen).
    pub async fn audit_high_water(&self, tenant_id: &str) -> Result<i64> {
        let row = on_pool!(self, pool => sqlx::query_as::<_, (Option<i64>,)>(
            "SELECT MAX(tenant_seq) FROM audit_log WHERE tenant_id = $1")
            .bind(tenant_id).fetch_one(pool).await)?;
        Ok(row.0.unwrap_or(0))
    }

    pub async fn set_analytics_watermark(&self, tenant_id: &str, changed_at: i64, audit_seq: i64) -> Result<()> {
        on_pool!(self, pool => sqlx::query(
            "INSERT INTO analytics_watermarks (tenant_id, changed_at, audit_seq) VALUES ($1, $2, $3) \
             ON CONFLICT (tenant_id) DO UPDATE SET changed_at = excluded.changed_at, audit_seq = excluded.audit_seq")
            .bind(tenant_id).bind(changed_at).bind(audit_seq).execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    /// What is recorded about these visits of the tenant, for their facts.
    pub async fn fact_sources(&self, tenant_id: &str, visit_ids: &[String]) -> Result<FactSources> {
        if visit_ids.is_empty() {
            return Ok(FactSources::default());
        }
        let ids = placeholders(2, visit_ids.len());
        let visits_sql = format!(
            "SELECT id, connection_id, practitioner, visit_type, state, created_at, call_ended_at, ehr_encounter_id, billing \
             FROM visits WHERE tenant_id = $1 AND id IN ({ids})"
        );
        let deliveries_sql = format!(
            "SELECT visit_id, connection_id, resource_type, status, attempts, created_at, completed_at, readback, \
             was_dead, manual_touches, throttled, plan FROM deliveries WHERE tenant_id = $1 AND visit_id IN ({ids})"
        );
        let drafts_sql = format!(
            "SELECT visit_id, status, created_at, signed_at, edit_distance FROM note_drafts \
             WHERE tenant_id = $1 AND visit_id IN ({ids})"
        );
        let noted_sql = format!(
            "SELECT DISTINCT visit_id FROM artifacts WHERE tenant_id = $1 AND kind = 'note' AND visit_id IN ({ids})"
        );
        let decisions_sql = format!(
            "SELECT visit_id, detail, outcome, consent FROM audit_log \
             WHERE tenant_id = $1 AND action = 'consent.decision' AND visit_id IN ({ids}) ORDER BY seq"
        );
        macro_rules! fetch {
            ($ty:ty, $sql:expr) => {
                on_pool!(self, pool => {
                    let mut q = sqlx::query_as::<_, $ty>(sqlx::AssertSqlSafe($sql.as_str())).bind(tenant_id);
                    for id in visit_ids {
                        q = q.bind(id);
                    }
                    q.fetch_all(pool).await
                })?
            };
        }
        Ok(FactSources {
            visits: fetch!(FactVisit, visits_sql),
            deliveries: fetch!(FactDelivery, deliveries_sql),
            drafts: fetch!(FactDraft, drafts_sql),
            noted: fetch!((String,), noted_sql).into_iter().map(|(id,)| id).collect(),
            decisions: fetch!(FactDecision, decisions_sql),
        })
    }

    /// Writes these facts, replacing what each visit had.
    pub async fn upsert_visit_facts(&self, facts: &[VisitFact]) -> Result<()> {
        // 32 binds a row; 500 rows stay under both engines' bind limits.
        for chunk in facts.chunks(500) {
            let n = FACT_COLUMNS.len();
            let rows: Vec<String> = (0..chunk.len()).map(|r| format!("({})", placeholders(r * n + 1, n))).collect();
            let updates: Vec<String> = FACT_COLUMNS[2..].iter().map(|c| format!("{c} = excluded.{c}")).collect();
            let sql = format!(
                "INSERT INTO visit_facts ({}) VALUES {} ON CONFLICT (tenant_id, visit_id) DO UPDATE SET {}",
                FACT_COLUMNS.join(", "),
                rows.join(", "),
                updates.join(", ")
            );
            on_pool!(self, pool => {
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
                for f in chunk {
                    let (chart_closure_ms, documentation_ms) = stored_durations(f);
                    q = q.bind(&f.tenant_id).bind(&f.visit_id).bind(&f.connection_id).bind(&f.clinician)
                        .bind(&f.visit_type).bind(&f.state).bind(f.started_at).bind(f.call_ended_at)
                        .bind(f.encounter_in_ehr).bind(f.deliveries).bind(f.delivered).bind(f.dead)
                        .bind(f.ever_dead).bind(f.manual_touches).bind(f.throttled).bind(f.retries)
                        .bind(f.chart_closed_at).bind(f.slowest_delivery_ms).bind(f.auto_logged)
                        .bind(f.note_drafted).bind(f.note_signed_at).bind(f.edit_distance)
                        .bind(f.readback_sent).bind(f.readback_kept).bind(f.claim_ready).bind(&f.claim_missing)
                        .bind(&f.consent_telehealth).bind(&f.consent_ai).bind(f.consent_denials).bind(f.refreshed_at)
                        .bind(chart_closure_ms).bind(documentation_ms);
                }
                q.execute(pool).await.map(|_| ())
            })?;
            self.replace_fact_readbacks(chunk).await?;
            let mut dims: std::collections::BTreeSet<(&str, &str, &str)> = std::collections::BTreeSet::new();
            for f in chunk {
                dims.insert((&f.tenant_id, "connection", &f.connection_id));
                dims.insert((&f.tenant_id, "clinician", &f.clinician));
                dims.insert((&f.tenant_id, "visit-type", &f.visit_type));
            }
            let rows: Vec<String> =
                (0..dims.len()).map(|r| format!("(${}, ${}, ${})", r * 3 + 1, r * 3 + 2, r * 3 + 3)).collect();
            let sql = format!(
                "INSERT INTO analytics_dimensions (tenant_id, dimension, value) VALUES {} ON CONFLICT DO NOTHING",
                rows.join(", ")
            );
            on_pool!(self, pool => {
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
                for (t, d, v) in &dims {
                    q = q.bind(*t).bind(*d).bind(*v);
                }
                q.execute(pool).await.map(|_| ())
            })?;
        }
        Ok(())
    }

    /// The KPI sums over the filter's visits.
    pub async fn fact_totals(&self, filter: &FactFilter) -> Result<FactTotals> {
        let (clause, values) = filter_clause(filter);
        let sums = fact_sums();
        let sql = format!("SELECT {sums} FROM visit_facts WHERE {clause}");
        Ok(
            on_pool!(self, pool => bind_filter!(sqlx::query_as::<_, FactTotals>(sqlx::AssertSqlSafe(sql.as_str())), filter, &values)
            .fetch_one(pool).await)?,
        )
    }

    /// The KPI sums per value of `by`, in the value's order.
    pub async fn fact_totals_by(&self, filter: &FactFilter, by: FactDimension) -> Result<Vec<(String, FactTotals)>> {
        let (clause, values) = filter_clause(filter);
        let key = by.expression();
        let sums = fact_sums();
        let sql = format!("SELECT {key} AS key, {sums} FROM visit_facts WHERE {clause} GROUP BY {key} ORDER BY 1");
        let rows = on_pool!(self, pool => bind_filter!(sqlx::query_as::<_, KeyedTotals>(sqlx::AssertSqlSafe(sql.as_str())), filter, &values)
            .persistent(false).fetch_all(pool).await)?;
        Ok(rows.into_iter().map(|r| (r.key, r.totals)).collect())
    }

    /// The nearest-rank `p`-quantile (0 < p ≤ 1) of a duration over the filter's `n` visits
    /// that have it (the count from [`FactTotals`]), in milliseconds; `None` when `n` is 0.
    /// Above the median it is read from the top, so the sort keeps the smaller side.
    pub async fn fact_quantile(&self, filter: &FactFilter, of: FactDuration, p: f64, n: i64) -> Result<Option<i64>> {
        if n <= 0 {
            return Ok(None);
        }
        let (clause, values) = filter_clause(filter);
        let column = of.column();
        let rank = ((p.clamp(0.0, 1.0) * n as f64).ceil() as i64).clamp(1, n);
        let (order, offset) = if rank * 2 > n { ("DESC", n - rank) } else { ("ASC", rank - 1) };
        // The tenant is fixed, so an index on (tenant, duration, …) yields the rows in this order.
        let sql = format!(
            "SELECT {column} FROM visit_facts WHERE {clause} AND {column} IS NOT NULL \
             ORDER BY {column} {order} LIMIT 1 OFFSET {offset}"
        );
        // Planned for these very bounds each time (not a cached generic plan): over a narrow
        // range the range index and a sort win, over a wide one the walk of the duration index.
        let row = on_pool!(self, pool => bind_filter!(sqlx::query_as::<_, (i64,)>(sqlx::AssertSqlSafe(sql.as_str())), filter, &values)
            .persistent(false).fetch_optional(pool).await)?;
        Ok(row.map(|(v,)| v))
    }

    /// The KPI sums per (connection, clinician, visit type) of the filter, with the claim checks
    /// each group's finished visits fail — one pass over the visits for every breakdown.
    pub async fn fact_breakdown(&self, filter: &FactFilter, checks: &[&str; 8]) -> Result<Vec<Breakdown>> {
        let (clause, values) = filter_clause(filter);
        let first = values.len() + 4;
        let missing: Vec<String> = (0..checks.len())
            .map(|i| {
                format!(
                    "CAST(COALESCE(SUM(CASE WHEN state = 'finished' AND (',' || claim_missing || ',') LIKE ${} THEN 1 ELSE 0 END), 0) AS BIGINT) AS m{i}",
                    first + i
                )
            })
            .collect();
        let sums = fact_sums();
        let sql = format!(
            "SELECT connection_id AS connection, clinician, visit_type, {sums}, {} FROM visit_facts WHERE {clause} \
             GROUP BY connection_id, clinician, visit_type ORDER BY 1, 2, 3",
            missing.join(", ")
        );
        Ok(on_pool!(self, pool => {
            let mut q = bind_filter!(sqlx::query_as::<_, Breakdown>(sqlx::AssertSqlSafe(sql.as_str())), filter, &values);
            for c in checks {
                q = q.bind(format!("%,{c},%"));
            }
            q.fetch_all(pool).await
        })?)
    }

    /// The filter's visits matching `predicate`, newest first, `limit` from `offset`, and how
    /// many match in all.
    pub async fn fact_visits(
        &self,
        filter: &FactFilter,
        predicate: &FactPredicate,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<VisitFact>, i64)> {
        let (clause, mut values) = filter_clause(filter);
        let (condition, bound) = predicate.condition();
        let condition = match bound {
            Some(v) => {
                values.push(v);
                condition.replace("$N", &format!("${}", values.len() + 3))
            }
            None => condition.to_owned(),
        };
        let count_sql = format!("SELECT COUNT(*) FROM visit_facts WHERE {clause} AND {condition}");
        let (n,) = on_pool!(self, pool => bind_filter!(sqlx::query_as::<_, (i64,)>(sqlx::AssertSqlSafe(count_sql.as_str())), filter, &values)
            .fetch_one(pool).await)?;
        let sql = format!(
            "SELECT * FROM visit_facts WHERE {clause} AND {condition} ORDER BY started_at DESC, visit_id LIMIT {} OFFSET {}",
            limit.max(0),
            offset.max(0)
        );
        let rows = on_pool!(self, pool => bind_filter!(sqlx::query_as::<_, VisitFact>(sqlx::AssertSqlSafe(sql.as_str())), filter, &values)
            .fetch_all(pool).await)?;
        Ok((rows, n))
    }

    /// The values a dimension takes among the tenant's visit facts (for filter menus and checks).
    pub async fn fact_dimension_values(&self, tenant_id: &str, dimension: FactDimension) -> Result<Vec<String>> {
        let rows = on_pool!(self, pool => sqlx::query_as::<_, (String,)>(
            "SELECT value FROM analytics_dimensions WHERE tenant_id = $1 AND dimension = $2 ORDER BY 1")
            .bind(tenant_id).bind(dimension.stored_name()).fetch_all(pool).await)?;
        Ok(rows.into_iter().map(|(v,)| v).collect())
    }

    /// Whether `value` occurs for `dimension` in the tenant's visit facts.
    pub async fn fact_dimension_has(&self, tenant_id: &str, dimension: FactDimension, value: &str) -> Result<bool> {
        let row = on_pool!(self, pool => sqlx::query_as::<_, (i64,)>(
            "SELECT COUNT(*) FROM analytics_dimensions WHERE tenant_id = $1 AND dimension = $2 AND value = $3")
            .bind(tenant_id).bind(dimension.stored_name()).bind(value).fetch_one(pool).await)?;
        Ok(row.0 > 0)
    }

    /// Fields sent and kept per (connection, resource type) over the filter's visits, from the
    /// per-visit read-back rows (the part-days and clinician views; whole days read the rollup).
    pub async fn fact_readback_sums(&self, filter: &FactFilter) -> Result<Vec<(String, String, i64, i64)>> {
        let (clause, values) = filter_clause(filter);
        let sql = format!(
            "SELECT connection_id, resource_type, CAST(SUM(sent) AS BIGINT), CAST(SUM(kept) AS BIGINT) \
             FROM visit_fact_readbacks WHERE {clause} GROUP BY connection_id, resource_type ORDER BY 1, 2"
        );
        Ok(
            on_pool!(self, pool => bind_filter!(sqlx::query_as::<_, (String, String, i64, i64)>(sqlx::AssertSqlSafe(sql.as_str())), filter, &values)
            .fetch_all(pool).await)?,
        )
    }

    /// Deliveries waiting, in flight and dead now (the queue figures; the done ones are not
    /// counted, so this reads the status index's few entries).
    pub async fn queue_backlog(&self, tenant_id: &str) -> Result<(i64, i64, i64)> {
        let rows = on_pool!(self, pool => sqlx::query_as::<_, (String, i64)>(
            "SELECT status, COUNT(*) FROM deliveries WHERE tenant_id = $1 AND status IN ('pending', 'in_flight', 'dead') GROUP BY status")
            .bind(tenant_id).fetch_all(pool).await)?;
        let count = |s: &str| rows.iter().find(|(status, _)| status == s).map_or(0, |(_, n)| *n);
        Ok((count("pending"), count("in_flight"), count("dead")))
    }

    /// Dead letters now, by resource type and reason class: `no path` (not deliverable here),
    /// `gave up` (retries or age exhausted) or `refused` (the EHR's permanent refusal).
    pub async fn dead_letters_by_reason(&self, tenant_id: &str) -> Result<Vec<(String, String, i64)>> {
        Ok(on_pool!(self, pool => sqlx::query_as::<_, (String, String, i64)>(
            "SELECT resource_type, CASE WHEN plan LIKE 'not deliverable%' THEN 'no path' \
                 WHEN last_error LIKE 'gave up%' THEN 'gave up' ELSE 'refused' END AS reason, COUNT(*) \
             FROM deliveries WHERE tenant_id = $1 AND status = 'dead' GROUP BY 1, 2 ORDER BY 1, 2")
            .bind(tenant_id).fetch_all(pool).await)?)
    }

    /// Break-glass grants made in `[from_ms, to_ms)` by review status.
    pub async fn break_glass_reviews(&self, tenant_id: &str, from_ms: i64, to_ms: i64) -> Result<Vec<(String, i64)>> {
        Ok(on_pool!(self, pool => sqlx::query_as::<_, (String, i64)>(
            "SELECT review, COUNT(*) FROM break_glass WHERE tenant_id = $1 AND granted_at >= $2 AND granted_at < $3 \
             GROUP BY review ORDER BY review")
            .bind(tenant_id).bind(from_ms).bind(to_ms).fetch_all(pool).await)?)
    }

    /// Records a clinician's survey answer (`None`: dismissed without a score).
    pub async fn record_nps(
        &self,
        tenant_id: &str,
        clinician: &str,
        visit_id: Option<&str>,
        score: Option<i64>,
        now_ms: i64,
    ) -> Result<String> {
        let id = uuid::Uuid::now_v7().to_string();
        on_pool!(self, pool => sqlx::query(
            "INSERT INTO nps_responses (tenant_id, id, clinician, visit_id, score, answered_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(tenant_id).bind(&id).bind(clinician).bind(visit_id).bind(score).bind(now_ms).execute(pool).await.map(|_| ()))?;
        Ok(id)
    }

    /// When the clinician last answered or dismissed the survey.
    pub async fn last_nps_answer(&self, tenant_id: &str, clinician: &str) -> Result<Option<i64>> {
        let row = on_pool!(self, pool => sqlx::query_as::<_, (Option<i64>,)>(
            "SELECT MAX(answered_at) FROM nps_responses WHERE tenant_id = $1 AND clinician = $2")
            .bind(tenant_id).bind(clinician).fetch_one(pool).await)?;
        Ok(row.0)
    }

    /// Scored survey answers in `[from_ms, to_ms)` (optionally one clinician's) by score 0–10.
    pub async fn nps_scores(
        &self,
        tenant_id: &str,
        from_ms: i64,
        to_ms: i64,
        clinician: Option<&str>,
    ) -> Result<[i64; 11]> {
        let rows = on_pool!(self, pool => sqlx::query_as::<_, (i64, i64)>(
            "SELECT score, COUNT(*) FROM nps_responses WHERE tenant_id = $1 AND answered_at >= $2 AND answered_at < $3 \
             AND score IS NOT NULL AND ($4 = '' OR clinician = $4) GROUP BY score")
            .bind(tenant_id).bind(from_ms).bind(to_ms).bind(clinician.unwrap_or("")).fetch_all(pool).await)?;
        let mut scores = [0; 11];
        for (score, n) in rows {
            if let Some(slot) = usize::try_from(score).ok().and_then(|s| scores.get_mut(s)) {
                *slot = n;
            }
        }
        Ok(scores)
    }
}

mod bench_seed;
mod rollups;
pub use rollups::{DAY_MS, rollup_days};
