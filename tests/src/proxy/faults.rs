//! What the proxy should break: a plain configuration struct, swapped atomically by
//! [`FaultProxy::set_faults`](super::FaultProxy::set_faults).

use std::collections::BTreeSet;
use std::time::Duration;

/// The faults a [`FaultProxy`](super::FaultProxy) injects. `Faults::default()` injects none.
///
/// Every rate is a probability in `0.0..=1.0` drawn independently per request (or per
/// PutRecords entry); values outside the range are clamped.
///
/// A request meets the faults in this order, and the first that answers it wins: block,
/// latency (which only delays), reset before forwarding, whole-request error, GetRecords fault,
/// PutRecords entry failures (all entries failed: answered without forwarding); then the
/// request is forwarded, and may be reset after the server answered.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Re-seeds the proxy's random number generator when these faults are set, so that a
    /// sequence of requests sent one after another meets the same faults on every run. `None`
    /// keeps the generator as it is (seeded from the OS at start).
    pub seed: Option<u64>,
    /// Per-entry failures inside PutRecords requests.
    pub put_records: EntryFailures,
    /// Whole requests answered with an AWS error instead of being forwarded.
    pub errors: RequestErrors,
    /// Delay before forwarding.
    pub latency: Latency,
    /// Connections closed without a response.
    pub resets: Resets,
    /// GetRecords answered with a throttling or expired-iterator error.
    pub get_records: GetRecordsFaults,
    /// Operations that fail or hang until unblocked, as for a worker cut off from a service.
    pub block: Option<Blocked>,
}

/// Which operations a fault applies to, by `X-Amz-Target`.
///
/// A name matches either the whole target (`Kinesis_20131202.PutRecords`) or its operation part
/// (`PutRecords`), so `Targets::only(["UpdateItem"])` means DynamoDB's UpdateItem.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Targets {
    /// Every request.
    #[default]
    All,
    /// Only requests whose target or operation name is in the set.
    Only(BTreeSet<String>),
}

impl Targets {
    /// The given targets or operation names.
    pub fn only<I, S>(names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Targets::Only(names.into_iter().map(Into::into).collect())
    }

    /// Whether a request with this `X-Amz-Target` is covered.
    pub fn matches(&self, target: &str) -> bool {
        match self {
            Targets::All => true,
            Targets::Only(names) => {
                names.contains(target)
                    || target
                        .split_once('.')
                        .is_some_and(|(_, operation)| names.contains(operation))
            }
        }
    }
}

/// Per-entry failures of PutRecords. Failed entries are removed from the request before it is
/// forwarded, so, as with real Kinesis, they are never written.
#[derive(Debug, Clone, Default)]
pub struct EntryFailures {
    /// Probability that each entry fails.
    pub entry_failure_rate: f64,
    /// Share of the failed entries that fail with `InternalFailure`; the rest fail with
    /// `ProvisionedThroughputExceededException`.
    pub internal_failure_share: f64,
}

/// Whole-request error responses, sent without forwarding the request.
#[derive(Debug, Clone)]
pub struct RequestErrors {
    /// The operations affected.
    pub targets: Targets,
    /// Probability that a covered request gets an error.
    pub rate: f64,
    /// The errors to answer with, one chosen uniformly per faulted request (list one twice to
    /// double its weight). Defaults to `[ErrorResponse::InternalError]`.
    pub responses: Vec<ErrorResponse>,
}

impl Default for RequestErrors {
    fn default() -> Self {
        RequestErrors {
            targets: Targets::All,
            rate: 0.0,
            responses: vec![ErrorResponse::InternalError],
        }
    }
}

