//! Checkpointing a shard: validated against what was delivered, written conditionally on the
//! lease counter, so a worker that lost its lease (a zombie) can never overwrite the new owner's.

use std::sync::{Arc, Mutex as StdMutex};
use std::time::Instant;

use kinesis_aggregation::ShardId;
use tokio::sync::{Mutex, watch};

use crate::lease::{Checkpoint, Lease, LeaseStore, LeaseStoreError};
use crate::record::{Position, Record};

/// Why a checkpoint was refused.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// This worker no longer holds the lease (another worker took it, or renewals failed for
    /// `failoverTime`). The Java KCL calls this a `ShutdownException`; stop processing.
    #[error("lease of shard {shard} lost: another worker owns it now (ShutdownException)")]
    LeaseLost {
        /// The shard.
        shard: ShardId,
    },
    /// The position is beyond the last record delivered to the processor.
    #[error(
        "checkpoint {requested:?} of shard {shard} is beyond the last delivered record {last_delivered:?}"
    )]
    BeyondLastDelivered {
        /// The shard.
        shard: ShardId,
        /// The position asked for.
        requested: Position,
        /// The last record delivered, if any.
        last_delivered: Option<Position>,
    },
    /// The position is behind the shard's current checkpoint.
    #[error(
        "checkpoint {requested:?} of shard {shard} is behind the current checkpoint {current:?}"
    )]
    BehindCurrent {
        /// The shard.
        shard: ShardId,
        /// The position asked for.
        requested: Position,
        /// The current checkpoint.
        current: Position,
    },
    /// The lease table could not be written (throttling, network); the checkpoint may be retried.
    #[error("checkpoint of shard {shard} not stored: {source}")]
    Store {
        /// The shard.
        shard: ShardId,
        /// The store's error.
        source: LeaseStoreError,
    },
}

impl CheckpointError {
    /// The Java KCL exception name for this error, as the MultiLangDaemon reports it.
    pub fn kcl_exception_name(&self) -> &'static str {
        match self {
            CheckpointError::LeaseLost { .. } => "ShutdownException",
            CheckpointError::BeyondLastDelivered { .. } | CheckpointError::BehindCurrent { .. } => {
                "InvalidStateException"
            }
            CheckpointError::Store { .. } => "KinesisClientLibDependencyException",
        }
    }
}

/// Checks a requested checkpoint against what was delivered and what is stored: never beyond
/// the last delivered record, never behind the current checkpoint.
pub fn validate_checkpoint(
    shard: &ShardId,
    requested: &Position,
    last_delivered: Option<&Position>,
    current: &Checkpoint,
) -> Result<(), CheckpointError> {
    if last_delivered.is_none_or(|last| requested > last) {
        return Err(CheckpointError::BeyondLastDelivered {
            shard: shard.clone(),
            requested: requested.clone(),
            last_delivered: last_delivered.cloned(),
        });
    }
    if let Some(current) = current.position()
        && requested < &current
    {
        return Err(CheckpointError::BehindCurrent {
            shard: shard.clone(),
            requested: requested.clone(),
            current,
        });
    }
    Ok(())
}

/// The lease a worker holds for one shard, shared by the renewer, the checkpointer and the
/// shard's consumer. Writes go through the mutex, so a renewal and a checkpoint never race on
/// the counter.
pub(crate) struct HeldLease {
    pub shard: ShardId,
    pub store: Arc<dyn LeaseStore>,
    /// The lease as last written by this worker; `None` once lost.
    pub lease: Mutex<Option<Lease>>,
    /// When the lease was last written successfully (renewal or checkpoint).
    pub last_written: StdMutex<Instant>,
    /// Becomes true when the lease is lost; the shard consumer watches it.
    pub lost: watch::Sender<bool>,
}

impl HeldLease {
    pub fn new(store: Arc<dyn LeaseStore>, lease: Lease) -> Arc<Self> {
        Arc::new(HeldLease {
            shard: lease.lease_key.clone(),
            store,
            lease: Mutex::new(Some(lease)),
            last_written: StdMutex::new(Instant::now()),
            lost: watch::Sender::new(false),
        })
    }

    pub fn mark_lost(&self, lease: &mut Option<Lease>) {
        *lease = None;
        self.lost.send_replace(true);
    }

    pub fn is_lost(&self) -> bool {
        *self.lost.borrow()
    }

    fn written(&self) {
        *self.last_written.lock().expect("not poisoned") = Instant::now();
    }

    /// Heartbeat. A refused condition means another worker took the lease.
    pub async fn renew(&self) -> Result<(), LeaseStoreError> {
        let mut guard = self.lease.lock().await;
        let Some(lease) = guard.as_ref() else {
            return Ok(());
        };
        match self.store.renew(lease).await {
            Ok(renewed) => {
                *guard = Some(renewed);
                self.written();
                Ok(())
            }
            Err(error) if error.is_condition_failed() => {
                self.mark_lost(&mut guard);
                Err(error)
            }
            Err(error) => Err(error),
        }
    }

