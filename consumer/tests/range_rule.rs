//! The Java KCL's range rule against real servers: an aggregate holding a record outside the hash-key
//! range of the shard it is read from is dropped whole (and counted), unless the scheduler is told
//! to deliver such aggregates; its lease carries the range shard sync listed.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_kinesis::primitives::Blob;
use common::Seen;
use kinesis_aggregation::{Aggregator, HashKey, ShardId, UserRecord};
use kinesis_consumer::lease::{DynamoLeaseStore, LeaseStore};
use kinesis_consumer::{InitialPosition, Scheduler};
use kinesis_test_support::{
    DynamoDbServer, KinesisServer, create_stream, dynamodb_client, kinesis_client, unique_name,
};

const HALF: u128 = u128::MAX / 2;

/// Puts, on the first shard of a 2-shard stream (the lower half of the key space): a valid
/// aggregate (values 0, 1), an aggregate routed there by its first record whose second record
/// belongs to the other shard (values 10, 11: what a stale shard map makes), and a plain record
/// (value 20).
async fn put_one_astray_aggregate(kinesis: &aws_sdk_kinesis::Client, stream: &str) {
    let aggregate = |records: &[(u128, &str)]| {
        let mut aggregator = Aggregator::default();
        for (key, value) in records {
            let record = UserRecord::new(format!("pk-{value}"), value.to_string())
                .unwrap()
                .with_hash_key(HashKey(*key));
            aggregator.try_add(&record).unwrap();
        }
        aggregator.finish().unwrap()
    };
    let valid = aggregate(&[(1, "0"), (HALF, "1")]);
    let astray = aggregate(&[(5, "10"), (HALF + 1, "11")]);
    for record in [valid, astray] {
        kinesis
            .put_record()
            .stream_name(stream)
            .partition_key(&record.partition_key)
            .set_explicit_hash_key(record.explicit_hash_key.clone())
            .data(Blob::new(record.data.to_vec()))
            .send()
            .await
            .unwrap();
    }
    kinesis
        .put_record()
        .stream_name(stream)
        .partition_key("plain")
        .explicit_hash_key("7")
        .data(Blob::new("20"))
        .send()
        .await
        .unwrap();
}

/// Runs one worker of a new application until it has delivered `expected` records (and a little
/// longer, so nothing more comes), and returns what it delivered, sorted.
async fn consume(
    kinesis: &aws_sdk_kinesis::Client,
    dynamodb: &aws_sdk_dynamodb::Client,
    stream: &str,
    deliver_outside: bool,
    expected: usize,
) -> (Vec<String>, String) {
    let application = unique_name("range-app");
    let seen = Arc::new(Mutex::new(Seen::default()));
    let handle = Scheduler::builder(kinesis.clone(), dynamodb.clone(), stream, &application)
        .worker_id("w1")
        .initial_position(InitialPosition::TrimHorizon)
        .lease_config(common::quick_leases(Duration::from_secs(3)))
        .polling_config(common::quick_polling())
        .deliver_aggregates_outside_shard_range(deliver_outside)
        .build(common::recorder("w1", &seen))
        .await
        .unwrap()
        .spawn();
    common::wait_until(Duration::from_secs(60), "the records", || {
        seen.lock().unwrap().count() >= expected
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    handle.shutdown().await.unwrap();
    let mut values: Vec<String> = seen
        .lock()
        .unwrap()
        .records
        .iter()
        .map(|(_, _, _, data)| data.clone())
        .collect();
    values.sort();
    (values, application)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aggregate_with_a_record_outside_the_shard_is_dropped_unless_asked() {
    let kinesis = kinesis_client(KinesisServer::Kinesalite).await;
    let dynamodb = dynamodb_client(DynamoDbServer::Dynalite).await;
    let stream = unique_name("range-rule");
    create_stream(&kinesis, &stream, 2).await;
    put_one_astray_aggregate(&kinesis, &stream).await;

    let (dropped, application) = consume(&kinesis, &dynamodb, &stream, false, 3).await;
    assert_eq!(
        dropped,
        ["0", "1", "20"],
        "the astray aggregate is dropped whole"
    );
    // Shard sync wrote the ranges the check uses, as the Java KCL does.
    let store = DynamoLeaseStore::new(dynamodb.clone(), application);
    let leases = store.list().await.unwrap();
    let first = leases
        .iter()
        .filter_map(|l| l.as_ref().ok())
        .find(|l| l.lease_key == ShardId::from("shardId-000000000000"))
        .unwrap();
    let range = first.hash_key_range.expect("the lease has its range");
    assert_eq!((range.starting, range.ending), (HashKey(0), HashKey(HALF)));

    let (delivered, _) = consume(&kinesis, &dynamodb, &stream, true, 5).await;
    assert_eq!(
        delivered,
        ["0", "1", "10", "11", "20"],
        "asked to, it delivers them"
    );
}
