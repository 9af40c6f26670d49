//! Packing user records into one KPL aggregated record, with exact size accounting.

use std::ops::Range;

use bytes::Bytes;
use foldhash::fast::RandomState;
use hashbrown::HashTable;
use md5::{Digest, Md5};

use crate::key::{HashKey, MAX_RECORD_DATA_SIZE};
use crate::record::{KinesisRecord, UserRecord};
use crate::wire::{
    WIRE_LEN, WIRE_VARINT, key, len_field_size, put_len_field, put_varint, varint_len,
};
use crate::{DIGEST_SIZE, MAGIC};

/// The KPL's default `AggregationMaxSize`: 51,200 bytes.
pub const DEFAULT_MAX_AGGREGATE_SIZE: usize = 51_200;
/// The KPL's default `AggregationMaxCount`: 4,294,967,295 user records.
pub const DEFAULT_MAX_AGGREGATE_COUNT: u64 = u32::MAX as u64;
/// The smallest `AggregationMaxSize` the KPL accepts.
pub const MIN_MAX_AGGREGATE_SIZE: usize = 64;

const PARTITION_KEY_TABLE: u8 = key(1, WIRE_LEN);
const EXPLICIT_HASH_KEY_TABLE: u8 = key(2, WIRE_LEN);
const RECORDS: u8 = key(3, WIRE_LEN);
const RECORD_PARTITION_KEY_INDEX: u8 = key(1, WIRE_VARINT);
const RECORD_EXPLICIT_HASH_KEY_INDEX: u8 = key(2, WIRE_VARINT);
const RECORD_DATA: u8 = key(3, WIRE_LEN);

/// Bytes every aggregate spends outside its protobuf body: the magic and the MD5 digest.
pub const AGGREGATE_OVERHEAD: usize = MAGIC.len() + DIGEST_SIZE;

/// An aggregator limit that is out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LimitError {
    /// `AggregationMaxSize` must lie in 64..=1,048,576.
    #[error("AggregationMaxSize {0} is outside 64..=1048576")]
    MaxSize(usize),
    /// `AggregationMaxCount` must be at least 1.
    #[error("AggregationMaxCount must be at least 1")]
    MaxCount,
}

/// Why [`Aggregator::try_add`] refused a record: the aggregate is full, finish it first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Full {
    /// With this record the aggregate would exceed `AggregationMaxSize`.
    #[error("the aggregate would grow to {would_be} bytes, over its limit of {limit}")]
    Size {
        /// The encoded size with the record added.
        would_be: usize,
        /// `AggregationMaxSize`.
        limit: usize,
    },
    /// The aggregate already holds `AggregationMaxCount` records.
    #[error("the aggregate already holds its limit of {limit} records")]
    Count {
        /// `AggregationMaxCount`.
        limit: u64,
    },
}

/// Packs user records into one aggregated Kinesis record.
///
/// The protobuf body is written as records arrive (one buffer per table and one for the records),
/// so the size is known exactly at every step and finishing costs one MD5 pass and one copy.
/// The output is byte-identical to what protobuf's canonical serialisation of the same
/// `AggregatedRecord` gives, as the KPL and `aws-kinesis-agg` write it.
///
/// A record is refused with [`Full`] when adding it would take the encoded aggregate (magic, body and
/// MD5) over the size limit, or past the count limit; the first record is always accepted, because
/// an aggregate of one record is emitted as that plain record.
///
/// ```
/// use kinesis_aggregation::{Aggregator, UserRecord, deaggregate};
///
/// let mut aggregator = Aggregator::default();
/// for i in 0..3 {
///     aggregator.try_add(&UserRecord::new(format!("key-{i}"), vec![i; 10])?)?;
/// }
/// let size = aggregator.encoded_size();
/// let aggregate = aggregator.finish().expect("three records");
/// assert_eq!(aggregate.data.len(), size);
/// let (records, _) = deaggregate(&aggregate);
/// assert_eq!(records.len(), 3);
/// assert_eq!(&*records[2].partition_key, "key-2");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Aggregator {
    max_size: usize,
    max_count: u64,
    partition_keys: KeyTable,
    explicit_hash_keys: KeyTable,
    records: Vec<u8>,
    count: u64,
    first: Option<FirstRecord>,
}

/// Where the first record's parts sit, to emit it plain when it stays alone.
#[derive(Debug, Clone)]
struct FirstRecord {
    data: Range<usize>,
    has_explicit_hash_key: bool,
}

impl Default for Aggregator {
    fn default() -> Self {
        Aggregator::new(DEFAULT_MAX_AGGREGATE_SIZE, DEFAULT_MAX_AGGREGATE_COUNT)
            .expect("default limits are valid")
    }
}

