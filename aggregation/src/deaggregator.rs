//! Unpacking KPL aggregated records into user records with their sub-sequence numbers.
//!
//! Any input is accepted. A record that is not an aggregate (no magic) is a plain record; one that
//! has the magic but is too short, fails its MD5 check, or does not parse is passed through whole as
//! a plain record too, as the KCL and `aws-kinesis-agg` do, and is reported so callers can count it.

use std::ops::Range;

use bytes::Bytes;
use md5::{Digest, Md5};

use crate::key::HashKey;
use crate::record::KinesisRecord;
use crate::wire::{Reader, WIRE_LEN, WIRE_VARINT, WireError};
use crate::{DIGEST_SIZE, MAGIC};

/// Why a record with the aggregate magic was passed through as a plain record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Corruption {
    /// Too short to hold the magic and an MD5 digest.
    #[error("{len} bytes is too short for an aggregate")]
    TooShort {
        /// The record's size.
        len: usize,
    },
    /// The MD5 trailer does not match the body.
    #[error("MD5 digest does not match the aggregate's body")]
    DigestMismatch,
    /// The body is not a valid `AggregatedRecord`.
    #[error("malformed aggregate: {0}")]
    Malformed(#[from] Malformed),
    /// A well-formed aggregate that holds no user record.
    #[error("aggregate holds no user record")]
    Empty,
}

/// How an `AggregatedRecord` body breaks the format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Malformed {
    /// The protobuf encoding itself is broken.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// Field number 0, which protobuf forbids.
    #[error("field number 0 at byte {offset}")]
    FieldZero {
        /// Where the field starts.
        offset: usize,
    },
    /// A table entry is not UTF-8.
    #[error("{table} table entry {index} is not UTF-8")]
    NotUtf8 {
        /// Which table.
        table: &'static str,
        /// The entry's index.
        index: usize,
    },
    /// A record lacks a required field.
    #[error("record {record} has no {field}")]
    MissingField {
        /// The record's index (its sub-sequence number).
        record: usize,
        /// The missing field's name.
        field: &'static str,
    },
    /// A record refers to a table entry that does not exist.
    #[error("record {record} refers to {table} table entry {index}, but the table has {len}")]
    IndexOutOfRange {
        /// The record's index (its sub-sequence number).
        record: usize,
        /// Which table.
        table: &'static str,
        /// The index found.
        index: u64,
        /// The table's length.
        len: usize,
    },
}

/// Why [`AggregateView::parse`] did not give an aggregate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NotAggregated {
    /// No magic: an ordinary plain record.
    #[error("no aggregate magic: a plain record")]
    NoMagic,
    /// The magic is there but the rest is not a valid aggregate.
    #[error(transparent)]
    Corrupt(#[from] Corruption),
}

/// A parsed aggregate that borrows the record's bytes; its records are read without copying.
///
/// ```
/// use kinesis_aggregation::{AggregateView, Aggregator, UserRecord};
/// let mut aggregator = Aggregator::default();
/// aggregator.try_add(&UserRecord::new("a", &b"1"[..])?)?;
/// aggregator.try_add(&UserRecord::new("b", &b"2"[..])?)?;
/// let blob = aggregator.finish().unwrap().data;
/// let view = AggregateView::parse(&blob)?;
/// let keys: Vec<_> = view.records().map(|r| r.partition_key).collect();
/// assert_eq!(keys, ["a", "b"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct AggregateView<'a> {
    data: &'a [u8],
    partition_keys: Vec<&'a str>,
    explicit_hash_keys: Vec<&'a str>,
    records: Vec<RecordSlot>,
}

/// One record's place in the aggregate: table indexes (checked by `parse_body`) and the data's
/// byte range in the whole record.
#[derive(Debug, Clone)]
struct RecordSlot {
    partition_key_index: u64,
    explicit_hash_key_index: Option<u64>,
    data: Range<usize>,
}

