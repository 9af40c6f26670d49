//! The fault proxy between the official SDK clients and the real local servers: each fault
//! surfaces in the SDK as the error a real service would give, and a PutRecords entry the proxy
//! failed is never written.
//!
//! SDK clients here are built with retries disabled (`RetryConfig::disabled()`), so that each
//! injected fault reaches the test instead of being retried away.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_kinesis::config::http::HttpResponse;
use aws_sdk_kinesis::config::retry::RetryConfig;
use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType};
use kinesis_test_support::proxy::{
    Block, Blocked, EntryFailures, ErrorResponse, FaultKind, FaultProxy, Faults, GetRecordsFaults,
    Latency, RequestErrors, Resets, Targets,
};
use kinesis_test_support::{
    DynamoDbServer, KinesisServer, create_lease_table, create_stream, dynamodb_client,
    kinesis_client, sdk_config, unique_name,
};
use tokio::io::AsyncReadExt;

/// A Kinesis client that talks through the proxy and never retries.
async fn kinesis_via(proxy: &FaultProxy) -> aws_sdk_kinesis::Client {
    let config = aws_sdk_kinesis::config::Builder::from(&sdk_config(proxy.endpoint()).await)
        .retry_config(RetryConfig::disabled())
        .build();
    aws_sdk_kinesis::Client::from_conf(config)
}

/// A DynamoDB client that talks through the proxy and never retries.
async fn dynamodb_via(proxy: &FaultProxy) -> aws_sdk_dynamodb::Client {
    let config = aws_sdk_dynamodb::config::Builder::from(&sdk_config(proxy.endpoint()).await)
        .retry_config(RetryConfig::disabled())
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

/// The HTTP status of a service error's raw response.
fn status<E>(error: &SdkError<E, HttpResponse>) -> Option<u16> {
    error.raw_response().map(|r| r.status().as_u16())
}

/// A stream of the test's own, deleted when the test ends, even by a panic: kinesalite counts
/// every live stream against its 100-shard account limit, so leaked streams fail later runs.
struct TestStream {
    server: KinesisServer,
    name: String,
}

impl TestStream {
    async fn create(server: KinesisServer, prefix: &str, shards: i32) -> TestStream {
        let name = unique_name(prefix);
        create_stream(&kinesis_client(server).await, &name, shards).await;
        TestStream { server, name }
    }
}

impl Drop for TestStream {
    fn drop(&mut self) {
        let (server, name) = (self.server, std::mem::take(&mut self.name));
        // Drop cannot await, and a panicking test's runtime may be going away: delete from a
        // thread with a runtime (and client) of its own.
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime")
                .block_on(async {
                    let _ = kinesis_client(server)
                        .await
                        .delete_stream()
                        .stream_name(&name)
                        .enforce_consumer_deletion(true)
                        .send()
                        .await;
                });
        })
        .join();
    }
}

/// The same for a DynamoDB table (with a `leaseKey` string hash key).
struct TestTable {
    server: DynamoDbServer,
    name: String,
}

impl Drop for TestTable {
    fn drop(&mut self) {
        let (server, name) = (self.server, std::mem::take(&mut self.name));
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime")
                .block_on(async {
                    let _ = dynamodb_client(server)
                        .await
                        .delete_table()
                        .table_name(&name)
                        .send()
                        .await;
                });
        })
        .join();
    }
}

/// Every record's data in every shard of `stream`, read from TRIM_HORIZON (directly, not
/// through the proxy).
async fn read_stream(client: &aws_sdk_kinesis::Client, stream: &str) -> Vec<String> {
    let shards = client
        .list_shards()
        .stream_name(stream)
        .send()
        .await
        .expect("ListShards");
    let mut data = Vec::new();
    for shard in shards.shards() {
        let mut iterator = client
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(shard.shard_id())
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .expect("GetShardIterator")
            .shard_iterator
            .expect("an open shard has an iterator");
        loop {
            let output = client
                .get_records()
                .shard_iterator(&iterator)
                .send()
                .await
                .expect("GetRecords");
            for record in output.records() {
                data.push(String::from_utf8(record.data().as_ref().to_vec()).unwrap());
            }
            match output.next_shard_iterator() {
                Some(next) if !output.records().is_empty() => iterator = next.to_owned(),
                _ => break,
            }
        }
    }
    data
}

