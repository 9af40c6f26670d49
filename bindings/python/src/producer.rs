//! `Producer`: the KPL for Python. `put` hands the record to the Rust pipeline at once and
//! returns a `concurrent.futures.Future`; a completer thread resolves the futures, taking the
//! GIL once per batch of outcomes.
//!
//! ```text
//!  put() ──try_put──► pipeline task ──► PutHandle ──► (tokio task) ──► completer thread
//!   │ (GIL held: validation, enqueue;                                 │ GIL: set_result /
//!   │  released only to wait for room)                               │      set_exception
//!   └──────────────────────────────► concurrent.futures.Future ◄──────┘
//! ```

use std::collections::BTreeSet;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::UNIX_EPOCH;

use bytes::Bytes;
use kinesis_producer::{BuildError, ProducerConfig, PutError, PutOutcome, SubmitError, UserRecord};
use pyo3::buffer::PyBuffer;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyString, PyType};
use tokio::sync::Notify;

use crate::errors;
use crate::runtime::{option_value, runtime, sdk_config, wait};

/// One try at putting a record, as the KPL reports it.
#[pyclass(frozen, get_all, module = "kinesis_rs")]
#[derive(Debug, Clone)]
pub struct Attempt {
    /// When the attempt's request was sent (seconds since the Unix epoch).
    pub started: f64,
    /// Milliseconds from the put (or the previous attempt) until this attempt was sent.
    pub delay_ms: f64,
    /// Milliseconds the request took.
    pub duration_ms: f64,
    /// Whether the attempt put the record.
    pub successful: bool,
    /// The Kinesis error code, or `Timeout` / `ConnectionError`; None on success.
    pub error_code: Option<String>,
    /// The error message; None on success.
    pub error_message: Option<String>,
}

impl From<&kinesis_producer::Attempt> for Attempt {
    fn from(attempt: &kinesis_producer::Attempt) -> Self {
        Attempt {
            started: attempt
                .started
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            delay_ms: attempt.delay.as_secs_f64() * 1e3,
            duration_ms: attempt.duration.as_secs_f64() * 1e3,
            successful: attempt.is_success(),
            error_code: attempt.error.as_ref().map(|e| e.code.clone()),
            error_message: attempt.error.as_ref().map(|e| e.message.clone()),
        }
    }
}

#[pymethods]
impl Attempt {
    fn __repr__(&self) -> String {
        match &self.error_code {
            None => format!(
                "Attempt(successful=True, delay_ms={:.1}, duration_ms={:.1})",
                self.delay_ms, self.duration_ms
            ),
            Some(code) => format!(
                "Attempt(successful=False, error_code={code:?}, delay_ms={:.1}, duration_ms={:.1})",
                self.delay_ms, self.duration_ms
            ),
        }
    }
}

/// Where a record landed: what a put's future resolves to.
#[pyclass(frozen, module = "kinesis_rs")]
pub struct PutResult {
    outcome: PutOutcome,
}

#[pymethods]
impl PutResult {
    /// The shard that stored the record.
    #[getter]
    fn shard_id(&self) -> &str {
        self.outcome.shard_id.as_str()
    }

    /// The sequence number of the Kinesis record that carried it.
    #[getter]
    fn sequence_number(&self) -> &str {
        self.outcome.sequence_number.as_str()
    }

    /// Its index in that Kinesis record's aggregate; None when it was sent on its own.
    #[getter]
    fn sub_sequence_number(&self) -> Option<u64> {
        self.outcome.sub_sequence_number
    }

    /// Every attempt, the last one successful.
    #[getter]
    fn attempts(&self) -> Vec<Attempt> {
        self.outcome.attempts.iter().map(Attempt::from).collect()
    }

    /// Always True: a failed put raises instead (KPL's `UserRecordResult.isSuccessful`).
    #[getter]
    fn successful(&self) -> bool {
        true
    }

    /// The result as a dict.
    fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        dict.set_item("shard_id", self.shard_id())?;
        dict.set_item("sequence_number", self.sequence_number())?;
        dict.set_item("sub_sequence_number", self.sub_sequence_number())?;
        dict.set_item("attempts", self.attempts())?;
        Ok(dict)
    }

    fn __repr__(&self) -> String {
        format!(
            "PutResult(shard_id={:?}, sequence_number={:?}, sub_sequence_number={:?}, attempts={})",
            self.shard_id(),
            self.sequence_number(),
            self.sub_sequence_number(),
            self.outcome.attempts.len()
        )
    }
}

