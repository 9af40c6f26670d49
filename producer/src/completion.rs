//! Where a `put`'s outcome waits for its handle, at a few bytes per outstanding record.
//!
//! A channel per record (a `oneshot`: one allocation of ~80 bytes, plus the sender the pipeline
//! keeps) cost more than the record's own 100 bytes of data in the memory benchmark. Instead, slots
//! are handed out in blocks of [`BLOCK_SLOTS`]: a [`Slot`] (the pipeline's end) and a [`PutHandle`]
//! (the caller's) each hold the block and an index, 16 bytes each, and the block holds the outcome
//! (16 bytes). Wakers are kept only for handles that are being awaited, in a short list per block,
//! so a record nobody waits on yet costs nothing more. Each thread fills its own block, so `put`s
//! on different threads do not contend (a thread keeps its block until the block is full); a
//! block's one lock is taken once to resolve a record and once per poll of its handle.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use crate::entry::Resolution;
use crate::outcome::{PutError, PutOutcome};

/// Slots per block: enough to spread the block's own cost thin, few enough that a block, which
/// lives until its last record resolves and its last handle is dropped, pins little memory.
pub(crate) const BLOCK_SLOTS: usize = 64;

struct Block {
    state: Mutex<BlockState>,
}

struct BlockState {
    /// Each slot's outcome, once resolved.
    outcomes: [Option<Resolution>; BLOCK_SLOTS],
    /// The handles being awaited: slot index and waker.
    waiters: Vec<(u8, Waker)>,
}

