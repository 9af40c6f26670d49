//! The Python binding of kinesis-rs: the `kinesis_rs._native` extension module, wrapped by the
//! `kinesis_rs` Python package (`python/kinesis_rs/`), built with maturin.
//!
//! ```text
//!  Python thread ── Producer.put ─► kinesis_producer pipeline ─► PutHandle (callbacks: completer thread)
//!                └─ flush/close/checkpoint: block_on(runtime), GIL released
//!  one Tokio runtime per process ── kinesis_consumer::Scheduler ─► blocking pool ─► Python
//!                                   (per shard: initialize, process_records, ...) processor
//! ```
//!
//! The exception classes are plain Python (`kinesis_rs/errors.py`); see `README.md` for the
//! Python API.

mod consumer;
mod errors;
mod handle;
mod inputs;
mod producer;
mod runtime;

use pyo3::prelude::*;

/// Sends the Rust crates' `tracing` output to stderr when `KINESIS_RS_LOG` is set (an
/// `EnvFilter` such as `info` or `kinesis_consumer=debug`).
fn init_logging() {
    if let Ok(filter) = std::env::var("KINESIS_RS_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .try_init();
    }
}

#[pymodule]
#[pyo3(name = "_native")]
fn native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    init_logging();
    module.add_class::<producer::Producer>()?;
    module.add_function(wrap_pyfunction!(producer::close_all_producers, module)?)?;
    module.add_class::<producer::PutResult>()?;
    module.add_class::<handle::PutHandle>()?;
    module.add_class::<producer::Attempt>()?;
    module.add_class::<consumer::Scheduler>()?;
    module.add_class::<inputs::Checkpointer>()?;
    module.add_class::<inputs::Record>()?;
    module.add_class::<inputs::InitializeInput>()?;
    module.add_class::<inputs::ProcessRecordsInput>()?;
    module.add_class::<inputs::LeaseLostInput>()?;
    module.add_class::<inputs::ShardEndedInput>()?;
    module.add_class::<inputs::ShutdownRequestedInput>()?;
    Ok(())
}
