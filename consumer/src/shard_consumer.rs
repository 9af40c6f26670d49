//! One shard's life on a worker: initialize the processor, feed it batches, and end with exactly
//! one of shard end, lease lost, or shutdown.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex as StdMutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use backon::{BackoffBuilder, ExponentialBuilder};
use kinesis_aggregation::ShardId;
use tokio::sync::watch;

use crate::checkpointer::{Checkpointer, HeldLease, Progress};
use crate::lease::Checkpoint;
use crate::metrics as m;
use crate::processor::{InitializationInput, ProcessRecordsInput, RecordProcessor};
use crate::record::Record;
use crate::retrieval::{ChildShard, FetchError, Retrieval, StartingPosition};
use crate::shards::list_shards;

/// How a shard's processing ended.
#[derive(Debug)]
pub(crate) enum ShardOutcome {
    /// Read to its end and checkpointed SHARD_END; the children named by `GetRecords`, if any.
    Ended(Vec<ChildShard>),
    /// The shard ended but the processor did not checkpoint SHARD_END: it will be read again.
    EndNotCheckpointed,
    /// Another worker has the lease now.
    LeaseLost,
    /// The worker is shutting down; the processor was told.
    ShutDown,
    /// Reading failed in a way retrying cannot fix; the lease is given up so it is tried again.
    Failed(String),
}

pub(crate) struct ShardConsumer<P> {
    pub processor: P,
    pub held: Arc<HeldLease>,
    pub kinesis: aws_sdk_kinesis::Client,
    pub stream: Arc<str>,
    pub retrieval: Retrieval,
    /// Whether aggregates are checked against the lease's hash-key range (the Java KCL's rule).
    pub check_shard_range: bool,
    pub initial_timestamp: Option<SystemTime>,
    pub shutdown: watch::Receiver<bool>,
}

/// The delay before a failed batch is delivered again.
const PROCESSOR_MIN_BACKOFF: Duration = Duration::from_millis(100);
const PROCESSOR_MAX_BACKOFF: Duration = Duration::from_secs(10);

impl<P: RecordProcessor> ShardConsumer<P> {
    pub async fn run(mut self) -> ShardOutcome {
        let outcome = self.read().await;
        // This worker no longer reads the shard: its lag is no longer this worker's to report
        // (the metrics facade cannot remove a gauge; 0 is "nothing behind here").
        metrics::gauge!(m::MILLIS_BEHIND_LATEST, "stream" => self.stream.to_string(), "shard" => self.held.shard.to_string())
            .set(0.0);
        outcome
    }

