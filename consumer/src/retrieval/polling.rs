//! Polling retrieval: one task per shard reads ahead with `GetRecords` into a bounded queue while
//! the processor works on the previous batch.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_kinesis::error::ProvideErrorMetadata;
use aws_sdk_kinesis::primitives::DateTime;
use kinesis_aggregation::ShardId;

use super::feed::{Feed, Limits, Sender, backoff, code_and_message, is_transient, without_retries};
use super::records::{ShardRangeCheck, UserRecords, child_shards, user_records};
use super::start::StartingPosition;
use crate::lease::HashKeyRange;
use crate::record::{Position, Record};

/// Polling options, with the KCL's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct PollingConfig {
    /// `maxRecords` (default 10,000): records asked of one `GetRecords` call.
    pub max_records: i32,
    /// `idleTimeBetweenReadsInMillis` (default 1,500 ms): the pause between two `GetRecords` calls
    /// of a shard. A shard allows 5 calls per second, shared by every consumer of the stream.
    pub idle_time_between_reads: Duration,
    /// `maxPendingProcessRecordsInput`: batches read ahead while the processor works (default 3).
    pub prefetch_batches: usize,
    /// `maxByteSize`: no further read while the batches read ahead hold this many bytes of
    /// data and partition keys (default 8 MiB; one batch may go over it, as in Java).
    pub prefetch_max_bytes: usize,
    /// `maxRecordsCount`: no further read while the batches read ahead hold this many user
    /// records (default 30,000).
    pub prefetch_max_records: usize,
    /// First retry delay after throttling or a transient error (default 200 ms, doubling, jittered).
    pub min_backoff: Duration,
    /// Longest retry delay (default 10 s).
    pub max_backoff: Duration,
}

impl Default for PollingConfig {
    fn default() -> Self {
        PollingConfig {
            max_records: 10_000,
            idle_time_between_reads: Duration::from_millis(1_500),
            prefetch_batches: 3,
            prefetch_max_bytes: 8 * 1024 * 1024,
            prefetch_max_records: 30_000,
            min_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
        }
    }
}

/// A child shard named by `GetRecords` when its parent is fully read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildShard {
    /// The child.
    pub shard_id: ShardId,
    /// Its parents (one after a split, two after a merge).
    pub parent_shards: Vec<ShardId>,
    /// Its hash-key range, when the server gives it.
    pub hash_key_range: Option<HashKeyRange>,
}

/// What one `GetRecords` call gave, deaggregated.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// The user records, in order.
    pub records: Vec<Record>,
    /// How far behind the tip of the shard this batch is.
    pub millis_behind_latest: Option<i64>,
    /// `Some` when the shard is closed and read to its end: the children `GetRecords` named
    /// (empty when the server does not say, as kinesalite; list the shards to find them).
    pub shard_end: Option<Vec<ChildShard>>,
    /// Kinesis records that had the aggregate magic but were corrupt (passed through as plain).
    pub corrupt_aggregates: usize,
    /// User records not delivered because their aggregate held a record outside the shard's
    /// hash-key range (the Java KCL's rule; see
    /// [`SchedulerBuilder::deliver_aggregates_outside_shard_range`](crate::SchedulerBuilder::deliver_aggregates_outside_shard_range)).
    pub outside_shard_range: usize,
}

/// Reading the shard failed in a way retrying cannot fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("reading shard {shard} failed: {code}: {message}")]
pub struct FetchError {
    /// The shard.
    pub shard: ShardId,
    /// The error code (`ResourceNotFoundException`, `AccessDeniedException`, …).
    pub code: String,
    /// The error message.
    pub message: String,
}

/// Reads one shard ahead of its processor. Dropping it stops the reading.
#[derive(Debug)]
pub struct ShardFetcher(Feed);

impl ShardFetcher {
    /// Starts reading `shard` of `stream` from `start`. The SDK client's own retries are turned off
    /// for these calls: this reader retries with its own backoff, and knows when an expired
    /// iterator must be fetched anew.
    pub fn start(
        client: aws_sdk_kinesis::Client,
        stream: Arc<str>,
        shard: ShardId,
        start: StartingPosition,
        range: Option<HashKeyRange>,
        config: PollingConfig,
    ) -> Self {
        let client = without_retries(&client);
        let range_check = ShardRangeCheck::new(range, &stream);
        let limits = Limits {
            batches: config.prefetch_batches,
            bytes: config.prefetch_max_bytes,
            records: config.prefetch_max_records,
        };
        ShardFetcher(Feed::spawn(limits, |sender| {
            Reader {
                client,
                stream,
                shard,
                start,
                range_check,
                config,
                sender,
            }
            .run()
        }))
    }

    /// The next batch; `None` once the shard end was delivered or reading stopped on an error.
    pub async fn next(&mut self) -> Option<Result<Batch, FetchError>> {
        self.0.next().await
    }
}

