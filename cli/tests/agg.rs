//! `kinesis agg encode|decode` through the real binary.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

fn kinesis(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kinesis"))
        .args(args)
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

fn json_lines(output: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(output)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn b64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

#[test]
fn encode_then_decode_gives_back_every_record() {
    let mut input = String::new();
    for i in 0..200 {
        let mut record =
            json!({"partition_key": format!("pk-{}", i % 7), "data": b64(&[i as u8; 90])});
        if i % 5 == 0 {
            record["explicit_hash_key"] = json!(format!("{}", i * 1_000_000));
        }
        input.push_str(&format!("{record}\n"));
    }
    let encoded = kinesis(&["agg", "encode", "--max-size", "4096"], &input);
    assert!(
        encoded.status.success(),
        "{}",
        String::from_utf8_lossy(&encoded.stderr)
    );
    let kinesis_records = json_lines(&encoded.stdout);
    assert!(
        kinesis_records.len() > 3,
        "4 KiB aggregates must split 200 records"
    );
    for r in &kinesis_records {
        assert!(r["data"].as_str().unwrap().len() <= 4096 * 4 / 3 + 4);
    }

    // Give each Kinesis record a sequence number, as GetRecords would.
    let decode_input: String = kinesis_records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            format!(
                "{}\n",
                json!({"data": r["data"], "partition_key": r["partition_key"], "sequence_number": format!("4959{i:04}")})
            )
        })
        .collect();
    let decoded = kinesis(&["agg", "decode"], &decode_input);
    assert!(
        decoded.status.success(),
        "{}",
        String::from_utf8_lossy(&decoded.stderr)
    );
    let user_records = json_lines(&decoded.stdout);
    assert_eq!(user_records.len(), 200);
    let mut last = (String::new(), 0);
    for (i, (record, original)) in user_records.iter().zip(input.lines()).enumerate() {
        let original: Value = serde_json::from_str(original).unwrap();
        assert_eq!(
            record["partition_key"], original["partition_key"],
            "record {i}"
        );
        assert_eq!(record["data"], original["data"], "record {i}");
        assert_eq!(
            record["explicit_hash_key"],
            original
                .get("explicit_hash_key")
                .cloned()
                .unwrap_or(Value::Null),
            "record {i}"
        );
        assert_eq!(record["aggregated"], json!(true));
        let position = (
            record["sequence_number"].as_str().unwrap().to_owned(),
            record["sub_sequence_number"].as_u64().unwrap(),
        );
        if position.0 == last.0 {
            assert_eq!(position.1, last.1 + 1);
        } else {
            assert_eq!(position.1, 0);
        }
        last = position;
    }
}

#[test]
fn a_lone_record_is_encoded_plain_and_decoded_as_plain() {
    let encoded = kinesis(
        &["agg", "encode"],
        &format!(
            "{}\n",
            json!({"partition_key": "k", "explicit_hash_key": "7", "data": b64(b"raw")})
        ),
    );
    assert!(encoded.status.success());
    let records = json_lines(&encoded.stdout);
    assert_eq!(
        records,
        vec![json!({"partition_key": "k", "explicit_hash_key": "7", "data": b64(b"raw")})]
    );

    let decoded = kinesis(
        &["agg", "decode"],
        &format!("{}\n", json!({"data": b64(b"raw"), "partition_key": "k"})),
    );
    assert_eq!(
        json_lines(&decoded.stdout),
        vec![
            json!({"partition_key": "k", "explicit_hash_key": null, "data": b64(b"raw"),
                    "sequence_number": null, "sub_sequence_number": 0, "aggregated": false})
        ]
    );
}

#[test]
fn bad_lines_are_all_reported_by_number_and_nothing_is_written() {
    let input = [
        json!({"partition_key": "ok", "data": b64(b"fine")}).to_string(),
        "{not json".to_owned(),
        json!({"partition_key": "", "data": b64(b"x")}).to_string(),
        json!({"partition_key": "k", "data": "***"}).to_string(),
        json!({"partition_key": "k", "data": b64(b"x"), "explicit_hash_key": "-5"}).to_string(),
        json!({"partition_key": "k", "dta": b64(b"x")}).to_string(),
        json!({"partition_key": "k".repeat(257), "data": b64(b"x")}).to_string(),
    ]
    .join("\n");
    let output = kinesis(&["agg", "encode"], &input);
    assert!(!output.status.success());
    assert!(
        output.stdout.is_empty(),
        "nothing may be written on bad input"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("6 invalid input line(s)"), "{stderr}");
    for (line, needle) in [
        (2, "invalid JSON"),
        (3, "partition key is empty"),
        (4, "not valid base64"),
        (5, "explicit hash key \"-5\""),
        (6, "unknown field `dta`"),
        (7, "257 characters"),
    ] {
        assert!(
            stderr
                .lines()
                .any(|l| l.contains(&format!("line {line}:")) && l.contains(needle)),
            "line {line} should be reported with {needle:?}:\n{stderr}"
        );
    }

    let output = kinesis(&["agg", "encode", "--max-size", "10"], "");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("AggregationMaxSize 10"));
}

#[test]
fn a_corrupt_aggregate_is_passed_through_with_a_warning() {
    let mut input = String::new();
    for i in 0..3 {
        input.push_str(&format!(
            "{}\n",
            json!({"partition_key": format!("k{i}"), "data": b64(b"payload")})
        ));
    }
    let encoded = json_lines(&kinesis(&["agg", "encode"], &input).stdout);
    assert_eq!(encoded.len(), 1);
    use base64::Engine;
    let mut blob = base64::engine::general_purpose::STANDARD
        .decode(encoded[0]["data"].as_str().unwrap())
        .unwrap();
    let last = blob.len() - 1;
    blob[last] ^= 0xff;
    let decode_input = format!(
        "{}\n{}\n",
        json!({"data": b64(b"plain"), "partition_key": "p"}),
        json!({"data": b64(&blob), "partition_key": "k0", "sequence_number": "1"})
    );
    let output = kinesis(&["agg", "decode"], &decode_input);
    assert!(output.status.success());
    let records = json_lines(&output.stdout);
    assert_eq!(records.len(), 2);
    assert_eq!(records[1]["data"], json!(b64(&blob)));
    assert_eq!(records[1]["aggregated"], json!(false));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("line 2: has the aggregate magic but MD5 digest does not match"),
        "{stderr}"
    );
    assert!(stderr.contains("1 corrupt"), "{stderr}");
}