    /// Writes `checkpoint` (or a pending one) if the lease is still ours.
    async fn write(
        &self,
        checkpoint: Option<Checkpoint>,
        pending: Option<Checkpoint>,
    ) -> Result<Lease, CheckpointError> {
        let mut guard = self.lease.lock().await;
        let Some(lease) = guard.as_ref() else {
            return Err(CheckpointError::LeaseLost {
                shard: self.shard.clone(),
            });
        };
        let result = match checkpoint {
            Some(checkpoint) => {
                self.store
                    .checkpoint(lease, &checkpoint, pending.as_ref())
                    .await
            }
            None => {
                self.store
                    .prepare_checkpoint(
                        lease,
                        pending.as_ref().expect("a pending checkpoint"),
                        None,
                    )
                    .await
            }
        };
        match result {
            Ok(written) => {
                *guard = Some(written.clone());
                self.written();
                Ok(written)
            }
            Err(error) if error.is_condition_failed() => {
                self.mark_lost(&mut guard);
                Err(CheckpointError::LeaseLost {
                    shard: self.shard.clone(),
                })
            }
            Err(source) => Err(CheckpointError::Store {
                shard: self.shard.clone(),
                source,
            }),
        }
    }

    /// The lease's current checkpoint, if the lease is still held.
    pub async fn checkpoint(&self) -> Option<Checkpoint> {
        self.lease
            .lock()
            .await
            .as_ref()
            .map(|l| l.checkpoint.clone())
    }
}

/// What the shard's consumer has handed the processor so far.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    pub last_delivered: Option<Position>,
    /// The shard is closed and fully delivered: `checkpoint()` records SHARD_END.
    pub at_shard_end: bool,
}

/// Checkpoints one shard for its processor. Cheap to clone.
#[derive(Clone)]
pub struct Checkpointer {
    pub(crate) held: Arc<HeldLease>,
    pub(crate) progress: Arc<StdMutex<Progress>>,
}

impl Checkpointer {
    /// The shard.
    pub fn shard_id(&self) -> &ShardId {
        &self.held.shard
    }

    /// Checkpoints the last record delivered to the processor; at the shard end (in
    /// `shard_ended`), records SHARD_END.
    pub async fn checkpoint(&self) -> Result<(), CheckpointError> {
        let (last, at_end) = {
            let progress = self.progress.lock().expect("not poisoned");
            (progress.last_delivered.clone(), progress.at_shard_end)
        };
        if at_end {
            return self
                .held
                .write(Some(Checkpoint::ShardEnd), None)
                .await
                .map(drop);
        }
        match last {
            Some(position) => self.checkpoint_at(position).await,
            // Nothing delivered yet: nothing to record.
            None => Ok(()),
        }
    }

    /// Checkpoints at `record`: processing resumes after it.
    pub async fn checkpoint_record(&self, record: &Record) -> Result<(), CheckpointError> {
        self.checkpoint_at(record.position()).await
    }

    /// Checkpoints at `position` (a sequence number and sub-sequence number): processing resumes
    /// after it. Refused beyond the last delivered record or behind the current checkpoint.
    pub async fn checkpoint_at(&self, position: Position) -> Result<(), CheckpointError> {
        self.validate(&position).await?;
        let checkpoint = Checkpoint::at(position.sequence_number, position.sub_sequence_number);
        self.held.write(Some(checkpoint), None).await.map(drop)
    }

    /// Stores `position` as the pending checkpoint (the first phase of a two-phase checkpoint):
    /// the next owner sees it in [`InitializationInput::pending_checkpoint`](crate::InitializationInput).
    pub async fn prepare_checkpoint(&self, position: Position) -> Result<(), CheckpointError> {
        self.validate(&position).await?;
        let pending = Checkpoint::at(position.sequence_number, position.sub_sequence_number);
        self.held.write(None, Some(pending)).await.map(drop)
    }

    async fn validate(&self, position: &Position) -> Result<(), CheckpointError> {
        let last = self
            .progress
            .lock()
            .expect("not poisoned")
            .last_delivered
            .clone();
        let current = self
            .held
            .checkpoint()
            .await
            .ok_or_else(|| CheckpointError::LeaseLost {
                shard: self.held.shard.clone(),
            })?;
        validate_checkpoint(&self.held.shard, position, last.as_ref(), &current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kinesis_aggregation::SequenceNumber;

    fn at(seq: &str, sub: u64) -> Position {
        Position {
            sequence_number: SequenceNumber::new(seq).unwrap(),
            sub_sequence_number: sub,
        }
    }

    #[test]
    fn checkpoints_must_lie_between_the_current_one_and_the_last_delivered_record() {
        let shard = ShardId::from("shardId-0");
        let current = Checkpoint::at(SequenceNumber::new("100").unwrap(), 3);
        let last = at("200", 0);
        let cases = [
            (at("150", 0), Ok(())),
            (at("200", 0), Ok(())),
            (at("100", 3), Ok(())),
            (at("100", 4), Ok(())),
            (at("100", 2), Err("behind")),
            (at("99", 9), Err("behind")),
            (at("200", 1), Err("beyond")),
            (at("201", 0), Err("beyond")),
        ];
        for (requested, expected) in cases {
            let result = validate_checkpoint(&shard, &requested, Some(&last), &current);
            match (expected, result) {
                (Ok(()), Ok(())) => {}
                (Err("behind"), Err(CheckpointError::BehindCurrent { .. })) => {}
                (Err("beyond"), Err(CheckpointError::BeyondLastDelivered { .. })) => {}
                (expected, got) => panic!("{requested:?}: expected {expected:?}, got {got:?}"),
            }
        }
        // Nothing delivered: any position is beyond.
        assert!(matches!(
            validate_checkpoint(&shard, &at("1", 0), None, &Checkpoint::TrimHorizon),
            Err(CheckpointError::BeyondLastDelivered { .. })
        ));
        // From a sentinel checkpoint, anything delivered may be checkpointed.
        assert!(
            validate_checkpoint(&shard, &at("1", 0), Some(&last), &Checkpoint::TrimHorizon).is_ok()
        );
    }
}
