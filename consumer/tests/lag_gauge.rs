//! The `MillisBehindLatest` gauge of a shard this worker stops reading (its lease taken by
//! another worker, or the worker shut down) goes to 0 instead of keeping its last value, which
//! an alarm on the gauge would read as a shard still falling behind.
//!
//! The local servers report no lag for a shard being read, so a fault proxy in front of
//! kinesalite rewrites each GetRecords answer's `MillisBehindLatest` to 7,000.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Seen;
use kinesis_consumer::lease::{DynamoLeaseStore, LeaseStore};
use kinesis_consumer::metrics::MILLIS_BEHIND_LATEST;

use kinesis_test_support::proxy::{FaultProxy, Faults, GetRecordsFaults};
use kinesis_test_support::{
    DynamoDbServer, KinesisServer, create_stream, dynamodb_client, kinesis_client, sdk_config,
    unique_name,
};
use metrics::{
    Counter, Gauge, GaugeFn, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};

const BEHIND: i64 = 7_000;

/// A gauge keeping the last value set, read without changing it (the `metrics-util` debugging
/// recorder zeroes a gauge when it takes a snapshot, so polling it would read 0 anyway).
#[derive(Debug, Default)]
struct LastValue(AtomicU64);

impl GaugeFn for LastValue {
    fn increment(&self, value: f64) {
        self.0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| {
                Some((f64::from_bits(v) + value).to_bits())
            })
            .unwrap();
    }

    fn decrement(&self, value: f64) {
        self.increment(-value);
    }

    fn set(&self, value: f64) {
        self.0.store(value.to_bits(), Ordering::SeqCst);
    }
}

/// Records the gauges only, by key.
#[derive(Debug, Default, Clone)]
struct Gauges(Arc<Mutex<HashMap<Key, Arc<LastValue>>>>);

impl Recorder for Gauges {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
        Counter::noop()
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        let mut gauges = self.0.lock().unwrap();
        Gauge::from_arc(gauges.entry(key.clone()).or_default().clone())
    }

    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

impl Gauges {
    /// The lag gauge's value for `stream`'s first shard, if it was set.
    fn lag(&self, stream: &str) -> Option<f64> {
        let gauges = self.0.lock().unwrap();
        gauges.iter().find_map(|(key, value)| {
            let labels: Vec<(&str, &str)> = key.labels().map(|l| (l.key(), l.value())).collect();
            (key.name() == MILLIS_BEHIND_LATEST
                && labels.contains(&("stream", stream))
                && labels.contains(&("shard", common::first_shard().as_str())))
            .then(|| f64::from_bits(value.0.load(Ordering::SeqCst)))
        })
    }

    async fn wait_for_lag(&self, stream: &str, want: f64, what: &str) {
        common::wait_until(Duration::from_secs(20), what, || {
            self.lag(stream) == Some(want)
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lag_of_a_shard_no_longer_read_here_is_zero() {
    // The shard consumers run on runtime threads, so the recorder must be global (this binary's
    // only test).
    let gauges = Gauges::default();
    metrics::set_global_recorder(gauges.clone()).expect("no other recorder in this test binary");

    let direct = kinesis_client(KinesisServer::Kinesalite).await;
    let stream = unique_name("lag-gauge");
    let application = unique_name("app");
    create_stream(&direct, &stream, 1).await;
    common::put_values(&direct, &stream, 0..10, false).await;
    let proxy = FaultProxy::start(&KinesisServer::Kinesalite.endpoint()).await;
    proxy.set_faults(Faults {
        get_records: GetRecordsFaults {
            millis_behind_latest: Some(BEHIND),
            ..GetRecordsFaults::default()
        },
        ..Faults::default()
    });
    let dynamodb = dynamodb_client(DynamoDbServer::Dynalite).await;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let handle = common::one_worker(
        aws_sdk_kinesis::Client::new(&sdk_config(proxy.endpoint()).await),
        dynamodb.clone(),
        &stream,
        &application,
    )
    .build(common::recorder("w1", &seen))
    .await
    .unwrap()
    .spawn();
    gauges
        .wait_for_lag(&stream, BEHIND as f64, "the lag reported")
        .await;

    // Another worker takes the lease (and then never renews it).
    let store = DynamoLeaseStore::new(dynamodb, application);
    let lease = store
        .get(&common::first_shard())
        .await
        .unwrap()
        .expect("w1's lease");
    store.take(&lease, "w2").await.unwrap();
    common::wait_until(Duration::from_secs(20), "w1 told it lost the lease", || {
        !seen.lock().unwrap().lost.is_empty()
    })
    .await;
    gauges
        .wait_for_lag(&stream, 0.0, "the lag of the lost shard at 0")
        .await;

    // w2's lease expires, w1 reads the shard again (new records) and reports its lag, until it
    // shuts down.
    common::put_values(&direct, &stream, 10..20, false).await;
    gauges
        .wait_for_lag(&stream, BEHIND as f64, "the lag reported again")
        .await;
    handle.shutdown().await.unwrap();
    assert_eq!(
        gauges.lag(&stream),
        Some(0.0),
        "no lag reported by a worker that stopped"
    );
}
