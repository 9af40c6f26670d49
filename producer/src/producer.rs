//! The public face of the producer: build it, `put` records, await their outcomes, flush, shut down.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use aws_sdk_kinesis::config::retry::RetryConfig;
use aws_sdk_kinesis::config::timeout::TimeoutConfig;
use bytes::Bytes;
use kinesis_aggregation::{UserRecord, ValidationError};
use kinesis_sdk_support::{
    CREDENTIALS_CHECK_TIMEOUT, CredentialsCheckError, StopOnceSigned, check_credentials,
};
use tokio::sync::{Mutex, Semaphore, mpsc, oneshot};

use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::completion;
pub use crate::completion::PutHandle;
use crate::config::{ConfigError, ProducerConfig};
use crate::entry::record_size;
use crate::pipeline::{Command, Incoming, Permits, Pipeline};
use crate::shards::load_shard_map;

/// Why the producer could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The stream does not exist.
    #[error("stream {stream} not found")]
    StreamNotFound {
        /// The stream.
        stream: String,
    },
    /// No credentials could be loaded ([`ProducerBuilder::verify_credentials`]).
    #[error("the producer has no AWS credentials: {0}")]
    Credentials(#[from] CredentialsCheckError),
}

/// Why `put` did not take a record. The record is given back where there is one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// The partition key, explicit hash key or data breaks a Kinesis rule.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// `try_put` only: the producer holds its maximum of outstanding records or bytes, or its
    /// pipeline task is [`PUT_QUEUE_CAPACITY`] records behind.
    #[error(
        "the producer is full (MaxOutstandingRecords / MaxOutstandingBytes, or its pipeline is \
         behind); retry later"
    )]
    Full(Box<UserRecord>),
    /// The producer is shut down.
    #[error("the producer is shut down")]
    Closed(Box<UserRecord>),
}

impl SubmitError {
    /// The record that was not taken, if there is one.
    pub fn into_record(self) -> Option<UserRecord> {
        match self {
            SubmitError::Invalid(_) => None,
            SubmitError::Full(record) | SubmitError::Closed(record) => Some(*record),
        }
    }
}

/// The producer has stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the producer is shut down")]
pub struct Closed;

/// Builds a [`Producer`]: the KPL options are set here or through [`ProducerBuilder::config`].
pub struct ProducerBuilder {
    client: aws_sdk_kinesis::Client,
    stream: String,
    config: ProducerConfig,
    verify_credentials: bool,
}

macro_rules! builder_setters {
    ($($name:ident : $ty:ty),* $(,)?) => {
        $(
            #[doc = concat!("See [`ProducerConfig::", stringify!($name), "`].")]
            pub fn $name(mut self, value: $ty) -> Self {
                self.config = self.config.$name(value);
                self
            }
        )*
    };
}

impl ProducerBuilder {
    /// Replaces the whole configuration.
    pub fn config(mut self, config: ProducerConfig) -> Self {
        self.config = config;
        self
    }

    /// Whether [`build`](Self::build) resolves the client's credentials once and fails with
    /// [`BuildError::Credentials`] when none can be had within 4 s (default: true). Without
    /// credentials every record would be retried until `RecordTtl` and then fail; turn the check
    /// off for a provider whose credentials come only later.
    pub fn verify_credentials(mut self, verify: bool) -> Self {
        self.verify_credentials = verify;
        self
    }

    builder_setters! {
        aggregation_enabled: bool,
        aggregation_max_count: u64,
        aggregation_max_size: usize,
        collection_max_count: usize,
        collection_max_size: usize,
        record_max_buffered_time: std::time::Duration,
        record_ttl: std::time::Duration,
        rate_limit: u32,
        fail_if_throttled: bool,
        max_connections: usize,
        max_in_flight_bytes: usize,
        request_timeout: std::time::Duration,
        connect_timeout: std::time::Duration,
        max_outstanding_records: usize,
        max_outstanding_bytes: usize,
        ordered_per_shard: bool,
        shard_map_refresh_interval: std::time::Duration,
        min_backoff: std::time::Duration,
        max_backoff: std::time::Duration,
    }