impl Aggregator {
    /// An aggregator whose output never exceeds `max_size` bytes (`AggregationMaxSize`, 64..=1 MiB)
    /// nor `max_count` user records (`AggregationMaxCount`, ≥ 1).
    pub fn new(max_size: usize, max_count: u64) -> Result<Self, LimitError> {
        if !(MIN_MAX_AGGREGATE_SIZE..=MAX_RECORD_DATA_SIZE).contains(&max_size) {
            return Err(LimitError::MaxSize(max_size));
        }
        if max_count == 0 {
            return Err(LimitError::MaxCount);
        }
        Ok(Aggregator {
            max_size,
            max_count,
            partition_keys: KeyTable::new(PARTITION_KEY_TABLE),
            explicit_hash_keys: KeyTable::new(EXPLICIT_HASH_KEY_TABLE),
            records: Vec::with_capacity(max_size.min(DEFAULT_MAX_AGGREGATE_SIZE)),
            count: 0,
            first: None,
        })
    }

    /// `AggregationMaxSize`.
    pub fn max_size(&self) -> usize {
        self.max_size
    }

    /// How many user records the aggregate holds.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// Whether the aggregate holds no record.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes allocated by the aggregator's buffers (records and key tables, not the index over
    /// the keys). [`Aggregator::clear`] and finishing keep them for the next aggregate; a caller
    /// that keeps an aggregator per shard can compare this with what it wants to keep.
    pub fn capacity(&self) -> usize {
        self.records.capacity()
            + self.partition_keys.encoded.capacity()
            + self.explicit_hash_keys.encoded.capacity()
    }

    /// The size in bytes of the data [`Aggregator::finish`] would return now: the record's own data
    /// for a single record, the encoded aggregate (magic, body, MD5) for more, 0 when empty.
    pub fn encoded_size(&self) -> usize {
        match (self.count, &self.first) {
            (1, Some(first)) => first.data.len(),
            (0, _) => 0,
            _ => self.aggregated_size(),
        }
    }

    fn aggregated_size(&self) -> usize {
        AGGREGATE_OVERHEAD
            + self.partition_keys.encoded.len()
            + self.explicit_hash_keys.encoded.len()
            + self.records.len()
    }

    /// Adds `record`, or refuses it with [`Full`] and leaves the aggregate as it was.
    pub fn try_add(&mut self, record: &UserRecord) -> Result<(), Full> {
        if self.count >= self.max_count {
            return Err(Full::Count {
                limit: self.max_count,
            });
        }
        let partition_key = record.partition_key();
        let explicit_hash_key = record.explicit_hash_key().map(|k| k.as_str());
        let data = record.data();

        let pk = self.partition_keys.find(partition_key);
        let ehk = explicit_hash_key.map(|key| self.explicit_hash_keys.find(key));

        let mut added = 0;
        let pk_index = pk.index.unwrap_or_else(|| {
            added += len_field_size(partition_key.len());
            self.partition_keys.len()
        });
        let mut record_body = 1 + varint_len(pk_index) + len_field_size(data.len());
        let ehk_index = match (&ehk, explicit_hash_key) {
            (Some(found), Some(key)) => {
                let index = found.index.unwrap_or_else(|| {
                    added += len_field_size(key.len());
                    self.explicit_hash_keys.len()
                });
                record_body += 1 + varint_len(index);
                Some(index)
            }
            _ => None,
        };
        added += len_field_size(record_body);

        let would_be = self.aggregated_size() + added;
        if self.count > 0 && would_be > self.max_size {
            return Err(Full::Size {
                would_be,
                limit: self.max_size,
            });
        }

        if pk.index.is_none() {
            self.partition_keys.insert(pk.hash, partition_key);
        }
        if let (Some(found), Some(key)) = (ehk, explicit_hash_key)
            && found.index.is_none()
        {
            self.explicit_hash_keys.insert(found.hash, key);
        }
        self.records.push(RECORDS);
        put_varint(&mut self.records, record_body as u64);
        self.records.push(RECORD_PARTITION_KEY_INDEX);
        put_varint(&mut self.records, pk_index);
        if let Some(index) = ehk_index {
            self.records.push(RECORD_EXPLICIT_HASH_KEY_INDEX);
            put_varint(&mut self.records, index);
        }
        put_len_field(&mut self.records, RECORD_DATA, data);
        if self.count == 0 {
            let end = self.records.len();
            self.first = Some(FirstRecord {
                data: end - data.len()..end,
                has_explicit_hash_key: explicit_hash_key.is_some(),
            });
        }
        self.count += 1;
        debug_assert_eq!(self.aggregated_size(), would_be);
        Ok(())
    }