impl Block {
    fn new() -> Self {
        Block {
            state: Mutex::new(BlockState {
                outcomes: std::array::from_fn(|_| None),
                waiters: Vec::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BlockState> {
        // A panic while holding the lock leaves the state consistent (whole assignments, push,
        // retain): go on.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

thread_local! {
    /// This thread's block being handed out, and the next free index in it.
    static CURRENT: RefCell<(Arc<Block>, usize)> = RefCell::new((Arc::new(Block::new()), 0));
}

/// A new slot and the handle that waits on it.
pub(crate) fn slot() -> (Slot, PutHandle) {
    CURRENT.with(|current| {
        let mut current = current.borrow_mut();
        if current.1 == BLOCK_SLOTS {
            *current = (Arc::new(Block::new()), 0);
        }
        let index = current.1 as u8;
        current.1 += 1;
        let block = &current.0;
        (
            Slot {
                block: block.clone(),
                index,
                expires_after: 0,
                resolved: false,
            },
            PutHandle {
                block: block.clone(),
                index,
                waiting: false,
            },
        )
    })
}

/// The pipeline's end of a record's slot: [`Slot::resolve`] delivers the outcome. Dropped without
/// resolving (the pipeline stopped with the record buffered), it resolves as
/// [`PutError::Aborted`].
pub(crate) struct Slot {
    block: Arc<Block>,
    index: u8,
    /// The pipeline's own: milliseconds from the record's entry's oldest record to the record's
    /// expiry. It lives here, in what would be padding, because there is one per outstanding
    /// record.
    pub expires_after: u32,
    resolved: bool,
}

impl Slot {
    /// Delivers `resolution` to the record's handle, waking it if it is being awaited.
    pub fn resolve(mut self, resolution: Resolution) {
        self.fill(|| resolution);
        self.resolved = true;
    }

    fn fill(&self, resolution: impl FnOnce() -> Resolution) {
        let index = self.index;
        let mut woken = Vec::new();
        {
            let mut state = self.block.lock();
            let outcome = &mut state.outcomes[usize::from(index)];
            if outcome.is_some() {
                return;
            }
            *outcome = Some(resolution());
            state.waiters.retain(|(i, waker)| {
                if *i == index {
                    woken.push(waker.clone());
                    false
                } else {
                    true
                }
            });
        }
        for waker in woken {
            waker.wake();
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if !self.resolved {
            self.fill(|| {
                Resolution::Failed(Box::new(PutError::Aborted {
                    reason: "the producer's pipeline stopped (its Tokio runtime shut down?)".into(),
                }))
            });
        }
    }
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot").field("index", &self.index).finish()
    }
}

/// Resolves to a record's outcome. Dropping it does not cancel the put.
pub struct PutHandle {
    block: Arc<Block>,
    index: u8,
    /// Whether this handle's waker is in the block's list.
    waiting: bool,
}

impl Future for PutHandle {
    type Output = Result<PutOutcome, PutError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let index = self.index;
        let block = self.block.clone();
        let mut state = block.lock();
        if let Some(outcome) = &state.outcomes[usize::from(index)] {
            return Poll::Ready(outcome.to_result());
        }
        match state.waiters.iter_mut().find(|(i, _)| *i == index) {
            Some((_, waker)) => waker.clone_from(cx.waker()),
            None => state.waiters.push((index, cx.waker().clone())),
        }
        drop(state);
        self.waiting = true;
        Poll::Pending
    }
}

impl Drop for PutHandle {
    fn drop(&mut self) {
        if self.waiting {
            let index = self.index;
            self.block.lock().waiters.retain(|(i, _)| *i != index);
        }
    }
}

impl std::fmt::Debug for PutHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let resolved = self.block.lock().outcomes[usize::from(self.index)].is_some();
        f.debug_struct("PutHandle")
            .field("resolved", &resolved)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::SharedOutcome;
    use kinesis_aggregation::{SequenceNumber, ShardId};
    use std::time::Duration;

    fn placed(index: u32) -> Resolution {
        Resolution::Placed {
            shared: Arc::new(SharedOutcome {
                shard_id: ShardId::from("shardId-000000000001"),
                sequence_number: SequenceNumber::new(
                    "49590338271490256608559692538361571095921575989136588898",
                )
                .unwrap(),
                aggregated: true,
                attempts: Arc::from(Vec::new()),
            }),
            index,
        }
    }

    #[test]
    fn handles_stay_small() {
        // One per outstanding record on each side, and one outcome in a block.
        assert_eq!(std::mem::size_of::<Slot>(), 16);
        assert_eq!(std::mem::size_of::<PutHandle>(), 16);
        assert_eq!(std::mem::size_of::<Option<Resolution>>(), 16);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_handle_gets_its_own_outcome_whenever_it_is_awaited() {
        let mut pairs: Vec<_> = (0..BLOCK_SLOTS * 3 + 5).map(|_| slot()).collect();
        // Half resolved before they are awaited, half while they are awaited, from another task.
        let late = pairs.split_off(pairs.len() / 2);
        let mut handles = Vec::new();
        for (i, (slot, handle)) in pairs.into_iter().enumerate() {
            slot.resolve(placed(i as u32));
            handles.push((i, handle));
        }
        let (late_slots, late_handles): (Vec<_>, Vec<_>) = late.into_iter().unzip();
        let offset = handles.len();
        let waiters = tokio::spawn(async move {
            let mut seen = Vec::new();
            for handle in late_handles {
                seen.push(handle.await.unwrap().sub_sequence_number);
            }
            seen
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        for (i, slot) in late_slots.into_iter().enumerate() {
            slot.resolve(placed((offset + i) as u32));
        }
        for (i, handle) in handles {
            assert_eq!(handle.await.unwrap().sub_sequence_number, Some(i as u64));
        }
        let seen = waiters.await.unwrap();
        let expected: Vec<_> = (offset..offset + seen.len())
            .map(|i| Some(i as u64))
            .collect();
        assert_eq!(seen, expected);
    }

    #[tokio::test]
    async fn a_slot_dropped_unresolved_aborts_its_handle() {
        let (slot, handle) = slot();
        let waiter = tokio::spawn(handle);
        tokio::task::yield_now().await;
        drop(slot);
        let result = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .unwrap();
        assert!(matches!(result, Err(PutError::Aborted { .. })));
    }

    #[tokio::test]
    async fn a_dropped_handle_leaves_no_waker_behind() {
        let (slot, mut handle) = slot();
        let waker = futures_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut handle).poll(&mut cx).is_pending());
        assert_eq!(slot.block.lock().waiters.len(), 1);
        drop(handle);
        assert!(slot.block.lock().waiters.is_empty());
        slot.resolve(placed(0));
    }

    fn futures_waker() -> Waker {
        Waker::noop().clone()
    }
}