    /// Checks the credentials (unless told not to), lists the stream's shards and starts the
    /// pipeline task (on the current Tokio runtime).
    ///
    /// Fails when the configuration is invalid, no credentials can be loaded, or the stream does
    /// not exist. When the shards
    /// cannot be listed for another reason (e.g. `ListShards` is not allowed), the producer starts
    /// without a shard map: it lists again after 1 s, doubling to 30 s, and meanwhile sends
    /// records unaggregated within one shard's rate limits.
    pub async fn build(self) -> Result<Producer, BuildError> {
        let ProducerBuilder {
            client,
            stream,
            config,
            verify_credentials,
        } = self;
        config.validate()?;
        if verify_credentials {
            check_credentials(
                client
                    .describe_limits()
                    .customize()
                    .interceptor(StopOnceSigned)
                    .send(),
                CREDENTIALS_CHECK_TIMEOUT,
            )
            .await?;
        }
        let map = match load_shard_map(&client, &stream).await {
            Ok(map) => Some(map),
            Err(error) if error.code() == Some("ResourceNotFoundException") => {
                return Err(BuildError::StreamNotFound { stream });
            }
            Err(error) => {
                tracing::warn!(%error, "no shard map: records go out unaggregated until one is listed");
                None
            }
        };
        // Retries are this producer's (per record, with backoff and TTL), so the SDK makes one
        // attempt per request.
        let put_client = aws_sdk_kinesis::Client::from_conf(
            client
                .config()
                .to_builder()
                .retry_config(RetryConfig::disabled())
                .timeout_config(
                    TimeoutConfig::builder()
                        .operation_attempt_timeout(config.request_timeout)
                        .connect_timeout(config.connect_timeout)
                        .build(),
                )
                .build(),
        );
        let permits = Arc::new(Permits {
            records: Semaphore::new(config.max_outstanding_records),
            bytes: Semaphore::new(config.max_outstanding_bytes),
        });
        let (commands, receiver) = mpsc::channel(PUT_QUEUE_CAPACITY);
        let pipeline = Pipeline::new(
            config.clone(),
            Arc::from(stream.as_str()),
            put_client,
            client,
            receiver,
            permits.clone(),
            map,
        );
        let task = tokio::spawn(pipeline.run());
        Ok(Producer {
            inner: Arc::new(Inner {
                commands,
                permits,
                config,
                stream,
                closed: AtomicBool::new(false),
                task: Mutex::new(Some(task)),
            }),
        })
    }
}

/// A Kinesis producer in the manner of the KPL. Cheap to clone: clones share one pipeline.
///
/// ```no_run
/// # async fn example(client: aws_sdk_kinesis::Client) -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use kinesis_producer::Producer;
///
/// let producer = Producer::builder(client, "my-stream")
///     .record_max_buffered_time(Duration::from_millis(100))
///     .build()
///     .await?;
/// let handle = producer.put_data("device-42", &b"reading"[..]).await?; // waits only for buffer space
/// let outcome = handle.await?;                                        // shard, sequence number, attempts
/// println!("{} {}", outcome.shard_id, outcome.sequence_number);
/// producer.shutdown().await?;                                         // flush, then stop
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Producer {
    inner: Arc<Inner>,
}

