//! `kinesis put`, `kinesis tail` and `kinesis leases`: working with real streams and lease tables.

use std::io::{BufRead, Write};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_kinesis::error::{DisplayErrorContext, ProvideErrorMetadata};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use clap::Args;
use kinesis_aggregation::ShardId;
use kinesis_consumer::lease::{DynamoLeaseStore, LeaseStore};
use kinesis_consumer::retrieval::{PollingConfig, ShardFetcher, StartingPosition};
use kinesis_producer::{Producer, UserRecord};
use serde_json::json;

/// Where the AWS clients point.
#[derive(Args, Clone)]
pub struct Connection {
    /// AWS region (default: the environment or profile).
    #[arg(long, global = true)]
    region: Option<String>,
    /// Kinesis endpoint override, e.g. http://127.0.0.1:4567 for a local server.
    #[arg(long, global = true)]
    endpoint_url: Option<String>,
    /// DynamoDB endpoint override (for `leases`).
    #[arg(long, global = true)]
    dynamodb_endpoint_url: Option<String>,
}

impl Connection {
    async fn config(&self, endpoint: Option<&str>) -> aws_config::SdkConfig {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(endpoint) = endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        if let Some(region) = &self.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        loader.load().await
    }

    async fn kinesis(&self) -> aws_sdk_kinesis::Client {
        aws_sdk_kinesis::Client::new(&self.config(self.endpoint_url.as_deref()).await)
    }

    async fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.config(self.dynamodb_endpoint_url.as_deref()).await)
    }
}

/// A failure worth one clear line.
pub type Failure = Box<dyn std::error::Error>;

/// Turns an SDK error into one readable line: the code and message, or what the connection said.
fn explain<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    what: &str,
    error: aws_sdk_kinesis::error::SdkError<E, R>,
) -> Failure {
    use aws_sdk_kinesis::error::SdkError;
    let text = match &error {
        SdkError::ServiceError(_) => format!(
            "{}: {}",
            error.code().unwrap_or("error"),
            error.message().unwrap_or_default()
        ),
        // The SDK reports a missing credential chain as a dispatch failure.
        SdkError::DispatchFailure(_) if format!("{error:?}").contains("CredentialsNotLoaded") => {
            "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile \
             (AWS_PROFILE), SSO, or run where a role provides them"
                .to_owned()
        }
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
            format!(
                "the server is unreachable ({})",
                DisplayErrorContext(&error)
            )
        }
        _ => DisplayErrorContext(&error).to_string(),
    };
    format!("{what}: {text}").into()
}

/// `kinesis put`.
#[derive(Args)]
pub struct PutArgs {
    /// The stream.
    #[arg(long)]
    stream: String,
    /// Read JSON lines and use this field as the partition key (the whole line is the data).
    #[arg(long, conflicts_with = "random_keys")]
    partition_key_field: Option<String>,
    /// Give each line a random partition key (the default without --partition-key-field).
    #[arg(long)]
    random_keys: bool,
    /// Pack the records into KPL aggregates (read them with `kinesis tail` or any KCL consumer).
    #[arg(long)]
    aggregate: bool,
}

/// Fails with one clear line when the stream is missing, the credentials are refused or the
/// server is unreachable, before any record is taken.
async fn check_stream(client: &aws_sdk_kinesis::Client, stream: &str) -> Result<(), Failure> {
    client
        .describe_stream_summary()
        .stream_name(stream)
        .send()
        .await
        .map(drop)
        .map_err(|e| explain(&format!("stream {stream}"), e))
}

pub async fn put(args: PutArgs, connection: &Connection) -> Result<(), Failure> {
    let client = connection.kinesis().await;
    check_stream(&client, &args.stream).await?;
    let producer = Producer::builder(client, &args.stream)
        .aggregation_enabled(args.aggregate)
        .build()
        .await
        .map_err(|e| format!("{e}"))?;
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(indicatif::ProgressStyle::with_template(
        "{spinner} {pos} records put · {per_sec} · {msg}",
    )?);
    let started = Instant::now();
    let mut handles = Vec::new();
    let stdin = std::io::stdin();
    for (i, line) in stdin.lock().lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let key = match &args.partition_key_field {
            Some(field) => {
                let value: serde_json::Value = serde_json::from_str(&line)
                    .map_err(|e| format!("line {}: not JSON: {e}", i + 1))?;
                match value.get(field) {
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(other) if !other.is_null() => other.to_string(),
                    _ => {
                        return Err(format!(
                            "line {}: no field {field:?} for the partition key",
                            i + 1
                        )
                        .into());
                    }
                }
            }
            None => format!("{:032x}", rand::random::<u128>()),
        };
        let record =
            UserRecord::new(key, line.into_bytes()).map_err(|e| format!("line {}: {e}", i + 1))?;
        handles.push(
            producer
                .put(record)
                .await
                .map_err(|e| format!("line {}: {e}", i + 1))?,
        );
    }
    producer.flush().await?;
    let (mut put, mut failed) = (0u64, 0u64);
    let mut last_error = None;
    for handle in handles {
        match handle.await {
            Ok(_) => {
                put += 1;
                bar.inc(1);
            }
            Err(error) => {
                failed += 1;
                last_error = Some(error.to_string());
            }
        }
    }
    producer.shutdown().await?;
    bar.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64().max(1e-3);
    eprintln!(
        "put {put} records ({failed} failed) in {elapsed:.2} s, {:.0} records/s",
        put as f64 / elapsed
    );
    match last_error {
        Some(error) => Err(format!("{failed} records failed; last error: {error}").into()),
        None => Ok(()),
    }
}

