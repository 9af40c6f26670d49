//! A lease whose shard is no longer in the stream (aged out of the retention period while the
//! application was stopped) is handled as the shard's end, as the Java KCL's data fetcher does
//! on `ResourceNotFoundException`: its processor is told `shard_ended`, its children start, and
//! the finished lease is cleaned up once they have. Before, the lease failed, was released,
//! taken and failed again forever, and its children waited behind it (kinesis-mock and
//! kinesalite, polling and fan-out; the lease table in memory, written as the stopped application left it).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Mode, Seen};
use kinesis_aggregation::ShardId;
use kinesis_consumer::lease::{Checkpoint, InMemoryLeaseStore, Lease, LeaseStore};

use kinesis_test_support::{
    DynamoDbServer, KinesisServer, create_stream, dynamodb_client, kinesis_client, unique_name,
};

/// A shard id the stream never had: what a parent that aged out looks like to the API.
fn gone_parent() -> ShardId {
    ShardId::from("shardId-000000000042")
}

async fn a_parent_past_retention_ends_and_its_child_is_read(server: KinesisServer, mode: Mode) {
    let kinesis = kinesis_client(mode.server(server)).await;
    let stream = unique_name("retention");
    create_stream(&kinesis, &stream, 1).await;
    common::put_values(&kinesis, &stream, 0..100, false).await;

    let table = Arc::new(InMemoryLeaseStore::new());
    table.create_table_if_absent().await.unwrap();
    let parent = Lease::new(gone_parent(), Checkpoint::TrimHorizon);
    table.create_if_absent(&parent).await.unwrap();
    let child = Lease::new(common::first_shard(), Checkpoint::TrimHorizon)
        .with_parents(vec![gone_parent()]);
    table.create_if_absent(&child).await.unwrap();

    let seen = Arc::new(Mutex::new(Seen::default()));
    let handle = common::one_worker(
        kinesis,
        dynamodb_client(DynamoDbServer::Dynalite).await,
        &stream,
        &unique_name("app"),
    )
    .retrieval(mode.retrieval())
    .shard_sync_interval(Duration::from_secs(1))
    .parent_poll_interval(Duration::from_millis(500))
    .lease_store(table.clone())
    .build(common::recorder("w1", &seen))
    .await
    .unwrap()
    .spawn();
    common::wait_until(
        Duration::from_secs(30),
        "the child's records, after its gone parent",
        || seen.lock().unwrap().multiplicity().len() >= 100,
    )
    .await;
    common::wait_until(
        Duration::from_secs(15),
        "the gone parent's finished lease deleted",
        || table.raw_item(gone_parent().as_str()).is_none(),
    )
    .await;
    handle.shutdown().await.unwrap();

    let seen = seen.lock().unwrap();
    assert!(
        seen.ended.iter().any(|(_, shard)| *shard == gone_parent()),
        "the gone parent's processor was told its shard ended: {:?}",
        seen.ended
    );
    assert!(
        seen.records
            .iter()
            .all(|(_, shard, _, _)| *shard == common::first_shard()),
        "records came only from the child"
    );
    assert!(
        seen.multiplicity().values().all(|n| *n == 1),
        "each record once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parent_past_retention_ends_and_its_child_is_read_on_kinesis_mock() {
    a_parent_past_retention_ends_and_its_child_is_read(KinesisServer::KinesisMock, Mode::Polling)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parent_past_retention_ends_and_its_child_is_read_on_kinesalite() {
    a_parent_past_retention_ends_and_its_child_is_read(KinesisServer::Kinesalite, Mode::Polling)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parent_past_retention_ends_and_its_child_is_read_by_fan_out() {
    a_parent_past_retention_ends_and_its_child_is_read(KinesisServer::KinesisMock, Mode::FanOut)
        .await
}

/// A deleted stream answers `ResourceNotFoundException` too, but cannot be listed: its shards
/// are not taken as ended (their checkpoints stay where they are for a person to look at).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_stream_does_not_end_its_shards() {
    let kinesis = kinesis_client(KinesisServer::Kinesalite).await;
    let stream = unique_name("deleted");
    create_stream(&kinesis, &stream, 1).await;
    common::put_values(&kinesis, &stream, 0..10, false).await;
    let table = Arc::new(InMemoryLeaseStore::new());
    let seen = Arc::new(Mutex::new(Seen::default()));
    let handle = common::one_worker(
        kinesis.clone(),
        dynamodb_client(DynamoDbServer::Dynalite).await,
        &stream,
        &unique_name("app"),
    )
    .shard_sync_interval(Duration::from_secs(1))
    .lease_store(table.clone())
    .build(common::recorder("w1", &seen))
    .await
    .unwrap()
    .spawn();
    common::wait_until(Duration::from_secs(30), "the records", || {
        seen.lock().unwrap().multiplicity().len() >= 10
    })
    .await;
    kinesis
        .delete_stream()
        .stream_name(&stream)
        .send()
        .await
        .unwrap();
    // Long enough for several reads to fail and the lease to be given up and taken again.
    tokio::time::sleep(Duration::from_secs(6)).await;
    handle.shutdown().await.unwrap();
    assert!(
        seen.lock().unwrap().ended.is_empty(),
        "no shard of a deleted stream ended"
    );
    let lease = table.get(&common::first_shard()).await.unwrap().unwrap();
    assert!(
        !lease.checkpoint.is_shard_end(),
        "the checkpoint stays: {:?}",
        lease.checkpoint
    );
}