/// One user record of an [`AggregateView`], borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubRecordRef<'a> {
    /// The user record's partition key.
    pub partition_key: &'a str,
    /// The user record's explicit hash key, if it had one.
    pub explicit_hash_key: Option<&'a str>,
    /// The user record's data.
    pub data: &'a [u8],
    /// Its index in the aggregate.
    pub sub_sequence_number: u64,
}

impl SubRecordRef<'_> {
    /// The hash key that routes this record: its explicit hash key, else the MD5 of its partition
    /// key (what a KCL checks against the shard's range); `None` when the explicit hash key is not
    /// a decimal in `0..2^128`.
    pub fn hash_key(&self) -> Option<HashKey> {
        match self.explicit_hash_key {
            Some(key) => key.parse().ok(),
            None => Some(HashKey::of_partition_key(self.partition_key)),
        }
    }
}

impl<'a> AggregateView<'a> {
    /// Checks the magic and the MD5 digest, then parses the whole body, so that a record is either
    /// entirely readable or reported as not an aggregate.
    pub fn parse(data: &'a [u8]) -> Result<Self, NotAggregated> {
        if !data.starts_with(&MAGIC) {
            return Err(NotAggregated::NoMagic);
        }
        if data.len() < MAGIC.len() + DIGEST_SIZE {
            return Err(Corruption::TooShort { len: data.len() }.into());
        }
        let (body, digest) = data[MAGIC.len()..].split_at(data.len() - MAGIC.len() - DIGEST_SIZE);
        if Md5::digest(body)[..] != *digest {
            return Err(Corruption::DigestMismatch.into());
        }
        let view = parse_body(data, body).map_err(Corruption::Malformed)?;
        if view.records.is_empty() {
            return Err(Corruption::Empty.into());
        }
        Ok(view)
    }

    /// How many user records the aggregate holds.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the aggregate holds no user record (never true for a parsed view).
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The user records, in order.
    pub fn records(&self) -> impl ExactSizeIterator<Item = SubRecordRef<'a>> + '_ {
        self.records
            .iter()
            .enumerate()
            .map(|(i, slot)| SubRecordRef {
                partition_key: self.partition_keys[slot.partition_key_index as usize],
                explicit_hash_key: slot
                    .explicit_hash_key_index
                    .map(|index| self.explicit_hash_keys[index as usize]),
                data: &self.data[slot.data.clone()],
                sub_sequence_number: i as u64,
            })
    }
}

const RECORD_FIELD_PARTITION_KEY_INDEX: u64 = 1;
const RECORD_FIELD_EXPLICIT_HASH_KEY_INDEX: u64 = 2;
const RECORD_FIELD_DATA: u64 = 3;
const AGGREGATE_FIELD_PARTITION_KEYS: u64 = 1;
const AGGREGATE_FIELD_EXPLICIT_HASH_KEYS: u64 = 2;
const AGGREGATE_FIELD_RECORDS: u64 = 3;

fn parse_body<'a>(data: &'a [u8], body: &'a [u8]) -> Result<AggregateView<'a>, Malformed> {
    let base = MAGIC.len();
    let mut reader = Reader::new(body, base);
    let mut partition_keys = Vec::new();
    let mut explicit_hash_keys = Vec::new();
    // Indexes are checked once the tables are complete: protobuf allows fields in any order.
    let mut records = Vec::new();
    while !reader.is_empty() {
        let offset = reader.offset();
        let (field, wire_type) = reader.field_key()?;
        match field {
            0 => return Err(Malformed::FieldZero { offset }),
            AGGREGATE_FIELD_PARTITION_KEYS
            | AGGREGATE_FIELD_EXPLICIT_HASH_KEYS
            | AGGREGATE_FIELD_RECORDS => {
                expect_wire_type(field, wire_type, WIRE_LEN, offset)?;
                let range = reader.len_delimited()?;
                let bytes = reader.slice(range.clone());
                match field {
                    AGGREGATE_FIELD_PARTITION_KEYS => {
                        partition_keys.push(utf8(bytes, "partition key", partition_keys.len())?);
                    }
                    AGGREGATE_FIELD_EXPLICIT_HASH_KEYS => {
                        let index = explicit_hash_keys.len();
                        explicit_hash_keys.push(utf8(bytes, "explicit hash key", index)?);
                    }
                    _ => records.push(parse_record(bytes, base + range.start, records.len())?),
                }
            }
            _ => reader.skip(wire_type, offset)?,
        }
    }
    for (record, slot) in records.iter().enumerate() {
        check_index(
            record,
            "partition key",
            slot.partition_key_index,
            partition_keys.len(),
        )?;
        if let Some(index) = slot.explicit_hash_key_index {
            check_index(record, "explicit hash key", index, explicit_hash_keys.len())?;
        }
    }
    Ok(AggregateView {
        data,
        partition_keys,
        explicit_hash_keys,
        records,
    })
}