struct Inner {
    commands: mpsc::Sender<Command>,
    permits: Arc<Permits>,
    config: ProducerConfig,
    stream: String,
    closed: AtomicBool,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Producer {
    /// Starts building a producer for `stream` with the KPL's defaults.
    pub fn builder(client: aws_sdk_kinesis::Client, stream: impl Into<String>) -> ProducerBuilder {
        ProducerBuilder {
            client,
            stream: stream.into(),
            config: ProducerConfig::default(),
            verify_credentials: true,
        }
    }

    /// The stream this producer writes to.
    pub fn stream(&self) -> &str {
        &self.inner.stream
    }

    /// The configuration in force.
    pub fn config(&self) -> &ProducerConfig {
        &self.inner.config
    }

    /// Takes `record`, waiting while the producer holds its maximum of outstanding records or
    /// bytes, or while its pipeline task is behind by 16,384 records (backpressure). The returned
    /// handle resolves to the record's outcome. Cancelled while waiting, it takes nothing.
    pub async fn put(&self, record: UserRecord) -> Result<PutHandle, SubmitError> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(SubmitError::Closed(Box::new(record)));
        }
        let size = record_size(&record);
        let permits = &self.inner.permits;
        let Ok(records) = permits.records.acquire().await else {
            return Err(SubmitError::Closed(Box::new(record)));
        };
        let Ok(bytes) = permits.bytes.acquire_many(size).await else {
            return Err(SubmitError::Closed(Box::new(record)));
        };
        // Dropped while waiting here, the permits above go back.
        let Ok(place) = self.inner.commands.reserve().await else {
            return Err(SubmitError::Closed(Box::new(record)));
        };
        records.forget();
        bytes.forget();
        Ok(submit(place, record, size))
    }

    /// [`Producer::put`] of a new record with this partition key and data; invalid keys or data
    /// are refused with [`SubmitError::Invalid`] and nothing is buffered.
    pub async fn put_data(
        &self,
        partition_key: impl Into<String>,
        data: impl Into<Bytes>,
    ) -> Result<PutHandle, SubmitError> {
        self.put(UserRecord::new(partition_key, data)?).await
    }

    /// Takes `record` if there is room now; otherwise gives it back with [`SubmitError::Full`]:
    /// the producer holds `MaxOutstandingRecords` or `MaxOutstandingBytes`, or its pipeline task is
    /// behind by 16,384 records.
    pub fn try_put(&self, record: UserRecord) -> Result<PutHandle, SubmitError> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(SubmitError::Closed(Box::new(record)));
        }
        let size = record_size(&record);
        let permits = &self.inner.permits;
        let Ok(records) = permits.records.try_acquire() else {
            return Err(SubmitError::Full(Box::new(record)));
        };
        let Ok(bytes) = permits.bytes.try_acquire_many(size) else {
            return Err(SubmitError::Full(Box::new(record)));
        };
        let place = match self.inner.commands.try_reserve() {
            Ok(place) => place,
            Err(mpsc::error::TrySendError::Full(())) => {
                return Err(SubmitError::Full(Box::new(record)));
            }
            Err(mpsc::error::TrySendError::Closed(())) => {
                return Err(SubmitError::Closed(Box::new(record)));
            }
        };
        records.forget();
        bytes.forget();
        Ok(submit(place, record, size))
    }

    /// User records taken but not yet resolved.
    pub fn outstanding_records(&self) -> usize {
        self.inner.config.max_outstanding_records - self.inner.permits.records.available_permits()
    }

    /// Sends everything buffered now, without waiting for `RecordMaxBufferedTime`, and waits until
    /// every record put before this call is resolved (put, expired or failed).
    pub async fn flush(&self) -> Result<(), Closed> {
        let (done, wait) = oneshot::channel();
        self.inner
            .commands
            .send(Command::Flush(done))
            .await
            .map_err(|_| Closed)?;
        wait.await.map_err(|_| Closed)
    }

    /// Refuses new records, delivers every buffered one (each resolves: put, expired or failed;
    /// none is dropped silently), then stops the pipeline. Other clones of this producer see
    /// [`SubmitError::Closed`] from then on.
    pub async fn shutdown(self) -> Result<(), Closed> {
        // Sent before refusing puts: cancelled while waiting for room in the queue, the shutdown
        // leaves the producer as it was, not refusing records that nothing will deliver.
        let _ = self.inner.commands.send(Command::Shutdown).await;
        self.inner.closed.store(true, Ordering::Release);
        let task = self.inner.task.lock().await.take();
        match task {
            Some(task) => task.await.map_err(|_| Closed),
            None => Err(Closed),
        }
    }
}

/// How many records `put` hands to the pipeline task ahead of it. When the task lags that far,
/// `put` waits (and `try_put` reports `Full`) rather than the queue growing up to the outstanding
/// limits: a record not yet aggregated takes several times its size in memory.
pub const PUT_QUEUE_CAPACITY: usize = 16 * crate::pipeline::BATCH;

/// Hands `record` to the pipeline in its reserved place; the permits are taken.
fn submit(place: mpsc::Permit<'_, Command>, record: UserRecord, size: u32) -> PutHandle {
    let (slot, handle) = completion::slot();
    place.send(Command::Put(Incoming {
        hash_key: record.hash_key(),
        record,
        arrived: Instant::now(),
        size,
        slot,
    }));
    handle
}
