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

pub mod child;
pub mod config;
pub mod daemon;
pub mod processor;
pub mod properties;
pub mod protocol;

pub use config::{ConfigError, DaemonConfig, IgnoredKey};
pub use daemon::{Daemon, DaemonError};
