//! The producer's throughput, CPU per record and memory, through the whole pipeline.
//!
//! `cargo bench -p kinesis-producer --bench throughput -- <MODE> [--records N] [--tasks T]
//! [--shards S] [--runs R] [--set KplOption=value]...`
//!
//! - `throughput` (default 2,000,000 records): user records of 100 random bytes with 16-character
//!   random partition keys, put by T tasks (default 4) on a 2-worker Tokio runtime into a loopback
//!   endpoint that accepts `PutRecords` at once ([`fake_kinesis`]) for a 64-shard stream; every
//!   outcome is awaited and checked. Reports user records/s from the first `put` to the last
//!   outcome, and CPU per record: the producer's (the process less the fake endpoint's thread)
//!   and the endpoint's; the median of R runs (default 3). Last line:
//!   `producer_rps=<n> cpu_us_per_record=<x> server_cpu_us_per_record=<x>`.
//! - `memory` (default 1,000,000 records): the same records with `MaxOutstandingRecords` =
//!   1,000,000 while the endpoint holds every `PutRecords` answer, so all of them stay
//!   outstanding; reports the producer's peak and current resident memory against the buffered
//!   payload (data plus partition keys), then releases the endpoint and checks every record
//!   resolves. Last line: `peak_rss_mib=<n> rss_mib=<n> payload_mib=<n> peak_to_payload=<x>`.
//! - `local` (default 200,000 records): the same records into a new 4-shard stream on kinesalite
//!   (`KINESALITE_ENDPOINT`, or `.local/run/servers.env` from `scripts/servers start`).
//!   Last line: `local_server_rps=<n>`.
//!
//! - `serve`: only the loopback endpoint, for producers in other processes (the Python benchmark,
//!   `scripts/bench-python-producer`): prints `endpoint=http://127.0.0.1:<port>`, answers until its
//!   standard input closes, then prints `put_requests=<n> entries=<n> server_cpu_ms=<n>`.
//!
//! The input is made before anything is timed. `scripts/bench-producer` runs the first three.

mod fake_kinesis;
mod usage;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fake_kinesis::FakeKinesis;
use kinesis_producer::{Producer, ProducerConfig, PutHandle, UserRecord};
use kinesis_test_support::{KinesisServer, create_stream, sdk_config, unique_name};
use rand::distr::{Alphanumeric, SampleString};
use rand::{RngExt, SeedableRng};
use tokio::task::JoinSet;
use usage::{mib, process_cpu, reset_peak, rss};

/// Data bytes per user record.
const DATA_SIZE: usize = 100;
/// Characters per partition key.
const KEY_SIZE: usize = 16;
/// Handles awaited together by one task.
const AWAIT_BATCH: usize = 4096;