/// Parses one `Record` message occupying `bytes`, which start at `base` in the whole record.
fn parse_record(bytes: &[u8], base: usize, index: usize) -> Result<RecordSlot, Malformed> {
    let mut reader = Reader::new(bytes, base);
    let mut partition_key_index = None;
    let mut explicit_hash_key_index = None;
    let mut data = None;
    while !reader.is_empty() {
        let offset = reader.offset();
        let (field, wire_type) = reader.field_key()?;
        // A repeated singular field is legal protobuf: the last one wins.
        match field {
            0 => return Err(Malformed::FieldZero { offset }),
            RECORD_FIELD_PARTITION_KEY_INDEX => {
                expect_wire_type(field, wire_type, WIRE_VARINT, offset)?;
                partition_key_index = Some(reader.varint()?);
            }
            RECORD_FIELD_EXPLICIT_HASH_KEY_INDEX => {
                expect_wire_type(field, wire_type, WIRE_VARINT, offset)?;
                explicit_hash_key_index = Some(reader.varint()?);
            }
            RECORD_FIELD_DATA => {
                expect_wire_type(field, wire_type, WIRE_LEN, offset)?;
                let range = reader.len_delimited()?;
                data = Some(base + range.start..base + range.end);
            }
            // Tags (field 4) and unknown fields carry nothing a consumer uses.
            _ => reader.skip(wire_type, offset)?,
        }
    }
    let missing = |field| Malformed::MissingField {
        record: index,
        field,
    };
    Ok(RecordSlot {
        partition_key_index: partition_key_index.ok_or_else(|| missing("partition_key_index"))?,
        explicit_hash_key_index,
        data: data.ok_or_else(|| missing("data"))?,
    })
}

fn expect_wire_type(field: u64, found: u8, expected: u8, offset: usize) -> Result<(), Malformed> {
    if found == expected {
        Ok(())
    } else {
        Err(WireError::WrongWireType {
            field,
            wire_type: found,
            offset,
        }
        .into())
    }
}

fn utf8<'a>(bytes: &'a [u8], table: &'static str, index: usize) -> Result<&'a str, Malformed> {
    std::str::from_utf8(bytes).map_err(|_| Malformed::NotUtf8 { table, index })
}

fn check_index(
    record: usize,
    table: &'static str,
    index: u64,
    len: usize,
) -> Result<(), Malformed> {
    if index < len as u64 {
        Ok(())
    } else {
        Err(Malformed::IndexOutOfRange {
            record,
            table,
            index,
            len,
        })
    }
}

/// UTF-8 text that shares a [`Bytes`] buffer: a key sliced out of an aggregate without copying.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Utf8Bytes(Bytes);

impl Utf8Bytes {
    /// The text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("Utf8Bytes holds only UTF-8 checked on construction")
    }

    /// The text's UTF-8 bytes (without checking them again, as [`Utf8Bytes::as_str`] does).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The text's length in bytes (without checking it again).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the text is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::ops::Deref for Utf8Bytes {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl From<String> for Utf8Bytes {
    fn from(s: String) -> Self {
        Utf8Bytes(Bytes::from(s))
    }
}

