//! What the three modes share: a counting processor that notes when things happen, a background
//! producer that keeps records arriving, lease-table and cleanup helpers.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use kinesis_aggregation::ShardId;
use kinesis_consumer::lease::{DynamoLeaseStore, LeaseStore};
use kinesis_consumer::{
    Checkpointer, InitializationInput, ProcessRecordsInput, ProcessorError, RecordProcessor,
};
use kinesis_producer::Producer;
use rand::distr::{Alphanumeric, SampleString};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;

/// When a processor checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointEvery {
    /// Never: the throughput run only counts.
    Never,
    /// After every batch (the worst case for DynamoDB calls).
    Batch,
    /// After the first batch at least this long after the previous checkpoint.
    Interval(Duration),
}

/// Something that happened to one shard's processor, and when.
#[derive(Debug, Clone)]
pub struct Event {
    pub at: Instant,
    pub worker: Arc<str>,
    pub shard: ShardId,
    pub kind: EventKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Initialized,
    /// The processor's first non-empty batch.
    FirstRecord,
    LeaseLost,
    ShutDown,
    ShardEnded,
}

/// Counters shared by every processor of one run.
#[derive(Debug, Default)]
pub struct Tally {
    pub records: AtomicU64,
    pub batches: AtomicU64,
    pub checkpoints: AtomicU64,
    pub checkpoint_errors: AtomicU64,
    /// Records after which [`Tally::done`] is set (0: never).
    target: u64,
    pub first_record: OnceLock<Instant>,
    pub done: OnceLock<Instant>,
    done_notify: Notify,
    events: Mutex<Vec<Event>>,
}

impl Tally {
    pub fn new(target: u64) -> Arc<Tally> {
        Arc::new(Tally {
            target,
            ..Tally::default()
        })
    }

    /// Waits until `target` records were processed; returns when that happened.
    pub async fn wait_done(&self, limit: Duration) -> Result<Instant, String> {
        let waited = tokio::time::timeout(limit, async {
            loop {
                if let Some(at) = self.done.get() {
                    return *at;
                }
                self.done_notify.notified().await;
            }
        });
        waited.await.map_err(|_| {
            format!(
                "only {} of {} records processed after {limit:?}",
                self.records.load(Relaxed),
                self.target
            )
        })
    }

    fn event(&self, worker: &Arc<str>, shard: &ShardId, kind: EventKind) {
        self.events.lock().expect("not poisoned").push(Event {
            at: Instant::now(),
            worker: worker.clone(),
            shard: shard.clone(),
            kind,
        });
    }

    /// The events so far, in order.
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().expect("not poisoned").clone()
    }

    /// The first event of `kind` by `worker` (any shard when `shard` is `None`) at or after
    /// `after`.
    pub fn find(
        &self,
        worker: &str,
        shard: Option<&ShardId>,
        kind: EventKind,
        after: Instant,
    ) -> Option<Event> {
        self.events
            .lock()
            .expect("not poisoned")
            .iter()
            .find(|e| {
                &*e.worker == worker
                    && e.kind == kind
                    && e.at >= after
                    && shard.is_none_or(|s| &e.shard == s)
            })
            .cloned()
    }

    /// Distinct shards for which `worker` has had an event of `kind`.
    pub fn shards_with(&self, worker: &str, kind: EventKind) -> usize {
        let events = self.events.lock().expect("not poisoned");
        let mut shards: Vec<&ShardId> = events
            .iter()
            .filter(|e| &*e.worker == worker && e.kind == kind)
            .map(|e| &e.shard)
            .collect();
        shards.sort();
        shards.dedup();
        shards.len()
    }
}

/// A no-op processor: counts records and batches, notes its first record, checkpoints as told.
pub struct Counting {
    worker: Arc<str>,
    shard: ShardId,
    tally: Arc<Tally>,
    every: CheckpointEvery,
    last_checkpoint: Instant,
    got_first: bool,
}

impl Counting {
    async fn checkpoint(&mut self, checkpointer: &Checkpointer) {
        match checkpointer.checkpoint().await {
            Ok(()) => self.tally.checkpoints.fetch_add(1, Relaxed),
            Err(_) => self.tally.checkpoint_errors.fetch_add(1, Relaxed),
        };
        self.last_checkpoint = Instant::now();
    }
}

impl RecordProcessor for Counting {
    async fn initialize(&mut self, _input: InitializationInput) {
        self.tally
            .event(&self.worker, &self.shard, EventKind::Initialized);
    }

    async fn process_records(
        &mut self,
        input: ProcessRecordsInput<'_>,
    ) -> Result<(), ProcessorError> {
        let tally = &self.tally;
        let n = input.records.len() as u64;
        if !self.got_first {
            self.got_first = true;
            tally.first_record.get_or_init(Instant::now);
            tally.event(&self.worker, &self.shard, EventKind::FirstRecord);
        }
        tally.batches.fetch_add(1, Relaxed);
        let total = tally.records.fetch_add(n, Relaxed) + n;
        if tally.target > 0 && total >= tally.target && tally.done.get().is_none() {
            tally.done.get_or_init(Instant::now);
            tally.done_notify.notify_one();
        }
        let due = match self.every {
            CheckpointEvery::Never => false,
            CheckpointEvery::Batch => true,
            CheckpointEvery::Interval(every) => self.last_checkpoint.elapsed() >= every,
        };
        if due {
            self.checkpoint(input.checkpointer).await;
        }
        Ok(())
    }

