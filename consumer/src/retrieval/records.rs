//! From the Kinesis records of a `GetRecords` response or a `SubscribeToShard` event to the user
//! records a processor gets: deaggregated, and without what the starting position already covers.

use std::sync::Arc;
use std::time::SystemTime;

use kinesis_aggregation::{
    DeaggregatedRecord, Deaggregator, HashKey, KinesisRecord, RecordFormat, SequenceNumber, ShardId,
};

use super::ChildShard;
use super::start::StartingPosition;
use crate::lease::HashKeyRange;
use crate::metrics as m;
use crate::record::Record;

/// The Java KCL's rule for the aggregates of a shard: one holding a user record whose hash key
/// (explicit hash key, else MD5 of the partition key) is outside the shard's range is dropped
/// whole (`AggregatorUtil.deaggregate` with the shard's range).
///
/// Such an aggregate was built for a parent shard with a shard map from before a split or merge
/// and landed on a child. A KPL-style producer (the KPL, and ours) puts its records again, so
/// they are read where they belong; delivering the stale copy too would deliver them twice, and
/// other KCL consumers of the stream never see it. For streams written by producers that do not
/// put such records again, [`crate::SchedulerBuilder::deliver_aggregates_outside_shard_range`]
/// turns the rule off.
#[derive(Debug, Clone)]
pub(crate) struct ShardRangeCheck {
    /// `None`: the range is not known (a lease without one) or the rule is off: nothing dropped.
    range: Option<HashKeyRange>,
    stream: Arc<str>,
    warned: bool,
    /// The hash keys of the aggregate being checked (kept to reuse its allocation).
    hashes: Vec<HashKey>,
}

impl ShardRangeCheck {
    /// Drops aggregates with a record outside `range` (of a shard of `stream`); with `None`,
    /// drops nothing.
    pub(crate) fn new(range: Option<HashKeyRange>, stream: &Arc<str>) -> Self {
        ShardRangeCheck {
            range,
            stream: stream.clone(),
            warned: false,
            hashes: Vec::new(),
        }
    }

    /// The range checked against, if any.
    pub(crate) fn range(&self) -> Option<HashKeyRange> {
        self.range
    }

    /// Whether the user records of one aggregate go: false when one is outside the range.
    fn keeps(
        &mut self,
        shard: &ShardId,
        sequence: &SequenceNumber,
        records: &[DeaggregatedRecord],
    ) -> bool {
        let Some(range) = self.range else { return true };
        let inside = |key: HashKey| key >= range.starting && key <= range.ending;
        // The partition keys are hashed together (in SIMD lanes): one MD5 at a time would
        // cost as much as the rest of deaggregating a record.
        self.hashes.clear();
        kinesis_aggregation::hash_keys(
            records
                .iter()
                .filter(|r| r.explicit_hash_key.is_none())
                .map(|r| r.partition_key.as_bytes()),
            &mut self.hashes,
        );
        let mut hashes = self.hashes.iter();
        let outside = records.iter().find(|r| {
            let key = match &r.explicit_hash_key {
                Some(key) => key.as_str().parse::<HashKey>().ok(),
                None => hashes.next().copied(),
            };
            !key.is_some_and(inside)
        });
        let Some(outside) = outside else { return true };
        metrics::counter!(m::RECORDS_OUTSIDE_SHARD_RANGE, "stream" => self.stream.to_string(), "shard" => shard.to_string())
            .increment(records.len() as u64);
        if std::mem::replace(&mut self.warned, true) {
            tracing::debug!(%shard, %sequence, user_records = records.len(), "aggregate with a record outside the shard's range dropped");
        } else {
            tracing::warn!(
                %shard, %sequence, user_records = records.len(), partition_key = %outside.partition_key,
                "aggregate with a record outside the shard's hash-key range dropped, as the Java KCL \
                 does (built before a reshard; a KPL-style producer put its records again); \
                 logged once per shard"
            );
        }
        false
    }
}

/// What [`user_records`] made of a response's Kinesis records.
pub(super) struct UserRecords {
    /// The user records, in order, minus those the starting position covers.
    pub records: Vec<Record>,
    /// Kinesis records that looked like aggregates but were corrupt (delivered as plain records).
    pub corrupt_aggregates: usize,
    /// User records of aggregates dropped by the [`ShardRangeCheck`].
    pub outside_shard_range: usize,
}

/// The user records in `records`, in order, minus those `start` covers and those of aggregates
/// `check` drops.
pub(super) fn user_records(
    shard: &ShardId,
    start: &StartingPosition,
    check: &mut ShardRangeCheck,
    records: &[aws_sdk_kinesis::types::Record],
) -> UserRecords {
    let mut deaggregator = Deaggregator::new();
    let mut user_records = Vec::new();
    let mut delivered = Vec::with_capacity(records.len());
    let mut corrupt_aggregates = 0;
    let mut outside_shard_range = 0;
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
        match deaggregator.deaggregate_into(&kinesis_record, &mut user_records) {
            RecordFormat::PassedThrough(why) => {
                corrupt_aggregates += 1;
                tracing::warn!(%shard, sequence = %sequence_number, %why, "corrupt aggregate delivered as a plain record");
            }
            RecordFormat::Aggregated { .. }
                if !check.keeps(shard, &sequence_number, &user_records) =>
            {
                outside_shard_range += user_records.len();
                continue;
            }
            _ => {}
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
    UserRecords {
        records: delivered,
        corrupt_aggregates,
        outside_shard_range,
    }
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
            hash_key_range: child.hash_key_range().and_then(hash_key_range),
        })
        .collect()
}

