//! The daemon's configuration, mapped from the KCL MultiLangDaemon `.properties` keys. Pure: the
//! caller reads the file and builds the clients.

use std::time::{Duration, SystemTime};

use kinesis_consumer::InitialPosition;
use kinesis_consumer::lease::LeaseConfig;
use kinesis_consumer::retrieval::{FanOutConfig, PollingConfig};
use thiserror::Error;

use crate::properties::{self, PropertiesError};

/// A properties file the daemon cannot run with.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The text is not valid properties syntax.
    #[error(transparent)]
    Syntax(#[from] PropertiesError),
    /// A required key is absent or empty.
    #[error("{key} is required in the properties file")]
    Missing {
        /// The key.
        key: &'static str,
    },
    /// A value does not parse or is out of range.
    #[error("invalid value {value:?} for {key}: {reason}")]
    Invalid {
        /// The key, as written in the file.
        key: String,
        /// The value given.
        value: String,
        /// What is expected.
        reason: String,
    },
}

/// A key the daemon read but does not act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoredKey {
    /// The key, as written in the file.
    pub key: String,
    /// Why it is ignored.
    pub reason: &'static str,
}

/// What the daemon runs: the child command, the stream and application, and the consumer's
/// options.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// `executableName`, as written.
    pub executable_name: String,
    /// `executableName` split into program and arguments, shell-like (quotes and backslashes).
    pub command: Vec<String>,
    /// `streamName` (or the name in `streamArn`).
    pub stream_name: String,
    /// `applicationName`.
    pub application_name: String,
    /// `tableName`: the lease table (default: the application name).
    pub table_name: Option<String>,
    /// `workerId` (default: a random one).
    pub worker_id: Option<String>,
    /// `initialPositionInStream` (default LATEST, as the Java KCL), or AT_TIMESTAMP from
    /// `initialPositionInStreamExtended` (epoch seconds).
    pub initial_position: InitialPosition,
    /// `regionName` (default: the AWS default chain's region).
    pub region: Option<String>,
    /// `kinesisEndpoint` (default: `AWS_ENDPOINT_URL_KINESIS`, `AWS_ENDPOINT_URL`, or AWS's).
    pub kinesis_endpoint: Option<String>,
    /// `dynamoDBEndpoint` (default: `AWS_ENDPOINT_URL_DYNAMODB`, `AWS_ENDPOINT_URL`, or AWS's).
    pub dynamodb_endpoint: Option<String>,
    /// Lease options: `failoverTimeMillis`, `epsilonMillis`, `maxLeasesForWorker`,
    /// `maxLeasesToStealAtOneTime`, `enablePriorityLeaseAssignment`,
    /// `veryOldLeaseDurationMultiplier`.
    pub lease: LeaseConfig,
    /// Polling options: `maxRecords`, `idleTimeBetweenReadsInMillis`.
    pub polling: PollingConfig,
    /// `retrievalMode`: `FANOUT` (the Java KCL's `DEFAULT`) or `POLLING`. Fan-out registers a
    /// stream consumer named after the application (`consumerName` overrides it).
    pub fan_out: Option<FanOutConfig>,
    /// `shardSyncIntervalMillis`.
    pub shard_sync_interval: Option<Duration>,
    /// `parentShardPollIntervalMillis`.
    pub parent_poll_interval: Option<Duration>,
    /// `timeoutInSeconds`: how long a child may take to answer a message before it is
    /// considered hung, killed and restarted (default: no limit, as the Java daemon).
    pub response_timeout: Option<Duration>,
}

/// Keys the Java MultiLangDaemon knows whose behaviour this daemon does not offer; they are
/// ignored with a warning that says so.
const JAVA_ONLY: &[(&str, &str)] = &[
    (
        "awscredentialsprovider",
        "credentials come from the AWS default chain (environment, profile, SSO, IMDS)",
    ),
    (
        "awscredentialsproviderdynamodb",
        "credentials come from the AWS default chain",
    ),
    (
        "awscredentialsprovidercloudwatch",
        "credentials come from the AWS default chain",
    ),
    (
        "processinglanguage",
        "only a user-agent suffix in the Java KCL",
    ),
    (
        "maxactivethreads",
        "one task per shard; no thread pool to size",
    ),
    (
        "metricslevel",
        "metrics go to the `metrics` facade, not CloudWatch",
    ),
    ("metricsbuffertimemillis", "no CloudWatch metrics publisher"),
    ("metricsmaxqueuesize", "no CloudWatch metrics publisher"),
    (
        "metricsenableddimensions",
        "no CloudWatch metrics publisher",
    ),
];

