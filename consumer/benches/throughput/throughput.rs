//! `throughput`: user records/s and CPU per record of one worker reading a pre-filled stream from
//! kinesalite with a no-op processor, and the share of that CPU that deaggregation takes.

use std::time::{Duration, Instant};

use bytes::Bytes;
use kinesis_aggregation::{Deaggregator, KinesisRecord};
use kinesis_consumer::retrieval::PollingConfig;
use kinesis_consumer::{InitialPosition, Scheduler, list_shards};
use kinesis_producer::Producer;
use kinesis_test_support::{
    DynamoDbServer, KinesisServer, create_stream, dynamodb_client, kinesis_client, unique_name,
};
use rand::distr::{Alphanumeric, SampleString};
use rand::{RngExt, SeedableRng};
use tokio::task::JoinSet;

use crate::Options;
use crate::common::{CheckpointEvery, Tally, counting, delete_stream, delete_table, secs};
use crate::usage::{Server, process_cpu};

const SHARDS: i32 = 4;
const DATA_SIZE: usize = 100;
const KEY_SIZE: usize = 16;
/// Putting tasks for the pre-fill.
const PUTTERS: usize = 4;

/// One timed run.
struct Run {
    rps: f64,
    steady_rps: f64,
    cpu_us: f64,
    kinesalite_us: Option<f64>,
    dynalite_us: Option<f64>,
}

pub async fn run(options: &Options) -> Result<(), String> {
    let count = options.records.unwrap_or(1_000_000);
    let idle = Duration::from_millis(options.idle_ms.unwrap_or(200));
    let max_records = match &options.max_records[..] {
        [] => vec![10_000, 200],
        list => list.to_vec(),
    };
    let kinesis = kinesis_client(KinesisServer::Kinesalite).await;
    let dynamodb = dynamodb_client(DynamoDbServer::Dynalite).await;
    let stream = unique_name("bench-consumer");
    create_stream(&kinesis, &stream, SHARDS).await;

    let filled = fill(&kinesis, &stream, count).await?;
    println!(
        "throughput: {count} user records ({DATA_SIZE} random bytes, {KEY_SIZE}-character random \
         keys) put (untimed) into a new {SHARDS}-shard kinesalite stream by kinesis-producer, \
         aggregated, RateLimit lifted to 10,000, in {}",
        secs(filled)
    );
    println!(
        "  one worker, no-op processor (counts records; never checkpoints), PollingConfig \
         idle_time_between_reads {} ms, prefetch 3; TRIM_HORIZON; lease table on dynalite (a new \
         one per run, so each run reads the whole stream); 2-worker Tokio runtime. Timed from \
         build() (creates the lease table) to the last record reaching the processor. CPU: user + \
         system of this process (/proc/self/stat) and of the kinesalite and dynalite processes \
         (/proc/<pid>/stat; other work on those servers would be counted too).",
        idle.as_millis()
    );
    let kinesalite = Server::find("kinesalite");
    let dynalite = Server::find("dynalite");
    let mut medians = Vec::new();
    for &max in &max_records {
        println!("  max_records {max}:");
        let mut runs = Vec::with_capacity(options.runs);
        for run in 1..=options.runs {
            let polling = PollingConfig {
                idle_time_between_reads: idle,
                max_records: max,
                ..PollingConfig::default()
            };
            let result = timed_run(
                &kinesis,
                &dynamodb,
                &stream,
                count,
                polling,
                &kinesalite,
                &dynalite,
            )
            .await?;
            let server = |name: &str, us: Option<f64>| {
                us.map(|us| format!(" + {us:.3} µs in {name}"))
                    .unwrap_or_default()
            };
            println!(
                "    run {run}: {:.0} user records/s end to end ({:.0}/s from the first record); \
                 CPU {:.3} µs per record in the consumer{}{}",
                result.rps,
                result.steady_rps,
                result.cpu_us,
                server("kinesalite", result.kinesalite_us),
                server("dynalite", result.dynalite_us),
            );
            runs.push(result);
        }
        let median = |figure: &dyn Fn(&Run) -> f64| {
            let mut values: Vec<f64> = runs.iter().map(figure).collect();
            values.sort_by(f64::total_cmp);
            values[values.len() / 2]
        };
        let m = Run {
            rps: median(&|r| r.rps),
            steady_rps: median(&|r| r.steady_rps),
            cpu_us: median(&|r| r.cpu_us),
            kinesalite_us: Some(median(&|r| r.kinesalite_us.unwrap_or(f64::NAN))),
            dynalite_us: Some(median(&|r| r.dynalite_us.unwrap_or(f64::NAN))),
        };
        println!(
            "    medians of {} runs: {:.0} user records/s end to end, {:.0}/s from the first \
             record; CPU per record {:.3} µs in the consumer, {:.3} µs in kinesalite",
            runs.len(),
            m.rps,
            m.steady_rps,
            m.cpu_us,
            m.kinesalite_us.unwrap_or(f64::NAN)
        );
        medians.push(m);
    }
    let first = &medians[0];
    let (rps, cpu_us) = (first.rps, first.cpu_us);
    let kinesalite_us = first.kinesalite_us.unwrap_or(f64::NAN);

    let deagg = deaggregation(&kinesis, &stream, count).await?;
    let share = deagg.deagg_ns / 1000.0 / cpu_us;
    println!(
        "  deaggregation, offline: the stream's {} Kinesis records ({:.1} user records each, \
         {:.1} MB) read once with the SDK ({:.3} µs CPU per user record in this process for \
         GetRecords: HTTP, JSON, base64), then deaggregated {} times: {:.1} ns per user record \
         (median) = {:.1} million user records/s on one core, {:.1}x the end-to-end rate \
         (max_records {}); {:.1}% of the consumer's CPU per record",
        deagg.kinesis_records,
        count as f64 / deagg.kinesis_records.max(1) as f64,
        deagg.bytes as f64 / 1e6,
        deagg.read_cpu_us,
        deagg.repeats,
        deagg.deagg_ns,
        1e3 / deagg.deagg_ns,
        1e9 / deagg.deagg_ns / rps,
        max_records[0],
        share * 100.0
    );
    delete_stream(&kinesis, &stream).await;
    println!(
        "consumer_rps={rps:.0} cpu_us_per_record={cpu_us:.3} \
         kinesalite_cpu_us_per_record={kinesalite_us:.3} deagg_ns_per_record={:.1} \
         deagg_share_of_cpu={share:.4}",
        deagg.deagg_ns
    );
    Ok(())
}

