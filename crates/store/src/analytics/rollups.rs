//! The daily rollups the dashboard reads for whole days: rebuilt from `visit_facts` for the days
//! a refresh touched, and summed over a filter's days.

use std::collections::BTreeMap;

use super::{
    CLINICIAN_SUMS, FactDimension, FactFilter, FactReadback, FactTotals, KeyedTotals, TOTAL_SUMS, VisitFact, fact_sums,
    placeholders, rollup_sums,
};
use crate::{Result, Store, on_pool};

/// Binds a filter's values onto a query built with [`rollup_clause`] over `$days`.
macro_rules! bind_rollup {
    ($query:expr, $filter:expr, $days:expr, $values:expr) => {{
        let mut q = $query.bind(&$filter.tenant_id).bind($days.0).bind($days.1);
        for v in $values {
            q = q.bind(v);
        }
        q
    }};
}

/// A Unix day (UTC) in milliseconds: the rollups' unit.
pub const DAY_MS: i64 = 86_400_000;
/// The per-clinician sums are also kept per period of this many days.
const PERIOD_DAYS: i64 = 30;

/// Which of a filter's days the rollups can answer: the whole UTC days inside its range, with
/// no clinician asked for (a clinician's visits are few: they are read from the facts).
pub fn rollup_days(filter: &FactFilter) -> Option<(i64, i64)> {
    if filter.clinician.is_some() {
        return None;
    }
    let first = filter.from_ms.div_euclid(DAY_MS) + i64::from(filter.from_ms.rem_euclid(DAY_MS) != 0);
    let end = filter.to_ms.div_euclid(DAY_MS);
    (first < end).then_some((first, end))
}

/// The filter's conditions over a rollup: `$1` tenant, `$2`..`$3` days, then connection and
/// visit type.
fn rollup_clause(filter: &FactFilter) -> (String, Vec<String>) {
    let mut clause = "tenant_id = $1 AND day >= $2 AND day < $3".to_owned();
    let mut values = Vec::new();
    for (column, value) in [("connection_id", &filter.connection), ("visit_type", &filter.visit_type)] {
        if let Some(v) = value {
            values.push(v.clone());
            clause.push_str(&format!(" AND {column} = ${}", values.len() + 3));
        }
    }
    (clause, values)
}

