//! A consumer worker: consumes a stream with the KCL-compatible scheduler, prints per-shard
//! progress and lag, checkpoints every N records or T seconds, and shuts down gracefully on Ctrl-C.
//!
//! ```text
//! worker --stream S --app A [--worker-id ID] [--endpoint-url URL] [--dynamodb-endpoint-url URL]
//!        [--initial-position trim-horizon|latest] [--checkpoint-every N] [--checkpoint-seconds T]
//! ```
//!
//! Several workers with the same `--app` share the stream's shards through the lease table `A`.
//! Credentials and region come from the AWS default chain; the endpoint options point at local
//! servers.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use kinesis_aggregation::ShardId;
use kinesis_consumer::retrieval::{FanOutConfig, PollingConfig, RetrievalConfig};
use kinesis_consumer::{
    Checkpointer, InitialPosition, InitializationInput, ProcessRecordsInput, ProcessorError,
    RecordProcessor, Scheduler,
};

#[derive(Parser)]
#[command(about = "Consume a Kinesis stream with the KCL-compatible scheduler")]
struct Args {
    /// The stream to consume.
    #[arg(long)]
    stream: String,
    /// The application name: the lease table's name, shared by cooperating workers.
    #[arg(long)]
    app: String,
    /// This worker's id (default: a random one).
    #[arg(long)]
    worker_id: Option<String>,
    /// Kinesis endpoint override (e.g. a local server).
    #[arg(long)]
    endpoint_url: Option<String>,
    /// DynamoDB endpoint override (e.g. a local server).
    #[arg(long)]
    dynamodb_endpoint_url: Option<String>,
    /// AWS region (default: from the environment or profile).
    #[arg(long)]
    region: Option<String>,
    /// Where shards without a checkpoint start.
    #[arg(long, default_value = "trim-horizon", value_parser = ["trim-horizon", "latest"])]
    initial_position: String,
    /// Checkpoint after this many records of a shard.
    #[arg(long, default_value_t = 10_000)]
    checkpoint_every: usize,
    /// Checkpoint at least this often (seconds) while records arrive.
    #[arg(long, default_value_t = 10)]
    checkpoint_seconds: u64,
    /// `failoverTimeMillis`.
    #[arg(long, default_value_t = 10_000)]
    failover_millis: u64,
    /// `idleTimeBetweenReadsInMillis`.
    #[arg(long, default_value_t = 1_000)]
    idle_millis: u64,
    /// Append the id of every processed record whose data starts with `rec-<id>` to this file
    /// (what the demo compares with what the producer had acknowledged).
    #[arg(long)]
    processed_log: Option<std::path::PathBuf>,
    /// Seconds between progress reports.
    #[arg(long, default_value_t = 5)]
    report_seconds: u64,
    /// Read by enhanced fan-out (`SubscribeToShard`, a stream consumer named after the
    /// application) instead of polling. kinesalite has no fan-out; kinesis-mock and AWS do.
    #[arg(long)]
    fan_out: bool,
}

#[derive(Default, Clone)]
struct ShardProgress {
    records: u64,
    millis_behind_latest: Option<i64>,
    checkpoints: u64,
    state: &'static str,
}

type Progress = Arc<Mutex<BTreeMap<ShardId, ShardProgress>>>;

type Log = Option<Arc<Mutex<std::io::BufWriter<std::fs::File>>>>;

struct Processor {
    log: Log,
    shard: ShardId,
    progress: Progress,
    since_checkpoint: usize,
    last_checkpoint: Instant,
    every: usize,
    interval: Duration,
}

impl Processor {
    fn update(&self, change: impl FnOnce(&mut ShardProgress)) {
        change(
            self.progress
                .lock()
                .unwrap()
                .entry(self.shard.clone())
                .or_default(),
        );
    }

    async fn checkpoint(&mut self, checkpointer: &Checkpointer) {
        match checkpointer.checkpoint().await {
            Ok(()) => {
                self.since_checkpoint = 0;
                self.last_checkpoint = Instant::now();
                self.update(|p| p.checkpoints += 1);
            }
            Err(error) => eprintln!("{}: checkpoint failed: {error}", self.shard),
        }
    }
}

impl RecordProcessor for Processor {
    async fn initialize(&mut self, input: InitializationInput) {
        self.update(|p| p.state = "processing");
        eprintln!(
            "{}: starting at {}",
            input.shard_id,
            input.checkpoint.as_str()
        );
    }

