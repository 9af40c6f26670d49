//! `ddb`: DynamoDB requests per shard per minute of one worker at steady state, by operation,
//! against what the Java KCL's schedule implies.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use kinesis_consumer::lease::LeaseConfig;
use kinesis_consumer::retrieval::PollingConfig;
use kinesis_consumer::{InitialPosition, Scheduler};
use kinesis_test_support::proxy::FaultProxy;
use kinesis_test_support::{
    DynamoDbServer, KinesisServer, create_stream, kinesis_client, sdk_config, unique_name,
};
use tokio::task::JoinSet;

use crate::Options;
use crate::common::{CheckpointEvery, EventKind, Tally, Trickle, clean_up, counting, wait_until};

const SHARDS: usize = 4;
/// Steady state starts this long after every shard has delivered its first batch.
const WARM_UP: Duration = Duration::from_secs(5);
/// The scheduler's default `shardSyncIntervalMillis`.
const SHARD_SYNC: Duration = Duration::from_secs(60);
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(10);

struct Variant {
    every: CheckpointEvery,
    config: LeaseConfig,
    window: Duration,
    /// Requests by operation (`UpdateItem`, `Scan`, …).
    requests: BTreeMap<String, u64>,
    checkpoints: u64,
    checkpoint_errors: u64,
    batches: u64,
    records: u64,
    /// Leases taken or lost during the window (0 at steady state).
    lease_changes: usize,
}

impl Variant {
    fn label(&self) -> String {
        match self.every {
            CheckpointEvery::Batch => "checkpoint after every batch".into(),
            CheckpointEvery::Interval(d) => format!("checkpoint every {} s", d.as_secs()),
            CheckpointEvery::Never => "no checkpoints".into(),
        }
    }

    /// Per shard per minute.
    fn rate(&self, n: u64) -> f64 {
        n as f64 / SHARDS as f64 / (self.window.as_secs_f64() / 60.0)
    }

    fn total(&self) -> u64 {
        self.requests.values().sum()
    }

    fn op(&self, name: &str) -> u64 {
        self.requests.get(name).copied().unwrap_or(0)
    }

    /// The Java KCL's schedule for the same worker: renew each lease every renew interval, one
    /// lease-table scan per taker interval per worker, plus the same checkpoints.
    fn java(&self) -> (f64, f64, f64) {
        let renew = 60.0 / self.config.renew_interval().as_secs_f64();
        let scans = 60.0 / self.config.take_interval().as_secs_f64() / SHARDS as f64;
        let checkpoints = self.rate(self.checkpoints);
        (renew, scans, checkpoints)
    }
}

pub async fn run(options: &Options) -> Result<(), String> {
    // By default a whole number of renewal rounds close to a minute (18 × 3.308 s), so every
    // window holds the same number of renewals whatever its phase.
    let renew = LeaseConfig::default().renew_interval();
    let window = options.seconds.map_or_else(
        || renew * (60.0 / renew.as_secs_f64()).round() as u32,
        Duration::from_secs,
    );
    let idle = Duration::from_millis(options.idle_ms.unwrap_or(1_500));
    let rate = options.rate.unwrap_or(40);
    println!(
        "ddb: one worker, {SHARDS}-shard kinesalite stream, {rate} records/s trickling in (so \
         every GetRecords has some), failoverTime 10 s and the other lease options at the KCL \
         defaults, PollingConfig idle_time_between_reads {} ms; lease table on DynamoDB Local \
         behind kinesis_test_support's FaultProxy (no faults), which counts requests by \
         operation. Counted over {:.2} s of steady state (a whole number of renewal rounds), \
         starting {} s after every shard delivered its first batch; rates are per shard per \
         minute. Two workers at once, each with its own stream, table and proxy: one \
         checkpoints after every batch, one every {} s.",
        idle.as_millis(),
        window.as_secs_f64(),
        WARM_UP.as_secs(),
        CHECKPOINT_INTERVAL.as_secs()
    );
    let mut set = JoinSet::new();
    for every in [
        CheckpointEvery::Batch,
        CheckpointEvery::Interval(CHECKPOINT_INTERVAL),
    ] {
        set.spawn(variant(every, window, idle, rate));
    }
    let mut variants = Vec::new();
    while let Some(done) = set.join_next().await {
        variants.push(done.map_err(|e| e.to_string())??);
    }
    variants.sort_by_key(|v| v.every != CheckpointEvery::Batch);
    for v in &variants {
        report(v);
    }
    let realistic = &variants[1];
    let worst = &variants[0];
    let (renew, scans, checkpoints) = realistic.java();
    println!(
        "ddb_calls_per_shard_minute={:.2} ddb_calls_per_shard_minute_every_batch={:.2} \
         java_kcl_schedule_per_shard_minute={:.2}",
        realistic.rate(realistic.total()),
        worst.rate(worst.total()),
        renew + scans + checkpoints
    );
    Ok(())
}

