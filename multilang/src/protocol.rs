//! The MultiLangDaemon's JSON line protocol: one JSON object per line, its type in `"action"`.
//! Field names and null handling are those of the Java daemon's messages (`InitializeMessage`,
//! `ProcessRecordsMessage`, `JsonFriendlyRecord`, `CheckpointMessage`, `StatusMessage`) as
//! amazon-kclpy's `messages.py` reads them. Pure: encoding and decoding only.
//!
//! ```text
//! daemon → child                                    child → daemon
//! {"action":"initialize","shardId":…,                {"action":"status","responseFor":"initialize"}
//!   "sequenceNumber":…,"subSequenceNumber":…}
//! {"action":"processRecords","records":[…],          {"action":"checkpoint","sequenceNumber":…,
//!   "millisBehindLatest":…}                             "subSequenceNumber":…}   (any number, each
//! {"action":"checkpoint","sequenceNumber":…,           answered by the daemon's checkpoint reply)
//!   "subSequenceNumber":…,"error":…}                 {"action":"status","responseFor":"processRecords"}
//! {"action":"leaseLost"} · {"action":"shardEnded"} · {"action":"shutdownRequested"}
//! ```

use std::time::UNIX_EPOCH;

use base64::Engine;
use kinesis_aggregation::SequenceNumber;
use kinesis_consumer::Record;
use kinesis_consumer::lease::Checkpoint;
use serde::Serialize;
use serde_json::Value;
use thiserror::Error;

/// The actions the daemon sends; the child answers each with `status {responseFor: action}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `initialize`.
    Initialize,
    /// `processRecords`.
    ProcessRecords,
    /// `leaseLost`.
    LeaseLost,
    /// `shardEnded`.
    ShardEnded,
    /// `shutdownRequested`.
    ShutdownRequested,
}

impl Action {
    /// The action's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Initialize => "initialize",
            Action::ProcessRecords => "processRecords",
            Action::LeaseLost => "leaseLost",
            Action::ShardEnded => "shardEnded",
            Action::ShutdownRequested => "shutdownRequested",
        }
    }
}

/// A message from the daemon to the child.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(
    tag = "action",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum DaemonMessage {
    /// Before anything else: the shard and where processing resumes (the lease's checkpoint:
    /// a sequence number, or `TRIM_HORIZON`, `LATEST`, `AT_TIMESTAMP`, `SHARD_END`).
    Initialize {
        /// The shard.
        shard_id: String,
        /// The checkpoint's sequence number or sentinel.
        sequence_number: Option<String>,
        /// The checkpoint's sub-sequence number.
        sub_sequence_number: Option<u64>,
    },
    /// A batch of records.
    ProcessRecords {
        /// The records, in shard order.
        records: Vec<JsonRecord>,
        /// How far behind the tip of the shard the batch is.
        millis_behind_latest: Option<i64>,
    },
    /// The lease was lost; the child may not checkpoint.
    LeaseLost,
    /// The shard is fully read; the child must checkpoint (at SHARD_END).
    ShardEnded,
    /// The daemon is shutting down; the child may checkpoint.
    ShutdownRequested,
    /// The answer to a checkpoint request: the request's position, and on failure the Java
    /// KCL exception's simple name.
    Checkpoint {
        /// The sequence number asked for (null: the last delivered record).
        sequence_number: Option<String>,
        /// The sub-sequence number asked for.
        sub_sequence_number: Option<u64>,
        /// `ShutdownException`, `InvalidStateException`, … or null on success.
        error: Option<String>,
    },
}

impl DaemonMessage {
    /// The message as one line of JSON, newline included.
    pub fn to_line(&self) -> String {
        let mut line = serde_json::to_string(self).expect("messages always serialize");
        line.push('\n');
        line
    }

    /// The `initialize` message for a shard resuming at `checkpoint`.
    pub fn initialize(shard_id: &str, checkpoint: &Checkpoint) -> Self {
        DaemonMessage::Initialize {
            shard_id: shard_id.to_owned(),
            sequence_number: Some(checkpoint.as_str().to_owned()),
            sub_sequence_number: Some(checkpoint.sub_sequence_number()),
        }
    }
}

