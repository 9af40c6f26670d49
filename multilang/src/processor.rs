//! The record processor the consumer runs for each shard: it drives one child process through
//! the protocol and answers its checkpoint requests with the shard's [`Checkpointer`].
//!
//! Failure handling: a child that exits, hangs past `timeoutInSeconds`, or breaks the protocol
//! is killed and its batch fails; the consumer delivers the same batch again after a backoff,
//! and this processor starts a new child first, initialized at the last checkpoint, and hands it
//! only the records after that checkpoint. (The Java daemon exits instead, and the shard
//! resumes from the checkpoint once its lease is taken again; the child sees the same thing.)

use std::sync::Arc;

use kinesis_aggregation::ShardId;
use kinesis_consumer::lease::Checkpoint;
use kinesis_consumer::{
    Checkpointer, InitializationInput, Position, ProcessRecordsInput, ProcessorError,
    RecordProcessor,
};

use crate::child::{Child, ChildError, Launcher};
use crate::protocol::{
    Action, CheckpointRequest, CheckpointTarget, ChildMessage, DaemonMessage, JsonRecord,
};

/// Runs one shard's child process. Made by the daemon's factory, one per shard lease.
pub struct ShardProcessor {
    shard: ShardId,
    launcher: Arc<Launcher>,
    child: Option<Child>,
    progress: Progress,
}

/// What the processor knows of the shard's position.
#[derive(Debug)]
struct Progress {
    /// Where a new child resumes: the lease's checkpoint at `initialize`, moved by every
    /// checkpoint a child makes.
    resume_at: Checkpoint,
    /// The last record of the last batch delivered.
    last_delivered: Option<Position>,
    /// `shard_ended` is running: a checkpoint without a sequence number records SHARD_END.
    at_shard_end: bool,
}

impl ShardProcessor {
    /// A processor for `shard` whose children `launcher` starts.
    pub fn new(shard: ShardId, launcher: Arc<Launcher>) -> Self {
        ShardProcessor {
            shard,
            launcher,
            child: None,
            progress: Progress {
                resume_at: Checkpoint::TrimHorizon,
                last_delivered: None,
                at_shard_end: false,
            },
        }
    }

    /// Starts a child and initializes it at `resume_at`.
    async fn start_child(&mut self) -> Result<(), ChildError> {
        let mut child = self.launcher.spawn(&self.shard)?;
        let message = DaemonMessage::initialize(self.shard.as_str(), &self.progress.resume_at);
        match exchange(
            &mut child,
            &mut self.progress,
            &message,
            Action::Initialize,
            None,
        )
        .await
        {
            Ok(()) => {
                self.child = Some(child);
                Ok(())
            }
            Err(error) => {
                child.kill().await;
                Err(error)
            }
        }
    }

    /// The running child, started (again) if there is none.
    async fn ensure_child(&mut self) -> Result<(), ChildError> {
        if self.child.is_none() {
            tracing::warn!(shard = %self.shard, resume_at = self.progress.resume_at.as_str(), "starting a new child for the shard");
            self.start_child().await?;
        }
        Ok(())
    }

    /// Sends `message` to the running child and waits for its status; on failure the child is
    /// killed and forgotten.
    async fn call(
        &mut self,
        message: &DaemonMessage,
        action: Action,
        checkpointer: Option<&Checkpointer>,
    ) -> Result<(), ChildError> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        match exchange(
            &mut child,
            &mut self.progress,
            message,
            action,
            checkpointer,
        )
        .await
        {
            Ok(()) => {
                self.child = Some(child);
                Ok(())
            }
            Err(error) => {
                tracing::error!(shard = %self.shard, %error, "the child failed; killing it");
                child.kill().await;
                Err(error)
            }
        }
    }

    /// Sends a final message (lease lost, shard ended, shutdown) and ends the child.
    async fn finish(
        &mut self,
        message: &DaemonMessage,
        action: Action,
        checkpointer: Option<&Checkpointer>,
    ) {
        if self.call(message, action, checkpointer).await.is_ok()
            && let Some(child) = self.child.take()
        {
            child.shut_down().await;
        }
    }
}

/// Writes `message`, then answers checkpoint requests until the child's status for `action`.
async fn exchange(
    child: &mut Child,
    progress: &mut Progress,
    message: &DaemonMessage,
    action: Action,
    checkpointer: Option<&Checkpointer>,
) -> Result<(), ChildError> {
    child.send(message).await?;
    loop {
        match child.next_message(action).await? {
            ChildMessage::Status { response_for } if response_for == action.as_str() => {
                return Ok(());
            }
            ChildMessage::Status { response_for } => {
                return Err(ChildError::WrongStatus {
                    shard: child.shard().clone(),
                    expected: action.as_str(),
                    got: response_for,
                });
            }
            ChildMessage::Checkpoint(request) => {
                let reply = answer_checkpoint(&request, checkpointer, progress, action).await;
                child.send(&reply).await?;
            }
        }
    }
}

