//! The Kinesis producer: the KPL's shard-aware aggregation, `PutRecords` collection, per-record
//! retry, rate limiting and backpressure, in Rust.
//!
//! This crate is being built (the producer issue); today the workspace holds its place. The
//! aggregated-record format it will use is [`kinesis_aggregation`].

pub use kinesis_aggregation;