    /// Emits what the aggregator holds and empties it; `None` when it holds nothing.
    ///
    /// One record comes out as that plain record. Several come out as an aggregate whose partition
    /// key is the first record's, with the first record's hash key as explicit hash key (as the KPL
    /// does), so the aggregate lands on the first record's shard.
    pub fn finish(&mut self) -> Option<KinesisRecord> {
        self.finish_unsealed().map(UnsealedRecord::seal)
    }

    /// [`Aggregator::finish`] but for the MD5 trailer: the aggregate is copied into one buffer of
    /// its exact final size, and the digest, the costlier half, is left to
    /// [`UnsealedRecord::seal`], which another thread can run. The aggregator keeps its buffers'
    /// capacity for the next aggregate.
    ///
    /// ```
    /// use kinesis_aggregation::{Aggregator, UserRecord};
    ///
    /// let mut aggregator = Aggregator::default();
    /// aggregator.try_add(&UserRecord::new("a", &b"one"[..])?)?;
    /// aggregator.try_add(&UserRecord::new("b", &b"two"[..])?)?;
    /// let size = aggregator.encoded_size();
    /// let unsealed = aggregator.finish_unsealed().expect("two records");
    /// assert_eq!(unsealed.billed_size(), 1 + size);
    /// assert_eq!(unsealed.seal().data.len(), size);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn finish_unsealed(&mut self) -> Option<UnsealedRecord> {
        let first = self.first.take()?;
        let partition_key = self.partition_keys.key(0).to_owned();
        let first_explicit_hash_key = first
            .has_explicit_hash_key
            .then(|| self.explicit_hash_keys.key(0).to_owned());
        let record = if self.count == 1 {
            UnsealedRecord {
                partition_key,
                explicit_hash_key: first_explicit_hash_key,
                data: self.records[first.data].to_vec(),
                aggregated: false,
            }
        } else {
            let explicit_hash_key = first_explicit_hash_key
                .unwrap_or_else(|| HashKey::of_partition_key(&partition_key).to_string());
            UnsealedRecord {
                partition_key,
                explicit_hash_key: Some(explicit_hash_key),
                data: self.encode_body(),
                aggregated: true,
            }
        };
        self.clear();
        Some(record)
    }

    /// The magic and the body, in a buffer with room for the digest.
    fn encode_body(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.aggregated_size());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&self.partition_keys.encoded);
        out.extend_from_slice(&self.explicit_hash_keys.encoded);
        out.extend_from_slice(&self.records);
        out
    }

    /// Drops everything the aggregator holds.
    pub fn clear(&mut self) {
        self.partition_keys.clear();
        self.explicit_hash_keys.clear();
        self.records.clear();
        self.count = 0;
        self.first = None;
    }
}

/// A Kinesis record from [`Aggregator::finish_unsealed`]: encoded but for the aggregate's MD5
/// trailer, which [`UnsealedRecord::seal`] appends without moving the data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsealedRecord {
    partition_key: String,
    explicit_hash_key: Option<String>,
    /// A plain record's data, or the magic and the body of an aggregate.
    data: Vec<u8>,
    aggregated: bool,
}

impl UnsealedRecord {
    /// The bytes the sealed record counts against the `PutRecords` request limit and a shard's
    /// write limit: partition key plus data, digest included.
    pub fn billed_size(&self) -> usize {
        let digest = if self.aggregated { DIGEST_SIZE } else { 0 };
        self.partition_key.len() + self.data.len() + digest
    }

    /// The partition key the Kinesis record will carry.
    pub fn partition_key(&self) -> &str {
        &self.partition_key
    }

    /// Appends the MD5 of an aggregate's body (a plain record has none): the Kinesis record.
    pub fn seal(self) -> KinesisRecord {
        let UnsealedRecord {
            partition_key,
            explicit_hash_key,
            mut data,
            aggregated,
        } = self;
        if aggregated {
            let digest = Md5::digest(&data[MAGIC.len()..]);
            data.extend_from_slice(&digest);
        }
        KinesisRecord {
            partition_key,
            explicit_hash_key,
            data: Bytes::from(data),
        }
    }
}

/// A de-duplicated string table, kept as its encoded protobuf fields plus an index over them.
#[derive(Debug, Clone)]
struct KeyTable {
    field_key: u8,
    encoded: Vec<u8>,
    entries: HashTable<TableEntry>,
    order: Vec<Range<u32>>,
    hasher: RandomState,
}

#[derive(Debug, Clone, Copy)]
struct TableEntry {
    hash: u64,
    index: u32,
}