/// Which of a producer's puts have their Python future resolved: puts are numbered as they are
/// made, and `flush`/`close` wait until every put numbered before them is done.
#[derive(Default)]
struct Tracker {
    state: Mutex<TrackerState>,
    changed: Notify,
}

#[derive(Default)]
struct TrackerState {
    next: u64,
    /// Every put numbered below this is done.
    done_below: u64,
    /// Done puts numbered above `done_below`.
    done_above: BTreeSet<u64>,
}

impl Tracker {
    fn register(&self) -> u64 {
        let mut state = self.state.lock().expect("not poisoned");
        state.next += 1;
        state.next - 1
    }

    fn next(&self) -> u64 {
        self.state.lock().expect("not poisoned").next
    }

    fn done(&self, id: u64) {
        let mut guard = self.state.lock().expect("not poisoned");
        let state = &mut *guard;
        if id == state.done_below {
            state.done_below += 1;
            while state.done_above.remove(&state.done_below) {
                state.done_below += 1;
            }
        } else {
            state.done_above.insert(id);
        }
        drop(guard);
        self.changed.notify_waiters();
    }

    async fn wait_until(&self, target: u64) {
        loop {
            let changed = self.changed.notified();
            let mut changed = std::pin::pin!(changed);
            changed.as_mut().enable();
            if self.state.lock().expect("not poisoned").done_below >= target {
                return;
            }
            changed.await;
        }
    }
}

/// A put's outcome on its way to its Python future.
struct Completion {
    future: Py<PyAny>,
    result: Result<PutOutcome, PutError>,
    tracker: Arc<Tracker>,
    id: u64,
}

/// The completer thread's queue. The thread takes the GIL once per batch of outcomes, never
/// on a runtime worker (a worker waiting for the GIL would stall every producer's I/O).
fn completions() -> &'static mpsc::Sender<Completion> {
    static SENDER: OnceLock<mpsc::Sender<Completion>> = OnceLock::new();
    SENDER.get_or_init(|| {
        let (sender, receiver) = mpsc::channel::<Completion>();
        std::thread::Builder::new()
            .name("kinesis-rs-completer".into())
            .spawn(move || {
                while let Ok(first) = receiver.recv() {
                    let mut batch = vec![first];
                    batch.extend(receiver.try_iter().take(4_095));
                    let done: Vec<(Arc<Tracker>, u64)> = Python::attach(|py| {
                        batch
                            .into_iter()
                            .map(|completion| {
                                resolve(py, &completion.future, completion.result);
                                (completion.tracker, completion.id)
                            })
                            .collect()
                    });
                    for (tracker, id) in done {
                        tracker.done(id);
                    }
                }
            })
            .expect("the completer thread starts");
        sender
    })
}

fn resolve(py: Python<'_>, future: &Py<PyAny>, result: Result<PutOutcome, PutError>) {
    let resolved = match result {
        Ok(outcome) => Py::new(py, PutResult { outcome })
            .and_then(|result| future.call_method1(py, "set_result", (result,))),
        Err(err) => {
            let exception = errors::put_error_value(py, err).into_value(py);
            future.call_method1(py, "set_exception", (exception,))
        }
    };
    if let Err(err) = resolved {
        // Only if the application resolved the future itself; nothing else to tell it.
        err.display(py);
    }
}

/// A new `concurrent.futures.Future`, already marked running: a put cannot be cancelled.
fn new_future(py: Python<'_>) -> PyResult<Py<PyAny>> {
    static FUTURE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    let future = FUTURE.import(py, "concurrent.futures", "Future")?.call0()?;
    future.call_method0("set_running_or_notify_cancel")?;
    Ok(future.unbind())
}

