//! The audit log as evidence, attacked the way a database administrator could: rows edited,
//! deleted, reordered, inserted and truncated straight in SQL — naively, and with every hash
//! after the change recomputed — and the witness file edited, cut or re-signed with another key.
//! `telechart audit verify` must exit 1 and name the first bad record each time, on SQLite and
//! on PostgreSQL, and say "intact" when nothing was touched.

use std::path::{Path, PathBuf};
use std::process::Command;

use telechart_audit::{GENESIS, chain_hash};
use telechart_store::{AuditEntry, Kek, KeyConfig, Store};

/// Records of tenant t1 before the first checkpoint, then before the second, then unwitnessed.
const FIRST_CHECKPOINT: i64 = 20;
const SECOND_CHECKPOINT: i64 = 30;
const T1_RECORDS: i64 = 35;
const T2_RECORDS: i64 = 8;

enum Db {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Db {
    async fn exec(&self, sql: &str) {
        match self {
            Db::Sqlite(pool) => sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())).execute(pool).await.map(drop),
            Db::Postgres(pool) => sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())).execute(pool).await.map(drop),
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    async fn set_hash(&self, seq: i64, hash: &[u8]) {
        match self {
            Db::Sqlite(pool) => sqlx::query("UPDATE audit_log SET hash = $1 WHERE seq = $2")
                .bind(hash)
                .bind(seq)
                .execute(pool)
                .await
                .map(drop),
            Db::Postgres(pool) => sqlx::query("UPDATE audit_log SET hash = $1 WHERE seq = $2")
                .bind(hash)
                .bind(seq)
                .execute(pool)
                .await
                .map(drop),
        }
        .unwrap();
    }

    async fn close(self) {
        match self {
            Db::Sqlite(pool) => pool.close().await,
            Db::Postgres(pool) => pool.close().await,
        }
    }
}

struct Env {
    dir: tempfile::TempDir,
    url: String,
    kek: String,
    store: Store,
}

impl Env {
    fn telechart(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_telechart"));
        command.current_dir(self.dir.path());
        for (key, _) in std::env::vars() {
            if key.starts_with("TELECHART_") {
                command.env_remove(key);
            }
        }
        command.env("TELECHART_DATABASE_URL", &self.url).env("TELECHART_KEYS__KEK", &self.kek);
        command
    }

    /// `telechart audit …`: (exit code, stdout).
    fn audit(&self, args: &[&str]) -> (i32, String) {
        let out = self.telechart().arg("audit").args(args).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.code().is_some_and(|c| c <= 1),
            "audit {args:?} crashed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code().unwrap_or(2), stdout)
    }

    fn witness(&self) -> PathBuf {
        self.dir.path().join("telechart-data/audit-witness.jsonl")
    }

    async fn db(&self) -> Db {
        if let Some(path) = self.url.strip_prefix("sqlite:") {
            Db::Sqlite(sqlx::SqlitePool::connect(&format!("sqlite://{path}")).await.unwrap())
        } else {
            Db::Postgres(sqlx::PgPool::connect(&self.url).await.unwrap())
        }
    }

    /// What a careful attacker does after editing rows: renumber the tenant's chain 1..n in its
    /// current order, recompute every hash and move the head, so the chain is self-consistent.
    async fn rechain(&self, db: &Db, tenant: &str) {
        let rows = self.store.audit_page(tenant, -1, 10_000).await.unwrap();
        for (i, row) in rows.iter().enumerate() {
            db.exec(&format!("UPDATE audit_log SET tenant_seq = {} WHERE seq = {}", -(i as i64) - 1, row.seq)).await;
        }
        db.exec("UPDATE audit_log SET tenant_seq = -tenant_seq WHERE tenant_seq < 0").await;
        let rows = self.store.audit_page(tenant, 0, 10_000).await.unwrap();
        let (mut prev, mut scratch) = (GENESIS, Vec::new());
        for row in &rows {
            let r = row.record();
            prev = chain_hash(&prev, r.tenant_seq, r.at, &r.entry, &mut scratch);
            db.set_hash(row.seq, &prev).await;
        }
        db.exec(&format!("UPDATE audit_heads SET seq = {} WHERE tenant_id = '{tenant}'", rows.len())).await;
    }
}

