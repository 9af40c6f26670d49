//! A fault-injecting HTTP proxy between an official AWS SDK client and a local server.
//!
//! The local servers never throttle or fail, so retries, throttling, 5xx, connection resets,
//! partial PutRecords failures and expired iterators are tested by pointing the SDK's
//! `endpoint_url` at a [`FaultProxy`] that forwards to the real server and breaks what
//! [`Faults`] asks for:
//!
//! ```text
//! SDK client ──HTTP/1.1──▶ FaultProxy ──▶ block? latency? reset? error? GetRecords fault?
//!                                          │ PutRecords: drop failed entries
//!                                          ▼
//!                                    local server (kinesis-mock, kinesalite, DynamoDB Local…)
//!                                          │ reset after? PutRecords: merge synthetic failures
//! SDK client ◀─────────────────────────────┘
//! ```
//!
//! The operation is the `X-Amz-Target` header (`Kinesis_20131202.PutRecords`,
//! `DynamoDB_20120810.UpdateItem`): both SDKs speak awsJson (1.1 for Kinesis, 1.0 for
//! DynamoDB), so every request is a `POST /` with a JSON body.
//!
//! ```no_run
//! # async fn demo() {
//! use kinesis_test_support::proxy::{EntryFailures, FaultProxy, Faults};
//! use kinesis_test_support::{KinesisServer, sdk_config};
//!
//! let proxy = FaultProxy::start(&KinesisServer::Kinesalite.endpoint()).await;
//! let client = aws_sdk_kinesis::Client::new(&sdk_config(proxy.endpoint()).await);
//! proxy.set_faults(Faults {
//!     seed: Some(7),
//!     put_records: EntryFailures { entry_failure_rate: 0.3, ..Default::default() },
//!     ..Default::default()
//! });
//! // ... client.put_records() now sees about 30% of its entries throttled ...
//! # }
//! ```

mod errors;
mod faults;
mod handler;
mod put_records;
mod stats;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::{JoinHandle, JoinSet};

pub use faults::{
    Block, Blocked, EntryFailures, ErrorResponse, Faults, GetRecordsFaults, Latency, RequestErrors,
    Resets, Targets,
};
pub use stats::{FaultKind, Stats};

/// Idle time after which the proxy drops a pooled connection to the server. Node's HTTP servers
/// (kinesalite, dynalite) close idle keep-alive connections after 5 s; reusing one just as the
/// server closes it fails the request, so the proxy lets go first.
const UPSTREAM_POOL_IDLE: Duration = Duration::from_secs(2);

/// A running proxy. Stops (closing its port and every connection) when dropped.
pub struct FaultProxy {
    endpoint: String,
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept_loop: Option<JoinHandle<()>>,
}

/// State the connections share.
struct Shared {
    /// The server's base URL, without a trailing slash.
    upstream: String,
    client: Client<HttpConnector, Full<Bytes>>,
    /// The faults in force; held requests watch it to learn when they are unblocked.
    faults: watch::Sender<Arc<Faults>>,
    rng: Mutex<StdRng>,
    stats: Mutex<Stats>,
    request_ids: AtomicU64,
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("endpoint", &self.endpoint)
            .field("upstream", &self.shared.upstream)
            .finish_non_exhaustive()
    }
}

impl FaultProxy {
    /// Starts a proxy on `127.0.0.1` (a free port) that forwards to `upstream_endpoint`
    /// (`http://host:port`), injecting no faults until [`set_faults`](Self::set_faults).
    ///
    /// Panics when the endpoint is not plain `http://` or no port can be bound: this is test
    /// support, and a test cannot go on without its proxy.
    pub async fn start(upstream_endpoint: &str) -> FaultProxy {
        assert!(
            upstream_endpoint.starts_with("http://"),
            "FaultProxy forwards plain HTTP only, not {upstream_endpoint}"
        );
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fault proxy to a free port on 127.0.0.1");
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");

        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(UPSTREAM_POOL_IDLE)
            .build(connector);
        let shared = Arc::new(Shared {
            upstream: upstream_endpoint.trim_end_matches('/').to_owned(),
            client,
            faults: watch::Sender::new(Arc::new(Faults::default())),
            rng: Mutex::new(rand::make_rng::<StdRng>()),
            stats: Mutex::new(Stats::default()),
            request_ids: AtomicU64::new(0),
        });
        let accept_loop = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        FaultProxy {
            endpoint: format!("http://{addr}"),
            addr,
            shared,
            accept_loop: Some(accept_loop),
        }
    }

