//! The KPL's metric names reach a `metrics` recorder, with stream, shard and code labels.

use std::collections::HashMap;
use std::time::Duration;

use kinesis_producer::Producer;
use kinesis_producer::metrics as names;
use kinesis_test_support::proxy::{EntryFailures, FaultProxy, Faults};
use kinesis_test_support::{KinesisServer, create_stream, kinesis_client, sdk_config, unique_name};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kpl_metrics_are_emitted_with_labels() {
    // The pipeline runs on runtime threads, so the recorder must be global (this binary's only test).
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder
        .install()
        .expect("no other recorder in this test binary");

    let direct = kinesis_client(KinesisServer::Kinesalite).await;
    let stream = unique_name("producer-metrics");
    create_stream(&direct, &stream, 2).await;
    let proxy = FaultProxy::start(&KinesisServer::Kinesalite.endpoint()).await;
    proxy.set_faults(Faults {
        seed: Some(3),
        put_records: EntryFailures {
            entry_failure_rate: 0.3,
            internal_failure_share: 0.0,
        },
        ..Faults::default()
    });
    let client = aws_sdk_kinesis::Client::new(&sdk_config(proxy.endpoint()).await);
    let producer = Producer::builder(client, &stream)
        .aggregation_max_size(1_024)
        .min_backoff(Duration::from_millis(10))
        .build()
        .await
        .unwrap();
    let mut handles = Vec::new();
    for i in 0..1_000 {
        handles.push(
            producer
                .put_data(format!("key-{i}"), vec![0u8; 50])
                .await
                .unwrap(),
        );
    }
    for handle in handles {
        handle.await.unwrap();
    }
    producer.shutdown().await.unwrap();

    let mut counters: HashMap<&str, u64> = HashMap::new();
    let mut histograms: HashMap<&str, usize> = HashMap::new();
    let mut shard_labelled = 0;
    let mut error_codes = Vec::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let name = [
            names::USER_RECORDS_RECEIVED,
            names::USER_RECORDS_PUT,
            names::KINESIS_RECORDS_PUT,
            names::ERRORS_BY_CODE,
            names::REQUEST_TIME,
            names::USER_RECORDS_PER_KINESIS_RECORD,
            names::BUFFERING_TIME,
            names::RETRIES_PER_RECORD,
        ]
        .into_iter()
        .find(|n| *n == key.key().name());
        let Some(name) = name else { continue };
        let labels: HashMap<&str, &str> =
            key.key().labels().map(|l| (l.key(), l.value())).collect();
        assert_eq!(
            labels.get("stream"),
            Some(&stream.as_str()),
            "{name} has the stream label"
        );
        if labels.contains_key("shard") {
            shard_labelled += 1;
        }
        if let Some(code) = labels.get("code") {
            error_codes.push(code.to_string());
        }
        match value {
            DebugValue::Counter(n) => *counters.entry(name).or_default() += n,
            DebugValue::Histogram(values) => *histograms.entry(name).or_default() += values.len(),
            DebugValue::Gauge(_) => {}
        }
    }
    assert_eq!(counters[names::USER_RECORDS_RECEIVED], 1_000);
    assert_eq!(
        counters[names::USER_RECORDS_PUT],
        1_000,
        "summed over the shard labels"
    );
    assert!(counters[names::KINESIS_RECORDS_PUT] > 10);
    assert!(counters[names::ERRORS_BY_CODE] > 0);
    assert!(
        error_codes
            .iter()
            .all(|c| c == "ProvisionedThroughputExceededException")
    );
    assert!(histograms[names::REQUEST_TIME] > 0);
    assert!(histograms[names::BUFFERING_TIME] > 0);
    assert!(histograms[names::USER_RECORDS_PER_KINESIS_RECORD] > 0);
    assert!(histograms[names::RETRIES_PER_RECORD] > 0);
    assert!(
        shard_labelled > 2,
        "per-shard metrics carry the shard label"
    );
}
