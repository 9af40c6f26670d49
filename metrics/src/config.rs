//! The KPL's and KCL's metrics options, with their names and defaults.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Which metrics are published (the KPL's `MetricsLevel`, the KCL's `metricsLevel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MetricsLevel {
    /// Nothing.
    None,
    /// The metrics operators alarm on (records put, errors, iterator age, …).
    Summary,
    /// Everything (the default of both libraries).
    Detailed,
}

/// How finely the KPL's metrics are broken down (`MetricsGranularity`): each metric is published
/// at every level from `Global` down to this one, as the KPL does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MetricsGranularity {
    /// No dimension (besides `ErrorCode` where the metric has one).
    Global,
    /// Also per `StreamName`.
    Stream,
    /// Also per `StreamName` and `ShardId` (the default).
    Shard,
}

/// A value that is not one of the option's names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{option} must be one of {allowed}, not {value:?}")]
pub struct ParseOptionError {
    option: &'static str,
    allowed: &'static str,
    value: String,
}

impl FromStr for MetricsLevel {
    type Err = ParseOptionError;

    /// `none`, `summary` or `detailed`, in any case (the KPL writes them in lower case, the KCL
    /// in upper case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Ok(MetricsLevel::None),
            "summary" => Ok(MetricsLevel::Summary),
            "detailed" => Ok(MetricsLevel::Detailed),
            _ => Err(ParseOptionError {
                option: "MetricsLevel",
                allowed: "none, summary, detailed",
                value: s.to_owned(),
            }),
        }
    }
}

impl FromStr for MetricsGranularity {
    type Err = ParseOptionError;

    /// `global`, `stream` or `shard`, in any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "global" => Ok(MetricsGranularity::Global),
            "stream" => Ok(MetricsGranularity::Stream),
            "shard" => Ok(MetricsGranularity::Shard),
            _ => Err(ParseOptionError {
                option: "MetricsGranularity",
                allowed: "global, stream, shard",
                value: s.to_owned(),
            }),
        }
    }
}

impl fmt::Display for MetricsLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MetricsLevel::None => "none",
            MetricsLevel::Summary => "summary",
            MetricsLevel::Detailed => "detailed",
        })
    }
}

impl fmt::Display for MetricsGranularity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MetricsGranularity::Global => "global",
            MetricsGranularity::Stream => "stream",
            MetricsGranularity::Shard => "shard",
        })
    }
}

/// The KPL's default namespace (`MetricsNamespace`).
pub const KPL_DEFAULT_NAMESPACE: &str = "KinesisProducerLibrary";
/// The KPL's default `MetricsUploadDelay`, and the KCL's `metricsBufferTimeMillis` (10 s) is
/// its own: see [`KclMetrics::buffer_time`].
pub const KPL_DEFAULT_UPLOAD_DELAY: Duration = Duration::from_secs(60);
/// The KCL's default `metricsBufferTimeMillis`.
pub const KCL_DEFAULT_BUFFER_TIME: Duration = Duration::from_secs(10);

/// How the producer's (KPL) metrics are published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KplMetrics {
    /// `MetricsNamespace` (default `KinesisProducerLibrary`).
    pub namespace: String,
    /// `MetricsLevel` (default detailed).
    pub level: MetricsLevel,
    /// `MetricsGranularity` (default shard).
    pub granularity: MetricsGranularity,
}

impl Default for KplMetrics {
    fn default() -> Self {
        KplMetrics {
            namespace: KPL_DEFAULT_NAMESPACE.to_owned(),
            level: MetricsLevel::Detailed,
            granularity: MetricsGranularity::Shard,
        }
    }
}

/// A dimension the KCL can publish its metrics with (`metricsEnabledDimensions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KclDimension {
    /// `Operation`: always published.
    Operation,
    /// `ShardId`.
    ShardId,
    /// `StreamId` (multi-stream workers).
    StreamId,
    /// `WorkerIdentifier`.
    WorkerIdentifier,
}

impl KclDimension {
    /// The dimension's name in CloudWatch.
    pub fn name(self) -> &'static str {
        match self {
            KclDimension::Operation => "Operation",
            KclDimension::ShardId => "ShardId",
            KclDimension::StreamId => "StreamId",
            KclDimension::WorkerIdentifier => "WorkerIdentifier",
        }
    }
}

/// How the consumer's (KCL) metrics are published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KclMetrics {
    /// The namespace: the KCL uses the application name.
    pub namespace: String,
    /// `metricsLevel` (default DETAILED).
    pub level: MetricsLevel,
    /// `metricsEnabledDimensions` (default `Operation`, `ShardId`; `Operation` is always kept).
    pub enabled_dimensions: BTreeSet<KclDimension>,
    /// `metricsBufferTimeMillis`: how long samples are summed before they are sent (10 s).
    pub buffer_time: Duration,
}

impl KclMetrics {
    /// The KCL's defaults, in the application's namespace.
    pub fn new(application_name: impl Into<String>) -> Self {
        KclMetrics {
            namespace: application_name.into(),
            level: MetricsLevel::Detailed,
            enabled_dimensions: [KclDimension::Operation, KclDimension::ShardId]
                .into_iter()
                .collect(),
            buffer_time: KCL_DEFAULT_BUFFER_TIME,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_granularities_parse_as_the_kpl_and_kcl_write_them() {
        assert_eq!("detailed".parse(), Ok(MetricsLevel::Detailed));
        assert_eq!("SUMMARY".parse(), Ok(MetricsLevel::Summary));
        assert_eq!("None".parse(), Ok(MetricsLevel::None));
        assert_eq!("shard".parse(), Ok(MetricsGranularity::Shard));
        assert_eq!("GLOBAL".parse(), Ok(MetricsGranularity::Global));
        let error = "verbose".parse::<MetricsLevel>().unwrap_err();
        assert_eq!(
            error.to_string(),
            "MetricsLevel must be one of none, summary, detailed, not \"verbose\""
        );
        assert!("shards".parse::<MetricsGranularity>().is_err());
        assert!(MetricsLevel::Summary < MetricsLevel::Detailed);
    }
}
