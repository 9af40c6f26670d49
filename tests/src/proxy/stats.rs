//! Counters a test reads to check that the faults it asked for were injected.

use std::collections::BTreeMap;

/// A kind of injected fault, as counted in [`Stats::faults_by_kind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum FaultKind {
    /// A request delayed by [`Latency`](super::Latency).
    Delayed,
    /// A whole request answered with an error from [`RequestErrors`](super::RequestErrors).
    RequestError,
    /// A GetRecords answered with `ProvisionedThroughputExceededException`.
    GetRecordsThrottled,
    /// A GetRecords answered with `ExpiredIteratorException`.
    ExpiredIterator,
    /// A connection closed before forwarding the request.
    ResetBeforeForwarding,
    /// A connection closed after the server answered.
    ResetAfterForwarding,
    /// A blocked request answered with a failure at once.
    BlockedFailed,
    /// A blocked request held until unblocked (then failed).
    BlockedHeld,
    /// A PutRecords with at least one injected entry failure.
    PartialPutRecords,
    /// A PutRecords whose entries all failed, so it was not forwarded.
    PutRecordsNotForwarded,
    /// A GetRecords answer whose `MillisBehindLatest` was replaced.
    MillisBehindLatestRewritten,
    /// A request the proxy could not forward (server unreachable, or a response it could not
    /// merge), answered with HTTP 502. Not asked for: a sign of trouble.
    UpstreamError,
}

/// Counters since the proxy started (or since [`FaultProxy::reset_stats`](super::FaultProxy::reset_stats)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests received, by `X-Amz-Target` (empty string when absent).
    pub received_by_target: BTreeMap<String, u64>,
    /// Requests forwarded to the server and answered by it, by `X-Amz-Target`.
    pub forwarded_by_target: BTreeMap<String, u64>,
    /// Injected faults, by kind.
    pub faults_by_kind: BTreeMap<FaultKind, u64>,
    /// PutRecords entries failed by the proxy (never written), by error code.
    pub failed_entries_by_code: BTreeMap<String, u64>,
    /// Billed bytes (partition keys plus decoded data) of the PutRecords requests received and
    /// not yet answered.
    pub put_records_bytes_in_flight: u64,
    /// The most [`Stats::put_records_bytes_in_flight`] has been.
    pub peak_put_records_bytes_in_flight: u64,
}

fn sum_matching(counts: &BTreeMap<String, u64>, name: &str) -> u64 {
    counts
        .iter()
        .filter(|(target, _)| {
            target.as_str() == name || target.split_once('.').is_some_and(|(_, op)| op == name)
        })
        .map(|(_, n)| n)
        .sum()
}

impl Stats {
    /// Requests received for a target or operation name (`PutRecords` or
    /// `Kinesis_20131202.PutRecords`).
    pub fn received(&self, name: &str) -> u64 {
        sum_matching(&self.received_by_target, name)
    }

    /// Requests forwarded for a target or operation name.
    pub fn forwarded(&self, name: &str) -> u64 {
        sum_matching(&self.forwarded_by_target, name)
    }

    /// Requests forwarded in all.
    pub fn total_forwarded(&self) -> u64 {
        self.forwarded_by_target.values().sum()
    }

    /// Faults of one kind injected.
    pub fn faults(&self, kind: FaultKind) -> u64 {
        self.faults_by_kind.get(&kind).copied().unwrap_or(0)
    }

    /// PutRecords entries failed by the proxy, all codes.
    pub fn failed_entries(&self) -> u64 {
        self.failed_entries_by_code.values().sum()
    }

    pub(crate) fn count_fault(&mut self, kind: FaultKind) {
        *self.faults_by_kind.entry(kind).or_default() += 1;
    }
}

pub(crate) fn bump(counts: &mut BTreeMap<String, u64>, key: &str) {
    // Look up before inserting so the common case allocates nothing.
    match counts.get_mut(key) {
        Some(n) => *n += 1,
        None => {
            counts.insert(key.to_owned(), 1);
        }
    }
}
