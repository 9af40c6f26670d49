//! `PutHandle`: what `Producer.put` returns, a native stand-in for `concurrent.futures.Future`.
//!
//! A put costs one small Python object around the core's [`kinesis_producer::PutHandle`] (whose
//! outcome waits in the pipeline's completion blocks): no `concurrent.futures.Future` with its
//! condition and lock, no Tokio task per record, and nothing for the GIL to do when the record
//! resolves. The outcome is read when asked (`done`, `result`), by polling the core handle. Only a
//! handle somebody waits on (`result` before it is done, `add_done_callback`, `await`) registers a
//! waker: the pipeline then wakes it in its completion path, which stores the outcome, wakes
//! blocked `result` callers, and hands the callbacks to one completer thread that runs them in
//! batches, one GIL acquisition per batch.
//!
//! ```text
//!  put ─► PutHandle { core handle } ··· done()/result(): poll the core handle (GIL held, no wait)
//!            │ waited on: waker ─► pipeline resolves ─► Watch::wake: outcome stored, blocked
//!            │                                           result() woken, callbacks ─► completer
//!            └─ a resolved handle holds its shard, sequence number and attempts (shared with its
//!               aggregate); a failed one holds its record, to give it back
//! ```
//!
//! Locks: the GIL, then a handle's state lock, never the other way round (no Python call and no
//! GIL acquisition while a state lock is held).

use std::future::Future;
use std::pin::Pin;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use kinesis_producer::{PutError, PutOutcome};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

use crate::errors;
use crate::producer::PutResult;

/// How often a blocked `result` wakes to let Ctrl-C (a pending signal) through.
const SIGNAL_POLL: Duration = Duration::from_millis(100);

/// The outcome of one put: `result()`, `exception()`, `done()`, `add_done_callback()`, `await`,
/// and `to_future()` for a `concurrent.futures.Future` (e.g. for `concurrent.futures.wait`).
/// A put cannot be cancelled.
#[pyclass(frozen, module = "kinesis_rs")]
pub struct PutHandle {
    state: Mutex<State>,
    /// Where blocked `result` callers wait (only while `State::Pending::blocked` > 0).
    resolved: Condvar,
}

/// Pending is as large as a `PutOutcome` (64 bytes): not boxed, to spare an allocation per put.
enum State {
    Pending(Pending),
    Put(PutOutcome),
    Failed(Box<PutError>),
}

struct Pending {
    handle: kinesis_producer::PutHandle,
    /// The waker registered with the core handle, once somebody waits on this one.
    waker: Option<Waker>,
    /// Callables to call with the handle once it resolves.
    callbacks: Vec<Py<PyAny>>,
    /// `result` callers blocked on the condition variable.
    blocked: u32,
}

impl PutHandle {
    /// The Python object of a new handle, kept out of the cycle collector.
    ///
    /// PyO3 makes every class collectable. The collector then counts each new handle towards its
    /// next young collection and walks every live one at each full collection: holding a million
    /// handles, it took a fifth of the producer's CPU. It could find nothing in them: a handle
    /// exposes no references to it (no `__traverse__`), so untracking it loses no collection.
    #[allow(unsafe_code)]
    pub(crate) fn create(
        py: Python<'_>,
        handle: kinesis_producer::PutHandle,
    ) -> PyResult<Py<Self>> {
        let object = Py::new(py, Self::new(handle))?;
        // SAFETY: `object` is a live instance of a GC type (PyO3 sets Py_TPFLAGS_HAVE_GC on every
        // class), tracked since its creation, and we hold the GIL. Untracking is allowed at any
        // time; PyO3's tp_dealloc untracks again, which CPython makes a no-op when the object is
        // not tracked.
        unsafe { pyo3::ffi::PyObject_GC_UnTrack(object.as_ptr().cast()) };
        Ok(object)
    }

