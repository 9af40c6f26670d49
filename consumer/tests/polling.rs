//! Polling retrieval against real local servers: every record once and in order, through expired
//! iterators and throttling, resuming inside an aggregate, and the shard end after a split.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{first_shard, values};
use kinesis_consumer::retrieval::{Batch, PollingConfig, ShardFetcher, StartingPosition};
use kinesis_consumer::{Position, Record};
use kinesis_producer::Producer;
use kinesis_test_support::proxy::{FaultKind, FaultProxy, Faults, GetRecordsFaults};
use kinesis_test_support::{
    KinesisServer, create_stream, kinesis_client, sdk_config, split_shard, unique_name,
};

fn fast() -> PollingConfig {
    PollingConfig {
        max_records: 50,
        idle_time_between_reads: Duration::from_millis(10),
        min_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(50),
        ..PollingConfig::default()
    }
}

/// Puts `count` records through the producer (aggregated, several per Kinesis record) into a
/// one-shard stream; returns the stream name.
async fn stream_with_records(
    server: KinesisServer,
    count: usize,
    aggregation_max_size: usize,
) -> (aws_sdk_kinesis::Client, String) {
    let client = kinesis_client(server).await;
    let stream = unique_name("polling");
    create_stream(&client, &stream, 1).await;
    let producer = Producer::builder(client.clone(), &stream)
        .aggregation_max_size(aggregation_max_size)
        .build()
        .await
        .unwrap();
    let mut handles = Vec::new();
    for i in 0..count {
        handles.push(
            producer
                .put_data(format!("key-{}", i % 17), i.to_string())
                .await
                .unwrap(),
        );
    }
    for handle in handles {
        handle.await.unwrap();
    }
    producer.shutdown().await.unwrap();
    (client, stream)
}

/// Reads until a batch is empty (the tip of an open shard) or the shard ends.
async fn read_all(fetcher: &mut ShardFetcher) -> Vec<Record> {
    let mut records = Vec::new();
    while let Some(batch) = tokio::time::timeout(Duration::from_secs(30), fetcher.next())
        .await
        .expect("a batch in time")
    {
        let Batch {
            records: batch,
            shard_end,
            ..
        } = batch.expect("no fatal error");
        let empty = batch.is_empty();
        records.extend(batch);
        if empty || shard_end.is_some() {
            break;
        }
    }
    records
}

