//! Counting the calls an SDK client makes, by operation, for tests that bound a library's API
//! cost where a proxy cannot stand between (event streams such as `SubscribeToShard`).
//!
//! An SDK interceptor that reads each request's `X-Amz-Target` (`Kinesis_20131202.ListShards`)
//! before it is sent; the server answering is the real one.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_sdk_kinesis::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_kinesis::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_kinesis::error::BoxError;

/// Calls by operation name, shared by every client made with [`CallCounter::kinesis_client`].
#[derive(Debug, Clone, Default)]
pub struct CallCounter {
    calls: Arc<Mutex<BTreeMap<String, u64>>>,
}

impl CallCounter {
    /// A counter with no calls yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// `client` with this counter on every request it sends.
    pub fn kinesis_client(&self, client: &aws_sdk_kinesis::Client) -> aws_sdk_kinesis::Client {
        aws_sdk_kinesis::Client::from_conf(
            client
                .config()
                .to_builder()
                .interceptor(Counting(self.calls.clone()))
                .build(),
        )
    }

    /// Requests sent for an operation (`ListShards`), retries included.
    pub fn calls(&self, operation: &str) -> u64 {
        self.calls
            .lock()
            .expect("counter lock")
            .get(operation)
            .copied()
            .unwrap_or(0)
    }

    /// Zeroes the counts.
    pub fn reset(&self) {
        self.calls.lock().expect("counter lock").clear();
    }
}

#[derive(Debug)]
struct Counting(Arc<Mutex<BTreeMap<String, u64>>>);

impl Intercept for Counting {
    fn name(&self) -> &'static str {
        "CallCounter"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let target = context
            .request()
            .headers()
            .get("x-amz-target")
            .unwrap_or_default();
        let operation = target.rsplit('.').next().unwrap_or(target).to_owned();
        *self
            .0
            .lock()
            .expect("counter lock")
            .entry(operation)
            .or_default() += 1;
        Ok(())
    }
}
