//! Synthetic recorded visits for `telechart bench analytics`, by SQL alone.

use crate::{Result, Store, on_pool};

impl Store {
    /// For benchmarks only: `n` synthetic visits of `connection_id` (which must exist) started
    /// evenly over `[from_ms, to_ms)`, recorded as the API and the worker would leave them — a
    /// visit row, three artifacts each with its delivery (done with a read-back, or dead), a
    /// signed note draft and a consent decision in the audit log — in batches, by SQL alone.
    /// The sealed columns hold a placeholder: analytics never opens them.
    pub async fn seed_bench_visits(
        &self,
        tenant_id: &str,
        connection_id: &str,
        n: i64,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<()> {
        const BATCH: i64 = 50_000;
        let span = (to_ms - from_ms).max(1);
        let mut first = 0;
        while first < n {
            let count = BATCH.min(n - first);
            // i: the visit's number; its time, state and people follow from it.
            let seq = "WITH RECURSIVE seq(i) AS (SELECT $1 UNION ALL SELECT i + 1 FROM seq WHERE i + 1 < $2)";
            let visit_at = format!("($3 + (i * {span}) / {n})");
            let state = "CASE WHEN i % 20 = 0 THEN 'cancelled' WHEN i % 20 = 1 THEN 'noshow' \
                         WHEN i % 20 = 2 THEN 'in-progress' ELSE 'finished' END";
            let statements = [
                format!(
                    "{seq} INSERT INTO visits (tenant_id, id, connection_id, appointment_id, patient, practitioner, state, version, \
                     artifact_count, ehr_encounter_id, created_at, updated_at, call_ended_at, billing, visit_type, lane) \
                     SELECT $4, 'bv-' || i, $5, 'ba-' || i, 'sealed:bench', 'Practitioner/dr-' || (i % 200), {state}, 1, 3, \
                     'enc-' || i, {visit_at}, {visit_at} + 3600000, {visit_at} + 1200000, \
                     CASE WHEN i % 10 = 4 THEN NULL ELSE '{{\"procedureCodes\":[\"99213\"],\"placeOfService\":\"10\",\"modifier\":\"95\",\"modality\":\"video\",\"renderingProvider\":\"Practitioner/dr-1\"}}' END, \
                     CASE i % 3 WHEN 0 THEN 'followup' WHEN 1 THEN 'walkin' ELSE 'behavioral-health' END, 0 FROM seq"
                ),
                format!(
                    "{seq}, kinds(k, kind, rtype) AS (SELECT 0, 'encounter-status', 'Encounter' UNION ALL SELECT 1, 'diagnosis', 'Condition' \
                     UNION ALL SELECT 2, 'note', 'DocumentReference') \
                     INSERT INTO artifacts (tenant_id, id, visit_id, seq, kind, payload, created_at) \
                     SELECT $4, 'bx-' || i || '-' || k, 'bv-' || i, k, kind, 'sealed:bench', {visit_at} + 1200000 FROM seq, kinds"
                ),
                format!(
                    "{seq}, kinds(k, rtype) AS (SELECT 0, 'Encounter' UNION ALL SELECT 1, 'Condition' UNION ALL SELECT 2, 'DocumentReference') \
                     INSERT INTO deliveries (tenant_id, id, artifact_id, visit_id, connection_id, seq, resource_type, identifier, status, \
                     attempts, next_attempt_at, created_at, updated_at, completed_at, plan, readback, was_dead, throttled, lane) \
                     SELECT $4, 'bd-' || i || '-' || k, 'bx-' || i || '-' || k, 'bv-' || i, $5, k, rtype, 'urn:bench|' || i || '-' || k, \
                     CASE WHEN i % 50 = 7 AND k = 1 THEN 'dead' ELSE 'done' END, CASE WHEN i % 97 = 3 THEN 2 ELSE 1 END, \
                     {visit_at} + 1200000, {visit_at} + 1200000, {visit_at} + 1200000 + (i % 600) * 1000, \
                     CASE WHEN i % 50 = 7 AND k = 1 THEN NULL ELSE {visit_at} + 1200000 + (i % 600) * 1000 END, 'written', \
                     '{{\"fieldsSent\":12,\"fieldsKept\":' || CASE WHEN i % 40 = 5 THEN 11 ELSE 12 END || ',\"differences\":[]}}', \
                     CASE WHEN i % 50 = 7 AND k = 1 THEN 1 ELSE 0 END, CASE WHEN i % 97 = 3 THEN 1 ELSE 0 END, 0 FROM seq, kinds"
                ),
                format!(
                    "{seq} INSERT INTO note_drafts (tenant_id, id, visit_id, version, engine, template, status, body, sentences, flagged, \
                     draft_ms, created_by, created_at, signed_text, signed_by, signed_at, note_artifact, edit_distance) \
                     SELECT $4, 'bn-' || i, 'bv-' || i, 1, 'builtin', 'general-follow-up', 'signed', 'sealed:bench', 20, 0, 3, 'bench', \
                     {visit_at} + 1200000, 'sealed:bench', 'bench', {visit_at} + 1200000 + (i % 900) * 1000, 'bx-' || i || '-2', i % 13 \
                     FROM seq WHERE i % 20 > 2"
                ),
                format!(
                    "{seq} INSERT INTO audit_log (tenant_id, at, actor, action, entity_type, entity_id, visit_id, phi, detail, outcome, consent) \
                     SELECT $4, {visit_at} + 60000, 'bench', 'consent.decision', 'visit', 'bv-' || i, 'bv-' || i, 1, \
                     'start telehealth visit', CASE WHEN i % 100 = 9 THEN 'denied' ELSE 'success' END, \
                     CASE WHEN i % 100 = 9 THEN 'deny: Consent/c-' || i ELSE 'permit: Consent/c-' || i || ': permits' END \
                     FROM seq WHERE i % 20 <> 0"
                ),
            ];
            on_pool!(self, pool => {
                let mut tx = pool.begin().await?;
                for sql in &statements {
                    sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                        .bind(first).bind(first + count).bind(from_ms).bind(tenant_id).bind(connection_id)
                        .execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok::<(), crate::StoreError>(())
            })?;
            first += count;
        }
        Ok(())
    }
}
