//! A worker restarted with the same worker id (after a crash: nothing released) reads its shards at
//! once, as the Java KCL's renewer starts with the leases the table says it owns, rather than
//! waiting failoverTime for its own leases to expire (kinesalite and dynalite).

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Seen;
use kinesis_consumer::{InitialPosition, Scheduler, SchedulerHandle};
use kinesis_test_support::{
    DynamoDbServer, KinesisServer, create_stream, dynamodb_client, kinesis_client, unique_name,
};

const FAILOVER: Duration = Duration::from_secs(10);

async fn worker(stream: &str, application: &str, seen: &Arc<Mutex<Seen>>) -> SchedulerHandle {
    let kinesis = kinesis_client(KinesisServer::Kinesalite).await;
    let dynamodb = dynamodb_client(DynamoDbServer::Dynalite).await;
    Scheduler::builder(kinesis, dynamodb, stream, application)
        .worker_id("w1")
        .initial_position(InitialPosition::TrimHorizon)
        .lease_config(common::quick_leases(FAILOVER))
        .polling_config(common::quick_polling())
        .build(common::recorder("w1", seen))
        .await
        .unwrap()
        .spawn()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_the_same_worker_id_reads_its_own_leases_at_once() {
    let kinesis = kinesis_client(KinesisServer::Kinesalite).await;
    let stream = unique_name("restart");
    let application = unique_name("app");
    create_stream(&kinesis, &stream, 2).await;
    common::put_values(&kinesis, &stream, 0..100, false).await;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let first = worker(&stream, &application, &seen).await;
    common::wait_until(Duration::from_secs(30), "the first records", || {
        seen.lock().unwrap().multiplicity().len() >= 100
    })
    .await;
    first.abort();

    common::put_values(&kinesis, &stream, 100..200, false).await;
    let restarted = Instant::now();
    let seen_again = Arc::new(Mutex::new(Seen::default()));
    let second = worker(&stream, &application, &seen_again).await;
    common::wait_until(
        FAILOVER,
        "the new records, before the leases could expire",
        || {
            let seen = seen_again.lock().unwrap();
            (100..200).all(|v| seen.multiplicity().contains_key(&v.to_string()))
        },
    )
    .await;
    println!("read again after {:?}", restarted.elapsed());
    second.shutdown().await.unwrap();
}
