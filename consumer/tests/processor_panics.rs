//! A panic in any processor callback is handled as one in `process_records` is: the shard goes on
//! (kinesalite and dynalite). Before, a panic in `initialize`, `shard_ended`, `lease_lost` or
//! `shutdown_requested` ended the shard's task and left its lease held and renewed, never read.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kinesis_aggregation::ShardId;
use kinesis_consumer::lease::{DynamoLeaseStore, LeaseStore};
use kinesis_consumer::{
    Checkpointer, InitialPosition, InitializationInput, ProcessRecordsInput, ProcessorError,
    RecordProcessor, Scheduler, SchedulerHandle,
};
use kinesis_test_support::{
    DynamoDbServer, KinesisServer, create_stream, dynamodb_client, kinesis_client, split_shard,
    unique_name,
};

/// What the processors of a test do and saw.
#[derive(Debug, Default)]
struct State {
    /// Panics left in `initialize`, `shard_ended` (before checkpointing) and
    /// `shutdown_requested` (after checkpointing).
    initialize_panics: usize,
    shard_ended_panics: usize,
    shutdown_panics: usize,
    initialize_calls: usize,
    shard_ended_calls: usize,
    shutdown_calls: usize,
    /// (shard, data) of every delivered record.
    records: Vec<(ShardId, String)>,
}

struct Panicky {
    shard: ShardId,
    state: Arc<Mutex<State>>,
}

fn take_one(left: &mut usize) -> bool {
    let panic = *left > 0;
    *left = left.saturating_sub(1);
    panic
}

impl RecordProcessor for Panicky {
    async fn initialize(&mut self, _input: InitializationInput) {
        let panic = {
            let mut state = self.state.lock().unwrap();
            state.initialize_calls += 1;
            take_one(&mut state.initialize_panics)
        };
        assert!(!panic, "initialize panics");
    }

    async fn process_records(
        &mut self,
        input: ProcessRecordsInput<'_>,
    ) -> Result<(), ProcessorError> {
        let mut state = self.state.lock().unwrap();
        for record in &input.records {
            let data = String::from_utf8_lossy(&record.data).into_owned();
            state.records.push((self.shard.clone(), data));
        }
        Ok(())
    }

    async fn lease_lost(&mut self) {}

    async fn shard_ended(&mut self, checkpointer: &Checkpointer) {
        let panic = {
            let mut state = self.state.lock().unwrap();
            state.shard_ended_calls += 1;
            take_one(&mut state.shard_ended_panics)
        };
        assert!(!panic, "shard_ended panics before checkpointing");
        checkpointer.checkpoint().await.expect("SHARD_END");
    }

    async fn shutdown_requested(&mut self, checkpointer: &Checkpointer) {
        let _ = checkpointer.checkpoint().await;
        let panic = {
            let mut state = self.state.lock().unwrap();
            state.shutdown_calls += 1;
            take_one(&mut state.shutdown_panics)
        };
        assert!(!panic, "shutdown_requested panics after checkpointing");
    }
}

