//! Rust errors as Python exceptions. The exception classes live in `kinesis_rs/errors.py`
//! (plain Python, so they carry attributes and can be caught and constructed like any other).

use kinesis_consumer::CheckpointError;
use kinesis_producer::{ConfigError, PutError, ValidationError};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyType};

use crate::producer::Attempt;

macro_rules! exception_classes {
    ($($fn_name:ident => $class:literal),* $(,)?) => {
        $(
            pub(crate) fn $fn_name(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
                static CLASS: PyOnceLock<Py<PyType>> = PyOnceLock::new();
                CLASS.import(py, "kinesis_rs.errors", $class)
            }
        )*
    };
}

exception_classes! {
    kinesis_error => "KinesisError",
    stream_not_found => "StreamNotFound",
    producer_closed => "ProducerClosed",
    put_error => "PutError",
    record_expired => "RecordExpired",
    record_throttled => "RecordThrottled",
    record_rejected => "RecordRejected",
    record_aborted => "RecordAborted",
    checkpoint_error => "CheckpointError",
    scheduler_error => "SchedulerError",
    credentials_error => "CredentialsError",
}

/// One of the exception classes above.
pub(crate) type ExceptionClass = for<'py> fn(Python<'py>) -> PyResult<&'py Bound<'py, PyType>>;

/// An instance of `class(*args)` as a `PyErr` (or the error constructing it).
pub(crate) fn raise<'py, A>(py: Python<'py>, class: ExceptionClass, args: A) -> PyErr
where
    A: pyo3::call::PyCallArgs<'py>,
{
    match class(py).and_then(|class| class.call1(args)) {
        Ok(instance) => PyErr::from_value(instance),
        Err(err) => err,
    }
}

/// A bad partition key, explicit hash key or data.
pub(crate) fn invalid_record(err: ValidationError) -> PyErr {
    PyValueError::new_err(err.to_string())
}

/// An unknown option or a value out of range.
pub(crate) fn invalid_option(err: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(err.to_string())
}

/// `ProducerConfig` refusals are `ValueError`s too.
pub(crate) fn invalid_config(err: ConfigError) -> PyErr {
    invalid_option(err)
}

/// The exception instance for a failed put: the record and its attempts come back with it.
pub(crate) fn put_error_value(py: Python<'_>, err: PutError) -> PyErr {
    let message = err.to_string();
    let class: ExceptionClass = match &err {
        PutError::Expired { .. } => record_expired,
        PutError::Throttled { .. } => record_throttled,
        PutError::Rejected { .. } => record_rejected,
        PutError::Aborted { .. } => record_aborted,
        _ => put_error,
    };
    let rejected = match &err {
        PutError::Rejected { code, message, .. } => Some((code.clone(), message.clone())),
        _ => None,
    };
    let attempts: Vec<Attempt> = match &err {
        PutError::Expired { attempts, .. }
        | PutError::Throttled { attempts, .. }
        | PutError::Rejected { attempts, .. } => attempts.iter().map(Attempt::from).collect(),
        _ => Vec::new(),
    };
    let attempts = match attempts
        .into_iter()
        .map(|attempt| Py::new(py, attempt))
        .collect::<PyResult<Vec<_>>>()
    {
        Ok(attempts) => attempts,
        Err(err) => return err,
    };
    let (partition_key, data, explicit_hash_key) = match err.into_record() {
        Some(record) => {
            let (key, explicit, data) = record.into_parts();
            (
                Some(key),
                Some(PyBytes::new(py, &data).unbind()),
                explicit.map(|key| key.as_str().to_owned()),
            )
        }
        None => (None, None, None),
    };
    match rejected {
        Some((code, error_message)) => raise(
            py,
            class,
            (
                message,
                partition_key,
                data,
                explicit_hash_key,
                attempts,
                code,
                error_message,
            ),
        ),
        None => raise(
            py,
            class,
            (message, partition_key, data, explicit_hash_key, attempts),
        ),
    }
}

/// A refused checkpoint: `CheckpointError(value)` with the KCL exception name as `value`.
pub(crate) fn checkpoint_error_value(py: Python<'_>, err: &CheckpointError) -> PyErr {
    raise(
        py,
        checkpoint_error,
        (err.kcl_exception_name(), err.to_string()),
    )
}