struct Options {
    mode: String,
    records: Option<usize>,
    tasks: usize,
    shards: usize,
    runs: usize,
    /// KPL options (`RateLimit=150`), applied after the mode's own settings.
    settings: Vec<(String, String)>,
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        mode: String::new(),
        records: None,
        tasks: 4,
        shards: 64,
        runs: 3,
        settings: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |name: &str| {
            args.next()
                .and_then(|v| v.replace('_', "").parse::<usize>().ok())
                .ok_or_else(|| format!("{name} needs a number"))
        };
        match arg.as_str() {
            // `cargo bench` passes this to every bench binary.
            "--bench" => {}
            "--records" => options.records = Some(number("--records")?),
            "--tasks" => options.tasks = number("--tasks")?.max(1),
            "--shards" => options.shards = number("--shards")?.max(1),
            "--runs" => options.runs = number("--runs")?.max(1),
            "--set" => {
                let setting = args.next().unwrap_or_default();
                let (key, value) = setting
                    .split_once('=')
                    .ok_or_else(|| format!("--set needs KplOption=value, not {setting:?}"))?;
                options.settings.push((key.to_owned(), value.to_owned()));
            }
            "throughput" | "memory" | "local" | "serve" if options.mode.is_empty() => {
                options.mode = arg
            }
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    if options.mode.is_empty() {
        return Err("which mode: throughput, memory, local or serve?".into());
    }
    Ok(options)
}

fn main() -> ExitCode {
    let options = match options() {
        Ok(options) => options,
        Err(e) => {
            eprintln!("throughput bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match options.mode.as_str() {
        "throughput" => throughput(&options),
        "memory" => memory(&options),
        "serve" => serve(&options),
        _ => local(&options),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("throughput bench ({}): {e}", options.mode);
            ExitCode::FAILURE
        }
    }
}

/// Serves the loopback endpoint until standard input closes.
fn serve(options: &Options) -> Result<(), String> {
    use std::io::{Read, Write};
    let server = FakeKinesis::start(options.shards);
    println!("endpoint={}", server.endpoint());
    std::io::stdout().flush().map_err(|e| e.to_string())?;
    // Blocks until the caller closes the pipe (or exits).
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    let counters = server.counters();
    println!(
        "put_requests={} entries={} server_cpu_ms={}",
        counters
            .put_requests
            .load(std::sync::atomic::Ordering::Relaxed),
        counters.entries.load(std::sync::atomic::Ordering::Relaxed),
        server.cpu().as_millis()
    );
    Ok(())
}

/// `count` user records of 100 random bytes with 16-character random partition keys. With
/// `shared_data` the data are slices of one buffer (cheap to clone, one allocation); otherwise
/// each record owns its data, as an application's records would.
fn generate(count: usize, shared_data: bool) -> Vec<UserRecord> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let mut buffer = vec![0u8; if shared_data { count * DATA_SIZE } else { 0 }];
    rng.fill(&mut buffer[..]);
    let buffer = Bytes::from(buffer);
    let mut records = Vec::with_capacity(count);
    for i in 0..count {
        let data = if shared_data {
            buffer.slice(i * DATA_SIZE..(i + 1) * DATA_SIZE)
        } else {
            let mut data = vec![0u8; DATA_SIZE];
            rng.fill(&mut data[..]);
            Bytes::from(data)
        };
        let key = Alphanumeric.sample_string(&mut rng, KEY_SIZE);
        records.push(UserRecord::new(key, data).expect("valid record"));
    }
    records
}

/// Bytes the records count against `MaxOutstandingBytes`: data plus partition keys.
fn payload(count: usize) -> u64 {
    (count * (DATA_SIZE + KEY_SIZE)) as u64
}

/// The KPL defaults, then `base` (KPL option names), then the `--set` options; and the options
/// that differ from the defaults, as text for the report.
fn config(base: &[(&str, &str)], options: &Options) -> Result<(ProducerConfig, String), String> {
    let mut config = ProducerConfig::default();
    let mut changed: Vec<String> = Vec::new();
    let settings = base.iter().map(|&(k, v)| (k, v)).chain(
        options
            .settings
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str())),
    );
    for (key, value) in settings {
        config.set(key, value).map_err(|e| e.to_string())?;
        changed.retain(|c| !c.starts_with(&format!("{key}=")));
        changed.push(format!("{key}={value}"));
    }
    config.validate().map_err(|e| e.to_string())?;
    Ok((config, changed.join(" ")))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a Tokio runtime")
}

/// Puts `chunks` from one task each; for each, another task awaits and checks the outcomes in
/// batches as they are put (joined with [`join_counts`]).
async fn put_all(
    producer: &Producer,
    chunks: Vec<Vec<UserRecord>>,
    awaiters: &mut JoinSet<Result<usize, String>>,
) -> Result<(), String> {
    let mut putters = JoinSet::new();
    for chunk in chunks {
        let producer = producer.clone();
        let (batches_tx, mut batches_rx) = tokio::sync::mpsc::unbounded_channel::<Vec<PutHandle>>();
        putters.spawn(async move {
            let mut batch = Vec::with_capacity(AWAIT_BATCH);
            for record in chunk {
                batch.push(producer.put(record).await.map_err(|e| e.to_string())?);
                if batch.len() == AWAIT_BATCH {
                    let _ = batches_tx.send(std::mem::replace(
                        &mut batch,
                        Vec::with_capacity(AWAIT_BATCH),
                    ));
                }
            }
            let _ = batches_tx.send(batch);
            Ok::<(), String>(())
        });
        awaiters.spawn(async move {
            let mut checked = 0;
            while let Some(batch) = batches_rx.recv().await {
                checked += check(batch).await?;
            }
            Ok(checked)
        });
    }
    while let Some(done) = putters.join_next().await {
        done.map_err(|e| e.to_string())??;
    }
    Ok(())
}

