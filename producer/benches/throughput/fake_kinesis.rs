//! A loopback endpoint that accepts `PutRecords` instantly, so the producer is what is measured.
//!
//! **A benchmark fixture, not a test double.** It speaks just enough of the Kinesis JSON protocol
//! (awsJson1_1: `POST /`, `X-Amz-Target: Kinesis_20131202.<Op>`) for the producer to run flat out:
//! `ListShards` answers a stream of evenly split open shards, and `PutRecords` answers one success
//! per entry, on the shard that owns the entry's hash key, with a growing sequence number. It
//! checks nothing else (no signatures, no stream names, no limits, no throttling): correctness is
//! tested against the real local servers (kinesis-mock, kinesalite) under `producer/tests/`.
//!
//! It runs on its own thread with its own single-threaded Tokio runtime, so its CPU time can be
//! read apart from the producer's ([`FakeKinesis::cpu`]). It can hold `PutRecords` answers until
//! released ([`FakeKinesis::hold`]), to keep records outstanding for a memory measurement.

use std::borrow::Cow;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use kinesis_producer::kinesis_aggregation::HashKey;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

use crate::usage::{ThreadCpu, thread_cpu};

const TARGET_PREFIX: &str = "Kinesis_20131202.";
const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// A running fake endpoint. Stops when dropped.
pub struct FakeKinesis {
    endpoint: String,
    shared: Arc<Shared>,
    thread: ThreadCpu,
    stop: Option<oneshot::Sender<()>>,
    join: Option<std::thread::JoinHandle<()>>,
}

/// Counters the server keeps, readable from any thread.
#[derive(Debug, Default)]
pub struct Counters {
    /// `PutRecords` requests answered.
    pub put_requests: AtomicU64,
    /// `PutRecords` entries (Kinesis records) received.
    pub entries: AtomicU64,
    /// Request body bytes received by `PutRecords`.
    pub body_bytes: AtomicU64,
    /// `PutRecords` requests parsed and waiting for [`FakeKinesis::release`].
    pub held_requests: AtomicU64,
    /// Entries in the held requests.
    pub held_entries: AtomicU64,
}

struct Shared {
    /// Each open shard's last hash key and id, in hash-key order.
    shards: Vec<(u128, String)>,
    shards_json: Bytes,
    sequence: AtomicU64,
    hold: watch::Sender<bool>,
    counters: Counters,
}

/// The subset of a `PutRecords` request the answer needs; `Data` and `StreamName` are skipped.
#[derive(Deserialize)]
struct PutRecordsRequest<'a> {
    #[serde(rename = "Records", borrow)]
    records: Vec<RequestEntry<'a>>,
}

#[derive(Deserialize)]
struct RequestEntry<'a> {
    #[serde(rename = "PartitionKey", borrow)]
    partition_key: Cow<'a, str>,
    #[serde(rename = "ExplicitHashKey", borrow, default)]
    explicit_hash_key: Option<Cow<'a, str>>,
}

impl FakeKinesis {
    /// Starts the server on `127.0.0.1:0` with `shards` open shards splitting the hash-key space
    /// evenly, as `CreateStream` does.
    pub fn start(shards: usize) -> FakeKinesis {
        let shared = Arc::new(Shared::new(shards));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = oneshot::channel();
        let server = shared.clone();
        let join = std::thread::Builder::new()
            .name("fake-kinesis".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a Tokio runtime");
                runtime.block_on(async move {
                    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
                    let addr = listener.local_addr().expect("local address");
                    ready_tx.send((addr, ThreadCpu::current())).expect("ready");
                    tokio::select! {
                        () = accept_loop(listener, server) => {}
                        _ = stopped => {}
                    }
                });
            })
            .expect("spawn the server thread");
        let (addr, thread): (SocketAddr, ThreadCpu) = ready_rx.recv().expect("server started");
        FakeKinesis {
            endpoint: format!("http://{addr}"),
            shared,
            thread,
            stop: Some(stop),
            join: Some(join),
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// CPU time the server's thread has used so far.
    pub fn cpu(&self) -> Duration {
        thread_cpu(&self.thread)
    }

    /// What the server has seen.
    pub fn counters(&self) -> &Counters {
        &self.shared.counters
    }

    /// From now on, `PutRecords` requests are parsed at once (their bodies dropped) but answered
    /// only after [`FakeKinesis::release`].
    pub fn hold(&self) {
        self.shared.hold.send_replace(true);
    }

    /// Answers the held requests, and answers at once from now on.
    pub fn release(&self) {
        self.shared.hold.send_replace(false);
    }
}

impl Drop for FakeKinesis {
    fn drop(&mut self) {
        self.release();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(join) = self.join.take() {
            let _ = join.join();
        }
    }
}

impl Shared {
    fn new(count: usize) -> Shared {
        let n = count as u128;
        // floor(2^128 / n), computed without 2^128.
        let width = u128::MAX / n + u128::from(u128::MAX % n == n - 1);
        let shards: Vec<(u128, String)> = (0..n)
            .map(|i| {
                let end = if i == n - 1 {
                    u128::MAX
                } else {
                    (i + 1) * width - 1
                };
                (end, format!("shardId-{i:012}"))
            })
            .collect();
        let mut json = String::from("{\"Shards\":[");
        for (i, (end, id)) in shards.iter().enumerate() {
            let start = i as u128 * width;
            if i > 0 {
                json.push(',');
            }
            // No EndingSequenceNumber: the shard is open.
            let _ = write!(
                json,
                "{{\"ShardId\":\"{id}\",\"HashKeyRange\":{{\"StartingHashKey\":\"{start}\",\
                 \"EndingHashKey\":\"{end}\"}},\"SequenceNumberRange\":\
                 {{\"StartingSequenceNumber\":\"1\"}}}}"
            );
        }
        json.push_str("]}");
        Shared {
            shards,
            shards_json: Bytes::from(json),
            sequence: AtomicU64::new(1),
            hold: watch::Sender::new(false),
            counters: Counters::default(),
        }
    }

