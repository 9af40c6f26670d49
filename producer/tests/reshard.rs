//! Resharding during production: nothing is lost, and the shard map follows the split.

mod common;

use std::time::Duration;

use kinesis_producer::{Producer, UserRecord};
use kinesis_test_support::{
    KinesisServer, create_stream, kinesis_client, split_shard, unique_name,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_during_production_loses_nothing_and_the_map_follows() {
    let client = kinesis_client(KinesisServer::KinesisMock).await;
    let stream = unique_name("producer-split");
    create_stream(&client, &stream, 2).await;
    let producer = Producer::builder(client.clone(), &stream)
        .record_max_buffered_time(Duration::from_millis(20))
        .build()
        .await
        .unwrap();

    let parent = common::list_shards(&client, &stream).await[0].clone();
    let range = parent.hash_key_range().unwrap();
    let (start, end): (u128, u128) = (
        range.starting_hash_key().parse().unwrap(),
        range.ending_hash_key().parse().unwrap(),
    );
    let middle = start + (end - start) / 2;

    let total = 6_000;
    let mut records = Vec::new();
    let mut handles = Vec::new();
    for i in 0..total {
        if i == total / 3 {
            split_shard(&client, &stream, parent.shard_id(), middle).await;
        }
        let record = UserRecord::new(format!("key-{i}"), format!("value {i}")).unwrap();
        records.push(record.clone());
        handles.push(producer.put(record).await.unwrap());
        if i % 500 == 0 {
            // Let time pass, so records go out in several rounds around the split.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    producer.flush().await.unwrap();
    let mut outcomes = Vec::new();
    for handle in handles {
        outcomes.push(handle.await.expect("no record lost to the split"));
    }
    producer.shutdown().await.unwrap();

    let children: Vec<String> = common::list_shards(&client, &stream)
        .await
        .iter()
        .filter(|s| s.parent_shard_id() == Some(parent.shard_id()))
        .map(|s| s.shard_id().to_owned())
        .collect();
    assert_eq!(children.len(), 2);
    assert!(
        outcomes
            .iter()
            .any(|o| children.contains(&o.shard_id.to_string())),
        "records after the split land on the children"
    );

    // Every acknowledged record is in the stream exactly once.
    common::expect_each_stored_once(&client, &stream, &records, &outcomes).await;

    // Once the map has followed the split, records are aggregated per child: each lands on the
    // shard that owns its own hash key (before, an aggregate made for the parent may mix both
    // children's keys).
    let ranges = common::shard_ranges(&client, &stream).await;
    let tail = total * 4 / 5;
    for (record, outcome) in records.iter().zip(&outcomes).skip(tail) {
        assert!(
            common::owns(&ranges, outcome.shard_id.as_str(), record.partition_key()),
            "{} landed on {} after the map refresh",
            record.partition_key(),
            outcome.shard_id
        );
    }
}
