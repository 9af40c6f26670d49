//! The daemon binary against the local servers (kinesalite for Kinesis, DynamoDB Local for the
//! lease table): the real amazon-kclpy sample app, unchanged, and a protocol recorder child
//! (`recorder.py`) that logs exactly what it receives.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_kinesis::primitives::Blob;
use base64::Engine;
use kinesis_test_support::{
    DynamoDbServer, KinesisServer, create_stream, dynamodb_client, kinesis_client, unique_name,
};
use serde_json::Value;

const KINESIS: KinesisServer = KinesisServer::Kinesalite;
const DYNAMODB: DynamoDbServer = DynamoDbServer::DynamoDbLocal;
const KCLPY_VERSION: &str = "3.2.0";
const WAIT: Duration = Duration::from_secs(90);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// The unpacked amazon-kclpy sdist; fails (never skips) when it is missing.
fn kclpy_dir() -> PathBuf {
    let dir = repo_root().join(format!(".local/kclpy/amazon_kclpy-{KCLPY_VERSION}"));
    assert!(
        dir.join("amazon_kclpy/kcl.py").is_file()
            && dir.join("samples/sample_kclpy_app.py").is_file(),
        "amazon-kclpy {KCLPY_VERSION} is not in {}: run scripts/install-kclpy",
        dir.display()
    );
    dir
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = repo_root().join("target/multilang-tests").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A record put: its shard, sequence number and data.
#[derive(Debug, Clone)]
struct Put {
    shard: String,
    sequence_number: String,
    key: String,
    data: String,
}

async fn put(kinesis: &aws_sdk_kinesis::Client, stream: &str, key: &str, data: &str) -> Put {
    let out = kinesis
        .put_record()
        .stream_name(stream)
        .partition_key(key)
        .data(Blob::new(data.as_bytes()))
        .send()
        .await
        .expect("PutRecord");
    Put {
        shard: out.shard_id().to_owned(),
        sequence_number: out.sequence_number().to_owned(),
        key: key.to_owned(),
        data: data.to_owned(),
    }
}

async fn put_many(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    prefix: &str,
    count: usize,
) -> Vec<Put> {
    let mut puts = Vec::new();
    for i in 0..count {
        puts.push(
            put(
                kinesis,
                stream,
                &format!("key-{i}"),
                &format!("{prefix}-{i}"),
            )
            .await,
        );
    }
    puts
}

/// The last record put to each shard.
fn last_per_shard(puts: &[Put]) -> BTreeMap<String, String> {
    puts.iter()
        .map(|p| (p.shard.clone(), p.sequence_number.clone()))
        .collect()
}

/// The lease table: shard → (checkpoint, leaseOwner).
async fn leases(
    dynamodb: &aws_sdk_dynamodb::Client,
    table: &str,
) -> BTreeMap<String, (String, Option<String>)> {
    let Ok(out) = dynamodb
        .scan()
        .table_name(table)
        .consistent_read(true)
        .send()
        .await
    else {
        return BTreeMap::new();
    };
    out.items()
        .iter()
        .map(|item| {
            let s = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
            (
                s("leaseKey").unwrap(),
                (s("checkpoint").unwrap_or_default(), s("leaseOwner")),
            )
        })
        .collect()
}

/// Polls `check` until it returns true, or fails the test with `what` and the daemon's log.
async fn wait_until<F, Fut>(what: &str, daemon: &Daemon, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < WAIT {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!(
        "timed out after {WAIT:?} waiting for {what}\n--- daemon log ---\n{}",
        daemon.log()
    );
}

/// The daemon binary running as a process, its stderr in a file.
struct Daemon {
    process: Child,
    log_path: PathBuf,
}

impl Daemon {
    fn start(properties: &Path, env: &[(&str, String)]) -> Daemon {
        let log_path = properties.with_extension("log");
        let log = std::fs::File::create(&log_path).unwrap();
        let process = Command::new(env!("CARGO_BIN_EXE_kinesis-multilang-daemon"))
            .arg(properties)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", kinesis_test_support::REGION)
            .env(
                "RUST_LOG",
                "warn,kinesis_multilang=debug,kinesis_consumer=info",
            )
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting kinesis-multilang-daemon");
        Daemon { process, log_path }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// SIGTERM, then waits for the exit.
    async fn terminate(&mut self) -> ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.process.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let start = Instant::now();
        loop {
            if let Some(status) = self.process.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the daemon did not exit within 60 s of SIGTERM\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

fn write_properties(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("app.properties");
    std::fs::write(&path, body).unwrap();
    path
}

/// The properties of a recorder child polling `stream` for `app` on the local servers, from
/// TRIM_HORIZON, with `extra` lines.
fn recorder_properties(dir: &Path, stream: &str, app: &str, extra: &str) -> PathBuf {
    write_properties(
        dir,
        &format!(
            "executableName = {}\nstreamName = {stream}\napplicationName = {app}\n\
             initialPositionInStream = TRIM_HORIZON\nretrievalMode = POLLING\nkinesisEndpoint = {}\n\
             dynamoDBEndpoint = {}\nidleTimeBetweenReadsInMillis = 200\n{extra}",
            recorder_command(dir),
            KINESIS.endpoint(),
            DYNAMODB.endpoint()
        ),
    )
}

/// The recorder's log: one JSON object per event.
fn events(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn of<'a>(events: &'a [Value], event: &str, shard: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["event"] == event && e["shard"] == shard)
        .collect()
}

fn checkpoint_ok_at(events: &[Value], shard: &str, sequence_number: &str) -> bool {
    of(events, "checkpointReply", shard)
        .iter()
        .any(|e| e["reply"]["error"].is_null() && e["reply"]["sequenceNumber"] == sequence_number)
}

fn recorder_command(dir: &Path) -> String {
    let script = dir.join("recorder.py");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/recorder.py"),
        &script,
    )
    .unwrap();
    // Relative to the properties file's directory: the children's working directory.
    "python3 recorder.py".to_owned()
}

/// Every record delivered once, in order per shard, with the Java daemon's fields; checkpoint
/// replies with the Java exception names; a non-message line on stdout skipped; stderr
/// forwarded; shutdownRequested on SIGTERM with a checkpoint; a clean exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_protocol_as_a_child_sees_it() {
    let kinesis = kinesis_client(KINESIS).await;
    let dynamodb = dynamodb_client(DYNAMODB).await;
    let stream = unique_name("ml-protocol");
    let app = unique_name("ml-protocol-app");
    create_stream(&kinesis, &stream, 2).await;
    let started = std::time::SystemTime::now();
    let mut puts = put_many(&kinesis, &stream, "first", 20).await;
    let first_last = last_per_shard(&puts);
    assert_eq!(first_last.len(), 2, "both shards get records: {puts:?}");

    let dir = scratch_dir(&stream);
    let log = dir.join("recorder.jsonl");
    let properties = write_properties(
        &dir,
        &format!(
            "# endpoints come from AWS_ENDPOINT_URL_KINESIS / _DYNAMODB here\n\
             executableName = {}\nstreamName = {stream}\napplicationName = {app}\n\
             initialPositionInStream = TRIM_HORIZON\nretrievalMode = POLLING\nregionName = us-east-1\n\
             idleTimeBetweenReadsInMillis = 200\nprocessingLanguage = python/3.11\n",
            recorder_command(&dir)
        ),
    );
    let mut daemon = Daemon::start(
        &properties,
        &[
            ("RECORDER_LOG", log.display().to_string()),
            ("AWS_ENDPOINT_URL_KINESIS", KINESIS.endpoint()),
            ("AWS_ENDPOINT_URL_DYNAMODB", DYNAMODB.endpoint()),
        ],
    );
    wait_until("checkpoints at the first records", &daemon, || {
        let events = events(&log);
        let done = first_last
            .iter()
            .all(|(shard, seq)| checkpoint_ok_at(&events, shard, seq));
        async move { done }
    })
    .await;
    let more = put_many(&kinesis, &stream, "second", 10).await;
    puts.extend(more.iter().cloned());
    let last = last_per_shard(&puts);
    wait_until("checkpoints at the later records", &daemon, || {
        let events = events(&log);
        let done = last
            .iter()
            .all(|(shard, seq)| checkpoint_ok_at(&events, shard, seq));
        async move { done }
    })
    .await;
    let status = daemon.terminate().await;
    let daemon_log = daemon.log();
    assert!(status.success(), "exit {status}\n{daemon_log}");

    let events = events(&log);
    for (shard, last_seq) in &last {
        let expected: Vec<&Put> = puts.iter().filter(|p| &p.shard == shard).collect();
        // One child, initialized once at TRIM_HORIZON.
        let inits = of(&events, "initialize", shard);
        assert_eq!(inits.len(), 1, "{shard}: {inits:?}");
        assert_eq!(
            inits[0]["message"],
            serde_json::json!({"action": "initialize", "shardId": shard,
                               "sequenceNumber": "TRIM_HORIZON", "subSequenceNumber": 0})
        );
        // Every record once, in order, as JsonFriendlyRecord.
        let batches = of(&events, "processRecords", shard);
        let records: Vec<&Value> = batches
            .iter()
            .flat_map(|b| b["message"]["records"].as_array().unwrap())
            .collect();
        assert_eq!(records.len(), expected.len(), "{shard}: {records:?}");
        for (record, put) in records.iter().zip(&expected) {
            let data = base64::engine::general_purpose::STANDARD
                .decode(record["data"].as_str().unwrap())
                .unwrap();
            assert_eq!(String::from_utf8(data).unwrap(), put.data);
            assert_eq!(record["action"], "record");
            assert_eq!(record["partitionKey"], put.key.as_str());
            assert_eq!(record["sequenceNumber"], put.sequence_number.as_str());
            assert_eq!(record["subSequenceNumber"], 0);
            let arrival = record["approximateArrivalTimestamp"].as_u64().unwrap();
            let started_ms = started
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64;
            assert!(
                arrival + 5_000 >= started_ms && arrival < started_ms + 300_000,
                "{arrival} vs {started_ms}"
            );
        }
        for batch in &batches {
            let message = batch["message"].as_object().unwrap();
            assert!(message.contains_key("millisBehindLatest"), "{message:?}");
        }
        // The first batch's checkpoint replies: malformed, beyond the batch, then accepted.
        let replies = of(&events, "checkpointReply", shard);
        let first_batch_last = batches[0]["message"]["records"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()["sequenceNumber"]
            .as_str()
            .unwrap()
            .to_owned();
        // The recorder asked for the last record's sequence number + 1 (Python integers are
        // unbounded; kinesalite's sequence numbers exceed u128).
        let beyond = replies[1]["request"][0].as_str().unwrap().to_owned();
        assert_ne!(beyond, first_batch_last);
        assert_eq!(
            replies[0]["reply"],
            serde_json::json!({"action": "checkpoint", "sequenceNumber": "not-a-number",
                               "subSequenceNumber": null, "error": "IllegalArgumentException"})
        );
        assert_eq!(
            replies[1]["reply"],
            serde_json::json!({"action": "checkpoint", "sequenceNumber": beyond,
                               "subSequenceNumber": 0, "error": "InvalidStateException"})
        );
        assert_eq!(
            replies[2]["reply"],
            serde_json::json!({"action": "checkpoint", "sequenceNumber": first_batch_last,
                               "subSequenceNumber": 0, "error": null})
        );
        // SIGTERM: shutdownRequested, a checkpoint with sequenceNumber null, then stdin closed.
        let shutdown = of(&events, "shutdownRequested", shard);
        assert_eq!(shutdown.len(), 1, "{shard}");
        assert_eq!(
            shutdown[0]["message"],
            serde_json::json!({"action": "shutdownRequested"})
        );
        let final_reply = replies.last().unwrap();
        assert_eq!(final_reply["request"], serde_json::json!([null, null]));
        assert_eq!(
            final_reply["reply"],
            serde_json::json!({"action": "checkpoint", "sequenceNumber": null,
                               "subSequenceNumber": null, "error": null})
        );
        assert_eq!(of(&events, "eof", shard).len(), 1, "{shard}");
        assert!(of(&events, "leaseLost", shard).is_empty());
        // The lease table has the last record and the lease was released.
        let table = leases(&dynamodb, &app).await;
        assert_eq!(table[shard], (last_seq.clone(), None), "{table:?}");
        assert!(
            daemon_log.contains(&format!("[{shard}] processing")),
            "stderr forwarded with the shard\n{daemon_log}"
        );
    }
    assert!(
        daemon_log.contains("not a message"),
        "the printed line was skipped\n{daemon_log}"
    );
    assert!(
        daemon_log.contains("ignoring property") && daemon_log.contains("processingLanguage"),
        "{daemon_log}"
    );
}

/// The lease is stolen while the child handles a batch: its checkpoint fails with
/// "ShutdownException", it gets leaseLost; when the lease expires the daemon takes it back and
/// a new child starts at the last checkpoint and gets the unacknowledged records again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stolen_lease_answers_shutdown_exception_then_lease_lost() {
    let kinesis = kinesis_client(KINESIS).await;
    let dynamodb = dynamodb_client(DYNAMODB).await;
    let stream = unique_name("ml-stolen");
    let app = unique_name("ml-stolen-app");
    create_stream(&kinesis, &stream, 1).await;
    let first = put_many(&kinesis, &stream, "first", 3).await;
    let shard = first[0].shard.clone();

    let dir = scratch_dir(&stream);
    let log = dir.join("recorder.jsonl");
    let go = dir.join("go");
    let properties = recorder_properties(&dir, &stream, &app, "failoverTimeMillis = 3000\n");
    let mut daemon = Daemon::start(
        &properties,
        &[
            ("RECORDER_LOG", log.display().to_string()),
            ("RECORDER_MODE", "hold".into()),
            ("RECORDER_GO", go.display().to_string()),
        ],
    );
    let third = first[2].sequence_number.clone();
    wait_until("the first checkpoint", &daemon, || {
        let done = checkpoint_ok_at(&events(&log), &shard, &third);
        async move { done }
    })
    .await;
    let second = put_many(&kinesis, &stream, "second", 2).await;
    wait_until("the child holding the second batch", &daemon, || {
        let done = !of(&events(&log), "holding", &shard).is_empty();
        async move { done }
    })
    .await;
    // Another worker takes the lease (as the KCL's take does: new owner, counter + 1).
    dynamodb
        .update_item()
        .table_name(&app)
        .key("leaseKey", AttributeValue::S(shard.clone()))
        .update_expression("SET leaseOwner = :thief, leaseCounter = leaseCounter + :one")
        .expression_attribute_values(":thief", AttributeValue::S("thief".into()))
        .expression_attribute_values(":one", AttributeValue::N("1".into()))
        .send()
        .await
        .expect("stealing the lease");
    std::fs::write(&go, "").unwrap();

    let fifth = second[1].sequence_number.clone();
    wait_until(
        "a new child that checkpoints the redelivered records",
        &daemon,
        || {
            let events = events(&log);
            let done = of(&events, "initialize", &shard).len() == 2
                && checkpoint_ok_at(&events, &shard, &fifth);
            async move { done }
        },
    )
    .await;
    let status = daemon.terminate().await;
    assert!(status.success(), "exit {status}\n{}", daemon.log());

    let events = events(&log);
    let inits = of(&events, "initialize", &shard);
    let (old_pid, new_pid) = (&inits[0]["pid"], &inits[1]["pid"]);
    assert_ne!(old_pid, new_pid);
    let by = |pid: &Value, event: &str| -> Vec<Value> {
        of(&events, event, &shard)
            .into_iter()
            .filter(|e| &e["pid"] == pid)
            .cloned()
            .collect()
    };
    // The held checkpoint was refused as the Java KCL refuses a zombie's.
    let old_replies = by(old_pid, "checkpointReply");
    assert_eq!(
        old_replies.last().unwrap()["reply"],
        serde_json::json!({"action": "checkpoint", "sequenceNumber": fifth,
                           "subSequenceNumber": 0, "error": "ShutdownException"})
    );
    assert_eq!(by(old_pid, "leaseLost").len(), 1);
    assert_eq!(by(old_pid, "eof").len(), 1, "stdin closed after leaseLost");
    assert!(by(old_pid, "shutdownRequested").is_empty());
    // The new child resumes after the last checkpoint and gets records 4 and 5 again.
    assert_eq!(
        inits[1]["message"],
        serde_json::json!({"action": "initialize", "shardId": shard,
                           "sequenceNumber": third, "subSequenceNumber": 0})
    );
    let redelivered: Vec<String> = by(new_pid, "processRecords")
        .iter()
        .flat_map(|b| b["message"]["records"].as_array().unwrap().clone())
        .map(|r| r["sequenceNumber"].as_str().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = second.iter().map(|p| p.sequence_number.clone()).collect();
    assert_eq!(redelivered, expected);
    assert_eq!(by(new_pid, "shutdownRequested").len(), 1);
    assert_eq!(
        leases(&dynamodb, &app).await[&shard],
        (fifth, None),
        "checkpointed and released"
    );
}

/// A child that dies mid-batch is started again at the last checkpoint, and gets the records
/// after it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_child_is_restarted_at_the_checkpoint() {
    let kinesis = kinesis_client(KINESIS).await;
    let dynamodb = dynamodb_client(DYNAMODB).await;
    let stream = unique_name("ml-crash");
    let app = unique_name("ml-crash-app");
    create_stream(&kinesis, &stream, 1).await;
    let first = put_many(&kinesis, &stream, "first", 3).await;
    let shard = first[0].shard.clone();

    let dir = scratch_dir(&stream);
    let log = dir.join("recorder.jsonl");
    let properties = recorder_properties(&dir, &stream, &app, "");
    let mut daemon = Daemon::start(
        &properties,
        &[
            ("RECORDER_LOG", log.display().to_string()),
            ("RECORDER_MODE", "crash".into()),
        ],
    );
    let third = first[2].sequence_number.clone();
    wait_until("the first checkpoint", &daemon, || {
        let done = checkpoint_ok_at(&events(&log), &shard, &third);
        async move { done }
    })
    .await;
    let second = put_many(&kinesis, &stream, "second", 2).await;
    let fifth = second[1].sequence_number.clone();
    wait_until("the restarted child's checkpoint", &daemon, || {
        let done = checkpoint_ok_at(&events(&log), &shard, &fifth);
        async move { done }
    })
    .await;
    let status = daemon.terminate().await;
    let daemon_log = daemon.log();
    assert!(status.success(), "exit {status}\n{daemon_log}");

    let events = events(&log);
    assert_eq!(of(&events, "crashing", &shard).len(), 1);
    let inits = of(&events, "initialize", &shard);
    assert_eq!(inits.len(), 2, "{inits:?}");
    assert_eq!(
        inits[1]["message"]["sequenceNumber"], third,
        "restarted at the checkpoint"
    );
    let new_pid = &inits[1]["pid"];
    let after_restart: Vec<String> = of(&events, "processRecords", &shard)
        .into_iter()
        .filter(|e| &e["pid"] == new_pid)
        .flat_map(|b| b["message"]["records"].as_array().unwrap().clone())
        .map(|r| r["sequenceNumber"].as_str().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = second.iter().map(|p| p.sequence_number.clone()).collect();
    assert_eq!(after_restart, expected);
    assert!(daemon_log.contains("the child failed"), "{daemon_log}");
    assert_eq!(leases(&dynamodb, &app).await[&shard], (fifth, None));
}

/// amazon-kclpy's own sample app, unchanged, consumes a 2-shard stream through the daemon; its
/// checkpoints land in the lease table, and its shutdownRequested checkpoint on SIGTERM covers
/// records it had not checkpointed yet (it checkpoints at most every 30 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_amazon_kclpy_sample_app_runs_unchanged() {
    let kclpy = kclpy_dir();
    let kinesis = kinesis_client(KINESIS).await;
    let dynamodb = dynamodb_client(DYNAMODB).await;
    let stream = unique_name("ml-kclpy");
    let app = unique_name("ml-kclpy-app");
    create_stream(&kinesis, &stream, 2).await;
    let mut puts = put_many(&kinesis, &stream, "first", 20).await;
    let first_last = last_per_shard(&puts);
    assert_eq!(first_last.len(), 2, "both shards get records: {puts:?}");

    let dir = scratch_dir(&stream);
    let sample = kclpy.join("samples/sample_kclpy_app.py");
    // The sample's own properties file, with our stream, table and endpoints.
    let properties = write_properties(
        &dir,
        &format!(
            "executableName = python3 {}\nstreamName = {stream}\napplicationName = {app}\n\
             AwsCredentialsProvider = DefaultCredentialsProvider\n\
             processingLanguage = python/3.11\ninitialPositionInStream = TRIM_HORIZON\nretrievalMode = POLLING\n\
             regionName = us-east-1\nkinesisEndpoint = {}\ndynamoDBEndpoint = {}\n\
             idleTimeBetweenReadsInMillis = 200\n",
            sample.display(),
            KINESIS.endpoint(),
            DYNAMODB.endpoint()
        ),
    );
    let mut daemon = Daemon::start(&properties, &[("PYTHONPATH", kclpy.display().to_string())]);
    // The sample checkpoints its first batch at once (then every 30 s).
    wait_until("the sample's first checkpoints", &daemon, || {
        let dynamodb = dynamodb.clone();
        let (app, first_last) = (app.clone(), first_last.clone());
        async move {
            let table = leases(&dynamodb, &app).await;
            first_last
                .iter()
                .all(|(shard, seq)| table.get(shard).is_some_and(|(c, _)| c == seq))
        }
    })
    .await;
    let more = put_many(&kinesis, &stream, "second", 10).await;
    puts.extend(more.iter().cloned());
    let last = last_per_shard(&puts);
    // The sample logs every record to stderr (without newlines); wait until it has seen the new
    // ones, then stop: its shutdown_requested checkpoints them.
    wait_until("the sample processing the later records", &daemon, || {
        let log = daemon.log();
        let done = more
            .iter()
            .all(|p| log.contains(&format!("Sequence Number: {},", p.sequence_number)));
        async move { done }
    })
    .await;
    let status = daemon.terminate().await;
    let daemon_log = daemon.log();
    assert!(status.success(), "exit {status}\n{daemon_log}");
    let table = leases(&dynamodb, &app).await;
    for (shard, seq) in &last {
        assert_eq!(table[shard], (seq.clone(), None), "{table:?}\n{daemon_log}");
        // The sample writes without newlines, so its messages share forwarded lines.
        let prefix = format!("[{shard}] ");
        assert!(
            daemon_log
                .lines()
                .any(|l| l.starts_with(&prefix) && l.contains("Shutdown has been requested")),
            "{daemon_log}"
        );
    }
    assert!(!daemon_log.contains("Traceback"), "{daemon_log}");
}

/// A split: the parent's child gets `shardEnded` and checkpoints SHARD_END (sequenceNumber
/// null), then the children are processed from TRIM_HORIZON by children of their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_ended_is_checkpointed_and_the_children_follow() {
    let kinesis = kinesis_client(KINESIS).await;
    let dynamodb = dynamodb_client(DYNAMODB).await;
    let stream = unique_name("ml-split");
    let app = unique_name("ml-split-app");
    create_stream(&kinesis, &stream, 1).await;
    let before = put_many(&kinesis, &stream, "before", 3).await;
    let parent = before[0].shard.clone();

    let dir = scratch_dir(&stream);
    let log = dir.join("recorder.jsonl");
    let properties = recorder_properties(
        &dir,
        &stream,
        &app,
        "parentShardPollIntervalMillis = 500\nshardSyncIntervalMillis = 1000\n",
    );
    let mut daemon = Daemon::start(&properties, &[("RECORDER_LOG", log.display().to_string())]);
    let third = before[2].sequence_number.clone();
    wait_until("the parent's first checkpoint", &daemon, || {
        let done = checkpoint_ok_at(&events(&log), &parent, &third);
        async move { done }
    })
    .await;
    kinesis_test_support::split_shard(&kinesis, &stream, &parent, 1u128 << 127).await;
    let after = put_many(&kinesis, &stream, "after", 10).await;
    let children = last_per_shard(&after);
    assert_eq!(children.len(), 2, "{after:?}");
    assert!(!children.contains_key(&parent));
    wait_until("SHARD_END and the children's checkpoints", &daemon, || {
        let dynamodb = dynamodb.clone();
        let (app, children, parent) = (app.clone(), children.clone(), parent.clone());
        async move {
            let table = leases(&dynamodb, &app).await;
            // The finished parent's lease may already be cleaned up.
            table.get(&parent).is_none_or(|(c, _)| c == "SHARD_END")
                && children
                    .iter()
                    .all(|(shard, seq)| table.get(shard).is_some_and(|(c, _)| c == seq))
        }
    })
    .await;
    let status = daemon.terminate().await;
    assert!(status.success(), "exit {status}\n{}", daemon.log());

    let events = events(&log);
    let ended = of(&events, "shardEnded", &parent);
    assert_eq!(ended.len(), 1, "{events:?}");
    let reply = of(&events, "checkpointReply", &parent).last().unwrap()["reply"].clone();
    assert_eq!(
        reply,
        serde_json::json!({"action": "checkpoint", "sequenceNumber": null,
                           "subSequenceNumber": null, "error": null})
    );
    assert_eq!(of(&events, "eof", &parent).len(), 1);
    for child in children.keys() {
        let inits = of(&events, "initialize", child);
        assert_eq!(inits.len(), 1, "{child}");
        assert_eq!(inits[0]["message"]["sequenceNumber"], "TRIM_HORIZON");
        let got: Vec<String> = of(&events, "processRecords", child)
            .iter()
            .flat_map(|b| b["message"]["records"].as_array().unwrap().clone())
            .map(|r| r["sequenceNumber"].as_str().unwrap().to_owned())
            .collect();
        let expected: Vec<String> = after
            .iter()
            .filter(|p| &p.shard == child)
            .map(|p| p.sequence_number.clone())
            .collect();
        assert_eq!(got, expected, "{child}");
    }
}
