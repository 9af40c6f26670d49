//! A worker cut off from the lease table (its renewals fail) past failoverTime: another worker
//! takes its lease, the zombie's processor is told `lease_lost`, its checkpoints are refused, and
//! the table's checkpoint never goes backwards.

#[macro_use]
mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Mode, Seen};
use kinesis_aggregation::ShardId;
use kinesis_consumer::lease::{DynamoLeaseStore, LeaseStore};
use kinesis_consumer::{Position, Scheduler};
use kinesis_test_support::proxy::{Block, Blocked, FaultProxy, Faults, Targets};
use kinesis_test_support::{
    DynamoDbServer, KinesisServer, create_stream, dynamodb_client, kinesis_client, sdk_config,
    unique_name,
};

in_both_modes!(a_partitioned_worker_loses_its_lease_and_cannot_move_the_checkpoint_back);

async fn a_partitioned_worker_loses_its_lease_and_cannot_move_the_checkpoint_back(mode: Mode) {
    let failover = Duration::from_secs(2);
    let kinesis = kinesis_client(mode.server(KinesisServer::Kinesalite)).await;
    let dynamodb = dynamodb_client(DynamoDbServer::DynamoDbLocal).await;
    let stream = unique_name("zombie");
    let application = unique_name("app");
    create_stream(&kinesis, &stream, 1).await;
    common::put_values(&kinesis, &stream, 0..2_000, true).await;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let shard = ShardId::from("shardId-000000000000");

    // w1 reaches DynamoDB through a proxy that can cut it off.
    let proxy = FaultProxy::start(&DynamoDbServer::DynamoDbLocal.endpoint()).await;
    let cut_off_dynamodb = aws_sdk_dynamodb::Client::new(&sdk_config(proxy.endpoint()).await);
    let w1 = Scheduler::builder(kinesis.clone(), cut_off_dynamodb, &stream, &application)
        .worker_id("w1")
        .lease_config(common::quick_leases(failover))
        .retrieval(mode.retrieval())
        .build(common::recorder("w1", &seen))
        .await
        .unwrap()
        .spawn();
    common::wait_until(
        Duration::from_secs(30),
        "w1 to process the first records",
        || seen.lock().unwrap().multiplicity().len() == 2_000,
    )
    .await;

    // Watch the table's checkpoint for the rest of the test: it must never go backwards.
    let store = DynamoLeaseStore::new(dynamodb.clone(), application.clone());
    let watching = Arc::new(AtomicBool::new(true));
    let watcher = {
        let (store, watching, shard) = (store.clone(), watching.clone(), shard.clone());
        tokio::spawn(async move {
            let mut history: Vec<Position> = Vec::new();
            while watching.load(Ordering::Relaxed) {
                if let Ok(Some(lease)) = store.get(&shard).await
                    && let Some(position) = lease.checkpoint.position()
                {
                    if let Some(previous) = history.last() {
                        assert!(
                            &position >= previous,
                            "checkpoint went back from {previous:?} to {position:?}"
                        );
                    }
                    history.push(position);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            history
        })
    };

    // Cut w1 off: its renewals and checkpoints fail from now on.
    proxy.set_faults(Faults {
        block: Some(Blocked::new(
            Targets::only(["UpdateItem", "PutItem", "DeleteItem"]),
            Block::Fail,
        )),
        ..Faults::default()
    });
    let w2 = Scheduler::builder(kinesis.clone(), dynamodb.clone(), &stream, &application)
        .worker_id("w2")
        .lease_config(common::quick_leases(failover))
        .retrieval(mode.retrieval())
        .build(common::recorder("w2", &seen))
        .await
        .unwrap()
        .spawn();
    common::wait_until(
        failover * 6 + Duration::from_secs(5),
        "w1 to learn it lost the lease",
        || {
            seen.lock()
                .unwrap()
                .lost
                .iter()
                .any(|(w, s)| w == "w1" && s == &shard)
        },
    )
    .await;
    common::wait_until(
        failover * 6 + Duration::from_secs(5),
        "w2 to own the lease",
        || {
            seen.lock()
                .unwrap()
                .initialized
                .iter()
                .any(|(w, _)| w == "w2")
        },
    )
    .await;
    common::put_values(&kinesis, &stream, 2_000..3_000, true).await;
    common::wait_until(
        Duration::from_secs(30),
        "w2 to process the new records",
        || seen.lock().unwrap().multiplicity().len() == 3_000,
    )
    .await;

    // w1 reconnects: it holds nothing and writes nothing.
    proxy.set_faults(Faults::default());
    tokio::time::sleep(failover * 2).await;
    let lease = store.get(&shard).await.unwrap().unwrap();
    assert_eq!(lease.lease_owner.as_deref(), Some("w2"));
    watching.store(false, Ordering::Relaxed);
    let history = watcher.await.expect("the checkpoint never went backwards");
    assert!(history.len() > 10);

    let zombie_records = seen
        .lock()
        .unwrap()
        .records
        .iter()
        .filter(|(w, _, _, d)| w == "w1" && d.parse::<usize>().unwrap() >= 2_000)
        .count();
    assert_eq!(
        zombie_records, 0,
        "the zombie processed records after losing its lease"
    );
    w1.shutdown().await.unwrap();
    w2.shutdown().await.unwrap();
}
