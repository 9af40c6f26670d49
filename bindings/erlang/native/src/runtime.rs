//! The one Tokio runtime per VM that runs every producer's pipeline and delivers outcomes.

use std::sync::OnceLock;

use tokio::runtime::{Builder, Runtime};

static RUNTIME: OnceLock<Runtime> = OnceLock::new();

/// The runtime, created on first use (the first `start`), never shut down: the NIF library stays
/// loaded for the VM's life. Its threads are not BEAM schedulers, so they may block on I/O and
/// send messages with `OwnedEnv::send_and_clear` (which refuses scheduler threads).
pub fn runtime() -> &'static Runtime {
    RUNTIME.get_or_init(|| {
        Builder::new_multi_thread()
            // The pipeline is one task per producer and outcome delivery is cheap: two threads
            // keep up with the producer's throughput without competing with the schedulers.
            .worker_threads(2)
            .thread_name("kinesis-producer-nif")
            .enable_all()
            .build()
            .expect("the Tokio runtime for kinesis_producer_nif could not start")
    })
}
