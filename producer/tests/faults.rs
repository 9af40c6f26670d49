//! The producer through the fault-injecting proxy in front of a real local server: partial
//! failures, 5xx, throttling, expiry, fatal errors, ordering and backpressure.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use kinesis_producer::{Producer, ProducerBuilder, PutError, PutHandle, SubmitError, UserRecord};
use kinesis_test_support::proxy::{
    EntryFailures, ErrorResponse, FaultKind, FaultProxy, Faults, Latency, RequestErrors, Resets,
    Targets,
};
use kinesis_test_support::{KinesisServer, create_stream, kinesis_client, sdk_config, unique_name};

/// A stream on `server` and a proxy in front of it; the producer's client talks to the proxy.
async fn setup(
    server: KinesisServer,
    shards: i32,
) -> (
    aws_sdk_kinesis::Client,
    FaultProxy,
    String,
    aws_sdk_kinesis::Client,
) {
    let direct = kinesis_client(server).await;
    let stream = unique_name("faults");
    create_stream(&direct, &stream, shards).await;
    let proxy = FaultProxy::start(&server.endpoint()).await;
    let through_proxy = aws_sdk_kinesis::Client::new(&sdk_config(proxy.endpoint()).await);
    (direct, proxy, stream, through_proxy)
}

fn fast_retries(builder: ProducerBuilder) -> ProducerBuilder {
    builder
        .min_backoff(Duration::from_millis(10))
        .max_backoff(Duration::from_millis(200))
        .record_max_buffered_time(Duration::from_millis(20))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_under_entry_failures_and_503s() {
    let (direct, proxy, stream, client) = setup(KinesisServer::KinesisMock, 4).await;
    proxy.set_faults(Faults {
        seed: Some(1),
        put_records: EntryFailures {
            entry_failure_rate: 0.2,
            internal_failure_share: 0.5,
        },
        errors: RequestErrors {
            targets: Targets::only(["PutRecords"]),
            rate: 0.1,
            responses: vec![ErrorResponse::ServiceUnavailable],
        },
        ..Faults::default()
    });
    // Small aggregates: more Kinesis records per request, so per-entry failures hit often.
    let producer = fast_retries(Producer::builder(client, &stream))
        .aggregation_max_size(4_096)
        .build()
        .await
        .unwrap();
    let count = 100_000;
    let mut records = Vec::with_capacity(count);
    let mut handles = Vec::with_capacity(count);
    for i in 0..count {
        let record = UserRecord::new(format!("pk-{}", i % 5_000), format!("value-{i}")).unwrap();
        records.push(record.clone());
        handles.push(producer.put(record).await.unwrap());
    }
    producer.flush().await.unwrap();
    let mut codes: BTreeMap<String, usize> = BTreeMap::new();
    let mut outcomes = Vec::with_capacity(count);
    let mut retried = 0;
    for handle in handles {
        let outcome = handle.await.expect("no record lost");
        let (last, earlier) = outcome.attempts.split_last().unwrap();
        assert!(last.is_success());
        for attempt in earlier {
            let error = attempt.error.as_ref().expect("earlier attempts failed");
            *codes.entry(error.code.clone()).or_default() += 1;
        }
        retried += usize::from(!earlier.is_empty());
        outcomes.push(outcome);
    }
    producer.shutdown().await.unwrap();
    for code in ["ProvisionedThroughputExceededException", "InternalFailure"] {
        assert!(
            codes.contains_key(code),
            "{code} should show in the attempts: {codes:?}"
        );
    }
    // How many requests draw a 503 depends on how records batch: each one the proxy answered
    // with a 503 shows in the attempts of the records it carried.
    let injected = proxy.stats().faults(FaultKind::RequestError);
    assert_eq!(
        codes.contains_key("ServiceUnavailable"),
        injected > 0,
        "{injected} requests answered 503: {codes:?}"
    );
    assert!(
        retried > count / 10,
        "only {retried} records needed a retry"
    );
    let stats = proxy.stats();
    assert!(stats.failed_entries_by_code.values().sum::<u64>() > 0);

    common::expect_each_stored_once(&direct, &stream, &records, &outcomes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_expire_on_time_and_come_back_when_everything_fails() {
    let (_direct, proxy, stream, client) = setup(KinesisServer::Kinesalite, 2).await;
    proxy.set_faults(Faults {
        put_records: EntryFailures {
            entry_failure_rate: 1.0,
            internal_failure_share: 0.5,
        },
        ..Faults::default()
    });
    let ttl = Duration::from_millis(1_500);
    let producer = fast_retries(Producer::builder(client, &stream))
        .record_ttl(ttl)
        .max_outstanding_records(2_000)
        .build()
        .await
        .unwrap();
    let started = Instant::now();
    let mut handles: Vec<(UserRecord, PutHandle)> = Vec::new();
    for i in 0..5_000 {
        let record = UserRecord::new(format!("k{i}"), format!("v{i}")).unwrap();
        // More than MaxOutstandingRecords: later puts wait until earlier records expire.
        handles.push((record.clone(), producer.put(record).await.unwrap()));
        assert!(producer.outstanding_records() <= 2_000);
    }
    for (record, handle) in handles {
        match handle.await {
            Err(PutError::Expired {
                record: returned,
                attempts,
            }) => {
                assert_eq!(*returned, record, "the caller gets its record back");
                assert!(!attempts.is_empty());
                assert!(attempts.iter().all(|a| a.error.is_some()));
            }
            other => panic!("expected Expired, got {other:?}"),
        }
    }
    // 5,000 records through a 2,000-record window: about three TTLs, never unbounded.
    assert!(
        started.elapsed() < ttl * 3 + Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // Permits come back in batches, right after the outcomes are delivered.
    for _ in 0..100 {
        if producer.outstanding_records() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(producer.outstanding_records(), 0);
    producer.shutdown().await.unwrap();
}

#[tokio::test]
async fn fail_if_throttled_fails_at_the_first_throttle() {
    let (_direct, proxy, stream, client) = setup(KinesisServer::Kinesalite, 1).await;
    proxy.set_faults(Faults {
        put_records: EntryFailures {
            entry_failure_rate: 1.0,
            internal_failure_share: 0.0,
        },
        ..Faults::default()
    });
    let producer = fast_retries(Producer::builder(client, &stream))
        .fail_if_throttled(true)
        .build()
        .await
        .unwrap();
    let error = producer
        .put_data("k", &b"v"[..])
        .await
        .unwrap()
        .await
        .unwrap_err();
    match &error {
        PutError::Throttled { record, attempts } => {
            assert_eq!(record.data(), &b"v"[..]);
            assert_eq!(attempts.len(), 1);
            assert_eq!(
                attempts[0].error.as_ref().unwrap().code,
                "ProvisionedThroughputExceededException"
            );
        }
        other => panic!("expected Throttled, got {other:?}"),
    }
    producer.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_non_retryable_error_fails_fast_with_the_record() {
    let (_direct, proxy, stream, client) = setup(KinesisServer::Kinesalite, 1).await;
    proxy.set_faults(Faults {
        errors: RequestErrors {
            targets: Targets::only(["PutRecords"]),
            rate: 1.0,
            responses: vec![ErrorResponse::Custom {
                status: 400,
                code: "AccessDeniedException".into(),
                message: "not allowed to PutRecords".into(),
            }],
        },
        ..Faults::default()
    });
    let producer = fast_retries(Producer::builder(client, &stream))
        .build()
        .await
        .unwrap();
    let started = Instant::now();
    let error = producer
        .put_data("k", &b"v"[..])
        .await
        .unwrap()
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    match error {
        PutError::Rejected {
            record,
            code,
            attempts,
            ..
        } => {
            assert_eq!(code, "AccessDeniedException");
            assert_eq!(record.partition_key(), "k");
            assert_eq!(attempts.len(), 1);
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
    producer.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_per_shard_keeps_each_key_in_put_order_under_failures() {
    let (direct, proxy, stream, client) = setup(KinesisServer::Kinesalite, 2).await;
    proxy.set_faults(Faults {
        seed: Some(7),
        put_records: EntryFailures {
            entry_failure_rate: 0.2,
            internal_failure_share: 0.5,
        },
        ..Faults::default()
    });
    let producer = fast_retries(Producer::builder(client, &stream))
        .ordered_per_shard(true)
        .aggregation_max_size(2_048)
        .build()
        .await
        .unwrap();
    let keys = 20;
    let per_key = 500;
    let mut handles = Vec::new();
    for i in 0..per_key {
        for key in 0..keys {
            handles.push(
                producer
                    .put_data(format!("key-{key}"), i.to_string())
                    .await
                    .unwrap(),
            );
        }
    }
    producer.flush().await.unwrap();
    let mut retried = 0;
    for handle in handles {
        retried += usize::from(handle.await.unwrap().attempts.len() > 1);
    }
    producer.shutdown().await.unwrap();
    assert!(retried > 0, "the faults must have caused retries");

    // Read each shard in order and check each key's counter only grows.
    let contents = common::read_stream(&direct, &stream).await;
    let mut positions: Vec<(&(String, Option<u64>), &common::ReadBack)> = contents
        .iter()
        .flat_map(|(position, found)| found.iter().map(move |r| (position, r)))
        .collect();
    positions.sort_by(|a, b| {
        let seq = |p: &(String, Option<u64>)| (p.0.len(), p.0.clone(), p.1);
        seq(a.0).cmp(&seq(b.0))
    });
    let mut last: HashMap<String, i64> = HashMap::new();
    for (_, record) in positions {
        let value: i64 = String::from_utf8(record.data.clone())
            .unwrap()
            .parse()
            .unwrap();
        let previous = last
            .insert(record.partition_key.clone(), value)
            .unwrap_or(-1);
        assert_eq!(
            value,
            previous + 1,
            "{} out of order or duplicated",
            record.partition_key
        );
    }
    assert_eq!(last.len(), keys);
    assert!(last.values().all(|&v| v == per_key - 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backpressure_holds_outstanding_records_under_the_cap() {
    let (direct, proxy, stream, client) = setup(KinesisServer::Kinesalite, 2).await;
    proxy.set_faults(Faults {
        latency: Latency {
            targets: Targets::only(["PutRecords"]),
            fixed: Duration::from_millis(300),
            jitter: Duration::from_millis(100),
        },
        ..Faults::default()
    });
    let cap = 1_000;
    let producer = Producer::builder(client, &stream)
        .max_outstanding_records(cap)
        .aggregation_max_size(1_024)
        .build()
        .await
        .unwrap();
    let sampler = {
        let producer = producer.clone();
        tokio::spawn(async move {
            let mut peak = 0;
            for _ in 0..400 {
                peak = peak.max(producer.outstanding_records());
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            peak
        })
    };
    let mut handles = Vec::new();
    let mut saw_full = false;
    for i in 0..5_000 {
        let record = UserRecord::new(format!("k{}", i % 100), vec![1u8; 100]).unwrap();
        if !saw_full {
            match producer.try_put(record.clone()) {
                Ok(handle) => {
                    handles.push(handle);
                    continue;
                }
                Err(SubmitError::Full(returned)) => {
                    assert_eq!(*returned, record);
                    saw_full = true;
                }
                Err(other) => panic!("{other}"),
            }
        }
        handles.push(producer.put(record).await.unwrap());
        assert!(producer.outstanding_records() <= cap);
    }
    assert!(saw_full, "try_put reports Full when the cap is reached");
    for handle in handles {
        handle.await.unwrap();
    }
    let peak = sampler.await.unwrap();
    assert!(peak <= cap && peak > cap / 2, "peak {peak}");
    producer.shutdown().await.unwrap();
    let read = common::count_stored(&direct, &stream).await;
    assert_eq!(read, 5_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_in_flight_stay_under_max_in_flight_bytes() {
    let (direct, proxy, stream, client) = setup(KinesisServer::Kinesalite, 4).await;
    proxy.set_faults(Faults {
        latency: Latency {
            targets: Targets::only(["PutRecords"]),
            fixed: Duration::from_millis(300),
            jitter: Duration::from_millis(50),
        },
        ..Faults::default()
    });
    let cap = 256 * 1024;
    let aggregate = 8 * 1024;
    let producer = Producer::builder(client, &stream)
        .max_in_flight_bytes(cap)
        .aggregation_max_size(aggregate)
        .record_max_buffered_time(Duration::from_millis(20))
        .build()
        .await
        .unwrap();
    let count = 12_000;
    let mut handles = Vec::with_capacity(count);
    for i in 0..count {
        let record = UserRecord::new(format!("key-{i}"), vec![7u8; 100]).unwrap();
        handles.push(producer.put(record).await.unwrap());
    }
    for handle in handles {
        handle.await.unwrap();
    }
    producer.shutdown().await.unwrap();
    let stats = proxy.stats();
    let peak = stats.peak_put_records_bytes_in_flight;
    // Beyond the cap by less than one Kinesis record (an aggregate and its key), and near it:
    // 1.4 MB were put, far more than the cap, and MaxConnections alone would let it all go.
    let key = "key-00000".len() as u64;
    assert!(
        peak < (cap + aggregate) as u64 + key,
        "peak {peak} bytes in flight, cap {cap}"
    );
    assert!(
        peak > cap as u64 / 2,
        "peak {peak} bytes in flight, cap {cap}"
    );
    let read = common::count_stored(&direct, &stream).await;
    assert_eq!(read, count);
}

/// `ListShards` failing at start: the producer starts without a shard map and sends records on
/// their own, then lists again after 1 s (doubling to 30 s, the KPL's schedule) rather than after
/// `ShardMapRefreshInterval` (60 s): soon after `ListShards` answers, records are aggregated again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_shard_map_at_start_the_shards_are_listed_again_within_seconds() {
    let (_direct, proxy, stream, client) = setup(KinesisServer::Kinesalite, 2).await;
    fail_list_shards(&proxy);
    let producer = Producer::builder(client, &stream)
        .record_max_buffered_time(Duration::from_millis(50))
        .build()
        .await
        .expect("starts without a map");
    let early = producer.put_data("key-0", "early").await.unwrap().await;
    assert_eq!(early.unwrap().sub_sequence_number, None, "on its own");
    proxy.set_faults(Faults::default());
    let answered = Instant::now();
    loop {
        let mut handles = Vec::new();
        for i in 0..10 {
            handles.push(
                producer
                    .put_data(format!("key-{i}"), "later")
                    .await
                    .unwrap(),
            );
        }
        let mut aggregated = false;
        for handle in handles {
            aggregated |= handle.await.unwrap().sub_sequence_number.is_some();
        }
        if aggregated {
            break;
        }
        assert!(
            answered.elapsed() < Duration::from_secs(10),
            "still no shard map 10 s after ListShards answers again"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    producer.shutdown().await.unwrap();
}

/// In order (`OrderedPerShard`), records behind a request in flight wait for its answer without
/// the pipeline waking on a timer meanwhile: before, their past send-by time made it wake every
/// millisecond (counted as the runtime parking its one worker thread).
#[tokio::test]
async fn records_waiting_behind_an_ordered_request_do_not_spin_the_pipeline() {
    let (_, proxy, stream, client) = setup(KinesisServer::Kinesalite, 1).await;
    let producer = fast_retries(Producer::builder(client, &stream))
        .ordered_per_shard(true)
        .aggregation_enabled(false)
        .build()
        .await
        .unwrap();
    proxy.set_faults(Faults {
        latency: Latency {
            targets: Targets::only(["PutRecords"]),
            fixed: Duration::from_secs(3),
            jitter: Duration::ZERO,
        },
        ..Faults::default()
    });
    let first = producer.put_data("a", "first").await.unwrap();
    // The first request is on its way (held by the proxy); these wait behind it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut waiting = Vec::new();
    for i in 0..10 {
        waiting.push(producer.put_data("a", i.to_string()).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let metrics = tokio::runtime::Handle::current().metrics();
    let parks_before = metrics.worker_park_count(0);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let parks = metrics.worker_park_count(0) - parks_before;
    first.await.unwrap();
    for handle in waiting {
        handle.await.unwrap();
    }
    producer.shutdown().await.unwrap();
    // Idle but for this test's own timer: a handful. Waking every millisecond: about 1,000.
    assert!(
        parks < 100,
        "the runtime woke {parks} times in 1 s of waiting"
    );
}

/// While there is no shard map (ListShards failing), records still go out within one shard's
/// write limits (`RateLimit`% of 1,000 records/s): not knowing which shard a record is for, the
/// producer holds all of them to one shard's budget, so no shard is pushed past its own. Before,
/// records went out unthrottled until the map came.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_shard_map_records_keep_to_one_shards_rate_limit() {
    let (_direct, proxy, stream, client) = setup(KinesisServer::Kinesalite, 2).await;
    fail_list_shards(&proxy);
    let producer = Producer::builder(client, &stream)
        .record_max_buffered_time(Duration::from_millis(20))
        .rate_limit(100)
        .build()
        .await
        .expect("starts without a map");
    let started = Instant::now();
    let mut handles = Vec::new();
    for i in 0..3_000 {
        handles.push(producer.put_data(format!("key-{i}"), "x").await.unwrap());
    }
    for handle in handles {
        handle.await.expect("put without a map");
    }
    let elapsed = started.elapsed();
    producer.shutdown().await.unwrap();
    // A full second's budget at once, then 1,000 records/s: 3,000 records take 2 s at least.
    assert!(
        elapsed >= Duration::from_millis(1_800),
        "3,000 records in {elapsed:?}: faster than one shard's 1,000 records/s"
    );
}

/// Every `ListShards` through `proxy` answered with 503, so the producer has no shard map.
fn fail_list_shards(proxy: &FaultProxy) {
    proxy.set_faults(Faults {
        errors: RequestErrors {
            targets: Targets::only(["ListShards"]),
            rate: 1.0,
            responses: vec![ErrorResponse::ServiceUnavailable],
        },
        ..Faults::default()
    });
}

/// Records queued behind a shard's rate limit expire at `RecordTtl`, not at the limit's pace:
/// with `RateLimit` 1 (10 records/s for one shard) and 400 unaggregated records, the limit would
/// take 40 s to let them all through; each must still resolve soon after its TTL, the expired
/// ones without taking the shard's tokens, and the rest put.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_behind_a_rate_limit_expire_at_their_ttl() {
    let (direct, _proxy, stream, _through_proxy) = setup(KinesisServer::Kinesalite, 1).await;
    let ttl = Duration::from_millis(1_000);
    let producer = Producer::builder(direct.clone(), &stream)
        .aggregation_enabled(false)
        .rate_limit(1)
        .record_ttl(ttl)
        .record_max_buffered_time(Duration::from_millis(10))
        .build()
        .await
        .unwrap();
    let started = Instant::now();
    let mut handles = Vec::new();
    for i in 0..400 {
        handles.push(
            producer
                .put_data(format!("k{i}"), vec![1u8; 10])
                .await
                .unwrap(),
        );
    }
    let (mut put, mut expired) = (0, 0);
    for handle in handles {
        match tokio::time::timeout(Duration::from_secs(30), handle).await {
            Ok(Ok(_)) => put += 1,
            Ok(Err(PutError::Expired { .. })) => expired += 1,
            Ok(Err(other)) => panic!("unexpected {other}"),
            Err(_) => panic!("a record was still waiting 30 s after its put"),
        }
    }
    let took = started.elapsed();
    assert_eq!(put + expired, 400);
    assert!(put > 0 && expired > 300, "put {put}, expired {expired}");
    // Limited to 10 records/s, the 400 would take 40 s to pass the limiter one by one.
    assert!(took < ttl + Duration::from_secs(4), "took {took:?}");
    producer.shutdown().await.unwrap();
}

/// A full outage of PutRecords (every request answered with a 5xx or a request throttle, or
/// reset) for 40 s while records keep coming: the request circuit holds the producer to about one
/// request a second, and once the stream answers again every record goes within seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_costs_at_most_sixty_requests_in_forty_seconds_and_nothing_is_lost() {
    const OUTAGE: Duration = Duration::from_secs(40);
    const RECORDS: usize = 20_000;
    let (direct, proxy, stream, client) = setup(KinesisServer::Kinesalite, 8).await;
    let producer = Producer::builder(client, &stream)
        .record_ttl(Duration::from_secs(120))
        .record_max_buffered_time(Duration::from_millis(20))
        .build()
        .await
        .unwrap();
    proxy.set_faults(Faults {
        errors: RequestErrors {
            targets: Targets::only(["PutRecords"]),
            rate: 1.0,
            responses: vec![
                ErrorResponse::InternalError,
                ErrorResponse::ServiceUnavailable,
                ErrorResponse::LimitExceeded,
            ],
        },
        resets: Resets {
            targets: Targets::only(["PutRecords"]),
            before_forwarding: 0.1,
            after_forwarding: 0.0,
        },
        ..Faults::default()
    });
    proxy.reset_stats();
    let outage_started = Instant::now();
    // Records keep coming for the first half of the outage, over every shard.
    let mut records = Vec::with_capacity(RECORDS);
    let mut handles = Vec::with_capacity(RECORDS);
    for i in 0..RECORDS {
        let record = UserRecord::new(format!("key-{i}"), format!("value-{i}")).unwrap();
        records.push(record.clone());
        handles.push(producer.put(record).await.unwrap());
        if i % 1_000 == 999 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    tokio::time::sleep(OUTAGE.saturating_sub(outage_started.elapsed())).await;
    let during = proxy.stats();
    proxy.set_faults(Faults::none());
    let recovered = Instant::now();
    let requests = during.received("PutRecords");
    assert!(
        during.faults(FaultKind::RequestError) + during.faults(FaultKind::ResetBeforeForwarding)
            >= requests,
        "every request of the outage failed: {during:?}"
    );
    let mut last_done = recovered;
    let mut outcomes = Vec::with_capacity(RECORDS);
    for handle in handles {
        let outcome = tokio::time::timeout(Duration::from_secs(60), handle)
            .await
            .expect("every record resolves")
            .expect("nothing lost: every record is put once the stream answers");
        last_done = Instant::now();
        assert!(outcome.attempts.last().unwrap().is_success());
        outcomes.push(outcome);
    }
    let recovery = last_done - recovered;
    eprintln!(
        "outage: {requests} PutRecords requests in {OUTAGE:?}; every record put {recovery:?} after it ended"
    );
    assert!(
        requests <= 60,
        "{requests} requests during a {OUTAGE:?} outage"
    );
    assert!(requests >= 10, "the producer kept probing: {requests}");
    // The circuit's longest wait is 1 s; a loaded machine gets a little more.
    assert!(
        recovery < Duration::from_secs(3),
        "recovered in {recovery:?}"
    );
    producer.shutdown().await.unwrap();
    // No request of the outage reached the server: each record is stored exactly once.
    common::expect_each_stored_once(&direct, &stream, &records, &outcomes).await;
}
