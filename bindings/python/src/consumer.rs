//! `Scheduler`: a KCL worker whose record processors are Python objects with amazon-kclpy v3's
//! methods. Each call into Python runs on the runtime's blocking pool with the GIL taken for
//! the call only; checkpoints from Python block on the runtime with the GIL released.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use kinesis_consumer::lease::LeaseConfig;
use kinesis_consumer::retrieval::{FanOutConfig, PollingConfig, RetrievalConfig};
use kinesis_consumer::{
    InitialPosition, InitializationInput, ProcessRecordsInput as RustProcessRecordsInput,
    ProcessorError, RecordProcessor, RecordProcessorFactory, SchedulerError, SchedulerHandle,
};
use kinesis_producer::ShardId;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use tokio::sync::watch;

use crate::errors;
use crate::inputs::{
    InitializeInput, LeaseLostInput, ProcessRecordsInput, ShardEndedInput, ShutdownRequestedInput,
};
use crate::runtime::{option_value, runtime, sdk_config, wait};

/// Makes a [`PyProcessor`] per shard. The Python factory is called later, in `initialize`, on
/// a blocking thread: `create` runs on a runtime worker, where waiting for the GIL would stall
/// the worker's other tasks.
struct PyFactory {
    factory: Arc<Py<PyAny>>,
    retry_failed_batches: bool,
}

impl RecordProcessorFactory for PyFactory {
    type Processor = PyProcessor;

    fn create(&self, _shard_id: &ShardId) -> PyProcessor {
        PyProcessor {
            factory: self.factory.clone(),
            retry_failed_batches: self.retry_failed_batches,
            instance: None,
        }
    }
}

/// One shard's Python processor.
struct PyProcessor {
    factory: Arc<Py<PyAny>>,
    retry_failed_batches: bool,
    instance: Option<Arc<Py<PyAny>>>,
}

/// Why a Python callback failed (its traceback is already printed).
#[derive(Debug)]
struct PythonRaised(String);

impl std::fmt::Display for PythonRaised {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the Python record processor raised {}", self.0)
    }
}

impl std::error::Error for PythonRaised {}

impl PyProcessor {
    /// Runs `call` on the blocking pool with the GIL, after creating the Python processor if
    /// there is none yet. A raised exception is printed (with its traceback) to stderr.
    async fn call<F>(&mut self, method: &'static str, call: F) -> Result<(), PythonRaised>
    where
        F: for<'py> FnOnce(Python<'py>, &Bound<'py, PyAny>) -> PyResult<()> + Send + 'static,
    {
        let factory = self.factory.clone();
        let instance = self.instance.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            Python::attach(|py| {
                let instance = match instance {
                    Some(instance) => instance,
                    None => match factory.call0(py) {
                        Ok(instance) => Arc::new(instance),
                        Err(err) => {
                            let message = format!("{err} (in processor_factory)");
                            err.display(py);
                            return (None, Err(PythonRaised(message)));
                        }
                    },
                };
                let result = call(py, instance.bind(py)).map_err(|err| {
                    let message = format!("{err} (in {method})");
                    err.display(py);
                    PythonRaised(message)
                });
                (Some(instance), result)
            })
        })
        .await;
        match outcome {
            Ok((instance, result)) => {
                if instance.is_some() {
                    self.instance = instance;
                }
                result
            }
            Err(join) => Err(PythonRaised(format!("a panic: {join}"))),
        }
    }
}

impl RecordProcessor for PyProcessor {
    async fn initialize(&mut self, input: InitializationInput) {
        let _ = self
            .call("initialize", move |py, processor| {
                processor.call_method1("initialize", (InitializeInput::from(input),))?;
                let _ = py;
                Ok(())
            })
            .await;
    }