/// Puts `count` records from [`PUTTERS`] tasks and awaits every outcome.
async fn fill(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    count: usize,
) -> Result<Duration, String> {
    let producer = Producer::builder(kinesis.clone(), stream)
        .rate_limit(10_000)
        .max_outstanding_records(count.max(1))
        .max_outstanding_bytes(4_294_967_295)
        .build()
        .await
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut putters = JoinSet::new();
    for task in 0..PUTTERS {
        let producer = producer.clone();
        let share = count / PUTTERS + usize::from(task < count % PUTTERS);
        putters.spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(task as u64);
            let mut handles = Vec::with_capacity(share);
            for _ in 0..share {
                let mut data = vec![0u8; DATA_SIZE];
                rng.fill(&mut data[..]);
                let key = Alphanumeric.sample_string(&mut rng, KEY_SIZE);
                handles.push(
                    producer
                        .put_data(key, data)
                        .await
                        .map_err(|e| e.to_string())?,
                );
            }
            for handle in handles {
                handle
                    .await
                    .map_err(|e| format!("a pre-fill record failed: {e}"))?;
            }
            Ok::<(), String>(())
        });
    }
    while let Some(done) = putters.join_next().await {
        done.map_err(|e| e.to_string())??;
    }
    producer.shutdown().await.map_err(|e| e.to_string())?;
    Ok(started.elapsed())
}