    fn new(handle: kinesis_producer::PutHandle) -> Self {
        PutHandle {
            state: Mutex::new(State::Pending(Pending {
                handle,
                waker: None,
                callbacks: Vec::new(),
                blocked: 0,
            })),
            resolved: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every update of the state is a whole assignment: a panic elsewhere leaves it consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves `state` to its outcome if the core handle has it, with the registered waker (or a
    /// no-op one: polling with another waker would unregister ours). Returns the callbacks to run
    /// when this call resolved it.
    fn settle(&self, state: &mut State) -> Option<Vec<Py<PyAny>>> {
        let State::Pending(pending) = state else {
            return None;
        };
        let waker = pending.waker.as_ref().unwrap_or(Waker::noop());
        let outcome = match Pin::new(&mut pending.handle).poll(&mut Context::from_waker(waker)) {
            Poll::Ready(outcome) => outcome,
            Poll::Pending => return None,
        };
        let blocked = pending.blocked > 0;
        let callbacks = std::mem::take(&mut pending.callbacks);
        *state = match outcome {
            Ok(outcome) => State::Put(outcome),
            Err(err) => State::Failed(Box::new(err)),
        };
        if blocked {
            self.resolved.notify_all();
        }
        Some(callbacks)
    }

    /// Registers a waker with the core handle, if none is yet, so that the pipeline's completion
    /// path resolves this handle. May resolve it (the outcome arrived meanwhile): the callbacks to
    /// run are returned then.
    fn watch(slf: &Bound<'_, Self>, state: &mut State) -> Option<Vec<Py<PyAny>>> {
        if let State::Pending(pending) = state
            && pending.waker.is_none()
        {
            pending.waker = Some(Waker::from(Arc::new(Watch {
                handle: Mutex::new(Some(slf.clone().unbind())),
            })));
        }
        slf.get().settle(state)
    }

    /// Waits (GIL released) until the handle resolves or `timeout` passes; whether it resolved.
    fn wait(slf: &Bound<'_, Self>, timeout: Option<f64>) -> PyResult<bool> {
        let py = slf.py();
        let this = slf.get();
        let mut state = this.lock();
        let mut settled = this.settle(&mut state);
        if settled.is_none() && matches!(*state, State::Pending(_)) {
            if timeout.is_some_and(|t| t <= 0.0) {
                return Ok(false);
            }
            settled = Self::watch(slf, &mut state);
        }
        if let Some(callbacks) = settled {
            drop(state);
            run_callbacks(py, slf, callbacks);
            return Ok(true);
        }
        match &mut *state {
            State::Pending(pending) => pending.blocked += 1,
            _ => return Ok(true),
        }
        drop(state);
        // Too far to represent: as good as none.
        let deadline = timeout
            .and_then(|t| Duration::try_from_secs_f64(t).ok())
            .and_then(|t| Instant::now().checked_add(t));
        let outcome = loop {
            let done = py.detach(|| {
                let mut state = this.lock();
                let until = Instant::now() + SIGNAL_POLL;
                let until = deadline.map_or(until, |d| d.min(until));
                while matches!(*state, State::Pending(_)) {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    state = this
                        .resolved
                        .wait_timeout(state, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                !matches!(*state, State::Pending(_))
            });
            if done {
                break Ok(true);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break Ok(false);
            }
            if let Err(err) = py.check_signals() {
                break Err(err);
            }
        };
        if let State::Pending(pending) = &mut *this.lock() {
            pending.blocked -= 1;
        }
        outcome
    }

    fn timed_out(timeout: Option<f64>) -> PyErr {
        // concurrent.futures.TimeoutError is the builtin TimeoutError since Python 3.11.
        pyo3::exceptions::PyTimeoutError::new_err(format!(
            "the record did not resolve within {} s",
            timeout.unwrap_or(0.0)
        ))
    }
}

/// Runs `callbacks(handle)` in order; an exception from one is reported (as
/// `concurrent.futures` logs it) and does not stop the others.
fn run_callbacks(py: Python<'_>, handle: &Bound<'_, PutHandle>, callbacks: Vec<Py<PyAny>>) {
    for callback in callbacks {
        if let Err(err) = callback.call1(py, (handle,)) {
            err.write_unraisable(py, Some(callback.bind(py)));
        }
    }
}

/// The waker of a handle somebody waits on: the pipeline wakes it as the record resolves.
struct Watch {
    handle: Mutex<Option<Py<PutHandle>>>,
}

impl Wake for Watch {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let Some(handle) = self.handle.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        // A frozen, Sync class: its Rust state is reachable without the GIL.
        let this = handle.get();
        let callbacks = this.settle(&mut this.lock()).unwrap_or_default();
        // The completer runs the callbacks, and drops the reference with the GIL held.
        let _ = completer().send(Completion::Resolved { handle, callbacks });
    }
}

/// What the completer thread is asked to do.
enum Completion {
    /// A watched handle resolved: run its callbacks, release it.
    Resolved {
        handle: Py<PutHandle>,
        callbacks: Vec<Py<PyAny>>,
    },
    /// Answer once everything sent before is done (`flush`, `close`).
    Barrier(mpsc::Sender<()>),
}

thread_local! {
    static ON_COMPLETER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The completer thread's queue. It takes the GIL once per batch, never on a runtime worker (a
/// worker waiting for the GIL would stall every producer's I/O).
fn completer() -> &'static mpsc::Sender<Completion> {
    static SENDER: OnceLock<mpsc::Sender<Completion>> = OnceLock::new();
    SENDER.get_or_init(|| {
        let (sender, receiver) = mpsc::channel::<Completion>();
        std::thread::Builder::new()
            .name("kinesis-rs-completer".into())
            .spawn(move || {
                ON_COMPLETER.set(true);
                while let Ok(first) = receiver.recv() {
                    let mut batch = vec![first];
                    batch.extend(receiver.try_iter().take(4_095));
                    Python::attach(|py| {
                        for completion in batch {
                            match completion {
                                Completion::Resolved { handle, callbacks } => {
                                    run_callbacks(py, handle.bind(py), callbacks);
                                }
                                Completion::Barrier(done) => {
                                    let _ = done.send(());
                                }
                            }
                        }
                    });
                }
            })
            .expect("the completer thread starts");
        sender
    })
}

/// Waits (GIL released) until the callbacks of every handle resolved so far have run. A no-op on
/// the completer thread itself (a callback that flushes).
pub(crate) fn callbacks_done(py: Python<'_>) -> PyResult<()> {
    if ON_COMPLETER.get() {
        return Ok(());
    }
    let (done, wait) = mpsc::channel();
    if completer().send(Completion::Barrier(done)).is_err() {
        return Ok(());
    }
    // A Receiver is not Sync; the closure below borrows it from another thread's view.
    let wait = Mutex::new(wait);
    loop {
        match py.detach(|| {
            wait.lock()
                .unwrap_or_else(|e| e.into_inner())
                .recv_timeout(SIGNAL_POLL)
        }) {
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
            Err(mpsc::RecvTimeoutError::Timeout) => py.check_signals()?,
        }
    }
}

/// `kinesis_rs._handles`, the Python half: conversion to asyncio and concurrent.futures futures.
pub(crate) fn helper<'py>(py: Python<'py>, name: &'static str) -> PyResult<Bound<'py, PyAny>> {
    static MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    MODULE
        .get_or_try_init(py, || {
            Ok::<_, PyErr>(py.import("kinesis_rs._handles")?.unbind())
        })?
        .bind(py)
        .getattr(name)
}

#[pymethods]
impl PutHandle {
    /// The `PutResult`, waiting (GIL released) up to `timeout` seconds (None: as long as it takes)
    /// for the record to resolve. Raises the put's exception (`RecordExpired`, `RecordThrottled`,
    /// `RecordRejected`, `RecordAborted`, carrying the record) if it failed, or `TimeoutError`.
    #[pyo3(signature = (timeout=None))]
    fn result(slf: &Bound<'_, Self>, timeout: Option<f64>) -> PyResult<Py<PutResult>> {
        if !Self::wait(slf, timeout)? {
            return Err(Self::timed_out(timeout));
        }
        let py = slf.py();
        let outcome = match &*slf.get().lock() {
            State::Put(outcome) => Ok(outcome.clone()),
            State::Failed(err) => Err((**err).clone()),
            State::Pending(_) => unreachable!("waited until resolved"),
        };
        match outcome {
            Ok(outcome) => Py::new(py, PutResult::from(outcome)),
            Err(err) => Err(errors::put_error_value(py, err)),
        }
    }

    /// The put's exception, or None when the record was put; waits like `result`.
    #[pyo3(signature = (timeout=None))]
    fn exception(slf: &Bound<'_, Self>, timeout: Option<f64>) -> PyResult<Option<Py<PyAny>>> {
        if !Self::wait(slf, timeout)? {
            return Err(Self::timed_out(timeout));
        }
        let py = slf.py();
        let failed = match &*slf.get().lock() {
            State::Failed(err) => Some((**err).clone()),
            _ => None,
        };
        Ok(failed.map(|err| errors::put_error_value(py, err).into_value(py).into_any()))
    }

    /// Whether the record resolved (put or failed). Never waits.
    fn done(slf: &Bound<'_, Self>) -> bool {
        let this = slf.get();
        let mut state = this.lock();
        let callbacks = this.settle(&mut state);
        let done = !matches!(*state, State::Pending(_));
        drop(state);
        if let Some(callbacks) = callbacks {
            run_callbacks(slf.py(), slf, callbacks);
        }
        done
    }

    /// Calls `callback(handle)` once the record resolves: at once (in this thread) if it has,
    /// otherwise on the binding's completer thread. Exceptions it raises are reported, not raised.
    fn add_done_callback(slf: &Bound<'_, Self>, callback: Py<PyAny>) {
        let this = slf.get();
        let mut state = this.lock();
        let callbacks = match Self::watch(slf, &mut state) {
            Some(mut callbacks) => {
                callbacks.push(callback);
                callbacks
            }
            None => match &mut *state {
                State::Pending(pending) => {
                    pending.callbacks.push(callback);
                    return;
                }
                _ => vec![callback],
            },
        };
        drop(state);
        run_callbacks(slf.py(), slf, callbacks);
    }

    /// Always False: a record handed to the producer cannot be taken back.
    fn cancel(&self) -> bool {
        false
    }

    /// Always False.
    fn cancelled(&self) -> bool {
        false
    }

    /// Whether the record is still on its way (not `done()`).
    fn running(slf: &Bound<'_, Self>) -> bool {
        !Self::done(slf)
    }

    /// A `concurrent.futures.Future` that resolves with this handle (for `concurrent.futures.wait`,
    /// `as_completed`, or code that expects one).
    fn to_future<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        helper(slf.py(), "concurrent_future")?.call1((slf,))
    }

    fn __await__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        helper(slf.py(), "asyncio_future")?
            .call1((slf,))?
            .call_method0("__await__")
    }

    fn __repr__(slf: &Bound<'_, Self>) -> String {
        // Settles it first: a handle whose outcome has arrived says so.
        Self::done(slf);
        match &*slf.get().lock() {
            State::Pending(_) => "PutHandle(pending)".to_owned(),
            State::Put(outcome) => format!(
                "PutHandle(put: shard_id={:?}, sequence_number={:?})",
                outcome.shard_id.as_str(),
                outcome.sequence_number.as_str()
            ),
            State::Failed(err) => format!("PutHandle(failed: {err})"),
        }
    }
}
