//! Enhanced fan-out retrieval against kinesis-mock (the local server with `SubscribeToShard`):
//! registration reuses the consumer, every record arrives once and in order across dropped
//! connections and re-subscriptions, a checkpoint inside an aggregate resumes at the next
//! sub-record, a slow reader holds the subscription back, and a closed shard ends with its
//! children although the server never signals the end over fan-out.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{first_shard, values};
use kinesis_consumer::retrieval::{
    Batch, FanOutConfig, FanOutFetcher, StartingPosition, register_stream_consumer,
};
use kinesis_consumer::{Position, Record};
use kinesis_test_support::cutter::{ConnectionCutter, Ending};
use kinesis_test_support::{
    KinesisServer, create_stream, kinesis_client, sdk_config, split_shard, unique_name,
};

fn quick() -> FanOutConfig {
    FanOutConfig {
        event_timeout: Duration::from_secs(5),
        ..common::quick_fan_out()
    }
}

async fn put_range(client: &aws_sdk_kinesis::Client, stream: &str, values: std::ops::Range<usize>) {
    common::put_values(client, stream, values, true).await;
}

/// A one-shard kinesis-mock stream with a registered consumer; returns the client, the stream
/// and the consumer's ARN.
async fn stream_with_consumer() -> (aws_sdk_kinesis::Client, String, Arc<str>) {
    let client = kinesis_client(KinesisServer::KinesisMock).await;
    let stream = unique_name("fanout");
    create_stream(&client, &stream, 1).await;
    let consumer = register_stream_consumer(&client, &stream, "app", Duration::from_secs(30))
        .await
        .unwrap();
    (client, stream, Arc::from(consumer.arn))
}

/// Reads batches until `count` records arrived (or the shard ended).
async fn read(fetcher: &mut FanOutFetcher, count: usize) -> (Vec<Record>, Option<Batch>) {
    let mut records = Vec::new();
    while records.len() < count {
        let batch = tokio::time::timeout(Duration::from_secs(60), fetcher.next())
            .await
            .expect("a batch in time")
            .expect("the subscription goes on")
            .expect("no fatal error");
        records.extend(batch.records.iter().cloned());
        if batch.shard_end.is_some() {
            return (records, Some(batch));
        }
    }
    (records, None)
}

