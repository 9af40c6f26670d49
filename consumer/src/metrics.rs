//! The KCL's metric names, emitted through the `metrics` crate with `stream`, `shard` and
//! `worker` labels where they apply.

/// Gauge (ms): how far the last batch of a shard was behind the tip.
pub const MILLIS_BEHIND_LATEST: &str = "MillisBehindLatest";
/// Counter: user records delivered to processors (deaggregated).
pub const RECORDS_PROCESSED: &str = "RecordsProcessed";
/// Counter: bytes of user-record data delivered.
pub const DATA_BYTES_PROCESSED: &str = "DataBytesProcessed";
/// Histogram (ms): time `process_records` took per batch.
pub const PROCESS_TASK_TIME: &str = "ProcessTask.Time";
/// Counter: batches delivered again after a processor error or panic.
pub const PROCESS_TASK_RETRIES: &str = "ProcessTask.Retries";
/// Gauge: leases this worker holds.
pub const CURRENT_LEASES: &str = "CurrentLeases";
/// Counter: leases taken (expired, unowned or stolen).
pub const LEASES_TAKEN: &str = "TakeLeases.LeasesTaken";
/// Counter: leases lost (taken by another worker, or not renewed for failoverTime).
pub const LEASES_LOST: &str = "LeasesLost";
/// Counter: successful lease renewals.
pub const RENEW_LEASE_SUCCESS: &str = "RenewLease.Success";
/// Counter: failed lease renewals.
pub const RENEW_LEASE_FAILURE: &str = "RenewLease.Failure";
/// Counter: user records not delivered because their aggregate held a record outside the shard's
/// hash-key range (built before a reshard and put again by a KPL-style producer; the Java KCL drops
/// such aggregates too).
pub const RECORDS_OUTSIDE_SHARD_RANGE: &str = "RecordsOutsideShardRange";
/// Counter: leases whose shard was no longer in the stream (past the retention period) and were
/// handled as the shard's end.
pub const SHARDS_GONE: &str = "ShardsGone";