    async fn process_records(
        &mut self,
        input: ProcessRecordsInput<'_>,
    ) -> Result<(), ProcessorError> {
        let count = input.records.len();
        if let Some(log) = &self.log {
            use std::io::Write;
            let mut log = log.lock().unwrap();
            for record in &input.records {
                if let Some(id) = record.data.strip_prefix(b"rec-") {
                    log.write_all(&id[..id.len().min(12)])?;
                    log.write_all(b"\n")?;
                }
            }
            // Written before the checkpoint: a crash after it re-delivers, never loses.
            log.flush()?;
        }
        self.since_checkpoint += count;
        self.update(|p| {
            p.records += count as u64;
            p.millis_behind_latest = input.millis_behind_latest;
        });
        if self.since_checkpoint >= self.every || self.last_checkpoint.elapsed() >= self.interval {
            self.checkpoint(input.checkpointer).await;
        }
        Ok(())
    }

    async fn lease_lost(&mut self) {
        self.update(|p| p.state = "lost");
    }

    async fn shard_ended(&mut self, checkpointer: &Checkpointer) {
        self.checkpoint(checkpointer).await;
        self.update(|p| p.state = "ended");
    }

    async fn shutdown_requested(&mut self, checkpointer: &Checkpointer) {
        self.checkpoint(checkpointer).await;
        self.update(|p| p.state = "shut down");
    }
}

async fn client_config(endpoint: Option<&str>, region: Option<&str>) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(endpoint) = endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    if let Some(region) = region {
        loader = loader.region(aws_config::Region::new(region.to_owned()));
    }
    loader.load().await
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let kinesis = aws_sdk_kinesis::Client::new(
        &client_config(args.endpoint_url.as_deref(), args.region.as_deref()).await,
    );
    let dynamodb = aws_sdk_dynamodb::Client::new(
        &client_config(
            args.dynamodb_endpoint_url.as_deref(),
            args.region.as_deref(),
        )
        .await,
    );
    let progress: Progress = Arc::default();
    let log: Log = match &args.processed_log {
        Some(path) => Some(Arc::new(Mutex::new(std::io::BufWriter::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?,
        )))),
        None => None,
    };
    let factory = {
        let progress = progress.clone();
        let log = log.clone();
        let (every, interval) = (
            args.checkpoint_every,
            Duration::from_secs(args.checkpoint_seconds),
        );
        move |shard: &ShardId| Processor {
            log: log.clone(),
            shard: shard.clone(),
            progress: progress.clone(),
            since_checkpoint: 0,
            last_checkpoint: Instant::now(),
            every,
            interval,
        }
    };
    let mut builder = Scheduler::builder(kinesis, dynamodb, &args.stream, &args.app)
        .initial_position(match args.initial_position.as_str() {
            "latest" => InitialPosition::Latest,
            _ => InitialPosition::TrimHorizon,
        })
        .lease_config(
            kinesis_consumer::lease::LeaseConfig::default()
                .failover_time(Duration::from_millis(args.failover_millis)),
        )
        .retrieval(if args.fan_out {
            RetrievalConfig::FanOut(FanOutConfig::default())
        } else {
            RetrievalConfig::Polling(PollingConfig {
                idle_time_between_reads: Duration::from_millis(args.idle_millis),
                ..Default::default()
            })
        });
    if let Some(id) = &args.worker_id {
        builder = builder.worker_id(id);
    }
    let scheduler = builder.build(factory).await?;
    let worker = scheduler.worker_id().to_owned();
    eprintln!(
        "worker {worker} consuming {} as application {}",
        args.stream, args.app
    );

    let reporter = {
        let progress = progress.clone();
        let worker = worker.clone();
        let every = Duration::from_secs(args.report_seconds.max(1));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                report(&worker, &progress);
            }
        })
    };
    // Runs until Ctrl-C, then hands its leases over.
    scheduler.run().await?;
    reporter.abort();
    report(&worker, &progress);
    let total: u64 = progress.lock().unwrap().values().map(|p| p.records).sum();
    println!("worker={worker} records={total}");
    Ok(())
}

fn report(worker: &str, progress: &Progress) {
    let progress = progress.lock().unwrap().clone();
    for (shard, p) in &progress {
        let lag = p
            .millis_behind_latest
            .map_or("?".into(), |ms| format!("{ms} ms"));
        eprintln!(
            "[{worker}] {shard:<24} {:<10} records {:>10}  behind {lag:>9}  checkpoints {}",
            p.state, p.records, p.checkpoints
        );
    }
}