fn report(v: &Variant) {
    let total = v.total();
    println!(
        "  {}: {total} DynamoDB requests in {:.2} s = {:.2} per shard-minute ({} batches, {} records, \
         {} checkpoints, {} refused; {} leases changed hands)",
        v.label(),
        v.window.as_secs_f64(),
        v.rate(total),
        v.batches,
        v.records,
        v.checkpoints,
        v.checkpoint_errors,
        v.lease_changes
    );
    let updates = v.op("UpdateItem");
    let renewals = updates.saturating_sub(v.checkpoints);
    println!(
        "    UpdateItem {updates} = {:.2}/shard-min: renewals {renewals} ({:.2}) + checkpoints {} \
         ({:.2})",
        v.rate(updates),
        v.rate(renewals),
        v.checkpoints,
        v.rate(v.checkpoints)
    );
    for (op, n) in &v.requests {
        if op == "Scan" {
            let minutes = v.window.as_secs_f64() / 60.0;
            println!(
                "    Scan {n} = {:.2}/shard-min: the taker's (one per {:.2} s: {:.2} expected in \
                 the window) and the shard sync's (one per {} s: {:.2} expected)",
                v.rate(*n),
                v.config.take_interval().as_secs_f64(),
                v.window.as_secs_f64() / v.config.take_interval().as_secs_f64(),
                SHARD_SYNC.as_secs(),
                minutes * 60.0 / SHARD_SYNC.as_secs_f64(),
            );
        } else if op != "UpdateItem" {
            println!("    {op} {n} = {:.2}/shard-min", v.rate(*n));
        }
    }
    let (renew, scans, checkpoints) = v.java();
    let ours_lease = v.rate(total.saturating_sub(v.checkpoints));
    println!(
        "    the Java KCL's schedule: renewals {renew:.2} + taker scans {scans:.2} (one per {} s \
         per worker, over {SHARDS} shards) + the same checkpoints {checkpoints:.2} = {:.2} per \
         shard-minute; without checkpoints {:.2} (Java) vs {ours_lease:.2} (ours)",
        v.config.take_interval().as_secs_f64(),
        renew + scans + checkpoints,
        renew + scans
    );
}

async fn variant(
    every: CheckpointEvery,
    window: Duration,
    idle: Duration,
    rate: u32,
) -> Result<Variant, String> {
    let proxy = FaultProxy::start(&DynamoDbServer::DynamoDbLocal.endpoint()).await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk_config(proxy.endpoint()).await);
    let kinesis = kinesis_client(KinesisServer::Kinesalite).await;
    let stream = unique_name("bench-ddb");
    create_stream(&kinesis, &stream, SHARDS as i32).await;
    let application = unique_name("bench-ddb-app");
    let trickle = Trickle::start(kinesis.clone(), &stream, rate).await?;
    let config = LeaseConfig::default();
    let tally = Tally::new(0);
    let scheduler = Scheduler::builder(kinesis.clone(), dynamodb.clone(), &stream, &application)
        .worker_id("bench")
        .initial_position(InitialPosition::TrimHorizon)
        .lease_config(config.clone())
        .shard_sync_interval(SHARD_SYNC)
        .polling_config(PollingConfig {
            idle_time_between_reads: idle,
            ..PollingConfig::default()
        })
        .build(counting("bench", &tally, every))
        .await
        .map_err(|e| e.to_string())?;
    let handle = scheduler.spawn();
    let measured = async {
        wait_until(
            Duration::from_secs(60),
            "every shard to deliver a batch",
            || tally.shards_with("bench", EventKind::FirstRecord) == SHARDS,
        )
        .await?;
        tokio::time::sleep(WARM_UP).await;
        proxy.reset_stats();
        let (checkpoints, errors, batches, records) = (
            tally.checkpoints.load(Relaxed),
            tally.checkpoint_errors.load(Relaxed),
            tally.batches.load(Relaxed),
            tally.records.load(Relaxed),
        );
        let events = tally.events().len();
        let started = Instant::now();
        tokio::time::sleep(window).await;
        let stats = proxy.stats();
        let window = started.elapsed();
        let lease_changes = tally
            .events()
            .iter()
            .skip(events)
            .filter(|e| matches!(e.kind, EventKind::Initialized | EventKind::LeaseLost))
            .count();
        Ok::<_, String>(Variant {
            every,
            config,
            window,
            requests: stats
                .received_by_target
                .iter()
                .map(|(target, n)| {
                    let op = target
                        .rsplit_once('.')
                        .map_or(target.as_str(), |(_, op)| op);
                    (op.to_owned(), *n)
                })
                .collect(),
            checkpoints: tally.checkpoints.load(Relaxed) - checkpoints,
            checkpoint_errors: tally.checkpoint_errors.load(Relaxed) - errors,
            batches: tally.batches.load(Relaxed) - batches,
            records: tally.records.load(Relaxed) - records,
            lease_changes,
        })
    }
    .await;
    let shut_down = handle.shutdown().await.map_err(|e| e.to_string());
    let stopped = trickle.stop().await;
    clean_up(&kinesis, &stream, &dynamodb, &application).await;
    shut_down?;
    stopped?;
    measured
}
