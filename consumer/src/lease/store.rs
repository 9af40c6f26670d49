//! The seam between lease logic and the lease table: [`LeaseStore`], its error type, and the
//! classification of DynamoDB errors.

use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use kinesis_aggregation::ShardId;
use kinesis_sdk_support::{MESSAGE_LIMIT, error_text};

use super::lease::{Checkpoint, Lease, LeaseError};

/// A boxed, `Send` future: what [`LeaseStore`]'s methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The result of a [`LeaseStore`] operation.
pub type Result<T, E = LeaseStoreError> = std::result::Result<T, E>;

/// The outcome of one item of [`LeaseStore::list`]: a lease, or the error that names a bad item.
pub type ListedLease = std::result::Result<Lease, LeaseError>;

/// Why a lease store operation failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum LeaseStoreError {
    /// The conditional write did not apply: the lease exists already (create), changed since
    /// the caller read it, or is held by another worker. An expected outcome of coordination,
    /// never retried as such: the caller re-reads the lease or gives it up.
    #[error(
        "lease {lease_key}: conditional write refused (the lease exists, changed, or has another owner)"
    )]
    ConditionFailed {
        /// The lease written.
        lease_key: ShardId,
    },
    /// The item read (or returned by a write) is not a readable lease.
    #[error(transparent)]
    Malformed(#[from] LeaseError),
    /// Throttling, a 5xx, a timeout or a broken connection, after the SDK's own retries: the
    /// operation may be retried later.
    #[error("{operation} on lease table {table}{}: {} failure: {message}", key_suffix(.lease_key), if *.throttled { "throttling" } else { "transient" })]
    Transient {
        /// The DynamoDB operation (`UpdateItem`, `Scan`, …).
        operation: &'static str,
        /// The table.
        table: String,
        /// The lease concerned, if one.
        lease_key: Option<ShardId>,
        /// Whether DynamoDB throttled the request.
        throttled: bool,
        /// The SDK's description of the failure.
        message: String,
        /// The SDK error.
        #[source]
        source: Arc<dyn StdError + Send + Sync>,
    },
    /// The lease table does not exist (yet).
    #[error("lease table {table} does not exist")]
    TableNotFound {
        /// The table.
        table: String,
    },
    /// The lease table did not become ACTIVE in time after creation.
    #[error("lease table {table} is not ACTIVE after waiting {waited:?}")]
    TableNotActive {
        /// The table.
        table: String,
        /// How long the store waited.
        waited: std::time::Duration,
    },
    /// Anything else (access denied, validation errors, …): retrying will not help.
    #[error("{operation} on lease table {table}{}: {message}", key_suffix(.lease_key))]
    Fatal {
        /// The DynamoDB operation.
        operation: &'static str,
        /// The table.
        table: String,
        /// The lease concerned, if one.
        lease_key: Option<ShardId>,
        /// The SDK's description of the failure.
        message: String,
        /// The SDK error.
        #[source]
        source: Arc<dyn StdError + Send + Sync>,
    },
}

fn key_suffix(lease_key: &Option<ShardId>) -> String {
    lease_key
        .as_ref()
        .map(|key| format!(" (lease {key})"))
        .unwrap_or_default()
}

impl LeaseStoreError {
    /// Whether this is [`LeaseStoreError::ConditionFailed`].
    pub fn is_condition_failed(&self) -> bool {
        matches!(self, LeaseStoreError::ConditionFailed { .. })
    }

    /// Whether retrying the operation later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, LeaseStoreError::Transient { .. })
    }

    /// Classifies an SDK error: the conditional check, throttling, 5xx and network errors, a
    /// missing table, and the rest.
    pub(crate) fn from_sdk<E>(
        operation: &'static str,
        table: &str,
        lease_key: Option<&ShardId>,
        error: SdkError<E>,
    ) -> Self
    where
        E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
    {
        const THROTTLING: &[&str] = &[
            "ProvisionedThroughputExceededException",
            "ThrottlingException",
            "RequestLimitExceeded",
            "LimitExceededException",
        ];
        const TRANSIENT: &[&str] = &[
            "InternalServerError",
            "ServiceUnavailable",
            "TransactionConflictException",
        ];
        let code = error.code().unwrap_or_default().to_owned();
        let status = error.raw_response().map(|r| r.status().as_u16());
        let network = matches!(
            error,
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_)
        );
        if let (Some(lease_key), "ConditionalCheckFailedException") = (lease_key, code.as_str()) {
            return LeaseStoreError::ConditionFailed {
                lease_key: lease_key.clone(),
            };
        }
        if code == "ResourceNotFoundException" {
            return LeaseStoreError::TableNotFound {
                table: table.to_owned(),
            };
        }
        let message = error_text(&error, MESSAGE_LIMIT);
        let throttled = THROTTLING.contains(&code.as_str());
        let source: Arc<dyn StdError + Send + Sync> = Arc::new(error);
        if throttled
            || network
            || TRANSIENT.contains(&code.as_str())
            || status.is_some_and(|s| s >= 500)
        {
            LeaseStoreError::Transient {
                operation,
                table: table.to_owned(),
                lease_key: lease_key.cloned(),
                throttled,
                message,
                source,
            }
        } else {
            LeaseStoreError::Fatal {
                operation,
                table: table.to_owned(),
                lease_key: lease_key.cloned(),
                message,
                source,
            }
        }
    }
}