fn entry(tenant: &str, i: i64) -> AuditEntry {
    AuditEntry {
        tenant_id: tenant.into(),
        actor: "user:dr-okafor".into(),
        action: "visit.read".into(),
        entity_type: "visit".into(),
        entity_id: format!("visit-{i}"),
        visit_id: Some(format!("visit-{i}")),
        phi: true,
        detail: format!("read {i}"),
        patient: Some(format!("Patient/p-{}", i % 4)),
        purpose_of_use: Some("TREAT".into()),
        source_ip: Some("10.0.0.7".into()),
        session: Some("s-1".into()),
        labels: vec!["N".into()],
        ..AuditEntry::default()
    }
}

/// A fresh database on `engine`, t1 and t2 logs seeded through the store with two signed
/// checkpoints of t1 (after record 20 and 30) and five unwitnessed records after them.
async fn seeded(engine: &str) -> Option<Env> {
    let dir = tempfile::tempdir().unwrap();
    let url = match engine {
        "sqlite" => format!("sqlite:{}", dir.path().join("audit.db").display()),
        _ => {
            let Ok(admin) = std::env::var("TELECHART_TEST_POSTGRES_URL") else {
                assert!(
                    std::env::var("TELECHART_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                    "TELECHART_REQUIRE_POSTGRES=1 but TELECHART_TEST_POSTGRES_URL is unset"
                );
                eprintln!("note: TELECHART_TEST_POSTGRES_URL unset; PostgreSQL half skipped");
                return None;
            };
            let name = format!("tc_audit_{}", uuid::Uuid::new_v4().simple());
            telechart_store::create_postgres_database(&admin, &name).await.unwrap()
        }
    };
    let kek = Kek::generate().unwrap();
    let store = Store::open(&url, 2, KeyConfig::new(Kek::from_base64(&kek.to_base64()).unwrap())).await.unwrap();
    let env = Env { dir, url, kek: kek.to_base64(), store };
    let mut t1 = 0;
    for stop in [FIRST_CHECKPOINT, SECOND_CHECKPOINT, T1_RECORDS] {
        while t1 < stop {
            t1 += 1;
            env.store.audit(&entry("t1", t1), 1_000 + t1).await.unwrap();
            if t1 <= T2_RECORDS && stop == FIRST_CHECKPOINT {
                env.store.audit(&entry("t2", t1), 1_000 + t1).await.unwrap();
            }
        }
        if stop != T1_RECORDS {
            let (code, out) = env.audit(&["checkpoint"]);
            assert_eq!(code, 0, "{out}");
            let from = if stop == FIRST_CHECKPOINT { 1 } else { FIRST_CHECKPOINT + 1 };
            assert!(out.contains(&format!("tenant t1: checkpoint of records {from}..={stop}")), "{out}");
        }
    }
    // The unwitnessed tail chained (as the checkpointer's next pass would), not yet signed.
    env.store.chain_pending_audit().await.unwrap();
    Some(env)
}

/// The verdict on tenant t1, and that t2 (untouched) is not blamed.
fn t1_finding(out: &str) -> Option<(i64, String)> {
    assert!(!out.contains("tenant t2 record"), "t2 was not touched: {out}");
    let line = out.lines().find(|l| l.starts_with("FAIL  tenant t1 record "))?;
    let rest = &line["FAIL  tenant t1 record ".len()..];
    let (record, problem) = rest.split_once(": ")?;
    let problem = problem.split(" — ").next()?.to_owned();
    Some((record.parse().ok()?, problem))
}

fn edit_witness(path: &Path, edit: impl FnOnce(&mut Vec<serde_json::Value>)) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    edit(&mut lines);
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(path, text).unwrap();
}

/// Each attack, and the first record `verify` must name with its problem.
const ATTACKS: &[(&str, i64, &str)] = &[
    ("edit a row", 12, "modified"),
    ("edit a row, recompute the chain", 12, "rewritten"),
    ("backdate a row", 7, "modified"),
    ("delete a row", 12, "sequence gap"),
    ("delete a row, renumber and recompute", 12, "rewritten"),
    ("swap two rows' places", 12, "modified"),
    ("swap two rows, recompute the chain", 12, "rewritten"),
    ("insert a forged row", 13, "modified"),
    ("insert a forged row, recompute the chain", 13, "rewritten"),
    ("truncate into the witnessed records", 25, "truncated"),
    ("truncate and move the head back", 25, "truncated"),
    ("move a row to another tenant", 3, "sequence gap"),
    ("edit the witness's checkpoint", SECOND_CHECKPOINT, "bad checkpoint signature"),
    ("cut the witness's first checkpoint", SECOND_CHECKPOINT, "witness gap"),
];