#[tokio::test]
async fn reads_every_record_once_in_order_on_both_servers() {
    for server in KinesisServer::ALL {
        let (client, stream) = stream_with_records(server, 1_000, 2_000).await;
        let mut fetcher = ShardFetcher::start(
            client,
            Arc::from(stream.as_str()),
            first_shard(),
            StartingPosition::TrimHorizon,
            None,
            fast(),
        );
        let records = read_all(&mut fetcher).await;
        assert_eq!(
            values(&records),
            (0..1_000).collect::<Vec<_>>(),
            "{server:?}"
        );
        assert!(records.iter().any(|r| r.aggregated));
        assert!(
            records
                .windows(2)
                .all(|w| w[0].position() < w[1].position())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_iterators_and_throttling_skip_nothing_and_repeat_nothing() {
    // kinesalite: kinesis-mock takes ~150 ms a call, and this test makes hundreds.
    let (_, stream) = stream_with_records(KinesisServer::Kinesalite, 1_000, 200).await;
    let proxy = FaultProxy::start(&KinesisServer::Kinesalite.endpoint()).await;
    proxy.set_faults(Faults {
        seed: Some(11),
        get_records: GetRecordsFaults {
            throttle_rate: 0.3,
            expired_iterator_rate: 0.3,
            ..GetRecordsFaults::default()
        },
        ..Faults::default()
    });
    let client = aws_sdk_kinesis::Client::new(&sdk_config(proxy.endpoint()).await);
    // One Kinesis record per call: many calls, many faults.
    let config = PollingConfig {
        max_records: 1,
        ..fast()
    };
    let mut fetcher = ShardFetcher::start(
        client,
        Arc::from(stream.as_str()),
        first_shard(),
        StartingPosition::TrimHorizon,
        None,
        config,
    );
    let records = read_all(&mut fetcher).await;
    assert_eq!(values(&records), (0..1_000).collect::<Vec<_>>());
    let stats = proxy.stats();
    assert!(stats.faults(FaultKind::ExpiredIterator) > 3, "{stats:?}");
    assert!(
        stats.faults(FaultKind::GetRecordsThrottled) > 3,
        "{stats:?}"
    );
}

#[tokio::test]
async fn resuming_inside_an_aggregate_delivers_exactly_the_rest() {
    let (client, stream) = stream_with_records(KinesisServer::KinesisMock, 500, 2_000).await;
    let stream: Arc<str> = Arc::from(stream.as_str());
    let mut fetcher = ShardFetcher::start(
        client.clone(),
        stream.clone(),
        first_shard(),
        StartingPosition::TrimHorizon,
        None,
        fast(),
    );
    let all = read_all(&mut fetcher).await;
    // A checkpoint in the middle of an aggregate, and one at its last sub-record.
    let middle = all
        .iter()
        .position(|r| r.aggregated && r.sub_sequence_number == 3)
        .unwrap();
    let last_of_aggregate = all
        .windows(2)
        .position(|w| w[0].sequence_number != w[1].sequence_number && w[0].aggregated)
        .unwrap();
    for checkpoint in [middle, last_of_aggregate] {
        let position = all[checkpoint].position();
        let mut fetcher = ShardFetcher::start(
            client.clone(),
            stream.clone(),
            first_shard(),
            StartingPosition::After(position),
            None,
            fast(),
        );
        let rest = read_all(&mut fetcher).await;
        assert_eq!(
            values(&rest),
            values(&all[checkpoint + 1..]),
            "resume after record {checkpoint}"
        );
    }
    // A checkpoint at the very last sub-record delivers nothing.
    let beyond = Position {
        sequence_number: all.last().unwrap().sequence_number.clone(),
        sub_sequence_number: u64::MAX,
    };
    let mut fetcher = ShardFetcher::start(
        client,
        stream,
        first_shard(),
        StartingPosition::After(beyond),
        None,
        fast(),
    );
    assert!(read_all(&mut fetcher).await.is_empty());
}

#[tokio::test]
async fn a_split_parent_ends_with_its_children() {
    for server in KinesisServer::ALL {
        let (client, stream) = stream_with_records(server, 300, 2_000).await;
        split_shard(&client, &stream, "shardId-000000000000", u128::MAX / 2).await;
        let mut fetcher = ShardFetcher::start(
            client,
            Arc::from(stream.as_str()),
            first_shard(),
            StartingPosition::TrimHorizon,
            None,
            fast(),
        );
        let mut records = Vec::new();
        let children = loop {
            let batch = tokio::time::timeout(Duration::from_secs(30), fetcher.next())
                .await
                .expect("the closed shard ends")
                .expect("a batch")
                .unwrap();
            records.extend(batch.records);
            if let Some(children) = batch.shard_end {
                break children;
            }
        };
        assert_eq!(values(&records), (0..300).collect::<Vec<_>>(), "{server:?}");
        match server {
            // kinesis-mock names the children; kinesalite does not (list the shards instead).
            KinesisServer::KinesisMock => {
                assert_eq!(children.len(), 2);
                assert!(
                    children
                        .iter()
                        .all(|c| c.parent_shards == vec![first_shard()])
                );
            }
            KinesisServer::Kinesalite => assert!(children.is_empty()),
        }
        assert!(
            fetcher.next().await.is_none(),
            "nothing after the shard end"
        );
    }
}

/// Puts `count` plain records of `size` bytes into a new one-shard kinesalite stream, the
/// partition key of each its index; returns the stream.
async fn stream_of_sized_records(count: usize, size: usize) -> String {
    let client = kinesis_client(KinesisServer::Kinesalite).await;
    let stream = unique_name("read-ahead");
    create_stream(&client, &stream, 1).await;
    let producer = Producer::builder(client, &stream)
        .aggregation_enabled(false)
        .build()
        .await
        .unwrap();
    let mut handles = Vec::new();
    for i in 0..count {
        handles.push(
            producer
                .put_data(i.to_string(), vec![b'x'; size])
                .await
                .unwrap(),
        );
    }
    for handle in handles {
        handle.await.unwrap();
    }
    producer.shutdown().await.unwrap();
    stream
}

/// Starts a reader through a proxy that counts its calls, lets it read ahead of a processor that
/// takes nothing for 2 s, and returns how many `GetRecords` it made then and every record it
/// gives afterwards.
async fn read_ahead_of_a_stalled_processor(
    stream: &str,
    config: PollingConfig,
) -> (u64, Vec<Record>) {
    let proxy = FaultProxy::start(&KinesisServer::Kinesalite.endpoint()).await;
    let client = aws_sdk_kinesis::Client::new(&sdk_config(proxy.endpoint()).await);
    let mut fetcher = ShardFetcher::start(
        client,
        Arc::from(stream),
        first_shard(),
        StartingPosition::TrimHorizon,
        None,
        config,
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let calls = proxy.stats().forwarded("GetRecords");
    (calls, read_all(&mut fetcher).await)
}

fn keys(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| r.partition_key.to_string())
        .collect()
}

#[tokio::test]
async fn read_ahead_stops_at_the_byte_limit() {
    // 10 records of 100 KiB a call: ~1 MiB a batch.
    let stream = stream_of_sized_records(60, 100 * 1024).await;
    let config = PollingConfig {
        max_records: 10,
        prefetch_batches: 3,
        prefetch_max_bytes: 1_500 * 1024,
        ..fast()
    };
    let (calls, records) = read_ahead_of_a_stalled_processor(&stream, config).await;
    // The first batch is under the limit, the second goes over it: no third read. Without the
    // byte limit the reader fills its 3 queued batches and holds a fourth.
    assert_eq!(calls, 2, "GetRecords calls while nothing was taken");
    let expected: Vec<String> = (0..60).map(|i| i.to_string()).collect();
    assert_eq!(keys(&records), expected, "every record once, in order");
}

#[tokio::test]
async fn read_ahead_stops_at_the_record_limit() {
    let stream = stream_of_sized_records(60, 10).await;
    let config = PollingConfig {
        max_records: 10,
        prefetch_batches: 3,
        prefetch_max_records: 15,
        ..fast()
    };
    let (calls, records) = read_ahead_of_a_stalled_processor(&stream, config).await;
    assert_eq!(calls, 2, "GetRecords calls while nothing was taken");
    let expected: Vec<String> = (0..60).map(|i| i.to_string()).collect();
    assert_eq!(keys(&records), expected, "every record once, in order");
}