    async fn read(&mut self) -> ShardOutcome {
        let shard = self.held.shard.clone();
        let (checkpoint, pending, range) = {
            let lease = self.held.lease.lock().await;
            match lease.as_ref() {
                Some(lease) => (
                    lease.checkpoint.clone(),
                    lease.pending_checkpoint.clone(),
                    lease.hash_key_range,
                ),
                None => return ShardOutcome::LeaseLost,
            }
        };
        let checkpointer = Checkpointer {
            held: self.held.clone(),
            progress: Arc::new(StdMutex::new(Progress::default())),
        };
        let input = InitializationInput {
            shard_id: shard.clone(),
            checkpoint: checkpoint.clone(),
            pending_checkpoint: pending,
        };
        if let Some(outcome) = self.initialize(input).await {
            return outcome;
        }
        let start = match &checkpoint {
            Checkpoint::TrimHorizon => StartingPosition::TrimHorizon,
            Checkpoint::Latest => StartingPosition::Latest,
            Checkpoint::AtTimestamp => StartingPosition::AtTimestamp(
                self.initial_timestamp.unwrap_or(SystemTime::UNIX_EPOCH),
            ),
            Checkpoint::Sequence { .. } => {
                StartingPosition::After(checkpoint.position().expect("a sequence checkpoint"))
            }
            Checkpoint::ShardEnd => return self.end(&checkpointer, Vec::new()).await,
        };
        let mut fetcher = self.retrieval.start(
            self.kinesis.clone(),
            self.stream.clone(),
            shard.clone(),
            start,
            range.filter(|_| self.check_shard_range),
        );
        let mut lost = self.held.lost.subscribe();
        let mut shutdown = self.shutdown.clone();
        loop {
            let batch = tokio::select! {
                biased;
                () = signalled(&mut lost) => return self.lease_lost().await,
                () = signalled(&mut shutdown) => return self.shut_down(&checkpointer).await,
                batch = fetcher.next() => batch,
            };
            let batch = match batch {
                Some(Ok(batch)) => batch,
                Some(Err(error))
                    if shard_is_gone(&self.kinesis, &self.stream, &shard, &error).await =>
                {
                    // As the Java KCL's data fetcher: a shard past the retention period is read
                    // to its end (its records are gone), so its children can start.
                    tracing::warn!(%shard, %error, "the shard is no longer in the stream: handled as its end");
                    metrics::counter!(m::SHARDS_GONE, "stream" => self.stream.to_string(), "shard" => shard.to_string())
                        .increment(1);
                    return self.end(&checkpointer, Vec::new()).await;
                }
                Some(Err(error)) => {
                    tracing::error!(%shard, %error, "reading the shard failed");
                    return self.give_up(error.to_string()).await;
                }
                None => return self.give_up("the shard reader stopped".into()).await,
            };
            if let Some(last) = batch.records.last() {
                checkpointer
                    .progress
                    .lock()
                    .expect("not poisoned")
                    .last_delivered = Some(last.position());
                metrics::counter!(m::RECORDS_PROCESSED, "stream" => self.stream.to_string(), "shard" => shard.to_string())
                    .increment(batch.records.len() as u64);
                let bytes: usize = batch.records.iter().map(|r| r.data.len()).sum();
                metrics::counter!(m::DATA_BYTES_PROCESSED, "stream" => self.stream.to_string(), "shard" => shard.to_string())
                    .increment(bytes as u64);
                if let Some(behind) = batch.millis_behind_latest {
                    metrics::gauge!(m::MILLIS_BEHIND_LATEST, "stream" => self.stream.to_string(), "shard" => shard.to_string())
                        .set(behind as f64);
                }
                if let Some(outcome) = self
                    .deliver(batch.records, batch.millis_behind_latest, &checkpointer)
                    .await
                {
                    return outcome;
                }
            }
            if let Some(children) = batch.shard_end {
                return self.end(&checkpointer, children).await;
            }
        }
    }

