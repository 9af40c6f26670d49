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
pub use processor::{
    InitializationInput, ProcessRecordsInput, ProcessorError, RecordProcessor,
    RecordProcessorFactory,
};
pub use record::{Position, Record};
pub use scheduler::{
    InitialPosition, Scheduler, SchedulerBuilder, SchedulerError, SchedulerHandle,
};
pub use shards::{ShardInfo, list_shards};
