//! The Kinesis consumer: a KCL-compatible worker with DynamoDB leases, checkpoints, balancing,
//! zombie protection and parent-before-child resharding.
//!
//! ```text
//!  ListShards ──► shard sync ──► lease table (DynamoDB, the Java KCL's attributes)
//!                                    │  ▲ conditional writes on leaseCounter
//!               lease taker ◄────────┘  │ (take, renew, release, checkpoint, delete)
//!  (expired / unowned / steal one;      │
//!   pure decision: lease::taker)        │
//!        │ held leases ──► renewer (every failoverTime/3; lost ⇒ lease_lost)
//!        ▼
//!  per held lease, once its parents are at SHARD_END:
//!    ShardFetcher (GetShardIterator + GetRecords, prefetch, deaggregation)
//!        ──► RecordProcessor::process_records(batch, checkpointer) ──► Checkpointer
//!    at the end: shard_ended (checkpoint SHARD_END) ──► child leases created
//! ```
//!
//! Implement [`RecordProcessor`] (and a [`RecordProcessorFactory`], or a closure making one per
//! shard) and run a [`Scheduler`].
//!
//! # Example
//!
//! ```no_run
//! use kinesis_consumer::kinesis_aggregation::ShardId;
//! use kinesis_consumer::{
//!     Checkpointer, InitialPosition, InitializationInput, ProcessRecordsInput, ProcessorError,
//!     RecordProcessor, Scheduler,
//! };
//!
//! struct Printer;
//!
//! impl RecordProcessor for Printer {
//!     async fn initialize(&mut self, input: InitializationInput) {
//!         println!("{} from {:?}", input.shard_id, input.checkpoint);
//!     }
//!     async fn process_records(&mut self, input: ProcessRecordsInput<'_>) -> Result<(), ProcessorError> {
//!         for record in &input.records {
//!             println!("{} {} bytes", &*record.partition_key, record.data.len());
//!         }
//!         input.checkpointer.checkpoint().await?; // after the batch's last record
//!         Ok(())
//!     }
//!     async fn lease_lost(&mut self) {} // another worker owns the shard now: no checkpoint
//!     async fn shard_ended(&mut self, checkpointer: &Checkpointer) {
//!         // SHARD_END: the shard's children start once it is checkpointed.
//!         checkpointer.checkpoint().await.expect("checkpoint at shard end");
//!     }
//!     async fn shutdown_requested(&mut self, checkpointer: &Checkpointer) {
//!         let _ = checkpointer.checkpoint().await;
//!     }
//! }
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let config = aws_config::load_from_env().await;
//! let scheduler = Scheduler::builder(
//!     aws_sdk_kinesis::Client::new(&config),
//!     aws_sdk_dynamodb::Client::new(&config),
//!     "my-stream",
//!     "my-application", // the lease table's name
//! )
//! .worker_id("host-1")
//! .initial_position(InitialPosition::TrimHorizon)
//! .build(|_shard: &ShardId| Printer)
//! .await?;
//! scheduler.run().await?; // until Ctrl-C; `spawn()` gives a handle to shut it down
//! # Ok(())
//! # }
//! ```

// The README (the crates.io page) is compiled and run as doc tests too, so its example stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

pub use kinesis_aggregation;

mod checkpointer;
pub mod lease;
pub mod metrics;
mod processor;
mod record;
mod renewer;
pub mod retrieval;
mod scheduler;
mod shard_consumer;
mod shards;

pub use checkpointer::{CheckpointError, Checkpointer, validate_checkpoint};
pub use kinesis_sdk_support::CredentialsCheckError;
pub use processor::{
    InitializationInput, ProcessRecordsInput, ProcessorError, RecordProcessor,
    RecordProcessorFactory,
};
pub use record::{Position, Record};
pub use scheduler::{
    InitialPosition, Scheduler, SchedulerBuilder, SchedulerError, SchedulerHandle,
};
pub use shards::{ShardInfo, list_shards};
