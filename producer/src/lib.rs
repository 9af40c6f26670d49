//! The Kinesis producer: the KPL's design in Rust, with backpressure and per-record outcomes.
//!
//! ```text
//!  put(record) ── validate, hash key, wait for room (MaxOutstandingRecords/Bytes, PUT_QUEUE_CAPACITY)
//!      │
//!      ▼                        one pipeline task owns everything below
//!  shard map ──► per-shard aggregator ──► per-shard queue ──► collector ──► PutRecords (≤ MaxConnections,
//!                                                                          ≤ MaxInFlightBytes)
//!  (ListShards)   (AggregationMaxSize/     (rate limiter:      (≤ 500 records,        │
//!                  Count, RecordMax-        RateLimit% of the   ≤ 5 MiB, sent when     │
//!                  BufferedTime)            shard's limits)     full or due)           ▼
//!                                               ▲                        per-entry results
//!                                               └── retry (jittered backoff, RecordTtl) ◄─┤
//!                                                                                          ▼
//!                                   PutHandle ◄── outcome: shard, sequence number, sub-sequence, attempts
//! ```
//!
//! - The pipeline task appends records to aggregates and copies each finished one into a buffer of
//!   its exact size; each request's own task seals them (MD5) and builds the `PutRecords` call,
//!   so that work spreads over the runtime. One outcome is shared by the user records of a Kinesis
//!   record; each handle reads its own from a slot in a block of 64 ([`PutHandle`]).
//! - Records are routed by MD5 of the partition key (or the explicit hash key) through the
//!   stream's shard map and aggregated per predicted shard; each aggregate carries its first
//!   record's hash key as explicit hash key, so it lands where predicted. After a split or merge
//!   the map is stale: a single record that lands on another shard (a child) is a success, and the
//!   map is listed again; an aggregate that lands on a shard not owning all its records is not
//!   (a KCL drops it there whole), so its records wait for the new map and go again, grouped by
//!   it, as the KPL's "Wrong Shard" retries do (metric [`metrics::WRONG_SHARD`]). Queued
//!   aggregates of a closed shard are split by the new map before they are sent. Without a map
//!   (`ListShards` failing at start) records go on their own within one shard's rate limits, and
//!   the listing is retried after 1 s doubling to 30 s.
//! - `PutRecords` failures are retried per entry (`FailedRecordCount`, `ErrorCode`); whole-request
//!   failures (throttling, 5xx, timeouts, resets) retry the whole request, paced for the whole
//!   stream by a request circuit: after three in a row one request at a time goes, about one a
//!   second, until one is answered, so an outage costs at most 60 requests in 40 s however many
//!   records and shards wait (the [`metrics::REQUEST_CIRCUIT_OPENED`] counter). A record not put within
//!   `RecordTtl` fails with [`PutError::Expired`], which gives the record back with every attempt.
//!   Errors retrying cannot fix (stream not found, access denied) fail at once.
//! - `put` waits for room; [`Producer::try_put`] gives the record back when full. Memory is bounded:
//!   by the outstanding limits, and `MaxInFlightBytes` for the requests in flight (whose bodies
//!   cost more than the records).
//! - [`ProducerConfig::ordered_per_shard`] keeps each partition key's records in `put` order even
//!   under throttling, at a cost in throughput.
//! - Metrics use the KPL's names ([`metrics`]) through the `metrics` crate; requests have
//!   `tracing` spans.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use kinesis_producer::{Producer, PutError};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let config = aws_config::load_from_env().await;
//! let producer = Producer::builder(aws_sdk_kinesis::Client::new(&config), "my-stream")
//!     .record_max_buffered_time(Duration::from_millis(100))
//!     .build()
//!     .await?; // lists the shards: fails if the stream is missing
//!
//! // `put` waits only for buffer space; the handle resolves when the record is stored.
//! let handle = producer.put_data("device-42", &b"temperature=21.5"[..]).await?;
//! match handle.await {
//!     Ok(outcome) => println!("{} {}", outcome.shard_id, outcome.sequence_number),
//!     // RecordTtl passed: the record is given back with every attempt.
//!     Err(PutError::Expired { record, attempts }) => {
//!         eprintln!("{} not put after {} attempts", record.partition_key(), attempts.len())
//!     }
//!     Err(other) => eprintln!("{other}"),
//! }
//! producer.shutdown().await?; // flushes everything buffered, then stops
//! # Ok(())
//! # }
//! ```

// The README (the crates.io page) is compiled and run as doc tests too, so its example stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

mod circuit;
mod completion;
mod config;
mod entry;
mod limiter;
pub mod metrics;
mod outcome;
mod pipeline;
mod producer;
mod shard_map;
mod shards;

pub use config::{ConfigError, MAX_COLLECTION_COUNT, MAX_COLLECTION_SIZE, ProducerConfig};
pub use kinesis_aggregation::{self, SequenceNumber, ShardId, UserRecord, ValidationError};
pub use kinesis_sdk_support::CredentialsCheckError;
pub use limiter::{ShardLimiter, TokenBucket};
pub use outcome::{Attempt, AttemptError, ErrorClass, PutError, PutOutcome, classify};
pub use producer::{
    BuildError, Closed, PUT_QUEUE_CAPACITY, Producer, ProducerBuilder, PutHandle, SubmitError,
};
pub use shard_map::{ShardMap, ShardMapError, ShardRange};
pub use shards::{ShardListError, load_shard_map};
