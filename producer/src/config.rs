//! Producer configuration: the KPL's option names and defaults, plus this producer's own bounds.

use std::time::Duration;

use kinesis_aggregation::{
    DEFAULT_MAX_AGGREGATE_COUNT, DEFAULT_MAX_AGGREGATE_SIZE, MIN_MAX_AGGREGATE_SIZE,
};

/// Most records in one `PutRecords` request (Kinesis limit).
pub const MAX_COLLECTION_COUNT: usize = 500;
/// Most bytes (data plus partition keys) in one `PutRecords` request (Kinesis limit: 5 MiB).
pub const MAX_COLLECTION_SIZE: usize = 5 * 1024 * 1024;

/// A configuration value that is out of range or not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The key is neither a KPL option nor one of this producer's.
    #[error("unknown producer option {key:?}")]
    UnknownKey {
        /// The key.
        key: String,
    },
    /// The value does not parse or is out of range.
    #[error("invalid value {value:?} for {key}: {reason}")]
    InvalidValue {
        /// The key.
        key: String,
        /// The value given.
        value: String,
        /// What is expected.
        reason: String,
    },
    /// A line of a `.properties` file is not `key = value`.
    #[error("line {line} is not `key = value`: {text:?}")]
    MalformedLine {
        /// 1-based line number.
        line: usize,
        /// The line.
        text: String,
    },
}

/// How the producer behaves. Option names follow the KPL's (`AggregationMaxSize`, `RecordTtl`, …);
/// defaults are the KPL's except where this producer adds bounds the KPL lacks (outstanding
/// records and bytes).
///
/// ```
/// use std::time::Duration;
/// use kinesis_producer::ProducerConfig;
///
/// let mut config = ProducerConfig::default()
///     .record_max_buffered_time(Duration::from_millis(50))
///     .rate_limit(100);
/// config.set("RecordTtl", "60000")?;              // from a KPL .properties file or a binding
/// assert_eq!(config.get_record_ttl(), Duration::from_secs(60));
/// # Ok::<(), kinesis_producer::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ProducerConfig {
    pub(crate) aggregation_enabled: bool,
    pub(crate) aggregation_max_count: u64,
    pub(crate) aggregation_max_size: usize,
    pub(crate) collection_max_count: usize,
    pub(crate) collection_max_size: usize,
    pub(crate) record_max_buffered_time: Duration,
    pub(crate) record_ttl: Duration,
    pub(crate) rate_limit: u32,
    pub(crate) fail_if_throttled: bool,
    pub(crate) max_connections: usize,
    pub(crate) max_in_flight_bytes: usize,
    pub(crate) request_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) max_outstanding_records: usize,
    pub(crate) max_outstanding_bytes: usize,
    pub(crate) ordered_per_shard: bool,
    pub(crate) shard_map_refresh_interval: Duration,
    pub(crate) min_backoff: Duration,
    pub(crate) max_backoff: Duration,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            aggregation_enabled: true,
            aggregation_max_count: DEFAULT_MAX_AGGREGATE_COUNT,
            aggregation_max_size: DEFAULT_MAX_AGGREGATE_SIZE,
            collection_max_count: MAX_COLLECTION_COUNT,
            collection_max_size: MAX_COLLECTION_SIZE,
            record_max_buffered_time: Duration::from_millis(100),
            record_ttl: Duration::from_millis(30_000),
            rate_limit: 150,
            fail_if_throttled: false,
            max_connections: 24,
            max_in_flight_bytes: 8 * 1024 * 1024,
            request_timeout: Duration::from_millis(6_000),
            connect_timeout: Duration::from_millis(6_000),
            max_outstanding_records: 100_000,
            max_outstanding_bytes: 256 * 1024 * 1024,
            ordered_per_shard: false,
            shard_map_refresh_interval: Duration::from_secs(60),
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// KPL options that configure things outside this producer (the SDK client, the KPL's native
/// process, CloudWatch): accepted from a `.properties` file and ignored, so KPL files load as
/// they are. Region, endpoints and credentials belong to the AWS SDK client given to the producer.
const IGNORED_KPL_KEYS: &[&str] = &[
    "Region",
    "KinesisEndpoint",
    "KinesisPort",
    "CloudwatchEndpoint",
    "CloudwatchPort",
    "StsEndpoint",
    "StsPort",
    "VerifyCertificate",
    "CredentialsRefreshDelay",
    "EnableCoreDumps",
    "LogLevel",
    "MetricsGranularity",
    "MetricsLevel",
    "MetricsNamespace",
    "MetricsUploadDelay",
    "MinConnections",
    "NativeExecutable",
    "TempDirectory",
    "ThreadingModel",
    "ThreadPoolSize",
    "UserRecordTimeoutInMillis",
    "MaxUserRecordSize",
    "ProxyHost",
    "ProxyPort",
    "ProxyUserName",
    "ProxyPassword",
    "StsRegion",
];

macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident / $getter:ident : $ty:ty;)*) => {
        $(
            $(#[$doc])*
            pub fn $name(mut self, value: $ty) -> Self {
                self.$name = value;
                self
            }

            #[doc = concat!("The value set by [`ProducerConfig::", stringify!($name), "`].")]
            pub fn $getter(&self) -> $ty {
                self.$name
            }
        )*
    };
}

impl ProducerConfig {
    setters! {
        /// `AggregationEnabled` (default true): pack user records into KPL aggregates.
        aggregation_enabled / get_aggregation_enabled: bool;
        /// `AggregationMaxCount` (default 4,294,967,295): most user records per aggregate.
        aggregation_max_count / get_aggregation_max_count: u64;
        /// `AggregationMaxSize` (default 51,200; 64..=1,048,576): largest encoded aggregate in bytes.
        aggregation_max_size / get_aggregation_max_size: usize;
        /// `CollectionMaxCount` (default 500; 1..=500): most Kinesis records per `PutRecords`.
        collection_max_count / get_collection_max_count: usize;
        /// `CollectionMaxSize` (default 5 MiB): most bytes (data plus keys) per `PutRecords`.
        collection_max_size / get_collection_max_size: usize;
        /// `RecordMaxBufferedTime` (default 100 ms): longest a record waits for others to join its
        /// aggregate and request before it is sent.
        record_max_buffered_time / get_record_max_buffered_time: Duration;
        /// `RecordTtl` (default 30 s): a record not put within this time after `put` fails with
        /// [`PutError::Expired`](crate::PutError::Expired).
        record_ttl / get_record_ttl: Duration;
        /// `RateLimit` (default 150): per-shard token buckets allow this percentage of the shard
        /// limits (1,000 records/s, 1 MiB/s).
        rate_limit / get_rate_limit: u32;
        /// `FailIfThrottled` (default false): fail a record at its first throttling instead of retrying.
        fail_if_throttled / get_fail_if_throttled: bool;
        /// `MaxConnections` (default 24): most `PutRecords` requests in flight at once.
        max_connections / get_max_connections: usize;
        /// `MaxInFlightBytes` (default 8 MiB; not a KPL option): most bytes (data plus keys) in
        /// `PutRecords` requests in flight at once; a request still goes when none is in flight.
        /// A byte in flight costs about 2.4 bytes of memory (the copy kept for retries and the
        /// SDK's base64 JSON body) where a queued one costs 1, so this bounds the memory a slow
        /// stream can pin beyond the buffered records. 8 MiB carries ~160 MiB/s at 50 ms per
        /// request (more than one process usually sends: 160 shards at their 1 MiB/s limit);
        /// raise it for more latency or more throughput.
        max_in_flight_bytes / get_max_in_flight_bytes: usize;
        /// `RequestTimeout` (default 6 s): the SDK's per-attempt timeout for `PutRecords`.
        request_timeout / get_request_timeout: Duration;
        /// `ConnectTimeout` (default 6 s): the SDK's connect timeout.
        connect_timeout / get_connect_timeout: Duration;
        /// `MaxOutstandingRecords` (default 100,000): `put` waits while this many user records
        /// are unresolved. Bounds memory; the KPL has no such bound.
        max_outstanding_records / get_max_outstanding_records: usize;
        /// `MaxOutstandingBytes` (default 256 MiB): `put` waits while this many bytes of user
        /// records (data plus keys) are unresolved.
        max_outstanding_bytes / get_max_outstanding_bytes: usize;
        /// `OrderedPerShard` (default false): at most one `PutRecords` in flight per shard, one
        /// Kinesis record per shard per request, and retries before newer records, so records of a
        /// partition key arrive in `put` order even under throttling. Costs throughput.
        ordered_per_shard / get_ordered_per_shard: bool;
        /// `ShardMapRefreshInterval` (default 60 s): how often the shard map is listed again, besides
        /// on a put that lands on an unexpected shard.
        shard_map_refresh_interval / get_shard_map_refresh_interval: Duration;
        /// `MinBackoff` (default 100 ms): the first retry delay; doubled per attempt, with jitter.
        min_backoff / get_min_backoff: Duration;
        /// `MaxBackoff` (default 5 s): the longest retry delay.
        max_backoff / get_max_backoff: Duration;
    }

