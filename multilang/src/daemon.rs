//! The daemon: reads the properties file, builds the AWS clients and the consumer's scheduler
//! with a [`ShardProcessor`] per shard, and runs until told to stop.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_config::{BehaviorVersion, Region};
use kinesis_consumer::lease::DynamoLeaseStore;
use kinesis_consumer::retrieval::RetrievalConfig;
use kinesis_consumer::{Scheduler, SchedulerError};
use thiserror::Error;

use crate::child::{ChildError, Launcher};
use crate::config::{ConfigError, DaemonConfig, IgnoredKey};
use crate::processor::ShardProcessor;

/// Why the daemon could not start or stopped with an error.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// The properties file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The properties file is invalid.
    #[error("{path}: {source}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: ConfigError,
    },
    /// `executableName` cannot be run.
    #[error(transparent)]
    Executable(#[from] ChildError),
    /// The consumer could not start.
    #[error(transparent)]
    Scheduler(#[from] SchedulerError),
}

/// A properties file, read and checked, ready to run.
#[derive(Debug)]
pub struct Daemon {
    config: DaemonConfig,
    launcher: Arc<Launcher>,
}

impl Daemon {
    /// Reads `path` and resolves its `executableName` in the file's directory (the children's
    /// working directory). Returns the keys it ignored, to be logged.
    pub fn from_file(path: &Path) -> Result<(Daemon, Vec<IgnoredKey>), DaemonError> {
        let text = std::fs::read_to_string(path).map_err(|source| DaemonError::Read {
            path: path.to_owned(),
            source,
        })?;
        let (config, ignored) =
            DaemonConfig::from_properties(&text).map_err(|source| DaemonError::Config {
                path: path.to_owned(),
                source,
            })?;
        let absolute = std::path::absolute(path).map_err(|source| DaemonError::Read {
            path: path.to_owned(),
            source,
        })?;
        let working_dir = absolute.parent().unwrap_or(Path::new("/")).to_owned();
        let launcher = Launcher::new(&config.command, &working_dir, config.response_timeout)?;
        Ok((
            Daemon {
                config,
                launcher: Arc::new(launcher),
            },
            ignored,
        ))
    }

    /// The configuration read.
    pub fn config(&self) -> &DaemonConfig {
        &self.config
    }

    /// Runs the consumer until `stop` resolves, then shuts down gracefully: every child is sent
    /// `shutdownRequested` (and may checkpoint), then the leases are released.
    pub async fn run(self, stop: impl Future<Output = ()>) -> Result<(), DaemonError> {
        let config = &self.config;
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(region) = &config.region {
            loader = loader.region(Region::new(region.clone()));
        }
        // Service-specific endpoints from the environment (AWS_ENDPOINT_URL_KINESIS, …) are
        // applied by aws-config; the properties file's endpoints override them.
        let sdk = loader.load().await;
        let mut kinesis = aws_sdk_kinesis::config::Builder::from(&sdk);
        if let Some(endpoint) = &config.kinesis_endpoint {
            kinesis = kinesis.endpoint_url(endpoint);
        }
        let mut dynamodb = aws_sdk_dynamodb::config::Builder::from(&sdk);
        if let Some(endpoint) = &config.dynamodb_endpoint {
            dynamodb = dynamodb.endpoint_url(endpoint);
        }
        let kinesis = aws_sdk_kinesis::Client::from_conf(kinesis.build());
        let dynamodb = aws_sdk_dynamodb::Client::from_conf(dynamodb.build());

        let mut builder = Scheduler::builder(
            kinesis,
            dynamodb.clone(),
            config.stream_name.clone(),
            config.application_name.clone(),
        )
        .initial_position(config.initial_position)
        .lease_config(config.lease.clone())
        .retrieval(match &config.fan_out {
            Some(fan_out) => RetrievalConfig::FanOut(fan_out.clone()),
            None => RetrievalConfig::Polling(config.polling.clone()),
        });
        if let Some(worker_id) = &config.worker_id {
            builder = builder.worker_id(worker_id.clone());
        }
        if let Some(interval) = config.shard_sync_interval {
            builder = builder.shard_sync_interval(interval);
        }
        if let Some(interval) = config.parent_poll_interval {
            builder = builder.parent_poll_interval(interval);
        }
        if let Some(table) = &config.table_name {
            builder = builder.lease_store(Arc::new(DynamoLeaseStore::new(dynamodb, table.clone())));
        }
        let launcher = self.launcher.clone();
        let scheduler = builder
            .build(move |shard: &kinesis_aggregation::ShardId| {
                ShardProcessor::new(shard.clone(), launcher.clone())
            })
            .await?;
        tracing::info!(
            stream = %config.stream_name,
            application = %config.application_name,
            worker = scheduler.worker_id(),
            executable = %config.executable_name,
            program = %self.launcher.program().display(),
            "MultiLangDaemon running"
        );
        let handle = scheduler.spawn();
        stop.await;
        tracing::info!("shutting down: asking every child to checkpoint and stop");
        handle.shutdown().await?;
        tracing::info!("shut down");
        Ok(())
    }
}