async fn timed_run(
    kinesis: &aws_sdk_kinesis::Client,
    dynamodb: &aws_sdk_dynamodb::Client,
    stream: &str,
    count: usize,
    polling: PollingConfig,
    kinesalite: &Server,
    dynalite: &Server,
) -> Result<Run, String> {
    let application = unique_name("bench-consumer-app");
    let tally = Tally::new(count as u64);
    let cpu_before = process_cpu();
    let kinesalite_before = kinesalite.cpu();
    let dynalite_before = dynalite.cpu();
    let started = Instant::now();
    let scheduler = Scheduler::builder(kinesis.clone(), dynamodb.clone(), stream, &application)
        .worker_id("bench")
        .initial_position(InitialPosition::TrimHorizon)
        .polling_config(polling)
        .build(counting("bench", &tally, CheckpointEvery::Never))
        .await
        .map_err(|e| e.to_string())?;
    let handle = scheduler.spawn();
    let done = tally.wait_done(Duration::from_secs(300)).await?;
    let cpu = process_cpu().saturating_sub(cpu_before);
    let server_cpu =
        |server: &Server, before: Option<Duration>| Some(server.cpu()?.saturating_sub(before?));
    let kinesalite_cpu = server_cpu(kinesalite, kinesalite_before);
    let dynalite_cpu = server_cpu(dynalite, dynalite_before);
    let elapsed = done - started;
    let first = *tally.first_record.get().expect("records were processed");
    handle.shutdown().await.map_err(|e| e.to_string())?;
    delete_table(dynamodb, &application).await;
    let processed = tally.records.load(std::sync::atomic::Ordering::Relaxed);
    if processed != count as u64 {
        return Err(format!(
            "{processed} records processed for {count} put (duplicates?)"
        ));
    }
    let per_record = |d: Duration| d.as_secs_f64() * 1e6 / count as f64;
    println!(
        "    {count} records in {} ({} batches; the first record after {})",
        secs(elapsed),
        tally.batches.load(std::sync::atomic::Ordering::Relaxed),
        secs(first - started)
    );
    Ok(Run {
        rps: count as f64 / elapsed.as_secs_f64(),
        steady_rps: count as f64 / (done - first).as_secs_f64(),
        cpu_us: per_record(cpu),
        kinesalite_us: kinesalite_cpu.map(per_record),
        dynalite_us: dynalite_cpu.map(per_record),
    })
}

struct Deaggregation {
    kinesis_records: usize,
    bytes: usize,
    read_cpu_us: f64,
    repeats: usize,
    deagg_ns: f64,
}

/// Reads every raw Kinesis record of the stream once, then times deaggregation alone over them.
async fn deaggregation(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    count: usize,
) -> Result<Deaggregation, String> {
    let cpu_before = process_cpu();
    let mut raw: Vec<KinesisRecord> = Vec::new();
    for shard in list_shards(kinesis, stream).await? {
        let mut iterator = kinesis
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(shard.shard_id.as_str())
            .shard_iterator_type(aws_sdk_kinesis::types::ShardIteratorType::TrimHorizon)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .shard_iterator;
        while let Some(current) = iterator {
            let output = kinesis
                .get_records()
                .shard_iterator(current)
                .limit(10_000)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if output.records.is_empty() {
                break;
            }
            iterator = output.next_shard_iterator;
            raw.extend(output.records.into_iter().map(|r| {
                KinesisRecord::new(
                    r.partition_key.unwrap_or_default(),
                    Bytes::from(r.data.into_inner()),
                )
            }));
        }
    }
    let read_cpu = process_cpu().saturating_sub(cpu_before);
    let repeats = 5;
    let mut times = Vec::with_capacity(repeats);
    let mut out = Vec::new();
    for _ in 0..repeats {
        let mut deaggregator = Deaggregator::new();
        let started = Instant::now();
        for record in &raw {
            deaggregator.deaggregate_into(record, &mut out);
            out.clear();
        }
        times.push(started.elapsed());
        let users = deaggregator.stats().user_records;
        if users != count as u64 {
            return Err(format!("{users} user records in the stream, {count} put"));
        }
    }
    times.sort();
    let median = times[times.len() / 2];
    Ok(Deaggregation {
        kinesis_records: raw.len(),
        bytes: raw.iter().map(|r| r.data.len()).sum(),
        read_cpu_us: read_cpu.as_secs_f64() * 1e6 / count as f64,
        repeats,
        deagg_ns: median.as_secs_f64() * 1e9 / count as f64,
    })
}
