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
        "{:<10} {:>11} {:>9} {:>12} {:>10} {:>11} {:>12} {:>11} {:>13} {:>7} {:>11} {:>9}",
        "engine",
        "append /s",
        "chain s",
        "checkpoint s",
        "verify s",
        "verify /s",
        "append CPU µs",
        "chain CPU µs",
        "delivery CPU µs",
        "ratio",
        "beyond raw µs",
        "ratio"
    );
    for (engine, url) in engines {
        let store = Store::open(&url, 4, telechart_store::KeyConfig::new(telechart_store::Kek::generate()?)).await?;
        // A tenth of the records as reads and imports append them: an INSERT in its own trip
        // to the database, inside an open transaction.
        let base_ms = telechart_store::Clock::system().now_ms();
        let own_trip = args.records / 10;
        let entries: Vec<(AuditEntry, i64)> = (0..args.records).map(|i| (entry(i), base_ms + i as i64)).collect();
        let started = Instant::now();
        let cpu0 = cpu_seconds();
        for batch in entries[..own_trip].chunks(10_000) {
            store.audit_batch(batch).await?;
        }
        let own_trip_s = started.elapsed().as_secs_f64();
        let own_trip_cpu_us = cpu0.zip(cpu_seconds()).map(|(a, b)| (b - a) * 1e6 / own_trip as f64);
        // The rest as a delivery's outcome appends them: riding in its guarded UPDATE. What the
        // record adds is that statement's CPU with the record less its CPU without.
        let alongside = &entries[own_trip..];
        let cpu0 = cpu_seconds();
        for batch in alongside.chunks(10_000) {
            store.audit_alongside_updates(batch, false).await?;
        }
        let bare_cpu = cpu0.zip(cpu_seconds()).map(|(a, b)| b - a);
        let started = Instant::now();
        let cpu0 = cpu_seconds();
        for batch in alongside.chunks(10_000) {
            store.audit_alongside_updates(batch, true).await?;
        }
        let alongside_s = started.elapsed().as_secs_f64();
        let append_cpu_us = cpu0
            .zip(cpu_seconds())
            .zip(bare_cpu)
            .map(|((a, b), bare)| ((b - a) - bare).max(0.0) * 1e6 / alongside.len() as f64);
        let append_per_s = args.records as f64 / (own_trip_s + alongside_s);

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
        let delivery_us = delivery.telechart_ms.map(|ms| ms * 1000.0);
        let beyond_raw_us = delivery.beyond_raw_client_ms.map(|ms| ms * 1000.0);
        let fmt = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| format!("{v:.1}"));
        let overhead = append_cpu_us.zip(chain_cpu_us).map(|(a, c)| a + c);
        let ratio = |d: Option<f64>| overhead.zip(d).map_or("n/a".to_owned(), |(o, d)| format!("{:.3}", o / d));
        println!(
            "{engine:<10} {append_per_s:>11.0} {chain_s:>9.2} {checkpoint_s:>12.2} {verify_s:>10.2} {:>11.0} {:>12} {:>11} {:>13} {:>7} {:>11} {:>9}",
            args.records as f64 / verify_s,
            fmt(append_cpu_us),
            fmt(chain_cpu_us),
            fmt(delivery_us),
            ratio(delivery_us),
            fmt(beyond_raw_us),
            ratio(beyond_raw_us),
        );
        let own_trip_overhead = own_trip_cpu_us.zip(chain_cpu_us).map(|(a, c)| a + c);
        println!(
            "{:<10} an append in its own trip: {} µs CPU; with the chain's share ÷ delivery CPU = {}",
            "",
            fmt(own_trip_cpu_us),
            own_trip_overhead.zip(delivery_us).map_or("n/a".to_owned(), |(o, d)| format!("{:.3}", o / d))
        );
    }
    println!(
        "  delivery CPU: Telechart's per delivery (the process minus the sandbox EHR's threads), 2 000 deliveries"
    );
    println!("  beyond raw: the stricter pipeline minus a raw client sending the same bodies (no HTTP client)");
    println!("  append CPU: what a record adds to the guarded UPDATE of a delivery's outcome it rides in");
    println!("  own trip: a record appended by a statement of its own (reads, imports; on SQLite a worker hand-off)");
    println!("  chain CPU: a record's share of the chainer's batches");
    println!("  ratio: (append + chain) CPU ÷ delivery CPU, and ÷ the beyond-raw figure");
    println!("  targets: verify ≥ 1 000 000 records in 10 s; ratio < 0.1");
    Ok(())
}
