//! Test support: the local Kinesis and DynamoDB servers started by `scripts/servers`, official SDK
//! clients pointed at them, and unique names so tests run in parallel.
//!
//! Endpoints come from the environment (`KINESIS_MOCK_ENDPOINT`, `KINESALITE_ENDPOINT`,
//! `DYNAMODB_LOCAL_ENDPOINT`, `DYNALITE_ENDPOINT`), or else from `.local/run/servers.env`, which
//! `scripts/servers start` writes. A test whose server is missing **fails** with instructions; it
//! never skips.

pub mod counting;
pub mod cutter;
pub mod kcl_view;
pub mod proxy;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_config::{BehaviorVersion, Region};
use aws_sdk_kinesis::config::Credentials;
use aws_sdk_kinesis::types::StreamStatus;

/// The region every local server is addressed in.
pub const REGION: &str = "us-east-1";

/// A local server that speaks the Kinesis API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KinesisServer {
    /// kinesis-mock: the most faithful (ChildShards, fan-out, paging); slow. For correctness tests.
    KinesisMock,
    /// kinesalite: fast, fewer features. For throughput, soak runs and the demo.
    Kinesalite,
}

/// A local server that speaks the DynamoDB API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DynamoDbServer {
    /// AWS's own DynamoDB Local (Java). The reference for lease-table behaviour.
    DynamoDbLocal,
    /// dynalite: a fast fallback.
    Dynalite,
}

impl KinesisServer {
    /// Both Kinesis servers, for tests that must pass on each.
    pub const ALL: [KinesisServer; 2] = [KinesisServer::KinesisMock, KinesisServer::Kinesalite];

    /// The environment variable that holds this server's endpoint.
    pub fn env_var(self) -> &'static str {
        match self {
            KinesisServer::KinesisMock => "KINESIS_MOCK_ENDPOINT",
            KinesisServer::Kinesalite => "KINESALITE_ENDPOINT",
        }
    }

    /// The server's endpoint URL; panics with instructions when it is not running.
    pub fn endpoint(self) -> String {
        endpoint(self.env_var())
    }
}

impl DynamoDbServer {
    /// Both DynamoDB servers, for tests that must pass on each.
    pub const ALL: [DynamoDbServer; 2] = [DynamoDbServer::DynamoDbLocal, DynamoDbServer::Dynalite];

    /// The environment variable that holds this server's endpoint.
    pub fn env_var(self) -> &'static str {
        match self {
            DynamoDbServer::DynamoDbLocal => "DYNAMODB_LOCAL_ENDPOINT",
            DynamoDbServer::Dynalite => "DYNALITE_ENDPOINT",
        }
    }

    /// The server's endpoint URL; panics with instructions when it is not running.
    pub fn endpoint(self) -> String {
        endpoint(self.env_var())
    }
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lies in the repository")
        .to_path_buf()
}

/// `.local/run/servers.env`, parsed once.
fn servers_env() -> &'static HashMap<String, String> {
    static ENV: OnceLock<HashMap<String, String>> = OnceLock::new();
    ENV.get_or_init(|| {
        let path = repo_root().join(".local/run/servers.env");
        let Ok(text) = std::fs::read_to_string(&path) else {
            return HashMap::new();
        };
        text.lines()
            .filter_map(|line| {
                let line = line.trim().strip_prefix("export ").unwrap_or(line.trim());
                let (name, value) = line.split_once('=')?;
                Some((name.to_owned(), value.trim_matches(['"', '\'']).to_owned()))
            })
            .collect()
    })
}

fn endpoint(var: &str) -> String {
    let url = std::env::var(var)
        .ok()
        .or_else(|| servers_env().get(var).cloned())
        .unwrap_or_else(|| {
            panic!(
                "{var} is not set and {} has no entry for it: start the local servers with \
                 `scripts/servers start` (or run the whole suite with `scripts/test`)",
                repo_root().join(".local/run/servers.env").display()
            )
        });
    let address = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next());
    let reachable = address.is_some_and(|a: SocketAddr| {
        TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok()
    });
    assert!(
        reachable,
        "{var}={url} does not answer: restart the local servers with `scripts/servers start`"
    );
    url
}