/// Record data from Python: bytes, str (UTF-8), or any buffer (bytearray, memoryview, ...).
fn data_bytes(py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<Bytes> {
    if let Ok(bytes) = data.cast::<PyBytes>() {
        return Ok(Bytes::copy_from_slice(bytes.as_bytes()));
    }
    if let Ok(text) = data.cast::<PyString>() {
        return Ok(Bytes::copy_from_slice(text.to_str()?.as_bytes()));
    }
    match PyBuffer::<u8>::get(data) {
        Ok(buffer) => Ok(Bytes::from(buffer.to_vec(py)?)),
        Err(_) => Err(PyTypeError::new_err(format!(
            "data must be bytes, bytearray, memoryview or str, not {}",
            data.get_type().name()?
        ))),
    }
}

/// A Kinesis producer in the manner of the KPL: records are aggregated per shard, collected
/// into `PutRecords` requests, retried per record until `RecordTtl`, within the shards' limits.
///
/// `Producer(stream_name, region=None, endpoint_url=None, **kpl_options)`: `kpl_options` are
/// the KPL's option names (`RecordMaxBufferedTime=100`, `RecordTtl=30000`, `AggregationEnabled=False`,
/// ...), durations in milliseconds. Use it as a context manager, or call `close()`.
#[pyclass(frozen, module = "kinesis_rs")]
pub struct Producer {
    stream_name: String,
    inner: Arc<Mutex<Option<kinesis_producer::Producer>>>,
    tracker: Arc<Tracker>,
}

/// A producer as [`close_all_producers`] finds it: its Rust producer (gone once closed) and its
/// futures' tracker.
type Registered = (
    std::sync::Weak<Mutex<Option<kinesis_producer::Producer>>>,
    Arc<Tracker>,
);

/// Every producer not yet dropped, so that the interpreter's exit can deliver what they hold.
static LIVE: Mutex<Vec<Registered>> = Mutex::new(Vec::new());

fn register(inner: &Arc<Mutex<Option<kinesis_producer::Producer>>>, tracker: &Arc<Tracker>) {
    let mut live = LIVE.lock().expect("not poisoned");
    live.retain(|(inner, _)| inner.strong_count() > 0);
    live.push((Arc::downgrade(inner), tracker.clone()));
}

/// Shuts `inner`'s producer down, if it is still open, and waits (GIL released) until every
/// record put before has its outcome and its future is resolved.
fn close(
    py: Python<'_>,
    inner: &Mutex<Option<kinesis_producer::Producer>>,
    tracker: &Arc<Tracker>,
) -> PyResult<()> {
    let Some(producer) = inner.lock().expect("not poisoned").take() else {
        return Ok(());
    };
    let tracker = tracker.clone();
    let target = tracker.next();
    wait(py, async move {
        let _ = producer.shutdown().await;
        tracker.wait_until(target).await;
    })
}

/// Closes every producer still open: `kinesis_rs` registers it with `atexit`, so records put
/// without a `close()` are still delivered (or fail, resolving their futures) before the
/// interpreter exits.
#[pyfunction]
pub(crate) fn close_all_producers(py: Python<'_>) -> PyResult<()> {
    let live = std::mem::take(&mut *LIVE.lock().expect("not poisoned"));
    for (inner, tracker) in live {
        if let Some(inner) = inner.upgrade() {
            close(py, &inner, &tracker)?;
        }
    }
    Ok(())
}

impl Producer {
    fn producer(&self, py: Python<'_>) -> PyResult<kinesis_producer::Producer> {
        self.inner
            .lock()
            .expect("not poisoned")
            .clone()
            .ok_or_else(|| {
                errors::raise(
                    py,
                    errors::producer_closed,
                    (format!("the producer of {} is closed", self.stream_name),),
                )
            })
    }

    fn submit(
        py: Python<'_>,
        producer: &kinesis_producer::Producer,
        record: UserRecord,
    ) -> PyResult<kinesis_producer::PutHandle> {
        let submitted = match producer.try_put(record) {
            // Backpressure: wait for room with the GIL released.
            Err(SubmitError::Full(record)) => wait(py, producer.put(*record))?,
            other => other,
        };
        submitted.map_err(|err| match err {
            SubmitError::Invalid(err) => errors::invalid_record(err),
            other => errors::raise(py, errors::producer_closed, (other.to_string(),)),
        })
    }
}

#[pymethods]
impl Producer {
    /// Lists the stream's shards and starts the producer.
    #[new]
    #[pyo3(signature = (stream_name, region=None, endpoint_url=None, **kpl_options))]
    fn new(
        py: Python<'_>,
        stream_name: String,
        mut region: Option<String>,
        endpoint_url: Option<String>,
        kpl_options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let mut config = ProducerConfig::default();
        for (key, value) in kpl_options.into_iter().flatten() {
            let key: String = key.extract()?;
            let value = option_value(&key, &value)?;
            // The KPL's Region option would otherwise be accepted and ignored: honour it.
            if key == "Region" {
                region.get_or_insert(value);
                continue;
            }
            config.set(&key, &value).map_err(errors::invalid_config)?;
        }
        config.validate().map_err(errors::invalid_config)?;
        let stream = stream_name.clone();
        let built = wait(py, async move {
            let sdk = sdk_config(endpoint_url, region).await;
            kinesis_producer::Producer::builder(aws_sdk_kinesis::Client::new(&sdk), stream)
                .config(config)
                .build()
                .await
        })?;
        match built {
            Ok(producer) => {
                let inner = Arc::new(Mutex::new(Some(producer)));
                let tracker = Arc::default();
                register(&inner, &tracker);
                Ok(Producer {
                    stream_name,
                    inner,
                    tracker,
                })
            }
            Err(BuildError::Config(err)) => Err(errors::invalid_config(err)),
            Err(BuildError::StreamNotFound { stream }) => Err(errors::raise(
                py,
                errors::stream_not_found,
                (format!("stream {stream} not found"), stream),
            )),
            Err(other) => Err(errors::raise(
                py,
                errors::kinesis_error,
                (other.to_string(),),
            )),
        }
    }

    /// Puts a record. Returns a `concurrent.futures.Future` that resolves to a `PutResult`, or
    /// fails with `RecordExpired` (not put within `RecordTtl`), `RecordThrottled`,
    /// `RecordRejected` or `RecordAborted`, each carrying the record. Raises `ValueError` at once
    /// for an empty or over-256-character partition key, an explicit hash key that is not a
    /// decimal in 0..2^128, or data over 1 MiB. Blocks (GIL released) only while the producer
    /// holds `MaxOutstandingRecords` / `MaxOutstandingBytes` or its pipeline is behind.
    #[pyo3(signature = (partition_key, data, explicit_hash_key=None))]
    fn put(
        &self,
        py: Python<'_>,
        partition_key: String,
        data: &Bound<'_, PyAny>,
        explicit_hash_key: Option<&str>,
    ) -> PyResult<Py<PyAny>> {
        let producer = self.producer(py)?;
        let mut record = UserRecord::new(partition_key, data_bytes(py, data)?)
            .map_err(errors::invalid_record)?;
        if let Some(key) = explicit_hash_key {
            record = record
                .with_explicit_hash_key(key)
                .map_err(errors::invalid_record)?;
        }
        let future = new_future(py)?;
        let id = self.tracker.register();
        let handle = match Self::submit(py, &producer, record) {
            Ok(handle) => handle,
            Err(err) => {
                self.tracker.done(id);
                return Err(err);
            }
        };
        let completion_future = future.clone_ref(py);
        let tracker = self.tracker.clone();
        runtime().spawn(async move {
            let result = handle.await;
            let _ = completions().send(Completion {
                future: completion_future,
                result,
                tracker,
                id,
            });
        });
        Ok(future)
    }

    /// `put` for asyncio: an awaitable of the `PutResult` (`asyncio.wrap_future` of `put`'s
    /// future), to be called from a running event loop.
    #[pyo3(signature = (partition_key, data, explicit_hash_key=None))]
    fn put_async<'py>(
        &self,
        py: Python<'py>,
        partition_key: String,
        data: &Bound<'py, PyAny>,
        explicit_hash_key: Option<&str>,
    ) -> PyResult<Bound<'py, PyAny>> {
        static WRAP_FUTURE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
        let future = self.put(py, partition_key, data, explicit_hash_key)?;
        WRAP_FUTURE
            .import(py, "asyncio", "wrap_future")?
            .call1((future,))
    }

    /// Sends every buffered record now and waits (GIL released) until every record put before
    /// this call has its outcome, and its future is resolved. A no-op once closed.
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        let Some(producer) = self.inner.lock().expect("not poisoned").clone() else {
            return Ok(());
        };
        let tracker = self.tracker.clone();
        let target = tracker.next();
        wait(py, async move {
            // Closed meanwhile (close() from another thread): it flushes too.
            let _ = producer.flush().await;
            tracker.wait_until(target).await;
        })
    }

    /// Refuses new records, delivers every buffered one (each future resolves: put, expired or
    /// failed), then stops. Idempotent.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        close(py, &self.inner, &self.tracker)
    }

    /// The stream this producer writes to.
    #[getter]
    fn stream_name(&self) -> &str {
        &self.stream_name
    }

    /// Records put but not yet resolved.
    #[getter]
    fn outstanding_records(&self) -> usize {
        self.inner
            .lock()
            .expect("not poisoned")
            .as_ref()
            .map_or(0, |p| p.outstanding_records())
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.inner.lock().expect("not poisoned").is_none()
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_exc_info))]
    fn __exit__(
        &self,
        py: Python<'_>,
        _exc_info: &Bound<'_, pyo3::types::PyTuple>,
    ) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!(
            "Producer(stream_name={:?}, closed={})",
            self.stream_name,
            self.closed()
        )
    }
}
