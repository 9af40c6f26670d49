//! `failover`: how long after a worker crashes another worker processes its shard, against
//! failoverTime and the taker interval.

use std::time::{Duration, Instant};

use kinesis_aggregation::ShardId;
use kinesis_consumer::lease::LeaseConfig;
use kinesis_consumer::retrieval::PollingConfig;
use kinesis_consumer::{InitialPosition, Scheduler, SchedulerHandle};
use kinesis_test_support::{
    DynamoDbServer, KinesisServer, create_stream, dynamodb_client, kinesis_client, unique_name,
};
use tokio::task::JoinSet;

use crate::Options;
use crate::common::{
    CheckpointEvery, EventKind, Tally, Trickle, clean_up, counting, owned_by, owners, secs,
    wait_until,
};

/// The failover times tried; the first is the KCL default and the one the last line reports.
const FAILOVER_TIMES: [Duration; 2] = [Duration::from_secs(10), Duration::from_secs(3)];
const IDLE_BETWEEN_READS: Duration = Duration::from_millis(200);

/// One trial: A crashed at `phase` of B's taker interval after the lease split settled.
struct Trial {
    failover: Duration,
    config: LeaseConfig,
    phase: f64,
    /// From B's start: B stole a lease, A was told it lost it, A was killed.
    stolen: Duration,
    a_lost: Duration,
    killed: Duration,
    /// The shard A held at the kill.
    shard: ShardId,
    /// From the kill: B took the shard (its processor was initialized), B processed its first
    /// record of it.
    taken: Duration,
    first_record: Duration,
}

pub async fn run(options: &Options) -> Result<(), String> {
    let rate = options.rate.unwrap_or(300);
    let trials = options.trials;
    println!(
        "failover: two workers (A, B) in this process on a 2-shard kinesalite stream, a background \
         producer putting {rate} records/s; lease table on DynamoDB Local; processors checkpoint \
         after every batch; PollingConfig idle_time_between_reads {} ms. A starts and processes \
         both shards; B starts and steals one lease at its first taker run; once A's processor of \
         that shard got lease_lost, A is killed (SchedulerHandle::abort: nothing released) after \
         a further phase × B's taker interval (phases 0, 1/{trials}, …). The shard measured is \
         the one the lease table names A as owner of just before the kill (A's processor of it \
         initialized and never told lease_lost). Failover = kill → B's processor receives its \
         first record of that shard. {trials} trials per failoverTime, all at once, each on its \
         own stream and table.",
        IDLE_BETWEEN_READS.as_millis()
    );
    let mut set = JoinSet::new();
    for failover in FAILOVER_TIMES {
        for i in 0..trials {
            set.spawn(trial(failover, i as f64 / trials as f64, rate));
        }
    }
    let mut results = Vec::new();
    while let Some(done) = set.join_next().await {
        results.push(done.map_err(|e| e.to_string())??);
    }
    results.sort_by(|a, b| {
        b.failover
            .cmp(&a.failover)
            .then(a.phase.total_cmp(&b.phase))
    });
    let mut worst = Vec::new();
    for failover in FAILOVER_TIMES {
        let of_this: Vec<&Trial> = results.iter().filter(|t| t.failover == failover).collect();
        let config = &of_this[0].config;
        let (take, renew) = (config.take_interval(), config.renew_interval());
        let bound = failover + take;
        println!(
            "  failoverTime {}: renew every {}, taker every {}; target failoverTime + taker \
             interval = {}",
            secs(failover),
            secs(renew),
            secs(take),
            secs(bound)
        );
        for t in &of_this {
            println!(
                "    phase {:.2}: B stole a lease after {}, A saw it lost after {}, A killed after \
                 {} (from B's start) holding {}; B took it {} after the kill, first record {} \
                 after the kill{}",
                t.phase,
                secs(t.stolen),
                secs(t.a_lost),
                secs(t.killed),
                t.shard,
                secs(t.taken),
                secs(t.first_record),
                if t.first_record <= bound {
                    ""
                } else {
                    " (over the target)"
                }
            );
        }
        let mut values: Vec<Duration> = of_this.iter().map(|t| t.first_record).collect();
        values.sort();
        let max = *values.last().expect("at least one trial");
        let met = values.iter().filter(|v| **v <= bound).count();
        println!(
            "    failover min {} / median {} / max {}; {met} of {} trials within the target. The \
             Java KCL's schedule (a lease expires once a scan sees its counter unchanged since the \
             previous scan, scans every taker interval) takes over between taker − renew \
             interval = {} and 2 × taker interval = {} after the kill, plus the time to read a \
             first batch",
            secs(values[0]),
            secs(values[values.len() / 2]),
            secs(max),
            values.len(),
            secs(take.saturating_sub(renew)),
            secs(take * 2),
        );
        worst.push((max, failover, bound));
    }
    let [(worst_ms, failover_ms, bound_ms), (worst_3s, _, bound_3s)] = worst[..]
        .iter()
        .map(|(w, f, b)| (w.as_millis(), f.as_millis(), b.as_millis()))
        .collect::<Vec<_>>()[..]
    else {
        unreachable!("one entry per failover time")
    };
    println!(
        "failover_ms={worst_ms} failover_time_ms={failover_ms} bound_ms={bound_ms} \
         failover_3s_ms={worst_3s} bound_3s_ms={bound_3s}"
    );
    Ok(())
}

