//! Resharding under load: split a shard and merge two while producing; every partition key's
//! records are processed in put order across parents and children, and nothing is lost.

#[macro_use]
mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Mode, Seen};
use kinesis_consumer::lease::{DynamoLeaseStore, LeaseStore};

use kinesis_producer::Producer;
use kinesis_test_support::{
    DynamoDbServer, KinesisServer, create_stream, dynamodb_client, kinesis_client, split_shard,
    unique_name, wait_for_stream,
};

in_both_modes!(parents_are_finished_before_children_through_a_split_and_a_merge);

async fn parents_are_finished_before_children_through_a_split_and_a_merge(mode: Mode) {
    let kinesis = kinesis_client(mode.server(KinesisServer::KinesisMock)).await;
    let dynamodb = dynamodb_client(DynamoDbServer::DynamoDbLocal).await;
    let stream = unique_name("reshard");
    let application = unique_name("app");
    create_stream(&kinesis, &stream, 2).await;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let worker = common::one_worker(kinesis.clone(), dynamodb.clone(), &stream, &application)
        .retrieval(mode.retrieval())
        .parent_poll_interval(Duration::from_millis(200))
        .shard_sync_interval(Duration::from_secs(1))
        .build(common::recorder("w1", &seen))
        .await
        .unwrap()
        .spawn();

    // A new producer after each reshard: one whose map predates the reshard would aggregate keys
    // of both children together (each aggregate lands whole on one child), and sibling children
    // are independent, so their keys' order across them is not the consumer's to keep.
    let new_producer = || async {
        Producer::builder(kinesis.clone(), &stream)
            .record_max_buffered_time(Duration::from_millis(20))
            .aggregation_max_size(2_048)
            // Without it two requests of one shard may be in flight at once and land in either
            // order; this test is about the consumer's order.
            .ordered_per_shard(true)
            .build()
            .await
            .unwrap()
    };
    let mut producer = new_producer().await;
    let keys = 20;
    let rounds = 90;
    let mut handles = Vec::new();
    for round in 0..rounds {
        if round == rounds / 3 {
            // Everything put so far is stored before the reshard and before the next producer's
            // first record: two producers' requests could land in either order.
            producer.flush().await.unwrap();
            let parent = "shardId-000000000000";
            let range = kinesis
                .list_shards()
                .stream_name(&stream)
                .send()
                .await
                .unwrap();
            let first = range
                .shards()
                .iter()
                .find(|s| s.shard_id() == parent)
                .unwrap()
                .hash_key_range()
                .unwrap()
                .clone();
            let (start, end): (u128, u128) = (
                first.starting_hash_key().parse().unwrap(),
                first.ending_hash_key().parse().unwrap(),
            );
            split_shard(&kinesis, &stream, parent, start + (end - start) / 2).await;
            producer = new_producer().await;
        }
        if round == 2 * rounds / 3 {
            // Everything put so far is stored before the reshard and before the next producer's
            // first record: two producers' requests could land in either order.
            producer.flush().await.unwrap();
            // Merge the upper child of the split with shard 1, its neighbour.
            let shards = common_shards(&kinesis, &stream).await;
            let upper_child = shards
                .iter()
                .find(|(_, parent, open)| {
                    parent.as_deref() == Some("shardId-000000000000") && *open
                })
                .map(|(id, _, _)| id.clone());
            let children: Vec<_> = shards
                .iter()
                .filter(|(_, parent, _)| parent.as_deref() == Some("shardId-000000000000"))
                .map(|(id, _, _)| id.clone())
                .collect();
            let upper = children.into_iter().max().or(upper_child).unwrap();
            kinesis
                .merge_shards()
                .stream_name(&stream)
                .shard_to_merge(&upper)
                .adjacent_shard_to_merge("shardId-000000000001")
                .send()
                .await
                .unwrap();
            wait_for_stream(&kinesis, &stream).await;
            producer = new_producer().await;
        }
        for key in 0..keys {
            handles.push(
                producer
                    .put_data(format!("key-{key}"), format!("{key}:{round}"))
                    .await
                    .unwrap(),
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for handle in handles {
        handle.await.unwrap();
    }
    producer.shutdown().await.unwrap();
    let total = keys * rounds;
    common::wait_until(Duration::from_secs(120), "every record", || {
        seen.lock().unwrap().multiplicity().len() == total
    })
    .await;

    let seen = std::mem::take(&mut *seen.lock().unwrap());
    assert!(
        seen.multiplicity().values().all(|&n| n == 1),
        "one worker, no failover: exactly once"
    );
    // In delivery order, each key's rounds only go up: parents were finished before children.
    let mut last: BTreeMap<String, i64> = BTreeMap::new();
    for (_, shard, _, data) in &seen.records {
        let (key, round) = data.split_once(':').unwrap();
        let round: i64 = round.parse().unwrap();
        let previous = last.insert(key.to_owned(), round).unwrap_or(-1);
        assert_eq!(
            round,
            previous + 1,
            "key {key}: round {round} delivered (from {shard}) after {previous}"
        );
    }
    assert!(
        seen.ended.len() >= 3,
        "the split parent and both merged parents ended: {:?}",
        seen.ended
    );

    // Finished parents are cleaned up once their children have started (at the taker's next
    // run after that: failoverTime 2 s, so every 4 s).
    let store = DynamoLeaseStore::new(dynamodb, application);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let leases: Vec<_> = store
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(Result::unwrap)
            .collect();
        if leases
            .iter()
            .all(|l| l.lease_key.as_str() != "shardId-000000000000")
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the first parent's lease is deleted: {:?}",
            leases
                .iter()
                .map(|l| (&l.lease_key, &l.checkpoint))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    worker.shutdown().await.unwrap();
}

/// (shard, parent, open) of every shard.
async fn common_shards(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
) -> Vec<(String, Option<String>, bool)> {
    let output = kinesis
        .list_shards()
        .stream_name(stream)
        .send()
        .await
        .unwrap();
    output
        .shards()
        .iter()
        .map(|s| {
            (
                s.shard_id().to_owned(),
                s.parent_shard_id().map(str::to_owned),
                s.sequence_number_range()
                    .is_some_and(|r| r.ending_sequence_number().is_none()),
            )
        })
        .collect()
}
