//! Shared helpers of the producer's integration tests: read a stream back and index what is there.

#![allow(dead_code)]

use std::collections::HashMap;

use aws_sdk_kinesis::types::Shard;
use kinesis_aggregation::HashKey;
use kinesis_test_support::kcl_view::StoredRecord;

/// One user record as read back from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadBack {
    pub shard: String,
    pub partition_key: String,
    pub data: Vec<u8>,
}

/// Every shard of the stream, open or closed.
pub async fn list_shards(client: &aws_sdk_kinesis::Client, stream: &str) -> Vec<Shard> {
    kinesis_test_support::kcl_view::list_all_shards(client, stream).await
}

/// How many user records the stream holds, duplicates included ([`read_stream`]).
pub async fn count_stored(client: &aws_sdk_kinesis::Client, stream: &str) -> usize {
    read_stream(client, stream)
        .await
        .values()
        .map(Vec::len)
        .sum()
}

/// Reads every shard from TRIM_HORIZON to its current end and deaggregates: a map from
/// (sequence number, sub-sequence number) to the user records found there (a list, so duplicates
/// show). Everything stored, including aggregates a KCL would drop.
pub async fn read_stream(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
) -> HashMap<(String, Option<u64>), Vec<ReadBack>> {
    let view = kinesis_test_support::kcl_view::read_as_java_kcl(client, stream).await;
    by_position(view.delivered.into_iter().chain(view.dropped))
}

/// Stored records by (sequence number, sub-sequence number).
fn by_position(
    records: impl IntoIterator<Item = StoredRecord>,
) -> HashMap<(String, Option<u64>), Vec<ReadBack>> {
    let mut found: HashMap<(String, Option<u64>), Vec<ReadBack>> = HashMap::new();
    for r in records {
        found
            .entry((r.sequence_number, r.sub_sequence_number))
            .or_default()
            .push(ReadBack {
                shard: r.shard,
                partition_key: r.partition_key,
                data: r.data,
            });
    }
    found
}

/// The hash-key range of every shard.
pub async fn shard_ranges(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
) -> HashMap<String, (u128, u128)> {
    list_shards(client, stream)
        .await
        .iter()
        .map(|s| {
            let r = s.hash_key_range().unwrap();
            (
                s.shard_id().to_owned(),
                (
                    r.starting_hash_key().parse().unwrap(),
                    r.ending_hash_key().parse().unwrap(),
                ),
            )
        })
        .collect()
}

/// Whether `partition_key` hashes into `shard`'s range.
pub fn owns(ranges: &HashMap<String, (u128, u128)>, shard: &str, partition_key: &str) -> bool {
    let (start, end) = ranges[shard];
    let hash = HashKey::of_partition_key(partition_key).0;
    start <= hash && hash <= end
}

/// Reads the stream back as a Java KCL would ([`kinesis_test_support::kcl_view`]) and checks that
/// it delivers exactly the acknowledged records: each at the position its outcome gave (sequence
/// and sub-sequence number), once, with its partition key and data. Aggregates such a consumer
/// drops (stale copies of records put again after a reshard) may be stored besides. Returns where
/// each record was found, in the order of `records`.
pub async fn expect_each_stored_once(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    records: &[kinesis_producer::UserRecord],
    outcomes: &[kinesis_producer::PutOutcome],
) -> Vec<ReadBack> {
    let view = kinesis_test_support::kcl_view::read_as_java_kcl(client, stream).await;
    assert_eq!(
        view.delivered.len(),
        records.len(),
        "a KCL reads exactly the records put ({} more stored in aggregates it drops)",
        view.dropped.len()
    );
    let mut contents = by_position(view.delivered);
    records
        .iter()
        .zip(outcomes)
        .map(|(record, outcome)| {
            let position = (
                outcome.sequence_number.to_string(),
                outcome.sub_sequence_number,
            );
            let mut found = contents.remove(&position).unwrap_or_else(|| {
                panic!("acknowledged {position:?} not delivered, or acknowledged twice")
            });
            assert_eq!(found.len(), 1, "{position:?} stored {} times", found.len());
            let found = found.remove(0);
            assert_eq!(found.partition_key, record.partition_key());
            assert_eq!(found.data, record.data().to_vec());
            found
        })
        .collect()
}
