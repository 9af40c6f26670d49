//! Where a shard is read from, and how that maps onto `GetShardIterator`.

use std::time::SystemTime;

use aws_sdk_kinesis::types::ShardIteratorType;
use kinesis_aggregation::SequenceNumber;

use crate::record::Position;

/// Where reading a shard starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartingPosition {
    /// The oldest record in the shard.
    TrimHorizon,
    /// Just after the newest record: only records put from now on.
    Latest,
    /// The first record that arrived at or after this time.
    AtTimestamp(SystemTime),
    /// Just after this position (a checkpoint): the rest of an aggregate, then the next records.
    After(Position),
}

impl StartingPosition {
    /// The iterator type and sequence number to ask `GetShardIterator` for.
    ///
    /// A checkpoint inside an aggregate must resume at the rest of that aggregate, and a plain
    /// record's checkpoint (sub-sequence 0) looks the same as a checkpoint at an aggregate's first
    /// sub-record. So reading resumes *at* the checkpointed sequence number and
    /// [`StartingPosition::skips`] drops what the checkpoint already covers: never a sub-record
    /// lost, never one re-delivered.
    pub(crate) fn iterator(
        &self,
    ) -> (
        ShardIteratorType,
        Option<&SequenceNumber>,
        Option<SystemTime>,
    ) {
        match self {
            StartingPosition::TrimHorizon => (ShardIteratorType::TrimHorizon, None, None),
            StartingPosition::Latest => (ShardIteratorType::Latest, None, None),
            StartingPosition::AtTimestamp(at) => (ShardIteratorType::AtTimestamp, None, Some(*at)),
            StartingPosition::After(position) => (
                ShardIteratorType::AtSequenceNumber,
                Some(&position.sequence_number),
                None,
            ),
        }
    }

    /// Whether a record read from this starting point is already covered by it.
    pub(crate) fn skips(
        &self,
        sequence_number: &SequenceNumber,
        sub_sequence_number: u64,
        aggregated: bool,
    ) -> bool {
        match self {
            StartingPosition::After(position) => {
                sequence_number < &position.sequence_number
                    || (sequence_number == &position.sequence_number
                        && (!aggregated || sub_sequence_number <= position.sub_sequence_number))
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after(seq: &str, sub: u64) -> StartingPosition {
        StartingPosition::After(Position {
            sequence_number: SequenceNumber::new(seq).unwrap(),
            sub_sequence_number: sub,
        })
    }

    #[test]
    fn a_checkpoint_inside_an_aggregate_resumes_at_the_next_sub_record() {
        let seq = |s| SequenceNumber::new(s).unwrap();
        let start = after("100", 2);
        assert!(start.skips(&seq("100"), 0, true));
        assert!(start.skips(&seq("100"), 2, true));
        assert!(!start.skips(&seq("100"), 3, true));
        assert!(!start.skips(&seq("101"), 0, true));
        assert!(!start.skips(&seq("101"), 0, false));
        assert!(start.skips(&seq("99"), 7, true));
    }

    #[test]
    fn a_checkpoint_at_a_plain_record_resumes_after_it() {
        let seq = |s| SequenceNumber::new(s).unwrap();
        let start = after("100", 0);
        assert!(start.skips(&seq("100"), 0, false));
        // The same position at an aggregate's first sub-record keeps the others.
        assert!(start.skips(&seq("100"), 0, true));
        assert!(!start.skips(&seq("100"), 1, true));
        assert_eq!(start.iterator().0, ShardIteratorType::AtSequenceNumber);
    }

    #[test]
    fn sentinel_positions_skip_nothing() {
        let seq = SequenceNumber::new("1").unwrap();
        for start in [
            StartingPosition::TrimHorizon,
            StartingPosition::Latest,
            StartingPosition::AtTimestamp(SystemTime::UNIX_EPOCH),
        ] {
            assert!(!start.skips(&seq, 0, false));
        }
    }
}