fn entries(prefix: &str, n: usize) -> Vec<PutRecordsRequestEntry> {
    (0..n)
        .map(|i| {
            PutRecordsRequestEntry::builder()
                .data(Blob::new(format!("{prefix}-{i}")))
                .partition_key(format!("key-{i}"))
                .build()
                .unwrap()
        })
        .collect()
}

async fn partial_failures_are_not_written(server: KinesisServer) {
    let direct = kinesis_client(server).await;
    let guard = TestStream::create(server, "proxy-partial", 2).await;
    let stream = guard.name.as_str();
    let proxy = FaultProxy::start(&server.endpoint()).await;
    let client = kinesis_via(&proxy).await;
    proxy.set_faults(Faults {
        seed: Some(42),
        put_records: EntryFailures {
            entry_failure_rate: 0.4,
            internal_failure_share: 0.5,
        },
        ..Faults::default()
    });

    let mut written = BTreeSet::new();
    let mut failed = BTreeSet::new();
    let mut codes = BTreeMap::<String, usize>::new();
    for batch in 0..3 {
        let batch_entries = entries(&format!("b{batch}"), 25);
        let output = client
            .put_records()
            .stream_name(stream)
            .set_records(Some(batch_entries.clone()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{server:?}: PutRecords through the proxy: {e:?}"));
        assert_eq!(output.records().len(), batch_entries.len());
        let failed_here = output
            .records()
            .iter()
            .filter(|r| r.error_code().is_some())
            .count();
        assert_eq!(output.failed_record_count(), Some(failed_here as i32));
        for (entry, result) in batch_entries.iter().zip(output.records()) {
            let data = String::from_utf8(entry.data().as_ref().to_vec()).unwrap();
            match result.error_code() {
                None => {
                    assert!(result.sequence_number().is_some() && result.shard_id().is_some());
                    written.insert(data);
                }
                Some(code) => {
                    let message = result.error_message().unwrap_or_default();
                    match code {
                        "ProvisionedThroughputExceededException" => assert!(
                            message.starts_with("Rate exceeded for shard shardId-")
                                && message.contains(stream),
                            "{message}"
                        ),
                        "InternalFailure" => {}
                        other => panic!("unexpected entry error {other}"),
                    }
                    *codes.entry(code.to_owned()).or_default() += 1;
                    failed.insert(data);
                }
            }
        }
    }
    assert!(
        codes.len() == 2,
        "{server:?}: both entry error codes injected: {codes:?}"
    );
    let stats = proxy.stats();
    assert_eq!(stats.failed_entries(), failed.len() as u64);
    assert_eq!(stats.forwarded("PutRecords"), 3);

    // A batch whose every entry fails must not reach the server at all.
    proxy.update_faults(|f| f.put_records.entry_failure_rate = 1.0);
    let doomed = entries("doomed", 5);
    let output = client
        .put_records()
        .stream_name(stream)
        .set_records(Some(doomed))
        .send()
        .await
        .expect("an all-failed PutRecords is still a 200");
    assert_eq!(output.failed_record_count(), Some(5));
    let stats = proxy.stats();
    assert_eq!(stats.faults(FaultKind::PutRecordsNotForwarded), 1);
    assert_eq!(stats.forwarded("PutRecords"), 3);

    let read: BTreeSet<String> = read_stream(&direct, stream).await.into_iter().collect();
    assert_eq!(
        read, written,
        "{server:?}: the stream holds exactly the entries reported successful"
    );
    assert!(read.is_disjoint(&failed));
}

#[tokio::test]
async fn kinesis_mock_never_writes_failed_entries() {
    partial_failures_are_not_written(KinesisServer::KinesisMock).await;
}

#[tokio::test]
async fn kinesalite_never_writes_failed_entries() {
    partial_failures_are_not_written(KinesisServer::Kinesalite).await;
}

#[tokio::test]
async fn whole_request_errors_surface_with_their_codes() {
    let server = KinesisServer::Kinesalite;
    let direct = kinesis_client(server).await;
    let guard = TestStream::create(server, "proxy-errors", 1).await;
    let stream = guard.name.as_str();
    let proxy = FaultProxy::start(&server.endpoint()).await;
    let client = kinesis_via(&proxy).await;
    let put = || {
        client
            .put_records()
            .stream_name(stream)
            .set_records(Some(entries("e", 2)))
            .send()
    };

    let cases = [
        (ErrorResponse::ServiceUnavailable, 503, "ServiceUnavailable"),
        (ErrorResponse::InternalError, 500, "InternalFailure"),
        (
            ErrorResponse::ProvisionedThroughputExceeded,
            400,
            "ProvisionedThroughputExceededException",
        ),
        (ErrorResponse::LimitExceeded, 400, "LimitExceededException"),
        (
            ErrorResponse::Custom {
                status: 500,
                code: "InternalFailureException".to_owned(),
                message: "modelled".to_owned(),
            },
            500,
            "InternalFailureException",
        ),
    ];
    for (response, http_status, code) in cases {
        proxy.set_faults(Faults {
            errors: RequestErrors {
                targets: Targets::only(["PutRecords"]),
                rate: 1.0,
                responses: vec![response.clone()],
            },
            ..Faults::default()
        });
        let error = put().await.expect_err("the proxy fails every PutRecords");
        assert_eq!(error.code(), Some(code), "{response:?}: {error:?}");
        assert_eq!(status(&error), Some(http_status), "{response:?}");
        let service_error = error.into_service_error();
        match response {
            ErrorResponse::ProvisionedThroughputExceeded => {
                assert!(service_error.is_provisioned_throughput_exceeded_exception())
            }
            // The generic AWS 500 code is not the model's `InternalFailureException`, so
            // the SDK reports it as unhandled (code and status as above).
            ErrorResponse::InternalError => assert!(!service_error.is_internal_failure_exception()),
            ErrorResponse::Custom { .. } => {
                assert!(service_error.is_internal_failure_exception())
            }
            _ => {}
        }
    }
    // Other operations pass untouched, and no faulted PutRecords reached the server.
    direct_and_proxied_agree(&client, stream).await;
    let stats = proxy.stats();
    assert_eq!(stats.faults(FaultKind::RequestError), 5);
    assert_eq!(stats.forwarded("PutRecords"), 0);
    assert_eq!(stats.received("PutRecords"), 5);
    assert!(read_stream(&direct, stream).await.is_empty());

    // ListShards models LimitExceededException: the SDK gives it its typed variant.
    proxy.set_faults(Faults {
        errors: RequestErrors {
            targets: Targets::only(["Kinesis_20131202.ListShards"]),
            rate: 1.0,
            responses: vec![ErrorResponse::LimitExceeded],
        },
        ..Faults::default()
    });
    let error = client
        .list_shards()
        .stream_name(stream)
        .send()
        .await
        .expect_err("ListShards is throttled");
    assert!(error.into_service_error().is_limit_exceeded_exception());
}

async fn direct_and_proxied_agree(client: &aws_sdk_kinesis::Client, stream: &str) {
    let shards = client
        .list_shards()
        .stream_name(stream)
        .send()
        .await
        .expect("ListShards is not faulted");
    assert_eq!(shards.shards().len(), 1);
}

#[tokio::test]
async fn resets_surface_as_dispatch_or_response_errors() {
    let server = KinesisServer::Kinesalite;
    let direct = kinesis_client(server).await;
    let guard = TestStream::create(server, "proxy-resets", 1).await;
    let stream = guard.name.as_str();
    let proxy = FaultProxy::start(&server.endpoint()).await;
    let client = kinesis_via(&proxy).await;
    let put = |data: &'static str| {
        client
            .put_record()
            .stream_name(stream)
            .partition_key("k")
            .data(Blob::new(data))
            .send()
    };
    put("before-any-fault").await.expect("no faults yet");

    proxy.set_faults(Faults {
        resets: Resets {
            targets: Targets::only(["PutRecord"]),
            before_forwarding: 1.0,
            after_forwarding: 0.0,
        },
        ..Faults::default()
    });
    let error = put("never-arrived")
        .await
        .expect_err("reset before forwarding");
    assert!(
        matches!(
            error,
            SdkError::DispatchFailure(_) | SdkError::ResponseError(_)
        ),
        "a reset is a dispatch or response error: {error:?}"
    );

    proxy.set_faults(Faults {
        resets: Resets {
            targets: Targets::only(["PutRecord"]),
            before_forwarding: 0.0,
            after_forwarding: 1.0,
        },
        ..Faults::default()
    });
    let error = put("written-but-unacknowledged")
        .await
        .expect_err("reset after forwarding");
    assert!(
        matches!(
            error,
            SdkError::DispatchFailure(_) | SdkError::ResponseError(_)
        ),
        "a reset is a dispatch or response error: {error:?}"
    );

    proxy.set_faults(Faults::none());
    put("after-the-faults")
        .await
        .expect("the pool recovers from reset connections");
    let stats = proxy.stats();
    assert_eq!(stats.faults(FaultKind::ResetBeforeForwarding), 1);
    assert_eq!(stats.faults(FaultKind::ResetAfterForwarding), 1);
    assert_eq!(
        read_stream(&direct, stream).await,
        [
            "before-any-fault",
            "written-but-unacknowledged",
            "after-the-faults"
        ],
        "a reset after forwarding took effect; one before did not"
    );
}

#[tokio::test]
async fn get_records_faults_surface_as_typed_errors() {
    let server = KinesisServer::Kinesalite;
    let guard = TestStream::create(server, "proxy-iterators", 1).await;
    let stream = guard.name.as_str();
    let proxy = FaultProxy::start(&server.endpoint()).await;
    let client = kinesis_via(&proxy).await;
    let iterator = client
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id("shardId-000000000000")
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .expect("GetShardIterator is not faulted")
        .shard_iterator
        .unwrap();
    let get = || client.get_records().shard_iterator(&iterator).send();

    proxy.set_faults(Faults {
        get_records: GetRecordsFaults {
            expired_iterator_rate: 1.0,
            ..GetRecordsFaults::default()
        },
        ..Faults::default()
    });
    let error = get().await.expect_err("expired");
    assert_eq!(error.code(), Some("ExpiredIteratorException"));
    assert!(
        error
            .message()
            .is_some_and(|m| m.starts_with("Iterator expired"))
    );
    assert!(error.into_service_error().is_expired_iterator_exception());

    proxy.set_faults(Faults {
        get_records: GetRecordsFaults {
            throttle_rate: 1.0,
            ..GetRecordsFaults::default()
        },
        ..Faults::default()
    });
    let error = get().await.expect_err("throttled");
    assert_eq!(status(&error), Some(400));
    assert!(
        error
            .into_service_error()
            .is_provisioned_throughput_exceeded_exception()
    );

    proxy.set_faults(Faults::none());
    let answer = get()
        .await
        .expect("the same iterator works once the faults are gone");
    assert_eq!(answer.millis_behind_latest(), Some(0), "kinesalite's own");

    proxy.set_faults(Faults {
        get_records: GetRecordsFaults {
            millis_behind_latest: Some(7_000),
            ..GetRecordsFaults::default()
        },
        ..Faults::default()
    });
    let answer = get().await.expect("forwarded, then altered");
    assert_eq!(answer.millis_behind_latest(), Some(7_000));
    assert!(answer.next_shard_iterator().is_some(), "the rest as it was");
    let stats = proxy.stats();
    assert_eq!(stats.faults(FaultKind::ExpiredIterator), 1);
    assert_eq!(stats.faults(FaultKind::GetRecordsThrottled), 1);
    assert_eq!(stats.faults(FaultKind::MillisBehindLatestRewritten), 1);
    assert_eq!(stats.forwarded("GetRecords"), 2);
}

#[tokio::test]
async fn latency_delays_only_the_chosen_operations() {
    let server = KinesisServer::Kinesalite;
    let guard = TestStream::create(server, "proxy-latency", 1).await;
    let stream = guard.name.as_str();
    let proxy = FaultProxy::start(&server.endpoint()).await;
    let client = kinesis_via(&proxy).await;
    proxy.set_faults(Faults {
        seed: Some(1),
        latency: Latency {
            targets: Targets::only(["ListShards"]),
            fixed: Duration::from_millis(300),
            jitter: Duration::from_millis(50),
        },
        ..Faults::default()
    });
    let started = Instant::now();
    client
        .list_shards()
        .stream_name(stream)
        .send()
        .await
        .unwrap();
    let delayed = started.elapsed();
    assert!(delayed >= Duration::from_millis(300), "{delayed:?}");
    let started = Instant::now();
    client
        .describe_stream_summary()
        .stream_name(stream)
        .send()
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_millis(300));
    assert_eq!(proxy.stats().faults(FaultKind::Delayed), 1);
}