    /// Calls `initialize` until it returns without panicking (as the Java KCL retries its
    /// initialize task), with backoff; `Some` when the lease is lost or the worker shuts down
    /// first (the processor was never initialized, so it is not told).
    async fn initialize(&mut self, input: InitializationInput) -> Option<ShardOutcome> {
        let mut backoff = processor_backoff();
        loop {
            match CatchUnwind(Box::pin(self.processor.initialize(input.clone()))).await {
                Ok(()) => return None,
                Err(panic) => {
                    let delay = backoff.next().unwrap_or(PROCESSOR_MAX_BACKOFF);
                    tracing::error!(shard = %self.held.shard, panic, ?delay, "initialize panicked; called again");
                    let mut lost = self.held.lost.subscribe();
                    let mut shutdown = self.shutdown.clone();
                    tokio::select! {
                        () = signalled(&mut lost) => return Some(ShardOutcome::LeaseLost),
                        () = signalled(&mut shutdown) => return Some(ShardOutcome::ShutDown),
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    /// Delivers a batch until the processor accepts it; `Some` when the lease is lost or the
    /// worker shuts down in between.
    async fn deliver(
        &mut self,
        records: Vec<Record>,
        millis_behind_latest: Option<i64>,
        checkpointer: &Checkpointer,
    ) -> Option<ShardOutcome> {
        let mut backoff = processor_backoff();
        loop {
            let started = std::time::Instant::now();
            let input = ProcessRecordsInput {
                records: records.clone(),
                millis_behind_latest,
                checkpointer,
            };
            let result = CatchUnwind(Box::pin(self.processor.process_records(input))).await;
            metrics::histogram!(m::PROCESS_TASK_TIME, "stream" => self.stream.to_string(), "shard" => self.held.shard.to_string())
                .record(started.elapsed().as_secs_f64() * 1000.0);
            let error = match result {
                Ok(Ok(())) => return None,
                Ok(Err(error)) => error.to_string(),
                Err(panic) => format!("panicked: {panic}"),
            };
            let delay = backoff.next().unwrap_or(PROCESSOR_MAX_BACKOFF);
            tracing::warn!(shard = %self.held.shard, error, ?delay, "process_records failed; the same batch will be delivered again");
            metrics::counter!(m::PROCESS_TASK_RETRIES, "stream" => self.stream.to_string(), "shard" => self.held.shard.to_string())
                .increment(1);
            let mut lost = self.held.lost.subscribe();
            let mut shutdown = self.shutdown.clone();
            tokio::select! {
                () = signalled(&mut lost) => return Some(self.lease_lost().await),
                () = signalled(&mut shutdown) => return Some(self.shut_down(checkpointer).await),
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    async fn end(
        &mut self,
        checkpointer: &Checkpointer,
        children: Vec<ChildShard>,
    ) -> ShardOutcome {
        checkpointer
            .progress
            .lock()
            .expect("not poisoned")
            .at_shard_end = true;
        if let Err(panic) = CatchUnwind(Box::pin(self.processor.shard_ended(checkpointer))).await {
            // Unless it checkpointed SHARD_END before panicking, the shard is read again.
            tracing::error!(shard = %self.held.shard, panic, "shard_ended panicked");
        }
        if self.held.is_lost() {
            return self.lease_lost().await;
        }
        match self.held.checkpoint().await {
            Some(Checkpoint::ShardEnd) => ShardOutcome::Ended(children),
            _ => {
                tracing::error!(shard = %self.held.shard, "shard_ended returned without checkpointing SHARD_END; the shard will be processed again");
                ShardOutcome::EndNotCheckpointed
            }
        }
    }

    /// Reading failed for good: the lease is given up to be retried (here or by another
    /// worker), and the processor is told it no longer has the shard, as when the lease is lost.
    async fn give_up(&mut self, reason: String) -> ShardOutcome {
        self.lease_lost().await;
        ShardOutcome::Failed(reason)
    }

    async fn lease_lost(&mut self) -> ShardOutcome {
        if let Err(panic) = CatchUnwind(Box::pin(self.processor.lease_lost())).await {
            tracing::error!(shard = %self.held.shard, panic, "lease_lost panicked");
        }
        ShardOutcome::LeaseLost
    }

    async fn shut_down(&mut self, checkpointer: &Checkpointer) -> ShardOutcome {
        let shutdown_requested = self.processor.shutdown_requested(checkpointer);
        if let Err(panic) = CatchUnwind(Box::pin(shutdown_requested)).await {
            // What it checkpointed before panicking stands; the lease is released as usual.
            tracing::error!(shard = %self.held.shard, panic, "shutdown_requested panicked");
        }
        ShardOutcome::ShutDown
    }
}

/// Whether `error` says the shard does not exist and the stream, listed now, confirms it
/// (aged out of the retention period). Checked against the listing so that a deleted or
/// mistyped stream, which answers the same code, is not taken for the end of every shard.
async fn shard_is_gone(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    shard: &ShardId,
    error: &FetchError,
) -> bool {
    if error.code != "ResourceNotFoundException" {
        return false;
    }
    match list_shards(kinesis, stream).await {
        Ok(shards) => !shards.iter().any(|s| s.shard_id == *shard),
        Err(listing) => {
            tracing::warn!(%shard, listing, "the stream could not be listed to see whether the shard is gone");
            false
        }
    }
}

fn processor_backoff() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::new()
        .with_min_delay(PROCESSOR_MIN_BACKOFF)
        .with_max_delay(PROCESSOR_MAX_BACKOFF)
        .with_jitter()
        .without_max_times()
        .build()
}

/// Resolves once the flag is set (or its sender is gone); holds no borrow of the value after.
pub(crate) async fn signalled(flag: &mut watch::Receiver<bool>) {
    if flag.wait_for(|set| *set).await.is_err() {
        // The sender is gone: nothing will ever set the flag.
        std::future::pending::<()>().await;
    }
}

/// Turns a panic inside a processor callback into an error, so the shard goes on (the batch is
/// retried, not lost; `initialize` is called again).
struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Err(panic) => Poll::Ready(Err(panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into()))),
        }
    }
}
