//! What a `put` resolves to: the record's place in the stream with every attempt, or an error that
//! hands the record back.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use kinesis_aggregation::{SequenceNumber, ShardId, UserRecord};

/// How an error from Kinesis is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The shard or account is over its limits: retry after backoff (or fail, with `FailIfThrottled`).
    Throttled,
    /// A fault that may pass: retry after backoff. The record may also have been written
    /// (a timeout or a reset after sending), so a retry can duplicate it: at-least-once.
    Transient,
    /// Retrying cannot help (stream not found, access denied, invalid request): fail now.
    Fatal,
}

/// Classifies a Kinesis error code (a `PutRecords` entry's `ErrorCode`, or a request's error).
pub fn classify(code: &str) -> ErrorClass {
    match code {
        "ProvisionedThroughputExceededException"
        | "ThrottlingException"
        | "Throttling"
        | "LimitExceededException"
        | "RequestLimitExceeded"
        | "TooManyRequestsException"
        | "KMSThrottlingException" => ErrorClass::Throttled,
        "InternalFailure"
        | "InternalFailureException"
        | "InternalServerError"
        | "ServiceUnavailable"
        | "ServiceUnavailableException"
        | "RequestTimeout"
        | "RequestTimeoutException"
        | "ExpiredTokenException"
        | "IDPCommunicationError"
        | "Timeout"
        | "ConnectionError"
        // No credentials could be loaded for the request: the provider may recover (instance
        // metadata refreshing, a rotated file), so the records wait until RecordTtl, as the KPL's.
        | "CredentialsError" => ErrorClass::Transient,
        _ => ErrorClass::Fatal,
    }
}

/// One try at putting a record.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    /// When the attempt's request was sent.
    pub started: SystemTime,
    /// Time from the record's `put` (first attempt) or from the previous attempt's end until this
    /// attempt was sent: buffering, rate limiting and backoff.
    pub delay: Duration,
    /// How long the request took.
    pub duration: Duration,
    /// `None` on success; otherwise the error code and message.
    pub error: Option<AttemptError>,
}

/// Why an attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptError {
    /// The Kinesis error code (`ProvisionedThroughputExceededException`, `InternalFailure`, …),
    /// `Timeout` / `ConnectionError` for failures below HTTP, or `CredentialsError` when no
    /// credentials could be loaded to sign the request.
    pub code: String,
    /// The error message: the error's display chain, at most
    /// [`MESSAGE_LIMIT`](kinesis_sdk_support::MESSAGE_LIMIT) bytes.
    pub message: String,
}

impl Attempt {
    /// Whether the attempt put the record.
    pub fn is_success(&self) -> bool {
        self.error.is_none()
    }
}

/// Where a record landed.
#[derive(Debug, Clone, PartialEq)]
pub struct PutOutcome {
    /// The shard that stored it (after a reshard, possibly a child of the predicted one).
    pub shard_id: ShardId,
    /// The sequence number of the Kinesis record that carried it.
    pub sequence_number: SequenceNumber,
    /// Its index inside that Kinesis record when sent aggregated; `None` when sent on its own.
    pub sub_sequence_number: Option<u64>,
    /// Every attempt, the last one successful (shared by the records that travelled together).
    pub attempts: Arc<[Attempt]>,
}

/// Why a record was not put. Every variant but [`PutError::Aborted`] gives the record back.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum PutError {
    /// Not put within `RecordTtl`.
    #[error("record not put within RecordTtl after {} attempt(s){}", attempts.len(), last_error(attempts))]
    Expired {
        /// The record.
        record: Box<UserRecord>,
        /// Every attempt made (shared by the records that travelled together).
        attempts: Arc<[Attempt]>,
    },
    /// Throttled while `FailIfThrottled` is set.
    #[error("record throttled and FailIfThrottled is set{}", last_error(attempts))]
    Throttled {
        /// The record.
        record: Box<UserRecord>,
        /// Every attempt made (shared by the records that travelled together).
        attempts: Arc<[Attempt]>,
    },
    /// Kinesis refused it with an error retrying cannot fix (stream not found, access denied, …).
    #[error("Kinesis refused the record: {code}: {message}")]
    Rejected {
        /// The record.
        record: Box<UserRecord>,
        /// The error code.
        code: String,
        /// The error message.
        message: String,
        /// Every attempt made (shared by the records that travelled together).
        attempts: Arc<[Attempt]>,
    },
    /// The producer's pipeline stopped before the record resolved: its Tokio runtime shut down
    /// while the record was buffered. The record cannot be given back.
    #[error("the record's fate is unknown: {reason}")]
    Aborted {
        /// What happened.
        reason: String,
    },
}

fn last_error(attempts: &[Attempt]) -> String {
    match attempts.last().and_then(|a| a.error.as_ref()) {
        Some(e) => format!("; last error {}: {}", e.code, e.message),
        None => String::new(),
    }
}

impl PutError {
    /// The record, given back (every variant but [`PutError::Aborted`] has it).
    pub fn record(&self) -> Option<&UserRecord> {
        match self {
            PutError::Expired { record, .. }
            | PutError::Throttled { record, .. }
            | PutError::Rejected { record, .. } => Some(record),
            PutError::Aborted { .. } => None,
        }
    }

    /// Takes the record back.
    pub fn into_record(self) -> Option<UserRecord> {
        match self {
            PutError::Expired { record, .. }
            | PutError::Throttled { record, .. }
            | PutError::Rejected { record, .. } => Some(*record),
            PutError::Aborted { .. } => None,
        }
    }

    /// Every attempt made.
    pub fn attempts(&self) -> &[Attempt] {
        match self {
            PutError::Expired { attempts, .. }
            | PutError::Throttled { attempts, .. }
            | PutError::Rejected { attempts, .. } => attempts,
            PutError::Aborted { .. } => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_classified_as_the_kpl_retries_them() {
        for (code, class) in [
            (
                "ProvisionedThroughputExceededException",
                ErrorClass::Throttled,
            ),
            ("LimitExceededException", ErrorClass::Throttled),
            ("KMSThrottlingException", ErrorClass::Throttled),
            ("InternalFailure", ErrorClass::Transient),
            ("ServiceUnavailable", ErrorClass::Transient),
            ("Timeout", ErrorClass::Transient),
            ("ConnectionError", ErrorClass::Transient),
            ("CredentialsError", ErrorClass::Transient),
            ("ResourceNotFoundException", ErrorClass::Fatal),
            ("AccessDeniedException", ErrorClass::Fatal),
            ("ValidationException", ErrorClass::Fatal),
            ("KMSDisabledException", ErrorClass::Fatal),
        ] {
            assert_eq!(classify(code), class, "{code}");
        }
    }
}