/// `kinesis tail`.
#[derive(Args)]
pub struct TailArgs {
    /// The stream.
    #[arg(long)]
    stream: String,
    /// Where to start: trim-horizon, latest, or at-timestamp (with --timestamp).
    #[arg(long, default_value = "latest", value_parser = ["trim-horizon", "latest", "at-timestamp"])]
    from: String,
    /// For --from at-timestamp: seconds since the Unix epoch.
    #[arg(long)]
    timestamp: Option<f64>,
    /// Only this shard (default: every shard open now, and the children of any that ends).
    #[arg(long)]
    shard: Option<String>,
    /// Print JSON lines (partition_key, data in base64, sequence and sub-sequence numbers, shard)
    /// instead of the data as text.
    #[arg(long)]
    json: bool,
    /// Stop after this many records.
    #[arg(long)]
    max: Option<u64>,
    /// Stop once no record arrived for this many seconds.
    #[arg(long)]
    idle_exit: Option<u64>,
}

pub async fn tail(args: TailArgs, connection: &Connection) -> Result<(), Failure> {
    let client = connection.kinesis().await;
    check_stream(&client, &args.stream).await?;
    let shards = kinesis_consumer::list_shards(&client, &args.stream)
        .await
        .map_err(|e| format!("listing the shards of {}: {e}", args.stream))?;
    let chosen: Vec<ShardId> = match &args.shard {
        Some(shard) => {
            let shard = ShardId::from(shard.as_str());
            if !shards.iter().any(|s| s.shard_id == shard) {
                return Err(format!("stream {} has no shard {shard}", args.stream).into());
            }
            vec![shard]
        }
        None => shards
            .iter()
            .filter(|s| s.open)
            .map(|s| s.shard_id.clone())
            .collect(),
    };
    let start = match args.from.as_str() {
        "trim-horizon" => StartingPosition::TrimHorizon,
        "at-timestamp" => {
            let seconds = args
                .timestamp
                .ok_or("--from at-timestamp needs --timestamp SECONDS")?;
            StartingPosition::AtTimestamp(SystemTime::UNIX_EPOCH + Duration::from_secs_f64(seconds))
        }
        _ => StartingPosition::Latest,
    };
    let stream: Arc<str> = Arc::from(args.stream.as_str());
    let polling = PollingConfig {
        idle_time_between_reads: Duration::from_millis(250),
        ..PollingConfig::default()
    };
    let (sender, mut receiver) = tokio::sync::mpsc::channel(16);
    for shard in chosen {
        let mut fetcher = ShardFetcher::start(
            client.clone(),
            stream.clone(),
            shard.clone(),
            start.clone(),
            // Everything stored, as stored: a stale aggregate a KCL would drop after a reshard
            // (see `deliver_aggregates_outside_shard_range`) is shown too.
            None,
            polling.clone(),
        );
        let sender = sender.clone();
        tokio::spawn(async move {
            while let Some(batch) = fetcher.next().await {
                if sender.send((shard.clone(), batch)).await.is_err() {
                    return;
                }
            }
        });
    }
    drop(sender);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut printed = 0u64;
    let mut last_record = Instant::now();
    loop {
        let wait = args.idle_exit.map_or(Duration::from_secs(3600), |s| {
            Duration::from_secs(s).saturating_sub(last_record.elapsed())
        });
        let next = tokio::select! {
            next = receiver.recv() => next,
            () = tokio::time::sleep(wait) => None,
            _ = tokio::signal::ctrl_c() => None,
        };
        let Some((shard, batch)) = next else { break };
        let batch = batch.map_err(|e| e.to_string())?;
        if !batch.records.is_empty() {
            last_record = Instant::now();
        }
        for record in &batch.records {
            if args.json {
                let line = json!({
                    "shard": shard.as_str(),
                    "partition_key": record.partition_key.as_str(),
                    "data": BASE64.encode(&record.data),
                    "sequence_number": record.sequence_number.as_str(),
                    "sub_sequence_number": record.sub_sequence_number,
                    "aggregated": record.aggregated,
                });
                writeln!(out, "{line}")?;
            } else {
                out.write_all(&record.data)?;
                out.write_all(b"\n")?;
            }
            printed += 1;
            if args.max.is_some_and(|max| printed >= max) {
                out.flush()?;
                return Ok(());
            }
        }
        out.flush()?;
    }
    Ok(())
}

