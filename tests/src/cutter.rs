//! A TCP forwarder that ends every connection a set time after it opened: long-lived streams
//! (a `SubscribeToShard` subscription) must recover without losing or repeating a record. It
//! forwards bytes unchanged, so streaming responses pass through (which the buffering
//! [`FaultProxy`](crate::proxy::FaultProxy) cannot do). Two ways to end:
//!
//! - [`Ending::Cut`]: both sockets are dropped, mid-response if need be (a network failure).
//! - [`Ending::EndEventStreams`]: a chunked `application/vnd.amazon.eventstream` response is
//!   ended cleanly at the next chunk boundary (the last chunk, then the connection closes), as
//!   AWS ends every subscription after 5 minutes; other responses pass whole.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How a connection past its lifetime is ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Drop both sockets at once.
    Cut,
    /// End an event stream's response cleanly at a chunk boundary, then close.
    EndEventStreams,
}

/// Forwards to a server and ends each connection after `lifetime`. Dropping it stops it.
pub struct ConnectionCutter {
    endpoint: String,
    ended: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl ConnectionCutter {
    /// Listens on a free loopback port and forwards to `upstream_endpoint` (`http://host:port`),
    /// cutting each connection after `lifetime`.
    pub async fn start(upstream_endpoint: &str, lifetime: Duration) -> ConnectionCutter {
        ConnectionCutter::start_with(upstream_endpoint, lifetime, Ending::Cut).await
    }

    /// As [`ConnectionCutter::start`], ending connections as `ending` says.
    pub async fn start_with(
        upstream_endpoint: &str,
        lifetime: Duration,
        ending: Ending,
    ) -> ConnectionCutter {
        let upstream = upstream_endpoint
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("address"));
        let ended = Arc::new(AtomicU64::new(0));
        let counter = ended.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let upstream = upstream.clone();
                let counter = counter.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let deadline = Instant::now() + lifetime;
                    let ended = match ending {
                        Ending::Cut => cut(client, server, deadline).await,
                        Ending::EndEventStreams => {
                            end_event_streams(client, server, deadline).await
                        }
                    };
                    if ended {
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                    // Dropping both sockets closes the connection.
                });
            }
        });
        ConnectionCutter {
            endpoint,
            ended,
            task,
        }
    }

    /// The endpoint to give the SDK client.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// How many connections were ended while still in use: cut, or an event stream ended.
    pub fn cuts(&self) -> u64 {
        self.ended.load(Ordering::Relaxed)
    }
}

impl Drop for ConnectionCutter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Forwards both ways until `deadline`; true when the connection was still open then.
async fn cut(mut client: TcpStream, mut server: TcpStream, deadline: Instant) -> bool {
    let forward = tokio::io::copy_bidirectional(&mut client, &mut server);
    tokio::time::timeout_at(deadline, forward).await.is_err()
}

/// Forwards requests as they are and responses one by one; past `deadline`, an event stream's
/// response is ended after its current chunk. True when a stream was ended so.
async fn end_event_streams(client: TcpStream, server: TcpStream, deadline: Instant) -> bool {
    let (mut client_read, mut client_write) = client.into_split();
    let (server_read, mut server_write) = server.into_split();
    let requests = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
    });
    let ended = forward_responses(BufReader::new(server_read), &mut client_write, deadline)
        .await
        .unwrap_or(false);
    requests.abort();
    let _ = client_write.shutdown().await;
    ended
}

async fn forward_responses<R, W>(
    mut server: BufReader<R>,
    client: &mut W,
    deadline: Instant,
) -> std::io::Result<bool>
where
    R: tokio::io::AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    loop {
        // The status line and headers.
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if server.read_line(&mut line).await? == 0 {
                return Ok(false);
            }
            head.push_str(&line);
            if line == "\r\n" {
                break;
            }
        }
        client.write_all(head.as_bytes()).await?;
        let lower = head.to_ascii_lowercase();
        let header = |name: &str| {
            lower
                .lines()
                .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
        };
        let event_stream = header("content-type:")
            .is_some_and(|v| v.starts_with("application/vnd.amazon.eventstream"));
        if header("transfer-encoding:").is_some_and(|v| v.contains("chunked")) {
            loop {
                let mut size_line = String::new();
                if server.read_line(&mut size_line).await? == 0 {
                    return Ok(false);
                }
                let size =
                    usize::from_str_radix(size_line.trim().split(';').next().unwrap_or("0"), 16)
                        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
                if size == 0 {
                    // The server's own last chunk and the blank line after it.
                    let mut rest = String::new();
                    server.read_line(&mut rest).await?;
                    client.write_all(size_line.as_bytes()).await?;
                    client.write_all(rest.as_bytes()).await?;
                    break;
                }
                let mut chunk = vec![0; size + 2];
                server.read_exact(&mut chunk).await?;
                client.write_all(size_line.as_bytes()).await?;
                client.write_all(&chunk).await?;
                if event_stream && Instant::now() >= deadline {
                    client.write_all(b"0\r\n\r\n").await?;
                    client.flush().await?;
                    return Ok(true);
                }
            }
        } else if let Some(length) = header("content-length:").and_then(|v| v.parse::<u64>().ok()) {
            let mut body = (&mut server).take(length);
            tokio::io::copy(&mut body, client).await?;
        } else {
            tokio::io::copy(&mut server, client).await?;
            return Ok(false);
        }
        client.flush().await?;
    }
}
