//! The scheduler against real local servers: one worker consumes everything and checkpoints at
//! the end of each shard's data.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Recorder, Seen};
use kinesis_aggregation::ShardId;
use kinesis_consumer::lease::{Checkpoint, DynamoLeaseStore, LeaseStore};
use kinesis_consumer::{InitialPosition, Scheduler};
use kinesis_test_support::{
    DynamoDbServer, KinesisServer, create_stream, dynamodb_client, kinesis_client, unique_name,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_worker_consumes_four_shards_and_checkpoints_their_ends() {
    let kinesis = kinesis_client(KinesisServer::Kinesalite).await;
    let dynamodb = dynamodb_client(DynamoDbServer::DynamoDbLocal).await;
    let stream = unique_name("consumer-one");
    let application = unique_name("app");
    create_stream(&kinesis, &stream, 4).await;
    common::put_values(&kinesis, &stream, 0..40_000, true).await;
    common::put_values(&kinesis, &stream, 40_000..50_000, false).await;

    let seen = Arc::new(Mutex::new(Seen::default()));
    let factory = {
        let seen = seen.clone();
        move |shard: &ShardId| Recorder {
            worker: "w1".into(),
            shard: shard.clone(),
            seen: seen.clone(),
            checkpoint_every_batch: true,
        }
    };
    let scheduler = Scheduler::builder(kinesis.clone(), dynamodb.clone(), &stream, &application)
        .worker_id("w1")
        .initial_position(InitialPosition::TrimHorizon)
        .lease_config(common::quick_leases(Duration::from_secs(3)))
        .polling_config(common::quick_polling())
        .build(factory)
        .await
        .unwrap();
    let handle = scheduler.spawn();
    common::wait_until(Duration::from_secs(120), "50,000 records", || {
        seen.lock().unwrap().count() >= 50_000
    })
    .await;
    // Let the last checkpoints land, then stop.
    tokio::time::sleep(Duration::from_millis(500)).await;
    handle.shutdown().await.unwrap();

    let seen = std::mem::take(&mut *seen.lock().unwrap());
    let multiplicity = seen.multiplicity();
    assert_eq!(multiplicity.len(), 50_000, "every value delivered");
    assert!(
        multiplicity.values().all(|&n| n == 1),
        "no value delivered twice"
    );
    assert!(
        seen.checkpoint_errors.is_empty(),
        "{:?}",
        seen.checkpoint_errors
    );
    assert_eq!(seen.initialized.len(), 4);
    assert_eq!(
        seen.shutdown.len(),
        4,
        "each processor told of the shutdown"
    );

    // The table's checkpoint of each shard is its last delivered record, and the leases are free.
    let mut last: HashMap<ShardId, kinesis_consumer::Position> = HashMap::new();
    for (_, shard, position, _) in &seen.records {
        let entry = last
            .entry(shard.clone())
            .or_insert_with(|| position.clone());
        if position > entry {
            *entry = position.clone();
        }
    }
    let store = DynamoLeaseStore::new(dynamodb, application);
    let leases = store.list().await.unwrap();
    assert_eq!(leases.len(), 4);
    for lease in leases {
        let lease = lease.unwrap();
        let expected = &last[&lease.lease_key];
        assert_eq!(
            lease.checkpoint,
            Checkpoint::at(
                expected.sequence_number.clone(),
                expected.sub_sequence_number
            )
        );
        assert_eq!(lease.lease_owner, None, "released on graceful shutdown");
    }
}
