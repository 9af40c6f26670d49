//! A KCL MultiLangDaemon without a JVM: it runs record processors written for the Java KCL's
//! MultiLangDaemon (amazon-kclpy apps, unchanged) on the Rust consumer `kinesis-consumer`.
//!
//! ```text
//!  sample.properties ──► config (executableName, streamName, applicationName, …)
//!                              │
//!  Scheduler (leases in DynamoDB, polling, checkpoints) ── one ShardProcessor per held shard
//!                                                              │ stdin:  initialize, processRecords,
//!                                                              │         leaseLost, shardEnded,
//!                                                              ▼         shutdownRequested, checkpoint replies
//!                                           child process (executableName, e.g. python3 app.py)
//!                                                              │ stdout: status, checkpoint requests
//!                                                              │ stderr: forwarded, prefixed with the shard
//! ```
//!
//! The binary is `kinesis-multilang-daemon <file.properties>`; see the crate's README for the
//! keys it reads. The modules: [`properties`] (the Java `.properties` syntax), [`config`] (the
//! KCL keys), [`protocol`] (the JSON messages), [`child`] (the process), [`processor`] (the
//! protocol driven from the consumer's callbacks) and [`daemon`] (clients, scheduler, shutdown).
//!
//! # Example
//!
//! The daemon reads the Java MultiLangDaemon's `.properties` file; keys it knows but does not act
//! on come back with the reason, so that a port from Java is never silently different.
//!
//! ```
//! use kinesis_multilang::config::DaemonConfig;
//!
//! let (config, ignored) = DaemonConfig::from_properties(
//!     "executableName = python3 app.py --verbose\n\
//!      streamName = orders\n\
//!      applicationName = orders-app\n\
//!      initialPositionInStream = TRIM_HORIZON\n\
//!      metricsLevel = NONE\n",
//! )?;
//! assert_eq!(config.command, ["python3", "app.py", "--verbose"]);
//! assert_eq!(config.stream_name, "orders");
//! assert_eq!(config.application_name, "orders-app"); // also the lease table's name
//! assert_eq!(ignored[0].key, "metricsLevel");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! and [`daemon::Daemon`] runs it (`Daemon::from_file(path)?.run(stop).await`), as the
//! `kinesis-multilang-daemon` binary does.

pub mod child;
pub mod config;
pub mod daemon;
pub mod processor;
pub mod properties;
pub mod protocol;

pub use config::{ConfigError, DaemonConfig, IgnoredKey};
pub use daemon::{Daemon, DaemonError};