#[tokio::test]
async fn registration_waits_for_active_and_reuses_the_consumer() {
    let client = kinesis_client(KinesisServer::KinesisMock).await;
    let stream = unique_name("fanout-register");
    create_stream(&client, &stream, 1).await;
    let first = register_stream_consumer(&client, &stream, "app", Duration::from_secs(30))
        .await
        .unwrap();
    let again = register_stream_consumer(&client, &stream, "app", Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(first, again, "the existing consumer is reused");
    assert!(first.arn.contains("app"), "{}", first.arn);
    let described = client
        .describe_stream_consumer()
        .consumer_arn(&first.arn)
        .send()
        .await
        .unwrap();
    assert_eq!(
        described.consumer_description().unwrap().consumer_status(),
        &aws_sdk_kinesis::types::ConsumerStatus::Active
    );

    let missing = register_stream_consumer(
        &client,
        &unique_name("no-such-stream"),
        "app",
        Duration::from_secs(5),
    )
    .await
    .unwrap_err();
    assert!(
        missing.to_string().contains("ResourceNotFoundException"),
        "{missing}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_once_in_order_across_cut_connections() {
    let (client, stream, consumer_arn) = stream_with_consumer().await;
    put_range(&client, &stream, 0..600).await;
    // Every connection is cut 2.5 s after it opened: the subscription fails every few events
    // and is made anew from just after the last record delivered.
    let cutter = ConnectionCutter::start(
        &KinesisServer::KinesisMock.endpoint(),
        Duration::from_millis(2_500),
    )
    .await;
    let cut_client = aws_sdk_kinesis::Client::new(&sdk_config(cutter.endpoint()).await);
    let mut fetcher = FanOutFetcher::start(
        cut_client,
        Arc::from(stream.as_str()),
        consumer_arn,
        first_shard(),
        StartingPosition::TrimHorizon,
        None,
        quick(),
    );
    let (mut records, end) = read(&mut fetcher, 600).await;
    assert!(end.is_none());
    // Records put while subscribed are pushed too, across more cuts.
    let writer = {
        let (client, stream) = (client.clone(), stream.clone());
        tokio::spawn(async move {
            for round in 0..4 {
                put_range(&client, &stream, 600 + round * 100..700 + round * 100).await;
                tokio::time::sleep(Duration::from_millis(1_500)).await;
            }
        })
    };
    let (more, _) = read(&mut fetcher, 400).await;
    records.extend(more);
    writer.await.unwrap();
    assert_eq!(values(&records), (0..1_000).collect::<Vec<_>>());
    assert!(records.iter().any(|r| r.aggregated));
    assert!(
        cutter.cuts() >= 2,
        "the test cut live subscriptions ({} cuts)",
        cutter.cuts()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_once_in_order_across_subscriptions_the_server_ends() {
    let (client, stream, consumer_arn) = stream_with_consumer().await;
    put_range(&client, &stream, 0..300).await;
    // Each subscription is ended cleanly after about 2 s, as AWS ends one after 5 minutes: the
    // reader subscribes again just after the last record it delivered.
    let ender = ConnectionCutter::start_with(
        &KinesisServer::KinesisMock.endpoint(),
        Duration::from_millis(2_000),
        Ending::EndEventStreams,
    )
    .await;
    let ended_client = aws_sdk_kinesis::Client::new(&sdk_config(ender.endpoint()).await);
    let mut fetcher = FanOutFetcher::start(
        ended_client,
        Arc::from(stream.as_str()),
        consumer_arn,
        first_shard(),
        StartingPosition::TrimHorizon,
        None,
        quick(),
    );
    let (mut records, _) = read(&mut fetcher, 300).await;
    for round in 0..4 {
        put_range(&client, &stream, 300 + round * 50..350 + round * 50).await;
        let (more, _) = read(&mut fetcher, 50).await;
        records.extend(more);
        tokio::time::sleep(Duration::from_millis(1_500)).await;
    }
    assert_eq!(values(&records), (0..500).collect::<Vec<_>>());
    assert!(
        ender.cuts() >= 2,
        "the test ended live subscriptions ({} ended)",
        ender.cuts()
    );
}

#[tokio::test]
async fn a_checkpoint_inside_an_aggregate_resumes_at_the_next_sub_record() {
    let (client, stream, consumer_arn) = stream_with_consumer().await;
    put_range(&client, &stream, 0..300).await;
    let stream: Arc<str> = Arc::from(stream.as_str());
    let mut fetcher = FanOutFetcher::start(
        client.clone(),
        stream.clone(),
        consumer_arn.clone(),
        first_shard(),
        StartingPosition::TrimHorizon,
        None,
        quick(),
    );
    let (all, _) = read(&mut fetcher, 300).await;
    drop(fetcher);
    let inside = all
        .iter()
        .position(|r| r.aggregated && r.sub_sequence_number == 3)
        .expect("an aggregate of more than 3 records");
    let checkpoint: Position = all[inside].position();
    let mut fetcher = FanOutFetcher::start(
        client,
        stream,
        consumer_arn,
        first_shard(),
        StartingPosition::After(checkpoint),
        None,
        quick(),
    );
    let (rest, _) = read(&mut fetcher, 300 - inside - 1).await;
    assert_eq!(values(&rest), ((inside + 1)..300).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_slow_reader_loses_nothing() {
    let (client, stream, consumer_arn) = stream_with_consumer().await;
    let mut config = quick();
    config.queued_events = 1;
    let mut fetcher = FanOutFetcher::start(
        client.clone(),
        Arc::from(stream.as_str()),
        consumer_arn,
        first_shard(),
        StartingPosition::TrimHorizon,
        None,
        config,
    );
    // Ten events' worth of records while nobody reads: the queue holds one event, the rest
    // waits in the subscription.
    for round in 0..5 {
        put_range(&client, &stream, round * 100..(round + 1) * 100).await;
        tokio::time::sleep(Duration::from_millis(1_100)).await;
    }
    let mut records = Vec::new();
    while records.len() < 500 {
        let batch = tokio::time::timeout(Duration::from_secs(30), fetcher.next())
            .await
            .expect("a batch in time")
            .unwrap()
            .unwrap();
        records.extend(batch.records);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(values(&records), (0..500).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_closed_shard_ends_with_its_children() {
    let (client, stream, consumer_arn) = stream_with_consumer().await;
    put_range(&client, &stream, 0..300).await;
    let mut fetcher = FanOutFetcher::start(
        client.clone(),
        Arc::from(stream.as_str()),
        consumer_arn,
        first_shard(),
        StartingPosition::TrimHorizon,
        None,
        quick(),
    );
    let (mut records, end) = read(&mut fetcher, 300).await;
    assert!(end.is_none());
    split_shard(&client, &stream, "shardId-000000000000", u128::MAX / 2).await;
    let (rest, end) = read(&mut fetcher, usize::MAX).await;
    records.extend(rest);
    let children = end.expect("the shard end").shard_end.unwrap();
    assert_eq!(values(&records), (0..300).collect::<Vec<_>>());
    assert_eq!(children.len(), 2, "{children:?}");
    assert!(
        children
            .iter()
            .all(|c| c.parent_shards == vec![first_shard()])
    );
    assert!(
        fetcher.next().await.is_none(),
        "nothing after the shard end"
    );
}

/// Caught-up subscriptions ask whether their shard closed (the fallback for servers that never
/// name the children over fan-out) from one listing the worker's subscriptions share: at most
/// one `ListShards` per half `shard_end_check_interval` however many shards there are. Before,
/// each subscription listed the whole stream itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caught_up_subscriptions_share_one_listing_of_the_stream() {
    use std::sync::Mutex;

    use kinesis_consumer::retrieval::RetrievalConfig;
    use kinesis_consumer::{InitialPosition, Scheduler};
    use kinesis_test_support::counting::CallCounter;
    use kinesis_test_support::{DynamoDbServer, dynamodb_client};

    const SHARDS: usize = 12;
    let plain = kinesis_client(KinesisServer::KinesisMock).await;
    let stream = unique_name("fanout-listing");
    create_stream(&plain, &stream, SHARDS as i32).await;
    let counter = CallCounter::new();
    let kinesis = counter.kinesis_client(&plain);
    let check = Duration::from_secs(2);
    let seen = Arc::new(Mutex::new(common::Seen::default()));
    let handle = Scheduler::builder(
        kinesis,
        dynamodb_client(DynamoDbServer::Dynalite).await,
        &stream,
        unique_name("app"),
    )
    .worker_id("w1")
    .initial_position(InitialPosition::TrimHorizon)
    .lease_config(common::quick_leases(Duration::from_secs(3)))
    .retrieval(RetrievalConfig::FanOut(FanOutConfig {
        shard_end_check_interval: check,
        ..quick()
    }))
    .build(common::recorder("w1", &seen))
    .await
    .unwrap()
    .spawn();
    common::wait_until(Duration::from_secs(30), "every shard subscribed", || {
        counter.calls("SubscribeToShard") >= SHARDS as u64
    })
    .await;
    counter.reset();
    let window = Duration::from_secs(8);
    tokio::time::sleep(window).await;
    let listings = counter.calls("ListShards");
    handle.shutdown().await.unwrap();
    println!("{listings} ListShards in {window:?} with {SHARDS} caught-up subscriptions");
    // One per second (half the check interval), and one for each window edge; each of the 12
    // subscriptions checking every 2 s on its own makes about 6 a second.
    let bound = (window.as_secs_f64() / (check.as_secs_f64() / 2.0)) as u64 + 2;
    assert!(
        listings <= bound,
        "{listings} ListShards in {window:?}: more than {bound}"
    );
    assert!(
        listings > 0,
        "the subscriptions did check for their shard's end"
    );
}