impl DaemonConfig {
    /// Parses a KCL `.properties` text. Returns the configuration and the keys it ignored (each
    /// should be logged as a warning: KCL files carry many keys this daemon has no use for).
    pub fn from_properties(text: &str) -> Result<(DaemonConfig, Vec<IgnoredKey>), ConfigError> {
        let pairs = properties::last_wins(properties::parse(text)?);
        Self::from_pairs(&pairs)
    }

    /// Maps `(key, value)` pairs (keys matched ignoring case) to a configuration.
    pub fn from_pairs(
        pairs: &[(String, String)],
    ) -> Result<(DaemonConfig, Vec<IgnoredKey>), ConfigError> {
        let mut ignored = Vec::new();
        let mut executable_name = None;
        let mut stream_name = None;
        let mut stream_arn = None;
        let mut application_name = None;
        let mut table_name = None;
        let mut worker_id = None;
        let mut position = None;
        let mut timestamp = None;
        let mut region = None;
        let mut kinesis_endpoint = None;
        let mut dynamodb_endpoint = None;
        let mut lease = LeaseConfig::default();
        let mut polling = PollingConfig::default();
        // The Java KCL's default retrieval mode is fan-out.
        let mut fan_out = Some(FanOutConfig::default());
        let mut consumer_name = None;
        let mut shard_sync_interval = None;
        let mut parent_poll_interval = None;
        let mut response_timeout = None;

        for (key, raw) in pairs {
            let value = raw.trim();
            let invalid = |reason: &str| ConfigError::Invalid {
                key: key.clone(),
                value: value.to_owned(),
                reason: reason.to_owned(),
            };
            let text = || (!value.is_empty()).then(|| value.to_owned());
            let millis = |min: u64| {
                value
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n >= min)
                    .map(Duration::from_millis)
                    .ok_or_else(|| invalid(&format!("expected milliseconds, at least {min}")))
            };
            match key.to_ascii_lowercase().as_str() {
                "executablename" => executable_name = text(),
                "streamname" => stream_name = text(),
                "streamarn" => stream_arn = text(),
                "applicationname" => application_name = text(),
                "tablename" => table_name = text(),
                "workerid" => worker_id = text(),
                "initialpositioninstream" => {
                    position = Some(match value.to_ascii_uppercase().as_str() {
                        "TRIM_HORIZON" => Position::TrimHorizon,
                        "LATEST" => Position::Latest,
                        "AT_TIMESTAMP" => Position::AtTimestamp,
                        _ => return Err(invalid("expected TRIM_HORIZON, LATEST or AT_TIMESTAMP")),
                    })
                }
                "initialpositioninstreamextended" => {
                    timestamp = Some(parse_epoch_seconds(value).ok_or_else(|| {
                        invalid("expected a timestamp in seconds since the epoch")
                    })?)
                }
                "regionname" => region = text(),
                "kinesisendpoint" => kinesis_endpoint = text().map(endpoint_url),
                "dynamodbendpoint" => dynamodb_endpoint = text().map(endpoint_url),
                lower @ ("failovertimemillis"
                | "epsilonmillis"
                | "maxleasesforworker"
                | "maxleasestostealatonetime"
                | "enablepriorityleaseassignment"
                | "veryoldleasedurationmultiplier") => {
                    lease
                        .set(canonical_lease_key(lower), value)
                        .map_err(|error| invalid(&error.to_string()))?;
                }
                "maxrecords" => {
                    polling.max_records = value
                        .parse::<i32>()
                        .ok()
                        .filter(|n| (1..=10_000).contains(n))
                        .ok_or_else(|| invalid("expected an integer in 1..=10000"))?
                }
                "idletimebetweenreadsinmillis" => polling.idle_time_between_reads = millis(1)?,
                "retrievalmode" => {
                    fan_out = match value.trim().to_ascii_uppercase().as_str() {
                        "FANOUT" | "DEFAULT" => Some(fan_out.unwrap_or_default()),
                        "POLLING" => None,
                        _ => return Err(invalid("expected FANOUT, POLLING or DEFAULT")),
                    }
                }
                "consumername" => consumer_name = text(),
                "shardsyncintervalmillis" => shard_sync_interval = Some(millis(1)?),
                "parentshardpollintervalmillis" => parent_poll_interval = Some(millis(1)?),
                "timeoutinseconds" => {
                    response_timeout = Some(
                        value
                            .parse::<u64>()
                            .ok()
                            .filter(|n| *n >= 1)
                            .map(Duration::from_secs)
                            .ok_or_else(|| invalid("expected a number of seconds, at least 1"))?,
                    )
                }
                lower => ignored.push(IgnoredKey {
                    key: key.clone(),
                    reason: JAVA_ONLY
                        .iter()
                        .find(|(k, _)| *k == lower)
                        .map_or("not a setting of kinesis-multilang-daemon", |(_, why)| *why),
                }),
            }
        }

