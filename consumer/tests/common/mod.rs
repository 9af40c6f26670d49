//! Shared pieces of the consumer's integration tests: a recording processor, quick settings,
//! and helpers to put records and wait for them.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kinesis_aggregation::ShardId;
use kinesis_consumer::lease::{
    BoxFuture, Checkpoint, InMemoryLeaseStore, Lease, LeaseConfig, LeaseStore, LeaseStoreError,
    ListedLease, Result,
};
use kinesis_consumer::retrieval::{FanOutConfig, PollingConfig, RetrievalConfig};
use kinesis_consumer::{
    Checkpointer, InitialPosition, InitializationInput, Position, ProcessRecordsInput,
    ProcessorError, RecordProcessor, Scheduler, SchedulerBuilder,
};
use kinesis_producer::Producer;
use kinesis_test_support::KinesisServer;

/// What every processor of a test saw, by worker.
#[derive(Debug, Default)]
pub struct Seen {
    /// (worker, shard, position, data) for every delivered record, in delivery order.
    pub records: Vec<(String, ShardId, Position, String)>,
    pub initialized: Vec<(String, ShardId)>,
    pub ended: Vec<(String, ShardId)>,
    pub lost: Vec<(String, ShardId)>,
    pub shutdown: Vec<(String, ShardId)>,
    pub checkpoint_errors: Vec<(String, ShardId, String)>,
    /// (worker, shard, position) of every successful checkpoint.
    pub checkpointed: Vec<(String, ShardId, Position)>,
    /// The most records one `process_records` call got.
    pub largest_batch: usize,
}

impl Seen {
    pub fn count(&self) -> usize {
        self.records.len()
    }

    /// Data values delivered, per partition-key-independent value, with how often.
    pub fn multiplicity(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for (_, _, _, data) in &self.records {
            *counts.entry(data.clone()).or_default() += 1;
        }
        counts
    }
}

/// Records everything and checkpoints after every batch (unless told not to).
pub struct Recorder {
    pub worker: String,
    pub shard: ShardId,
    pub seen: Arc<Mutex<Seen>>,
    pub checkpoint_every_batch: bool,
}

impl RecordProcessor for Recorder {
    async fn initialize(&mut self, input: InitializationInput) {
        self.seen
            .lock()
            .unwrap()
            .initialized
            .push((self.worker.clone(), input.shard_id));
    }

    async fn process_records(
        &mut self,
        input: ProcessRecordsInput<'_>,
    ) -> Result<(), ProcessorError> {
        {
            let mut seen = self.seen.lock().unwrap();
            seen.largest_batch = seen.largest_batch.max(input.records.len());
            for record in &input.records {
                seen.records.push((
                    self.worker.clone(),
                    self.shard.clone(),
                    record.position(),
                    String::from_utf8_lossy(&record.data).into_owned(),
                ));
            }
        }
        if self.checkpoint_every_batch
            && let Err(error) = input.checkpointer.checkpoint().await
        {
            self.seen.lock().unwrap().checkpoint_errors.push((
                self.worker.clone(),
                self.shard.clone(),
                error.to_string(),
            ));
        }
        Ok(())
    }

    async fn lease_lost(&mut self) {
        self.seen
            .lock()
            .unwrap()
            .lost
            .push((self.worker.clone(), self.shard.clone()));
    }

    async fn shard_ended(&mut self, checkpointer: &Checkpointer) {
        checkpointer
            .checkpoint()
            .await
            .expect("SHARD_END checkpoint");
        self.seen
            .lock()
            .unwrap()
            .ended
            .push((self.worker.clone(), self.shard.clone()));
    }

    async fn shutdown_requested(&mut self, checkpointer: &Checkpointer) {
        let _ = checkpointer.checkpoint().await;
        self.seen
            .lock()
            .unwrap()
            .shutdown
            .push((self.worker.clone(), self.shard.clone()));
    }
}

/// The set-up most tests start from: worker `w1` of `application` reading `stream` from the trim
/// horizon, failover time 2 s, quick polling (change the retrieval or the lease store on the
/// builder returned).
pub fn one_worker(
    kinesis: aws_sdk_kinesis::Client,
    dynamodb: aws_sdk_dynamodb::Client,
    stream: &str,
    application: &str,
) -> SchedulerBuilder {
    Scheduler::builder(kinesis, dynamodb, stream, application)
        .worker_id("w1")
        .initial_position(InitialPosition::TrimHorizon)
        .lease_config(quick_leases(Duration::from_secs(2)))
        .polling_config(quick_polling())
}