/// The lease table: every state change is a conditional write keyed on `leaseCounter` (and the
/// owner), so two workers can never both believe they hold a lease, and a worker that lost a
/// lease (a "zombie") can never overwrite the new owner's checkpoint.
///
/// Successful writes return the lease as stored afterwards (with its new counter): the caller
/// keeps it and presents that counter next time. A refused condition is
/// [`LeaseStoreError::ConditionFailed`]. A write whose condition fails because the same write
/// already happened (an SDK retry after a lost response) counts as a success.
///
/// Methods return [`BoxFuture`]s rather than using `async fn`, so the trait is object-safe: a
/// scheduler holds an `Arc<dyn LeaseStore>` and tests swap in [`InMemoryLeaseStore`] without a
/// type parameter spreading through the public API. One allocation per call is nothing next to
/// a DynamoDB round trip.
///
/// [`InMemoryLeaseStore`]: super::InMemoryLeaseStore
///
/// ```
/// use kinesis_consumer::lease::{Checkpoint, InMemoryLeaseStore, Lease, LeaseStore};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let store = InMemoryLeaseStore::new();
/// store.create_table_if_absent().await?;
/// let lease = store
///     .create_if_absent(&Lease::new("shardId-000000000000".into(), Checkpoint::TrimHorizon))
///     .await?;
/// let mine = store.take(&lease, "worker-1").await?;
/// let mine = store.renew(&mine).await?;
/// assert_eq!(mine.lease_counter, 2);
/// // A write with a stale counter is refused.
/// assert!(store.renew(&lease).await.unwrap_err().is_condition_failed());
/// # Ok::<(), kinesis_consumer::lease::LeaseStoreError>(())
/// # }).unwrap();
/// ```
pub trait LeaseStore: Send + Sync {
    /// Creates the table (hash key `leaseKey` S, PAY_PER_REQUEST) unless it exists, and waits
    /// until it is ACTIVE. Returns whether this call created it.
    fn create_table_if_absent(&self) -> BoxFuture<'_, Result<bool>>;

    /// Every lease, read consistently, one result per item: a bad item is reported with its
    /// name and does not hide the others. Items of other entity types (KCL 3.x coordinator
    /// items) are skipped.
    fn list(&self) -> BoxFuture<'_, Result<Vec<ListedLease>>>;

    /// One lease, read consistently; `None` when it does not exist.
    fn get<'a>(&'a self, lease_key: &'a ShardId) -> BoxFuture<'a, Result<Option<Lease>>>;

    /// Writes a new lease unless one with its key exists (`attribute_not_exists(leaseKey)`);
    /// an existing lease is [`LeaseStoreError::ConditionFailed`] and stays as it is.
    fn create_if_absent<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<Lease>>;

    /// Heartbeat: `leaseCounter + 1`, if counter and owner are still the caller's.
    fn renew<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<Lease>>;

    /// Takes the lease for `new_owner` if its counter is still the caller's (whoever owns it):
    /// owner set, counter + 1, `ownerSwitchesSinceCheckpoint` + 1 when it passes from another
    /// owner. Used for expired, unowned and stolen leases alike.
    fn take<'a>(&'a self, lease: &'a Lease, new_owner: &'a str) -> BoxFuture<'a, Result<Lease>>;

    /// Gives the lease up (the Java KCL's `evictLease`): owner removed, counter + 1, if counter
    /// and owner are still the caller's. Another worker may take it at once.
    fn release<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<Lease>>;

    /// Stores a checkpoint, if counter and owner are still the caller's: `checkpoint` and its
    /// sub-sequence number set, the pending checkpoint set to `pending` or removed,
    /// `ownerSwitchesSinceCheckpoint` reset to 0, and counter + 1, as the Java KCL's
    /// `updateLease` does (so a checkpoint also renews the lease).
    fn checkpoint<'a>(
        &'a self,
        lease: &'a Lease,
        checkpoint: &'a Checkpoint,
        pending: Option<&'a Checkpoint>,
    ) -> BoxFuture<'a, Result<Lease>>;

    /// Stores a pending checkpoint (and optional application state) without moving the
    /// checkpoint, if counter and owner are still the caller's; counter + 1.
    fn prepare_checkpoint<'a>(
        &'a self,
        lease: &'a Lease,
        pending: &'a Checkpoint,
        state: Option<&'a [u8]>,
    ) -> BoxFuture<'a, Result<Lease>>;

    /// Records the children of an ended shard. Like the Java KCL, conditional only on the lease
    /// existing and without changing the counter, so it never disturbs the holder.
    fn update_child_shards<'a>(
        &'a self,
        lease_key: &'a ShardId,
        child_shard_ids: &'a [ShardId],
    ) -> BoxFuture<'a, Result<Lease>>;

    /// Deletes the lease if its counter is still the caller's. A lease that no longer exists
    /// counts as deleted.
    fn delete<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<()>>;
}