        let executable_name = executable_name.ok_or(ConfigError::Missing {
            key: "executableName",
        })?;
        let command = shlex::split(&executable_name)
            .filter(|words| !words.is_empty())
            .ok_or_else(|| ConfigError::Invalid {
                key: "executableName".into(),
                value: executable_name.clone(),
                reason: "expected a command line (unbalanced quotes?)".into(),
            })?;
        // As in the Java KCL, a stream ARN takes precedence over the stream name.
        let stream_name = match stream_arn {
            Some(arn) => stream_name_from_arn(&arn).ok_or_else(|| ConfigError::Invalid {
                key: "streamArn".into(),
                value: arn.clone(),
                reason: "expected arn:aws:kinesis:<region>:<account>:stream/<name>".into(),
            })?,
            None => stream_name.ok_or(ConfigError::Missing { key: "streamName" })?,
        };
        let application_name = application_name.ok_or(ConfigError::Missing {
            key: "applicationName",
        })?;
        let initial_position = match (position, timestamp) {
            (Some(Position::TrimHorizon), _) => InitialPosition::TrimHorizon,
            (Some(Position::Latest), _) => InitialPosition::Latest,
            // A timestamp alone means AT_TIMESTAMP, as in the Java KCL.
            (Some(Position::AtTimestamp) | None, Some(at)) => InitialPosition::AtTimestamp(at),
            (Some(Position::AtTimestamp), None) => {
                return Err(ConfigError::Missing {
                    key: "initialPositionInStreamExtended",
                });
            }
            (None, None) => InitialPosition::Latest,
        };
        lease.validate().map_err(|error| ConfigError::Invalid {
            key: "failoverTimeMillis".into(),
            value: lease.get_failover_time().as_millis().to_string(),
            reason: error.to_string(),
        })?;
        let config = DaemonConfig {
            executable_name,
            command,
            stream_name,
            application_name,
            table_name,
            worker_id,
            initial_position,
            region,
            kinesis_endpoint,
            dynamodb_endpoint,
            lease,
            polling,
            fan_out: fan_out.map(|config| FanOutConfig {
                consumer_name,
                ..config
            }),
            shard_sync_interval,
            parent_poll_interval,
            response_timeout,
        };
        Ok((config, ignored))
    }
}

#[derive(Clone, Copy)]
enum Position {
    TrimHorizon,
    Latest,
    AtTimestamp,
}

fn canonical_lease_key(lower: &str) -> &'static str {
    match lower {
        "failovertimemillis" => "failoverTimeMillis",
        "epsilonmillis" => "epsilonMillis",
        "maxleasesforworker" => "maxLeasesForWorker",
        "maxleasestostealatonetime" => "maxLeasesToStealAtOneTime",
        "enablepriorityleaseassignment" => "enablePriorityLeaseAssignment",
        _ => "veryOldLeaseDurationMultiplier",
    }
}

/// Seconds since the epoch, possibly fractional (`1636609142` or `1636609142.5`).
fn parse_epoch_seconds(value: &str) -> Option<SystemTime> {
    let seconds: f64 = value.parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0)
        .then(|| SystemTime::UNIX_EPOCH + Duration::from_secs_f64(seconds))
}

/// The Java KCL accepts a host without a scheme (`kinesis.us-east-1.amazonaws.com`); the Rust
/// SDK needs a URL.
fn endpoint_url(value: String) -> String {
    if value.contains("://") {
        value
    } else {
        format!("https://{value}")
    }
}