/// Awaits every handle; each must be a first-attempt success.
async fn check(handles: Vec<PutHandle>) -> Result<usize, String> {
    let count = handles.len();
    for handle in handles {
        let outcome = handle.await.map_err(|e| format!("a record failed: {e}"))?;
        if outcome.attempts.len() != 1 {
            return Err(format!(
                "a record needed {} attempts against an endpoint that never fails",
                outcome.attempts.len()
            ));
        }
    }
    Ok(count)
}

async fn join_counts(awaiters: &mut JoinSet<Result<usize, String>>) -> Result<usize, String> {
    let mut total = 0;
    while let Some(done) = awaiters.join_next().await {
        total += done.map_err(|e| e.to_string())??;
    }
    Ok(total)
}

fn split(records: Vec<UserRecord>, parts: usize) -> Vec<Vec<UserRecord>> {
    let per = records.len().div_ceil(parts).max(1);
    let mut chunks: Vec<Vec<UserRecord>> = Vec::with_capacity(parts);
    let mut records = records.into_iter();
    loop {
        let chunk: Vec<UserRecord> = records.by_ref().take(per).collect();
        if chunk.is_empty() {
            return chunks;
        }
        chunks.push(chunk);
    }
}

/// One timed throughput run.
struct Run {
    rps: f64,
    cpu_us: f64,
    server_cpu_us: f64,
    cores: f64,
}

