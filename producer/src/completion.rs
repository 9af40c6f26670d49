//! Where a `put`'s outcome waits for its handle, at a few bytes per outstanding record.
//!
//! A channel per record (a `oneshot`: one allocation of ~80 bytes, plus the sender the pipeline
//! keeps) cost more than the record's own 100 bytes of data in the memory benchmark. Instead, slots
//! are handed out in blocks of [`BLOCK_SLOTS`]: a [`Slot`] (the pipeline's end) and a [`PutHandle`]
//! (the caller's) each hold the block and an index, 16 bytes each, and the block holds the outcome
//! (16 bytes) until the handle takes it or is dropped; the outcome of a record whose handle is gone
//! is not kept. Wakers are kept only for handles that are being awaited, in a short list per
//! block, so a record nobody waits on yet costs nothing more. Each thread fills its own block, so `put`s
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
    /// Each slot's outcome, from its resolution until its handle takes it.
    outcomes: [Option<Resolution>; BLOCK_SLOTS],
    /// A bit per slot whose handle still exists: an outcome nobody can read is not kept.
    live_handles: u64,
    /// The handles being awaited: slot index and waker.
    waiters: Vec<(u8, Waker)>,
}

impl Block {
    fn new() -> Self {
        Block {
            state: Mutex::new(BlockState {
                outcomes: std::array::from_fn(|_| None),
                // Every slot's handle exists from the moment the slot is handed out, and a block
                // is replaced only once all are.
                live_handles: u64::MAX,
                waiters: Vec::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BlockState> {
        // A panic while holding the lock leaves the state consistent (whole assignments, bit
        // operations, push, extract): go on.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl BlockState {
    /// Takes the wakers registered for slot `index` out of the list. They are dropped (or woken)
    /// by the caller after the lock is released: dropping a waker may drop a task, and with it
    /// another handle of this block, whose own drop takes this lock.
    fn take_waiters(&mut self, index: u8) -> Vec<Waker> {
        self.waiters
            .extract_if(.., |(i, _)| *i == index)
            .map(|(_, waker)| waker)
            .collect()
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
                done: false,
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
    /// Delivers `resolution` to the record's handle, waking it if it is being awaited; drops it
    /// when the handle is gone.
    pub fn resolve(mut self, resolution: Resolution) {
        self.fill(|| resolution);
        self.resolved = true;
    }

    fn fill(&self, resolution: impl FnOnce() -> Resolution) {
        let index = self.index;
        let woken = {
            let mut state = self.block.lock();
            if state.live_handles & (1 << index) == 0 {
                return;
            }
            state.outcomes[usize::from(index)] = Some(resolution());
            state.take_waiters(index)
        };
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
    /// Whether this handle's waker may be in the block's list.
    waiting: bool,
    /// Whether the outcome was taken.
    done: bool,
}

impl Future for PutHandle {
    type Output = Result<PutOutcome, PutError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        assert!(!self.done, "PutHandle polled after it resolved");
        let index = self.index;
        let block = self.block.clone();
        let mut state = block.lock();
        if let Some(outcome) = state.outcomes[usize::from(index)].take() {
            let stale = if self.waiting {
                state.take_waiters(index)
            } else {
                Vec::new()
            };
            drop(state);
            drop(stale);
            self.waiting = false;
            self.done = true;
            return Poll::Ready(outcome.into_result());
        }
        let replaced = match state.waiters.iter_mut().find(|(i, _)| *i == index) {
            Some((_, waker)) if waker.will_wake(cx.waker()) => None,
            Some((_, waker)) => Some(std::mem::replace(waker, cx.waker().clone())),
            None => {
                state.waiters.push((index, cx.waker().clone()));
                None
            }
        };
        drop(state);
        drop(replaced);
        self.waiting = true;
        Poll::Pending
    }
}

impl Drop for PutHandle {
    fn drop(&mut self) {
        let index = self.index;
        let (outcome, stale) = {
            let mut state = self.block.lock();
            state.live_handles &= !(1 << index);
            let outcome = state.outcomes[usize::from(index)].take();
            let stale = if self.waiting {
                state.take_waiters(index)
            } else {
                Vec::new()
            };
            (outcome, stale)
        };
        drop(outcome);
        drop(stale);
    }
}

impl std::fmt::Debug for PutHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let resolved = self.done || self.block.lock().outcomes[usize::from(self.index)].is_some();
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
    #[cfg(target_pointer_width = "64")]
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
        // One task per late handle: many handles of a block wait at once.
        let waiters: Vec<_> = late_handles.into_iter().map(tokio::spawn).collect();
        tokio::time::sleep(Duration::from_millis(20)).await;
        for (i, slot) in late_slots.into_iter().enumerate() {
            slot.resolve(placed((offset + i) as u32));
        }
        for (i, handle) in handles {
            assert_eq!(handle.await.unwrap().sub_sequence_number, Some(i as u64));
        }
        for (i, waiter) in waiters.into_iter().enumerate() {
            let outcome = tokio::time::timeout(Duration::from_secs(5), waiter)
                .await
                .expect("woken")
                .unwrap();
            assert_eq!(
                outcome.unwrap().sub_sequence_number,
                Some((offset + i) as u64)
            );
        }
    }

    #[tokio::test]
    async fn an_outcome_is_kept_only_until_its_handle_takes_it_or_is_dropped() {
        let (slot, handle) = slot();
        let block = slot.block.clone();
        let index = usize::from(slot.index);
        slot.resolve(placed(0));
        assert!(block.lock().outcomes[index].is_some());
        handle.await.unwrap();
        assert!(block.lock().outcomes[index].is_none());

        let (slot, handle) = super::slot();
        let (block, index) = (slot.block.clone(), usize::from(slot.index));
        slot.resolve(placed(0));
        drop(handle);
        assert!(block.lock().outcomes[index].is_none());

        // Resolved after its handle is gone: not kept at all.
        let (slot, handle) = super::slot();
        let (block, index) = (slot.block.clone(), usize::from(slot.index));
        drop(handle);
        slot.resolve(placed(0));
        assert!(block.lock().outcomes[index].is_none());
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
        let block = slot.block.clone();
        let index = usize::from(slot.index);
        slot.resolve(placed(0));
        assert!(block.lock().outcomes[index].is_none());
    }

    fn futures_waker() -> Waker {
        Waker::noop().clone()
    }
}