async fn blocked_update_item_fails(server: DynamoDbServer) {
    let direct = dynamodb_client(server).await;
    let table = unique_name("proxy-leases");
    let _guard = TestTable {
        server,
        name: table.clone(),
    };
    create_lease_table(&direct, &table).await;
    let proxy = Arc::new(FaultProxy::start(&server.endpoint()).await);
    let client = dynamodb_via(&proxy).await;
    let renew = {
        let client = client.clone();
        let table = table.clone();
        move || {
            client
                .update_item()
                .table_name(&table)
                .key("leaseKey", AttributeValue::S("shardId-000000000000".into()))
                .update_expression("ADD leaseCounter :one")
                .expression_attribute_values(":one", AttributeValue::N("1".into()))
                .send()
        }
    };
    renew().await.expect("no block yet");

    proxy.set_faults(Faults {
        block: Some(Blocked::new(
            Targets::only(["DynamoDB_20120810.UpdateItem"]),
            Block::Fail,
        )),
        ..Faults::default()
    });
    let error = renew().await.expect_err("UpdateItem is blocked");
    assert_eq!(error.code(), Some("InternalServerError"), "{server:?}");
    assert!(error.into_service_error().is_internal_server_error());
    client
        .get_item()
        .table_name(&table)
        .key("leaseKey", AttributeValue::S("shardId-000000000000".into()))
        .send()
        .await
        .expect("GetItem is not blocked");

    // A hung UpdateItem waits until the block is lifted, then fails.
    proxy.update_faults(|f| f.block.as_mut().unwrap().mode = Block::Hang);
    let held = tokio::spawn(renew());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!held.is_finished(), "{server:?}: the UpdateItem is held");
    assert_eq!(proxy.stats().faults(FaultKind::BlockedHeld), 1);
    proxy.update_faults(|f| f.block = None);
    let error = tokio::time::timeout(Duration::from_secs(5), held)
        .await
        .expect("unblocking releases the held request")
        .unwrap()
        .expect_err("a released request fails");
    assert!(error.into_service_error().is_internal_server_error());

    renew().await.expect("unblocked");
    let item = direct
        .get_item()
        .table_name(&table)
        .key("leaseKey", AttributeValue::S("shardId-000000000000".into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    assert_eq!(
        item.item().unwrap()["leaseCounter"],
        AttributeValue::N("2".into()),
        "{server:?}: no blocked update reached the table"
    );
    assert_eq!(proxy.stats().forwarded("UpdateItem"), 2);
}

#[tokio::test]
async fn dynamodb_local_blocked_update_item_fails() {
    blocked_update_item_fails(DynamoDbServer::DynamoDbLocal).await;
}

#[tokio::test]
async fn dynalite_blocked_update_item_fails() {
    blocked_update_item_fails(DynamoDbServer::Dynalite).await;
}

/// The proxy relies on the Rust SDK speaking awsJson 1.1 to Kinesis (the Java SDK uses CBOR by
/// default); this fails loudly if that ever changes.
#[tokio::test]
async fn sdk_sends_kinesis_requests_as_aws_json_1_1() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let capture = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut buffer = [0; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = socket.read(&mut buffer).await.unwrap();
            assert!(n > 0, "the SDK closed the connection early");
            head.extend_from_slice(&buffer[..n]);
        }
        String::from_utf8_lossy(&head).to_lowercase()
    });
    let config = aws_sdk_kinesis::config::Builder::from(&sdk_config(&endpoint).await)
        .retry_config(RetryConfig::disabled())
        .build();
    let client = aws_sdk_kinesis::Client::from_conf(config);
    let request = tokio::spawn(async move { client.put_records().stream_name("s").send().await });
    let head = capture.await.unwrap();
    request.abort();
    assert!(head.starts_with("post / http/1.1"), "{head}");
    assert!(
        head.contains("content-type: application/x-amz-json-1.1"),
        "{head}"
    );
    assert!(
        head.contains("x-amz-target: kinesis_20131202.putrecords"),
        "{head}"
    );
}