/// A shard's range as `ListShards` or `ChildShards` give it; `None` if a key is not a hash key.
pub(crate) fn hash_key_range(range: &aws_sdk_kinesis::types::HashKeyRange) -> Option<HashKeyRange> {
    Some(HashKeyRange {
        starting: range.starting_hash_key().parse().ok()?,
        ending: range.ending_hash_key().parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_kinesis::primitives::{Blob, DateTime};
    use kinesis_aggregation::{Aggregator, UserRecord};

    const HALF: u128 = u128::MAX / 2;

    fn stream() -> Arc<str> {
        Arc::from("a-stream")
    }

    fn kinesis_record(
        sequence: &str,
        partition_key: &str,
        data: Vec<u8>,
    ) -> aws_sdk_kinesis::types::Record {
        aws_sdk_kinesis::types::Record::builder()
            .sequence_number(sequence)
            .partition_key(partition_key)
            .data(Blob::new(data))
            .approximate_arrival_timestamp(DateTime::from_secs(0))
            .build()
            .unwrap()
    }

    /// An aggregate of records with these explicit hash keys, as a Kinesis record.
    fn aggregate(sequence: &str, keys: &[u128]) -> aws_sdk_kinesis::types::Record {
        let mut aggregator = Aggregator::default();
        for (i, key) in keys.iter().enumerate() {
            let record = UserRecord::new(format!("key-{i}"), vec![i as u8])
                .unwrap()
                .with_hash_key(HashKey(*key));
            aggregator.try_add(&record).unwrap();
        }
        let record = aggregator.finish().unwrap();
        kinesis_record(sequence, &record.partition_key, record.data.to_vec())
    }

    fn read(
        check: &mut ShardRangeCheck,
        records: &[aws_sdk_kinesis::types::Record],
    ) -> (Vec<(String, u64)>, usize) {
        let out = user_records(
            &ShardId::from("shardId-000000000002"),
            &StartingPosition::TrimHorizon,
            check,
            records,
        );
        let positions = out
            .records
            .iter()
            .map(|r| (r.sequence_number.to_string(), r.sub_sequence_number))
            .collect();
        (positions, out.outside_shard_range)
    }

    /// The lower half of the key space (the first child of a split at the midpoint).
    fn lower_half() -> Option<HashKeyRange> {
        Some(HashKeyRange {
            starting: HashKey(0),
            ending: HashKey(HALF),
        })
    }

    #[test]
    fn an_aggregate_with_a_record_outside_the_range_is_dropped_whole() {
        let records = [
            aggregate("1", &[1, 2, HALF]),
            // Its first record is in range (where it was routed to), its second is not.
            aggregate("2", &[5, HALF + 1, 7]),
            kinesis_record("3", "plain", b"plain records are never dropped".to_vec()),
            aggregate("4", &[0, 9]),
        ];
        let mut check = ShardRangeCheck::new(lower_half(), &stream());
        let (delivered, dropped) = read(&mut check, &records);
        assert_eq!(
            delivered,
            [("1", 0), ("1", 1), ("1", 2), ("3", 0), ("4", 0), ("4", 1)]
                .map(|(s, n)| (s.to_owned(), n))
        );
        assert_eq!(dropped, 3);
        assert!(check.warned);
    }

    #[test]
    fn partition_keys_are_hashed_like_the_kpl_and_without_a_range_nothing_is_dropped() {
        // Without explicit hash keys, a record's key is the MD5 of its partition key.
        let low = (0..)
            .map(|i| format!("pk-{i}"))
            .find(|k| HashKey::of_partition_key(k).0 <= HALF)
            .unwrap();
        let high = (0..)
            .map(|i| format!("pk-{i}"))
            .find(|k| HashKey::of_partition_key(k).0 > HALF)
            .unwrap();
        let mut aggregator = Aggregator::default();
        for key in [&low, &high] {
            aggregator
                .try_add(&UserRecord::new(key.as_str(), &b"x"[..]).unwrap())
                .unwrap();
        }
        let blob = aggregator.finish().unwrap();
        let records = [kinesis_record("1", &blob.partition_key, blob.data.to_vec())];
        assert_eq!(
            read(&mut ShardRangeCheck::new(lower_half(), &stream()), &records).1,
            2
        );
        let upper = Some(HashKeyRange {
            starting: HashKey(HALF + 1),
            ending: HashKey::MAX,
        });
        assert_eq!(
            read(&mut ShardRangeCheck::new(upper, &stream()), &records).1,
            2
        );
        let whole = Some(HashKeyRange {
            starting: HashKey(0),
            ending: HashKey::MAX,
        });
        assert_eq!(
            read(&mut ShardRangeCheck::new(whole, &stream()), &records),
            (vec![("1".into(), 0), ("1".into(), 1)], 0)
        );
        assert_eq!(
            read(&mut ShardRangeCheck::new(None, &stream()), &records).1,
            0
        );
    }
}
