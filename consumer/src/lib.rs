//! The Kinesis consumer: a KCL-compatible worker with DynamoDB leases, checkpoints, balancing,
//! zombie protection and parent-before-child resharding.
//!
//! This crate is being built (the consumer issue); today the workspace holds its place. Records
//! are deaggregated with [`kinesis_aggregation`].

pub use kinesis_aggregation;
