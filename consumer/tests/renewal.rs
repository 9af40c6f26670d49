//! Renewals run on their own timer: lease-table scans slower than failoverTime, and a graceful
//! shutdown whose processor takes longer than failoverTime, never let a live worker's lease look
//! expired (kinesalite; the lease tables in memory or on dynalite).

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{FaultyStore, Seen};
use kinesis_aggregation::ShardId;
use kinesis_consumer::lease::{InMemoryLeaseStore, LeaseStore};
use kinesis_consumer::{
    Checkpointer, InitialPosition, InitializationInput, ProcessRecordsInput, ProcessorError,
    RecordProcessor, Scheduler,
};
use kinesis_test_support::{
    DynamoDbServer, KinesisServer, create_stream, dynamodb_client, kinesis_client, unique_name,
};

const FAILOVER: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scans_slower_than_failover_time_never_delay_a_renewal() {
    let kinesis = kinesis_client(KinesisServer::Kinesalite).await;
    let dynamodb = dynamodb_client(DynamoDbServer::Dynalite).await;
    let stream = unique_name("slow-scans");
    create_stream(&kinesis, &stream, 1).await;
    let table = Arc::new(InMemoryLeaseStore::new());
    let store = Arc::new(FaultyStore {
        list_delay: FAILOVER * 3 / 2,
        ..FaultyStore::over(&table)
    });
    let seen = Arc::new(Mutex::new(Seen::default()));
    let recorder = common::recorder("w1", &seen);
    let factory = move |shard: &ShardId| {
        let mut recorder = recorder(shard);
        // No checkpoints: only renewals move the counter.
        recorder.checkpoint_every_batch = false;
        recorder
    };
    let handle = Scheduler::builder(kinesis, dynamodb, &stream, unique_name("app"))
        .worker_id("w1")
        .initial_position(InitialPosition::TrimHorizon)
        .lease_config(common::quick_leases(FAILOVER))
        .polling_config(common::quick_polling())
        .lease_store(store)
        .build(factory)
        .await
        .unwrap()
        .spawn();
    let owned = || async {
        let leases = table.list().await.unwrap();
        leases
            .into_iter()
            .filter_map(|l| l.ok())
            .find(|l| l.lease_owner.as_deref() == Some("w1"))
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while owned().await.is_none() {
        assert!(Instant::now() < deadline, "w1 never took the lease");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Watch the counter as another worker would: it must never stand still for failoverTime.
    let mut last = owned().await.unwrap().lease_counter;
    let mut changed = Instant::now();
    let mut longest = Duration::ZERO;
    let watch_until = Instant::now() + FAILOVER * 5;
    while Instant::now() < watch_until {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let counter = owned().await.expect("w1 keeps its lease").lease_counter;
        if counter != last {
            last = counter;
            changed = Instant::now();
        }
        longest = longest.max(changed.elapsed());
    }
    handle.shutdown().await.unwrap();
    assert!(
        longest < FAILOVER,
        "the counter stood still for {longest:?}: another worker would have taken the lease"
    );
}

/// Checkpoints at the end of a `shutdown_requested` that takes longer than failoverTime.
struct SlowShutdown {
    checkpointed: Arc<Mutex<Option<bool>>>,
}

impl RecordProcessor for SlowShutdown {
    async fn initialize(&mut self, _input: InitializationInput) {}
    async fn process_records(
        &mut self,
        _input: ProcessRecordsInput<'_>,
    ) -> std::result::Result<(), ProcessorError> {
        Ok(())
    }
    async fn lease_lost(&mut self) {}
    async fn shard_ended(&mut self, checkpointer: &Checkpointer) {
        let _ = checkpointer.checkpoint().await;
    }
    async fn shutdown_requested(&mut self, checkpointer: &Checkpointer) {
        tokio::time::sleep(FAILOVER * 3).await;
        *self.checkpointed.lock().unwrap() = Some(checkpointer.checkpoint().await.is_ok());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_shutdown_keeps_its_leases_until_the_processors_are_done() {
    let kinesis = kinesis_client(KinesisServer::Kinesalite).await;
    let dynamodb = dynamodb_client(DynamoDbServer::Dynalite).await;
    let stream = unique_name("slow-shutdown");
    let application = unique_name("app");
    create_stream(&kinesis, &stream, 1).await;
    common::put_values(&kinesis, &stream, 0..10, false).await;
    let checkpointed = Arc::new(Mutex::new(None));
    let builder = |worker: &str| {
        Scheduler::builder(kinesis.clone(), dynamodb.clone(), &stream, &application)
            .worker_id(worker)
            .initial_position(InitialPosition::TrimHorizon)
            .lease_config(common::quick_leases(FAILOVER))
            .polling_config(common::quick_polling())
    };
    let first = {
        let checkpointed = checkpointed.clone();
        builder("w1")
            .build(move |_: &ShardId| SlowShutdown {
                checkpointed: checkpointed.clone(),
            })
            .await
            .unwrap()
            .spawn()
    };
    let store = kinesis_consumer::lease::DynamoLeaseStore::new(dynamodb.clone(), &application);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let leases = store.list().await.unwrap();
        if leases
            .iter()
            .filter_map(|l| l.as_ref().ok())
            .any(|l| l.lease_owner.as_deref() == Some("w1"))
        {
            break;
        }
        assert!(Instant::now() < deadline, "w1 never took the lease");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A second worker, ready to take any lease that looks expired.
    let second = builder("w2")
        .build(common::recorder(
            "w2",
            &Arc::new(Mutex::new(Seen::default())),
        ))
        .await
        .unwrap()
        .spawn();
    tokio::time::sleep(FAILOVER).await;
    first.shutdown().await.unwrap();
    second.shutdown().await.unwrap();
    assert_eq!(
        *checkpointed.lock().unwrap(),
        Some(true),
        "the slow processor's last checkpoint went through: its lease stayed w1's"
    );
}

/// Reads and never checkpoints, not even at shutdown: only renewals move the lease's counter.
struct Idle;

impl RecordProcessor for Idle {
    async fn initialize(&mut self, _input: InitializationInput) {}
    async fn process_records(
        &mut self,
        _input: ProcessRecordsInput<'_>,
    ) -> std::result::Result<(), ProcessorError> {
        Ok(())
    }
    async fn lease_lost(&mut self) {}
    async fn shard_ended(&mut self, checkpointer: &Checkpointer) {
        let _ = checkpointer.checkpoint().await;
    }
    async fn shutdown_requested(&mut self, _checkpointer: &Checkpointer) {}
}

/// A renewal whose answer is slow is under way when the worker shuts down: the worker waits for
/// it, so the release that follows is conditional on the counter the renewal wrote, and the lease
/// is free at once. (Cancelling the renewal instead left the table's counter one ahead of the
/// worker's, the release failed, and the lease stayed the worker's until it expired.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_during_a_renewal_still_releases_the_lease() {
    let kinesis = kinesis_client(KinesisServer::Kinesalite).await;
    let dynamodb = dynamodb_client(DynamoDbServer::Dynalite).await;
    let stream = unique_name("renewing-at-shutdown");
    create_stream(&kinesis, &stream, 1).await;
    let table = Arc::new(InMemoryLeaseStore::new());
    let store = Arc::new(FaultyStore {
        renew_answer_delay: Duration::from_millis(1500),
        ..FaultyStore::over(&table)
    });
    let handle = Scheduler::builder(kinesis, dynamodb, &stream, unique_name("app"))
        .worker_id("w1")
        .initial_position(InitialPosition::TrimHorizon)
        .lease_config(common::quick_leases(Duration::from_secs(3)))
        .polling_config(common::quick_polling())
        .lease_store(store.clone())
        .build(|_: &ShardId| Idle)
        .await
        .unwrap()
        .spawn();
    let written = || {
        store
            .renewals_written
            .load(std::sync::atomic::Ordering::SeqCst)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while written() == 0 {
        assert!(Instant::now() < deadline, "w1 never renewed a lease");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Right after a renewal was written, 1.5 s before its answer.
    let before = written();
    while written() == before {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    handle.shutdown().await.unwrap();
    let leases: Vec<_> = table
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.unwrap())
        .collect();
    assert_eq!(leases.len(), 1);
    assert_eq!(
        leases[0].lease_owner, None,
        "released on graceful shutdown: {leases:?}"
    );
}