/// `kinesis leases`.
#[derive(Args)]
pub struct LeasesArgs {
    /// The application (its lease table has the same name).
    #[arg(long)]
    app: String,
    /// JSON lines instead of a table.
    #[arg(long)]
    json: bool,
    /// The stream, to show each shard's lag behind its tip (MillisBehindLatest read just after
    /// the checkpoint).
    #[arg(long)]
    stream: Option<String>,
}

/// How far the shard's tip is ahead of `checkpoint`, as Kinesis reports it for a read from there.
async fn lag_after(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    shard: &ShardId,
    checkpoint: &kinesis_consumer::lease::Checkpoint,
) -> Option<i64> {
    use aws_sdk_kinesis::types::ShardIteratorType;
    use kinesis_consumer::lease::Checkpoint;
    let request = client
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(shard.as_str());
    let request = match checkpoint {
        Checkpoint::Sequence {
            sequence_number, ..
        } => request
            .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
            .starting_sequence_number(sequence_number.as_str()),
        Checkpoint::TrimHorizon => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
        _ => return None,
    };
    let iterator = request.send().await.ok()?.shard_iterator?;
    let output = client
        .get_records()
        .shard_iterator(iterator)
        .limit(1)
        .send()
        .await
        .ok()?;
    output.millis_behind_latest()
}

pub async fn leases(args: LeasesArgs, connection: &Connection) -> Result<(), Failure> {
    let dynamodb = connection.dynamodb().await;
    let store = DynamoLeaseStore::new(dynamodb, args.app.clone());
    let kinesis = match &args.stream {
        Some(_) => Some(connection.kinesis().await),
        None => None,
    };
    let listed = store.list().await.map_err(|e| match e {
        kinesis_consumer::lease::LeaseStoreError::TableNotFound { .. } => {
            format!(
                "no lease table {}: has a worker of application {} ever run?",
                args.app, args.app
            )
        }
        other => other.to_string(),
    })?;
    let mut out = std::io::stdout().lock();
    if !args.json {
        writeln!(
            out,
            "{:<28} {:<20} {:>8} {:<6} {:<24} {:>10}  checkpoint",
            "shard", "owner", "counter", "subseq", "parents", "lag ms"
        )?;
    }
    let mut bad = 0;
    for item in listed {
        match item {
            Ok(lease) => {
                let parents: Vec<&str> =
                    lease.parent_shard_ids.iter().map(ShardId::as_str).collect();
                let lag = match (&kinesis, &args.stream) {
                    (Some(client), Some(stream)) => {
                        lag_after(client, stream, &lease.lease_key, &lease.checkpoint).await
                    }
                    _ => None,
                };
                if args.json {
                    let line = json!({
                        "shard": lease.lease_key.as_str(),
                        "owner": lease.lease_owner,
                        "counter": lease.lease_counter,
                        "checkpoint": lease.checkpoint.as_str(),
                        "sub_sequence_number": lease.checkpoint.sub_sequence_number(),
                        "parents": parents,
                        "owner_switches_since_checkpoint": lease.owner_switches_since_checkpoint,
                        "millis_behind_latest": lag,
                    });
                    writeln!(out, "{line}")?;
                } else {
                    writeln!(
                        out,
                        "{:<28} {:<20} {:>8} {:<6} {:<24} {:>10}  {}",
                        lease.lease_key.as_str(),
                        lease.lease_owner.as_deref().unwrap_or("-"),
                        lease.lease_counter,
                        lease.checkpoint.sub_sequence_number(),
                        if parents.is_empty() {
                            "-".to_owned()
                        } else {
                            parents.join(",")
                        },
                        lag.map_or("-".to_owned(), |ms| ms.to_string()),
                        lease.checkpoint.as_str()
                    )?;
                }
            }
            Err(error) => {
                bad += 1;
                eprintln!("kinesis: unreadable lease item: {error}");
            }
        }
    }
    if bad > 0 {
        return Err(format!("{bad} lease item(s) could not be read").into());
    }
    Ok(())
}
