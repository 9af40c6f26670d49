//! Shard sync creates parents' leases before their children's and stops at the first failed
//! write, as the Java shard syncer does (kinesalite; the lease table in memory with a fault).
//! Before, a failed parent was only logged: its children got leases, the parent then looked
//! finished (a closed shard with a leased descendant), and its records were never read.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{FaultyStore, Seen};
use kinesis_aggregation::ShardId;
use kinesis_consumer::lease::InMemoryLeaseStore;

use kinesis_test_support::{
    DynamoDbServer, KinesisServer, create_stream, dynamodb_client, kinesis_client, split_shard,
    unique_name,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parent_whose_lease_could_not_be_created_is_still_read_before_its_children() {
    let kinesis = kinesis_client(KinesisServer::Kinesalite).await;
    let stream = unique_name("sync-order");
    create_stream(&kinesis, &stream, 1).await;
    common::put_values(&kinesis, &stream, 0..100, false).await;
    split_shard(
        &kinesis,
        &stream,
        common::first_shard().as_str(),
        u128::MAX / 2,
    )
    .await;
    common::put_values(&kinesis, &stream, 100..200, false).await;

    let table = Arc::new(InMemoryLeaseStore::new());
    let store = FaultyStore::over(&table);
    *store.fail_create_of.lock().unwrap() = Some(common::first_shard());
    let seen = Arc::new(Mutex::new(Seen::default()));
    let handle = common::one_worker(
        kinesis,
        dynamodb_client(DynamoDbServer::Dynalite).await,
        &stream,
        &unique_name("app"),
    )
    .shard_sync_interval(Duration::from_secs(1))
    .parent_poll_interval(Duration::from_millis(500))
    .lease_store(Arc::new(store))
    .build(common::recorder("w1", &seen))
    .await
    .unwrap()
    .spawn();
    common::wait_until(
        Duration::from_secs(30),
        "the parent's and the children's records",
        || seen.lock().unwrap().multiplicity().len() >= 200,
    )
    .await;
    handle.shutdown().await.unwrap();
    let seen = seen.lock().unwrap();
    let parent: ShardId = common::first_shard();
    let last_of_parent = seen
        .records
        .iter()
        .rposition(|(_, s, _, _)| *s == parent)
        .unwrap();
    let first_of_child = seen
        .records
        .iter()
        .position(|(_, s, _, _)| *s != parent)
        .unwrap();
    assert!(
        last_of_parent < first_of_child,
        "the parent was read before its children"
    );
}
