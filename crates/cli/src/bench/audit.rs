//! `telechart bench audit`: chained appends, checkpoint, and verification of a large log, and
//! what one audit append costs next to one delivery.

use std::time::Instant;

use telechart_audit::{CheckpointSigner, Witness};
use telechart_store::{AuditEntry, Store};

use super::{SyncBenchArgs, cpu_seconds, delivery_cpu_ms, scratch_postgres};

#[derive(clap::Args, Clone)]
pub struct AuditBenchArgs {
    /// Records in the log that is checkpointed and verified.
    #[arg(long, default_value_t = 1_000_000)]
    records: usize,
    /// PostgreSQL URL for the PostgreSQL half (a scratch database is created there).
    #[arg(long, env = "TELECHART_BENCH_POSTGRES_URL")]
    postgres: Option<String>,
}

const TENANT: &str = "bench";

fn entry(i: usize) -> AuditEntry {
    AuditEntry {
        tenant_id: TENANT.into(),
        actor: format!("user:clinician-{}", i % 40),
        action: "artifact.delivered".into(),
        entity_type: "artifact".into(),
        entity_id: format!("artifact-{i}"),
        visit_id: Some(format!("visit-{}", i / 12)),
        phi: true,
        detail: "Observation/vitals-bp written, version 1".into(),
        patient: Some(format!("Patient/p-{}", i % 5_000)),
        purpose_of_use: Some("TREAT".into()),
        source_ip: Some("10.1.2.3".into()),
        session: Some(format!("s-{}", i % 97)),
        labels: vec!["N".into()],
        ..AuditEntry::default()
    }
}

pub async fn run(args: AuditBenchArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut engines = vec![("sqlite", format!("sqlite:{}", dir.path().join("audit-bench.db").display()))];
    if let Some(pg) = &args.postgres {
        engines.push(("postgres", scratch_postgres(pg).await?));
    } else {
        println!("  (no --postgres URL: PostgreSQL half skipped)");
    }
    let signer = CheckpointSigner::generate(&dir.path().join("checkpoint.key"))?;
    println!("bench audit: {} records appended, chained, checkpointed and verified", args.records);
    println!(
        "{:<10} {:>11} {:>9} {:>12} {:>10} {:>11} {:>12} {:>11} {:>13} {:>7}",
        "engine",
        "append /s",
        "chain s",
        "checkpoint s",
        "verify s",
        "verify /s",
        "append CPU µs",
        "chain CPU µs",
        "delivery CPU µs",
        "ratio"
    );
    for (engine, url) in engines {
        let store = Store::open(&url, 4, telechart_store::KeyConfig::new(telechart_store::Kek::generate()?)).await?;
        // Appends as PHI writes make them: one INSERT each inside an open transaction.
        let started = Instant::now();
        let cpu0 = cpu_seconds();
        let mut batch = Vec::with_capacity(10_000);
        let base_ms = telechart_store::Clock::system().now_ms();
        for i in 0..args.records {
            batch.push((entry(i), base_ms + i as i64));
            if batch.len() == batch.capacity() {
                store.audit_batch(&batch).await?;
                batch.clear();
            }
        }
        store.audit_batch(&batch).await?;
        let append_per_s = args.records as f64 / started.elapsed().as_secs_f64();
        let append_cpu_us = cpu0.zip(cpu_seconds()).map(|(a, b)| (b - a) * 1e6 / args.records as f64);

        // The chainer places and hashes them after commit, in batches.
        let started = Instant::now();
        let cpu0 = cpu_seconds();
        let chained = store.chain_pending_audit().await?;
        let chain_s = started.elapsed().as_secs_f64();
        let chain_cpu_us = cpu0.zip(cpu_seconds()).map(|(a, b)| (b - a) * 1e6 / args.records as f64);
        anyhow::ensure!(chained as usize == args.records, "{chained} of {} chained", args.records);

        let witness = Witness::new(dir.path().join(format!("{engine}-witness.jsonl")));
        let started = Instant::now();
        store.checkpoint_audit(&signer, &witness, base_ms + args.records as i64, 1, 0).await?;
        let checkpoint_s = started.elapsed().as_secs_f64();

        let checkpoints = witness.read()?;
        let started = Instant::now();
        let report = store.verify_audit(&checkpoints, Some(&signer.verifier()), |_| {}).await?;
        let verify_s = started.elapsed().as_secs_f64();
        anyhow::ensure!(report.intact(), "the bench log does not verify: {:?}", report.findings);
        anyhow::ensure!(
            report.witnessed as usize == args.records,
            "{} of {} witnessed",
            report.witnessed,
            args.records
        );
        store.close().await;

        let delivery = delivery_cpu_ms(&SyncBenchArgs::small(args.postgres.clone()), engine).await?;
        let delivery_us = delivery.map(|ms| ms * 1000.0);
        let fmt = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| format!("{v:.1}"));
        let overhead = append_cpu_us.zip(chain_cpu_us).map(|(a, c)| a + c);
        let ratio = overhead.zip(delivery_us).map(|(o, d)| format!("{:.3}", o / d));
        println!(
            "{engine:<10} {append_per_s:>11.0} {chain_s:>9.2} {checkpoint_s:>12.2} {verify_s:>10.2} {:>11.0} {:>12} {:>11} {:>13} {:>7}",
            args.records as f64 / verify_s,
            fmt(append_cpu_us),
            fmt(chain_cpu_us),
            fmt(delivery_us),
            ratio.unwrap_or_else(|| "n/a".into())
        );
    }
    println!("  delivery CPU: Telechart's own per delivery (pipeline minus a raw client sending the same bodies)");
    println!("  append CPU: one INSERT inside an open transaction; chain CPU: its share of the chainer's batches");
    println!("  ratio: (append + chain) CPU ÷ delivery CPU");
    println!("  targets: verify ≥ 1 000 000 records in 10 s; ratio < 0.1");
    Ok(())
}