    /// Sets an option from its KPL name and a string value (durations in milliseconds, as the KPL
    /// takes them). KPL options that configure things outside this producer are accepted and
    /// ignored; unknown keys are refused.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let value = value.trim();
        let invalid = |reason: &str| ConfigError::InvalidValue {
            key: key.to_owned(),
            value: value.to_owned(),
            reason: reason.to_owned(),
        };
        let boolean = || match value.to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(invalid("expected true or false")),
        };
        let number = |min: u64, max: u64| {
            value
                .parse::<u64>()
                .ok()
                .filter(|n| (min..=max).contains(n))
                .ok_or_else(|| invalid(&format!("expected an integer in {min}..={max}")))
        };
        let millis = |min: u64, max: u64| number(min, max).map(Duration::from_millis);
        match key {
            "AggregationEnabled" => self.aggregation_enabled = boolean()?,
            "AggregationMaxCount" => self.aggregation_max_count = number(1, u64::MAX)?,
            "AggregationMaxSize" => {
                self.aggregation_max_size =
                    number(MIN_MAX_AGGREGATE_SIZE as u64, 1_048_576)? as usize
            }
            "CollectionMaxCount" => {
                self.collection_max_count = number(1, MAX_COLLECTION_COUNT as u64)? as usize
            }
            "CollectionMaxSize" => {
                self.collection_max_size = number(52_224, MAX_COLLECTION_SIZE as u64)? as usize
            }
            "RecordMaxBufferedTime" => self.record_max_buffered_time = millis(0, 3_600_000)?,
            "RecordTtl" => self.record_ttl = millis(100, u32::MAX as u64)?,
            "RateLimit" => self.rate_limit = number(1, 10_000)? as u32,
            "FailIfThrottled" => self.fail_if_throttled = boolean()?,
            "MaxConnections" => self.max_connections = number(1, 256)? as usize,
            "MaxInFlightBytes" => self.max_in_flight_bytes = number(1, u32::MAX as u64)? as usize,
            "RequestTimeout" => self.request_timeout = millis(100, 600_000)?,
            "ConnectTimeout" => self.connect_timeout = millis(100, 300_000)?,
            "MaxOutstandingRecords" => {
                self.max_outstanding_records = number(1, u32::MAX as u64)? as usize
            }
            "MaxOutstandingBytes" => {
                self.max_outstanding_bytes = number(2 * 1_048_576, u32::MAX as u64)? as usize
            }
            "OrderedPerShard" => self.ordered_per_shard = boolean()?,
            "ShardMapRefreshInterval" => {
                self.shard_map_refresh_interval = millis(1_000, u32::MAX as u64)?
            }
            "MinBackoff" => self.min_backoff = millis(1, 600_000)?,
            "MaxBackoff" => self.max_backoff = millis(1, 600_000)?,
            ignored if IGNORED_KPL_KEYS.contains(&ignored) => {
                tracing::debug!(
                    key,
                    "KPL option configures the SDK client or the KPL process; ignored"
                );
            }
            _ => {
                return Err(ConfigError::UnknownKey {
                    key: key.to_owned(),
                });
            }
        }
        Ok(())
    }

    /// Sets every option of a KPL `.properties` text (`Key = Value` lines; `#` and `!` comments).
    pub fn with_properties(mut self, text: &str) -> Result<Self, ConfigError> {
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            let (key, value) =
                line.split_once(['=', ':'])
                    .ok_or_else(|| ConfigError::MalformedLine {
                        line: i + 1,
                        text: line.to_owned(),
                    })?;
            self.set(key.trim(), value)?;
        }
        Ok(self)
    }

    /// Sets every `(key, value)` pair (e.g. a binding's keyword arguments).
    pub fn with_pairs<'a>(
        mut self,
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, ConfigError> {
        for (key, value) in pairs {
            self.set(key, value)?;
        }
        Ok(self)
    }

    /// Checks the options against each other and the Kinesis limits.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, value: String, reason: &str| {
            Err(ConfigError::InvalidValue {
                key: key.to_owned(),
                value,
                reason: reason.to_owned(),
            })
        };
        if !(MIN_MAX_AGGREGATE_SIZE..=1_048_576).contains(&self.aggregation_max_size) {
            return invalid(
                "AggregationMaxSize",
                self.aggregation_max_size.to_string(),
                "64..=1048576",
            );
        }
        if self.aggregation_max_count == 0 {
            return invalid("AggregationMaxCount", "0".into(), "at least 1");
        }
        if !(1..=MAX_COLLECTION_COUNT).contains(&self.collection_max_count) {
            return invalid(
                "CollectionMaxCount",
                self.collection_max_count.to_string(),
                "1..=500",
            );
        }
        if !(52_224..=MAX_COLLECTION_SIZE).contains(&self.collection_max_size) {
            return invalid(
                "CollectionMaxSize",
                self.collection_max_size.to_string(),
                "52224..=5242880",
            );
        }
        if self.rate_limit == 0 {
            return invalid("RateLimit", "0".into(), "at least 1 (percent)");
        }
        if self.max_connections == 0 {
            return invalid("MaxConnections", "0".into(), "at least 1");
        }
        // Expiries are kept in milliseconds in 32 bits (one per outstanding record).
        if self.record_ttl > Duration::from_millis(u64::from(u32::MAX)) {
            return invalid(
                "RecordTtl",
                format!("{:?}", self.record_ttl),
                "at most 4294967295 ms (49.7 days)",
            );
        }
        if self.max_in_flight_bytes == 0 {
            return invalid("MaxInFlightBytes", "0".into(), "at least 1");
        }
        if self.max_outstanding_records == 0 {
            return invalid("MaxOutstandingRecords", "0".into(), "at least 1");
        }
        // One record of the largest size must always fit, or put would wait forever.
        let largest_record = kinesis_aggregation::MAX_RECORD_DATA_SIZE + 256 * 4;
        if self.max_outstanding_bytes < largest_record {
            return invalid(
                "MaxOutstandingBytes",
                self.max_outstanding_bytes.to_string(),
                "at least one maximal record (1 MiB plus a 256-character key)",
            );
        }
        if self.min_backoff > self.max_backoff {
            return invalid(
                "MinBackoff",
                format!("{:?}", self.min_backoff),
                "at most MaxBackoff",
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_kpl_defaults() {
        let c = ProducerConfig::default();
        assert!(c.aggregation_enabled);
        assert_eq!(c.aggregation_max_count, 4_294_967_295);
        assert_eq!(c.aggregation_max_size, 51_200);
        assert_eq!(c.collection_max_count, 500);
        assert_eq!(c.collection_max_size, 5_242_880);
        assert_eq!(c.record_max_buffered_time, Duration::from_millis(100));
        assert_eq!(c.record_ttl, Duration::from_millis(30_000));
        assert_eq!(c.rate_limit, 150);
        assert!(!c.fail_if_throttled);
        assert_eq!(c.max_connections, 24);
        assert_eq!(c.max_in_flight_bytes, 8 << 20);
        assert_eq!(c.request_timeout, Duration::from_millis(6_000));
        assert_eq!(c.connect_timeout, Duration::from_millis(6_000));
        assert!(c.validate().is_ok());
    }

    #[test]
    fn kpl_properties_files_load() {
        let config = ProducerConfig::default()
            .with_properties(
                "# a KPL file\n\
                 AggregationMaxSize = 1000\n\
                 RecordMaxBufferedTime=250\n\
                 ! another comment\n\
                 FailIfThrottled = TRUE\n\
                 Region = us-west-2\n\
                 MetricsLevel = none\n\
                 OrderedPerShard = true\n\
                 MaxInFlightBytes = 33554432\n",
            )
            .unwrap();
        assert_eq!(config.aggregation_max_size, 1000);
        assert_eq!(config.record_max_buffered_time, Duration::from_millis(250));
        assert!(config.fail_if_throttled);
        assert!(config.ordered_per_shard);
        assert_eq!(config.max_in_flight_bytes, 32 << 20);
    }

    #[test]
    fn bad_keys_and_values_are_refused_with_their_names() {
        let mut config = ProducerConfig::default();
        assert_eq!(
            config.set("AgregationMaxSize", "1000"),
            Err(ConfigError::UnknownKey {
                key: "AgregationMaxSize".into()
            })
        );
        for (key, value) in [
            ("AggregationMaxSize", "63"),
            ("AggregationMaxSize", "1048577"),
            ("CollectionMaxCount", "501"),
            ("CollectionMaxCount", "0"),
            ("RecordTtl", "ten"),
            ("FailIfThrottled", "yes"),
            ("RateLimit", "-5"),
            ("MaxInFlightBytes", "0"),
        ] {
            let error = config.set(key, value).unwrap_err();
            assert!(
                matches!(&error, ConfigError::InvalidValue { key: k, value: v, .. } if k == key && v == value),
                "{key}={value}: {error}"
            );
        }
        assert!(matches!(
            ProducerConfig::default().with_properties("RecordTtl 5"),
            Err(ConfigError::MalformedLine { line: 1, .. })
        ));
    }

    #[test]
    fn validation_catches_combinations() {
        assert!(
            ProducerConfig::default()
                .max_outstanding_bytes(1000)
                .validate()
                .is_err()
        );
        assert!(
            ProducerConfig::default()
                .record_ttl(Duration::from_secs(50 * 86_400))
                .validate()
                .is_err()
        );
        assert!(
            ProducerConfig::default()
                .min_backoff(Duration::from_secs(10))
                .validate()
                .is_err()
        );
        assert!(
            ProducerConfig::default()
                .collection_max_count(0)
                .validate()
                .is_err()
        );
    }
}
