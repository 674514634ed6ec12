//! Many instances on one PostgreSQL: two, then four workers — each with its own connection pool
//! and EHR connections, as separate `telechart serve` processes would have — drain one queue
//! together. Every delivery is done once (one attempt, one lease), and the EHR accepted each
//! create once by its own record.

use std::time::Duration;

use telechart_sync::Worker;

use crate::*;

async fn race(instances: usize) {
    if !engines().contains(&Engine::Postgres) {
        return;
    }
    let env = TestEnv::start(Engine::Postgres).await;
    let mut visits = Vec::new();
    for slot in 0..6 {
        visits.push(env.full_visit(slot).await);
    }
    let mut workers: Vec<Worker> = Vec::new();
    for i in 0..instances {
        workers.push(env.instance_worker(&format!("instance-{i}")).await);
    }
    let mut racing = tokio::task::JoinSet::new();
    for worker in workers {
        let store = env.store.clone();
        racing.spawn(async move {
            let mut done = 0;
            for _ in 0..2_000 {
                done += worker.run_once().await.unwrap().len();
                let counts = store.queue_counts(TENANT).await.unwrap();
                if counts.pending + counts.in_flight == 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            done
        });
    }
    let per_instance = racing.join_all().await;
    let counts = env.store.queue_counts(TENANT).await.unwrap();
    assert_eq!((counts.pending, counts.in_flight, counts.dead), (0, 0, 0), "{counts:?}");
    let mut total = 0;
    for visit in &visits {
        for d in env.store.deliveries_for_visit(TENANT, visit).await.unwrap() {
            total += 1;
            assert_eq!((d.status.as_str(), d.attempts), ("done", 1), "{instances} instances: {} claimed twice", d.id);
            if d.resource_type != "Encounter" {
                let token = format!("{SYSTEM}|{}", d.identifier);
                assert_eq!(
                    env.sandbox.sandbox.accepted_creates_with_identifier(&d.resource_type, &token),
                    1,
                    "{instances} instances: {} {}",
                    d.resource_type,
                    d.id
                );
            }
        }
    }
    assert_eq!(per_instance.iter().sum::<usize>(), total, "each delivery done by exactly one instance");
    assert!(per_instance.iter().filter(|n| **n > 0).count() >= 2, "the work was shared: {per_instance:?}");
    env.stop().await;
}

#[tokio::test]
async fn two_instances_share_one_queue_without_a_duplicate() {
    race(2).await;
}

#[tokio::test]
async fn four_instances_share_one_queue_without_a_duplicate() {
    race(4).await;
}
