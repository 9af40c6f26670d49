//! From the period's statistic sets per recorded key to CloudWatch datums: the catalog's names and
//! units, the level filter, the KPL's granularities (each metric at every level from global down
//! to the configured one, sets merged), the KCL's `Operation` and enabled dimensions. Pure.

use std::collections::BTreeMap;

use crate::catalog::{self, Family, Unit};
use crate::config::{KclDimension, KclMetrics, KplMetrics, MetricsGranularity};
use crate::stats::StatisticSet;

/// The labels the producer and consumer record with, and their dimension names.
pub const STREAM_LABEL: &str = "stream";
/// The shard label.
pub const SHARD_LABEL: &str = "shard";
/// The error-code label.
pub const CODE_LABEL: &str = "code";
/// The worker label.
pub const WORKER_LABEL: &str = "worker";

/// One period's samples of one recorded key.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample<'a> {
    /// The recorded name.
    pub name: &'a str,
    /// The recorded labels.
    pub labels: Vec<(&'a str, &'a str)>,
    /// The samples.
    pub set: StatisticSet,
}

/// One CloudWatch datum to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Datum {
    /// The namespace it goes to.
    pub namespace: String,
    /// The published metric name.
    pub name: &'static str,
    /// The dimensions, in the order published.
    pub dimensions: Vec<(&'static str, String)>,
    /// The unit.
    pub unit: Unit,
    /// The samples.
    pub set: StatisticSet,
}

fn label<'a>(labels: &[(&'a str, &'a str)], name: &str) -> Option<&'a str> {
    labels
        .iter()
        .find(|(k, v)| *k == name && !v.is_empty())
        .map(|(_, v)| *v)
}

