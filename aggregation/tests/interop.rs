//! Interop with the Python `aws-kinesis-agg` package, through fixtures it made
//! (`scripts/gen-agg-fixtures` regenerates them; `--check` verifies them against the package).
//!
//! - `python_aggregated.jsonl`: aggregates made by the package. We must deaggregate them to the
//!   user records, and our aggregator must make the same bytes from the same records.
//! - `rust_aggregated.jsonl`: aggregates made by our `kinesis agg encode`, with what the package
//!   deaggregated from them. Our encoder must still make exactly those bytes, and the package
//!   must have read back exactly the user records.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use kinesis_aggregation::{Aggregator, KinesisRecord, RecordFormat, UserRecord, deaggregate};
use serde_json::Value;

const PYTHON_DEFAULT_MAX_SIZE: usize = 1_048_576;

struct Case {
    name: String,
    max_size: Option<usize>,
    user_records: Vec<UserRecord>,
    kinesis_records: Vec<(KinesisRecord, Option<u64>)>,
    line: Value,
}

fn load(file: &str) -> Vec<Case> {
    let path = format!("{}/tests/fixtures/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let cases: Vec<Case> = text
        .lines()
        .map(|line| {
            let line: Value = serde_json::from_str(line).unwrap();
            Case {
                name: line["case"].as_str().unwrap().to_owned(),
                max_size: line["max_size"].as_u64().map(|n| n as usize),
                user_records: line["user_records"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(user_record)
                    .collect(),
                kinesis_records: line["kinesis_records"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| (kinesis_record(r), r["user_record_count"].as_u64()))
                    .collect(),
                line,
            }
        })
        .collect();
    assert!(cases.len() >= 10, "{path} holds only {} cases", cases.len());
    cases
}

fn data(value: &Value) -> Bytes {
    BASE64.decode(value.as_str().unwrap()).unwrap().into()
}

fn user_record(value: &Value) -> UserRecord {
    let record = UserRecord::new(
        value["partition_key"].as_str().unwrap(),
        data(&value["data"]),
    )
    .unwrap();
    match value["explicit_hash_key"].as_str() {
        Some(key) => record.with_explicit_hash_key(key).unwrap(),
        None => record,
    }
}

fn kinesis_record(value: &Value) -> KinesisRecord {
    KinesisRecord {
        partition_key: value["partition_key"].as_str().unwrap().to_owned(),
        explicit_hash_key: value["explicit_hash_key"].as_str().map(str::to_owned),
        data: data(&value["data"]),
    }
}

type Flat = (String, Option<String>, Bytes);

fn flat(record: &UserRecord) -> Flat {
    (
        record.partition_key().to_owned(),
        record.explicit_hash_key().map(|k| k.to_string()),
        record.data().clone(),
    )
}

/// Aggregates in order, finishing whenever the aggregator is full.
fn aggregate(records: &[UserRecord], max_size: usize) -> Vec<KinesisRecord> {
    let mut aggregator = Aggregator::new(max_size, u64::MAX).unwrap();
    let mut out = Vec::new();
    for record in records {
        if aggregator.try_add(record).is_err() {
            out.extend(aggregator.finish());
            aggregator.try_add(record).unwrap();
        }
    }
    out.extend(aggregator.finish());
    out
}

#[test]
fn we_deaggregate_what_aws_kinesis_agg_aggregates() {
    for case in load("python_aggregated.jsonl") {
        let mut got = Vec::new();
        for (record, count) in &case.kinesis_records {
            let (user_records, format) = deaggregate(record);
            // The package emits every record as an aggregate, even a lone one.
            assert_eq!(
                format,
                RecordFormat::Aggregated {
                    user_records: count.unwrap() as usize
                },
                "{}",
                case.name
            );
            for (i, r) in user_records.iter().enumerate() {
                assert_eq!(r.sub_sequence_number, i as u64);
                got.push((
                    r.partition_key.to_string(),
                    r.explicit_hash_key.as_ref().map(|k| k.to_string()),
                    r.data.clone(),
                ));
            }
        }
        let expected: Vec<Flat> = case.user_records.iter().map(flat).collect();
        assert_eq!(got, expected, "case {}", case.name);
    }
}

#[test]
fn we_aggregate_to_the_same_bytes_as_aws_kinesis_agg() {
    let mut compared_aggregates = 0;
    for case in load("python_aggregated.jsonl") {
        let ours = aggregate(
            &case.user_records,
            case.max_size.unwrap_or(PYTHON_DEFAULT_MAX_SIZE),
        );
        assert_eq!(
            ours.len(),
            case.kinesis_records.len(),
            "case {}: split points",
            case.name
        );
        let mut next = 0;
        for (mine, (theirs, count)) in ours.iter().zip(&case.kinesis_records) {
            let count = count.unwrap() as usize;
            let first = &case.user_records[next];
            assert_eq!(
                mine.partition_key, theirs.partition_key,
                "case {}",
                case.name
            );
            if count == 1 {
                // We send a lone record plain, as the KPL does; the package wraps it.
                assert_eq!(&mine.data, first.data(), "case {}", case.name);
            } else {
                assert_eq!(
                    mine.data, theirs.data,
                    "case {}: aggregate bytes",
                    case.name
                );
                compared_aggregates += 1;
            }
            next += count;
        }
    }
    assert!(
        compared_aggregates >= 20,
        "only {compared_aggregates} aggregates compared"
    );
}

#[test]
fn aws_kinesis_agg_deaggregates_what_we_aggregate() {
    for case in load("rust_aggregated.jsonl") {
        // Our encoder still makes the bytes the package was given.
        let ours = aggregate(
            &case.user_records,
            case.max_size
                .unwrap_or(kinesis_aggregation::DEFAULT_MAX_AGGREGATE_SIZE),
        );
        let committed: Vec<KinesisRecord> = case
            .kinesis_records
            .iter()
            .map(|(r, _)| r.clone())
            .collect();
        assert_eq!(ours, committed, "case {}: our encoding changed", case.name);

        // And the package read back exactly the user records.
        let read_back: Vec<Flat> = case.line["python_deaggregated"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                // aws-kinesis-agg 1.2.3 reports explicit_hash_key_table[0] for a record that has no
                // explicit hash key index; the fixture script marks those.
                let ehk = match r["ehk_defaulted"].as_bool().unwrap() {
                    true => None,
                    false => r["explicit_hash_key"].as_str().map(str::to_owned),
                };
                (
                    r["partition_key"].as_str().unwrap().to_owned(),
                    ehk,
                    data(&r["data"]),
                )
            })
            .collect();
        let expected: Vec<Flat> = case.user_records.iter().map(flat).collect();
        assert_eq!(read_back, expected, "case {}", case.name);
    }
}