    fn shard_of(&self, hash_key: u128) -> &str {
        let i = self.shards.partition_point(|(end, _)| *end < hash_key);
        &self.shards[i.min(self.shards.len() - 1)].1
    }

    /// The answer to a `PutRecords` body and its number of entries, or an error message.
    fn put_records(&self, body: &[u8]) -> Result<(String, u64), String> {
        let request: PutRecordsRequest<'_> =
            serde_json::from_slice(body).map_err(|e| e.to_string())?;
        let count = request.records.len() as u64;
        let first = self.sequence.fetch_add(count, Ordering::Relaxed);
        let mut out = String::with_capacity(48 + request.records.len() * 72);
        out.push_str("{\"FailedRecordCount\":0,\"Records\":[");
        for (i, entry) in request.records.iter().enumerate() {
            let hash_key = match &entry.explicit_hash_key {
                Some(key) => key
                    .parse::<HashKey>()
                    .map_err(|e| format!("ExplicitHashKey: {e}"))?,
                None => HashKey::of_partition_key(&entry.partition_key),
            };
            if i > 0 {
                out.push(',');
            }
            let _ = write!(
                out,
                "{{\"SequenceNumber\":\"{}\",\"ShardId\":\"{}\"}}",
                first + i as u64,
                self.shard_of(hash_key.0)
            );
        }
        out.push_str("]}");
        Ok((out, count))
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| handle(request, shared.clone()));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(
    request: Request<Incoming>,
    shared: Arc<Shared>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let operation = request
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix(TARGET_PREFIX))
        .unwrap_or_default()
        .to_owned();
    let body = match request.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) => return Ok(error(StatusCode::BAD_REQUEST, "SerializationException", &e)),
    };
    match operation.as_str() {
        "ListShards" => Ok(json(shared.shards_json.clone())),
        "PutRecords" => {
            let counters = &shared.counters;
            counters.put_requests.fetch_add(1, Ordering::Relaxed);
            counters
                .body_bytes
                .fetch_add(body.len() as u64, Ordering::Relaxed);
            let (answer, entries) = match shared.put_records(&body) {
                Ok(answer) => answer,
                Err(e) => return Ok(error(StatusCode::BAD_REQUEST, "SerializationException", &e)),
            };
            counters.entries.fetch_add(entries, Ordering::Relaxed);
            // The answer is ready, so the request body is not kept while the answer is held.
            drop(body);
            if *shared.hold.borrow() {
                counters.held_requests.fetch_add(1, Ordering::Relaxed);
                counters.held_entries.fetch_add(entries, Ordering::Relaxed);
                let mut released = shared.hold.subscribe();
                let _ = released.wait_for(|held| !held).await;
                counters.held_requests.fetch_sub(1, Ordering::Relaxed);
                counters.held_entries.fetch_sub(entries, Ordering::Relaxed);
            }
            Ok(json(Bytes::from(answer)))
        }
        other => Ok(error(
            StatusCode::BAD_REQUEST,
            "UnknownOperationException",
            &format!("the benchmark's fake endpoint does not implement {other:?}"),
        )),
    }
}

fn json(body: Bytes) -> Response<Full<Bytes>> {
    Response::builder()
        .header("content-type", CONTENT_TYPE)
        .header("x-amzn-requestid", "fake")
        .body(Full::new(body))
        .expect("a valid response")
}

fn error(status: StatusCode, kind: &str, message: &dyn std::fmt::Display) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "__type": kind, "message": message.to_string() }).to_string();
    Response::builder()
        .status(status)
        .header("content-type", CONTENT_TYPE)
        .body(Full::new(Bytes::from(body)))
        .expect("a valid response")
}
