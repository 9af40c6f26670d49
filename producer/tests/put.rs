//! The producer against real local Kinesis servers.

mod common;

use std::time::Duration;

use kinesis_producer::{Producer, PutHandle, UserRecord};
use kinesis_test_support::{KinesisServer, create_stream, kinesis_client, unique_name};
use rand::{RngExt, SeedableRng};

fn random_records(count: usize, seed: u64) -> Vec<UserRecord> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..count)
        .map(|i| {
            let key: String = (0..12)
                .map(|_| rng.sample(rand::distr::Alphanumeric) as char)
                .collect();
            UserRecord::new(key, format!("record {i} {}", rng.random::<u64>())).unwrap()
        })
        .collect()
}

/// Puts `records`, checks every one was acknowledged once and is in the stream exactly once,
/// with its data, in the shard its partition key hashes to.
async fn put_all_and_verify(server: KinesisServer, count: usize) {
    let client = kinesis_client(server).await;
    let stream = unique_name("producer");
    create_stream(&client, &stream, 4).await;
    let producer = Producer::builder(client.clone(), &stream)
        .build()
        .await
        .unwrap();

    let records = random_records(count, 7);
    let mut handles: Vec<PutHandle> = Vec::with_capacity(count);
    for record in &records {
        handles.push(producer.put(record.clone()).await.unwrap());
    }
    producer.flush().await.unwrap();
    let mut acknowledged = Vec::with_capacity(count);
    for handle in handles {
        let outcome = handle.await.expect("every record is put");
        assert_eq!(outcome.attempts.len(), 1, "no fault, one attempt");
        assert!(outcome.attempts[0].is_success());
        acknowledged.push(outcome);
    }
    producer.shutdown().await.unwrap();

    let ranges = common::shard_ranges(&client, &stream).await;
    let found = common::expect_each_stored_once(&client, &stream, &records, &acknowledged).await;
    for ((record, outcome), found) in records.iter().zip(&acknowledged).zip(&found) {
        assert_eq!(found.shard, outcome.shard_id.as_str(), "{server:?}");
        assert!(common::owns(&ranges, &found.shard, record.partition_key()));
    }
    let aggregated = acknowledged
        .iter()
        .filter(|o| o.sub_sequence_number.is_some())
        .count();
    assert!(
        aggregated > count / 2,
        "most records travel aggregated ({aggregated} of {count})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_hundred_thousand_records_on_kinesis_mock() {
    put_all_and_verify(KinesisServer::KinesisMock, 100_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_records_on_kinesalite() {
    put_all_and_verify(KinesisServer::Kinesalite, 20_000).await;
}

#[tokio::test]
async fn invalid_records_are_refused_and_nothing_is_buffered() {
    let client = kinesis_client(KinesisServer::Kinesalite).await;
    let stream = unique_name("producer-invalid");
    create_stream(&client, &stream, 1).await;
    let producer = Producer::builder(client, &stream).build().await.unwrap();
    use kinesis_producer::{SubmitError, ValidationError};
    assert!(matches!(
        producer.put_data("", &b"x"[..]).await,
        Err(SubmitError::Invalid(ValidationError::EmptyPartitionKey))
    ));
    assert!(matches!(
        producer.put_data("k".repeat(257), &b"x"[..]).await,
        Err(SubmitError::Invalid(ValidationError::PartitionKeyTooLong {
            chars: 257
        }))
    ));
    assert!(matches!(
        producer.put_data("k", vec![0u8; 1_048_577]).await,
        Err(SubmitError::Invalid(ValidationError::DataTooLarge { .. }))
    ));
    assert_eq!(producer.outstanding_records(), 0);
    producer.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_missing_stream_fails_the_build() {
    let client = kinesis_client(KinesisServer::Kinesalite).await;
    let error = Producer::builder(client, unique_name("no-such-stream"))
        .build()
        .await
        .err()
        .expect("no stream");
    assert!(error.to_string().contains("not found"), "{error}");
}

#[tokio::test]
async fn shutdown_delivers_everything_buffered() {
    let client = kinesis_client(KinesisServer::Kinesalite).await;
    let stream = unique_name("producer-shutdown");
    create_stream(&client, &stream, 2).await;
    // A long buffering time: only shutdown can make these go out quickly.
    let producer = Producer::builder(client.clone(), &stream)
        .record_max_buffered_time(Duration::from_secs(600))
        .build()
        .await
        .unwrap();
    let mut handles = Vec::new();
    for record in random_records(1_000, 3) {
        handles.push(producer.put(record).await.unwrap());
    }
    let clone = producer.clone();
    tokio::time::timeout(Duration::from_secs(20), producer.shutdown())
        .await
        .unwrap()
        .unwrap();
    for handle in handles {
        handle.await.expect("put before shutdown");
    }
    let refused = clone.put_data("late", &b"x"[..]).await;
    assert!(matches!(
        refused,
        Err(kinesis_producer::SubmitError::Closed(_))
    ));
    let read = common::count_stored(&client, &stream).await;
    assert_eq!(read, 1_000);
}

/// Puts racing a shutdown on other threads: each either is refused (`Closed`, the record given
/// back) or resolves as put. None is accepted and then resolves `Aborted` (a put that had
/// reserved its place in the queue before the queue closed used to be left there unread).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn puts_racing_a_shutdown_are_refused_or_put_never_aborted() {
    let client = kinesis_client(KinesisServer::Kinesalite).await;
    let stream = unique_name("shutdown-race");
    create_stream(&client, &stream, 2).await;
    for round in 0..20 {
        let producer = Producer::builder(client.clone(), &stream)
            .build()
            .await
            .unwrap();
        let mut putters = Vec::new();
        for task in 0..4 {
            let producer = producer.clone();
            putters.push(tokio::spawn(async move {
                let mut handles = Vec::new();
                for i in 0.. {
                    match producer.put_data(format!("{task}-{i}"), &b"x"[..]).await {
                        Ok(handle) => handles.push(handle),
                        Err(kinesis_producer::SubmitError::Closed(_)) => break,
                        Err(other) => panic!("{other:?}"),
                    }
                    if i % 64 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                handles
            }));
        }
        tokio::time::sleep(Duration::from_millis(20 + round)).await;
        producer.clone().shutdown().await.unwrap();
        let mut accepted = 0;
        for putter in putters {
            for handle in putter.await.unwrap() {
                accepted += 1;
                if let Err(error) = handle.await {
                    panic!("round {round}: a put accepted before the shutdown ended as {error}");
                }
            }
        }
        assert!(
            accepted > 0,
            "round {round}: some puts went in before the shutdown"
        );
    }
}

#[tokio::test]
async fn a_record_larger_than_collection_max_size_goes_alone() {
    let client = kinesis_client(KinesisServer::Kinesalite).await;
    let stream = unique_name("producer-large");
    create_stream(&client, &stream, 1).await;
    let producer = Producer::builder(client.clone(), &stream)
        .collection_max_size(52_224)
        .build()
        .await
        .unwrap();
    let big = producer
        .put_data("big", vec![7u8; 1_000_000])
        .await
        .unwrap();
    let small = producer.put_data("small", &b"x"[..]).await.unwrap();
    let big = tokio::time::timeout(Duration::from_secs(10), big)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        big.sub_sequence_number, None,
        "a record over AggregationMaxSize goes plain"
    );
    small.await.unwrap();
    producer.shutdown().await.unwrap();
    let read = common::count_stored(&client, &stream).await;
    assert_eq!(read, 2);
}

/// On a current-thread runtime the pipeline task runs only when the test yields, so it lags as
/// far as the test likes.
#[tokio::test]
async fn a_lagging_pipeline_holds_puts_back_and_a_cancelled_put_takes_nothing() {
    let client = kinesis_client(KinesisServer::Kinesalite).await;
    let stream = unique_name("producer-queue");
    create_stream(&client, &stream, 2).await;
    let producer = Producer::builder(client.clone(), &stream)
        .build()
        .await
        .unwrap();
    let mut handles = Vec::new();
    let mut i = 0;
    let refused = loop {
        let record = UserRecord::new(format!("k{i}"), vec![1u8; 10]).unwrap();
        match producer.try_put(record) {
            Ok(handle) => handles.push(handle),
            Err(error) => break error,
        }
        i += 1;
    };
    // Far below MaxOutstandingRecords (100,000): the queue to the pipeline is full.
    assert_eq!(handles.len(), kinesis_producer::PUT_QUEUE_CAPACITY);
    assert!(
        matches!(refused, kinesis_producer::SubmitError::Full(_)),
        "{refused}"
    );
    let returned = refused.into_record().expect("Full gives the record back");
    assert_eq!(returned.partition_key(), format!("k{i}"));
    assert_eq!(producer.outstanding_records(), handles.len());
    {
        // Polled once it waits for room; dropped then, it must give its permits back.
        let put = producer.put_data("cancelled", &b"x"[..]);
        tokio::select! {
            biased;
            _ = put => panic!("the queue is full: put cannot have finished"),
            () = std::future::ready(()) => {}
        }
    }
    assert_eq!(producer.outstanding_records(), handles.len());
    // Awaiting lets the pipeline run: everything taken is put, and put has room again.
    handles.push(producer.put_data("after", &b"y"[..]).await.unwrap());
    for handle in handles {
        handle.await.unwrap();
    }
    producer.shutdown().await.unwrap();
    let read = common::count_stored(&client, &stream).await;
    assert_eq!(read, kinesis_producer::PUT_QUEUE_CAPACITY + 1);
}