fn throughput(options: &Options) -> Result<(), String> {
    let count = options.records.unwrap_or(2_000_000);
    let (config, changed) = config(
        &[
            ("MaxOutstandingRecords", "1000000"),
            ("MaxOutstandingBytes", "4294967295"),
        ],
        options,
    )?;
    println!(
        "throughput: {count} user records ({DATA_SIZE} random bytes, {KEY_SIZE}-character random \
         keys) from {} tasks on a 2-worker Tokio runtime, into a loopback endpoint that accepts \
         PutRecords at once, {} shards; the KPL defaults but {changed}; {} runs, the median \
         reported. CPU is user + system time of the whole process (getrusage-like, from \
         /proc/self/stat); the fake endpoint shares the process, so its thread's CPU time is \
         measured apart (/proc/self/task/<tid>/schedstat) and subtracted.",
        options.tasks, options.shards, options.runs
    );
    let server = FakeKinesis::start(options.shards);
    let runtime = runtime();
    let client = runtime
        .block_on(async { aws_sdk_kinesis::Client::new(&sdk_config(server.endpoint()).await) });
    let mut runs = Vec::with_capacity(options.runs);
    for run in 1..=options.runs {
        let chunks = split(generate(count, false), options.tasks);
        let result = runtime.block_on(throughput_run(
            client.clone(),
            config.clone(),
            chunks,
            &server,
        ))?;
        println!(
            "  run {run}: {:.0} user records/s; CPU {:.3} µs per record for the producer (with the \
             SDK client and the putting tasks) + {:.3} µs for the fake endpoint; {:.2} of 2 cores busy",
            result.rps, result.cpu_us, result.server_cpu_us, result.cores
        );
        runs.push(result);
    }
    let median = |figure: fn(&Run) -> f64| {
        let mut values: Vec<f64> = runs.iter().map(figure).collect();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let (rps, cpu_us, server_cpu_us) = (
        median(|r| r.rps),
        median(|r| r.cpu_us),
        median(|r| r.server_cpu_us),
    );
    println!(
        "  medians: {rps:.0} user records/s; CPU per record {cpu_us:.3} µs (producer), \
         {server_cpu_us:.3} µs (fake endpoint)"
    );
    println!(
        "producer_rps={rps:.0} cpu_us_per_record={cpu_us:.3} server_cpu_us_per_record={server_cpu_us:.3}"
    );
    Ok(())
}

async fn throughput_run(
    client: aws_sdk_kinesis::Client,
    config: ProducerConfig,
    chunks: Vec<Vec<UserRecord>>,
    server: &FakeKinesis,
) -> Result<Run, String> {
    use std::sync::atomic::Ordering::Relaxed;
    let count: usize = chunks.iter().map(Vec::len).sum();
    let producer = Producer::builder(client, "bench")
        .config(config)
        .build()
        .await
        .map_err(|e| e.to_string())?;
    let counters = server.counters();
    let (requests_before, entries_before, body_before) = (
        counters.put_requests.load(Relaxed),
        counters.entries.load(Relaxed),
        counters.body_bytes.load(Relaxed),
    );
    let started = Instant::now();
    let cpu_before = process_cpu();
    let server_before = server.cpu();
    let mut awaiters = JoinSet::new();
    put_all(&producer, chunks, &mut awaiters).await?;
    let put_done = started.elapsed();
    let resolved = join_counts(&mut awaiters).await?;
    let elapsed = started.elapsed();
    let cpu = process_cpu().saturating_sub(cpu_before);
    let server_cpu = server.cpu().saturating_sub(server_before);
    producer.shutdown().await.map_err(|e| e.to_string())?;
    if resolved != count {
        return Err(format!("{resolved} outcomes for {count} records"));
    }
    let requests = counters.put_requests.load(Relaxed) - requests_before;
    let entries = counters.entries.load(Relaxed) - entries_before;
    let body = counters.body_bytes.load(Relaxed) - body_before;
    let per_record = |d: Duration| d.as_secs_f64() * 1e6 / count as f64;
    println!(
        "  {count} outcomes, all successful, in {:.3} s (the last put returned after {:.3} s); \
         {requests} PutRecords requests, {entries} Kinesis records ({:.1} user records each), \
         {:.0} MB of request bodies",
        elapsed.as_secs_f64(),
        put_done.as_secs_f64(),
        count as f64 / entries.max(1) as f64,
        body as f64 / 1e6,
    );
    Ok(Run {
        rps: count as f64 / elapsed.as_secs_f64(),
        cpu_us: per_record(cpu.saturating_sub(server_cpu)),
        server_cpu_us: per_record(server_cpu),
        cores: cpu.as_secs_f64() / elapsed.as_secs_f64(),
    })
}

fn memory(options: &Options) -> Result<(), String> {
    let count = options.records.unwrap_or(1_000_000);
    let payload = payload(count);
    // Held answers must neither time out nor let records expire while memory is read.
    let (config, changed) = config(
        &[
            ("MaxOutstandingRecords", &count.to_string()),
            (
                "MaxOutstandingBytes",
                &(payload * 4).max(64 << 20).to_string(),
            ),
            ("RequestTimeout", "600000"),
            ("RecordTtl", "600000"),
        ],
        options,
    )?;
    let baseline = rss();
    // The input stays alive and its clones are put: they share its data, so the input's memory is
    // one constant that the measurement subtracts, and nothing the producer allocates reuses it.
    let records = Arc::new(generate(count, true));
    let input = rss();
    let peak_reset = reset_peak();
    let server = FakeKinesis::start(options.shards);
    server.hold();
    runtime().block_on(async {
        let client = aws_sdk_kinesis::Client::new(&sdk_config(server.endpoint()).await);
        let producer = Producer::builder(client, "bench")
            .config(config)
            .build()
            .await
            .map_err(|e| e.to_string())?;
        let tasks = options.tasks;
        let mut putters = JoinSet::new();
        for t in 0..tasks {
            let producer = producer.clone();
            let records = records.clone();
            putters.spawn(async move {
                let mut handles = Vec::with_capacity(count / tasks + 1);
                for record in records.iter().skip(t).step_by(tasks) {
                    handles.push(
                        producer
                            .put(record.clone())
                            .await
                            .map_err(|e| e.to_string())?,
                    );
                }
                Ok::<_, String>(handles)
            });
        }
        let mut handles = Vec::with_capacity(tasks);
        while let Some(done) = putters.join_next().await {
            handles.push(done.map_err(|e| e.to_string())??);
        }
        let put_at = Instant::now();
        let held = settle(&producer, &server, count, put_at).await?;
        let now = rss();
        let peak = now.peak.saturating_sub(input.current);
        let current = now.current.saturating_sub(input.current);
        println!(
            "memory: {count} user records ({DATA_SIZE} random bytes, {KEY_SIZE}-character keys) \
             outstanding, {} shards, the loopback endpoint holding every PutRecords answer; the \
             KPL defaults but {changed}",
            options.shards
        );
        println!(
            "  method: RSS from /proc/self/status; the producer's memory is VmHWM (peak{}) and \
             VmRSS now, less the RSS measured after the input was made and before the first put; \
             the input (kept alive, its clones share its data) and the process baseline are \
             therefore not counted. The fake endpoint and the SDK client share the process and \
             are counted; the endpoint drops each request body once parsed.",
            if peak_reset {
                ", reset after the input was made"
            } else {
                ""
            }
        );
        println!(
            "  baseline {:.1} MiB; input {:.1} MiB; at {} outstanding: {} PutRecords requests \
             held by the endpoint with {} Kinesis records, the rest queued in the pipeline",
            mib(baseline.current),
            mib(input.current.saturating_sub(baseline.current)),
            producer.outstanding_records(),
            held.0,
            held.1
        );
        println!(
            "  buffered payload {:.1} MiB (data plus keys); producer peak {:.1} MiB = {:.2}x the \
             payload; producer now {:.1} MiB = {:.2}x",
            mib(payload),
            mib(peak),
            peak as f64 / payload as f64,
            mib(current),
            current as f64 / payload as f64
        );
        server.release();
        let released = Instant::now();
        let mut resolved = 0;
        for batch in handles {
            resolved += check(batch).await?;
        }
        producer.shutdown().await.map_err(|e| e.to_string())?;
        if resolved != count {
            return Err(format!("{resolved} outcomes for {count} records"));
        }
        println!(
            "  released: all {resolved} records resolved successfully in {:.2} s",
            released.elapsed().as_secs_f64()
        );
        println!(
            "peak_rss_mib={:.0} rss_mib={:.0} payload_mib={:.0} peak_to_payload={:.2}",
            mib(peak),
            mib(current),
            mib(payload),
            peak as f64 / payload as f64
        );
        Ok(())
    })
}

/// Waits until `count` records are outstanding and the pipeline has aggregated and sent what it
/// can: the endpoint's held requests have not changed for a second, a second after the last put.
/// Returns the held requests and Kinesis records.
async fn settle(
    producer: &Producer,
    server: &FakeKinesis,
    count: usize,
    put_at: Instant,
) -> Result<(u64, u64), String> {
    use std::sync::atomic::Ordering::Relaxed;
    let counters = server.counters();
    let read = || {
        (
            counters.held_requests.load(Relaxed),
            counters.held_entries.load(Relaxed),
        )
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = read();
    let mut stable_since = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let outstanding = producer.outstanding_records();
        let now = read();
        if now != last {
            last = now;
            stable_since = Instant::now();
        }
        if outstanding == count
            && now.0 > 0
            && stable_since.elapsed() >= Duration::from_secs(1)
            && put_at.elapsed() >= Duration::from_secs(1)
        {
            return Ok(now);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "not settled after 120 s: {outstanding} outstanding, {} held requests",
                now.0
            ));
        }
    }
}