/// Short intervals so tests run in seconds.
pub fn quick_leases(failover: Duration) -> LeaseConfig {
    LeaseConfig::default().failover_time(failover)
}

/// How a test's workers read. The scheduler tests run in both modes (see [`in_both_modes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Polling,
    FanOut,
}

impl Mode {
    /// The Kinesis server: fan-out needs kinesis-mock, the one local server with
    /// `SubscribeToShard`; polling keeps the test's usual (often faster) server.
    pub fn server(self, polling: KinesisServer) -> KinesisServer {
        match self {
            Mode::Polling => polling,
            Mode::FanOut => KinesisServer::KinesisMock,
        }
    }

    /// Quick retrieval settings of this mode.
    pub fn retrieval(self) -> RetrievalConfig {
        match self {
            Mode::Polling => RetrievalConfig::Polling(quick_polling()),
            Mode::FanOut => RetrievalConfig::FanOut(quick_fan_out()),
        }
    }
}

/// Runs each `async fn NAME(mode: Mode)` as two tests, `NAME::polling` and `NAME::fan_out`.
#[allow(unused_macros)]
macro_rules! in_both_modes {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn polling() {
                super::$name(super::common::Mode::Polling).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn fan_out() {
                super::$name(super::common::Mode::FanOut).await
            }
        }
    )+};
}

pub fn quick_fan_out() -> FanOutConfig {
    FanOutConfig {
        shard_end_check_interval: Duration::from_millis(500),
        min_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(500),
        drain: quick_polling(),
        ..FanOutConfig::default()
    }
}

pub fn quick_polling() -> PollingConfig {
    PollingConfig {
        idle_time_between_reads: Duration::from_millis(50),
        min_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(500),
        ..PollingConfig::default()
    }
}

/// Puts `values` (as data) with partition keys `key-<value % keys>`, aggregated or not.
pub async fn put_values(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    values: std::ops::Range<usize>,
    aggregate: bool,
) {
    let producer = Producer::builder(client.clone(), stream)
        .aggregation_enabled(aggregate)
        .aggregation_max_size(8_192)
        .build()
        .await
        .unwrap();
    let mut handles = Vec::new();
    for value in values {
        handles.push(
            producer
                .put_data(format!("key-{}", value % 101), value.to_string())
                .await
                .unwrap(),
        );
    }
    for handle in handles {
        handle.await.unwrap();
    }
    producer.shutdown().await.unwrap();
}

/// The data of each record, parsed as the number it was put as.
pub fn values(records: &[kinesis_consumer::Record]) -> Vec<usize> {
    records
        .iter()
        .map(|r| std::str::from_utf8(&r.data).unwrap().parse().unwrap())
        .collect()
}

/// A new stream's first shard.
pub fn first_shard() -> ShardId {
    ShardId::from("shardId-000000000000")
}

/// Waits until `done` holds, checking every 50 ms, for at most `limit`.
pub async fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A factory of [`Recorder`]s for `worker`.
pub fn recorder(
    worker: &str,
    seen: &Arc<Mutex<Seen>>,
) -> impl Fn(&ShardId) -> Recorder + Send + Sync + 'static {
    let worker = worker.to_owned();
    let seen = seen.clone();
    move |shard: &ShardId| Recorder {
        worker: worker.clone(),
        shard: shard.clone(),
        seen: seen.clone(),
        checkpoint_every_batch: true,
    }
}

/// Lease owners by shard, from the table.
pub async fn owners(
    store: &dyn kinesis_consumer::lease::LeaseStore,
) -> BTreeMap<ShardId, Option<String>> {
    store
        .list()
        .await
        .unwrap()
        .into_iter()
        .filter_map(Result::ok)
        .map(|l| (l.lease_key, l.lease_owner))
        .collect()
}

/// How many leases each owner holds.
pub fn load(owners: &BTreeMap<ShardId, Option<String>>) -> BTreeMap<String, usize> {
    let mut load = BTreeMap::new();
    for owner in owners.values().flatten() {
        *load.entry(owner.clone()).or_default() += 1;
    }
    load
}