/// `arn:aws:kinesis:us-east-1:123456789012:stream/name` → `name`.
fn stream_name_from_arn(arn: &str) -> Option<String> {
    let mut parts = arn.splitn(6, ':');
    let (arn_, _partition, service, _region, _account, resource) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    let name = resource.strip_prefix("stream/")?;
    (arn_ == "arn" && service == "kinesis" && !name.is_empty() && !name.contains('/'))
        .then(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "executableName = python3 app.py\nstreamName = s\napplicationName = a\n";

    fn config(extra: &str) -> Result<(DaemonConfig, Vec<IgnoredKey>), ConfigError> {
        DaemonConfig::from_properties(&format!("{MINIMAL}{extra}"))
    }

    #[test]
    fn the_kclpy_sample_properties_parse() {
        // The keys of amazon-kclpy 3.2.0's samples/sample.properties that are not comments.
        let text = "executableName = sample_kclpy_app.py\n\
            streamArn = arn:aws:kinesis:us-east-5:000000000000:stream/kclpysample\n\
            streamName = kclpysample\n\
            applicationName = PythonKCLSample\n\
            AwsCredentialsProvider = DefaultCredentialsProvider\n\
            processingLanguage = python/3.8\n\
            initialPositionInStream = TRIM_HORIZON\n\
            regionName = us-east-1\n";
        let (config, ignored) = DaemonConfig::from_properties(text).unwrap();
        assert_eq!(config.command, vec!["sample_kclpy_app.py"]);
        assert_eq!(config.stream_name, "kclpysample");
        assert_eq!(config.application_name, "PythonKCLSample");
        assert_eq!(config.initial_position, InitialPosition::TrimHorizon);
        assert_eq!(config.region.as_deref(), Some("us-east-1"));
        let keys: Vec<&str> = ignored.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(keys, ["AwsCredentialsProvider", "processingLanguage"]);
        assert!(ignored[0].reason.contains("default chain"));
    }

    #[test]
    fn retrieval_mode_and_consumer_name() {
        let (polling, _) = config("retrievalMode = POLLING\nconsumerName = other\n").unwrap();
        assert_eq!(polling.fan_out, None);
        let (fan_out, _) = config("retrievalMode = fanout\nconsumerName = other\n").unwrap();
        assert_eq!(
            fan_out.fan_out.and_then(|f| f.consumer_name).as_deref(),
            Some("other")
        );
        let (default, _) = config("retrievalMode = DEFAULT\n").unwrap();
        assert_eq!(default.fan_out, Some(FanOutConfig::default()));
        let error = config("retrievalMode = PUSH\n").unwrap_err().to_string();
        assert!(error.contains("retrievalMode"), "{error}");
    }

    #[test]
    fn defaults_are_the_java_multilang_defaults() {
        let (config, ignored) = config("").unwrap();
        assert!(ignored.is_empty());
        assert_eq!(config.initial_position, InitialPosition::Latest);
        assert_eq!(config.lease, LeaseConfig::default());
        assert_eq!(config.polling, PollingConfig::default());
        assert_eq!(
            config.fan_out,
            Some(FanOutConfig::default()),
            "fan-out, as Java"
        );
        assert_eq!(config.worker_id, None);
        assert_eq!(config.table_name, None);
        assert_eq!(config.response_timeout, None);
        assert_eq!(config.kinesis_endpoint, None);
    }

    #[test]
    fn every_supported_key_maps() {
        let (config, ignored) = config(
            "tableName = leases\nworkerId = w-1\ninitialPositionInStream = trim_horizon\n\
             regionName = eu-west-1\nkinesisEndpoint = http://127.0.0.1:4567\n\
             dynamoDBEndpoint = localhost:8000\nfailoverTimeMillis = 3000\n\
             maxLeasesForWorker = 4\nmaxLeasesToStealAtOneTime = 2\nmaxRecords = 500\n\
             idleTimeBetweenReadsInMillis = 250\nshardSyncIntervalMillis = 5000\n\
             parentShardPollIntervalMillis = 700\ntimeoutInSeconds = 30\nsomethingElse = 1\n",
        )
        .unwrap();
        assert_eq!(config.table_name.as_deref(), Some("leases"));
        assert_eq!(config.worker_id.as_deref(), Some("w-1"));
        assert_eq!(config.initial_position, InitialPosition::TrimHorizon);
        assert_eq!(config.region.as_deref(), Some("eu-west-1"));
        assert_eq!(
            config.kinesis_endpoint.as_deref(),
            Some("http://127.0.0.1:4567")
        );
        assert_eq!(
            config.dynamodb_endpoint.as_deref(),
            Some("https://localhost:8000")
        );
        assert_eq!(config.lease.get_failover_time(), Duration::from_secs(3));
        assert_eq!(config.lease.get_max_leases_for_worker(), 4);
        assert_eq!(config.lease.get_max_leases_to_steal_at_one_time(), 2);
        assert_eq!(config.polling.max_records, 500);
        assert_eq!(
            config.polling.idle_time_between_reads,
            Duration::from_millis(250)
        );
        assert_eq!(config.shard_sync_interval, Some(Duration::from_secs(5)));
        assert_eq!(
            config.parent_poll_interval,
            Some(Duration::from_millis(700))
        );
        assert_eq!(config.response_timeout, Some(Duration::from_secs(30)));
        assert_eq!(
            ignored,
            vec![IgnoredKey {
                key: "somethingElse".into(),
                reason: "not a setting of kinesis-multilang-daemon"
            }]
        );
    }

    #[test]
    fn at_timestamp_needs_a_timestamp() {
        let at = |extra| config(extra).map(|(c, _)| c.initial_position);
        let expected = SystemTime::UNIX_EPOCH + Duration::from_secs(1_636_609_142);
        assert_eq!(
            at(
                "initialPositionInStream = AT_TIMESTAMP\ninitialPositionInStreamExtended = 1636609142\n"
            ),
            Ok(InitialPosition::AtTimestamp(expected))
        );
        // The Java KCL's initialPositionInStreamExtended alone means AT_TIMESTAMP.
        assert_eq!(
            at("initialPositionInStreamExtended = 1636609142"),
            Ok(InitialPosition::AtTimestamp(expected))
        );
        assert_eq!(
            at("initialPositionInStream = AT_TIMESTAMP"),
            Err(ConfigError::Missing {
                key: "initialPositionInStreamExtended"
            })
        );
        assert!(matches!(
            at("initialPositionInStreamExtended = yesterday"),
            Err(ConfigError::Invalid { .. })
        ));
    }

    #[test]
    fn executable_name_is_split_like_a_shell() {
        let (config, _) = DaemonConfig::from_properties(
            // Properties unescape first: the file's `x\\ y` reaches the split as `x\ y`.
            "executableName = python3 '/opt/my app/app.py' --name \"a b\" x\\\\ y\n\
             streamName = s\napplicationName = a\n",
        )
        .unwrap();
        assert_eq!(
            config.command,
            vec!["python3", "/opt/my app/app.py", "--name", "a b", "x y"]
        );
        assert!(matches!(
            DaemonConfig::from_properties(
                "executableName = python3 'unbalanced\nstreamName = s\napplicationName = a\n"
            ),
            Err(ConfigError::Invalid { key, .. }) if key == "executableName"
        ));
    }

    #[test]
    fn stream_arn_takes_precedence() {
        let (parsed, _) =
            config("streamArn = arn:aws:kinesis:us-east-1:123456789012:stream/other\n").unwrap();
        assert_eq!(parsed.stream_name, "other");
        assert!(matches!(
            config("streamArn = arn:aws:sqs:us-east-1:1:queue"),
            Err(ConfigError::Invalid { key, .. }) if key == "streamArn"
        ));
    }

    #[test]
    fn required_keys_and_bad_values_are_errors() {
        assert_eq!(
            DaemonConfig::from_properties("streamName = s\napplicationName = a").unwrap_err(),
            ConfigError::Missing {
                key: "executableName"
            }
        );
        assert_eq!(
            DaemonConfig::from_properties("executableName = x\napplicationName = a").unwrap_err(),
            ConfigError::Missing { key: "streamName" }
        );
        assert_eq!(
            DaemonConfig::from_properties("executableName = x\nstreamName = s\napplicationName =")
                .unwrap_err(),
            ConfigError::Missing {
                key: "applicationName"
            }
        );
        for bad in [
            "maxRecords = 0",
            "maxRecords = 10001",
            "failoverTimeMillis = soon",
            "idleTimeBetweenReadsInMillis = -1",
            "initialPositionInStream = EARLIEST",
            "timeoutInSeconds = 0",
        ] {
            assert!(
                matches!(config(bad), Err(ConfigError::Invalid { .. })),
                "{bad} should be refused"
            );
        }
    }

    #[test]
    fn keys_match_ignoring_case() {
        let (config, ignored) = config("FAILOVERTIMEMILLIS = 20000\nmaxrecords = 7").unwrap();
        assert!(ignored.is_empty());
        assert_eq!(config.lease.get_failover_time(), Duration::from_secs(20));
        assert_eq!(config.polling.max_records, 7);
    }
}
