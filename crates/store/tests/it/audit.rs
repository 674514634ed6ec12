//! The audit chain through the store: single appends, batches and tenants interleaved make one
//! chain per tenant that verifies, and checkpoints witness it.

use telechart_audit::{CheckpointSigner, Witness};

use crate::{TENANT, audit, on_each_engine};

#[tokio::test]
async fn batches_and_single_appends_chain_per_tenant_and_verify() {
    on_each_engine(|store| async move {
        let dir = tempfile::tempdir().unwrap();
        let signer = CheckpointSigner::generate(&dir.path().join("k")).unwrap();
        let witness = Witness::new(dir.path().join("w.jsonl"));
        let other = |action: &str| telechart_store::AuditEntry { tenant_id: "t-other".into(), ..audit(action, "v9") };
        store.audit(&audit("visit.read", "v1"), 10).await.unwrap();
        // A batch that switches tenant twice.
        let batch: Vec<_> = (0..2_500)
            .map(|i| {
                (if (1_000..1_200).contains(&i) { other("visit.read") } else { audit("visit.read", "v2") }, 20 + i)
            })
            .collect();
        store.audit_batch(&batch).await.unwrap();
        store.audit(&audit("visit.read", "v3"), 3_000).await.unwrap();
        let passes = store.checkpoint_audit(&signer, &witness, 4_000, 1, 0).await.unwrap();
        assert_eq!(passes.len(), 2, "{passes:?}");
        store.audit(&other("visit.read"), 4_001).await.unwrap();
        let report = store.verify_audit(&witness.read().unwrap(), Some(&signer.verifier()), |_| {}).await.unwrap();
        assert!(report.intact(), "{:?}", report.findings);
        assert_eq!((report.records, report.pending), (2_502, 1), "the last append awaits chaining");
        assert_eq!(report.witnessed, 2_502);
        assert_eq!(store.chain_pending_audit().await.unwrap(), 1);
        let report = store.verify_audit(&witness.read().unwrap(), Some(&signer.verifier()), |_| {}).await.unwrap();
        assert!(report.intact() && report.records == 2_503 && report.pending == 0, "{report:?}");
        let t1 = store.audit_page(TENANT, 0, 10_000).await.unwrap();
        let seqs: Vec<i64> = t1.iter().filter_map(|r| r.tenant_seq).collect();
        assert_eq!(seqs, (1..=2_302).collect::<Vec<_>>(), "positions 1..n with no gap, in append order");
        assert_eq!(t1.last().unwrap().entity_id, "v3");
    })
    .await;
}