impl From<&str> for Utf8Bytes {
    fn from(s: &str) -> Self {
        Utf8Bytes(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl PartialEq<str> for Utf8Bytes {
    fn eq(&self, other: &str) -> bool {
        self.0 == other.as_bytes()
    }
}

impl PartialEq<&str> for Utf8Bytes {
    fn eq(&self, other: &&str) -> bool {
        self.0 == other.as_bytes()
    }
}

impl std::fmt::Debug for Utf8Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::fmt::Display for Utf8Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One user record out of a Kinesis record, owned. Its data shares the Kinesis record's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeaggregatedRecord {
    /// The user record's partition key.
    pub partition_key: Utf8Bytes,
    /// The user record's explicit hash key, if any.
    pub explicit_hash_key: Option<Utf8Bytes>,
    /// The user record's data.
    pub data: Bytes,
    /// Its index in the aggregate; 0 for a plain record.
    pub sub_sequence_number: u64,
    /// Whether it came out of an aggregate.
    pub aggregated: bool,
}

/// What kind of Kinesis record [`deaggregate`] was given.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordFormat {
    /// A valid aggregate of this many user records.
    Aggregated {
        /// How many user records it held.
        user_records: usize,
    },
    /// A plain record (no magic).
    Plain,
    /// The magic was there but the record was not a valid aggregate: passed through as a plain record.
    PassedThrough(Corruption),
}

/// Splits a Kinesis record into its user records, appending them to `out`.
///
/// Never fails: a record that is not a valid aggregate is appended as one plain record, and the
/// returned [`RecordFormat`] says why.
pub fn deaggregate_into(record: &KinesisRecord, out: &mut Vec<DeaggregatedRecord>) -> RecordFormat {
    match AggregateView::parse(&record.data) {
        Ok(view) => {
            out.reserve(view.len());
            // Keys and data stay in the record's buffer: each user record holds slices of it.
            let share = |key: &str| Utf8Bytes(record.data.slice_ref(key.as_bytes()));
            for sub in view.records() {
                out.push(DeaggregatedRecord {
                    partition_key: share(sub.partition_key),
                    explicit_hash_key: sub.explicit_hash_key.map(share),
                    data: record.data.slice_ref(sub.data),
                    sub_sequence_number: sub.sub_sequence_number,
                    aggregated: true,
                });
            }
            RecordFormat::Aggregated {
                user_records: view.len(),
            }
        }
        Err(not_aggregated) => {
            out.push(DeaggregatedRecord {
                partition_key: Utf8Bytes::from(record.partition_key.clone()),
                explicit_hash_key: record.explicit_hash_key.clone().map(Utf8Bytes::from),
                data: record.data.clone(),
                sub_sequence_number: 0,
                aggregated: false,
            });
            match not_aggregated {
                NotAggregated::NoMagic => RecordFormat::Plain,
                NotAggregated::Corrupt(corruption) => RecordFormat::PassedThrough(corruption),
            }
        }
    }
}

/// Splits a Kinesis record into its user records. See [`deaggregate_into`].
///
/// ```
/// use kinesis_aggregation::{KinesisRecord, RecordFormat, deaggregate};
/// let (records, format) = deaggregate(&KinesisRecord::new("key", &b"not an aggregate"[..]));
/// assert_eq!(format, RecordFormat::Plain);
/// assert_eq!(records[0].data, &b"not an aggregate"[..]);
/// ```
pub fn deaggregate(record: &KinesisRecord) -> (Vec<DeaggregatedRecord>, RecordFormat) {
    let mut out = Vec::new();
    let format = deaggregate_into(record, &mut out);
    (out, format)
}

/// Counts of what a [`Deaggregator`] has seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeaggregationStats {
    /// Kinesis records given.
    pub kinesis_records: u64,
    /// Of those, valid aggregates.
    pub aggregates: u64,
    /// Of those, plain records.
    pub plain: u64,
    /// Of those, records with the magic that were not valid aggregates (passed through as plain).
    pub corrupt: u64,
    /// User records produced.
    pub user_records: u64,
}

