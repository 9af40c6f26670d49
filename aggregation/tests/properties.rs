//! Property tests: aggregation round-trips, exact sizes, canonical bytes, and a deaggregator that
//! never panics.

use bytes::Bytes;
use kinesis_aggregation::proto::{self, AggregatedRecord};
use kinesis_aggregation::{
    AggregateView, Aggregator, DIGEST_SIZE, Full, KinesisRecord, MAGIC, RecordFormat, UserRecord,
    deaggregate,
};
use md5::{Digest, Md5};
use proptest::prelude::*;
use prost::Message;

fn user_record() -> impl Strategy<Value = UserRecord> {
    let partition_key = prop_oneof![
        // Few distinct keys, so the tables de-duplicate.
        "[a-c]{1,2}",
        "\\PC{1,20}",
        "[a-z]{250,256}",
    ];
    let explicit_hash_key = prop_oneof![
        3 => Just(None),
        1 => prop_oneof![Just(0u128), Just(u128::MAX), any::<u128>()].prop_map(Some),
    ];
    let data = prop::collection::vec(any::<u8>(), 0..400);
    (partition_key, explicit_hash_key, data).prop_map(|(pk, ehk, data)| {
        let record = UserRecord::new(pk, data).unwrap();
        match ehk {
            Some(key) => record.with_hash_key(kinesis_aggregation::HashKey(key)),
            None => record,
        }
    })
}

/// Aggregates `records` in order, starting a new aggregate whenever one is full.
/// Returns each emitted Kinesis record with the user records it holds.
fn aggregate_all(
    records: &[UserRecord],
    max_size: usize,
    max_count: u64,
) -> Vec<(KinesisRecord, Vec<UserRecord>)> {
    let mut aggregator = Aggregator::new(max_size, max_count).unwrap();
    let mut out = Vec::new();
    let mut current = Vec::new();
    for record in records {
        if let Err(full) = aggregator.try_add(record) {
            assert!(matches!(full, Full::Size { .. } | Full::Count { .. }));
            out.push((aggregator.finish().unwrap(), std::mem::take(&mut current)));
            aggregator
                .try_add(record)
                .expect("an empty aggregator takes any record");
        }
        current.push(record.clone());
    }
    if let Some(last) = aggregator.finish() {
        out.push((last, current));
    }
    out
}

/// The canonical encoding of `records` by `prost`, tables in first-seen order.
fn reference(records: &[UserRecord]) -> Vec<u8> {
    let mut message = AggregatedRecord::default();
    for r in records {
        let pk = index_of(&mut message.partition_key_table, r.partition_key());
        let ehk = r
            .explicit_hash_key()
            .map(|k| index_of(&mut message.explicit_hash_key_table, k.as_str()));
        message.records.push(proto::Record {
            partition_key_index: pk,
            explicit_hash_key_index: ehk,
            data: r.data().to_vec(),
            tags: vec![],
        });
    }
    frame(&message.encode_to_vec())
}

fn index_of(table: &mut Vec<String>, key: &str) -> u64 {
    let i = table.iter().position(|k| k == key).unwrap_or_else(|| {
        table.push(key.to_owned());
        table.len() - 1
    });
    i as u64
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(body);
    out.extend_from_slice(&Md5::digest(body));
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn aggregate_then_deaggregate_gives_back_every_record_in_order(
        records in prop::collection::vec(user_record(), 1..120),
        max_size in 64usize..6_000,
        max_count in prop_oneof![Just(u64::MAX), 1u64..8],
    ) {
        let emitted = aggregate_all(&records, max_size, max_count);
        let mut round_trip = Vec::new();
        for (kinesis_record, held) in &emitted {
            prop_assert!(held.len() as u64 <= max_count);
            let (user_records, format) = deaggregate(kinesis_record);
            if held.len() == 1 {
                // A lone record goes out as itself, whatever its size.
                prop_assert_eq!(&kinesis_record.data, held[0].data());
                prop_assert_eq!(&kinesis_record.partition_key, held[0].partition_key());
            } else {
                prop_assert!(kinesis_record.data.len() <= max_size,
                    "{} > {}", kinesis_record.data.len(), max_size);
                prop_assert_eq!(&kinesis_record.data[..], &reference(held)[..]);
                prop_assert_eq!(format, RecordFormat::Aggregated { user_records: held.len() });
                // Routed like its first record.
                let first_hash = held[0].hash_key().to_string();
                prop_assert_eq!(kinesis_record.explicit_hash_key.as_deref(), Some(first_hash.as_str()));
                for (i, r) in user_records.iter().enumerate() {
                    prop_assert_eq!(r.sub_sequence_number, i as u64);
                    round_trip.push((
                        r.partition_key.to_string(),
                        r.explicit_hash_key.as_deref().map(str::to_owned),
                        r.data.clone(),
                    ));
                }
                continue;
            }
            let r = held[0].clone();
            round_trip.push((
                r.partition_key().to_owned(),
                r.explicit_hash_key().map(|k| k.to_string()),
                r.data().clone(),
            ));
        }
        let expected: Vec<(String, Option<String>, Bytes)> = records
            .iter()
            .map(|r| (r.partition_key().to_owned(), r.explicit_hash_key().map(|k| k.to_string()), r.data().clone()))
            .collect();
        prop_assert_eq!(round_trip, expected);
    }

    #[test]
    fn the_size_reported_before_finishing_is_the_size_emitted(
        records in prop::collection::vec(user_record(), 1..60),
    ) {
        let mut aggregator = Aggregator::new(1_048_576, u64::MAX).unwrap();
        for r in &records {
            aggregator.try_add(r).unwrap();
        }
        let size = aggregator.encoded_size();
        prop_assert_eq!(aggregator.finish().unwrap().data.len(), size);
    }

    #[test]
    fn deaggregating_arbitrary_bytes_never_panics(data in prop::collection::vec(any::<u8>(), 0..600)) {
        check_total(&data);
        // With the magic and a valid digest, the bytes reach the protobuf parser.
        check_total(&frame(&data));
    }

    #[test]
    fn deaggregating_a_damaged_aggregate_never_panics(
        records in prop::collection::vec(user_record(), 2..20),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let valid = reference(&records);
        // Damage the body and re-seal it, so the parser (not the digest check) meets the damage.
        let mut body = valid[MAGIC.len()..valid.len() - DIGEST_SIZE].to_vec();
        for (at, byte) in flips {
            let i = at.index(body.len());
            body[i] ^= byte;
        }
        let cut = cut.index(body.len() + 1);
        check_total(&frame(&body[..cut]));
        check_total(&frame(&body));
    }
}

/// Whatever `data` is, deaggregation returns records whose total data is accounted for.
fn check_total(data: &[u8]) {
    let record = KinesisRecord::new("outer", Bytes::copy_from_slice(data));
    let (records, format) = deaggregate(&record);
    assert!(!records.is_empty());
    match format {
        RecordFormat::Aggregated { user_records } => {
            assert_eq!(records.len(), user_records);
            assert_eq!(AggregateView::parse(data).unwrap().len(), user_records);
        }
        _ => {
            assert_eq!(records.len(), 1);
            assert_eq!(&records[0].data[..], data);
        }
    }
}
