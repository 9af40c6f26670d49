//! The record processor an application writes: one instance per shard, called sequentially.

use std::future::Future;

use kinesis_aggregation::ShardId;

use crate::checkpointer::Checkpointer;
use crate::lease::Checkpoint;
use crate::record::Record;

/// An error a processor returns from [`RecordProcessor::process_records`]; the batch is retried.
pub type ProcessorError = Box<dyn std::error::Error + Send + Sync>;

/// What [`RecordProcessor::initialize`] is told.
#[derive(Debug, Clone)]
pub struct InitializationInput {
    /// The shard this processor owns.
    pub shard_id: ShardId,
    /// Where processing resumes: the lease's checkpoint.
    pub checkpoint: Checkpoint,
    /// A checkpoint prepared (two-phase) but not committed by the previous owner, if any.
    pub pending_checkpoint: Option<Checkpoint>,
}

/// What [`RecordProcessor::process_records`] is given.
pub struct ProcessRecordsInput<'a> {
    /// The user records, deaggregated, in shard order. Never empty.
    pub records: Vec<Record>,
    /// How far behind the tip of the shard the batch is.
    pub millis_behind_latest: Option<i64>,
    /// Checkpoints this shard.
    pub checkpointer: &'a Checkpointer,
}

/// Processes one shard's records. Implementations are called sequentially (never concurrently)
/// for their shard, in this order: `initialize`, then `process_records` any number of times, then
/// exactly one of `shard_ended`, `lease_lost` or `shutdown_requested`.
///
/// Errors and panics in `process_records` never make the worker skip records: the same batch is
/// delivered again after a backoff (100 ms doubling to 10 s, jittered) until it succeeds, the
/// lease is lost, or the worker shuts down. Checkpoint only what you have processed.
pub trait RecordProcessor: Send + 'static {
    /// Called once before the first batch.
    fn initialize(&mut self, input: InitializationInput) -> impl Future<Output = ()> + Send;

    /// Processes a batch. Return an error to have the batch delivered again.
    fn process_records(
        &mut self,
        input: ProcessRecordsInput<'_>,
    ) -> impl Future<Output = Result<(), ProcessorError>> + Send;

    /// The lease was taken by another worker (or could not be renewed): stop; checkpointing is
    /// no longer possible.
    fn lease_lost(&mut self) -> impl Future<Output = ()> + Send;

    /// The shard is closed and fully read. Checkpoint it (`checkpointer.checkpoint()` records
    /// SHARD_END): until then its child shards are not processed, and the shard is read again.
    fn shard_ended(&mut self, checkpointer: &Checkpointer) -> impl Future<Output = ()> + Send;

    /// The worker is shutting down gracefully; checkpoint what you have processed.
    fn shutdown_requested(
        &mut self,
        checkpointer: &Checkpointer,
    ) -> impl Future<Output = ()> + Send;
}

/// Makes one processor per shard.
pub trait RecordProcessorFactory: Send + Sync + 'static {
    /// The processor type.
    type Processor: RecordProcessor;

    /// A processor for `shard_id`.
    fn create(&self, shard_id: &ShardId) -> Self::Processor;
}

impl<F, P> RecordProcessorFactory for F
where
    F: Fn(&ShardId) -> P + Send + Sync + 'static,
    P: RecordProcessor,
{
    type Processor = P;

    fn create(&self, shard_id: &ShardId) -> P {
        self(shard_id)
    }
}