/// A deaggregator that keeps [`DeaggregationStats`], so passed-through corrupt records are visible.
#[derive(Debug, Clone, Default)]
pub struct Deaggregator {
    stats: DeaggregationStats,
}

impl Deaggregator {
    /// A deaggregator with zeroed counts.
    pub fn new() -> Self {
        Self::default()
    }

    /// Splits `record` into `out` (see [`deaggregate_into`]) and counts it.
    pub fn deaggregate_into(
        &mut self,
        record: &KinesisRecord,
        out: &mut Vec<DeaggregatedRecord>,
    ) -> RecordFormat {
        let format = deaggregate_into(record, out);
        let stats = &mut self.stats;
        stats.kinesis_records += 1;
        match &format {
            RecordFormat::Aggregated { user_records } => {
                stats.aggregates += 1;
                stats.user_records += *user_records as u64;
            }
            RecordFormat::Plain => {
                stats.plain += 1;
                stats.user_records += 1;
            }
            RecordFormat::PassedThrough(_) => {
                stats.corrupt += 1;
                stats.user_records += 1;
            }
        }
        format
    }

    /// What this deaggregator has seen so far.
    pub fn stats(&self) -> DeaggregationStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto;
    use prost::Message;

    fn frame(body: &[u8]) -> Bytes {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(body);
        out.extend_from_slice(&Md5::digest(body));
        out.into()
    }

    fn kinesis(data: Bytes) -> KinesisRecord {
        KinesisRecord {
            partition_key: "outer".into(),
            explicit_hash_key: None,
            data,
        }
    }

    fn sample() -> proto::AggregatedRecord {
        proto::AggregatedRecord {
            partition_key_table: vec!["p0".into(), "p1".into()],
            explicit_hash_key_table: vec!["99".into()],
            records: vec![
                proto::Record {
                    partition_key_index: 1,
                    explicit_hash_key_index: None,
                    data: b"first".to_vec(),
                    tags: vec![proto::Tag {
                        key: "t".into(),
                        value: Some("v".into()),
                    }],
                },
                proto::Record {
                    partition_key_index: 0,
                    explicit_hash_key_index: Some(0),
                    data: b"second".to_vec(),
                    tags: vec![],
                },
            ],
        }
    }

    #[test]
    fn reads_what_prost_writes_including_tags() {
        let data = frame(&sample().encode_to_vec());
        let (records, format) = deaggregate(&kinesis(data));
        assert_eq!(format, RecordFormat::Aggregated { user_records: 2 });
        assert_eq!(&*records[0].partition_key, "p1");
        assert_eq!(records[0].data, &b"first"[..]);
        assert_eq!(records[0].explicit_hash_key, None);
        assert_eq!(records[1].explicit_hash_key.as_deref(), Some("99"));
        assert_eq!(records[1].sub_sequence_number, 1);
        assert!(records.iter().all(|r| r.aggregated));
    }

    #[test]
    fn fields_in_any_order_and_unknown_fields_are_accepted() {
        let canonical = sample().encode_to_vec();
        // Records first, then the tables, plus an unknown varint field 9 and fixed32 field 10.
        let mut body = Vec::new();
        let mut records = Vec::new();
        for r in &sample().records {
            prost::encoding::message::encode(3, r, &mut records);
        }
        body.extend_from_slice(&records);
        body.extend_from_slice(&[0x48, 0x96, 0x01, 0x55, 1, 2, 3, 4]);
        let tables = proto::AggregatedRecord {
            records: vec![],
            ..sample()
        };
        body.extend_from_slice(&tables.encode_to_vec());
        assert_ne!(body, canonical);
        let (reordered, _) = deaggregate(&kinesis(frame(&body)));
        let (expected, _) = deaggregate(&kinesis(frame(&canonical)));
        assert_eq!(reordered, expected);
    }