    /// The proxy's URL, `http://127.0.0.1:PORT`, for the SDK's `endpoint_url`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The address the proxy listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server the proxy forwards to.
    pub fn upstream(&self) -> &str {
        &self.shared.upstream
    }

    /// Replaces the faults in force; requests that arrive afterwards meet the new ones. Held
    /// requests whose operation is no longer blocked with [`Block::Hang`] are released (failed).
    pub fn set_faults(&self, faults: Faults) {
        if let Some(seed) = faults.seed {
            *self.shared.rng.lock().expect("rng lock") = StdRng::seed_from_u64(seed);
        }
        self.shared.faults.send_replace(Arc::new(faults));
    }

    /// Changes the faults in force through a closure, e.g. `proxy.update_faults(|f| f.block = None)`
    /// to unblock. Re-seeds the generator when the result has a seed, as `set_faults` does.
    pub fn update_faults(&self, change: impl FnOnce(&mut Faults)) {
        let mut faults = self.faults();
        change(&mut faults);
        self.set_faults(faults);
    }

    /// The faults in force.
    pub fn faults(&self) -> Faults {
        Faults::clone(&self.shared.faults.borrow())
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.shared.stats.lock().expect("stats lock").clone()
    }

    /// Zeroes the counters.
    pub fn reset_stats(&self) {
        *self.shared.stats.lock().expect("stats lock") = Stats::default();
    }

    /// Stops the proxy: closes the port and every open connection, and waits until that is
    /// done. Dropping the proxy does the same without waiting.
    pub async fn shutdown(mut self) {
        if let Some(task) = self.accept_loop.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(task) = self.accept_loop.take() {
            // The accept loop owns the connections' JoinSet, which aborts them as it drops.
            task.abort();
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve_connection(stream, Arc::clone(&shared)));
                }
                // Out of file descriptors and the like: back off rather than spin.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            // Reap finished connections so the set does not grow without bound.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    // A handler that decides to reset the connection notifies this and never answers.
    let reset = Arc::new(Notify::new());
    let service = {
        let reset = Arc::clone(&reset);
        service_fn(move |request| {
            let shared = Arc::clone(&shared);
            let reset = Arc::clone(&reset);
            async move { Ok::<_, Infallible>(handler::handle(&shared, &reset, request).await) }
        })
    };
    let mut connection = http1::Builder::new()
        // No timer is configured; idle keep-alive connections stay open as long as the SDK's
        // pool wants them.
        .header_read_timeout(None)
        .serve_connection(TokioIo::new(stream), service);
    let reset_now = tokio::select! {
        _ = &mut connection => false,
        _ = reset.notified() => true,
    };
    if reset_now {
        let stream = connection.into_parts().io.into_inner();
        // SO_LINGER 0 makes the close send a TCP RST, as a crashed server or a middlebox would.
        let _ = stream.set_zero_linger();
        drop(stream);
    }
}

impl Shared {
    /// True with probability `p`; draws nothing when `p` is 0 or 1 so that faults left at
    /// their defaults do not shift a seeded sequence.
    fn chance(&self, p: f64) -> bool {
        if p <= 0.0 || p.is_nan() {
            false
        } else if p >= 1.0 {
            true
        } else {
            self.rng.lock().expect("rng lock").random::<f64>() < p
        }
    }

    /// A uniform index below `n` (`n` > 0).
    fn pick(&self, n: usize) -> usize {
        if n <= 1 {
            0
        } else {
            self.rng.lock().expect("rng lock").random_range(0..n)
        }
    }

    /// A uniform duration in `0..=max`.
    fn jitter(&self, max: Duration) -> Duration {
        if max.is_zero() {
            Duration::ZERO
        } else {
            let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
            Duration::from_nanos(self.rng.lock().expect("rng lock").random_range(0..=nanos))
        }
    }

    fn next_request_id(&self) -> u64 {
        self.request_ids.fetch_add(1, Ordering::Relaxed)
    }

    fn with_stats(&self, update: impl FnOnce(&mut Stats)) {
        update(&mut self.stats.lock().expect("stats lock"));
    }

    fn count_fault(&self, kind: FaultKind) {
        self.with_stats(|s| s.count_fault(kind));
    }

    /// Waits until `target` is no longer held by a [`Block::Hang`].
    async fn wait_unblocked(&self, target: &str) {
        let mut faults = self.faults.subscribe();
        while faults.borrow_and_update().hangs(target) {
            if faults.changed().await.is_err() {
                // The proxy is gone; the connection is about to be dropped.
                std::future::pending::<()>().await;
            }
        }
    }
}