/// Many concurrent keep-alive connections, as the SDK's pool opens under load: every request is
/// forwarded once, and the rate is printed beside the server's own for comparison.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_requests_pass_through() {
    const REQUESTS: usize = 1_000;
    const CONCURRENCY: usize = 64;
    let server = KinesisServer::Kinesalite;
    let direct = kinesis_client(server).await;
    let guard = TestStream::create(server, "proxy-load", 4).await;
    let stream = guard.name.as_str();
    let proxy = FaultProxy::start(&server.endpoint()).await;
    let proxied = kinesis_via(&proxy).await;

    async fn run(client: &aws_sdk_kinesis::Client, stream: &str) -> f64 {
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for worker in 0..CONCURRENCY {
            let client = client.clone();
            let stream = stream.to_owned();
            tasks.spawn(async move {
                for i in (worker..REQUESTS).step_by(CONCURRENCY) {
                    client
                        .put_records()
                        .stream_name(&stream)
                        .set_records(Some(entries(&format!("load-{i}"), 5)))
                        .send()
                        .await
                        .expect("PutRecords under load");
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
        REQUESTS as f64 / started.elapsed().as_secs_f64()
    }

    let direct_rate = run(&direct, stream).await;
    let proxied_rate = run(&proxied, stream).await;
    println!(
        "PutRecords/s: direct {direct_rate:.0}, through the proxy {proxied_rate:.0} \
         ({CONCURRENCY} concurrent callers)"
    );
    let stats = proxy.stats();
    assert_eq!(stats.forwarded("PutRecords"), REQUESTS as u64);
    assert_eq!(
        stats.faults_by_kind,
        BTreeMap::new(),
        "no faults were asked for"
    );
}

/// The same seed gives the same entry failures for the same sequence of requests.
#[tokio::test]
async fn seeded_faults_repeat() {
    let server = KinesisServer::Kinesalite;
    let guard = TestStream::create(server, "proxy-seed", 1).await;
    let stream = guard.name.as_str();
    let proxy = FaultProxy::start(&server.endpoint()).await;
    let client = kinesis_via(&proxy).await;
    let mut runs = Vec::new();
    for _ in 0..2 {
        proxy.set_faults(Faults {
            seed: Some(2024),
            put_records: EntryFailures {
                entry_failure_rate: 0.5,
                internal_failure_share: 0.5,
            },
            ..Faults::default()
        });
        let output = client
            .put_records()
            .stream_name(stream)
            .set_records(Some(entries("seeded", 40)))
            .send()
            .await
            .unwrap();
        let codes: Vec<Option<String>> = output
            .records()
            .iter()
            .map(|r| r.error_code().map(str::to_owned))
            .collect();
        runs.push(codes);
    }
    assert_eq!(runs[0], runs[1]);
    assert!(runs[0].iter().any(Option::is_some) && runs[0].iter().any(Option::is_none));
}