async fn start(
    stream: &str,
    application: &str,
    state: &Arc<Mutex<State>>,
) -> (SchedulerHandle, aws_sdk_dynamodb::Client) {
    let kinesis = kinesis_client(KinesisServer::Kinesalite).await;
    let dynamodb = dynamodb_client(DynamoDbServer::Dynalite).await;
    let state = state.clone();
    let handle = Scheduler::builder(kinesis, dynamodb.clone(), stream, application)
        .worker_id("w1")
        .initial_position(InitialPosition::TrimHorizon)
        .lease_config(common::quick_leases(Duration::from_secs(2)))
        .polling_config(common::quick_polling())
        .parent_poll_interval(Duration::from_millis(500))
        .build(move |shard: &ShardId| Panicky {
            shard: shard.clone(),
            state: state.clone(),
        })
        .await
        .unwrap()
        .spawn();
    (handle, dynamodb)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_initialize_is_called_again_and_the_shard_is_read() {
    let kinesis = kinesis_client(KinesisServer::Kinesalite).await;
    let stream = unique_name("panic-init");
    create_stream(&kinesis, &stream, 1).await;
    common::put_values(&kinesis, &stream, 0..200, true).await;
    let state = Arc::new(Mutex::new(State {
        initialize_panics: 2,
        ..State::default()
    }));
    let (handle, _) = start(&stream, &unique_name("app"), &state).await;
    common::wait_until(Duration::from_secs(30), "every record", || {
        state.lock().unwrap().records.len() >= 200
    })
    .await;
    handle.shutdown().await.unwrap();
    assert_eq!(state.lock().unwrap().initialize_calls, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_shard_ended_reads_the_shard_again_and_then_the_children() {
    let kinesis = kinesis_client(KinesisServer::Kinesalite).await;
    let stream = unique_name("panic-end");
    create_stream(&kinesis, &stream, 1).await;
    common::put_values(&kinesis, &stream, 0..100, false).await;
    split_shard(
        &kinesis,
        &stream,
        common::first_shard().as_str(),
        u128::MAX / 2,
    )
    .await;
    common::put_values(&kinesis, &stream, 100..200, false).await;
    let state = Arc::new(Mutex::new(State {
        shard_ended_panics: 1,
        ..State::default()
    }));
    let (handle, _) = start(&stream, &unique_name("app"), &state).await;
    common::wait_until(Duration::from_secs(60), "the children's records", || {
        let state = state.lock().unwrap();
        state
            .records
            .iter()
            .filter(|(shard, _)| *shard != common::first_shard())
            .count()
            >= 100
    })
    .await;
    handle.shutdown().await.unwrap();
    let state = state.lock().unwrap();
    assert_eq!(
        state.shard_ended_calls, 2,
        "called again once the shard was read again"
    );
    let parent_reads = state
        .records
        .iter()
        .filter(|(shard, _)| *shard == common::first_shard())
        .count();
    assert_eq!(
        parent_reads, 200,
        "the parent read twice: its end was not checkpointed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_shutdown_requested_still_releases_the_lease() {
    let kinesis = kinesis_client(KinesisServer::Kinesalite).await;
    let stream = unique_name("panic-shutdown");
    create_stream(&kinesis, &stream, 1).await;
    common::put_values(&kinesis, &stream, 0..50, false).await;
    let state = Arc::new(Mutex::new(State {
        shutdown_panics: 1,
        ..State::default()
    }));
    let application = unique_name("app");
    let (handle, dynamodb) = start(&stream, &application, &state).await;
    common::wait_until(Duration::from_secs(30), "every record", || {
        state.lock().unwrap().records.len() >= 50
    })
    .await;
    tokio::time::timeout(Duration::from_secs(20), handle.shutdown())
        .await
        .expect("shutdown returns")
        .unwrap();
    assert_eq!(state.lock().unwrap().shutdown_calls, 1);
    let leases = DynamoLeaseStore::new(dynamodb, application)
        .list()
        .await
        .unwrap();
    let lease = leases.into_iter().next().unwrap().unwrap();
    assert_eq!(lease.lease_owner, None, "released");
    assert!(
        lease.checkpoint.position().is_some(),
        "what it checkpointed stands"
    );
}

/// A worker whose own task panics (here a lease store of the application that panics) reports it
/// to the caller of `shutdown` as an error, instead of `Ok` as if it had shut down cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_panicked_reports_it_at_shutdown() {
    let kinesis = kinesis_client(KinesisServer::Kinesalite).await;
    let stream = unique_name("worker-panic");
    create_stream(&kinesis, &stream, 1).await;
    let table = Arc::new(kinesis_consumer::lease::InMemoryLeaseStore::new());
    let mut store = common::FaultyStore::over(&table);
    store.panic_on_list = true;
    let seen = Arc::new(Mutex::new(common::Seen::default()));
    let handle = Scheduler::builder(
        kinesis,
        dynamodb_client(DynamoDbServer::Dynalite).await,
        &stream,
        unique_name("app"),
    )
    .worker_id("w1")
    .lease_store(Arc::new(store))
    .build(common::recorder("w1", &seen))
    .await
    .unwrap()
    .spawn();
    tokio::time::sleep(Duration::from_millis(500)).await;
    match handle.shutdown().await {
        Err(kinesis_consumer::SchedulerError::Panicked(message)) => {
            assert!(message.contains("listing panicked"), "{message}")
        }
        other => panic!("a panicked worker reported {other:?}"),
    }
}
