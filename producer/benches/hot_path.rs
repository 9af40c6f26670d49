//! Criterion benchmarks of the per-record work `put` and the pipeline do before aggregation: the
//! MD5 hash key of a partition key, and the shard-map lookup on a 64-shard stream.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use kinesis_producer::kinesis_aggregation::HashKey;
use kinesis_producer::{ShardId, ShardMap, ShardRange, UserRecord};
use rand::SeedableRng;
use rand::distr::{Alphanumeric, SampleString};

/// `n` equal ranges, as `CreateStream` makes them.
fn even_map(n: u128) -> ShardMap {
    let width = u128::MAX / n;
    let ranges = (0..n)
        .map(|i| ShardRange {
            shard_id: ShardId::from(format!("shardId-{i:012}").as_str()),
            start: HashKey(i * width),
            end: HashKey(if i == n - 1 {
                u128::MAX
            } else {
                (i + 1) * width - 1
            }),
        })
        .collect();
    ShardMap::new(ranges).expect("even ranges form a map")
}

fn keys(count: usize) -> Vec<String> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    (0..count)
        .map(|_| Alphanumeric.sample_string(&mut rng, 16))
        .collect()
}

fn hot_path(c: &mut Criterion) {
    let keys = keys(1024);
    let map = even_map(64);
    let hash_keys: Vec<HashKey> = keys.iter().map(|k| HashKey::of_partition_key(k)).collect();
    let mut group = c.benchmark_group("per_record");
    group.throughput(Throughput::Elements(keys.len() as u64));
    group.bench_function("md5_hash_key_16_chars", |b| {
        b.iter(|| {
            for key in &keys {
                black_box(HashKey::of_partition_key(black_box(key)));
            }
        })
    });
    group.bench_function("shard_map_lookup_64_shards", |b| {
        b.iter(|| {
            for key in &hash_keys {
                black_box(map.shard_for(black_box(*key)));
            }
        })
    });
    group.bench_function("user_record_new_100_bytes", |b| {
        let data = bytes::Bytes::from(vec![7u8; 100]);
        b.iter(|| {
            for key in &keys {
                black_box(UserRecord::new(key.as_str(), data.clone()).expect("valid"));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, hot_path);
criterion_main!(benches);
