//! Criterion benchmarks of the aggregation hot paths: packing user records, unpacking an aggregate,
//! and the MD5 hash key of a partition key.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kinesis_aggregation::{
    AggregateView, Aggregator, DeaggregatedRecord, Deaggregator, UserRecord, hash_key,
};
use rand::distr::{Alphanumeric, SampleString};
use rand::{RngExt, SeedableRng};
use std::hint::black_box;

fn records(count: usize) -> Vec<UserRecord> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    (0..count)
        .map(|_| {
            let mut data = vec![0u8; 100];
            rng.fill(&mut data[..]);
            UserRecord::new(Alphanumeric.sample_string(&mut rng, 16), data).unwrap()
        })
        .collect()
}

/// One full default-size aggregate and the records in it.
fn full_aggregate() -> (kinesis_aggregation::KinesisRecord, usize) {
    let mut aggregator = Aggregator::default();
    let mut count = 0;
    for record in records(1_000) {
        if aggregator.try_add(&record).is_err() {
            break;
        }
        count += 1;
    }
    (aggregator.finish().unwrap(), count)
}

fn aggregate(c: &mut Criterion) {
    let (_, per_aggregate) = full_aggregate();
    let input = records(per_aggregate);
    let mut group = c.benchmark_group("aggregate");
    group.throughput(Throughput::Elements(input.len() as u64));
    group.bench_function("full 51200-byte aggregate, 100-byte records", |b| {
        let mut aggregator = Aggregator::default();
        b.iter(|| {
            for record in &input {
                aggregator.try_add(record).unwrap();
            }
            black_box(aggregator.finish())
        })
    });
    group.finish();
}

fn deaggregate(c: &mut Criterion) {
    let (aggregate, count) = full_aggregate();
    let mut group = c.benchmark_group("deaggregate");
    group.throughput(Throughput::Elements(count as u64));
    group.bench_function("owned records", |b| {
        let mut deaggregator = Deaggregator::new();
        let mut out: Vec<DeaggregatedRecord> = Vec::with_capacity(count);
        b.iter(|| {
            deaggregator.deaggregate_into(&aggregate, &mut out);
            black_box(&out);
            out.clear();
        })
    });
    group.bench_function("borrowed view", |b| {
        b.iter(|| {
            let view = AggregateView::parse(&aggregate.data).unwrap();
            black_box(view.records().map(|r| r.data.len()).sum::<usize>())
        })
    });
    group.finish();
}

fn hash_keys(c: &mut Criterion) {
    c.bench_function("hash_key of a 16-char partition key", |b| {
        b.iter(|| hash_key(black_box("abcdefghijklmnop")))
    });
    // An aggregate's worth of keys, as the consumer's range rule hashes them.
    let keys: Vec<String> = (0..400)
        .map(|i| format!("{:016x}", i * 0x9E37_79B9_u64))
        .collect();
    let mut group = c.benchmark_group("hash_keys");
    group.throughput(Throughput::Elements(keys.len() as u64));
    group.bench_function("400 16-char partition keys, one by one", |b| {
        b.iter(|| {
            keys.iter()
                .map(|k| hash_key(black_box(k)))
                .fold(0, |a, h| a ^ h)
        })
    });
    let mut out = Vec::with_capacity(keys.len());
    group.bench_function("400 16-char partition keys, in lanes", |b| {
        b.iter(|| {
            out.clear();
            kinesis_aggregation::hash_keys(keys.iter().map(|k| black_box(k.as_bytes())), &mut out);
            out.len()
        })
    });
    group.finish();
}

criterion_group!(benches, aggregate, deaggregate, hash_keys);
criterion_main!(benches);
