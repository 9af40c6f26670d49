//! `kinesis put`, `tail` and `leases` against real local servers.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use kinesis_consumer::lease::{Checkpoint, DynamoLeaseStore, Lease, LeaseStore};
use kinesis_test_support::{
    DynamoDbServer, KinesisServer, create_stream, dynamodb_client, kinesis_client, unique_name,
};
use serde_json::Value;

fn kinesis(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kinesis"))
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn b64(data: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(data)
        .unwrap()
}

#[tokio::test]
async fn put_then_tail_round_trips_plain_and_aggregated() {
    let endpoint = KinesisServer::Kinesalite.endpoint();
    let client = kinesis_client(KinesisServer::Kinesalite).await;
    for aggregate in [false, true] {
        let stream = unique_name("cli");
        create_stream(&client, &stream, 2).await;
        let input: String = (0..300)
            .map(|i| format!("{{\"device\":\"d{}\",\"n\":{i}}}\n", i % 7))
            .collect();
        let mut args = vec![
            "put",
            "--stream",
            &stream,
            "--partition-key-field",
            "device",
            "--endpoint-url",
            &endpoint,
        ];
        if aggregate {
            args.push("--aggregate");
        }
        let put = kinesis(&args, &input);
        assert!(
            put.status.success(),
            "{}",
            String::from_utf8_lossy(&put.stderr)
        );
        assert!(String::from_utf8_lossy(&put.stderr).contains("put 300 records (0 failed)"));

        let tail = kinesis(
            &[
                "tail",
                "--stream",
                &stream,
                "--from",
                "trim-horizon",
                "--json",
                "--idle-exit",
                "2",
                "--endpoint-url",
                &endpoint,
            ],
            "",
        );
        assert!(
            tail.status.success(),
            "{}",
            String::from_utf8_lossy(&tail.stderr)
        );
        let lines: Vec<Value> = String::from_utf8_lossy(&tail.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 300);
        let mut seen: Vec<i64> = Vec::new();
        for line in &lines {
            let data: Value = serde_json::from_slice(&b64(line["data"].as_str().unwrap())).unwrap();
            assert_eq!(
                line["partition_key"], data["device"],
                "the field became the partition key"
            );
            assert_eq!(line["aggregated"], Value::Bool(aggregate));
            seen.push(data["n"].as_i64().unwrap());
        }
        seen.sort();
        assert_eq!(seen, (0..300).collect::<Vec<_>>());
    }
}

#[tokio::test]
async fn errors_are_one_clear_line_and_a_failure_status() {
    let endpoint = KinesisServer::Kinesalite.endpoint();
    let missing = kinesis(
        &[
            "tail",
            "--stream",
            "no-such-stream",
            "--endpoint-url",
            &endpoint,
        ],
        "",
    );
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        stderr.contains("stream no-such-stream: ResourceNotFoundException"),
        "{stderr}"
    );

    let unreachable = kinesis(
        &[
            "put",
            "--stream",
            "s",
            "--endpoint-url",
            "http://127.0.0.1:9",
        ],
        "x\n",
    );
    assert!(!unreachable.status.success());
    assert!(String::from_utf8_lossy(&unreachable.stderr).contains("unreachable"));

    let client = kinesis_client(KinesisServer::Kinesalite).await;
    let stream = unique_name("cli-bad");
    create_stream(&client, &stream, 1).await;
    let bad = kinesis(
        &[
            "put",
            "--stream",
            &stream,
            "--partition-key-field",
            "k",
            "--endpoint-url",
            &endpoint,
        ],
        "{\"k\":\"a\"}\nnot json\n",
    );
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("line 2: not JSON"));
}

#[tokio::test]
async fn leases_shows_the_lease_table() {
    let dynamodb = dynamodb_client(DynamoDbServer::Dynalite).await;
    let app = unique_name("cli-app");
    let store = DynamoLeaseStore::new(dynamodb, app.clone());
    store.create_table_if_absent().await.unwrap();
    let parent = store
        .create_if_absent(&Lease::new(
            "shardId-000000000000".into(),
            Checkpoint::ShardEnd,
        ))
        .await
        .unwrap();
    let child = store
        .create_if_absent(
            &Lease::new("shardId-000000000001".into(), Checkpoint::TrimHorizon)
                .with_parents([parent.lease_key.clone()]),
        )
        .await
        .unwrap();
    store.take(&child, "worker-7").await.unwrap();

    // A 2-shard stream with records, so the lag of the TRIM_HORIZON lease can be read.
    let kinesis_endpoint = KinesisServer::Kinesalite.endpoint();
    let stream = unique_name("cli-lag");
    create_stream(&kinesis_client(KinesisServer::Kinesalite).await, &stream, 2).await;
    let endpoint = DynamoDbServer::Dynalite.endpoint();
    let out = kinesis(
        &[
            "leases",
            "--app",
            &app,
            "--json",
            "--dynamodb-endpoint-url",
            &endpoint,
            "--stream",
            &stream,
            "--endpoint-url",
            &kinesis_endpoint,
        ],
        "",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut rows: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    rows.sort_by_key(|r| r["shard"].as_str().unwrap().to_owned());
    assert_eq!(rows[0]["checkpoint"], "SHARD_END");
    assert_eq!(rows[0]["owner"], Value::Null);
    assert_eq!(rows[1]["owner"], "worker-7");
    assert_eq!(rows[1]["counter"], 1);
    assert_eq!(
        rows[1]["parents"],
        serde_json::json!(["shardId-000000000000"])
    );
    assert!(
        rows[1]["millis_behind_latest"].is_i64(),
        "lag read for a readable checkpoint: {}",
        rows[1]
    );
    assert_eq!(
        rows[0]["millis_behind_latest"],
        Value::Null,
        "no lag for a finished shard"
    );

    let table = kinesis(
        &[
            "leases",
            "--app",
            &app,
            "--dynamodb-endpoint-url",
            &endpoint,
        ],
        "",
    );
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.lines().next().unwrap().starts_with("shard"));
    assert!(
        text.contains("worker-7") && text.contains("TRIM_HORIZON"),
        "{text}"
    );

    let missing = kinesis(
        &[
            "leases",
            "--app",
            "no-such-app",
            "--dynamodb-endpoint-url",
            &endpoint,
        ],
        "",
    );
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no lease table no-such-app"));
}

#[test]
fn missing_credentials_are_named_as_such() {
    let home = std::env::temp_dir().join(format!("kinesis-cli-no-home-{}", std::process::id()));
    let output = Command::new(env!("CARGO_BIN_EXE_kinesis"))
        .args([
            "tail",
            "--stream",
            "s",
            "--endpoint-url",
            &KinesisServer::Kinesalite.endpoint(),
        ])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", home.join("config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.join("credentials"))
        .env("HOME", &home)
        .env("AWS_REGION", "us-east-1")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no AWS credentials found"), "{stderr}");
}
