//! `latency`: time from a `PutRecord` call to the processor's `process_records` receiving the
//! record, with polling and with enhanced fan-out, against kinesis-mock (the one local server
//! with `SubscribeToShard`). Both modes run at once, each on its own 2-shard stream, with the
//! same trickle of records, so they see the same server load.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kinesis_aggregation::ShardId;
use kinesis_consumer::retrieval::{FanOutConfig, PollingConfig, RetrievalConfig};
use kinesis_consumer::{
    Checkpointer, InitialPosition, InitializationInput, ProcessRecordsInput, ProcessorError,
    RecordProcessor, Scheduler,
};
use kinesis_test_support::{
    DynamoDbServer, KinesisServer, create_stream, dynamodb_client, kinesis_client, unique_name,
};

use crate::Options;
use crate::common;

/// Receive-minus-send times, in milliseconds.
type Samples = Arc<Mutex<Vec<f64>>>;

struct Timer {
    samples: Samples,
}

fn now_micros() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_micros()
}

impl RecordProcessor for Timer {
    async fn initialize(&mut self, _: InitializationInput) {}

    async fn process_records(
        &mut self,
        input: ProcessRecordsInput<'_>,
    ) -> Result<(), ProcessorError> {
        let received = now_micros();
        let mut samples = self.samples.lock().expect("not poisoned");
        for record in &input.records {
            if let Some(sent) = std::str::from_utf8(&record.data)
                .ok()
                .and_then(|text| text.parse::<u128>().ok())
            {
                samples.push(received.saturating_sub(sent) as f64 / 1_000.0);
            }
        }
        Ok(())
    }

    async fn lease_lost(&mut self) {}

    async fn shard_ended(&mut self, checkpointer: &Checkpointer) {
        let _ = checkpointer.checkpoint().await;
    }

    async fn shutdown_requested(&mut self, _: &Checkpointer) {}
}

struct Mode {
    name: &'static str,
    stream: String,
    application: String,
    samples: Samples,
}

pub async fn run(options: &Options) -> Result<(), String> {
    let count = options.records.unwrap_or(300);
    let rate = options.rate.unwrap_or(20);
    let idle = Duration::from_millis(options.idle_ms.unwrap_or(200));
    let kinesis = kinesis_client(KinesisServer::KinesisMock).await;
    let dynamodb = dynamodb_client(DynamoDbServer::Dynalite).await;
    println!(
        "latency: {count} records at {rate}/s into each of two 2-shard kinesis-mock streams, one \
         read by polling (idleTimeBetweenReads {} ms), one by enhanced fan-out; time from the \
         PutRecord call to process_records",
        idle.as_millis()
    );
    let modes: Vec<Mode> = ["polling", "fan-out"]
        .into_iter()
        .map(|name| Mode {
            name,
            stream: unique_name(&format!("bench-latency-{name}")),
            application: unique_name(&format!("bench-latency-{name}-app")),
            samples: Arc::new(Mutex::new(Vec::new())),
        })
        .collect();
    let mut handles = Vec::new();
    for mode in &modes {
        create_stream(&kinesis, &mode.stream, 2).await;
        let retrieval = if mode.name == "polling" {
            RetrievalConfig::Polling(PollingConfig {
                idle_time_between_reads: idle,
                ..PollingConfig::default()
            })
        } else {
            RetrievalConfig::FanOut(FanOutConfig::default())
        };
        let samples = mode.samples.clone();
        let handle = Scheduler::builder(
            kinesis.clone(),
            dynamodb.clone(),
            &mode.stream,
            &mode.application,
        )
        .initial_position(InitialPosition::TrimHorizon)
        .retrieval(retrieval)
        .build(move |_: &ShardId| Timer {
            samples: samples.clone(),
        })
        .await
        .map_err(|e| format!("{}: {e}", mode.name))?
        .spawn();
        handles.push(handle);
    }
    // Let both workers take their leases and start reading before the clock matters.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
    let started = Instant::now();
    for i in 0..count {
        tokio::time::sleep_until((started + interval * i as u32).into()).await;
        for mode in &modes {
            let kinesis = kinesis.clone();
            let stream = mode.stream.clone();
            tokio::spawn(async move {
                let sent = now_micros().to_string();
                let _ = kinesis
                    .put_record()
                    .stream_name(stream)
                    .partition_key(format!("key-{i}"))
                    .data(sent.into_bytes().into())
                    .send()
                    .await;
            });
        }
    }
    for mode in &modes {
        let samples = mode.samples.clone();
        common::wait_until(Duration::from_secs(60), mode.name, || {
            samples.lock().expect("not poisoned").len() >= count
        })
        .await?;
    }
    for handle in handles {
        let _ = handle.shutdown().await;
    }
    let mut last = String::new();
    for mode in &modes {
        let mut samples = mode.samples.lock().expect("not poisoned").clone();
        samples.sort_by(f64::total_cmp);
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        let (p50, p99, max) = (at(0.50), at(0.99), at(1.0));
        println!(
            "  {:<8} records {:>5}  p50 {p50:>7.1} ms  p99 {p99:>7.1} ms  max {max:>7.1} ms",
            mode.name,
            samples.len()
        );
        let key = mode.name.replace('-', "");
        last.push_str(&format!("{key}_p50_ms={p50:.0} {key}_p99_ms={p99:.0} "));
        // A stream with a registered consumer is only deleted with EnforceConsumerDeletion.
        if let Err(e) = kinesis
            .delete_stream()
            .stream_name(&mode.stream)
            .enforce_consumer_deletion(true)
            .send()
            .await
        {
            eprintln!("  (could not delete stream {}: {e})", mode.stream);
        }
        common::delete_table(&dynamodb, &mode.application).await;
    }
    println!("{}", last.trim_end());
    Ok(())
}
