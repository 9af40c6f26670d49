//! The one Tokio runtime of the process, AWS client configuration, and blocking on the runtime
//! from Python with the GIL released.

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use pyo3::prelude::*;
use tokio::runtime::Runtime;

/// How often a blocked Python call wakes to let Ctrl-C (a pending signal) through.
const SIGNAL_POLL: Duration = Duration::from_millis(100);

/// The process-wide multi-thread runtime shared by every producer and scheduler, created on
/// first use.
pub(crate) fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("kinesis-rs")
            .build()
            .expect("the Tokio runtime starts")
    })
}

/// Runs `future` to completion on the runtime with the GIL released. Every [`SIGNAL_POLL`] the
/// GIL is taken back briefly to run Python's signal handlers, so Ctrl-C raises
/// `KeyboardInterrupt` (the future is dropped) instead of being ignored until the call returns.
///
/// Never call this from a runtime worker thread; processor callbacks run on the runtime's
/// blocking pool, where it is allowed.
pub(crate) fn wait<F>(py: Python<'_>, future: F) -> PyResult<F::Output>
where
    F: Future + Send,
    F::Output: Send,
{
    let mut future = std::pin::pin!(future);
    let runtime = runtime();
    loop {
        // The timer is made inside `block_on`: it needs the runtime's context.
        let step = py.detach(|| {
            runtime.block_on(async { tokio::time::timeout(SIGNAL_POLL, &mut future).await })
        });
        match step {
            Ok(output) => return Ok(output),
            Err(_elapsed) => py.check_signals()?,
        }
    }
}

/// The AWS SDK configuration: the default chain (environment, profile, SSO, instance role),
/// with the region and endpoint overridden when given.
pub(crate) async fn sdk_config(
    endpoint_url: Option<String>,
    region: Option<String>,
) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(endpoint) = endpoint_url {
        loader = loader.endpoint_url(endpoint);
    }
    if let Some(region) = region {
        loader = loader.region(aws_config::Region::new(region));
    }
    loader.load().await
}

/// A keyword argument's value as the string the KPL/KCL option parsers take: booleans as
/// `true`/`false`, integers in decimal, strings as they are.
pub(crate) fn option_value(key: &str, value: &Bound<'_, PyAny>) -> PyResult<String> {
    use pyo3::types::{PyBool, PyFloat, PyInt, PyString};
    if let Ok(flag) = value.cast::<PyBool>() {
        return Ok(if flag.is_true() { "true" } else { "false" }.to_owned());
    }
    if value.is_instance_of::<PyInt>() || value.is_instance_of::<PyString>() {
        return Ok(value.str()?.to_string());
    }
    if let Ok(number) = value.cast::<PyFloat>() {
        let number = number.value();
        if number.fract() == 0.0 && number >= 0.0 {
            return Ok(format!("{number:.0}"));
        }
    }
    Err(pyo3::exceptions::PyTypeError::new_err(format!(
        "option {key}: expected a bool, an integer or a string, got {}",
        value.repr()?
    )))
}
