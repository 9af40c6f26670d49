//! Throughput of aggregation and deaggregation in user records per second, on one core.
//!
//! `cargo bench -p kinesis-aggregation --bench rps -- [INPUT] [--records N]`
//!
//! INPUT holds user records as `[u8 key length][key][u32 LE data length][data]`, as
//! `scripts/make_bench_input.py` writes them; without it, the bench makes 1,000,000 records of 100
//! random bytes with 16-character random partition keys. Each phase runs 5 times; the median is
//! reported. The last line is `aggregate_rps=<n> deaggregate_rps=<n>`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use kinesis_aggregation::{
    Aggregator, DeaggregatedRecord, Deaggregator, KinesisRecord, UserRecord,
};
use rand::distr::{Alphanumeric, SampleString};
use rand::{RngExt, SeedableRng};

const RUNS: usize = 5;

fn main() {
    let mut input = None;
    let mut count = 1_000_000usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            // `cargo bench` passes this to every bench binary.
            "--bench" => {}
            "--records" => {
                count = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("--records N")
            }
            path => input = Some(path.to_owned()),
        }
    }
    let records = match &input {
        Some(path) => read_input(path),
        None => generate(count),
    };
    let n = records.len();
    eprintln!(
        "{n} user records, {} data bytes",
        records.iter().map(|r| r.data().len()).sum::<usize>()
    );

    let mut aggregates = Vec::new();
    let aggregate_time = median(|| {
        aggregates = aggregate(&records);
    });
    let deaggregate_time = median(|| {
        assert_eq!(deaggregate(&aggregates), n);
    });
    let bytes: usize = aggregates.iter().map(|a| a.data.len()).sum();
    eprintln!(
        "{} aggregated records, {:.1} user records each, {:.1} MB",
        aggregates.len(),
        n as f64 / aggregates.len() as f64,
        bytes as f64 / 1e6
    );
    let rps = |t: Duration| (n as f64 / t.as_secs_f64()) as u64;
    println!(
        "aggregate: {:.3} s for {n} records ({:.0} MB/s of output)",
        aggregate_time.as_secs_f64(),
        bytes as f64 / aggregate_time.as_secs_f64() / 1e6
    );
    println!(
        "deaggregate: {:.3} s for {n} records ({:.0} MB/s of input)",
        deaggregate_time.as_secs_f64(),
        bytes as f64 / deaggregate_time.as_secs_f64() / 1e6
    );
    println!(
        "aggregate_rps={} deaggregate_rps={}",
        rps(aggregate_time),
        rps(deaggregate_time)
    );
}

fn aggregate(records: &[UserRecord]) -> Vec<KinesisRecord> {
    let mut aggregator = Aggregator::default();
    let mut out = Vec::with_capacity(records.len() / 300 + 1);
    for record in records {
        if aggregator.try_add(record).is_err() {
            out.extend(aggregator.finish());
            aggregator.try_add(record).expect("fits an empty aggregate");
        }
    }
    out.extend(aggregator.finish());
    out
}

/// Materialises every user record (as a consumer would), then drops it; returns how many.
fn deaggregate(aggregates: &[KinesisRecord]) -> usize {
    let mut deaggregator = Deaggregator::new();
    let mut batch: Vec<DeaggregatedRecord> = Vec::new();
    let mut total = 0;
    for record in aggregates {
        deaggregator.deaggregate_into(record, &mut batch);
        total += black_box(&batch).len();
        batch.clear();
    }
    assert_eq!(deaggregator.stats().corrupt, 0);
    total
}

fn median(mut run: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            run();
            start.elapsed()
        })
        .collect();
    times.sort();
    times[RUNS / 2]
}

fn generate(count: usize) -> Vec<UserRecord> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    (0..count)
        .map(|_| {
            let key = Alphanumeric.sample_string(&mut rng, 16);
            let mut data = vec![0u8; 100];
            rng.fill(&mut data[..]);
            UserRecord::new(key, data).expect("valid record")
        })
        .collect()
}

fn read_input(path: &str) -> Vec<UserRecord> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let mut records = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let key_len = bytes[at] as usize;
        let key = std::str::from_utf8(&bytes[at + 1..at + 1 + key_len]).expect("UTF-8 key");
        at += 1 + key_len;
        let data_len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        at += 4;
        records
            .push(UserRecord::new(key, bytes[at..at + data_len].to_vec()).expect("valid record"));
        at += data_len;
    }
    records
}