/// The KPL's dimension sets for a sample: global, then stream, then shard, as far as the
/// granularity goes and the sample has the labels; `ErrorCode` at each where it has a code.
fn kpl_dimensions(
    labels: &[(&str, &str)],
    granularity: MetricsGranularity,
) -> Vec<Vec<(&'static str, String)>> {
    let code = label(labels, CODE_LABEL);
    let stream = label(labels, STREAM_LABEL);
    let shard = label(labels, SHARD_LABEL);
    let mut sets: Vec<Vec<(&'static str, String)>> = vec![Vec::new()];
    if granularity >= MetricsGranularity::Stream
        && let Some(stream) = stream
    {
        sets.push(vec![("StreamName", stream.to_owned())]);
        if granularity >= MetricsGranularity::Shard
            && let Some(shard) = shard
        {
            sets.push(vec![
                ("StreamName", stream.to_owned()),
                ("ShardId", shard.to_owned()),
            ]);
        }
    }
    if let Some(code) = code {
        for set in &mut sets {
            set.push(("ErrorCode", code.to_owned()));
        }
    }
    sets
}

/// The KCL's one dimension set: `Operation`, then the enabled ones the sample has.
fn kcl_dimensions(
    labels: &[(&str, &str)],
    operation: &'static str,
    config: &KclMetrics,
) -> Vec<(&'static str, String)> {
    let mut dims = vec![(KclDimension::Operation.name(), operation.to_owned())];
    let enabled = |d: KclDimension| config.enabled_dimensions.contains(&d);
    if enabled(KclDimension::ShardId)
        && let Some(shard) = label(labels, SHARD_LABEL)
    {
        dims.push((KclDimension::ShardId.name(), shard.to_owned()));
    }
    if enabled(KclDimension::StreamId)
        && let Some(stream) = label(labels, STREAM_LABEL)
    {
        dims.push((KclDimension::StreamId.name(), stream.to_owned()));
    }
    if enabled(KclDimension::WorkerIdentifier)
        && let Some(worker) = label(labels, WORKER_LABEL)
    {
        dims.push((KclDimension::WorkerIdentifier.name(), worker.to_owned()));
    }
    dims
}

/// The datums of one period, merged per (namespace, name, dimensions), in a stable order. A
/// family without a configuration (`None`) publishes nothing.
pub fn rollup<'a>(
    samples: impl IntoIterator<Item = Sample<'a>>,
    kpl: Option<&KplMetrics>,
    kcl: Option<&KclMetrics>,
) -> Vec<Datum> {
    type DatumKey = (String, &'static str, Vec<(&'static str, String)>);
    let mut merged: BTreeMap<DatumKey, (Unit, StatisticSet)> = BTreeMap::new();
    let mut add = |namespace: &str, name, dims, unit, set: &StatisticSet| {
        merged
            .entry((namespace.to_owned(), name, dims))
            .and_modify(|(_, s)| s.merge(set))
            .or_insert((unit, *set));
    };
    for sample in samples {
        let Some(entry) = catalog::lookup(sample.name) else {
            continue;
        };
        if sample.set.count == 0 {
            continue;
        }
        match entry.family {
            Family::Kpl => {
                let Some(config) = kpl.filter(|c| entry.level <= c.level) else {
                    continue;
                };
                for dims in kpl_dimensions(&sample.labels, config.granularity) {
                    add(
                        &config.namespace,
                        entry.published_name(),
                        dims,
                        entry.unit,
                        &sample.set,
                    );
                }
            }
            Family::Kcl { operation, name } => {
                let Some(config) = kcl.filter(|c| entry.level <= c.level) else {
                    continue;
                };
                let dims = kcl_dimensions(&sample.labels, operation, config);
                add(&config.namespace, name, dims, entry.unit, &sample.set);
            }
        }
    }
    merged
        .into_iter()
        .map(|((namespace, name, dimensions), (unit, set))| Datum {
            namespace,
            name,
            dimensions,
            unit,
            set,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MetricsLevel;

    fn sample<'a>(name: &'a str, labels: &[(&'a str, &'a str)], values: &[f64]) -> Sample<'a> {
        let mut set = StatisticSet::of(values[0]);
        for v in &values[1..] {
            set.add(*v);
        }
        Sample {
            name,
            labels: labels.to_vec(),
            set,
        }
    }

    fn dims(datum: &Datum) -> Vec<(&str, &str)> {
        datum
            .dimensions
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .collect()
    }

    #[test]
    fn kpl_metrics_go_to_every_granularity_down_to_the_configured_one_merged() {
        let samples = vec![
            sample(
                "UserRecordsPut",
                &[("stream", "s"), ("shard", "shardId-0")],
                &[10.0, 5.0],
            ),
            sample(
                "UserRecordsPut",
                &[("stream", "s"), ("shard", "shardId-1")],
                &[7.0],
            ),
        ];
        let datums = rollup(samples.clone(), Some(&KplMetrics::default()), None);
        type Found<'a> = Vec<(Vec<(&'a str, &'a str)>, u64, f64)>;
        let found: Found = datums
            .iter()
            .map(|d| (dims(d), d.set.count, d.set.sum))
            .collect();
        assert_eq!(
            found,
            vec![
                (vec![], 3, 22.0),
                (vec![("StreamName", "s")], 3, 22.0),
                (vec![("StreamName", "s"), ("ShardId", "shardId-0")], 2, 15.0),
                (vec![("StreamName", "s"), ("ShardId", "shardId-1")], 1, 7.0),
            ]
        );
        assert!(
            datums
                .iter()
                .all(|d| d.namespace == "KinesisProducerLibrary"
                    && d.name == "UserRecordsPut"
                    && d.unit == Unit::Count)
        );
        let stream_only = KplMetrics {
            granularity: MetricsGranularity::Stream,
            ..KplMetrics::default()
        };
        assert_eq!(rollup(samples.clone(), Some(&stream_only), None).len(), 2);
        let global = KplMetrics {
            granularity: MetricsGranularity::Global,
            ..KplMetrics::default()
        };
        assert_eq!(rollup(samples, Some(&global), None).len(), 1);
    }

    #[test]
    fn error_codes_are_a_dimension_at_every_granularity() {
        let samples = vec![sample(
            "ErrorsByCode",
            &[
                ("stream", "s"),
                ("shard", "shardId-0"),
                ("code", "ProvisionedThroughputExceededException"),
            ],
            &[1.0],
        )];
        let datums = rollup(samples, Some(&KplMetrics::default()), None);
        assert_eq!(datums.len(), 3);
        for datum in &datums {
            assert_eq!(
                datum.dimensions.last(),
                Some(&(
                    "ErrorCode",
                    "ProvisionedThroughputExceededException".to_owned()
                ))
            );
        }
    }

    #[test]
    fn the_level_filters_and_unlisted_or_unconfigured_metrics_are_not_published() {
        let samples = vec![
            sample("UserRecordsPut", &[("stream", "s")], &[1.0]),
            sample("UserRecordsDataPut", &[("stream", "s")], &[100.0]),
            sample("SomethingElse", &[], &[1.0]),
            sample("RecordsProcessed", &[("shard", "shardId-0")], &[4.0]),
        ];
        let summary = KplMetrics {
            level: MetricsLevel::Summary,
            ..KplMetrics::default()
        };
        let names: Vec<&str> = rollup(samples.clone(), Some(&summary), None)
            .iter()
            .map(|d| d.name)
            .collect();
        assert_eq!(names, vec!["UserRecordsPut", "UserRecordsPut"]);
        let none = KplMetrics {
            level: MetricsLevel::None,
            ..KplMetrics::default()
        };
        assert!(rollup(samples.clone(), Some(&none), None).is_empty());
        assert!(rollup(samples, None, None).is_empty());
    }

    #[test]
    fn kcl_metrics_carry_their_operation_and_the_enabled_dimensions() {
        let labels = [
            ("stream", "orders"),
            ("shard", "shardId-000000000001"),
            ("worker", "w1"),
        ];
        let samples = vec![
            sample("MillisBehindLatest", &labels, &[0.0, 2_000.0]),
            sample("CurrentLeases", &[("worker", "w1")], &[3.0]),
            sample("UserRecordsPut", &[("stream", "s")], &[1.0]),
        ];
        let mut config = KclMetrics::new("my-app");
        let datums = rollup(samples.clone(), None, Some(&config));
        assert_eq!(datums.len(), 2, "{datums:?}");
        let lag = datums
            .iter()
            .find(|d| d.name == "MillisBehindLatest")
            .unwrap();
        assert_eq!(lag.namespace, "my-app");
        assert_eq!(lag.unit, Unit::Milliseconds);
        assert_eq!(
            dims(lag),
            vec![
                ("Operation", "ProcessTask"),
                ("ShardId", "shardId-000000000001")
            ]
        );
        assert_eq!((lag.set.count, lag.set.max), (2, 2_000.0));
        let leases = datums.iter().find(|d| d.name == "CurrentLeases").unwrap();
        assert_eq!(dims(leases), vec![("Operation", "RenewAllLeases")]);
        config
            .enabled_dimensions
            .insert(KclDimension::WorkerIdentifier);
        let leases = rollup(samples, None, Some(&config))
            .into_iter()
            .find(|d| d.name == "CurrentLeases")
            .unwrap();
        assert_eq!(
            dims(&leases),
            vec![("Operation", "RenewAllLeases"), ("WorkerIdentifier", "w1")]
        );
    }
}