async fn tamper(attack: &str, env: &Env, db: &Db) {
    let t1 = |condition: &str| format!("WHERE tenant_id = 't1' AND {condition}");
    let swap_12_13 = async {
        db.exec(&format!("UPDATE audit_log SET tenant_seq = -1 {}", t1("tenant_seq = 12"))).await;
        db.exec(&format!("UPDATE audit_log SET tenant_seq = 12 {}", t1("tenant_seq = 13"))).await;
        db.exec(&format!("UPDATE audit_log SET tenant_seq = 13 {}", t1("tenant_seq = -1"))).await;
    };
    let insert_at_13 = async {
        db.exec(&format!("UPDATE audit_log SET tenant_seq = -(tenant_seq + 1) {}", t1("tenant_seq >= 13"))).await;
        db.exec(&format!("UPDATE audit_log SET tenant_seq = -tenant_seq {}", t1("tenant_seq < 0"))).await;
        db.exec(
            "INSERT INTO audit_log (tenant_id, at, actor, action, entity_type, entity_id, phi, detail, tenant_seq, outcome, labels) \
             VALUES ('t1', 1013, 'user:dr-okafor', 'visit.read', 'visit', 'visit-x', 1, 'forged', 13, 'success', '')",
        )
        .await;
    };
    match attack {
        "edit a row" => {
            db.exec(&format!("UPDATE audit_log SET detail = 'nothing to see' {}", t1("tenant_seq = 12"))).await
        }
        "edit a row, recompute the chain" => {
            db.exec(&format!("UPDATE audit_log SET actor = 'user:someone-else' {}", t1("tenant_seq = 12"))).await;
            env.rechain(db, "t1").await;
        }
        "backdate a row" => db.exec(&format!("UPDATE audit_log SET at = 5 {}", t1("tenant_seq = 7"))).await,
        "delete a row" => db.exec(&format!("DELETE FROM audit_log {}", t1("tenant_seq = 12"))).await,
        "delete a row, renumber and recompute" => {
            db.exec(&format!("DELETE FROM audit_log {}", t1("tenant_seq = 12"))).await;
            env.rechain(db, "t1").await;
        }
        "swap two rows' places" => swap_12_13.await,
        "swap two rows, recompute the chain" => {
            swap_12_13.await;
            env.rechain(db, "t1").await;
        }
        "insert a forged row" => insert_at_13.await,
        "insert a forged row, recompute the chain" => {
            insert_at_13.await;
            env.rechain(db, "t1").await;
        }
        "truncate into the witnessed records" => {
            db.exec(&format!("DELETE FROM audit_log {}", t1("tenant_seq >= 25"))).await
        }
        "truncate and move the head back" => {
            db.exec(&format!("DELETE FROM audit_log {}", t1("tenant_seq >= 25"))).await;
            db.exec("UPDATE audit_heads SET seq = 24 WHERE tenant_id = 't1'").await;
        }
        "move a row to another tenant" => {
            db.exec(&format!("UPDATE audit_log SET tenant_id = 't3' {}", t1("tenant_seq = 3"))).await
        }
        "edit the witness's checkpoint" => edit_witness(&env.witness(), |lines| {
            let second = lines.iter_mut().find(|l| l["tenant"] == "t1" && l["size"] == SECOND_CHECKPOINT);
            second.unwrap()["at"] = serde_json::json!(1);
        }),
        "cut the witness's first checkpoint" => edit_witness(&env.witness(), |lines| {
            lines.retain(|l| !(l["tenant"] == "t1" && l["size"] == FIRST_CHECKPOINT));
        }),
        other => panic!("no attack {other:?}"),
    }
}

