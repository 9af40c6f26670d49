//! Several workers sharing one lease table: balancing, graceful hand-off, and failover after a
//! crash, against real local servers.

#[macro_use]
mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Mode, Seen};
use kinesis_consumer::lease::DynamoLeaseStore;
use kinesis_consumer::{Scheduler, SchedulerHandle};
use kinesis_test_support::{
    DynamoDbServer, KinesisServer, create_stream, dynamodb_client, kinesis_client, unique_name,
};

const FAILOVER: Duration = Duration::from_secs(2);

struct Setup {
    kinesis: aws_sdk_kinesis::Client,
    dynamodb: aws_sdk_dynamodb::Client,
    stream: String,
    application: String,
    seen: Arc<Mutex<Seen>>,
    mode: Mode,
}

impl Setup {
    async fn new(mode: Mode, shards: i32) -> Self {
        let kinesis = kinesis_client(mode.server(KinesisServer::Kinesalite)).await;
        let dynamodb = dynamodb_client(DynamoDbServer::DynamoDbLocal).await;
        let stream = unique_name("workers");
        create_stream(&kinesis, &stream, shards).await;
        Setup {
            kinesis,
            dynamodb,
            stream,
            application: unique_name("app"),
            seen: Arc::new(Mutex::new(Seen::default())),
            mode,
        }
    }

    async fn worker(&self, id: &str) -> SchedulerHandle {
        Scheduler::builder(
            self.kinesis.clone(),
            self.dynamodb.clone(),
            &self.stream,
            &self.application,
        )
        .worker_id(id)
        .lease_config(common::quick_leases(FAILOVER))
        .retrieval(self.mode.retrieval())
        .parent_poll_interval(Duration::from_millis(200))
        .build(common::recorder(id, &self.seen))
        .await
        .unwrap()
        .spawn()
    }

    fn store(&self) -> DynamoLeaseStore {
        DynamoLeaseStore::new(self.dynamodb.clone(), self.application.clone())
    }
}

in_both_modes!(
    three_workers_balance_and_a_graceful_stop_hands_leases_over_at_once,
    a_crashed_workers_leases_are_taken_after_failover_and_resume_from_the_checkpoint,
);

async fn three_workers_balance_and_a_graceful_stop_hands_leases_over_at_once(mode: Mode) {
    let setup = Setup::new(mode, 4).await;
    common::put_values(&setup.kinesis, &setup.stream, 0..10_000, true).await;
    let w1 = setup.worker("w1").await;
    let w2 = setup.worker("w2").await;
    let w3 = setup.worker("w3").await;
    let store = setup.store();

    // Balanced: 2/1/1 within a few taker intervals (2 × failover each).
    let started = Instant::now();
    loop {
        let load = common::load(&common::owners(&store).await);
        let mut counts: Vec<usize> = load.values().copied().collect();
        counts.sort();
        if counts == vec![1, 1, 2] {
            break;
        }
        assert!(
            started.elapsed() < FAILOVER * 2 * 6,
            "not balanced: {load:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // w3 stops gracefully: its leases are released and taken within one taker interval, not
    // after failoverTime of silence.
    let w3_shards: Vec<_> = common::owners(&store)
        .await
        .into_iter()
        .filter(|(_, owner)| owner.as_deref() == Some("w3"))
        .map(|(shard, _)| shard)
        .collect();
    assert!(!w3_shards.is_empty());
    w3.shutdown().await.unwrap();
    let owners = common::owners(&store).await;
    for shard in &w3_shards {
        assert_eq!(owners[shard], None, "{shard} released on shutdown");
    }
    common::put_values(&setup.kinesis, &setup.stream, 10_000..15_000, true).await;
    let stopped = Instant::now();
    loop {
        let owners = common::owners(&store).await;
        if w3_shards
            .iter()
            .all(|s| matches!(owners[s].as_deref(), Some("w1" | "w2")))
        {
            break;
        }
        assert!(
            stopped.elapsed()
                < common::quick_leases(FAILOVER).take_interval() + Duration::from_secs(3),
            "w3's leases not taken: {owners:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    common::wait_until(Duration::from_secs(60), "every record", || {
        setup.seen.lock().unwrap().multiplicity().len() == 15_000
    })
    .await;
    w1.shutdown().await.unwrap();
    w2.shutdown().await.unwrap();

    let seen = setup.seen.lock().unwrap();
    // Balancing may steal leases: the old owner is told (lease_lost) and its late checkpoints
    // are refused as a zombie's, never written.
    for (_, _, error) in &seen.checkpoint_errors {
        assert!(error.contains("ShutdownException"), "{error}");
    }
    // A stolen lease may replay what its old owner processed after its last checkpoint, and the
    // old owner may process one more batch before its refused checkpoint tells it: with a
    // checkpoint after every batch, at most two batches per steal (each steal tells the old owner
    // `lease_lost`). Batches here can hold a whole shard (aggregates of ~1,000 records).
    let duplicates: usize = seen.multiplicity().values().map(|n| n - 1).sum();
    let steals = seen.lost.len();
    assert!(
        duplicates <= 2 * steals * seen.largest_batch,
        "{duplicates} duplicates from {steals} steals, batches of at most {}",
        seen.largest_batch
    );
}

async fn a_crashed_workers_leases_are_taken_after_failover_and_resume_from_the_checkpoint(
    mode: Mode,
) {
    let setup = Setup::new(mode, 2).await;
    common::put_values(&setup.kinesis, &setup.stream, 0..4_000, true).await;
    let w1 = setup.worker("w1").await;
    let store = setup.store();
    common::wait_until(Duration::from_secs(30), "w1 to process everything", || {
        setup.seen.lock().unwrap().multiplicity().len() == 4_000
    })
    .await;
    let w2 = setup.worker("w2").await;
    // w2 steals one lease; then w1 crashes.
    common::wait_until(Duration::from_secs(30), "w2 to hold a lease", || {
        setup
            .seen
            .lock()
            .unwrap()
            .initialized
            .iter()
            .any(|(w, _)| w == "w2")
    })
    .await;
    let checkpoints_at_crash = setup.seen.lock().unwrap().checkpointed.clone();
    w1.abort();
    let crashed = Instant::now();
    common::put_values(&setup.kinesis, &setup.stream, 4_000..6_000, true).await;
    common::wait_until(
        FAILOVER * 2 * 3 + Duration::from_secs(10),
        "w2 to take over",
        || setup.seen.lock().unwrap().multiplicity().len() == 6_000,
    )
    .await;
    let owners = common::owners(&store).await;
    assert!(
        owners.values().all(|o| o.as_deref() == Some("w2")),
        "{owners:?}"
    );
    assert!(
        crashed.elapsed() >= FAILOVER,
        "taken only after failoverTime"
    );
    w2.shutdown().await.unwrap();

    // Duplicates only after the crashed worker's last checkpoint of that shard.
    let seen = setup.seen.lock().unwrap();
    let multiplicity = seen.multiplicity();
    for (worker, shard, position, data) in &seen.records {
        if worker != "w2" || multiplicity[data] == 1 {
            continue;
        }
        let last_checkpoint = checkpoints_at_crash
            .iter()
            .filter(|(w, s, _)| w == "w1" && s == shard)
            .map(|(_, _, p)| p)
            .max();
        assert!(
            last_checkpoint.is_none_or(|c| position > c),
            "{data} at {position:?} re-delivered though checkpointed at {last_checkpoint:?}"
        );
    }
}