impl Store {
    /// Replaces the read-back rows of these visits (at most 500) with the facts' own.
    pub(super) async fn replace_fact_readbacks(&self, facts: &[VisitFact]) -> Result<()> {
        let mut tenants: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for f in facts {
            tenants.entry(&f.tenant_id).or_default().push(&f.visit_id);
        }
        let rows: Vec<(&VisitFact, &FactReadback)> =
            facts.iter().flat_map(|f| f.readbacks.iter().map(move |r| (f, r))).collect();
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            for (tenant, ids) in &tenants {
                let sql = format!(
                    "DELETE FROM visit_fact_readbacks WHERE tenant_id = $1 AND visit_id IN ({})",
                    placeholders(2, ids.len())
                );
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(*tenant);
                for id in ids {
                    q = q.bind(*id);
                }
                q.execute(&mut *tx).await?;
            }
            // 9 binds a row: 1000 rows stay under both engines' limits.
            for chunk in rows.chunks(1000) {
                let values: Vec<String> = (0..chunk.len()).map(|r| format!("({})", placeholders(r * 9 + 1, 9))).collect();
                let sql = format!(
                    "INSERT INTO visit_fact_readbacks (tenant_id, visit_id, connection_id, resource_type, started_at, clinician, \
                     visit_type, sent, kept) VALUES {}",
                    values.join(", ")
                );
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                for (f, r) in chunk {
                    q = q.bind(&f.tenant_id).bind(&f.visit_id).bind(&r.connection_id).bind(&r.resource_type)
                        .bind(f.started_at).bind(&f.clinician).bind(&f.visit_type).bind(r.sent).bind(r.kept);
                }
                q.execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok::<(), crate::StoreError>(())
        })?;
        Ok(())
    }

    /// Derives the tenant's daily sums of days `[from_day, to_day)` again from `visit_facts`
    /// (after the refresh wrote the facts of visits started on those days), with the finished
    /// visits failing each of `claim_checks`.
    pub async fn rebuild_analytics_days(
        &self,
        tenant_id: &str,
        from_day: i64,
        to_day: i64,
        claim_checks: &[&str],
    ) -> Result<()> {
        let names: Vec<&str> = TOTAL_SUMS.iter().map(|(n, _)| *n).collect();
        let excluded =
            |cols: &[&str]| cols.iter().map(|c| format!("{c} = excluded.{c}")).collect::<Vec<_>>().join(", ");
        let facts = "FROM visit_facts WHERE tenant_id = $1 AND started_at >= $2 AND started_at < $3";
        let daily = format!(
            "INSERT INTO analytics_daily (tenant_id, day, connection_id, visit_type, {}) \
             SELECT tenant_id, started_at / {DAY_MS}, connection_id, visit_type, {} {facts} \
             GROUP BY tenant_id, started_at / {DAY_MS}, connection_id, visit_type \
             ON CONFLICT (tenant_id, day, connection_id, visit_type) DO UPDATE SET {}",
            names.join(", "),
            fact_sums(),
            excluded(&names)
        );
        let clinician_sums: Vec<String> = CLINICIAN_SUMS
            .iter()
            .map(|name| {
                let e = TOTAL_SUMS.iter().find(|(n, _)| n == name).map(|(_, e)| *e).unwrap_or("0");
                format!("CAST(COALESCE(SUM({e}), 0) AS BIGINT)")
            })
            .collect();
        let clinicians = format!(
            "INSERT INTO analytics_daily_clinicians (tenant_id, day, clinician, connection_id, visit_type, {}) \
             SELECT tenant_id, started_at / {DAY_MS}, clinician, connection_id, visit_type, {} {facts} \
             GROUP BY tenant_id, started_at / {DAY_MS}, clinician, connection_id, visit_type \
             ON CONFLICT (tenant_id, day, clinician, connection_id, visit_type) DO UPDATE SET {}",
            CLINICIAN_SUMS.join(", "),
            clinician_sums.join(", "),
            excluded(&CLINICIAN_SUMS)
        );
        let checks: Vec<String> = (0..claim_checks.len()).map(|i| format!("SELECT ${} AS name", i + 4)).collect();
        let claims = format!(
            "INSERT INTO analytics_daily_claims (tenant_id, day, connection_id, visit_type, check_name, failing) \
             SELECT f.tenant_id, f.started_at / {DAY_MS}, f.connection_id, f.visit_type, c.name, COUNT(*) \
             FROM visit_facts f JOIN ({}) c ON (',' || f.claim_missing || ',') LIKE ('%,' || c.name || ',%') \
             WHERE f.tenant_id = $1 AND f.started_at >= $2 AND f.started_at < $3 AND f.state = 'finished' \
             GROUP BY f.tenant_id, f.started_at / {DAY_MS}, f.connection_id, f.visit_type, c.name \
             ON CONFLICT (tenant_id, day, connection_id, visit_type, check_name) DO UPDATE SET failing = excluded.failing",
            checks.join(" UNION ALL ")
        );
        let readbacks = format!(
            "INSERT INTO analytics_daily_readbacks (tenant_id, day, connection_id, visit_type, resource_type, sent, kept) \
             SELECT tenant_id, started_at / {DAY_MS}, connection_id, visit_type, resource_type, SUM(sent), SUM(kept) \
             FROM visit_fact_readbacks WHERE tenant_id = $1 AND started_at >= $2 AND started_at < $3 \
             GROUP BY tenant_id, started_at / {DAY_MS}, connection_id, visit_type, resource_type \
             ON CONFLICT (tenant_id, day, connection_id, visit_type, resource_type) DO UPDATE SET sent = excluded.sent, kept = excluded.kept"
        );
        let (from_ms, to_ms) = (from_day * DAY_MS, to_day * DAY_MS);
        let periods = (from_day.div_euclid(PERIOD_DAYS), (to_day - 1).div_euclid(PERIOD_DAYS) + 1);
        let sum_columns: Vec<String> = CLINICIAN_SUMS.iter().map(|c| format!("SUM({c})")).collect();
        let period_sums = format!(
            "INSERT INTO analytics_period_clinicians (tenant_id, period, clinician, connection_id, visit_type, {}) \
             SELECT tenant_id, day / {PERIOD_DAYS}, clinician, connection_id, visit_type, {} FROM analytics_daily_clinicians \
             WHERE tenant_id = $1 AND day >= $2 AND day < $3 \
             GROUP BY tenant_id, day / {PERIOD_DAYS}, clinician, connection_id, visit_type \
             ON CONFLICT (tenant_id, period, clinician, connection_id, visit_type) DO UPDATE SET {}",
            CLINICIAN_SUMS.join(", "),
            sum_columns.join(", "),
            excluded(&CLINICIAN_SUMS)
        );
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            for table in ["analytics_daily", "analytics_daily_clinicians", "analytics_daily_claims", "analytics_daily_readbacks"] {
                let sql = format!("DELETE FROM {table} WHERE tenant_id = $1 AND day >= $2 AND day < $3");
                sqlx::query(sqlx::AssertSqlSafe(sql)).bind(tenant_id).bind(from_day).bind(to_day).execute(&mut *tx).await?;
            }
            for sql in [daily.as_str(), clinicians.as_str(), readbacks.as_str()] {
                sqlx::query(sqlx::AssertSqlSafe(sql)).bind(tenant_id).bind(from_ms).bind(to_ms).execute(&mut *tx).await?;
            }
            if !claim_checks.is_empty() {
                let mut q = sqlx::query(sqlx::AssertSqlSafe(claims.as_str())).bind(tenant_id).bind(from_ms).bind(to_ms);
                for c in claim_checks {
                    q = q.bind(*c);
                }
                q.execute(&mut *tx).await?;
            }
            // The periods the days fall in, summed again from their (now rebuilt) days.
            sqlx::query("DELETE FROM analytics_period_clinicians WHERE tenant_id = $1 AND period >= $2 AND period < $3")
                .bind(tenant_id).bind(periods.0).bind(periods.1).execute(&mut *tx).await?;
            sqlx::query(sqlx::AssertSqlSafe(period_sums.as_str()))
                .bind(tenant_id).bind(periods.0 * PERIOD_DAYS).bind(periods.1 * PERIOD_DAYS).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok::<(), crate::StoreError>(())
        })?;
        Ok(())
    }

    /// The KPI sums of the filter's whole days `days` (see [`rollup_days`]) per value of `by`,
    /// from the daily rollups; by clinician only the per-clinician table's figures are filled.
    pub async fn rollup_totals_by(
        &self,
        filter: &FactFilter,
        days: (i64, i64),
        by: FactDimension,
    ) -> Result<Vec<(String, FactTotals)>> {
        let (clause, values) = rollup_clause(filter);
        let (key, table, sums) = match by {
            FactDimension::Day => ("CAST(day AS TEXT)", "analytics_daily", rollup_sums()),
            FactDimension::Connection => ("connection_id", "analytics_daily", rollup_sums()),
            FactDimension::VisitType => ("visit_type", "analytics_daily", rollup_sums()),
            FactDimension::Clinician => return self.rollup_clinicians(filter, days).await,
        };
        let sql = format!("SELECT {key} AS key, {sums} FROM {table} WHERE {clause} GROUP BY {key} ORDER BY 1");
        let rows = on_pool!(self, pool => bind_rollup!(sqlx::query_as::<_, KeyedTotals>(sqlx::AssertSqlSafe(sql.as_str())), filter, days, &values)
            .fetch_all(pool).await)?;
        Ok(rows.into_iter().map(|r| (r.key, r.totals)).collect())
    }

    /// The per-clinician figures of whole days `days`: the 30-day periods inside them, and the
    /// days at either end.
    async fn rollup_clinicians(&self, filter: &FactFilter, days: (i64, i64)) -> Result<Vec<(String, FactTotals)>> {
        let sums = TOTAL_SUMS
            .iter()
            .map(|(name, _)| match CLINICIAN_SUMS.contains(name) {
                true => format!("CAST(COALESCE(SUM({name}), 0) AS BIGINT) AS {name}"),
                false => format!("CAST(0 AS BIGINT) AS {name}"),
            })
            .collect::<Vec<_>>()
            .join(", ");
        let first_period = days.0.div_euclid(PERIOD_DAYS) + i64::from(days.0.rem_euclid(PERIOD_DAYS) != 0);
        let end_period = days.1.div_euclid(PERIOD_DAYS);
        let mut parts = Vec::new();
        if first_period < end_period {
            parts.push(("analytics_period_clinicians", "period", (first_period, end_period)));
            for edge in [(days.0, first_period * PERIOD_DAYS), (end_period * PERIOD_DAYS, days.1)] {
                if edge.0 < edge.1 {
                    parts.push(("analytics_daily_clinicians", "day", edge));
                }
            }
        } else {
            parts.push(("analytics_daily_clinicians", "day", days));
        }
        let mut by: BTreeMap<String, FactTotals> = BTreeMap::new();
        for (table, unit, range) in parts {
            let (clause, values) = rollup_clause(filter);
            let clause = clause.replacen("day >= $2 AND day < $3", &format!("{unit} >= $2 AND {unit} < $3"), 1);
            let sql = format!("SELECT clinician AS key, {sums} FROM {table} WHERE {clause} GROUP BY clinician");
            let rows = on_pool!(self, pool => bind_rollup!(sqlx::query_as::<_, KeyedTotals>(sqlx::AssertSqlSafe(sql.as_str())), filter, range, &values)
                .fetch_all(pool).await)?;
            for r in rows {
                by.entry(r.key).or_default().add(&r.totals);
            }
        }
        Ok(by.into_iter().collect())
    }

    /// Finished visits of the filter's whole days failing each claim check, by check name.
    pub async fn rollup_claim_missing(&self, filter: &FactFilter, days: (i64, i64)) -> Result<Vec<(String, i64)>> {
        let (clause, values) = rollup_clause(filter);
        let sql = format!(
            "SELECT check_name, CAST(SUM(failing) AS BIGINT) FROM analytics_daily_claims WHERE {clause} GROUP BY check_name ORDER BY 1"
        );
        Ok(
            on_pool!(self, pool => bind_rollup!(sqlx::query_as::<_, (String, i64)>(sqlx::AssertSqlSafe(sql.as_str())), filter, days, &values)
            .fetch_all(pool).await)?,
        )
    }

    /// The same from the daily rollup, over whole days.
    pub async fn rollup_readback_sums(
        &self,
        filter: &FactFilter,
        days: (i64, i64),
    ) -> Result<Vec<(String, String, i64, i64)>> {
        let (clause, values) = rollup_clause(filter);
        let sql = format!(
            "SELECT connection_id, resource_type, CAST(SUM(sent) AS BIGINT), CAST(SUM(kept) AS BIGINT) \
             FROM analytics_daily_readbacks WHERE {clause} GROUP BY connection_id, resource_type ORDER BY 1, 2"
        );
        Ok(
            on_pool!(self, pool => bind_rollup!(sqlx::query_as::<_, (String, String, i64, i64)>(sqlx::AssertSqlSafe(sql.as_str())), filter, days, &values)
            .fetch_all(pool).await)?,
        )
    }
}