    async fn lease_lost(&mut self) {
        self.tally
            .event(&self.worker, &self.shard, EventKind::LeaseLost);
    }

    async fn shard_ended(&mut self, checkpointer: &Checkpointer) {
        self.checkpoint(checkpointer).await;
        self.tally
            .event(&self.worker, &self.shard, EventKind::ShardEnded);
    }

    async fn shutdown_requested(&mut self, checkpointer: &Checkpointer) {
        if self.every != CheckpointEvery::Never {
            self.checkpoint(checkpointer).await;
        }
        self.tally
            .event(&self.worker, &self.shard, EventKind::ShutDown);
    }
}

/// A factory of [`Counting`] processors for `worker`.
pub fn counting(
    worker: &str,
    tally: &Arc<Tally>,
    every: CheckpointEvery,
) -> impl Fn(&ShardId) -> Counting + Send + Sync + 'static {
    let worker: Arc<str> = Arc::from(worker);
    let tally = tally.clone();
    move |shard: &ShardId| Counting {
        worker: worker.clone(),
        shard: shard.clone(),
        tally: tally.clone(),
        every,
        last_checkpoint: Instant::now(),
        got_first: false,
    }
}

/// A background producer putting `per_second` records (100 bytes, random 16-character keys, so
/// every shard gets some) through `kinesis-producer` with its defaults (aggregated, 100 ms
/// buffering).
pub struct Trickle {
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(u64, u64), String>>,
}

impl Trickle {
    pub async fn start(
        kinesis: aws_sdk_kinesis::Client,
        stream: &str,
        per_second: u32,
    ) -> Result<Trickle, String> {
        let producer = Producer::builder(kinesis, stream)
            .build()
            .await
            .map_err(|e| format!("producer for {stream}: {e}"))?;
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let (handles_tx, mut handles_rx) = mpsc::unbounded_channel();
            let checker = tokio::spawn(async move {
                let mut failed = 0u64;
                while let Some(handle) = handles_rx.recv().await {
                    if let Err(e) = handle.await {
                        tracing::warn!(%e, "background put failed");
                        failed += 1;
                    }
                }
                failed
            });
            let mut tick = tokio::time::interval(Duration::from_secs(1) / per_second.max(1));
            let mut rng = rand::make_rng::<rand::rngs::StdRng>();
            let mut put = 0u64;
            loop {
                tokio::select! {
                    _ = stopped.changed() => break,
                    _ = tick.tick() => {
                        let key = Alphanumeric.sample_string(&mut rng, 16);
                        let data = Alphanumeric.sample_string(&mut rng, 100);
                        let handle = producer.put_data(key, data).await.map_err(|e| e.to_string())?;
                        let _ = handles_tx.send(handle);
                        put += 1;
                    }
                }
            }
            drop(handles_tx);
            producer.shutdown().await.map_err(|e| e.to_string())?;
            let failed = checker.await.map_err(|e| e.to_string())?;
            Ok((put, failed))
        });
        Ok(Trickle { stop, task })
    }

    /// Stops putting, waits for the outcomes; returns (records put, records failed).
    pub async fn stop(self) -> Result<(u64, u64), String> {
        self.stop.send_replace(true);
        self.task.await.map_err(|e| e.to_string())?
    }
}

/// Lease owners by shard, from the table.
pub async fn owners(
    dynamodb: &aws_sdk_dynamodb::Client,
    application: &str,
) -> Result<BTreeMap<ShardId, Option<String>>, String> {
    let store = DynamoLeaseStore::new(dynamodb.clone(), application);
    Ok(store
        .list()
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter_map(Result::ok)
        .map(|l| (l.lease_key, l.lease_owner))
        .collect())
}

/// Shards owned by `worker` in `owners`.
pub fn owned_by(owners: &BTreeMap<ShardId, Option<String>>, worker: &str) -> Vec<ShardId> {
    owners
        .iter()
        .filter(|(_, o)| o.as_deref() == Some(worker))
        .map(|(s, _)| s.clone())
        .collect()
}

/// Deletes the stream and the lease table; failures are only reported (they are leftovers on a
/// local server, not results).
pub async fn clean_up(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    dynamodb: &aws_sdk_dynamodb::Client,
    application: &str,
) {
    delete_stream(kinesis, stream).await;
    delete_table(dynamodb, application).await;
}

pub async fn delete_stream(kinesis: &aws_sdk_kinesis::Client, stream: &str) {
    if let Err(e) = kinesis.delete_stream().stream_name(stream).send().await {
        eprintln!("  (could not delete stream {stream}: {e})");
    }
}

pub async fn delete_table(dynamodb: &aws_sdk_dynamodb::Client, application: &str) {
    if let Err(e) = dynamodb.delete_table().table_name(application).send().await {
        eprintln!("  (could not delete lease table {application}: {e})");
    }
}

/// Waits until `done` holds, checking every 50 ms, for at most `limit`.
pub async fn wait_until(
    limit: Duration,
    what: &str,
    mut done: impl FnMut() -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() > deadline {
            return Err(format!("timed out after {limit:?} waiting for {what}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// A duration in seconds with millisecond precision, for the report.
pub fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a Tokio runtime")
}