    #[test]
    fn corrupt_records_pass_through_whole() {
        let good = frame(&sample().encode_to_vec());
        let mut bad_digest = good.to_vec();
        *bad_digest.last_mut().unwrap() ^= 1;
        let mut bad_index = sample();
        bad_index.records[0].partition_key_index = 2;
        let mut bad_ehk_index = sample();
        bad_ehk_index.records[1].explicit_hash_key_index = Some(1);
        let cases: Vec<(Bytes, RecordFormat)> = vec![
            (Bytes::from_static(b""), RecordFormat::Plain),
            (Bytes::from_static(b"\xF3\x89\x9A"), RecordFormat::Plain),
            (
                Bytes::copy_from_slice(&good[..19]),
                RecordFormat::PassedThrough(Corruption::TooShort { len: 19 }),
            ),
            (
                bad_digest.into(),
                RecordFormat::PassedThrough(Corruption::DigestMismatch),
            ),
            (frame(b""), RecordFormat::PassedThrough(Corruption::Empty)),
            (
                frame(&bad_index.encode_to_vec()),
                RecordFormat::PassedThrough(Corruption::Malformed(Malformed::IndexOutOfRange {
                    record: 0,
                    table: "partition key",
                    index: 2,
                    len: 2,
                })),
            ),
            (
                frame(&bad_ehk_index.encode_to_vec()),
                RecordFormat::PassedThrough(Corruption::Malformed(Malformed::IndexOutOfRange {
                    record: 1,
                    table: "explicit hash key",
                    index: 1,
                    len: 1,
                })),
            ),
            // A record message with only data: no partition_key_index.
            (
                frame(&[0x1A, 0x03, 0x1A, 0x01, b'x']),
                RecordFormat::PassedThrough(Corruption::Malformed(Malformed::MissingField {
                    record: 0,
                    field: "partition_key_index",
                })),
            ),
            (
                frame(&[0x0A, 0x02, 0xFF, 0xFE]),
                RecordFormat::PassedThrough(Corruption::Malformed(Malformed::NotUtf8 {
                    table: "partition key",
                    index: 0,
                })),
            ),
            (
                frame(&[0x0A, 0x05, b'a']),
                RecordFormat::PassedThrough(Corruption::Malformed(Malformed::Wire(
                    WireError::Truncated { offset: 7 },
                ))),
            ),
            (
                frame(&[0x2B]),
                RecordFormat::PassedThrough(Corruption::Malformed(Malformed::Wire(
                    WireError::UnsupportedWireType {
                        wire_type: 3,
                        offset: 4,
                    },
                ))),
            ),
            (
                frame(&[0x08, 0x01]),
                RecordFormat::PassedThrough(Corruption::Malformed(Malformed::Wire(
                    WireError::WrongWireType {
                        field: 1,
                        wire_type: 0,
                        offset: 4,
                    },
                ))),
            ),
            (
                frame(&[0x00]),
                RecordFormat::PassedThrough(Corruption::Malformed(Malformed::FieldZero {
                    offset: 4,
                })),
            ),
        ];
        let mut deaggregator = Deaggregator::new();
        for (data, expected) in cases {
            let record = kinesis(data.clone());
            let mut out = Vec::new();
            let format = deaggregator.deaggregate_into(&record, &mut out);
            assert_eq!(format, expected, "{data:?}");
            assert_eq!(out.len(), 1);
            assert_eq!(out[0].data, data);
            assert_eq!(&*out[0].partition_key, "outer");
            assert!(!out[0].aggregated);
        }
        let stats = deaggregator.stats();
        assert_eq!(stats.kinesis_records, 13);
        assert_eq!(stats.plain, 2);
        assert_eq!(stats.corrupt, 11);
        assert_eq!(stats.user_records, 13);
    }
}
