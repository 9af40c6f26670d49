//! `kinesis agg encode|decode`: JSON lines in, JSON lines out.

use std::fmt;
use std::io::{self, BufRead, Write};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use kinesis_aggregation::{
    Aggregator, DeaggregatedRecord, Deaggregator, KinesisRecord, RecordFormat, UserRecord,
};
use serde::{Deserialize, Serialize};

/// At most this many bad lines are listed; the count of the rest is given.
const MAX_LISTED_PROBLEMS: usize = 20;

/// What went wrong in `agg encode` or `agg decode`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading stdin or writing stdout failed.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    /// The aggregation limits are out of range.
    #[error(transparent)]
    Limits(#[from] kinesis_aggregation::LimitError),
    /// Some input lines are invalid; nothing was written.
    #[error("{0}")]
    BadInput(BadLines),
}

/// The invalid lines of an input, each with its 1-based line number.
#[derive(Debug)]
pub struct BadLines(Vec<(usize, String)>);

impl fmt::Display for BadLines {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} invalid input line(s); nothing was written",
            self.0.len()
        )?;
        for (line, problem) in self.0.iter().take(MAX_LISTED_PROBLEMS) {
            writeln!(f, "  line {line}: {problem}")?;
        }
        if self.0.len() > MAX_LISTED_PROBLEMS {
            writeln!(f, "  … and {} more", self.0.len() - MAX_LISTED_PROBLEMS)?;
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EncodeInput {
    partition_key: String,
    #[serde(default)]
    explicit_hash_key: Option<String>,
    data: String,
}

#[derive(Serialize)]
struct EncodeOutput<'a> {
    partition_key: &'a str,
    explicit_hash_key: Option<&'a str>,
    data: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecodeInput {
    data: String,
    #[serde(default)]
    partition_key: String,
    #[serde(default)]
    sequence_number: Option<String>,
}

#[derive(Serialize)]
struct DecodeOutput<'a> {
    partition_key: &'a str,
    explicit_hash_key: Option<&'a str>,
    data: String,
    sequence_number: Option<&'a str>,
    sub_sequence_number: u64,
    aggregated: bool,
}

/// Counts from `agg encode`.
pub struct EncodeSummary {
    pub user_records: usize,
    pub kinesis_records: usize,
}

/// Counts from `agg decode`.
pub struct DecodeSummary {
    pub kinesis_records: u64,
    pub aggregates: u64,
    pub plain: u64,
    pub corrupt: u64,
    pub user_records: u64,
}

/// Parses every non-blank line with `parse`; all problems are collected before any output.
fn parse_lines<T>(
    input: impl BufRead,
    mut parse: impl FnMut(&str) -> Result<T, String>,
) -> Result<Vec<(usize, T)>, Error> {
    let mut items = Vec::new();
    let mut problems = Vec::new();
    for (i, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        match parse(&line) {
            Ok(item) => items.push((i + 1, item)),
            Err(problem) => problems.push((i + 1, problem)),
        }
    }
    if problems.is_empty() {
        Ok(items)
    } else {
        Err(Error::BadInput(BadLines(problems)))
    }
}

fn decode_base64(field: &str, text: &str) -> Result<Vec<u8>, String> {
    BASE64
        .decode(text)
        .map_err(|e| format!("{field} is not valid base64: {e}"))
}

fn parse_user_record(line: &str) -> Result<UserRecord, String> {
    let input: EncodeInput =
        serde_json::from_str(line).map_err(|e| format!("invalid JSON record: {e}"))?;
    let data = decode_base64("data", &input.data)?;
    let record = UserRecord::new(input.partition_key, data).map_err(|e| e.to_string())?;
    match input.explicit_hash_key {
        Some(key) => record
            .with_explicit_hash_key(&key)
            .map_err(|e| e.to_string()),
        None => Ok(record),
    }
}

/// `agg encode`: user records in, Kinesis records out.
pub fn encode(
    input: impl BufRead,
    mut output: impl Write,
    max_size: usize,
    max_count: u64,
) -> Result<EncodeSummary, Error> {
    let mut aggregator = Aggregator::new(max_size, max_count)?;
    let records = parse_lines(input, parse_user_record)?;
    let mut kinesis_records = 0;
    let mut emit = |record: KinesisRecord, output: &mut dyn Write| -> Result<(), Error> {
        kinesis_records += 1;
        let line = EncodeOutput {
            partition_key: &record.partition_key,
            explicit_hash_key: record.explicit_hash_key.as_deref(),
            data: BASE64.encode(&record.data),
        };
        serde_json::to_writer(&mut *output, &line).map_err(io::Error::from)?;
        output.write_all(b"\n")?;
        Ok(())
    };
    for (_, record) in &records {
        if aggregator.try_add(record).is_err() {
            if let Some(done) = aggregator.finish() {
                emit(done, &mut output)?;
            }
            aggregator
                .try_add(record)
                .expect("an empty aggregator accepts any valid record");
        }
    }
    if let Some(done) = aggregator.finish() {
        emit(done, &mut output)?;
    }
    Ok(EncodeSummary {
        user_records: records.len(),
        kinesis_records,
    })
}

/// `agg decode`: Kinesis records in, user records out; corrupt aggregates are reported on `warnings`.
pub fn decode(
    input: impl BufRead,
    mut output: impl Write,
    warnings: &mut dyn Write,
) -> Result<DecodeSummary, Error> {
    let records = parse_lines(input, |line| {
        let input: DecodeInput =
            serde_json::from_str(line).map_err(|e| format!("invalid JSON record: {e}"))?;
        let data = decode_base64("data", &input.data)?;
        Ok((
            KinesisRecord::new(input.partition_key, data),
            input.sequence_number,
        ))
    })?;
    let mut deaggregator = Deaggregator::new();
    let mut user_records: Vec<DeaggregatedRecord> = Vec::new();
    for (line, (record, sequence_number)) in &records {
        user_records.clear();
        if let RecordFormat::PassedThrough(why) =
            deaggregator.deaggregate_into(record, &mut user_records)
        {
            writeln!(
                warnings,
                "kinesis: line {line}: has the aggregate magic but {why}; written as a plain record"
            )?;
        }
        for user_record in &user_records {
            let line = DecodeOutput {
                partition_key: &user_record.partition_key,
                explicit_hash_key: user_record.explicit_hash_key.as_deref(),
                data: BASE64.encode(&user_record.data),
                sequence_number: sequence_number.as_deref(),
                sub_sequence_number: user_record.sub_sequence_number,
                aggregated: user_record.aggregated,
            };
            serde_json::to_writer(&mut output, &line).map_err(io::Error::from)?;
            output.write_all(b"\n")?;
        }
    }
    let stats = deaggregator.stats();
    Ok(DecodeSummary {
        kinesis_records: stats.kinesis_records,
        aggregates: stats.aggregates,
        plain: stats.plain,
        corrupt: stats.corrupt,
        user_records: stats.user_records,
    })
}
