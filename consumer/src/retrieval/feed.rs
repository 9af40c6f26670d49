//! What the polling and fan-out readers share: the bounded queue between a reader task and the
//! shard's processor, the SDK client they use, their backoff, and how they judge an error.

use std::time::Duration;

use aws_sdk_kinesis::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::polling::{Batch, FetchError};

/// The receiving end of a reader task's bounded queue. Dropping it stops the task.
#[derive(Debug)]
pub(super) struct Feed {
    batches: mpsc::Receiver<Result<Batch, FetchError>>,
    task: JoinHandle<()>,
}

/// The sending end, for the reader task.
pub(super) type Sender = mpsc::Sender<Result<Batch, FetchError>>;

impl Feed {
    /// Spawns the reader `run` makes from the sending end of a queue of `capacity` batches.
    pub(super) fn spawn<F, R>(capacity: usize, run: R) -> Feed
    where
        R: FnOnce(Sender) -> F,
        F: Future<Output = ()> + Send + 'static,
    {
        let (sender, batches) = mpsc::channel(capacity.max(1));
        Feed {
            batches,
            task: tokio::spawn(run(sender)),
        }
    }

    pub(super) async fn next(&mut self) -> Option<Result<Batch, FetchError>> {
        self.batches.recv().await
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.task.abort();
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

/// The error's code (`ClientError` when it has none) and message.
pub(super) fn code_and_message<E, R>(error: &SdkError<E, R>) -> (String, String)
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let code = error.code().unwrap_or("ClientError").to_owned();
    let message = error
        .message()
        .map(str::to_owned)
        .unwrap_or_else(|| DisplayErrorContext(error).to_string());
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