async fn every_attack_is_named(engine: &str) {
    // Untouched: intact, every witnessed record counted.
    let Some(env) = seeded(engine).await else { return };
    let (code, out) = env.audit(&["verify", "--quiet"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("intact"), "{out}");
    assert!(
        out.contains(&format!(
            "{} records of 2 tenant(s) read; {} witnessed",
            T1_RECORDS + T2_RECORDS,
            SECOND_CHECKPOINT + T2_RECORDS
        )),
        "{out}"
    );
    env.store.close().await;

    for &(name, record, problem) in ATTACKS {
        let env = seeded(engine).await.unwrap();
        let db = env.db().await;
        tamper(name, &env, &db).await;
        db.close().await;
        let (code, out) = env.audit(&["verify", "--quiet"]);
        assert_eq!(code, 1, "{engine}, {name}: verify must fail\n{out}");
        assert_eq!(
            t1_finding(&out),
            Some((record, problem.to_owned())),
            "{engine}, {name}: the first bad record and why\n{out}"
        );
        env.store.close().await;
    }
}

/// The attacker who can rewrite the witness too (a stolen database and a stolen witness, not the
/// key): re-signs the rewritten chain with a key of their own. Pinning the public key catches it.
async fn a_resigned_witness_fails_against_the_pinned_key(engine: &str) {
    let Some(env) = seeded(engine).await else { return };
    let (_, pinned) = env.audit(&["public-key"]);
    let pinned = pinned.trim().to_owned();
    let db = env.db().await;
    db.exec("UPDATE audit_log SET detail = 'rewritten history' WHERE tenant_id = 't1' AND tenant_seq = 4").await;
    env.rechain(&db, "t1").await;
    db.exec("DELETE FROM audit_checkpoints").await;
    db.close().await;
    std::fs::remove_file(env.witness()).unwrap();
    std::fs::remove_file(env.dir.path().join("telechart-data/audit-checkpoint.key")).unwrap();
    let (code, out) = env.audit(&["checkpoint"]);
    assert_eq!(code, 0, "the attacker's own checkpoint: {out}");
    // With the key file the attacker replaced, the chain looks whole…
    let (code, out) = env.audit(&["verify", "--quiet"]);
    assert_eq!(code, 0, "{out}");
    // …against the public key pinned beforehand, it does not.
    let (code, out) = env.audit(&["verify", "--quiet", "--public-key", &pinned]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAIL  tenant t1 record") && out.contains("bad checkpoint signature"), "{out}");
    assert!(out.contains("FAIL  tenant t2 record") && out.contains("bad checkpoint signature"), "{out}");
    env.store.close().await;
}

/// The export is FHIR R4 AuditEvent the shared validator accepts, one per record, filtered by
/// patient; and exporting is itself audited.
async fn the_export_is_valid_fhir_and_audited(engine: &str) {
    let Some(env) = seeded(engine).await else { return };
    let file = env.dir.path().join("audit.ndjson");
    let out = env.telechart().args(["audit", "export", "--tenant", "t1", "--out"]).arg(&file).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&file).unwrap();
    let events: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(events.len() as i64, T1_RECORDS);
    assert!(events.iter().all(|e| e["resourceType"] == "AuditEvent"));
    crate::validate_ndjson(&file);
    let out = env
        .telechart()
        .args(["audit", "export", "--tenant", "t1", "--patient", "Patient/p-1", "--out"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success());
    let lines = std::fs::read_to_string(&file).unwrap().lines().count() as i64;
    assert_eq!(lines, (1..=T1_RECORDS).filter(|i| i % 4 == 1).count() as i64, "p-1's records alone");
    let (code, out) = env.audit(&["verify", "--quiet"]);
    assert_eq!(code, 0, "exports append to the chain like any record: {out}");
    env.store.close().await;
}

#[tokio::test]
async fn verify_names_the_first_bad_record_of_every_attack_on_sqlite() {
    every_attack_is_named("sqlite").await;
}

#[tokio::test]
async fn verify_names_the_first_bad_record_of_every_attack_on_postgres() {
    every_attack_is_named("postgres").await;
}

#[tokio::test]
async fn a_resigned_witness_is_caught_by_the_pinned_key() {
    a_resigned_witness_fails_against_the_pinned_key("sqlite").await;
    a_resigned_witness_fails_against_the_pinned_key("postgres").await;
}

#[tokio::test]
async fn audit_events_export_as_valid_fhir() {
    the_export_is_valid_fhir_and_audited("sqlite").await;
    the_export_is_valid_fhir_and_audited("postgres").await;
}

/// The break-glass review queue from the command line: listed, reviewed once, audited.
#[tokio::test]
async fn break_glass_grants_are_listed_and_reviewed_from_the_cli() {
    let env = seeded("sqlite").await.unwrap();
    let grant = telechart_store::BreakGlassGrant {
        id: "g-1".into(),
        actor: "token:dr".into(),
        visit_id: "visit-1".into(),
        reason_code: "BTG".into(),
        reason_text: telechart_store::Phi::new("patient unresponsive on the call"),
        granted_at: 5_000,
        expires_at: 5_000 + 3_600_000,
        uses: 0,
        review: "pending".into(),
        reviewer: None,
        review_note: None,
        reviewed_at: None,
    };
    let granted = AuditEntry { tenant_id: "t1".into(), action: "break-glass.grant".into(), ..entry("t1", 99) };
    env.store.grant_break_glass("t1", &grant, &granted).await.unwrap();
    let (code, out) = env.audit(&["break-glass", "--pending", "--tenant", "t1"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("g-1") && out.contains("BTG") && out.contains("pending") && out.contains("1 grant(s)"),
        "{out}"
    );
    let out = env
        .telechart()
        .args(["audit", "review", "g-1", "--verdict", "flagged", "--note", "no emergency found", "--tenant", "t1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let again = env
        .telechart()
        .args(["audit", "review", "g-1", "--verdict", "approved", "--note", "x", "--tenant", "t1"])
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already reviewed"));
    let (_, out) = env.audit(&["break-glass", "--pending", "--tenant", "t1"]);
    assert!(out.contains("0 grant(s)"), "{out}");
    let reviewed = env.store.break_glass_grants("t1", false).await.unwrap();
    assert_eq!(reviewed[0].review, "flagged");
    assert_eq!(reviewed[0].review_note.as_ref().unwrap().expose(), "no emergency found");
    env.store.close().await;
}

/// Retention of the audit log: whole witnessed segments older than `audit_log_years` go behind a
/// signed tombstone and the log still verifies; a legal hold stops the segment before the held
/// visit's first record, and its release lets the purge go on.
async fn audit_retention_leaves_a_verifiable_log(engine: &str) {
    let Some(env) = seeded(engine).await else { return };
    let hold = telechart_store::LegalHold {
        id: "h-9".into(),
        visit_id: Some("visit-12".into()),
        patient: None,
        reason: "matter 2026-114".into(),
        placed_by: "cli:counsel".into(),
        placed_at: telechart_store::Clock::system().now_ms(),
        released_by: None,
        released_at: None,
    };
    let placed = AuditEntry { action: "legal-hold.place".into(), visit_id: None, ..entry("t1", 0) };
    env.store.place_legal_hold("t1", &hold, &placed).await.unwrap();
    let retention = |env: &Env| {
        let out = env.telechart().env("TELECHART_TENANT", "t1").arg("retention").output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // Records 1..=35 are from 1970; 1..=30 are witnessed; visit-12's first record is 12.
    let out = retention(&env);
    assert!(out.contains("deleted audit records 1..=11") && out.contains("1 visit(s) under legal hold"), "{out}");
    let (code, out) = env.audit(&["verify"]);
    assert_eq!(code, 0, "the log verifies after the purge: {out}");
    assert!(out.contains("intact"), "{out}");

    let out = env.telechart().args(["hold", "release", "h-9", "--tenant", "t1"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let listed = env.telechart().args(["hold", "list", "--all", "--tenant", "t1"]).output().unwrap();
    assert!(String::from_utf8_lossy(&listed.stdout).contains("released by cli:"));
    // Witness the old tail, then the purge reaches the first record of this century.
    let (code, out) = env.audit(&["checkpoint"]);
    assert_eq!(code, 0, "{out}");
    let out = retention(&env);
    assert!(out.contains("deleted audit records 12..=35"), "{out}");
    let (code, out) = env.audit(&["verify"]);
    assert_eq!(code, 0, "{out}");
    // An attacker deleting records at the new start is still caught.
    let db = env.db().await;
    db.exec("DELETE FROM audit_log WHERE tenant_id = 't1' AND tenant_seq = 36").await;
    let (code, out) = env.audit(&["verify"]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(t1_finding(&out).map(|f| f.0), Some(36), "{out}");
    db.close().await;
    env.store.close().await;
}

#[tokio::test]
async fn audit_retention_on_sqlite() {
    audit_retention_leaves_a_verifiable_log("sqlite").await;
}

#[tokio::test]
async fn audit_retention_on_postgres() {
    audit_retention_leaves_a_verifiable_log("postgres").await;
}
