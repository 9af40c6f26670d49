//! Enhanced fan-out retrieval: a registered stream consumer, and one `SubscribeToShard`
//! subscription per shard that pushes events into a bounded queue.
//!
//! ```text
//!  RegisterStreamConsumer (named after the application; reused if it exists; wait for ACTIVE)
//!  per shard:  SubscribeToShard(from the checkpoint) ──► events ──► deaggregate ──► queue (bounded)
//!                 ▲ ended (5 min on AWS), failed, silent too long:                    │
//!                 └── subscribe again just after the last record delivered ◄──────────┘
//!  ChildShards in an event ⇒ shard end.  Caught up and ListShards says closed ⇒ read the rest
//!  by polling, which ends with the children (a server may never signal the end over fan-out).
//! ```

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_kinesis::primitives::DateTime;
use aws_sdk_kinesis::types::error::SubscribeToShardEventStreamError;
use aws_sdk_kinesis::types::{
    ConsumerStatus, ShardIteratorType, StartingPosition as SubscribePosition,
    SubscribeToShardEventStream,
};
use kinesis_aggregation::ShardId;
use tokio::time::Instant;

use super::feed::{Feed, Limits, Sender, backoff, code_and_message, is_transient, without_retries};
use super::polling::{Batch, FetchError, PollingConfig, ShardFetcher};
use super::records::{ShardRangeCheck, UserRecords, child_shards, user_records};
use super::start::StartingPosition;
use crate::lease::HashKeyRange;
use crate::shards::SharedShardListing;

/// Enhanced fan-out options. The defaults follow the Java KCL where it has one.
#[derive(Debug, Clone, PartialEq)]
pub struct FanOutConfig {
    /// `consumerName`: the stream consumer to register or reuse (default: the application name).
    pub consumer_name: Option<String>,
    /// Events held per shard while the processor is busy (default 2). When the queue is full the
    /// subscription is not read, and its flow control holds the server back.
    pub queued_events: usize,
    /// The subscription is not read while the queued events hold this many bytes of data and
    /// partition keys (default 8 MiB, as the Java KCL's prefetch limit; one event may go over).
    pub queued_max_bytes: usize,
    /// … or this many user records (default 30,000).
    pub queued_max_records: usize,
    /// A subscription that delivers no event for this long is dropped and made anew (default
    /// 35 s; a live subscription gets an event at least every 5 s on AWS, every 1 s locally).
    pub event_timeout: Duration,
    /// When caught up (an event without records), how often to ask `ListShards` whether the shard
    /// has closed (default 30 s). Only a fallback: AWS names the children in the last event.
    pub shard_end_check_interval: Duration,
    /// How the rest of a closed shard is read when the server never signals its end over fan-out.
    pub drain: PollingConfig,
    /// First delay before subscribing again after a failure (default 200 ms, doubling, jittered).
    pub min_backoff: Duration,
    /// Longest such delay (default 10 s).
    pub max_backoff: Duration,
    /// How long registration may wait for the consumer to become ACTIVE (default 60 s).
    pub registration_timeout: Duration,
}

impl Default for FanOutConfig {
    fn default() -> Self {
        FanOutConfig {
            consumer_name: None,
            queued_events: 2,
            queued_max_bytes: 8 * 1024 * 1024,
            queued_max_records: 30_000,
            event_timeout: Duration::from_secs(35),
            shard_end_check_interval: Duration::from_secs(30),
            drain: PollingConfig {
                idle_time_between_reads: Duration::from_millis(200),
                ..PollingConfig::default()
            },
            min_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            registration_timeout: Duration::from_secs(60),
        }
    }
}

impl FanOutConfig {
    /// The listing of the stream a worker's subscriptions share for their shard-end checks: at
    /// most half a check interval old, so a check never decides on a listing older than that.
    pub(crate) fn shared_listing(&self) -> Arc<SharedShardListing> {
        Arc::new(SharedShardListing::new(self.shard_end_check_interval / 2))
    }
}

/// `SubscribeToShard` allows one call per second per consumer and shard.
const MIN_SUBSCRIBE_INTERVAL: Duration = Duration::from_secs(1);

/// A stream consumer registered for enhanced fan-out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamConsumer {
    /// Its name.
    pub name: String,
    /// Its ARN, which `SubscribeToShard` takes.
    pub arn: String,
    /// The stream's ARN.
    pub stream_arn: String,
}