struct Lookup {
    hash: u64,
    index: Option<u64>,
}

impl KeyTable {
    fn new(field_key: u8) -> Self {
        KeyTable {
            field_key,
            encoded: Vec::new(),
            entries: HashTable::new(),
            order: Vec::new(),
            hasher: RandomState::default(),
        }
    }

    fn len(&self) -> u64 {
        self.order.len() as u64
    }

    fn key(&self, index: usize) -> &str {
        let range = self.order[index].clone();
        std::str::from_utf8(&self.encoded[range.start as usize..range.end as usize])
            .expect("table holds only keys copied from &str")
    }

    fn find(&self, key: &str) -> Lookup {
        use std::hash::BuildHasher;
        let hash = self.hasher.hash_one(key.as_bytes());
        let index = self
            .entries
            .find(hash, |entry| {
                let range = &self.order[entry.index as usize];
                &self.encoded[range.start as usize..range.end as usize] == key.as_bytes()
            })
            .map(|entry| u64::from(entry.index));
        Lookup { hash, index }
    }

    fn insert(&mut self, hash: u64, key: &str) {
        put_len_field(&mut self.encoded, self.field_key, key.as_bytes());
        let end = self.encoded.len() as u32;
        let index = self.order.len() as u32;
        self.order.push(end - key.len() as u32..end);
        self.entries
            .insert_unique(hash, TableEntry { hash, index }, |entry| entry.hash);
    }

    fn clear(&mut self) {
        self.encoded.clear();
        self.entries.clear();
        self.order.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto;
    use prost::Message;

    fn record(pk: &str, data: &[u8]) -> UserRecord {
        UserRecord::new(pk, data.to_vec()).unwrap()
    }

    /// The aggregate `prost` encodes for the same records, tables built in first-seen order.
    fn reference_encoding(records: &[UserRecord]) -> Vec<u8> {
        let mut message = proto::AggregatedRecord::default();
        for r in records {
            let pk_index = position_or_push(&mut message.partition_key_table, r.partition_key());
            let ehk_index = r
                .explicit_hash_key()
                .map(|k| position_or_push(&mut message.explicit_hash_key_table, k.as_str()));
            message.records.push(proto::Record {
                partition_key_index: pk_index,
                explicit_hash_key_index: ehk_index,
                data: r.data().to_vec(),
                tags: vec![],
            });
        }
        let body = message.encode_to_vec();
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&body);
        out.extend_from_slice(&Md5::digest(&body));
        out
    }

    fn position_or_push(table: &mut Vec<String>, key: &str) -> u64 {
        match table.iter().position(|k| k == key) {
            Some(i) => i as u64,
            None => {
                table.push(key.to_owned());
                (table.len() - 1) as u64
            }
        }
    }

    #[test]
    fn matches_prost_byte_for_byte() {
        let records = vec![
            record("a", b"one"),
            record("b", b""),
            record("a", &[7; 300]),
            record("c", b"x").with_explicit_hash_key("12345").unwrap(),
            record("d", b"y").with_explicit_hash_key("12345").unwrap(),
            record("€uro", b"z").with_explicit_hash_key("0").unwrap(),
        ];
        let mut aggregator = Aggregator::default();
        for r in &records {
            aggregator.try_add(r).unwrap();
        }
        let expected = reference_encoding(&records);
        assert_eq!(aggregator.encoded_size(), expected.len());
        let out = aggregator.finish().unwrap();
        assert_eq!(out.data, expected);
        assert_eq!(out.partition_key, "a");
        assert_eq!(
            out.explicit_hash_key.as_deref(),
            Some(HashKey::of_partition_key("a").to_string().as_str())
        );
        assert!(aggregator.is_empty());
        assert_eq!(aggregator.finish(), None);
    }

    #[test]
    fn single_record_is_emitted_plain() {
        let mut aggregator = Aggregator::default();
        let r = record("only", b"payload")
            .with_explicit_hash_key("42")
            .unwrap();
        aggregator.try_add(&r).unwrap();
        assert_eq!(aggregator.encoded_size(), 7);
        let out = aggregator.finish().unwrap();
        assert_eq!(
            out,
            KinesisRecord {
                partition_key: "only".into(),
                explicit_hash_key: Some("42".into()),
                data: Bytes::from_static(b"payload"),
            }
        );
    }