fn local(options: &Options) -> Result<(), String> {
    let count = options.records.unwrap_or(200_000);
    let (config, changed) = config(
        &[
            ("MaxOutstandingRecords", &count.max(1).to_string()),
            ("MaxOutstandingBytes", "4294967295"),
        ],
        options,
    )?;
    let shards = 4;
    let records = generate(count, false);
    let chunks = split(records, options.tasks);
    runtime().block_on(async {
        let endpoint = KinesisServer::Kinesalite.endpoint();
        let client = aws_sdk_kinesis::Client::new(&sdk_config(&endpoint).await);
        let stream = unique_name("bench-producer");
        create_stream(&client, &stream, shards).await;
        let producer = Producer::builder(client.clone(), &stream)
            .config(config)
            .build()
            .await
            .map_err(|e| e.to_string())?;
        let started = Instant::now();
        let mut awaiters = JoinSet::new();
        put_all(&producer, chunks, &mut awaiters).await?;
        let resolved = join_counts(&mut awaiters).await?;
        let elapsed = started.elapsed();
        producer.shutdown().await.map_err(|e| e.to_string())?;
        let _ = client.delete_stream().stream_name(&stream).send().await;
        if resolved != count {
            return Err(format!("{resolved} outcomes for {count} records"));
        }
        let rps = count as f64 / elapsed.as_secs_f64();
        println!(
            "local: {count} user records into a new {shards}-shard stream on kinesalite \
             ({endpoint}), the KPL defaults but {changed}: all successful in {:.3} s, {rps:.0} user records/s",
            elapsed.as_secs_f64()
        );
        println!("local_server_rps={rps:.0}");
        Ok(())
    })
}