/// Registering the stream consumer failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistrationError {
    /// A call failed in a way retrying cannot fix (stream not found, access denied, …).
    #[error("{operation} for stream consumer {name} failed: {code}: {message}")]
    Call {
        /// The operation (`DescribeStreamSummary`, `RegisterStreamConsumer`, …).
        operation: &'static str,
        /// The consumer's name.
        name: String,
        /// The error code.
        code: String,
        /// The error message.
        message: String,
    },
    /// The consumer did not become ACTIVE in time.
    #[error("stream consumer {name} is still {status} after {waited:?}")]
    NotActive {
        /// The consumer's name.
        name: String,
        /// Its last status.
        status: String,
        /// How long registration waited.
        waited: Duration,
    },
}

/// Registers `name` as a consumer of `stream`, or reuses it if it exists, and waits until it is
/// ACTIVE. Throttling and transient errors are retried until `timeout`.
pub async fn register_stream_consumer(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    name: &str,
    timeout: Duration,
) -> Result<StreamConsumer, RegistrationError> {
    let started = Instant::now();
    let deadline = started + timeout;
    let mut backoff = backoff(Duration::from_millis(100), Duration::from_secs(2));
    let call_error =
        |operation: &'static str, code: String, message: String| RegistrationError::Call {
            operation,
            name: name.to_owned(),
            code,
            message,
        };
    // Retries a call while it fails transiently and time is left.
    macro_rules! retrying {
        ($operation:literal, $call:expr, $accept:expr) => {
            loop {
                match $call.await {
                    Ok(output) => break Ok(output),
                    Err(error) => {
                        let (code, message) = code_and_message(&error);
                        if let Some(accepted) = $accept(code.as_str()) {
                            break Err(accepted);
                        }
                        if !is_transient(&error, &code) || Instant::now() >= deadline {
                            return Err(call_error($operation, code, message));
                        }
                        tracing::debug!(code, "{} retry", $operation);
                        tokio::time::sleep(backoff.next().unwrap_or(Duration::from_secs(2))).await;
                    }
                }
            }
        };
    }
    let none = |_: &str| None::<()>;
    let summary = retrying!(
        "DescribeStreamSummary",
        client.describe_stream_summary().stream_name(stream).send(),
        none
    )
    .expect("no error is accepted");
    let stream_arn = summary
        .stream_description_summary()
        .map(|s| s.stream_arn().to_owned())
        .unwrap_or_default();
    let registered = retrying!(
        "RegisterStreamConsumer",
        client
            .register_stream_consumer()
            .stream_arn(&stream_arn)
            .consumer_name(name)
            .send(),
        // It exists already: reuse it.
        |code: &str| (code == "ResourceInUseException").then_some(())
    );
    let (mut arn, mut status) = match registered {
        Ok(output) => output
            .consumer()
            .map(|c| (c.consumer_arn().to_owned(), c.consumer_status().clone()))
            .unwrap_or((String::new(), ConsumerStatus::Creating)),
        Err(()) => (String::new(), ConsumerStatus::Creating),
    };
    let mut poll = Duration::from_millis(100);
    while arn.is_empty() || status != ConsumerStatus::Active {
        if !arn.is_empty() {
            if Instant::now() >= deadline {
                return Err(RegistrationError::NotActive {
                    name: name.to_owned(),
                    status: status.as_str().to_owned(),
                    waited: started.elapsed(),
                });
            }
            tokio::time::sleep(poll).await;
            poll = (poll * 2).min(Duration::from_secs(2));
        }
        let described = retrying!(
            "DescribeStreamConsumer",
            client
                .describe_stream_consumer()
                .stream_arn(&stream_arn)
                .consumer_name(name)
                .send(),
            none
        )
        .expect("no error is accepted");
        let Some(description) = described.consumer_description() else {
            return Err(call_error(
                "DescribeStreamConsumer",
                "NoDescription".into(),
                "the response described no consumer".into(),
            ));
        };
        arn = description.consumer_arn().to_owned();
        status = description.consumer_status().clone();
        if arn.is_empty() {
            return Err(call_error(
                "DescribeStreamConsumer",
                "NoConsumerArn".into(),
                "the consumer has no ARN".into(),
            ));
        }
    }
    tracing::info!(consumer = name, arn, "stream consumer is ACTIVE");
    Ok(StreamConsumer {
        name: name.to_owned(),
        arn,
        stream_arn,
    })
}

