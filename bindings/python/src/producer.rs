//! `Producer`: the KPL for Python. `put` hands the record to the Rust pipeline at once and
//! returns a [`PutHandle`], a native future of its outcome; `put_many` does the same for many
//! records in one call.
//!
//! ```text
//!  put() / put_many() ──try_put──► pipeline task ──► outcome in the core's completion block
//!   │ (GIL held: validation, enqueue;                 ▲ read by done()/result(); wakes waiters
//!   │  released only to wait for room)               │ and queues callbacks (see handle.rs)
//!   └────────────────────────────► PutHandle ────────┘
//! ```

use std::sync::{Arc, Mutex};
use std::time::UNIX_EPOCH;

use bytes::Bytes;
use kinesis_producer::{BuildError, ProducerConfig, PutOutcome, SubmitError, UserRecord};
use pyo3::buffer::PyBuffer;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use crate::errors;
use crate::handle::{self, PutHandle};
use crate::runtime::{option_value, sdk_config, wait};

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

/// Where a record landed: what a put's handle resolves to.
#[pyclass(frozen, module = "kinesis_rs")]
pub struct PutResult {
    outcome: PutOutcome,
}

impl From<PutOutcome> for PutResult {
    fn from(outcome: PutOutcome) -> Self {
        PutResult { outcome }
    }
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

/// One `put_many` item: `(partition_key, data)` or `(partition_key, data, explicit_hash_key)`.
fn record_item<'py>(
    item: &Bound<'py, PyAny>,
    index: usize,
) -> PyResult<(String, Bound<'py, PyAny>, Option<String>)> {
    let shape_error = || {
        let kind = item
            .get_type()
            .name()
            .map_or_else(|_| "?".to_owned(), |n| n.to_string());
        PyTypeError::new_err(format!(
            "put_many: item {index} must be a (partition_key, data[, explicit_hash_key]) tuple, not {kind}"
        ))
    };
    let tuple = item.cast::<PyTuple>().map_err(|_| shape_error())?;
    let (key, data, explicit) = match tuple.len() {
        2 => (tuple.get_item(0)?, tuple.get_item(1)?, None),
        3 => (
            tuple.get_item(0)?,
            tuple.get_item(1)?,
            Some(tuple.get_item(2)?),
        ),
        _ => return Err(shape_error()),
    };
    let key: String = key.extract().map_err(|_| {
        PyTypeError::new_err(format!(
            "put_many: item {index}: the partition key must be a str"
        ))
    })?;
    let explicit = match explicit {
        Some(value) if !value.is_none() => Some(value.extract::<String>().map_err(|_| {
            PyTypeError::new_err(format!(
                "put_many: item {index}: the explicit hash key must be a str or None"
            ))
        })?),
        _ => None,
    };
    Ok((key, data, explicit))
}

/// A validated record from `put`'s arguments (`ValueError` for a bad key or size, `TypeError`
/// for data of the wrong type).
fn user_record(
    py: Python<'_>,
    partition_key: String,
    data: &Bound<'_, PyAny>,
    explicit_hash_key: Option<&str>,
) -> PyResult<UserRecord> {
    let mut record =
        UserRecord::new(partition_key, data_bytes(py, data)?).map_err(errors::invalid_record)?;
    if let Some(key) = explicit_hash_key {
        record = record
            .with_explicit_hash_key(key)
            .map_err(errors::invalid_record)?;
    }
    Ok(record)
}

/// A Kinesis producer in the manner of the KPL: records are aggregated per shard, collected
/// into `PutRecords` requests, retried per record until `RecordTtl`, within the shards' limits.
///
/// `Producer(stream_name, region=None, endpoint_url=None, verify_credentials=True, **kpl_options)`:
/// `kpl_options` are the KPL's option names (`RecordMaxBufferedTime=100`, `RecordTtl=30000`,
/// `AggregationEnabled=False`, ...), durations in milliseconds. The credentials are resolved once
/// at start (`CredentialsError` when there are none; `verify_credentials=False` skips the check).
/// Use it as a context manager, or call `close()`.
#[pyclass(frozen, module = "kinesis_rs")]
pub struct Producer {
    stream_name: String,
    inner: Arc<Mutex<Option<kinesis_producer::Producer>>>,
}

/// Every producer not yet dropped (its Rust producer, gone once closed), so that the
/// interpreter's exit can deliver what they hold.
static LIVE: Mutex<Vec<std::sync::Weak<Mutex<Option<kinesis_producer::Producer>>>>> =
    Mutex::new(Vec::new());

fn register(inner: &Arc<Mutex<Option<kinesis_producer::Producer>>>) {
    let mut live = LIVE.lock().expect("not poisoned");
    live.retain(|inner| inner.strong_count() > 0);
    live.push(Arc::downgrade(inner));
}

/// Shuts `inner`'s producer down, if it is still open, and waits (GIL released) until every
/// record put before has its outcome and the done-callbacks of their handles have run.
fn close(py: Python<'_>, inner: &Mutex<Option<kinesis_producer::Producer>>) -> PyResult<()> {
    let Some(producer) = inner.lock().expect("not poisoned").take() else {
        return Ok(());
    };
    wait(py, async move {
        let _ = producer.shutdown().await;
    })?;
    handle::callbacks_done(py)
}