/// An AWS JSON error response: `{"__type":"<Code>","message":"..."}` with the
/// `x-amzn-ErrorType` header, which is where the SDK takes the error code from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorResponse {
    /// HTTP 500 `InternalFailure` (Kinesis) or `InternalServerError` (DynamoDB), each service's
    /// modelled 500 error.
    InternalError,
    /// HTTP 503 `ServiceUnavailable`.
    ServiceUnavailable,
    /// HTTP 400 `ProvisionedThroughputExceededException`.
    ProvisionedThroughputExceeded,
    /// HTTP 400 `LimitExceededException`.
    LimitExceeded,
    /// HTTP 400 `ThrottlingException`.
    Throttling,
    /// HTTP 400 `ExpiredIteratorException`.
    ExpiredIterator,
    /// Any other status and code.
    Custom {
        /// HTTP status code.
        status: u16,
        /// The error code (`__type`).
        code: String,
        /// The error message.
        message: String,
    },
}

/// A fixed delay plus uniform random jitter before forwarding.
#[derive(Debug, Clone, Default)]
pub struct Latency {
    /// The operations delayed.
    pub targets: Targets,
    /// Delay added to every covered request.
    pub fixed: Duration,
    /// Upper bound of an extra uniformly random delay.
    pub jitter: Duration,
}

/// Connections closed (with a TCP reset) instead of answered.
#[derive(Debug, Clone, Default)]
pub struct Resets {
    /// The operations affected.
    pub targets: Targets,
    /// Probability of closing before forwarding: the request never reaches the server.
    pub before_forwarding: f64,
    /// Probability of closing after the server answered: the request took effect but the client
    /// cannot know (the "timeout that may have succeeded" case).
    pub after_forwarding: f64,
}

/// Faults of GetRecords: errors answered with HTTP 400 without forwarding, and an altered answer.
#[derive(Debug, Clone, Default)]
pub struct GetRecordsFaults {
    /// Probability of `ProvisionedThroughputExceededException`.
    pub throttle_rate: f64,
    /// Probability of `ExpiredIteratorException`.
    pub expired_iterator_rate: f64,
    /// The `MillisBehindLatest` every forwarded GetRecords answer reports instead of the
    /// server's: the local servers say 0 (or nothing) for a stream being read.
    pub millis_behind_latest: Option<i64>,
}

/// Operations cut off from the server.
#[derive(Debug, Clone)]
pub struct Blocked {
    /// The blocked operations.
    pub targets: Targets,
    /// How a blocked request is treated.
    pub mode: Block,
}

impl Blocked {
    /// Blocks `targets` in `mode`.
    pub fn new(targets: Targets, mode: Block) -> Self {
        Blocked { targets, mode }
    }
}

/// How a blocked request is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Block {
    /// Answered at once with [`ErrorResponse::InternalError`].
    Fail,
    /// Held without an answer until the block is lifted (or changed to `Fail`), then answered
    /// with [`ErrorResponse::InternalError`]. A client timeout gives up on it earlier.
    Hang,
}

impl Faults {
    /// No faults (the same as `Faults::default()`).
    pub fn none() -> Self {
        Faults::default()
    }

    /// Whether a request for `target` must be held now.
    pub(crate) fn hangs(&self, target: &str) -> bool {
        self.block
            .as_ref()
            .is_some_and(|b| b.mode == Block::Hang && b.targets.matches(target))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_match_whole_target_or_operation() {
        let cases = [
            (Targets::All, "Kinesis_20131202.PutRecords", true),
            (Targets::All, "", true),
            (
                Targets::only(["PutRecords"]),
                "Kinesis_20131202.PutRecords",
                true,
            ),
            (
                Targets::only(["PutRecords"]),
                "Kinesis_20131202.PutRecord",
                false,
            ),
            (
                Targets::only(["DynamoDB_20120810.UpdateItem"]),
                "DynamoDB_20120810.UpdateItem",
                true,
            ),
            (
                Targets::only(["DynamoDB_20120810.UpdateItem"]),
                "UpdateItem",
                false,
            ),
            (
                Targets::only(["UpdateItem"]),
                "DynamoDB_20120810.UpdateItem",
                true,
            ),
            (
                Targets::only::<[&str; 0], &str>([]),
                "Kinesis_20131202.GetRecords",
                false,
            ),
        ];
        for (targets, target, expected) in cases {
            assert_eq!(targets.matches(target), expected, "{targets:?} vs {target}");
        }
    }
}