/// The exception an event stream carried. The SDK leaves the error code empty for exceptions
/// sent as events (kinesis-mock sends `ResourceInUseException` that way), so name the variant.
fn event_error_name(error: &SubscribeToShardEventStreamError) -> Option<&'static str> {
    let names = [
        (
            error.is_resource_in_use_exception(),
            "ResourceInUseException",
        ),
        (
            error.is_resource_not_found_exception(),
            "ResourceNotFoundException",
        ),
        (
            error.is_internal_failure_exception(),
            "InternalFailureException",
        ),
        (
            error.is_kms_throttling_exception(),
            "KMSThrottlingException",
        ),
        (error.is_kms_disabled_exception(), "KMSDisabledException"),
        (
            error.is_kms_invalid_state_exception(),
            "KMSInvalidStateException",
        ),
        (
            error.is_kms_access_denied_exception(),
            "KMSAccessDeniedException",
        ),
        (error.is_kms_not_found_exception(), "KMSNotFoundException"),
        (error.is_kms_opt_in_required(), "KMSOptInRequired"),
    ];
    names.into_iter().find(|(is, _)| *is).map(|(_, name)| name)
}

/// Reads one shard through a fan-out subscription, ahead of its processor. Dropping it ends the
/// subscription.
#[derive(Debug)]
pub struct FanOutFetcher(Feed);

impl FanOutFetcher {
    /// Subscribes `consumer_arn` to `shard` of `stream` from `start`. The SDK's own retries are
    /// turned off for these calls: this reader subscribes again with its own backoff, from just
    /// after the last record it delivered.
    pub fn start(
        client: aws_sdk_kinesis::Client,
        stream: Arc<str>,
        consumer_arn: Arc<str>,
        shard: ShardId,
        start: StartingPosition,
        range: Option<HashKeyRange>,
        config: FanOutConfig,
    ) -> Self {
        let listing = config.shared_listing();
        Self::start_sharing(
            client,
            stream,
            consumer_arn,
            shard,
            start,
            range,
            config,
            listing,
        )
    }

    /// [`start`](Self::start), with the stream's listing shared with the other subscriptions
    /// of the worker: however many shards are caught up, the stream is listed at most twice a
    /// `shard_end_check_interval`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start_sharing(
        client: aws_sdk_kinesis::Client,
        stream: Arc<str>,
        consumer_arn: Arc<str>,
        shard: ShardId,
        start: StartingPosition,
        range: Option<HashKeyRange>,
        config: FanOutConfig,
        listing: Arc<SharedShardListing>,
    ) -> Self {
        let client = without_retries(&client);
        let range_check = ShardRangeCheck::new(range, &stream);
        let limits = Limits {
            batches: config.queued_events,
            bytes: config.queued_max_bytes,
            records: config.queued_max_records,
        };
        FanOutFetcher(Feed::spawn(limits, |sender| {
            Subscriber {
                client,
                stream,
                consumer_arn,
                shard,
                start,
                range_check,
                continuation: None,
                last_end_check: Instant::now(),
                listing,
                config,
                sender,
            }
            .run()
        }))
    }

    /// The next batch (one event's records); `None` once the shard end was delivered or reading
    /// stopped on an error.
    pub async fn next(&mut self) -> Option<Result<Batch, FetchError>> {
        self.0.next().await
    }
}

/// Where a (re)subscription starts: `start` (the checkpoint, then the last record delivered), or,
/// for a `LATEST` subscription that has delivered nothing yet, just after the last event's
/// continuation sequence number, so records put between two subscriptions are not skipped.
fn subscribe_position(start: &StartingPosition, continuation: Option<&str>) -> SubscribePosition {
    let builder = match (start, continuation) {
        (StartingPosition::Latest, Some(continuation)) => SubscribePosition::builder()
            .r#type(ShardIteratorType::AfterSequenceNumber)
            .sequence_number(continuation),
        (start, _) => {
            // At the checkpointed record, as polling does: `user_records` drops what the
            // checkpoint covers, so the rest of an aggregate is never lost.
            let (kind, sequence, timestamp) = start.iterator();
            SubscribePosition::builder()
                .r#type(kind)
                .set_sequence_number(sequence.map(|s| s.to_string()))
                .set_timestamp(timestamp.map(DateTime::from))
        }
    };
    builder.build().expect("the type is set")
}

/// A shard as `ListShards` shows it.
enum Listed {
    Open,
    Closed,
    /// Not listed: past the retention period (or never there).
    Gone,
}

