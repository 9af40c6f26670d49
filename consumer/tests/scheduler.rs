//! The scheduler against real local servers: one worker consumes everything and checkpoints at
//! the end of each shard's data.

#[macro_use]
mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Mode, Recorder, Seen};
use kinesis_aggregation::ShardId;
use kinesis_consumer::lease::{Checkpoint, DynamoLeaseStore, LeaseStore};
use kinesis_consumer::{InitialPosition, Scheduler};
use kinesis_test_support::{
    DynamoDbServer, KinesisServer, create_stream, dynamodb_client, kinesis_client, unique_name,
};

in_both_modes!(
    one_worker_consumes_four_shards_and_checkpoints_their_ends,
    a_restart_from_a_checkpoint_inside_an_aggregate_resumes_at_the_next_sub_record,
    latest_and_at_timestamp_start_new_leases_where_asked,
);

async fn one_worker_consumes_four_shards_and_checkpoints_their_ends(mode: Mode) {
    let kinesis = kinesis_client(mode.server(KinesisServer::Kinesalite)).await;
    let dynamodb = dynamodb_client(DynamoDbServer::DynamoDbLocal).await;
    let stream = unique_name("worker-one");
    let application = unique_name("app");
    create_stream(&kinesis, &stream, 4).await;
    // kinesis-mock is slower: fewer unaggregated records there.
    let (aggregated, total) = match mode {
        Mode::Polling => (40_000, 50_000),
        Mode::FanOut => (20_000, 22_000),
    };
    common::put_values(&kinesis, &stream, 0..aggregated, true).await;
    common::put_values(&kinesis, &stream, aggregated..total, false).await;

    let seen = Arc::new(Mutex::new(Seen::default()));
    let factory = {
        let seen = seen.clone();
        move |shard: &ShardId| Recorder {
            worker: "w1".into(),
            shard: shard.clone(),
            seen: seen.clone(),
            checkpoint_every_batch: true,
        }
    };
    let scheduler = Scheduler::builder(kinesis.clone(), dynamodb.clone(), &stream, &application)
        .worker_id("w1")
        .initial_position(InitialPosition::TrimHorizon)
        .lease_config(common::quick_leases(Duration::from_secs(3)))
        .retrieval(mode.retrieval())
        .build(factory)
        .await
        .unwrap();
    let handle = scheduler.spawn();
    common::wait_until(Duration::from_secs(120), "every record", || {
        seen.lock().unwrap().count() >= total
    })
    .await;
    // Let the last checkpoints land, then stop.
    tokio::time::sleep(Duration::from_millis(500)).await;
    handle.shutdown().await.unwrap();

    let seen = std::mem::take(&mut *seen.lock().unwrap());
    let multiplicity = seen.multiplicity();
    assert_eq!(multiplicity.len(), total, "every value delivered");
    assert!(
        multiplicity.values().all(|&n| n == 1),
        "no value delivered twice"
    );
    assert!(
        seen.checkpoint_errors.is_empty(),
        "{:?}",
        seen.checkpoint_errors
    );
    assert_eq!(seen.initialized.len(), 4);
    assert_eq!(
        seen.shutdown.len(),
        4,
        "each processor told of the shutdown"
    );

    // The table's checkpoint of each shard is its last delivered record, and the leases are free.
    let mut last: HashMap<ShardId, kinesis_consumer::Position> = HashMap::new();
    for (_, shard, position, _) in &seen.records {
        let entry = last
            .entry(shard.clone())
            .or_insert_with(|| position.clone());
        if position > entry {
            *entry = position.clone();
        }
    }
    let store = DynamoLeaseStore::new(dynamodb, application);
    let leases = store.list().await.unwrap();
    assert_eq!(leases.len(), 4);
    for lease in leases {
        let lease = lease.unwrap();
        let expected = &last[&lease.lease_key];
        assert_eq!(
            lease.checkpoint,
            Checkpoint::at(
                expected.sequence_number.clone(),
                expected.sub_sequence_number
            )
        );
        assert_eq!(lease.lease_owner, None, "released on graceful shutdown");
    }
}

/// Fails some batches with an error and panics on one: the batch comes again, nothing is skipped.
struct Flaky {
    inner: Recorder,
    calls: usize,
}