    async fn process_records(
        &mut self,
        input: RustProcessRecordsInput<'_>,
    ) -> Result<(), ProcessorError> {
        let checkpointer = input.checkpointer.clone();
        let (records, millis_behind_latest) = (input.records, input.millis_behind_latest);
        let result = self
            .call("process_records", move |py, processor| {
                let input =
                    ProcessRecordsInput::new(py, records, millis_behind_latest, checkpointer)?;
                processor.call_method1("process_records", (input,))?;
                Ok(())
            })
            .await;
        match result {
            Err(err) if self.retry_failed_batches => Err(Box::new(err)),
            // amazon-kclpy's (and the Java KCL's) way: the error is reported, the batch counts
            // as processed.
            _ => Ok(()),
        }
    }

    async fn lease_lost(&mut self) {
        let _ = self
            .call("lease_lost", |_py, processor| {
                processor.call_method1("lease_lost", (LeaseLostInput::default(),))?;
                Ok(())
            })
            .await;
    }

    async fn shard_ended(&mut self, checkpointer: &kinesis_consumer::Checkpointer) {
        let checkpointer = checkpointer.clone();
        let _ = self
            .call("shard_ended", move |py, processor| {
                let input = ShardEndedInput::new(py, checkpointer)?;
                processor.call_method1("shard_ended", (input,))?;
                Ok(())
            })
            .await;
    }

    async fn shutdown_requested(&mut self, checkpointer: &kinesis_consumer::Checkpointer) {
        let checkpointer = checkpointer.clone();
        let _ = self
            .call("shutdown_requested", move |py, processor| {
                let input = ShutdownRequestedInput::new(py, checkpointer)?;
                processor.call_method1("shutdown_requested", (input,))?;
                Ok(())
            })
            .await;
    }
}

enum State {
    Built(Box<kinesis_consumer::Scheduler<PyFactory>>),
    Running(SchedulerHandle),
    Stopped,
}

/// A KCL worker: takes leases on the stream's shards (lease table in DynamoDB named after the
/// application), reads them, and calls one Python record processor per shard.
///
/// `processor_factory` is called with no arguments to make each shard's processor (a class
/// with amazon-kclpy v3's methods works as is). `run()` blocks until Ctrl-C or `shutdown()`;
/// `start()` / `shutdown()` for embedding; as a context manager it starts on entry and shuts
/// down on exit.
#[pyclass(frozen, module = "kinesis_rs")]
pub struct Scheduler {
    state: Mutex<State>,
    worker_id: String,
    stopped: watch::Sender<bool>,
}

fn initial_position(name: &str, timestamp: Option<&Bound<'_, PyAny>>) -> PyResult<InitialPosition> {
    match name.to_ascii_uppercase().as_str() {
        "TRIM_HORIZON" => Ok(InitialPosition::TrimHorizon),
        "LATEST" => Ok(InitialPosition::Latest),
        "AT_TIMESTAMP" => {
            let timestamp = timestamp.ok_or_else(|| {
                PyValueError::new_err(
                    "initial_position AT_TIMESTAMP needs initial_position_timestamp",
                )
            })?;
            // A datetime, or seconds since the Unix epoch.
            let seconds: f64 = match timestamp.call_method0("timestamp") {
                Ok(seconds) => seconds.extract()?,
                Err(_) => timestamp.extract()?,
            };
            if !seconds.is_finite() || seconds < 0.0 {
                return Err(PyValueError::new_err(format!(
                    "initial_position_timestamp {seconds} is not a time after 1970"
                )));
            }
            Ok(InitialPosition::AtTimestamp(
                SystemTime::UNIX_EPOCH + Duration::from_secs_f64(seconds),
            ))
        }
        other => Err(PyValueError::new_err(format!(
            "initial_position {other:?}: expected TRIM_HORIZON, LATEST or AT_TIMESTAMP"
        ))),
    }
}

impl Scheduler {
    fn request_stop(&self) {
        self.stopped.send_replace(true);
    }
}