    #[test]
    fn refuses_the_record_that_would_cross_the_size_limit_exactly() {
        let limit = 1_000;
        let mut aggregator = Aggregator::new(limit, u64::MAX).unwrap();
        let mut accepted = Vec::new();
        let mut i = 0;
        loop {
            let r = record(&format!("key-{i}"), &[i as u8; 37]);
            match aggregator.try_add(&r) {
                Ok(()) => accepted.push(r),
                Err(Full::Size { would_be, limit: l }) => {
                    assert_eq!(l, limit);
                    assert!(would_be > limit);
                    // Exactly the size the aggregate would have had with the record in it.
                    let mut with = accepted.clone();
                    with.push(r);
                    assert_eq!(would_be, reference_encoding(&with).len());
                    break;
                }
                Err(other) => panic!("{other}"),
            }
            i += 1;
        }
        let out = aggregator.finish().unwrap();
        assert!(out.data.len() <= limit);
        assert_eq!(out.data, reference_encoding(&accepted));
    }

    #[test]
    fn fills_to_the_exact_limit() {
        // Two records with 1-byte keys: body = 2 × (1+1+1) table + 2 × record(1+1+ 2+2 + data).
        let data_len = 20;
        let size = AGGREGATE_OVERHEAD + 2 * 3 + 2 * (2 + 2 + 2 + data_len);
        let mut aggregator = Aggregator::new(size, u64::MAX).unwrap();
        aggregator.try_add(&record("a", &[0; 20])).unwrap();
        aggregator.try_add(&record("b", &[0; 20])).unwrap();
        assert_eq!(aggregator.encoded_size(), size);
        assert!(matches!(
            aggregator.try_add(&record("a", b"")),
            Err(Full::Size { .. })
        ));
        assert_eq!(aggregator.finish().unwrap().data.len(), size);
    }

    #[test]
    fn count_limit_and_refusal_leave_the_aggregate_unchanged() {
        let mut aggregator = Aggregator::new(DEFAULT_MAX_AGGREGATE_SIZE, 2).unwrap();
        aggregator.try_add(&record("a", b"1")).unwrap();
        aggregator.try_add(&record("b", b"2")).unwrap();
        let before = aggregator.encoded_size();
        assert_eq!(
            aggregator.try_add(&record("c", b"3")),
            Err(Full::Count { limit: 2 })
        );
        assert_eq!(aggregator.encoded_size(), before);
        assert_eq!(
            aggregator.finish().unwrap().data,
            reference_encoding(&[record("a", b"1"), record("b", b"2")])
        );
    }

    #[test]
    fn an_oversized_first_record_is_accepted_and_emitted_plain() {
        let mut aggregator = Aggregator::new(64, u64::MAX).unwrap();
        let big = record("k", &[1; 500]);
        aggregator.try_add(&big).unwrap();
        assert!(matches!(
            aggregator.try_add(&record("k", b"")),
            Err(Full::Size { .. })
        ));
        assert_eq!(aggregator.finish().unwrap().data.len(), 500);
    }

    #[test]
    fn an_unsealed_record_seals_to_what_finish_emits() {
        let batches = [
            vec![record("a", b"one")],
            vec![
                record("a", b"one"),
                record("b", &[9; 300]),
                record("c", b"x").with_explicit_hash_key("12345").unwrap(),
            ],
        ];
        for records in batches {
            let mut aggregator = Aggregator::default();
            for r in &records {
                aggregator.try_add(r).unwrap();
            }
            let mut twin = aggregator.clone();
            let unsealed = aggregator.finish_unsealed().unwrap();
            assert!(aggregator.is_empty());
            let expected = twin.finish().unwrap();
            assert_eq!(unsealed.partition_key(), expected.partition_key);
            assert_eq!(unsealed.billed_size(), expected.billed_size());
            assert_eq!(unsealed.seal(), expected);
        }
        assert_eq!(Aggregator::default().finish_unsealed(), None);
    }

    #[test]
    fn limits_are_validated() {
        assert_eq!(Aggregator::new(63, 1).err(), Some(LimitError::MaxSize(63)));
        assert_eq!(
            Aggregator::new(1_048_577, 1).err(),
            Some(LimitError::MaxSize(1_048_577))
        );
        assert_eq!(Aggregator::new(64, 0).err(), Some(LimitError::MaxCount));
        assert!(Aggregator::new(1_048_576, 1).is_ok());
    }

    #[test]
    fn tables_are_reset_between_aggregates() {
        let mut aggregator = Aggregator::default();
        let batch = [record("x", b"1"), record("y", b"2"), record("x", b"3")];
        for r in &batch {
            aggregator.try_add(r).unwrap();
        }
        let first = aggregator.finish().unwrap();
        for r in &batch {
            aggregator.try_add(r).unwrap();
        }
        assert_eq!(aggregator.finish().unwrap(), first);
        assert_eq!(first.data, reference_encoding(&batch));
    }
}
