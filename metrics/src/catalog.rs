//! What each metric the producer and consumer record means in CloudWatch: whose it is (KPL or
//! KCL), its level, its unit, and for the KCL its operation and published name.
//!
//! The producer and consumer record through the `metrics` facade with the labels `stream`,
//! `shard`, `code` and `worker`; this table turns them into the Java libraries' names and
//! dimensions. A metric not listed here is not published to CloudWatch (Prometheus shows
//! everything).

use crate::config::MetricsLevel;

/// A CloudWatch unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unit {
    /// `Count`.
    Count,
    /// `Bytes`.
    Bytes,
    /// `Milliseconds`.
    Milliseconds,
}

/// Whose metric it is: where it goes, under which names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// The producer's: published under the KPL namespace, at the KPL's granularities.
    Kpl,
    /// The consumer's: published under the application's namespace with an `Operation`.
    Kcl {
        /// The KCL operation it belongs to (the `Operation` dimension).
        operation: &'static str,
        /// Its name in the KCL's metrics.
        name: &'static str,
    },
}

/// One metric's CloudWatch facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Its name as recorded (the producer's and consumer's `metrics` constants).
    pub recorded: &'static str,
    /// Whose it is.
    pub family: Family,
    /// The least level that publishes it.
    pub level: MetricsLevel,
    /// Its unit.
    pub unit: Unit,
}

impl Entry {
    /// Its name in CloudWatch.
    pub fn published_name(&self) -> &'static str {
        match self.family {
            Family::Kpl => self.recorded,
            Family::Kcl { name, .. } => name,
        }
    }
}

const fn kpl(recorded: &'static str, level: MetricsLevel, unit: Unit) -> Entry {
    Entry {
        recorded,
        family: Family::Kpl,
        level,
        unit,
    }
}

const fn kcl(
    recorded: &'static str,
    operation: &'static str,
    name: &'static str,
    level: MetricsLevel,
    unit: Unit,
) -> Entry {
    Entry {
        recorded,
        family: Family::Kcl { operation, name },
        level,
        unit,
    }
}

use MetricsLevel::{Detailed, Summary};
use Unit::{Bytes, Count, Milliseconds};

/// Every published metric. The producer's names are the KPL's own; the consumer's are mapped to
/// the Java KCL's operation and metric names.
pub const ENTRIES: &[Entry] = &[
    // The KPL's metrics, with the levels and units of its documentation.
    kpl("UserRecordsReceived", Detailed, Count),
    kpl("UserRecordsPending", Detailed, Count),
    kpl("UserRecordsPut", Summary, Count),
    kpl("UserRecordsDataPut", Detailed, Bytes),
    kpl("KinesisRecordsPut", Summary, Count),
    kpl("KinesisRecordsDataPut", Detailed, Bytes),
    kpl("ErrorsByCode", Summary, Count),
    kpl("AllErrors", Summary, Count),
    kpl("RetriesPerRecord", Detailed, Count),
    kpl("UserRecordExpired", Summary, Count),
    kpl("BufferingTime", Summary, Milliseconds),
    kpl("RequestTime", Detailed, Milliseconds),
    kpl("UserRecordsPerKinesisRecord", Detailed, Count),
    kpl("KinesisRecordsPerPutRecordsRequest", Detailed, Count),
    kpl("UserRecordsPerPutRecordsRequest", Summary, Count),
    // Ours, beside the KPL's: aggregates re-put after a reshard, and the request circuit.
    kpl("WrongShard", Detailed, Count),
    kpl("RequestCircuitOpened", Summary, Count),
    // The KCL's, by operation.
    kcl(
        "RecordsProcessed",
        "ProcessTask",
        "RecordsProcessed",
        Summary,
        Count,
    ),
    kcl(
        "DataBytesProcessed",
        "ProcessTask",
        "DataBytesProcessed",
        Summary,
        Bytes,
    ),
    kcl(
        "MillisBehindLatest",
        "ProcessTask",
        "MillisBehindLatest",
        Summary,
        Milliseconds,
    ),
    kcl(
        "ProcessTask.Time",
        "ProcessTask",
        "RecordProcessor.processRecords.Time",
        Summary,
        Milliseconds,
    ),
    kcl(
        "ProcessTask.Retries",
        "ProcessTask",
        "RecordProcessor.processRecords.Retries",
        Detailed,
        Count,
    ),
    kcl(
        "RecordsOutsideShardRange",
        "ProcessTask",
        "RecordsOutsideShardRange",
        Summary,
        Count,
    ),
    kcl(
        "CurrentLeases",
        "RenewAllLeases",
        "CurrentLeases",
        Summary,
        Count,
    ),
    kcl("LeasesLost", "RenewAllLeases", "LostLeases", Summary, Count),
    kcl(
        "RenewLease.Success",
        "RenewAllLeases",
        "RenewLease.Success",
        Detailed,
        Count,
    ),
    kcl(
        "RenewLease.Failure",
        "RenewAllLeases",
        "RenewLease.Failure",
        Detailed,
        Count,
    ),
    kcl(
        "TakeLeases.LeasesTaken",
        "TakeLeases",
        "TakenLeases",
        Summary,
        Count,
    ),
    kcl("ShardsGone", "ShardEnd", "ShardsGone", Summary, Count),
];

/// The entry of a recorded metric name.
pub fn lookup(recorded: &str) -> Option<&'static Entry> {
    ENTRIES.iter().find(|e| e.recorded == recorded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_recorded_name_is_listed_once() {
        for (i, entry) in ENTRIES.iter().enumerate() {
            assert!(
                ENTRIES[i + 1..]
                    .iter()
                    .all(|e| e.recorded != entry.recorded),
                "{} twice",
                entry.recorded
            );
        }
        assert_eq!(lookup("UserRecordsPut").unwrap().level, Summary);
        assert_eq!(
            lookup("ProcessTask.Time").unwrap().published_name(),
            "RecordProcessor.processRecords.Time"
        );
        assert!(lookup("NoSuchMetric").is_none());
    }
}
