//! Puts records into a stream through the producer, from stdin lines or a generator, with a
//! progress bar and a summary (put, failed, retries, records/s).
//!
//! ```text
//! producer --stream S [--endpoint-url URL] [--region R] [--count N | --stdin] [--size BYTES] [--keys K]
//! ```
//!
//! Credentials and region come from the AWS default chain (environment, profile, instance role);
//! `--endpoint-url` points at a local server such as kinesalite (with `AWS_ACCESS_KEY_ID=test`
//! `AWS_SECRET_ACCESS_KEY=test` in the environment).

use std::io::BufRead;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use kinesis_producer::{Producer, PutError, UserRecord};
use rand::RngExt;
use tokio::sync::Semaphore;

#[derive(Parser)]
#[command(about = "Put records into a Kinesis stream through the KPL-style producer")]
struct Args {
    /// The stream to write to.
    #[arg(long)]
    stream: String,
    /// Endpoint override, e.g. http://127.0.0.1:4567 for a local server.
    #[arg(long)]
    endpoint_url: Option<String>,
    /// AWS region (default: from the environment or profile).
    #[arg(long)]
    region: Option<String>,
    /// Generate this many records (ignored with --stdin).
    #[arg(long, default_value_t = 100_000)]
    count: u64,
    /// Put each line of stdin as a record instead of generating records.
    #[arg(long)]
    stdin: bool,
    /// Size in bytes of generated records.
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Number of distinct partition keys of generated records.
    #[arg(long, default_value_t = 10_000)]
    keys: u64,
    /// Append the id of every acknowledged generated record (its data starts with `rec-<id>`) to
    /// this file, one per line: what the demo compares with what the workers processed.
    #[arg(long)]
    ack_log: Option<std::path::PathBuf>,
    /// Split the stream's first open shard once this many records have been put.
    #[arg(long)]
    split_after: Option<u64>,
    /// Create the stream with this many shards if it does not exist.
    #[arg(long)]
    create_shards: Option<i32>,
    /// KPL options as KEY=VALUE (e.g. RecordMaxBufferedTime=50), repeatable.
    #[arg(long = "option", value_parser = parse_option)]
    options: Vec<(String, String)>,
}

fn parse_option(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{text:?} is not KEY=VALUE"))
}