/// A name no other test (in this or a concurrent run) uses: `prefix-<pid>-<n>-<millis>`.
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() % 100_000_000)
        .unwrap_or_default();
    format!(
        "{prefix}-{}-{}-{millis}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// SDK configuration for a local endpoint with static test credentials.
pub async fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new("test", "test", None, None, "local-test"))
        .endpoint_url(endpoint)
        .load()
        .await
}

/// An official Kinesis client for `server`.
pub async fn kinesis_client(server: KinesisServer) -> aws_sdk_kinesis::Client {
    aws_sdk_kinesis::Client::new(&sdk_config(&server.endpoint()).await)
}

/// An official DynamoDB client for `server`.
pub async fn dynamodb_client(server: DynamoDbServer) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(&sdk_config(&server.endpoint()).await)
}

/// Creates a stream of `shards` shards and waits until it is ACTIVE.
pub async fn create_stream(client: &aws_sdk_kinesis::Client, name: &str, shards: i32) {
    client
        .create_stream()
        .stream_name(name)
        .shard_count(shards)
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateStream {name}: {e:?}"));
    wait_for_stream(client, name).await;
}

/// Splits `shard` at `new_starting_hash_key` (the second child's first hash key) and waits until
/// the stream is ACTIVE again.
pub async fn split_shard(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    shard: &str,
    new_starting_hash_key: u128,
) {
    client
        .split_shard()
        .stream_name(stream)
        .shard_to_split(shard)
        .new_starting_hash_key(new_starting_hash_key.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("SplitShard {stream}/{shard}: {e:?}"));
    wait_for_stream(client, stream).await;
}

/// Merges `shard` with `adjacent` (its neighbour in hash-key order) and waits until the stream is
/// ACTIVE again.
pub async fn merge_shards(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    shard: &str,
    adjacent: &str,
) {
    client
        .merge_shards()
        .stream_name(stream)
        .shard_to_merge(shard)
        .adjacent_shard_to_merge(adjacent)
        .send()
        .await
        .unwrap_or_else(|e| panic!("MergeShards {stream}/{shard}+{adjacent}: {e:?}"));
    wait_for_stream(client, stream).await;
}

/// Waits (up to 30 s) until the stream is ACTIVE.
pub async fn wait_for_stream(client: &aws_sdk_kinesis::Client, name: &str) {
    for _ in 0..300 {
        let summary = client
            .describe_stream_summary()
            .stream_name(name)
            .send()
            .await
            .unwrap_or_else(|e| panic!("DescribeStreamSummary {name}: {e:?}"));
        if summary
            .stream_description_summary()
            .is_some_and(|s| s.stream_status() == &StreamStatus::Active)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("stream {name} did not become ACTIVE within 30 s");
}

/// Waits (up to 30 s) until the table is ACTIVE: dynalite answers CreateTable before the table
/// can be written, even with `--createTableMs 0`.
pub async fn wait_for_table(client: &aws_sdk_dynamodb::Client, name: &str) {
    use aws_sdk_dynamodb::types::TableStatus;
    for _ in 0..300 {
        let description = client
            .describe_table()
            .table_name(name)
            .send()
            .await
            .unwrap_or_else(|e| panic!("DescribeTable {name}: {e:?}"));
        if description
            .table()
            .and_then(|t| t.table_status())
            .is_some_and(|s| s == &TableStatus::Active)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("table {name} did not become ACTIVE within 30 s");
}

/// Creates a table keyed like a KCL lease table (hash key `leaseKey`, a string; PAY_PER_REQUEST)
/// and waits until it is ACTIVE.
pub async fn create_lease_table(client: &aws_sdk_dynamodb::Client, name: &str) {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    client
        .create_table()
        .table_name(name)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("leaseKey")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("name and type are set"),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("leaseKey")
                .key_type(KeyType::Hash)
                .build()
                .expect("name and key type are set"),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateTable {name}: {e:?}"));
    wait_for_table(client, name).await;
}
