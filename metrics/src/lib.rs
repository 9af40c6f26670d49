//! The KPL's and KCL's metrics where operators look: CloudWatch, as the Java libraries publish
//! them, and a Prometheus endpoint.
//!
//! The producer ([`kinesis-producer`](https://docs.rs/kinesis-producer)) and the consumer record
//! their metrics through the [`metrics`] facade. This crate is the recorder:
//!
//! - [`CloudWatchBuilder`]: sums samples into statistic sets per key (`SampleCount`, `Sum`,
//!   `Minimum`, `Maximum`) and sends them with batched `PutMetricData` calls from its own task,
//!   every `MetricsUploadDelay` (KPL, 60 s) or `metricsBufferTimeMillis` (KCL, 10 s). The
//!   producer's metrics go to the KPL namespace with the KPL's names and units, at each
//!   granularity from global down to `MetricsGranularity` (dimensions `StreamName`, `ShardId`,
//!   `ErrorCode`), filtered by `MetricsLevel` ([`KplMetrics`]); the consumer's go to the
//!   application's namespace with the KCL's `Operation` and enabled dimensions ([`KclMetrics`]).
//!   Recording never waits on the network; when CloudWatch is slow or down, datums wait in a
//!   bounded queue and the oldest are dropped past it, counted ([`PublisherStats`]).
//! - [`Exporters`]: installs CloudWatch, Prometheus (`/metrics` over HTTP, through
//!   `metrics-exporter-prometheus`), or both, as the process's recorder.
//!
//! The table of what is published, with levels and units: [`catalog::ENTRIES`].

mod cloudwatch;
mod config;
mod install;
mod stats;

pub mod catalog;
pub mod rollup;

pub use cloudwatch::{
    CloudWatchBuilder, CloudWatchRecorder, DATUMS_PER_REQUEST, DEFAULT_MAX_QUEUED_DATUMS,
    DEFAULT_REQUEST_TIMEOUT, PublisherHandle, PublisherStats,
};
pub use config::{
    KCL_DEFAULT_BUFFER_TIME, KPL_DEFAULT_NAMESPACE, KPL_DEFAULT_UPLOAD_DELAY, KclDimension,
    KclMetrics, KplMetrics, MetricsGranularity, MetricsLevel, ParseOptionError,
};
pub use install::{Exporters, InstallError, Installed};
pub use stats::StatisticSet;
