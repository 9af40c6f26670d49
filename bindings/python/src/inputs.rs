//! What a Python record processor receives, shaped like amazon-kclpy's `messages` module, and
//! its checkpointer.

use std::time::UNIX_EPOCH;

use base64::Engine as _;
use kinesis_consumer::lease::Checkpoint;
use kinesis_consumer::{InitializationInput, Position};
use kinesis_producer::SequenceNumber;
use pyo3::exceptions::PyKeyError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyList};

use crate::errors;
use crate::runtime::wait;

/// One user record (deaggregated), like amazon-kclpy's `messages.Record`.
#[pyclass(frozen, module = "kinesis_rs")]
pub struct Record {
    record: kinesis_consumer::Record,
}

impl Record {
    fn timestamp_millis_value(&self) -> Option<i64> {
        self.record
            .approximate_arrival
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as i64)
    }
}

#[pymethods]
impl Record {
    /// The data as bytes.
    #[getter]
    fn binary_data<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.record.data)
    }

    /// The data, base64-encoded (as amazon-kclpy's `data`).
    #[getter]
    fn data(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.record.data)
    }

    /// The partition key.
    #[getter]
    fn partition_key(&self) -> &str {
        self.record.partition_key.as_str()
    }

    /// The explicit hash key, when the record came out of a KPL aggregate that had one.
    #[getter]
    fn explicit_hash_key(&self) -> Option<&str> {
        self.record.explicit_hash_key.as_ref().map(|k| k.as_str())
    }

    /// The sequence number of the Kinesis record that carried it (a decimal string).
    #[getter]
    fn sequence_number(&self) -> &str {
        self.record.sequence_number.as_str()
    }

    /// Its index in that Kinesis record's KPL aggregate; 0 for a plain record.
    #[getter]
    fn sub_sequence_number(&self) -> u64 {
        self.record.sub_sequence_number
    }

    /// Whether it came out of a KPL aggregate.
    #[getter]
    fn aggregated(&self) -> bool {
        self.record.aggregated
    }

    /// When Kinesis accepted it, in milliseconds since the Unix epoch.
    #[getter]
    fn timestamp_millis(&self) -> Option<i64> {
        self.timestamp_millis_value()
    }

    /// When Kinesis accepted it, as a naive local `datetime` (as amazon-kclpy gives it).
    #[getter]
    fn approximate_arrival_timestamp<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        static DATETIME: PyOnceLock<Py<pyo3::types::PyType>> = PyOnceLock::new();
        let Some(millis) = self.timestamp_millis_value() else {
            return Ok(None);
        };
        let datetime = DATETIME.import(py, "datetime", "datetime")?;
        datetime
            .call_method1("fromtimestamp", (millis as f64 / 1000.0,))
            .map(Some)
    }

    /// A field by its MultiLangDaemon JSON name (`data`, `partitionKey`, `sequenceNumber`,
    /// `subSequenceNumber`, `approximateArrivalTimestamp`), as amazon-kclpy's `Record.get`.
    fn get<'py>(&self, py: Python<'py>, field: &str) -> PyResult<Bound<'py, PyAny>> {
        Ok(match field {
            "data" => self.data().into_pyobject(py)?.into_any(),
            "partitionKey" => self.partition_key().into_pyobject(py)?.into_any(),
            "sequenceNumber" => self.sequence_number().into_pyobject(py)?.into_any(),
            "subSequenceNumber" => self.sub_sequence_number().into_pyobject(py)?.into_any(),
            "approximateArrivalTimestamp" => self.timestamp_millis().into_pyobject(py)?,
            "explicitHashKey" => self.explicit_hash_key().into_pyobject(py)?,
            "action" => "record".into_pyobject(py)?.into_any(),
            _ => return Err(PyKeyError::new_err(field.to_owned())),
        })
    }

    fn __getitem__<'py>(&self, py: Python<'py>, field: &str) -> PyResult<Bound<'py, PyAny>> {
        self.get(py, field)
    }

    fn __repr__(&self) -> String {
        format!(
            "Record(partition_key={:?}, sequence_number={:?}, sub_sequence_number={}, {} bytes)",
            self.partition_key(),
            self.sequence_number(),
            self.sub_sequence_number(),
            self.record.data.len()
        )
    }
}