#[pymethods]
impl Scheduler {
    /// Creates the lease table if absent; the worker starts with `run()` or `start()`.
    #[new]
    #[pyo3(signature = (
        stream_name,
        application_name,
        processor_factory,
        region=None,
        endpoint_url=None,
        dynamodb_endpoint_url=None,
        initial_position="TRIM_HORIZON",
        initial_position_timestamp=None,
        worker_id=None,
        failover_time_millis=10_000,
        max_records=10_000,
        idle_time_between_reads_millis=1_500,
        shard_sync_interval_millis=60_000,
        parent_shard_poll_interval_millis=10_000,
        max_leases_for_worker=None,
        max_leases_to_steal_at_one_time=1,
        retry_failed_batches=true,
        retrieval_mode="POLLING",
        consumer_name=None,
        verify_credentials=true,
        **lease_options
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        stream_name: String,
        application_name: String,
        processor_factory: Bound<'_, PyAny>,
        region: Option<String>,
        endpoint_url: Option<String>,
        dynamodb_endpoint_url: Option<String>,
        initial_position: &str,
        initial_position_timestamp: Option<&Bound<'_, PyAny>>,
        worker_id: Option<String>,
        failover_time_millis: u64,
        max_records: i32,
        idle_time_between_reads_millis: u64,
        shard_sync_interval_millis: u64,
        parent_shard_poll_interval_millis: u64,
        max_leases_for_worker: Option<usize>,
        max_leases_to_steal_at_one_time: usize,
        retry_failed_batches: bool,
        retrieval_mode: &str,
        consumer_name: Option<String>,
        verify_credentials: bool,
        lease_options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        if !processor_factory.is_callable() {
            return Err(PyTypeError::new_err(
                "processor_factory must be callable (e.g. the record processor class)",
            ));
        }
        let position = self::initial_position(initial_position, initial_position_timestamp)?;
        let mut lease = LeaseConfig::default()
            .failover_time(Duration::from_millis(failover_time_millis))
            .max_leases_to_steal_at_one_time(max_leases_to_steal_at_one_time);
        if let Some(max) = max_leases_for_worker {
            lease = lease.max_leases_for_worker(max);
        }
        for (key, value) in lease_options.into_iter().flatten() {
            let key: String = key.extract()?;
            let value = option_value(&key, &value)?;
            lease.set(&key, &value).map_err(errors::invalid_option)?;
        }
        lease.validate().map_err(errors::invalid_option)?;
        if !(1..=10_000).contains(&max_records) {
            return Err(PyValueError::new_err(format!(
                "max_records {max_records}: expected 1..=10000"
            )));
        }
        let polling = PollingConfig {
            max_records,
            idle_time_between_reads: Duration::from_millis(idle_time_between_reads_millis),
            ..PollingConfig::default()
        };
        let retrieval = match retrieval_mode.to_ascii_uppercase().as_str() {
            "POLLING" => RetrievalConfig::Polling(polling),
            "FANOUT" => RetrievalConfig::FanOut(FanOutConfig {
                consumer_name,
                ..FanOutConfig::default()
            }),
            other => {
                return Err(PyValueError::new_err(format!(
                    "retrieval_mode {other:?}: expected \"POLLING\" or \"FANOUT\""
                )));
            }
        };
        let factory = PyFactory {
            factory: Arc::new(processor_factory.unbind()),
            retry_failed_batches,
        };
        let built = wait(py, async move {
            let kinesis =
                aws_sdk_kinesis::Client::new(&sdk_config(endpoint_url, region.clone()).await);
            let dynamodb =
                aws_sdk_dynamodb::Client::new(&sdk_config(dynamodb_endpoint_url, region).await);
            let mut builder = kinesis_consumer::Scheduler::builder(
                kinesis,
                dynamodb,
                stream_name,
                application_name,
            )
            .initial_position(position)
            .lease_config(lease)
            .retrieval(retrieval)
            .shard_sync_interval(Duration::from_millis(shard_sync_interval_millis))
            .parent_poll_interval(Duration::from_millis(parent_shard_poll_interval_millis))
            .verify_credentials(verify_credentials);
            if let Some(worker_id) = worker_id {
                builder = builder.worker_id(worker_id);
            }
            builder.build(factory).await
        })?;
        let scheduler = built.map_err(|err| match err {
            SchedulerError::Credentials { .. } => {
                errors::raise(py, errors::credentials_error, (err.to_string(),))
            }
            other => errors::raise(py, errors::scheduler_error, (other.to_string(),)),
        })?;
        Ok(Scheduler {
            worker_id: scheduler.worker_id().to_owned(),
            state: Mutex::new(State::Built(Box::new(scheduler))),
            stopped: watch::channel(false).0,
        })
    }

    /// Starts the worker in the background and returns. Idempotent while running.
    fn start(&self, py: Python<'_>) -> PyResult<()> {
        let mut state = self.state.lock().expect("not poisoned");
        match std::mem::replace(&mut *state, State::Stopped) {
            State::Built(scheduler) => {
                let _runtime = runtime().enter();
                *state = State::Running(scheduler.spawn());
                Ok(())
            }
            running @ State::Running(_) => {
                *state = running;
                Ok(())
            }
            State::Stopped => Err(errors::raise(
                py,
                errors::scheduler_error,
                ("the scheduler was shut down; make a new one",),
            )),
        }
    }

    /// Graceful shutdown: every processor gets `shutdown_requested` (and may checkpoint), then
    /// the leases are released so other workers take them at once. Blocks until done, with the
    /// GIL released; called from inside a record processor it only requests the shutdown
    /// (waiting there would wait for that very processor).
    fn shutdown(&self, py: Python<'_>) -> PyResult<()> {
        let previous = std::mem::replace(
            &mut *self.state.lock().expect("not poisoned"),
            State::Stopped,
        );
        let State::Running(handle) = previous else {
            self.request_stop();
            return Ok(());
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            // A processor callback (the runtime's blocking pool).
            let stopped = self.stopped.clone();
            runtime().spawn(async move {
                let _ = handle.shutdown().await;
                stopped.send_replace(true);
            });
            return Ok(());
        }
        let result = wait(py, handle.shutdown());
        self.request_stop();
        result?.map_err(|err| errors::raise(py, errors::scheduler_error, (err.to_string(),)))
    }

    /// Starts the worker and blocks (GIL released) until `shutdown()` is called from another
    /// thread or Ctrl-C; Ctrl-C shuts down gracefully and returns. A second Ctrl-C during that
    /// shutdown raises `KeyboardInterrupt` and leaves the rest of it to the background.
    fn run(&self, py: Python<'_>) -> PyResult<()> {
        self.start(py)?;
        let mut stopped = self.stopped.subscribe();
        let waited = wait(py, async move {
            let _ = stopped.wait_for(|stopped| *stopped).await;
        });
        match waited {
            Ok(()) => Ok(()),
            Err(err) if err.is_instance_of::<pyo3::exceptions::PyKeyboardInterrupt>(py) => {
                self.shutdown(py)
            }
            Err(err) => {
                self.shutdown(py)?;
                Err(err)
            }
        }
    }

    /// This worker's id (the lease owner it writes).
    #[getter]
    fn worker_id(&self) -> &str {
        &self.worker_id
    }

    /// Whether the worker runs.
    #[getter]
    fn running(&self) -> bool {
        matches!(*self.state.lock().expect("not poisoned"), State::Running(_))
    }

    fn __enter__(slf: Bound<'_, Self>) -> PyResult<Bound<'_, Self>> {
        slf.get().start(slf.py())?;
        Ok(slf)
    }

    #[pyo3(signature = (*_exc_info))]
    fn __exit__(
        &self,
        py: Python<'_>,
        _exc_info: &Bound<'_, pyo3::types::PyTuple>,
    ) -> PyResult<bool> {
        self.shutdown(py)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!(
            "Scheduler(worker_id={:?}, running={})",
            self.worker_id,
            self.running()
        )
    }
}