/// A record as the Java daemon's `JsonFriendlyRecord` writes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JsonRecord {
    /// Always `"record"`.
    pub action: &'static str,
    /// The data, base64 (standard alphabet, padded).
    pub data: String,
    /// The partition key.
    pub partition_key: String,
    /// The sequence number of the Kinesis record that carried it.
    pub sequence_number: String,
    /// Its index in a KPL aggregate; 0 for a plain record.
    pub sub_sequence_number: u64,
    /// When Kinesis accepted it, in milliseconds since the epoch.
    pub approximate_arrival_timestamp: Option<u64>,
}

impl From<&Record> for JsonRecord {
    fn from(record: &Record) -> Self {
        JsonRecord {
            action: "record",
            data: base64::engine::general_purpose::STANDARD.encode(&record.data),
            partition_key: record.partition_key.as_str().to_owned(),
            sequence_number: record.sequence_number.as_str().to_owned(),
            sub_sequence_number: record.sub_sequence_number,
            approximate_arrival_timestamp: record
                .approximate_arrival
                .and_then(|at| at.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_millis() as u64),
        }
    }
}

/// A message from the child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChildMessage {
    /// The child finished handling `response_for`.
    Status {
        /// The action it answers.
        response_for: String,
    },
    /// The child asks for a checkpoint.
    Checkpoint(CheckpointRequest),
}

/// A checkpoint request as sent; echoed in the reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointRequest {
    /// The sequence number, or `None` for "the last record delivered".
    pub sequence_number: Option<String>,
    /// The sub-sequence number, if given.
    pub sub_sequence_number: Option<i64>,
}

/// Where a valid checkpoint request points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointTarget {
    /// The last record delivered (or SHARD_END at the end of the shard).
    LastDelivered,
    /// This record (sub-sequence number 0 when none was given, as the Java daemon).
    At {
        /// The sequence number.
        sequence_number: SequenceNumber,
        /// The sub-sequence number.
        sub_sequence_number: u64,
    },
}

impl CheckpointRequest {
    /// What to checkpoint, or the Java exception name (`IllegalArgumentException`, as the Java
    /// checkpointer throws for a malformed sequence number) when the request cannot be read.
    pub fn target(&self) -> Result<CheckpointTarget, &'static str> {
        let Some(text) = &self.sequence_number else {
            return Ok(CheckpointTarget::LastDelivered);
        };
        let sequence_number = SequenceNumber::new(text).map_err(|_| "IllegalArgumentException")?;
        let sub_sequence_number = match self.sub_sequence_number {
            None => 0,
            Some(n) => u64::try_from(n).map_err(|_| "IllegalArgumentException")?,
        };
        Ok(CheckpointTarget::At {
            sequence_number,
            sub_sequence_number,
        })
    }

    /// The daemon's reply: the request's position echoed, with the error name if any.
    pub fn reply(&self, error: Option<&str>) -> DaemonMessage {
        DaemonMessage::Checkpoint {
            sequence_number: self.sequence_number.clone(),
            sub_sequence_number: self.sub_sequence_number.and_then(|n| u64::try_from(n).ok()),
            error: error.map(str::to_owned),
        }
    }
}

/// What one line of the child's stdout is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChildLine {
    /// An empty line (amazon-kclpy surrounds every message with newlines).
    Empty,
    /// Not a protocol message (something the application printed); logged and skipped, as the
    /// Java daemon does.
    NotAMessage(String),
    /// A protocol message.
    Message(ChildMessage),
}

/// A line that claims to be a `status` or `checkpoint` message but is malformed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("malformed {action} message: {reason}")]
pub struct MalformedMessage {
    /// The message's action.
    pub action: String,
    /// What is wrong.
    pub reason: String,
}