impl From<kinesis_consumer::Record> for Record {
    fn from(record: kinesis_consumer::Record) -> Self {
        Record { record }
    }
}

/// Checkpoints one shard, like amazon-kclpy's `kcl.Checkpointer`. Usable from any thread while
/// this worker holds the shard's lease; each call waits for the lease table with the GIL
/// released.
#[pyclass(frozen, module = "kinesis_rs")]
pub struct Checkpointer {
    inner: kinesis_consumer::Checkpointer,
}

impl Checkpointer {
    pub(crate) fn new(inner: kinesis_consumer::Checkpointer) -> Self {
        Checkpointer { inner }
    }
}

fn position(
    py: Python<'_>,
    sequence_number: &Bound<'_, PyAny>,
    sub_sequence_number: Option<u64>,
) -> PyResult<Position> {
    let text = sequence_number.str()?.to_string();
    let sequence_number = SequenceNumber::new(&text).map_err(|_| {
        errors::raise(
            py,
            errors::checkpoint_error,
            (
                "IllegalArgumentException",
                format!("{text:?} is not a sequence number"),
            ),
        )
    })?;
    Ok(Position {
        sequence_number,
        // The KCL's checkpoint(sequenceNumber) is at sub-sequence 0.
        sub_sequence_number: sub_sequence_number.unwrap_or(0),
    })
}

#[pymethods]
impl Checkpointer {
    /// Checkpoints at `sequence_number` / `sub_sequence_number` (processing resumes after that
    /// record), or without arguments at the last record delivered (at the shard's end: records
    /// SHARD_END). Raises `CheckpointError` whose `value` is the KCL exception name:
    /// "ShutdownException" once the lease is lost, "InvalidStateException" for a position
    /// beyond the last delivered record or behind the current checkpoint.
    #[pyo3(signature = (sequence_number=None, sub_sequence_number=None))]
    fn checkpoint(
        &self,
        py: Python<'_>,
        sequence_number: Option<&Bound<'_, PyAny>>,
        sub_sequence_number: Option<u64>,
    ) -> PyResult<()> {
        let checkpointer = self.inner.clone();
        let result = match sequence_number {
            None => wait(py, async move { checkpointer.checkpoint().await })?,
            Some(sequence_number) => {
                let position = position(py, sequence_number, sub_sequence_number)?;
                wait(
                    py,
                    async move { checkpointer.checkpoint_at(position).await },
                )?
            }
        };
        result.map_err(|err| errors::checkpoint_error_value(py, &err))
    }

    /// Stores a pending checkpoint (the first phase of a two-phase checkpoint); the next owner
    /// sees it in `InitializeInput.pending_checkpoint_sequence_number`.
    #[pyo3(signature = (sequence_number, sub_sequence_number=None))]
    fn prepare_checkpoint(
        &self,
        py: Python<'_>,
        sequence_number: &Bound<'_, PyAny>,
        sub_sequence_number: Option<u64>,
    ) -> PyResult<()> {
        let checkpointer = self.inner.clone();
        let position = position(py, sequence_number, sub_sequence_number)?;
        wait(py, async move {
            checkpointer.prepare_checkpoint(position).await
        })?
        .map_err(|err| errors::checkpoint_error_value(py, &err))
    }

    /// The shard.
    #[getter]
    fn shard_id(&self) -> &str {
        self.inner.shard_id().as_str()
    }

    fn __repr__(&self) -> String {
        format!("Checkpointer(shard_id={:?})", self.shard_id())
    }
}

/// What `initialize` is given, like amazon-kclpy's `messages.InitializeInput`.
#[pyclass(frozen, get_all, module = "kinesis_rs")]
pub struct InitializeInput {
    /// The shard this processor owns.
    pub shard_id: String,
    /// Where processing resumes: a sequence number, or TRIM_HORIZON / LATEST / AT_TIMESTAMP.
    pub sequence_number: String,
    /// The checkpoint's sub-sequence number (0 for the sentinels).
    pub sub_sequence_number: u64,
    /// A prepared (two-phase) checkpoint the previous owner did not commit, if any.
    pub pending_checkpoint_sequence_number: Option<String>,
    /// Its sub-sequence number.
    pub pending_checkpoint_sub_sequence_number: Option<u64>,
    /// "initialize".
    pub action: &'static str,
}