/// Checkpoints as the child asks and builds the reply; a refusal carries the Java KCL
/// exception's simple name, as the Java daemon sends it.
async fn answer_checkpoint(
    request: &CheckpointRequest,
    checkpointer: Option<&Checkpointer>,
    progress: &mut Progress,
    action: Action,
) -> DaemonMessage {
    let Some(checkpointer) = checkpointer else {
        // The Java daemon has no checkpointer while initializing or after the lease is lost.
        tracing::warn!(
            action = action.as_str(),
            "the child asked for a checkpoint where none is possible"
        );
        return request.reply(Some("InvalidStateException"));
    };
    let target = match request.target() {
        Ok(target) => target,
        Err(name) => {
            tracing::warn!(shard = %checkpointer.shard_id(), ?request, "malformed checkpoint request");
            return request.reply(Some(name));
        }
    };
    let result = match &target {
        CheckpointTarget::LastDelivered => checkpointer.checkpoint().await,
        CheckpointTarget::At {
            sequence_number,
            sub_sequence_number,
        } => {
            checkpointer
                .checkpoint_at(Position {
                    sequence_number: sequence_number.clone(),
                    sub_sequence_number: *sub_sequence_number,
                })
                .await
        }
    };
    match result {
        Ok(()) => {
            progress.resume_at = match target {
                CheckpointTarget::LastDelivered if progress.at_shard_end => Checkpoint::ShardEnd,
                CheckpointTarget::LastDelivered => match &progress.last_delivered {
                    Some(last) => {
                        Checkpoint::at(last.sequence_number.clone(), last.sub_sequence_number)
                    }
                    None => progress.resume_at.clone(),
                },
                CheckpointTarget::At {
                    sequence_number,
                    sub_sequence_number,
                } => Checkpoint::at(sequence_number, sub_sequence_number),
            };
            tracing::debug!(shard = %checkpointer.shard_id(), checkpoint = progress.resume_at.as_str(), "checkpointed");
            request.reply(None)
        }
        Err(error) => {
            tracing::info!(shard = %checkpointer.shard_id(), %error, "checkpoint refused");
            request.reply(Some(error.kcl_exception_name()))
        }
    }
}

impl RecordProcessor for ShardProcessor {
    async fn initialize(&mut self, input: InitializationInput) {
        self.progress.resume_at = input.checkpoint;
        if let Err(error) = self.start_child().await {
            // process_records starts it again, batch after batch, with the consumer's backoff.
            tracing::error!(shard = %self.shard, %error, "initializing the child failed");
        }
    }

    async fn process_records(
        &mut self,
        input: ProcessRecordsInput<'_>,
    ) -> Result<(), ProcessorError> {
        self.progress.last_delivered = input.records.last().map(|r| r.position());
        // After a restart the batch may start before the new child's checkpoint: the failed
        // child checkpointed part of it. Those records are done.
        let done = self.progress.resume_at.position();
        let records: Vec<JsonRecord> = input
            .records
            .iter()
            .filter(|r| done.as_ref().is_none_or(|done| &r.position() > done))
            .map(JsonRecord::from)
            .collect();
        if records.is_empty() {
            return Ok(());
        }
        self.ensure_child().await?;
        let message = DaemonMessage::ProcessRecords {
            records,
            millis_behind_latest: input.millis_behind_latest,
        };
        self.call(&message, Action::ProcessRecords, Some(input.checkpointer))
            .await?;
        Ok(())
    }

    async fn lease_lost(&mut self) {
        self.finish(&DaemonMessage::LeaseLost, Action::LeaseLost, None)
            .await;
    }

    async fn shard_ended(&mut self, checkpointer: &Checkpointer) {
        self.progress.at_shard_end = true;
        // The child must see the end to checkpoint it, even if the last one failed.
        if let Err(error) = self.ensure_child().await {
            tracing::error!(shard = %self.shard, %error, "no child to tell that the shard ended; it will be read again");
            return;
        }
        self.finish(
            &DaemonMessage::ShardEnded,
            Action::ShardEnded,
            Some(checkpointer),
        )
        .await;
    }

    async fn shutdown_requested(&mut self, checkpointer: &Checkpointer) {
        if self.child.is_none() {
            tracing::info!(shard = %self.shard, "shutdown requested; no child is running");
            return;
        }
        self.finish(
            &DaemonMessage::ShutdownRequested,
            Action::ShutdownRequested,
            Some(checkpointer),
        )
        .await;
    }
}