/// Classifies a line of the child's stdout.
pub fn parse_child_line(line: &str) -> Result<ChildLine, MalformedMessage> {
    let line = line.trim();
    if line.is_empty() {
        return Ok(ChildLine::Empty);
    }
    let Ok(Value::Object(object)) = serde_json::from_str::<Value>(line) else {
        return Ok(ChildLine::NotAMessage(line.to_owned()));
    };
    let Some(Value::String(action)) = object.get("action") else {
        return Ok(ChildLine::NotAMessage(line.to_owned()));
    };
    let malformed = |reason: &str| MalformedMessage {
        action: action.clone(),
        reason: reason.to_owned(),
    };
    match action.as_str() {
        "status" => match object.get("responseFor") {
            Some(Value::String(response_for)) => Ok(ChildLine::Message(ChildMessage::Status {
                response_for: response_for.clone(),
            })),
            _ => Err(malformed("responseFor must be a string")),
        },
        "checkpoint" => {
            // Lenient like Jackson: numbers are accepted for the sequence number, numeric
            // strings for the sub-sequence number.
            let sequence_number = match object.get("sequenceNumber") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                Some(_) => return Err(malformed("sequenceNumber must be a string or null")),
            };
            let sub_sequence_number = match object.get("subSequenceNumber") {
                None | Some(Value::Null) => None,
                Some(Value::Number(n)) => Some(
                    n.as_i64()
                        .ok_or_else(|| malformed("subSequenceNumber must be an integer"))?,
                ),
                Some(Value::String(s)) => Some(
                    s.trim()
                        .parse()
                        .map_err(|_| malformed("subSequenceNumber must be an integer"))?,
                ),
                Some(_) => return Err(malformed("subSequenceNumber must be an integer or null")),
            };
            Ok(ChildLine::Message(ChildMessage::Checkpoint(
                CheckpointRequest {
                    sequence_number,
                    sub_sequence_number,
                },
            )))
        }
        _ => Ok(ChildLine::NotAMessage(line.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fixtures::record;
    use serde_json::json;

    mod fixtures {
        use kinesis_aggregation::SequenceNumber;
        use kinesis_consumer::Record;
        use std::time::{Duration, SystemTime};

        pub fn record(data: &[u8], seq: &str, sub: u64, arrival_ms: Option<u64>) -> Record {
            Record {
                partition_key: "pk-1".into(),
                explicit_hash_key: None,
                data: data.to_vec().into(),
                sequence_number: SequenceNumber::new(seq).unwrap(),
                sub_sequence_number: sub,
                aggregated: sub > 0,
                approximate_arrival: arrival_ms
                    .map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms)),
            }
        }
    }

    fn json_of(message: &DaemonMessage) -> Value {
        let line = message.to_line();
        assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'));
        serde_json::from_str(&line).unwrap()
    }

    #[test]
    fn daemon_messages_use_the_java_field_names() {
        let checkpoint = Checkpoint::at(SequenceNumber::new("4959").unwrap(), 2);
        assert_eq!(
            json_of(&DaemonMessage::initialize(
                "shardId-000000000001",
                &checkpoint
            )),
            json!({"action": "initialize", "shardId": "shardId-000000000001",
                   "sequenceNumber": "4959", "subSequenceNumber": 2})
        );
        assert_eq!(
            json_of(&DaemonMessage::initialize("s", &Checkpoint::TrimHorizon)),
            json!({"action": "initialize", "shardId": "s",
                   "sequenceNumber": "TRIM_HORIZON", "subSequenceNumber": 0})
        );
        let records = vec![
            JsonRecord::from(&record(b"hello", "49590", 0, Some(1_700_000_000_123))),
            JsonRecord::from(&record(&[0xff, 0, 1], "49591", 3, None)),
        ];
        assert_eq!(
            json_of(&DaemonMessage::ProcessRecords {
                records,
                millis_behind_latest: Some(42)
            }),
            json!({"action": "processRecords", "millisBehindLatest": 42, "records": [
                {"action": "record", "data": "aGVsbG8=", "partitionKey": "pk-1",
                 "sequenceNumber": "49590", "subSequenceNumber": 0,
                 "approximateArrivalTimestamp": 1_700_000_000_123u64},
                {"action": "record", "data": "/wAB", "partitionKey": "pk-1",
                 "sequenceNumber": "49591", "subSequenceNumber": 3,
                 "approximateArrivalTimestamp": null},
            ]})
        );
        // amazon-kclpy reads millisBehindLatest with json_dict[...]: the key must be present.
        assert_eq!(
            json_of(&DaemonMessage::ProcessRecords {
                records: vec![],
                millis_behind_latest: None
            }),
            json!({"action": "processRecords", "records": [], "millisBehindLatest": null})
        );
        for (message, action) in [
            (DaemonMessage::LeaseLost, "leaseLost"),
            (DaemonMessage::ShardEnded, "shardEnded"),
            (DaemonMessage::ShutdownRequested, "shutdownRequested"),
        ] {
            assert_eq!(json_of(&message), json!({ "action": action }));
        }
    }

    #[test]
    fn checkpoint_replies_echo_the_request_and_always_carry_both_positions() {
        let request = CheckpointRequest {
            sequence_number: None,
            sub_sequence_number: None,
        };
        // amazon-kclpy reads sequenceNumber and subSequenceNumber with json_dict[...].
        assert_eq!(
            json_of(&request.reply(None)),
            json!({"action": "checkpoint", "sequenceNumber": null,
                   "subSequenceNumber": null, "error": null})
        );
        let request = CheckpointRequest {
            sequence_number: Some("123".into()),
            sub_sequence_number: Some(4),
        };
        assert_eq!(
            json_of(&request.reply(Some("ShutdownException"))),
            json!({"action": "checkpoint", "sequenceNumber": "123",
                   "subSequenceNumber": 4, "error": "ShutdownException"})
        );
    }

    #[test]
    fn child_lines_are_classified() {
        let message = |line: &str| parse_child_line(line).unwrap();
        assert_eq!(message(""), ChildLine::Empty);
        assert_eq!(message("   \r"), ChildLine::Empty);
        assert_eq!(
            message(r#"{"action" : "status", "responseFor" : "initialize"}"#),
            ChildLine::Message(ChildMessage::Status {
                response_for: "initialize".into()
            })
        );
        // What amazon-kclpy's Checkpointer.checkpoint() writes.
        assert_eq!(
            message(
                r#"{"action": "checkpoint", "sequenceNumber": null, "subSequenceNumber": null}"#
            ),
            ChildLine::Message(ChildMessage::Checkpoint(CheckpointRequest {
                sequence_number: None,
                sub_sequence_number: None
            }))
        );
        assert_eq!(
            message(
                r#"{"action": "checkpoint", "sequenceNumber": 4959, "subSequenceNumber": "2"}"#
            ),
            ChildLine::Message(ChildMessage::Checkpoint(CheckpointRequest {
                sequence_number: Some("4959".into()),
                sub_sequence_number: Some(2)
            }))
        );
        for printed in [
            "Encountered shutdown exception, skipping checkpoint",
            "[1, 2, 3]",
            r#"{"no": "action"}"#,
            r#"{"action": "dance"}"#,
            "{not json",
        ] {
            assert_eq!(
                message(printed),
                ChildLine::NotAMessage(printed.into()),
                "{printed}"
            );
        }
        for malformed in [
            r#"{"action": "status"}"#,
            r#"{"action": "status", "responseFor": 3}"#,
            r#"{"action": "checkpoint", "sequenceNumber": [1]}"#,
            r#"{"action": "checkpoint", "subSequenceNumber": 1.5}"#,
            r#"{"action": "checkpoint", "subSequenceNumber": "x"}"#,
        ] {
            assert!(parse_child_line(malformed).is_err(), "{malformed}");
        }
    }

    #[test]
    fn checkpoint_targets() {
        let request = |seq: Option<&str>, sub: Option<i64>| CheckpointRequest {
            sequence_number: seq.map(str::to_owned),
            sub_sequence_number: sub,
        };
        assert_eq!(
            request(None, None).target(),
            Ok(CheckpointTarget::LastDelivered)
        );
        // A sub-sequence number without a sequence number is ignored, as the Java daemon does.
        assert_eq!(
            request(None, Some(3)).target(),
            Ok(CheckpointTarget::LastDelivered)
        );
        assert_eq!(
            request(Some("49590"), None).target(),
            Ok(CheckpointTarget::At {
                sequence_number: SequenceNumber::new("49590").unwrap(),
                sub_sequence_number: 0
            })
        );
        assert_eq!(
            request(Some("49590"), Some(7)).target(),
            Ok(CheckpointTarget::At {
                sequence_number: SequenceNumber::new("49590").unwrap(),
                sub_sequence_number: 7
            })
        );
        assert_eq!(
            request(Some("not-a-number"), None).target(),
            Err("IllegalArgumentException")
        );
        assert_eq!(
            request(Some("49590"), Some(-1)).target(),
            Err("IllegalArgumentException")
        );
    }

    #[test]
    fn action_names() {
        assert_eq!(Action::Initialize.as_str(), "initialize");
        assert_eq!(Action::ProcessRecords.as_str(), "processRecords");
        assert_eq!(Action::LeaseLost.as_str(), "leaseLost");
        assert_eq!(Action::ShardEnded.as_str(), "shardEnded");
        assert_eq!(Action::ShutdownRequested.as_str(), "shutdownRequested");
    }
}
