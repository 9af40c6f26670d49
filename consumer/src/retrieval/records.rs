//! From the Kinesis records of a `GetRecords` response or a `SubscribeToShard` event to the user
//! records a processor gets: deaggregated, and without what the starting position already covers.

use std::time::SystemTime;

use kinesis_aggregation::{Deaggregator, KinesisRecord, RecordFormat, SequenceNumber, ShardId};

use super::ChildShard;
use super::start::StartingPosition;
use crate::record::Record;

/// The user records in `records`, in order, minus those `start` covers; and how many Kinesis
/// records looked like aggregates but were corrupt (delivered as plain records).
pub(super) fn user_records(
    shard: &ShardId,
    start: &StartingPosition,
    records: &[aws_sdk_kinesis::types::Record],
) -> (Vec<Record>, usize) {
    let mut deaggregator = Deaggregator::new();
    let mut user_records = Vec::new();
    let mut delivered = Vec::with_capacity(records.len());
    let mut corrupt_aggregates = 0;
    for record in records {
        let Ok(sequence_number) = SequenceNumber::new(record.sequence_number()) else {
            tracing::warn!(%shard, sequence = record.sequence_number(), "record with an invalid sequence number skipped");
            continue;
        };
        let arrival = record
            .approximate_arrival_timestamp()
            .and_then(|t| SystemTime::try_from(*t).ok());
        let kinesis_record = KinesisRecord::new(
            record.partition_key().unwrap_or_default(),
            record.data().clone().into_inner(),
        );
        user_records.clear();
        if let RecordFormat::PassedThrough(why) =
            deaggregator.deaggregate_into(&kinesis_record, &mut user_records)
        {
            corrupt_aggregates += 1;
            tracing::warn!(%shard, sequence = %sequence_number, %why, "corrupt aggregate delivered as a plain record");
        }
        for user_record in user_records.drain(..) {
            if start.skips(
                &sequence_number,
                user_record.sub_sequence_number,
                user_record.aggregated,
            ) {
                continue;
            }
            delivered.push(Record {
                partition_key: user_record.partition_key,
                explicit_hash_key: user_record.explicit_hash_key,
                data: user_record.data,
                sequence_number: sequence_number.clone(),
                sub_sequence_number: user_record.sub_sequence_number,
                aggregated: user_record.aggregated,
                approximate_arrival: arrival,
            });
        }
    }
    (delivered, corrupt_aggregates)
}

/// The children a response or event names (empty when the server does not name them).
pub(super) fn child_shards(children: &[aws_sdk_kinesis::types::ChildShard]) -> Vec<ChildShard> {
    children
        .iter()
        .map(|child| ChildShard {
            shard_id: ShardId::from(child.shard_id()),
            parent_shards: child
                .parent_shards()
                .iter()
                .map(|p| ShardId::from(p.as_str()))
                .collect(),
        })
        .collect()
}