/// A lease store in memory with faults: `list` (the table scan behind takes and shard syncs)
/// takes `list_delay`, and the first creation of the lease of `fail_create_of` fails as a
/// transient DynamoDB error would.
pub struct FaultyStore {
    pub inner: Arc<InMemoryLeaseStore>,
    pub list_delay: Duration,
    pub fail_create_of: Mutex<Option<ShardId>>,
    /// How long a renewal's answer takes after the renewal is written (a slow response).
    pub renew_answer_delay: Duration,
    /// Renewals written so far.
    pub renewals_written: std::sync::atomic::AtomicUsize,
    /// Listings (the table's scans) and single-lease reads so far.
    pub lists: std::sync::atomic::AtomicUsize,
    pub gets: std::sync::atomic::AtomicUsize,
    /// Whether a listing panics (a bug in an application's store).
    pub panic_on_list: bool,
}

impl FaultyStore {
    /// No faults yet, over `inner`.
    pub fn over(inner: &Arc<InMemoryLeaseStore>) -> Self {
        FaultyStore {
            inner: inner.clone(),
            list_delay: Duration::ZERO,
            fail_create_of: Mutex::new(None),
            renew_answer_delay: Duration::ZERO,
            renewals_written: Default::default(),
            lists: Default::default(),
            gets: Default::default(),
            panic_on_list: false,
        }
    }
}

impl LeaseStore for FaultyStore {
    fn create_table_if_absent(&self) -> BoxFuture<'_, Result<bool>> {
        self.inner.create_table_if_absent()
    }
    fn list(&self) -> BoxFuture<'_, Result<Vec<ListedLease>>> {
        Box::pin(async move {
            self.lists.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            assert!(!self.panic_on_list, "listing panicked, as the test asked");
            tokio::time::sleep(self.list_delay).await;
            self.inner.list().await
        })
    }
    fn get<'a>(&'a self, lease_key: &'a ShardId) -> BoxFuture<'a, Result<Option<Lease>>> {
        self.gets.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.get(lease_key)
    }
    fn create_if_absent<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<Lease>> {
        let mut fail = self.fail_create_of.lock().unwrap();
        if fail.as_ref() == Some(&lease.lease_key) {
            *fail = None;
            return Box::pin(async move {
                Err(LeaseStoreError::Transient {
                    operation: "PutItem",
                    table: InMemoryLeaseStore::TABLE_NAME.into(),
                    lease_key: Some(lease.lease_key.clone()),
                    throttled: false,
                    message: "injected by the test".into(),
                    source: Arc::new(std::io::Error::other("injected")),
                })
            });
        }
        self.inner.create_if_absent(lease)
    }
    fn renew<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<Lease>> {
        Box::pin(async move {
            let renewed = self.inner.renew(lease).await;
            self.renewals_written
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::time::sleep(self.renew_answer_delay).await;
            renewed
        })
    }
    fn take<'a>(&'a self, lease: &'a Lease, new_owner: &'a str) -> BoxFuture<'a, Result<Lease>> {
        self.inner.take(lease, new_owner)
    }
    fn release<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<Lease>> {
        self.inner.release(lease)
    }
    fn checkpoint<'a>(
        &'a self,
        lease: &'a Lease,
        checkpoint: &'a Checkpoint,
        pending: Option<&'a Checkpoint>,
    ) -> BoxFuture<'a, Result<Lease>> {
        self.inner.checkpoint(lease, checkpoint, pending)
    }
    fn prepare_checkpoint<'a>(
        &'a self,
        lease: &'a Lease,
        pending: &'a Checkpoint,
        state: Option<&'a [u8]>,
    ) -> BoxFuture<'a, Result<Lease>> {
        self.inner.prepare_checkpoint(lease, pending, state)
    }
    fn update_child_shards<'a>(
        &'a self,
        lease_key: &'a ShardId,
        child_shard_ids: &'a [ShardId],
    ) -> BoxFuture<'a, Result<Lease>> {
        self.inner.update_child_shards(lease_key, child_shard_ids)
    }
    fn delete<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<()>> {
        self.inner.delete(lease)
    }
}