/// How one subscription ended.
enum Ended {
    /// The server ended it (as AWS does after 5 minutes): subscribe again.
    Expired,
    /// It failed or went silent; subscribe again after a backoff. Whether events had arrived.
    Failed { code: String, had_events: bool },
    /// Caught up on a closed shard: read the rest by polling.
    Closed,
    /// Shard end delivered, an unrecoverable error delivered, or nobody is reading any more.
    Done,
}

struct Subscriber {
    client: aws_sdk_kinesis::Client,
    stream: Arc<str>,
    consumer_arn: Arc<str>,
    shard: ShardId,
    /// Where to (re)subscribe: the starting position, then just after the last record delivered.
    start: StartingPosition,
    range_check: ShardRangeCheck,
    /// The last event's continuation sequence number: where a `LATEST` subscription that has
    /// delivered nothing yet resumes, so records put between two subscriptions are not skipped.
    continuation: Option<String>,
    last_end_check: Instant,
    listing: Arc<SharedShardListing>,
    config: FanOutConfig,
    sender: Sender,
}

impl Subscriber {
    async fn run(mut self) {
        let mut backoff = self.backoff();
        let mut last_subscribe: Option<Instant> = None;
        loop {
            if self.sender.is_closed() {
                return;
            }
            if let Some(last) = last_subscribe {
                tokio::time::sleep_until(last + MIN_SUBSCRIBE_INTERVAL).await;
            }
            last_subscribe = Some(Instant::now());
            match self.subscribe().await {
                Ended::Done => return,
                Ended::Closed => return self.drain().await,
                Ended::Expired => backoff = self.backoff(),
                Ended::Failed { code, had_events } => {
                    if had_events {
                        backoff = self.backoff();
                    }
                    let delay = backoff.next().unwrap_or(self.config.max_backoff);
                    tracing::debug!(shard = %self.shard, code, ?delay, "subscribing again");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    fn backoff(&self) -> impl Iterator<Item = Duration> + use<> {
        backoff(self.config.min_backoff, self.config.max_backoff)
    }

    async fn subscribe(&mut self) -> Ended {
        let subscribed = self
            .client
            .subscribe_to_shard()
            .consumer_arn(&*self.consumer_arn)
            .shard_id(self.shard.as_str())
            .starting_position(subscribe_position(
                &self.start,
                self.continuation.as_deref(),
            ))
            .send()
            .await;
        let mut events = match subscribed {
            Ok(output) => output.event_stream,
            Err(error) => {
                let (code, message) = code_and_message(&error);
                let transient = is_transient(&error, &code);
                return self.failed(code, message, transient, false).await;
            }
        };
        let mut had_events = false;
        loop {
            self.sender.room().await;
            let received = tokio::time::timeout(self.config.event_timeout, events.recv()).await;
            let event = match received {
                Err(_) => {
                    tracing::warn!(shard = %self.shard, timeout = ?self.config.event_timeout, "no event from the subscription; subscribing again");
                    return Ended::Failed {
                        code: "EventTimeout".into(),
                        had_events,
                    };
                }
                Ok(Ok(None)) => return Ended::Expired,
                Ok(Err(error)) => {
                    let (mut code, message) = code_and_message(&error);
                    if let Some(name) = error.as_service_error().and_then(event_error_name) {
                        code = name.to_owned();
                    }
                    let transient = is_transient(&error, &code);
                    return self.failed(code, message, transient, had_events).await;
                }
                Ok(Ok(Some(SubscribeToShardEventStream::SubscribeToShardEvent(event)))) => event,
                Ok(Ok(Some(other))) => {
                    tracing::debug!(shard = %self.shard, ?other, "unknown event ignored");
                    continue;
                }
            };
            had_events = true;
            let UserRecords {
                records,
                corrupt_aggregates,
                outside_shard_range,
            } = user_records(
                &self.shard,
                &self.start,
                &mut self.range_check,
                event.records(),
            );
            if let Some(last) = records.last() {
                self.start = StartingPosition::After(last.position());
            }
            if !event.continuation_sequence_number().is_empty() {
                self.continuation = Some(event.continuation_sequence_number().to_owned());
            }
            // AWS names the children in the last event of a closed shard (and no continuation).
            let children = child_shards(event.child_shards());
            let shard_end = (!children.is_empty()).then_some(children);
            if !records.is_empty() || shard_end.is_some() {
                let end = shard_end.is_some();
                let batch = Batch {
                    records,
                    millis_behind_latest: Some(event.millis_behind_latest()),
                    shard_end,
                    corrupt_aggregates,
                    outside_shard_range,
                };
                if self.sender.send(Ok(batch)).await.is_err() || end {
                    return Ended::Done;
                }
            } else if event.records().is_empty() && self.shard_end_check_due() {
                match self.listed_state().await {
                    Some(Listed::Open) | None => {}
                    Some(Listed::Closed) => return Ended::Closed,
                    Some(Listed::Gone) => {
                        // kinesis-mock subscribes to a shard it does not have; AWS refuses with
                        // this error, which the shard's consumer judges.
                        let message = "the shard is not in the stream's listing".to_owned();
                        return self
                            .failed("ResourceNotFoundException".into(), message, false, true)
                            .await;
                    }
                }
            } else if self.sender.is_closed() {
                return Ended::Done;
            }
        }
    }

    async fn failed(
        &self,
        code: String,
        message: String,
        transient: bool,
        had_events: bool,
    ) -> Ended {
        if transient {
            return Ended::Failed { code, had_events };
        }
        let error = FetchError {
            shard: self.shard.clone(),
            code,
            message,
        };
        let _ = self.sender.send(Err(error)).await;
        Ended::Done
    }

    fn shard_end_check_due(&mut self) -> bool {
        let now = Instant::now();
        if now.duration_since(self.last_end_check) < self.config.shard_end_check_interval {
            return false;
        }
        self.last_end_check = now;
        true
    }

    /// What `ListShards` says of the shard; `None` when the listing failed (taken as open).
    async fn listed_state(&self) -> Option<Listed> {
        match self.listing.get(&self.client, &self.stream).await {
            Ok(shards) => Some(match shards.iter().find(|s| s.shard_id == self.shard) {
                Some(shard) if shard.open => Listed::Open,
                Some(_) => Listed::Closed,
                None => Listed::Gone,
            }),
            Err(error) => {
                tracing::debug!(shard = %self.shard, error, "ListShards failed; the shard is taken as open");
                None
            }
        }
    }

    /// Reads the rest of a closed shard by polling, which ends with its children.
    async fn drain(self) {
        tracing::info!(shard = %self.shard, "the shard is closed; reading its rest by polling");
        let mut fetcher = ShardFetcher::start(
            self.client.clone(),
            self.stream.clone(),
            self.shard.clone(),
            self.start.clone(),
            self.range_check.range(),
            self.config.drain.clone(),
        );
        while let Some(batch) = fetcher.next().await {
            let last = batch.as_ref().map_or(true, |b| b.shard_end.is_some());
            if self.sender.send(batch).await.is_err() || last {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use kinesis_aggregation::SequenceNumber;

    use super::*;
    use crate::record::Position;

    #[test]
    fn a_checkpoint_resubscribes_at_its_record() {
        let start = StartingPosition::After(Position {
            sequence_number: SequenceNumber::new("4968").unwrap(),
            sub_sequence_number: 3,
        });
        // The continuation is not used once records were delivered: the position is exact.
        let position = subscribe_position(&start, Some("5000"));
        assert_eq!(position.r#type(), &ShardIteratorType::AtSequenceNumber);
        assert_eq!(position.sequence_number(), Some("4968"));
    }

    #[test]
    fn latest_resumes_after_the_continuation_once_known() {
        let first = subscribe_position(&StartingPosition::Latest, None);
        assert_eq!(first.r#type(), &ShardIteratorType::Latest);
        assert_eq!(first.sequence_number(), None);
        let again = subscribe_position(&StartingPosition::Latest, Some("5000"));
        assert_eq!(again.r#type(), &ShardIteratorType::AfterSequenceNumber);
        assert_eq!(again.sequence_number(), Some("5000"));
    }

    #[test]
    fn trim_horizon_and_timestamps_keep_their_start() {
        let horizon = subscribe_position(&StartingPosition::TrimHorizon, Some("5000"));
        assert_eq!(horizon.r#type(), &ShardIteratorType::TrimHorizon);
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let timestamp = subscribe_position(&StartingPosition::AtTimestamp(at), Some("5000"));
        assert_eq!(timestamp.r#type(), &ShardIteratorType::AtTimestamp);
        assert_eq!(timestamp.timestamp(), Some(&DateTime::from(at)));
    }
}