impl kinesis_consumer::RecordProcessor for Flaky {
    async fn initialize(&mut self, input: kinesis_consumer::InitializationInput) {
        self.inner.initialize(input).await;
    }

    async fn process_records(
        &mut self,
        input: kinesis_consumer::ProcessRecordsInput<'_>,
    ) -> Result<(), kinesis_consumer::ProcessorError> {
        self.calls += 1;
        match self.calls % 4 {
            1 => return Err("the database is down".into()),
            2 if self.calls < 4 => panic!("a bug in the processor"),
            _ => {}
        }
        self.inner.process_records(input).await
    }

    async fn lease_lost(&mut self) {
        self.inner.lease_lost().await;
    }

    async fn shard_ended(&mut self, checkpointer: &kinesis_consumer::Checkpointer) {
        self.inner.shard_ended(checkpointer).await;
    }

    async fn shutdown_requested(&mut self, checkpointer: &kinesis_consumer::Checkpointer) {
        self.inner.shutdown_requested(checkpointer).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_or_panicking_processor_gets_the_same_batch_again() {
    let kinesis = kinesis_client(KinesisServer::Kinesalite).await;
    let dynamodb = dynamodb_client(DynamoDbServer::Dynalite).await;
    let stream = unique_name("worker-flaky");
    create_stream(&kinesis, &stream, 1).await;
    common::put_values(&kinesis, &stream, 0..3_000, false).await;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let factory = {
        let seen = seen.clone();
        move |shard: &ShardId| Flaky {
            inner: Recorder {
                worker: "w1".into(),
                shard: shard.clone(),
                seen: seen.clone(),
                checkpoint_every_batch: true,
            },
            calls: 0,
        }
    };
    let polling = kinesis_consumer::retrieval::PollingConfig {
        max_records: 500,
        ..common::quick_polling()
    };
    let handle = Scheduler::builder(kinesis, dynamodb, &stream, unique_name("app"))
        .worker_id("w1")
        .lease_config(common::quick_leases(Duration::from_secs(3)))
        .polling_config(polling)
        .build(factory)
        .await
        .unwrap()
        .spawn();
    common::wait_until(
        Duration::from_secs(60),
        "every record despite failures",
        || seen.lock().unwrap().multiplicity().len() == 3_000,
    )
    .await;
    handle.shutdown().await.unwrap();
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    // Failed attempts record nothing, so every value shows exactly once, in shard order.
    let multiplicity = seen.multiplicity();
    assert_eq!(multiplicity.len(), 3_000);
    assert!(
        multiplicity.values().all(|&n| n == 1),
        "a batch was recorded twice or skipped"
    );
    assert!(
        seen.records.windows(2).all(|w| w[0].2 < w[1].2),
        "delivered in shard order"
    );
}

/// Checkpoints at one chosen position only, then stops taking records.
struct StopAt {
    /// Stop at the first record inside an aggregate (sub-sequence number ≥ 1) from this many on.
    stop_after: usize,
    delivered: Arc<Mutex<Vec<kinesis_consumer::Record>>>,
    stopped: Arc<std::sync::atomic::AtomicBool>,
}

impl kinesis_consumer::RecordProcessor for StopAt {
    async fn initialize(&mut self, _: kinesis_consumer::InitializationInput) {}

    async fn process_records(
        &mut self,
        input: kinesis_consumer::ProcessRecordsInput<'_>,
    ) -> Result<(), kinesis_consumer::ProcessorError> {
        use std::sync::atomic::Ordering;
        if self.stopped.load(Ordering::SeqCst) {
            return Err("stopped on purpose".into());
        }
        let already = self.delivered.lock().unwrap().len();
        let stop = input.records.iter().enumerate().position(|(i, r)| {
            already + i + 1 >= self.stop_after && r.aggregated && r.sub_sequence_number >= 1
        });
        let take = stop.map_or(input.records.len(), |k| k + 1);
        let position = input.records[take - 1].position();
        self.delivered
            .lock()
            .unwrap()
            .extend(input.records[..take].iter().cloned());
        input.checkpointer.checkpoint_at(position).await?;
        if stop.is_some() {
            self.stopped.store(true, Ordering::SeqCst);
            return Err("stopped on purpose".into());
        }
        Ok(())
    }

    async fn lease_lost(&mut self) {}

    async fn shard_ended(&mut self, checkpointer: &kinesis_consumer::Checkpointer) {
        checkpointer.checkpoint().await.unwrap();
    }

    async fn shutdown_requested(&mut self, _: &kinesis_consumer::Checkpointer) {}
}

async fn a_restart_from_a_checkpoint_inside_an_aggregate_resumes_at_the_next_sub_record(
    mode: Mode,
) {
    let kinesis = kinesis_client(mode.server(KinesisServer::Kinesalite)).await;
    let dynamodb = dynamodb_client(DynamoDbServer::DynamoDbLocal).await;
    let stream = unique_name("worker-restart");
    let application = unique_name("app");
    create_stream(&kinesis, &stream, 1).await;
    common::put_values(&kinesis, &stream, 0..2_000, true).await;

    // First run: stop inside an aggregate, at or after the 777th record.
    let first = Arc::new(Mutex::new(Vec::new()));
    let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let factory = {
        let (first, stopped) = (first.clone(), stopped.clone());
        move |_: &ShardId| StopAt {
            stop_after: 777,
            delivered: first.clone(),
            stopped: stopped.clone(),
        }
    };
    let handle = Scheduler::builder(kinesis.clone(), dynamodb.clone(), &stream, &application)
        .worker_id("w1")
        .lease_config(common::quick_leases(Duration::from_secs(3)))
        .retrieval(mode.retrieval())
        .build(factory)
        .await
        .unwrap()
        .spawn();
    common::wait_until(
        Duration::from_secs(30),
        "the stop inside an aggregate",
        || stopped.load(std::sync::atomic::Ordering::SeqCst),
    )
    .await;
    handle.shutdown().await.unwrap();
    let first = std::mem::take(&mut *first.lock().unwrap());
    let checkpoint = first.last().unwrap().clone();
    let stopped_at = first.len();
    assert!(stopped_at >= 777);
    assert!(
        checkpoint.aggregated && checkpoint.sub_sequence_number > 0,
        "the checkpoint lies inside an aggregate"
    );

    // Second run: everything after the checkpoint, nothing before it.
    let seen = Arc::new(Mutex::new(Seen::default()));
    let handle = Scheduler::builder(kinesis, dynamodb, &stream, &application)
        .worker_id("w2")
        .lease_config(common::quick_leases(Duration::from_secs(3)))
        .retrieval(mode.retrieval())
        .build(common::recorder("w2", &seen))
        .await
        .unwrap()
        .spawn();
    common::wait_until(Duration::from_secs(30), "the rest", || {
        seen.lock().unwrap().count() >= 2_000 - stopped_at
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    handle.shutdown().await.unwrap();
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    // Everything after the checkpoint once, nothing at or before it.
    assert!(
        seen.records
            .iter()
            .all(|(_, _, position, _)| position > &checkpoint.position())
    );
    let first_values: std::collections::BTreeSet<String> = first
        .iter()
        .map(|r| String::from_utf8_lossy(&r.data).into_owned())
        .collect();
    let multiplicity = seen.multiplicity();
    assert_eq!(
        multiplicity.len() + first_values.len(),
        2_000,
        "nothing lost"
    );
    assert!(multiplicity.values().all(|&n| n == 1));
    assert!(
        multiplicity.keys().all(|v| !first_values.contains(v)),
        "nothing before the checkpoint again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_lease_item_is_reported_and_the_other_shards_go_on() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let kinesis = kinesis_client(KinesisServer::Kinesalite).await;
    let dynamodb = dynamodb_client(DynamoDbServer::DynamoDbLocal).await;
    let stream = unique_name("worker-bad-item");
    let application = unique_name("app");
    create_stream(&kinesis, &stream, 2).await;
    // Every record to shard 0 (explicit hash key 0).
    let producer = kinesis_producer::Producer::builder(kinesis.clone(), &stream)
        .build()
        .await
        .unwrap();
    let mut handles = Vec::new();
    for i in 0..1_000 {
        let record = kinesis_producer::UserRecord::new(format!("k{i}"), i.to_string())
            .unwrap()
            .with_explicit_hash_key("0")
            .unwrap();
        handles.push(producer.put(record).await.unwrap());
    }
    for handle in handles {
        assert_eq!(
            handle.await.unwrap().shard_id.as_str(),
            "shardId-000000000000"
        );
    }
    producer.shutdown().await.unwrap();

    let seen = Arc::new(Mutex::new(Seen::default()));
    let scheduler = Scheduler::builder(kinesis, dynamodb.clone(), &stream, &application)
        .worker_id("w1")
        .lease_config(common::quick_leases(Duration::from_secs(3)))
        .polling_config(common::quick_polling())
        .build(common::recorder("w1", &seen))
        .await
        .unwrap();
    // A broken item for shard 1, written by hand: its counter is text.
    dynamodb
        .put_item()
        .table_name(&application)
        .item("leaseKey", AttributeValue::S("shardId-000000000001".into()))
        .item("leaseCounter", AttributeValue::S("abc".into()))
        .item("checkpoint", AttributeValue::S("TRIM_HORIZON".into()))
        .send()
        .await
        .unwrap();
    let store = DynamoLeaseStore::new(dynamodb.clone(), application.clone());
    let listed = store.list().await.unwrap();
    let error = listed
        .iter()
        .find_map(|l| l.as_ref().err())
        .expect("the bad item is reported");
    let message = error.to_string();
    assert!(
        message.contains("shardId-000000000001") && message.contains("leaseCounter"),
        "{message}"
    );

    let handle = scheduler.spawn();
    common::wait_until(Duration::from_secs(30), "shard 0's records", || {
        seen.lock().unwrap().count() == 1_000
    })
    .await;
    handle.shutdown().await.unwrap();
    let item = dynamodb
        .get_item()
        .table_name(&application)
        .key("leaseKey", AttributeValue::S("shardId-000000000001".into()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        item.item().unwrap()["leaseCounter"],
        AttributeValue::S("abc".into()),
        "the bad item is left for a person to look at"
    );
}

async fn latest_and_at_timestamp_start_new_leases_where_asked(mode: Mode) {
    for (name, latest) in [("latest", true), ("at-timestamp", false)] {
        let kinesis = kinesis_client(mode.server(KinesisServer::Kinesalite)).await;
        let dynamodb = dynamodb_client(DynamoDbServer::Dynalite).await;
        let stream = unique_name(&format!("worker-{name}"));
        create_stream(&kinesis, &stream, 1).await;
        common::put_values(&kinesis, &stream, 0..500, true).await;
        // Arrival timestamps have millisecond precision: leave a clear gap around the mark.
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        let mark = std::time::SystemTime::now();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let position = if latest {
            InitialPosition::Latest
        } else {
            common::put_values(&kinesis, &stream, 500..1_000, true).await;
            InitialPosition::AtTimestamp(mark)
        };
        let seen = Arc::new(Mutex::new(Seen::default()));
        let handle = Scheduler::builder(kinesis.clone(), dynamodb, &stream, unique_name("app"))
            .worker_id("w1")
            .initial_position(position)
            .lease_config(common::quick_leases(Duration::from_secs(3)))
            .retrieval(mode.retrieval())
            .build(common::recorder("w1", &seen))
            .await
            .unwrap()
            .spawn();
        common::wait_until(Duration::from_secs(30), "the lease to be processed", || {
            !seen.lock().unwrap().initialized.is_empty()
        })
        .await;
        if latest {
            // Give the reader time to take its LATEST iterator before the new records go in.
            tokio::time::sleep(Duration::from_millis(500)).await;
            common::put_values(&kinesis, &stream, 500..1_000, true).await;
        }
        common::wait_until(Duration::from_secs(30), "the later records", || {
            seen.lock().unwrap().count() >= 500
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        handle.shutdown().await.unwrap();
        let seen = std::mem::take(&mut *seen.lock().unwrap());
        let multiplicity = seen.multiplicity();
        let expected: std::collections::BTreeSet<String> =
            (500..1_000).map(|v| v.to_string()).collect();
        assert_eq!(
            multiplicity
                .keys()
                .cloned()
                .collect::<std::collections::BTreeSet<_>>(),
            expected,
            "{name}"
        );
    }
}
