//! When reading a shard fails for good (an error retrying cannot fix, here `AccessDenied` on
//! `GetShardIterator` from a fault proxy in front of kinesalite), the processor is told it no
//! longer has the shard (`lease_lost`) before the lease is given up to be tried again. Before,
//! it was dropped without a callback, so it could not flush or close what it held.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Seen;

use kinesis_test_support::proxy::{ErrorResponse, FaultProxy, Faults, RequestErrors, Targets};
use kinesis_test_support::{
    DynamoDbServer, KinesisServer, create_stream, dynamodb_client, kinesis_client, sdk_config,
    unique_name,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processor_is_told_when_reading_its_shard_fails_for_good() {
    let direct = kinesis_client(KinesisServer::Kinesalite).await;
    let stream = unique_name("read-failure");
    create_stream(&direct, &stream, 1).await;
    let proxy = FaultProxy::start(&KinesisServer::Kinesalite.endpoint()).await;
    proxy.set_faults(Faults {
        errors: RequestErrors {
            targets: Targets::only(["GetShardIterator"]),
            rate: 1.0,
            responses: vec![ErrorResponse::Custom {
                status: 400,
                code: "AccessDeniedException".into(),
                message: "not allowed (injected by the test)".into(),
            }],
        },
        ..Faults::default()
    });
    let kinesis = aws_sdk_kinesis::Client::new(&sdk_config(proxy.endpoint()).await);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let handle = common::one_worker(
        kinesis,
        dynamodb_client(DynamoDbServer::Dynalite).await,
        &stream,
        &unique_name("app"),
    )
    .build(common::recorder("w1", &seen))
    .await
    .unwrap()
    .spawn();
    common::wait_until(Duration::from_secs(20), "the processor told", || {
        !seen.lock().unwrap().lost.is_empty()
    })
    .await;
    // The lease was given up and taken again: a new processor tries again.
    common::wait_until(Duration::from_secs(20), "the shard tried again", || {
        seen.lock().unwrap().initialized.len() >= 2
    })
    .await;
    proxy.set_faults(Faults::default());
    common::put_values(&direct, &stream, 0..10, false).await;
    common::wait_until(
        Duration::from_secs(30),
        "the records once reading works",
        || seen.lock().unwrap().multiplicity().len() >= 10,
    )
    .await;
    handle.shutdown().await.unwrap();
}
