//! What a record processor receives.

use std::time::SystemTime;

use bytes::Bytes;
use kinesis_aggregation::{SequenceNumber, Utf8Bytes};

/// One user record: a plain Kinesis record, or one record out of a KPL aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The user record's partition key.
    pub partition_key: Utf8Bytes,
    /// The user record's explicit hash key, when it came out of an aggregate that had one.
    pub explicit_hash_key: Option<Utf8Bytes>,
    /// The data.
    pub data: Bytes,
    /// The sequence number of the Kinesis record that carried it.
    pub sequence_number: SequenceNumber,
    /// Its index in that Kinesis record's aggregate; 0 for a plain record.
    pub sub_sequence_number: u64,
    /// Whether it came out of an aggregate.
    pub aggregated: bool,
    /// When Kinesis accepted the carrying record.
    pub approximate_arrival: Option<SystemTime>,
}

impl Record {
    /// The record's position, as a checkpoint would store it.
    pub fn position(&self) -> Position {
        Position {
            sequence_number: self.sequence_number.clone(),
            sub_sequence_number: self.sub_sequence_number,
        }
    }
}

/// A position in a shard: a Kinesis record's sequence number and a user record's index in it.
/// Ordered by sequence number, then sub-sequence number.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// The Kinesis record's sequence number.
    pub sequence_number: SequenceNumber,
    /// The user record's index in it (0 for a plain record).
    pub sub_sequence_number: u64,
}
