//! Every SDK call of the consumer has a time limit (`kinesis_call_timeout`,
//! `dynamodb_call_timeout`): a call the server never answers (the fault proxy holding it) fails
//! and is made again, instead of stalling the shard or the renewals for good. The SDK has no
//! response timeout of its own.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Seen;
use kinesis_consumer::lease::{DynamoLeaseStore, LeaseStore};
use kinesis_consumer::{InitialPosition, Scheduler};
use kinesis_test_support::proxy::{FaultKind, FaultProxy, Faults, Latency, Targets};
use kinesis_test_support::{
    DynamoDbServer, KinesisServer, create_stream, dynamodb_client, kinesis_client, sdk_config,
    unique_name,
};

/// Holds every call of `operation` for an hour.
fn hang(operation: &str) -> Faults {
    Faults {
        latency: Latency {
            targets: Targets::only([operation]),
            fixed: Duration::from_secs(3600),
            jitter: Duration::ZERO,
        },
        ..Faults::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_get_records_that_never_answers_is_made_again() {
    let kinesis = kinesis_client(KinesisServer::Kinesalite).await;
    let stream = unique_name("hung-get-records");
    create_stream(&kinesis, &stream, 1).await;
    common::put_values(&kinesis, &stream, 0..20, false).await;
    let proxy = FaultProxy::start(&KinesisServer::Kinesalite.endpoint()).await;
    proxy.set_faults(hang("GetRecords"));
    let through_proxy = aws_sdk_kinesis::Client::new(&sdk_config(proxy.endpoint()).await);
    let seen = Arc::new(Mutex::new(Seen::default()));
    let handle = Scheduler::builder(
        through_proxy,
        dynamodb_client(DynamoDbServer::Dynalite).await,
        &stream,
        unique_name("app"),
    )
    .worker_id("w1")
    .initial_position(InitialPosition::TrimHorizon)
    .lease_config(common::quick_leases(Duration::from_secs(3)))
    .polling_config(common::quick_polling())
    .kinesis_call_timeout(Duration::from_secs(1))
    .build(common::recorder("w1", &seen))
    .await
    .unwrap()
    .spawn();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(seen.lock().unwrap().count(), 0, "GetRecords is held");
    proxy.set_faults(Faults::default());
    common::wait_until(
        Duration::from_secs(10),
        "the records once GetRecords answers",
        || seen.lock().unwrap().count() >= 20,
    )
    .await;
    handle.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_that_never_answers_does_not_stop_the_renewals() {
    let kinesis = kinesis_client(KinesisServer::Kinesalite).await;
    let stream = unique_name("hung-renewal");
    let application = unique_name("app");
    create_stream(&kinesis, &stream, 1).await;
    let direct = dynamodb_client(DynamoDbServer::Dynalite).await;
    let proxy = FaultProxy::start(&DynamoDbServer::Dynalite.endpoint()).await;
    let through_proxy = aws_sdk_dynamodb::Client::new(&sdk_config(proxy.endpoint()).await);
    let seen = Arc::new(Mutex::new(Seen::default()));
    // Renewals every ~2 s; a 3 s hang leaves the lease well inside failoverTime.
    let handle = Scheduler::builder(kinesis, through_proxy, &stream, &application)
        .worker_id("w1")
        .initial_position(InitialPosition::TrimHorizon)
        .lease_config(common::quick_leases(Duration::from_secs(6)))
        .polling_config(common::quick_polling())
        .dynamodb_call_timeout(Duration::from_secs(1))
        .build(common::recorder("w1", &seen))
        .await
        .unwrap()
        .spawn();
    let store = DynamoLeaseStore::new(direct, &application);
    let counter = || async {
        store
            .list()
            .await
            .unwrap()
            .into_iter()
            .filter_map(|l| l.ok())
            .find(|l| l.lease_owner.as_deref() == Some("w1"))
            .map(|l| l.lease_counter)
    };
    // Taken (counter 1), then renewed once (2): the next renewal is due a renew interval later.
    let deadline = Instant::now() + Duration::from_secs(30);
    while counter().await.is_none_or(|c| c < 2) {
        assert!(
            Instant::now() < deadline,
            "w1 never took and renewed the lease"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Renewals (UpdateItem) hang for longer than a renew interval, then the table answers again.
    proxy.set_faults(hang("UpdateItem"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let held = counter().await;
    assert!(
        proxy.stats().faults(FaultKind::Delayed) > 0,
        "a renewal was held"
    );
    proxy.set_faults(Faults::default());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = counter().await;
        if now.is_some() && now > held {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no renewal since the table answers again: {held:?} → {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    handle.shutdown().await.unwrap();
}