impl From<InitializationInput> for InitializeInput {
    fn from(input: InitializationInput) -> Self {
        let split = |checkpoint: &Checkpoint| {
            (
                checkpoint.as_str().to_owned(),
                checkpoint.sub_sequence_number(),
            )
        };
        let (sequence_number, sub_sequence_number) = split(&input.checkpoint);
        let pending = input.pending_checkpoint.as_ref().map(split);
        InitializeInput {
            shard_id: input.shard_id.as_str().to_owned(),
            sequence_number,
            sub_sequence_number,
            pending_checkpoint_sequence_number: pending.as_ref().map(|p| p.0.clone()),
            pending_checkpoint_sub_sequence_number: pending.map(|p| p.1),
            action: "initialize",
        }
    }
}

#[pymethods]
impl InitializeInput {
    fn __repr__(&self) -> String {
        format!(
            "InitializeInput(shard_id={:?}, sequence_number={:?}, sub_sequence_number={})",
            self.shard_id, self.sequence_number, self.sub_sequence_number
        )
    }
}

/// What `process_records` is given, like amazon-kclpy's `messages.ProcessRecordsInput`.
#[pyclass(frozen, get_all, module = "kinesis_rs")]
pub struct ProcessRecordsInput {
    /// The records (`Record`), deaggregated, in shard order. Never empty.
    pub records: Py<PyList>,
    /// How far behind the tip of the shard the batch is, if Kinesis said.
    pub millis_behind_latest: Option<i64>,
    /// Checkpoints this shard.
    pub checkpointer: Py<Checkpointer>,
    /// "processRecords".
    pub action: &'static str,
}

impl ProcessRecordsInput {
    pub(crate) fn new(
        py: Python<'_>,
        records: Vec<kinesis_consumer::Record>,
        millis_behind_latest: Option<i64>,
        checkpointer: kinesis_consumer::Checkpointer,
    ) -> PyResult<Self> {
        let records = records
            .into_iter()
            .map(|record| Py::new(py, Record::from(record)))
            .collect::<PyResult<Vec<_>>>()?;
        Ok(ProcessRecordsInput {
            records: PyList::new(py, records)?.unbind(),
            millis_behind_latest,
            checkpointer: Py::new(py, Checkpointer::new(checkpointer))?,
            action: "processRecords",
        })
    }
}

/// What `lease_lost` is given, like amazon-kclpy's `messages.LeaseLostInput`.
#[pyclass(frozen, get_all, module = "kinesis_rs")]
pub struct LeaseLostInput {
    /// "leaseLost".
    pub action: &'static str,
}

impl Default for LeaseLostInput {
    fn default() -> Self {
        LeaseLostInput {
            action: "leaseLost",
        }
    }
}

/// What `shard_ended` is given, like amazon-kclpy's `messages.ShardEndedInput`.
#[pyclass(frozen, get_all, module = "kinesis_rs")]
pub struct ShardEndedInput {
    /// Checkpoint with it (no arguments) to record SHARD_END.
    pub checkpointer: Py<Checkpointer>,
    /// "shardEnded".
    pub action: &'static str,
}

impl ShardEndedInput {
    pub(crate) fn new(
        py: Python<'_>,
        checkpointer: kinesis_consumer::Checkpointer,
    ) -> PyResult<Self> {
        Ok(ShardEndedInput {
            checkpointer: Py::new(py, Checkpointer::new(checkpointer))?,
            action: "shardEnded",
        })
    }
}

/// What `shutdown_requested` is given, like amazon-kclpy's `messages.ShutdownRequestedInput`.
#[pyclass(frozen, get_all, module = "kinesis_rs")]
pub struct ShutdownRequestedInput {
    /// Checkpoint what was processed before the lease is released.
    pub checkpointer: Py<Checkpointer>,
    /// "shutdownRequested".
    pub action: &'static str,
}

impl ShutdownRequestedInput {
    pub(crate) fn new(
        py: Python<'_>,
        checkpointer: kinesis_consumer::Checkpointer,
    ) -> PyResult<Self> {
        Ok(ShutdownRequestedInput {
            checkpointer: Py::new(py, Checkpointer::new(checkpointer))?,
            action: "shutdownRequested",
        })
    }
}
