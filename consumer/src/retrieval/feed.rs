//! What the polling and fan-out readers share: the bounded queue between a reader task and the
//! shard's processor, the SDK client they use, their backoff, and how they judge an error.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use backon::{BackoffBuilder, ExponentialBuilder};
use kinesis_sdk_support::{
    CREDENTIALS_ERROR_CODE, MESSAGE_LIMIT, error_text, is_credentials_error,
};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

use super::polling::{Batch, FetchError};

/// How far a reader may run ahead of its processor: batches queued, and their bytes and records
/// (the Java KCL's prefetch limits). The reader reads again only while what is queued is under
/// the byte and record limits, so one batch may go over them, as in Java.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Limits {
    pub batches: usize,
    pub bytes: usize,
    pub records: usize,
}

/// The receiving end of a reader task's bounded queue. Dropping it stops the task.
#[derive(Debug)]
pub(super) struct Feed {
    /// Each item with its [`size`], counted once when it is queued.
    batches: mpsc::Receiver<(Result<Batch, FetchError>, (usize, usize))>,
    queued: Arc<Queued>,
    task: JoinHandle<()>,
}

/// What is in the queue, and a wake-up for a reader waiting for room.
#[derive(Debug, Default)]
struct Queued {
    bytes: AtomicUsize,
    records: AtomicUsize,
    taken: Notify,
}

/// The sending end, for the reader task.
#[derive(Debug)]
pub(super) struct Sender {
    batches: mpsc::Sender<(Result<Batch, FetchError>, (usize, usize))>,
    queued: Arc<Queued>,
    limits: Limits,
}

/// The bytes (data and partition keys) and user records of a batch.
fn size(item: &Result<Batch, FetchError>) -> (usize, usize) {
    match item {
        Ok(batch) => (
            batch
                .records
                .iter()
                .map(|r| r.data.len() + r.partition_key.len())
                .sum(),
            batch.records.len(),
        ),
        Err(_) => (0, 0),
    }
}

impl Feed {
    /// Spawns the reader `run` makes from the sending end of a queue bounded by `limits`.
    pub(super) fn spawn<F, R>(limits: Limits, run: R) -> Feed
    where
        R: FnOnce(Sender) -> F,
        F: Future<Output = ()> + Send + 'static,
    {
        let (sender, batches) = mpsc::channel(limits.batches.max(1));
        let queued = Arc::new(Queued::default());
        let sender = Sender {
            batches: sender,
            queued: queued.clone(),
            limits,
        };
        Feed {
            batches,
            queued,
            task: tokio::spawn(run(sender)),
        }
    }

    pub(super) async fn next(&mut self) -> Option<Result<Batch, FetchError>> {
        let (item, (bytes, records)) = self.batches.recv().await?;
        self.queued.bytes.fetch_sub(bytes, Ordering::AcqRel);
        self.queued.records.fetch_sub(records, Ordering::AcqRel);
        self.queued.taken.notify_waiters();
        Some(item)
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Sender {
    /// Queues `item`, waiting while `limits.batches` are queued; `Err` when nobody reads any more.
    pub(super) async fn send(&self, item: Result<Batch, FetchError>) -> Result<(), ()> {
        let (bytes, records) = size(&item);
        self.queued.bytes.fetch_add(bytes, Ordering::AcqRel);
        self.queued.records.fetch_add(records, Ordering::AcqRel);
        self.batches
            .send((item, (bytes, records)))
            .await
            .map_err(|_| ())
    }

    pub(super) fn is_closed(&self) -> bool {
        self.batches.is_closed()
    }

    /// Waits until what is queued is under the byte and record limits (or nobody reads any more).
    pub(super) async fn room(&self) {
        loop {
            // Made before the check, so a batch taken in between still wakes it.
            let taken = self.queued.taken.notified();
            if self.queued.bytes.load(Ordering::Acquire) < self.limits.bytes
                && self.queued.records.load(Ordering::Acquire) < self.limits.records
            {
                return;
            }
            tokio::select! {
                () = taken => {}
                () = self.batches.closed() => return,
            }
        }
    }
}

/// The client with the SDK's own retries turned off: the readers retry with their own backoff
/// and know where to resume (a new iterator, a new subscription after the last record).
pub(super) fn without_retries(client: &aws_sdk_kinesis::Client) -> aws_sdk_kinesis::Client {
    aws_sdk_kinesis::Client::from_conf(
        client
            .config()
            .to_builder()
            .retry_config(aws_sdk_kinesis::config::retry::RetryConfig::disabled())
            .build(),
    )
}

/// Jittered exponential backoff from `min` to `max`, without end.
pub(super) fn backoff(min: Duration, max: Duration) -> impl Iterator<Item = Duration> + use<> {
    ExponentialBuilder::new()
        .with_min_delay(min)
        .with_max_delay(max)
        .with_jitter()
        .without_max_times()
        .build()
}

/// The error's code (`CredentialsError` when no credentials could be loaded, `ClientError` when
/// it has none) and its message (the display chain, capped).
pub(super) fn code_and_message<E, R>(error: &SdkError<E, R>) -> (String, String)
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    let code = match error.code() {
        Some(code) => code.to_owned(),
        None if is_credentials_error(error) => CREDENTIALS_ERROR_CODE.to_owned(),
        None => "ClientError".to_owned(),
    };
    let message = error
        .message()
        .map(str::to_owned)
        .unwrap_or_else(|| error_text(error, MESSAGE_LIMIT));
    (code, message)
}

/// Whether retrying may succeed: throttling, an expired iterator, a subscription still held
/// (`ResourceInUse`, also while a previous subscription winds down), server-side failures and
/// network trouble. Anything else (stream not found, access denied, …) is for a person.
pub(super) fn is_transient<E, R>(error: &SdkError<E, R>, code: &str) -> bool {
    match error {
        SdkError::ServiceError(_) => matches!(
            code,
            "ProvisionedThroughputExceededException"
                | "LimitExceededException"
                | "ThrottlingException"
                | "ExpiredIteratorException"
                | "ResourceInUseException"
                | "InternalFailure"
                | "InternalFailureException"
                | "ServiceUnavailable"
                | "KMSThrottlingException"
                | "ExpiredTokenException"
        ),
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        _ => false,
    }
}