struct Reader {
    client: aws_sdk_kinesis::Client,
    stream: Arc<str>,
    shard: ShardId,
    /// Where to (re)start: the starting position, then just after the last record read.
    start: StartingPosition,
    range_check: ShardRangeCheck,
    config: PollingConfig,
    sender: Sender,
}

/// Transient failures in a row after which the iterator is fetched anew (kinesis-mock answers an
/// invalid iterator with HTTP 500 rather than a typed error).
const FAILURES_BEFORE_NEW_ITERATOR: u32 = 3;

enum Failure {
    Retry {
        code: String,
        expired_iterator: bool,
    },
    Fatal(FetchError),
}

impl Reader {
    async fn run(mut self) {
        let mut iterator: Option<String> = None;
        let mut backoff = self.backoff();
        let mut failures = 0;
        loop {
            let result = match iterator.take() {
                Some(current) => {
                    self.sender.room().await;
                    self.read(current).await
                }
                None => self.iterator().await.map(|it| (None, Some(it))),
            };
            match result {
                Ok((batch, next)) => {
                    failures = 0;
                    backoff = self.backoff();
                    iterator = next;
                    let Some(batch) = batch else { continue };
                    let end = batch.shard_end.is_some();
                    if self.sender.send(Ok(batch)).await.is_err() || end {
                        return;
                    }
                    tokio::time::sleep(self.config.idle_time_between_reads).await;
                }
                Err(Failure::Fatal(error)) => {
                    let _ = self.sender.send(Err(error)).await;
                    return;
                }
                Err(Failure::Retry {
                    code,
                    expired_iterator,
                }) => {
                    failures += 1;
                    if expired_iterator || failures >= FAILURES_BEFORE_NEW_ITERATOR {
                        // Resume just after the last record read: nothing skipped, nothing twice.
                        iterator = None;
                        failures = 0;
                    }
                    let delay = backoff.next().unwrap_or(self.config.max_backoff);
                    tracing::debug!(shard = %self.shard, code, ?delay, "GetRecords retry");
                    if !expired_iterator {
                        tokio::time::sleep(delay).await;
                    }
                }
            }
            if self.sender.is_closed() {
                return;
            }
        }
    }

    fn backoff(&self) -> impl Iterator<Item = Duration> + use<> {
        backoff(self.config.min_backoff, self.config.max_backoff)
    }

    async fn iterator(&self) -> Result<String, Failure> {
        let (kind, sequence, timestamp) = self.start.iterator();
        let output = self
            .client
            .get_shard_iterator()
            .stream_name(&*self.stream)
            .shard_id(self.shard.as_str())
            .shard_iterator_type(kind)
            .set_starting_sequence_number(sequence.map(|s| s.to_string()))
            .set_timestamp(timestamp.map(DateTime::from))
            .send()
            .await
            .map_err(|error| self.classify(&error, false))?;
        output.shard_iterator.ok_or_else(|| {
            Failure::Fatal(FetchError {
                shard: self.shard.clone(),
                code: "NoIterator".into(),
                message: "GetShardIterator returned no iterator".into(),
            })
        })
    }

    /// One `GetRecords`: the batch (records filtered by the starting position) and the next iterator.
    async fn read(&mut self, iterator: String) -> Result<(Option<Batch>, Option<String>), Failure> {
        let output = self
            .client
            .get_records()
            .shard_iterator(iterator)
            .limit(self.config.max_records)
            .send()
            .await
            .map_err(|error| {
                let expired = error
                    .as_service_error()
                    .is_some_and(|e| e.is_expired_iterator_exception());
                self.classify(&error, expired)
            })?;
        let UserRecords {
            records,
            corrupt_aggregates,
            outside_shard_range,
        } = user_records(
            &self.shard,
            &self.start,
            &mut self.range_check,
            output.records(),
        );
        if let Some(last) = records.last() {
            self.start = StartingPosition::After(Position {
                sequence_number: last.sequence_number.clone(),
                sub_sequence_number: last.sub_sequence_number,
            });
        }
        let next = output.next_shard_iterator().map(str::to_owned);
        let shard_end = next.is_none().then(|| child_shards(output.child_shards()));
        if records.is_empty() && !output.records().is_empty() && shard_end.is_none() {
            // Everything read was already covered by the starting position (the record a
            // checkpoint points into is read again): nothing to deliver, read on.
            return Ok((None, next));
        }
        let batch = Batch {
            records,
            millis_behind_latest: output.millis_behind_latest(),
            shard_end,
            corrupt_aggregates,
            outside_shard_range,
        };
        Ok((Some(batch), next))
    }

    fn classify<
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug + 'static,
    >(
        &self,
        error: &aws_sdk_kinesis::error::SdkError<E, R>,
        expired_iterator: bool,
    ) -> Failure {
        let (code, message) = code_and_message(error);
        if expired_iterator || is_transient(error, &code) {
            Failure::Retry {
                code,
                expired_iterator,
            }
        } else {
            Failure::Fatal(FetchError {
                shard: self.shard.clone(),
                code,
                message,
            })
        }
    }
}
