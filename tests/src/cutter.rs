//! A TCP forwarder that cuts every connection a set time after it opened: long-lived streams
//! (a `SubscribeToShard` subscription) must recover from a dropped connection without losing or
//! repeating a record. It forwards bytes unchanged, so streaming responses pass through (which
//! the buffering [`FaultProxy`](crate::proxy::FaultProxy) cannot do).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Forwards to a server and cuts each connection after `lifetime`. Dropping it stops it.
pub struct ConnectionCutter {
    endpoint: String,
    cuts: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl ConnectionCutter {
    /// Listens on a free loopback port and forwards to `upstream_endpoint` (`http://host:port`).
    pub async fn start(upstream_endpoint: &str, lifetime: Duration) -> ConnectionCutter {
        let upstream = upstream_endpoint
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("address"));
        let cuts = Arc::new(AtomicU64::new(0));
        let counter = cuts.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                let upstream = upstream.clone();
                let counter = counter.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let forward = tokio::io::copy_bidirectional(&mut client, &mut server);
                    if tokio::time::timeout(lifetime, forward).await.is_err() {
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                    // Dropping both sockets here is the cut.
                });
            }
        });
        ConnectionCutter {
            endpoint,
            cuts,
            task,
        }
    }

    /// The endpoint to give the SDK client.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// How many connections were cut while still open.
    pub fn cuts(&self) -> u64 {
        self.cuts.load(Ordering::Relaxed)
    }
}

impl Drop for ConnectionCutter {
    fn drop(&mut self) {
        self.task.abort();
    }
}