#[derive(Default)]
struct Tally {
    put: AtomicU64,
    failed: AtomicU64,
    retries: AtomicU64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = Args::parse();
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(endpoint) = &args.endpoint_url {
        loader = loader.endpoint_url(endpoint);
    }
    if let Some(region) = &args.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    let client = aws_sdk_kinesis::Client::new(&loader.load().await);
    let split_client = client.clone();
    if let Some(shards) = args.create_shards {
        create_stream_if_absent(&client, &args.stream, shards).await?;
    }
    let config = kinesis_producer::ProducerConfig::default()
        .with_pairs(args.options.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
    let producer = Producer::builder(client, &args.stream)
        .config(config)
        .build()
        .await?;

    let bar = ProgressBar::new(if args.stdin { 0 } else { args.count });
    bar.set_style(ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} put · {per_sec} · {msg}",
    )?);
    let tally = Arc::new(Tally::default());
    // Bounds the tasks awaiting outcomes; the producer's own backpressure bounds its buffers.
    let awaiting = Arc::new(Semaphore::new(200_000));
    let started = Instant::now();

    let ack_log = match &args.ack_log {
        Some(path) => Some(Arc::new(std::sync::Mutex::new(std::io::BufWriter::new(
            std::fs::File::create(path)?,
        )))),
        None => None,
    };
    let submit = |record: UserRecord| {
        let id = record
            .data()
            .strip_prefix(b"rec-")
            .map(|rest| String::from_utf8_lossy(&rest[..rest.len().min(12)]).into_owned());
        let ack_log = ack_log.clone();
        let handle = producer.put(record);
        let tally = tally.clone();
        let bar = bar.clone();
        let awaiting = awaiting.clone();
        async move {
            let permit = awaiting.acquire_owned().await.expect("never closed");
            let handle = handle.await.expect("records are validated before put");
            tokio::spawn(async move {
                match handle.await {
                    Ok(outcome) => {
                        if let (Some(log), Some(id)) = (&ack_log, &id) {
                            use std::io::Write;
                            let _ = writeln!(log.lock().unwrap(), "{id}");
                        }
                        tally.put.fetch_add(1, Ordering::Relaxed);
                        tally
                            .retries
                            .fetch_add(outcome.attempts.len() as u64 - 1, Ordering::Relaxed);
                        bar.inc(1);
                    }
                    Err(error) => {
                        tally.failed.fetch_add(1, Ordering::Relaxed);
                        if let PutError::Expired { attempts, .. } = &error {
                            tally.retries.fetch_add(
                                attempts.len().saturating_sub(1) as u64,
                                Ordering::Relaxed,
                            );
                        }
                        bar.set_message(format!("last error: {error}"));
                    }
                }
                drop(permit);
            });
        }
    };

    if args.stdin {
        for (i, line) in std::io::stdin().lock().lines().enumerate() {
            let line = line?;
            submit(UserRecord::new(format!("line-{i}"), line.into_bytes())?).await;
            bar.set_length(i as u64 + 1);
        }
    } else {
        let mut rng = rand::rng();
        for i in 0..args.count {
            if args.split_after == Some(i) {
                split_first_shard(producer.stream(), &split_client).await?;
            }
            let key = format!("key-{}", rng.random_range(0..args.keys));
            let mut data = format!("rec-{i:012}").into_bytes();
            data.resize(args.size.max(data.len()), 0);
            rng.fill(&mut data[16..]);
            submit(UserRecord::new(key, data)?).await;
        }
    }
    producer.flush().await?;
    // Every outcome is in once all permits of the awaiting tasks are back.
    let _all = awaiting.acquire_many(200_000).await?;
    producer.shutdown().await?;
    bar.finish();
    if let Some(log) = &ack_log {
        use std::io::Write;
        log.lock().unwrap().flush()?;
    }

    let elapsed = started.elapsed().max(Duration::from_millis(1));
    let put = tally.put.load(Ordering::Relaxed);
    println!(
        "put={put} failed={} retries={} records_per_second={:.0} elapsed_s={:.2}",
        tally.failed.load(Ordering::Relaxed),
        tally.retries.load(Ordering::Relaxed),
        put as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    Ok(())
}

async fn create_stream_if_absent(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    shards: i32,
) -> Result<(), Box<dyn std::error::Error>> {
    let created = client
        .create_stream()
        .stream_name(stream)
        .shard_count(shards)
        .send()
        .await;
    if let Err(error) = created
        && !error
            .as_service_error()
            .is_some_and(|e| e.is_resource_in_use_exception())
    {
        return Err(error.into());
    }
    loop {
        let summary = client
            .describe_stream_summary()
            .stream_name(stream)
            .send()
            .await?;
        let active = summary
            .stream_description_summary()
            .is_some_and(|s| s.stream_status() == &aws_sdk_kinesis::types::StreamStatus::Active);
        if active {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Splits the first open shard of `stream` at the middle of its hash-key range.
async fn split_first_shard(
    stream: &str,
    client: &aws_sdk_kinesis::Client,
) -> Result<(), Box<dyn std::error::Error>> {
    let shards = kinesis_consumer::list_shards(client, stream).await?;
    let Some(shard) = shards.iter().find(|s| s.open) else {
        return Ok(());
    };
    let listed = client.list_shards().stream_name(stream).send().await?;
    let range = listed
        .shards()
        .iter()
        .find(|s| s.shard_id() == shard.shard_id.as_str())
        .and_then(|s| s.hash_key_range())
        .ok_or("the shard has no hash-key range")?;
    let (start, end): (u128, u128) = (
        range.starting_hash_key().parse()?,
        range.ending_hash_key().parse()?,
    );
    client
        .split_shard()
        .stream_name(stream)
        .shard_to_split(shard.shard_id.as_str())
        .new_starting_hash_key((start + (end - start) / 2).to_string())
        .send()
        .await?;
    eprintln!("split {} while producing", shard.shard_id);
    Ok(())
}
