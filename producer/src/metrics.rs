//! The KPL's metric names, emitted through the `metrics` crate with `stream` and `shard` labels.
//!
//! Install any `metrics` recorder (Prometheus, CloudWatch, …) to collect them. Per-record metrics
//! are aggregated per Kinesis record or per request before emission, to keep the hot path cheap.

/// Counter: user records given to `put`.
pub const USER_RECORDS_RECEIVED: &str = "UserRecordsReceived";
/// Gauge: user records not yet resolved.
pub const USER_RECORDS_PENDING: &str = "UserRecordsPending";
/// Counter: user records put.
pub const USER_RECORDS_PUT: &str = "UserRecordsPut";
/// Counter: bytes of user-record data put.
pub const USER_RECORDS_DATA_PUT: &str = "UserRecordsDataPut";
/// Counter: Kinesis records (aggregates or single records) put.
pub const KINESIS_RECORDS_PUT: &str = "KinesisRecordsPut";
/// Counter: bytes of Kinesis-record data put.
pub const KINESIS_RECORDS_DATA_PUT: &str = "KinesisRecordsDataPut";
/// Counter: errors, labelled with their `code`.
pub const ERRORS_BY_CODE: &str = "ErrorsByCode";
/// Counter: every error.
pub const ALL_ERRORS: &str = "AllErrors";
/// Histogram: retries a user record needed (attempts - 1), recorded when it resolves.
pub const RETRIES_PER_RECORD: &str = "RetriesPerRecord";
/// Counter: user records that expired (`RecordTtl`).
pub const USER_RECORD_EXPIRED: &str = "UserRecordExpired";
/// Histogram (ms): time from `put` to the first send, per Kinesis record (its oldest user record).
pub const BUFFERING_TIME: &str = "BufferingTime";
/// Histogram (ms): duration of `PutRecords` requests.
pub const REQUEST_TIME: &str = "RequestTime";
/// Histogram: user records per Kinesis record.
pub const USER_RECORDS_PER_KINESIS_RECORD: &str = "UserRecordsPerKinesisRecord";
/// Histogram: Kinesis records per `PutRecords` request.
pub const KINESIS_RECORDS_PER_PUT_RECORDS_REQUEST: &str = "KinesisRecordsPerPutRecordsRequest";
/// Histogram: user records per `PutRecords` request.
pub const USER_RECORDS_PER_PUT_RECORDS_REQUEST: &str = "UserRecordsPerPutRecordsRequest";
/// Counter: user records of aggregates that landed on a shard other than the one predicted (a
/// child, after a split or merge) and were put again, grouped by the refreshed shard map, as the
/// KPL does with its "Wrong Shard" retries. Their first copies stay in the stream, where a KCL
/// drops an aggregate with a member outside its shard's range.
pub const WRONG_SHARD: &str = "WrongShard";
/// Counter: times the request circuit opened after whole `PutRecords` requests kept failing
/// (5xx, request throttling, timeouts, resets): from then on one request at a time goes, about one
/// a second, until one is answered. Not a KPL metric (the KPL has no such circuit).
pub const REQUEST_CIRCUIT_OPENED: &str = "RequestCircuitOpened";
