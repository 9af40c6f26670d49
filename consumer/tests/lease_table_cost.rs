//! The lease table is listed once per taker run, and that listing is shared by the shard sync,
//! the clean-up of finished parents and the parent check (which reads an unfinished parent's
//! lease alone), instead of a scan for each of them (kinesalite; the lease table in memory,
//! counting its calls). Before, each shard sync, each shard end and each parent poll while a
//! child waited scanned the whole table.

mod common;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{FaultyStore, Seen};
use kinesis_consumer::lease::{InMemoryLeaseStore, LeaseConfig};
use kinesis_consumer::{InitialPosition, Scheduler};
use kinesis_test_support::{
    DynamoDbServer, KinesisServer, create_stream, dynamodb_client, kinesis_client, split_shard,
    unique_name,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_listing_per_taker_run_serves_sync_clean_up_and_parent_checks() {
    let kinesis = kinesis_client(KinesisServer::Kinesalite).await;
    let stream = unique_name("ddb-cost");
    create_stream(&kinesis, &stream, 2).await;
    common::put_values(&kinesis, &stream, 0..100, false).await;

    let table = Arc::new(InMemoryLeaseStore::new());
    let store = Arc::new(FaultyStore::over(&table));
    let leases = LeaseConfig::default().failover_time(Duration::from_secs(2));
    let take_interval = leases.take_interval();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let started = Instant::now();
    let handle = Scheduler::builder(
        kinesis.clone(),
        dynamodb_client(DynamoDbServer::Dynalite).await,
        &stream,
        unique_name("app"),
    )
    .worker_id("w1")
    .initial_position(InitialPosition::TrimHorizon)
    .lease_config(leases)
    .polling_config(common::quick_polling())
    // Far more often than the taker runs: each of these used to scan.
    .shard_sync_interval(Duration::from_millis(500))
    .parent_poll_interval(Duration::from_millis(200))
    .lease_store(store.clone())
    .build(common::recorder("w1", &seen))
    .await
    .unwrap()
    .spawn();
    common::wait_until(Duration::from_secs(30), "the first records", || {
        seen.lock().unwrap().multiplicity().len() >= 100
    })
    .await;
    // A split: a shard end, two children waiting for their parent, a parent to clean up.
    split_shard(
        &kinesis,
        &stream,
        common::first_shard().as_str(),
        u128::MAX / 4,
    )
    .await;
    common::put_values(&kinesis, &stream, 100..200, false).await;
    common::wait_until(
        Duration::from_secs(40),
        "the records after the split",
        || seen.lock().unwrap().multiplicity().len() >= 200,
    )
    .await;
    let lists = store.lists.load(Ordering::SeqCst);
    let elapsed = started.elapsed();

    // The start's shard sync, then one per taker run (a run at start, then every take interval).
    let taker_runs = (elapsed.as_secs_f64() / take_interval.as_secs_f64()).floor() as usize + 1;
    println!(
        "{lists} listings in {elapsed:?} ({taker_runs} taker runs at most), {} single reads",
        store.gets.load(Ordering::SeqCst)
    );
    assert!(
        lists <= taker_runs + 1,
        "{lists} listings in {elapsed:?}: more than one per taker run ({taker_runs}) and the start's sync"
    );
    // Clean-up runs on the taker's listings, not only when another shard ends (as it did).
    common::wait_until(
        Duration::from_secs(20),
        "the finished parent's lease deleted",
        || table.raw_item(common::first_shard().as_str()).is_none(),
    )
    .await;
    handle.shutdown().await.unwrap();
    let seen = seen.lock().unwrap();
    assert!(
        seen.multiplicity().values().all(|n| *n == 1),
        "each record once"
    );
    assert!(
        seen.ended.iter().any(|(_, s)| *s == common::first_shard()),
        "the parent ended"
    );
}
