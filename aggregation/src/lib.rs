//! The KPL aggregated-record format: pack many user records into one Kinesis record, and unpack them.
//!
//! Byte-compatible with the Kinesis Producer Library, the Kinesis Client Library and the
//! `aws-kinesis-agg` packages. An aggregated record is
//!
//! ```text
//! F3 89 9A C2  ‖  protobuf AggregatedRecord  ‖  MD5(protobuf bytes)
//! ```
//!
//! where the protobuf holds a table of partition keys, a table of explicit hash keys, and the user
//! records, each pointing into the tables (see [`proto`]). This crate is pure code: no I/O, no async.
//!
//! - [`Aggregator`] packs [`UserRecord`]s with exact size accounting and emits [`KinesisRecord`]s.
//! - [`deaggregate`] and [`Deaggregator`] unpack any Kinesis record, passing through plain or corrupt
//!   ones as plain records; [`AggregateView`] reads an aggregate without copying.
//! - [`hash_key`], [`HashKey`], [`PartitionKey`], [`ExplicitHashKey`] and the `validate_*` functions
//!   carry the Kinesis rules for keys and data.
//!
//! ```
//! use kinesis_aggregation::{Aggregator, Full, KinesisRecord, UserRecord, deaggregate};
//!
//! let mut aggregator = Aggregator::default(); // 51,200 bytes at most, like the KPL
//! let mut out: Vec<KinesisRecord> = Vec::new();
//! for i in 0..1_000u32 {
//!     let record = UserRecord::new(format!("device-{}", i % 10), i.to_be_bytes().to_vec())?;
//!     // Full: this aggregate is done; the record opens the next one.
//!     if let Err(Full::Size { .. } | Full::Count { .. }) = aggregator.try_add(&record) {
//!         out.extend(aggregator.finish());
//!         aggregator.try_add(&record)?;
//!     }
//! }
//! out.extend(aggregator.finish());
//!
//! let user_records: usize = out.iter().map(|r| deaggregate(r).0.len()).sum();
//! assert_eq!(user_records, 1_000);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

// The README (the crates.io page) is compiled and run as doc tests too, so its example stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

mod aggregator;
mod deaggregator;
mod hash_keys;
mod ids;
mod key;
pub mod proto;
mod record;
mod wire;

pub use aggregator::{
    AGGREGATE_OVERHEAD, Aggregator, DEFAULT_MAX_AGGREGATE_COUNT, DEFAULT_MAX_AGGREGATE_SIZE, Full,
    LimitError, MIN_MAX_AGGREGATE_SIZE, UnsealedRecord,
};
pub use deaggregator::{
    AggregateView, Corruption, DeaggregatedRecord, DeaggregationStats, Deaggregator, Malformed,
    NotAggregated, RecordFormat, SubRecordRef, Utf8Bytes, deaggregate, deaggregate_into,
};
pub use hash_keys::hash_keys;
pub use ids::{InvalidSequenceNumber, SequenceNumber, ShardId};
pub use key::{
    ExplicitHashKey, HashKey, MAX_PARTITION_KEY_CHARS, MAX_RECORD_DATA_SIZE, PartitionKey,
    ValidationError, hash_key, validate_data, validate_partition_key,
};
pub use record::{KinesisRecord, UserRecord};
pub use wire::WireError;

/// The four bytes that open every aggregated record.
pub const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];

/// The size of the MD5 digest that closes every aggregated record.
pub const DIGEST_SIZE: usize = 16;