async fn trial(failover: Duration, phase: f64, rate: u32) -> Result<Trial, String> {
    let kinesis = kinesis_client(KinesisServer::Kinesalite).await;
    let dynamodb = dynamodb_client(DynamoDbServer::DynamoDbLocal).await;
    let stream = unique_name("bench-failover");
    create_stream(&kinesis, &stream, 2).await;
    let application = unique_name("bench-failover-app");
    let trickle = Trickle::start(kinesis.clone(), &stream, rate).await?;
    let setup = Setup {
        kinesis: kinesis.clone(),
        dynamodb: dynamodb.clone(),
        stream: stream.clone(),
        application: application.clone(),
        config: LeaseConfig::default().failover_time(failover),
        tally: Tally::new(0),
    };
    let result = setup.measure(phase).await;
    let stopped = trickle.stop().await;
    clean_up(&kinesis, &stream, &dynamodb, &application).await;
    let (_, failed) = stopped?;
    if failed > 0 {
        return Err(format!("{failed} background records failed"));
    }
    result
}

struct Setup {
    kinesis: aws_sdk_kinesis::Client,
    dynamodb: aws_sdk_dynamodb::Client,
    stream: String,
    application: String,
    config: LeaseConfig,
    tally: std::sync::Arc<Tally>,
}

impl Setup {
    async fn worker(&self, id: &str) -> Result<SchedulerHandle, String> {
        let scheduler = Scheduler::builder(
            self.kinesis.clone(),
            self.dynamodb.clone(),
            &self.stream,
            &self.application,
        )
        .worker_id(id)
        .initial_position(InitialPosition::TrimHorizon)
        .lease_config(self.config.clone())
        .polling_config(PollingConfig {
            idle_time_between_reads: IDLE_BETWEEN_READS,
            ..PollingConfig::default()
        })
        .build(counting(id, &self.tally, CheckpointEvery::Batch))
        .await
        .map_err(|e| e.to_string())?;
        Ok(scheduler.spawn())
    }

    async fn measure(&self, phase: f64) -> Result<Trial, String> {
        let tally = &self.tally;
        let take = self.config.take_interval();
        let a_started = Instant::now();
        let a = self.worker("A").await?;
        wait_until(
            Duration::from_secs(60),
            "A to process records of both shards",
            || tally.shards_with("A", EventKind::FirstRecord) == 2,
        )
        .await?;
        let b_started = Instant::now();
        let b = self.worker("B").await?;
        // B steals one lease at its first taker run; A learns it at its next renewal.
        let deadline = Instant::now() + take + Duration::from_secs(30);
        loop {
            let owners = owners(&self.dynamodb, &self.application).await?;
            let split = owned_by(&owners, "A").len() == 1 && owned_by(&owners, "B").len() == 1;
            if split
                && tally
                    .find("A", None, EventKind::LeaseLost, b_started)
                    .is_some()
            {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("the leases did not split 1/1: {owners:?}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let stolen = tally
            .find("B", None, EventKind::Initialized, b_started)
            .ok_or("B has no lease")?
            .at
            - b_started;
        let a_lost = tally
            .find("A", None, EventKind::LeaseLost, b_started)
            .expect("waited for")
            .at
            - b_started;
        tokio::time::sleep(take.mul_f64(phase)).await;

        let owners = owners(&self.dynamodb, &self.application).await?;
        let held = owned_by(&owners, "A");
        let [shard] = &held[..] else {
            return Err(format!("A should hold exactly one lease: {owners:?}"));
        };
        let shard = shard.clone();
        a.abort();
        let killed = Instant::now();
        let a_running = tally
            .find("A", Some(&shard), EventKind::Initialized, a_started)
            .is_some()
            && tally
                .find("A", Some(&shard), EventKind::LeaseLost, b_started)
                .is_none_or(|lost| lost.at > killed);
        if !a_running {
            return Err(format!(
                "A's processor of {shard} was not running at the kill"
            ));
        }
        wait_until(
            take * 2 + self.config.get_failover_time() + Duration::from_secs(30),
            "B to process the crashed worker's shard",
            || {
                tally
                    .find("B", Some(&shard), EventKind::FirstRecord, killed)
                    .is_some()
            },
        )
        .await?;
        let first = tally
            .find("B", Some(&shard), EventKind::FirstRecord, killed)
            .expect("waited for");
        let taken = tally
            .find("B", Some(&shard), EventKind::Initialized, killed)
            .ok_or("B processed the shard without initializing it")?;
        b.shutdown().await.map_err(|e| e.to_string())?;
        Ok(Trial {
            failover: self.config.get_failover_time(),
            config: self.config.clone(),
            phase,
            stolen,
            a_lost,
            killed: killed - b_started,
            shard,
            taken: taken.at - killed,
            first_record: first.at - killed,
        })
    }
}