/// Closes every producer still open: `kinesis_rs` registers it with `atexit`, so records put
/// without a `close()` are still delivered (or fail, resolving their handles) before the
/// interpreter exits.
#[pyfunction]
pub(crate) fn close_all_producers(py: Python<'_>) -> PyResult<()> {
    let live = std::mem::take(&mut *LIVE.lock().expect("not poisoned"));
    for inner in live {
        if let Some(inner) = inner.upgrade() {
            close(py, &inner)?;
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
    #[pyo3(signature = (stream_name, region=None, endpoint_url=None, verify_credentials=true, **kpl_options))]
    fn new(
        py: Python<'_>,
        stream_name: String,
        mut region: Option<String>,
        endpoint_url: Option<String>,
        verify_credentials: bool,
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
                .verify_credentials(verify_credentials)
                .build()
                .await
        })?;
        match built {
            Ok(producer) => {
                let inner = Arc::new(Mutex::new(Some(producer)));
                register(&inner);
                Ok(Producer { stream_name, inner })
            }
            Err(BuildError::Config(err)) => Err(errors::invalid_config(err)),
            Err(BuildError::StreamNotFound { stream }) => Err(errors::raise(
                py,
                errors::stream_not_found,
                (format!("stream {stream} not found"), stream),
            )),
            Err(err @ BuildError::Credentials(_)) => Err(errors::raise(
                py,
                errors::credentials_error,
                (err.to_string(),),
            )),
            Err(other) => Err(errors::raise(
                py,
                errors::kinesis_error,
                (other.to_string(),),
            )),
        }
    }

    /// Puts a record. Returns a `PutHandle` that resolves to a `PutResult`, or fails with
    /// `RecordExpired` (not put within `RecordTtl`), `RecordThrottled`, `RecordRejected` or
    /// `RecordAborted`, each carrying the record. Raises `ValueError` at once for an empty or
    /// over-256-character partition key, an explicit hash key that is not a decimal in 0..2^128,
    /// or data over 1 MiB. Blocks (GIL released) only while the producer holds
    /// `MaxOutstandingRecords` / `MaxOutstandingBytes` or its pipeline is behind.
    #[pyo3(signature = (partition_key, data, explicit_hash_key=None))]
    fn put(
        &self,
        py: Python<'_>,
        partition_key: String,
        data: &Bound<'_, PyAny>,
        explicit_hash_key: Option<&str>,
    ) -> PyResult<Py<PutHandle>> {
        let producer = self.producer(py)?;
        let record = user_record(py, partition_key, data, explicit_hash_key)?;
        let handle = Self::submit(py, &producer, record)?;
        PutHandle::create(py, handle)
    }

    /// Puts many records in one call: `records` is an iterable of `(partition_key, data)` or
    /// `(partition_key, data, explicit_hash_key)` tuples. Returns their handles, in order. Every
    /// record is checked before any is put: a bad one raises (`ValueError`, `TypeError`, naming
    /// its index) and nothing is put. Blocks (GIL released) while the producer is full, as `put`.
    fn put_many<'py>(
        &self,
        py: Python<'py>,
        records: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let producer = self.producer(py)?;
        let mut parsed = Vec::with_capacity(records.len().unwrap_or(0));
        for (index, item) in records.try_iter()?.enumerate() {
            let (key, data, explicit) = record_item(&item?, index)?;
            let record = user_record(py, key, &data, explicit.as_deref()).map_err(|err| {
                let message = err.value(py).to_string();
                let wrapped = format!("put_many: item {index}: {message}; nothing was put");
                if err.is_instance_of::<pyo3::exceptions::PyTypeError>(py) {
                    PyTypeError::new_err(wrapped)
                } else {
                    pyo3::exceptions::PyValueError::new_err(wrapped)
                }
            })?;
            parsed.push(record);
        }
        let mut handles = Vec::with_capacity(parsed.len());
        for record in parsed {
            let handle = Self::submit(py, &producer, record)?;
            handles.push(PutHandle::create(py, handle)?);
        }
        PyList::new(py, handles)
    }

    /// `put` for asyncio: an `asyncio.Future` of the `PutResult`, to be called from a running
    /// event loop (`await producer.put(...)` works as well: the handle is awaitable).
    #[pyo3(signature = (partition_key, data, explicit_hash_key=None))]
    fn put_async<'py>(
        &self,
        py: Python<'py>,
        partition_key: String,
        data: &Bound<'py, PyAny>,
        explicit_hash_key: Option<&str>,
    ) -> PyResult<Bound<'py, PyAny>> {
        // The loop first: called outside one, nothing is put.
        let asyncio = py.import("asyncio")?;
        asyncio.call_method0("get_running_loop")?;
        let handle = self.put(py, partition_key, data, explicit_hash_key)?;
        handle::helper(py, "asyncio_future")?.call1((handle,))
    }

    /// Sends every buffered record now and waits (GIL released) until every record put before
    /// this call has its outcome (its handle is done) and the handles' done-callbacks have run.
    /// A no-op once closed.
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        let Some(producer) = self.inner.lock().expect("not poisoned").clone() else {
            return Ok(());
        };
        wait(py, async move {
            // Closed meanwhile (close() from another thread): it flushes too.
            let _ = producer.flush().await;
        })?;
        handle::callbacks_done(py)
    }

    /// Refuses new records, delivers every buffered one (each handle resolves: put, expired or
    /// failed), then stops. Idempotent.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        close(py, &self.inner)
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
