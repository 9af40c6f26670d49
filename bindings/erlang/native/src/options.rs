//! `start_link/1`'s configuration: where the stream is, and the KPL options, as string pairs.

use kinesis_producer::{BuildError, Producer, ProducerConfig};

/// Why a producer did not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartError {
    /// A missing or refused option (`{config, Message}` in Erlang).
    Config(String),
    /// The stream does not exist (`{stream_not_found, Stream}`).
    StreamNotFound(String),
    /// Anything else (`{other, Message}`).
    Other(String),
}

/// What the pairs say: the stream, the SDK client's region and endpoint, the producer's options.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// `stream_name` (or `stream`): required.
    pub stream: String,
    /// `region`: otherwise the SDK's (`AWS_REGION`, the profile).
    pub region: Option<String>,
    /// `endpoint_url`: e.g. a local server; otherwise the SDK's.
    pub endpoint_url: Option<String>,
    /// Every other key is a KPL option (`RecordTtl`, `AggregationMaxSize`, …).
    pub config: ProducerConfig,
}

impl Settings {
    /// Reads the pairs the Erlang module normalised to strings. Later pairs win.
    pub fn from_pairs(pairs: &[(String, String)]) -> Result<Settings, StartError> {
        let mut stream = None;
        let mut region = None;
        let mut endpoint_url = None;
        let mut config = ProducerConfig::default();
        for (key, value) in pairs {
            match key.as_str() {
                "stream_name" | "stream" => stream = Some(value.clone()),
                "region" => region = Some(value.clone()),
                "endpoint_url" => endpoint_url = Some(value.clone()),
                _ => config
                    .set(key, value)
                    .map_err(|e| StartError::Config(e.to_string()))?,
            }
        }
        config
            .validate()
            .map_err(|e| StartError::Config(e.to_string()))?;
        let stream = stream
            .filter(|s| !s.is_empty())
            .ok_or_else(|| StartError::Config("stream_name is required".to_owned()))?;
        Ok(Settings {
            stream,
            region,
            endpoint_url,
            config,
        })
    }

    /// Loads the SDK configuration (credentials from the environment, profile or role), lists
    /// the stream's shards and starts the producer's pipeline on the current runtime.
    pub async fn start(self) -> Result<Producer, StartError> {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(endpoint) = &self.endpoint_url {
            loader = loader.endpoint_url(endpoint);
        }
        if let Some(region) = self.region {
            loader = loader.region(aws_config::Region::new(region));
        }
        // Bounds `start_link/1` too (listing the shards), not only the puts: without an
        // operation timeout a server that accepts connections and never answers would hang it.
        loader = loader.timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(self.config.get_connect_timeout())
                .operation_attempt_timeout(self.config.get_request_timeout())
                .build(),
        );
        let sdk_config = loader.load().await;
        if sdk_config.region().is_none() {
            return Err(StartError::Config(
                "no AWS region: give `region` or set AWS_REGION (or a profile's region)".to_owned(),
            ));
        }
        let client = aws_sdk_kinesis::Client::new(&sdk_config);
        Producer::builder(client, self.stream)
            .config(self.config)
            .build()
            .await
            .map_err(|error| match error {
                BuildError::StreamNotFound { stream } => StartError::StreamNotFound(stream),
                BuildError::Config(e) => StartError::Config(e.to_string()),
                other => StartError::Other(other.to_string()),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn special_keys_and_kpl_options() {
        let settings = Settings::from_pairs(&pairs(&[
            ("stream_name", "orders"),
            ("region", "eu-west-1"),
            ("endpoint_url", "http://127.0.0.1:4567"),
            ("RecordTtl", "1500"),
            ("AggregationEnabled", "false"),
        ]))
        .unwrap();
        assert_eq!(settings.stream, "orders");
        assert_eq!(settings.region.as_deref(), Some("eu-west-1"));
        assert_eq!(
            settings.endpoint_url.as_deref(),
            Some("http://127.0.0.1:4567")
        );
        assert_eq!(
            settings.config.get_record_ttl(),
            Duration::from_millis(1500)
        );
        assert!(!settings.config.get_aggregation_enabled());
    }

    #[test]
    fn refusals_name_the_problem() {
        for (input, expected) in [
            (vec![("RecordTtl", "100")], "stream_name is required"),
            (vec![("stream", "")], "stream_name is required"),
            (
                vec![("stream", "s"), ("Bogus", "1")],
                "unknown producer option \"Bogus\"",
            ),
            (
                vec![("stream", "s"), ("RecordTtl", "soon")],
                "invalid value \"soon\" for RecordTtl",
            ),
        ] {
            match Settings::from_pairs(&pairs(&input)) {
                Err(StartError::Config(message)) => {
                    assert!(message.starts_with(expected), "{message:?} for {input:?}")
                }
                other => panic!("{input:?} gave {other:?}"),
            }
        }
    }
}
