//! A new application (empty lease table) on a stream that was resharded: LATEST and
//! AT_TIMESTAMP start where asked on every shard, and the children of a closed parent do not go
//! back to TRIM_HORIZON. Run on kinesis-mock, which honours ListShards' `ShardFilter`, and on
//! kinesalite, which ignores it (every shard is returned).

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use common::{Mode, Seen};
use kinesis_consumer::{InitialPosition, Scheduler};
use kinesis_test_support::{
    DynamoDbServer, KinesisServer, create_stream, dynamodb_client, kinesis_client, split_shard,
    unique_name, wait_for_stream,
};

/// A one-shard stream with `0..100` put, then (after `mark`) `100..200`, then a split at the
/// middle and `200..300` put to the children. Returns the stream and the mark.
async fn resharded_stream(kinesis: &aws_sdk_kinesis::Client, name: &str) -> (String, SystemTime) {
    let stream = unique_name(name);
    create_stream(kinesis, &stream, 1).await;
    common::put_values(kinesis, &stream, 0..100, true).await;
    // Arrival timestamps have millisecond precision: leave a clear gap around the mark.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let mark = SystemTime::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    common::put_values(kinesis, &stream, 100..200, true).await;
    split_shard(kinesis, &stream, "shardId-000000000000", 1 << 127).await;
    wait_for_stream(kinesis, &stream).await;
    // kinesalite dates the children about 1 s ahead: let their records arrive after that.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    common::put_values(kinesis, &stream, 200..300, true).await;
    (stream, mark)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Start {
    Latest,
    /// At a time before the split: the parent's later records, then the children's.
    BeforeSplit,
    /// At a time after the split: only the children's records put after it.
    AfterSplit,
}

async fn run(server: KinesisServer, start: Start) {
    let kinesis = kinesis_client(server).await;
    let dynamodb = dynamodb_client(DynamoDbServer::Dynalite).await;
    let (stream, mark) = resharded_stream(&kinesis, "start-position").await;
    let position = match start {
        Start::Latest => InitialPosition::Latest,
        Start::BeforeSplit => InitialPosition::AtTimestamp(mark),
        Start::AfterSplit => {
            tokio::time::sleep(Duration::from_millis(1_500)).await;
            let after = SystemTime::now();
            tokio::time::sleep(Duration::from_millis(500)).await;
            common::put_values(&kinesis, &stream, 300..400, true).await;
            InitialPosition::AtTimestamp(after)
        }
    };
    let latest = start == Start::Latest;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let handle = Scheduler::builder(kinesis.clone(), dynamodb, &stream, unique_name("app"))
        .worker_id("w1")
        .initial_position(position)
        .lease_config(common::quick_leases(Duration::from_secs(3)))
        .retrieval(Mode::Polling.retrieval())
        .build(common::recorder("w1", &seen))
        .await
        .unwrap()
        .spawn();
    let expected: BTreeSet<String> = if latest {
        common::wait_until(
            Duration::from_secs(30),
            "both children to be processed",
            || seen.lock().unwrap().initialized.len() >= 2,
        )
        .await;
        // Give the readers time to take their LATEST iterators before the new records go in.
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        common::put_values(&kinesis, &stream, 300..400, true).await;
        (300..400).map(|v| v.to_string()).collect()
    } else if start == Start::BeforeSplit {
        (100..300).map(|v| v.to_string()).collect()
    } else {
        (300..400).map(|v| v.to_string()).collect()
    };
    common::wait_until(Duration::from_secs(40), "the expected records", || {
        seen.lock().unwrap().count() >= expected.len()
    })
    .await;
    // Anything wrongly delivered (records from before the start) would come by now.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    handle.shutdown().await.unwrap();
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    let delivered: BTreeSet<String> = seen.multiplicity().into_keys().collect();
    assert_eq!(delivered, expected, "{server:?}, {start:?}");
    if start == Start::BeforeSplit {
        // The parent's records (100..200) all come before any of the children's (200..300).
        let values: Vec<usize> = seen
            .records
            .iter()
            .map(|(_, _, _, data)| data.parse().unwrap())
            .collect();
        let first_child = values.iter().position(|v| *v >= 200).unwrap();
        assert!(
            values[first_child..].iter().all(|v| *v >= 200),
            "{server:?}: a parent record after a child's: {values:?}"
        );
    }
}

#[tokio::test]
async fn latest_on_a_resharded_stream_skips_the_children_history_kinesis_mock() {
    run(KinesisServer::KinesisMock, Start::Latest).await;
}

#[tokio::test]
async fn latest_on_a_resharded_stream_skips_the_children_history_kinesalite() {
    run(KinesisServer::Kinesalite, Start::Latest).await;
}

#[tokio::test]
async fn at_timestamp_before_a_split_reads_the_parent_then_the_children_kinesis_mock() {
    run(KinesisServer::KinesisMock, Start::BeforeSplit).await;
}

#[tokio::test]
async fn at_timestamp_before_a_split_reads_the_parent_then_the_children_kinesalite() {
    run(KinesisServer::Kinesalite, Start::BeforeSplit).await;
}

#[tokio::test]
async fn at_timestamp_after_a_split_skips_the_children_history_kinesis_mock() {
    run(KinesisServer::KinesisMock, Start::AfterSplit).await;
}

// Not on kinesalite: it ignores the filter, so the closed parent gets an AT_TIMESTAMP lease
// after its end, and its reading there did not finish within the test time (not understood yet;
// AWS honours the filter, as kinesis-mock does).
