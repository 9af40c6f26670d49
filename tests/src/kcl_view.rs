//! A stream as a Java KCL consumer would see it: every shard read from TRIM_HORIZON to its current
//! end and deaggregated by the Java KCL's rule (`AggregatorUtil.deaggregate` with the shard's
//! range), which drops an aggregate whole when one of its user records has a hash key (explicit
//! hash key, else MD5 of the partition key) outside the range of the shard it was read from.
//!
//! Written here from the rule, not with the consumer crate's code, so the producer's tests check
//! its output against the rule itself.

use aws_sdk_kinesis::types::{Shard, ShardIteratorType};
use kinesis_aggregation::{HashKey, KinesisRecord, deaggregate};

/// One user record as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    /// The shard it was read from.
    pub shard: String,
    /// The sequence number of its Kinesis record.
    pub sequence_number: String,
    /// Its index in an aggregate; `None` for a plain record.
    pub sub_sequence_number: Option<u64>,
    /// Its partition key.
    pub partition_key: String,
    /// Its data.
    pub data: Vec<u8>,
}

/// What a stream holds, split by the Java KCL's rule.
#[derive(Debug, Default)]
pub struct KclView {
    /// What a Java KCL delivers, in shard order, then stream order within each shard.
    pub delivered: Vec<StoredRecord>,
    /// The user records of aggregates it drops (stored, never delivered).
    pub dropped: Vec<StoredRecord>,
}

/// Every shard of the stream, open or closed.
pub async fn list_all_shards(client: &aws_sdk_kinesis::Client, stream: &str) -> Vec<Shard> {
    let mut shards = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let request = match &next {
            Some(token) => client.list_shards().next_token(token),
            None => client.list_shards().stream_name(stream),
        };
        let page = request.send().await.expect("ListShards");
        shards.extend(page.shards().iter().cloned());
        next = page.next_token().map(str::to_owned);
        if next.is_none() {
            return shards;
        }
    }
}

/// Reads `stream` as a Java KCL would (see the module docs).
pub async fn read_as_java_kcl(client: &aws_sdk_kinesis::Client, stream: &str) -> KclView {
    let mut view = KclView::default();
    for shard in list_all_shards(client, stream).await {
        let shard_id = shard.shard_id().to_owned();
        let range = shard
            .hash_key_range()
            .expect("ListShards gives hash-key ranges");
        let start: u128 = range.starting_hash_key().parse().expect("a hash key");
        let end: u128 = range.ending_hash_key().parse().expect("a hash key");
        let mut iterator = client
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(&shard_id)
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .expect("GetShardIterator")
            .shard_iterator;
        while let Some(current) = iterator {
            let output = client
                .get_records()
                .shard_iterator(current)
                .limit(10_000)
                .send()
                .await
                .expect("GetRecords");
            for record in output.records() {
                let (user_records, _) = deaggregate(&KinesisRecord::new(
                    record.partition_key().unwrap_or_default(),
                    record.data().clone().into_inner(),
                ));
                let inside = |key: u128| start <= key && key <= end;
                let kept = user_records.iter().all(|r| {
                    !r.aggregated
                        || match &r.explicit_hash_key {
                            Some(key) => key.as_str().parse::<u128>().is_ok_and(inside),
                            None => inside(HashKey::of_partition_key(r.partition_key.as_str()).0),
                        }
                });
                let into = if kept {
                    &mut view.delivered
                } else {
                    &mut view.dropped
                };
                into.extend(user_records.into_iter().map(|r| StoredRecord {
                    shard: shard_id.clone(),
                    sequence_number: record.sequence_number().to_owned(),
                    sub_sequence_number: r.aggregated.then_some(r.sub_sequence_number),
                    partition_key: r.partition_key.to_string(),
                    data: r.data.to_vec(),
                }));
            }
            // Stop at the end of what is there now (an open shard always has a next iterator).
            if output.records().is_empty()
                || output.millis_behind_latest() == Some(0)
                    && output.next_shard_iterator().is_none()
            {
                break;
            }
            iterator = output.next_shard_iterator().map(str::to_owned);
        }
    }
    view
}
