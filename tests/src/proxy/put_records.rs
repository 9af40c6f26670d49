//! PutRecords surgery: drop the entries chosen to fail from the request, and put synthetic
//! failure results back at their positions in the server's response. Pure functions on JSON
//! bodies (awsJson1_1, which the SDK uses for Kinesis).

use serde_json::{Map, Value, json};

use super::errors::DEFAULT_ACCOUNT;

/// Why an injected entry failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EntryError {
    /// `ProvisionedThroughputExceededException`.
    Throttled,
    /// `InternalFailure`.
    Internal,
}

impl EntryError {
    /// The `ErrorCode` Kinesis reports for the entry.
    pub(crate) fn code(self) -> &'static str {
        match self {
            EntryError::Throttled => "ProvisionedThroughputExceededException",
            EntryError::Internal => "InternalFailure",
        }
    }
}

/// A parsed PutRecords request body.
#[derive(Debug)]
pub(crate) struct PutRecordsRequest {
    object: Map<String, Value>,
    records: Vec<Value>,
}

impl PutRecordsRequest {
    /// Parses a body; `None` when it is not a PutRecords request the proxy understands (then it
    /// is forwarded untouched and the server reports the problem).
    pub(crate) fn parse(body: &[u8]) -> Option<Self> {
        let Value::Object(mut object) = serde_json::from_slice(body).ok()? else {
            return None;
        };
        let Value::Array(records) = object.remove("Records")? else {
            return None;
        };
        Some(PutRecordsRequest { object, records })
    }

    /// How many entries the request holds.
    pub(crate) fn len(&self) -> usize {
        self.records.len()
    }

    /// The bytes Kinesis bills the request: each entry's partition key plus its decoded data.
    pub(crate) fn billed_bytes(&self) -> u64 {
        self.records
            .iter()
            .map(|record| {
                let text = |field: &str| match record.get(field) {
                    Some(Value::String(text)) => text.as_str(),
                    _ => "",
                };
                let data = text("Data");
                let padding = data.bytes().rev().take_while(|&b| b == b'=').count();
                let decoded = (data.len() / 4 * 3).saturating_sub(padding);
                (text("PartitionKey").len() + decoded) as u64
            })
            .sum()
    }

    /// The stream name, from `StreamName` or the last part of `StreamARN`.
    pub(crate) fn stream_name(&self) -> Option<&str> {
        if let Some(Value::String(name)) = self.object.get("StreamName") {
            return Some(name);
        }
        match self.object.get("StreamARN") {
            Some(Value::String(arn)) => arn.rsplit_once("stream/").map(|(_, name)| name),
            _ => None,
        }
    }

    /// The account, from `StreamARN` (`arn:aws:kinesis:REGION:ACCOUNT:stream/NAME`) when given.
    pub(crate) fn account(&self) -> &str {
        match self.object.get("StreamARN") {
            Some(Value::String(arn)) => arn.split(':').nth(4).unwrap_or(DEFAULT_ACCOUNT),
            _ => DEFAULT_ACCOUNT,
        }
    }

    /// The body to forward: the request without the failed entries (`failures[i]` is `Some` for
    /// each), or `None` when every entry failed and nothing must reach the server.
    pub(crate) fn without(&self, failures: &[Option<EntryError>]) -> Option<Vec<u8>> {
        let mut kept = self
            .records
            .iter()
            .zip(failures)
            .filter(|(_, failure)| failure.is_none())
            .map(|(record, _)| record)
            .peekable();
        kept.peek()?;
        // Written by hand so the kept entries (the bulk of the body) are not cloned.
        let mut body = Vec::with_capacity(self.records.len() * 64);
        body.extend_from_slice(b"{\"Records\":[");
        for (i, record) in kept.enumerate() {
            if i > 0 {
                body.push(b',');
            }
            serde_json::to_writer(&mut body, record).expect("a JSON value serializes");
        }
        body.push(b']');
        for (key, value) in &self.object {
            body.push(b',');
            serde_json::to_writer(&mut body, key).expect("a string serializes");
            body.push(b':');
            serde_json::to_writer(&mut body, value).expect("a JSON value serializes");
        }
        body.push(b'}');
        Some(body)
    }
}

/// The failure result Kinesis gives for an entry.
fn failure_result(error: EntryError, stream: &str, account: &str) -> Value {
    let message = match error {
        // Real Kinesis names the entry's shard; the proxy does not know the shard map.
        EntryError::Throttled => format!(
            "Rate exceeded for shard shardId-000000000000 in stream {stream} under account {account}."
        ),
        EntryError::Internal => "Internal service failure.".to_owned(),
    };
    json!({ "ErrorCode": error.code(), "ErrorMessage": message })
}

/// The response the client must see: the server's results for the forwarded entries (`upstream`,
/// or `None` when nothing was forwarded) with the injected failures at their request positions,
/// and `FailedRecordCount` counting both.
pub(crate) fn merge_response(
    upstream: Option<&[u8]>,
    failures: &[Option<EntryError>],
    stream: &str,
    account: &str,
) -> Result<Vec<u8>, String> {
    let (mut object, mut results) = match upstream {
        None => (Map::new(), Vec::new().into_iter()),
        Some(body) => {
            let Ok(Value::Object(mut object)) = serde_json::from_slice::<Value>(body) else {
                return Err("the PutRecords response is not a JSON object".to_owned());
            };
            let Some(Value::Array(results)) = object.remove("Records") else {
                return Err("the PutRecords response has no Records".to_owned());
            };
            (object, results.into_iter())
        }
    };
    let forwarded = failures.iter().filter(|f| f.is_none()).count();
    if results.len() != forwarded {
        return Err(format!(
            "the server returned {} results for {forwarded} entries",
            results.len()
        ));
    }
    let upstream_failed = object
        .get("FailedRecordCount")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let injected = failures.len() - forwarded;
    let merged: Vec<Value> = failures
        .iter()
        .map(|failure| match failure {
            Some(error) => failure_result(*error, stream, account),
            None => results.next().expect("counted above"),
        })
        .collect();
    object.insert(
        "FailedRecordCount".to_owned(),
        json!(upstream_failed + injected as u64),
    );
    object.insert("Records".to_owned(), Value::Array(merged));
    Ok(serde_json::to_vec(&object).expect("a JSON value serializes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQUEST: &str = r#"{"StreamName":"s","Records":[
        {"Data":"MA==","PartitionKey":"0"},
        {"Data":"MQ==","PartitionKey":"1"},
        {"Data":"Mg==","PartitionKey":"2","ExplicitHashKey":"5"}]}"#;

    #[test]
    fn drops_failed_entries_and_keeps_other_fields() {
        let request = PutRecordsRequest::parse(REQUEST.as_bytes()).unwrap();
        assert_eq!(request.len(), 3);
        assert_eq!(request.stream_name(), Some("s"));
        let body = request
            .without(&[None, Some(EntryError::Throttled), None])
            .unwrap();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["StreamName"], "s");
        let keys: Vec<&str> = body["Records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["PartitionKey"].as_str().unwrap())
            .collect();
        assert_eq!(keys, ["0", "2"]);
        assert_eq!(body["Records"][1]["ExplicitHashKey"], "5");
        let all = [Some(EntryError::Internal); 3];
        assert!(request.without(&all).is_none());
    }

    #[test]
    fn stream_and_account_from_arn() {
        let request = PutRecordsRequest::parse(
            br#"{"StreamARN":"arn:aws:kinesis:us-east-1:123456789012:stream/orders","Records":[]}"#,
        )
        .unwrap();
        assert_eq!(request.stream_name(), Some("orders"));
        assert_eq!(request.account(), "123456789012");
    }

    #[test]
    fn rejects_what_is_not_put_records() {
        assert!(PutRecordsRequest::parse(b"not json").is_none());
        assert!(PutRecordsRequest::parse(br#"{"StreamName":"s"}"#).is_none());
        assert!(PutRecordsRequest::parse(br#"[1]"#).is_none());
    }

    #[test]
    fn merges_results_in_request_order() {
        let upstream = br#"{"FailedRecordCount":1,"EncryptionType":"NONE","Records":[
            {"SequenceNumber":"1","ShardId":"shardId-000000000000"},
            {"ErrorCode":"InternalFailure","ErrorMessage":"x"}]}"#;
        let failures = [
            Some(EntryError::Throttled),
            None,
            Some(EntryError::Internal),
            None,
        ];
        let merged = merge_response(Some(upstream), &failures, "s", "1").unwrap();
        let merged: Value = serde_json::from_slice(&merged).unwrap();
        assert_eq!(merged["FailedRecordCount"], 3);
        assert_eq!(merged["EncryptionType"], "NONE");
        let records = merged["Records"].as_array().unwrap();
        assert_eq!(records.len(), 4);
        assert_eq!(
            records[0]["ErrorCode"],
            "ProvisionedThroughputExceededException"
        );
        assert_eq!(
            records[0]["ErrorMessage"],
            "Rate exceeded for shard shardId-000000000000 in stream s under account 1."
        );
        assert_eq!(records[1]["SequenceNumber"], "1");
        assert_eq!(records[2]["ErrorCode"], "InternalFailure");
        assert_eq!(records[3]["ErrorMessage"], "x");
    }

    #[test]
    fn all_failed_needs_no_upstream() {
        let failures = [Some(EntryError::Throttled), Some(EntryError::Internal)];
        let merged = merge_response(None, &failures, "s", "1").unwrap();
        let merged: Value = serde_json::from_slice(&merged).unwrap();
        assert_eq!(merged["FailedRecordCount"], 2);
        assert_eq!(merged["Records"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn refuses_a_mismatched_response() {
        let upstream = br#"{"FailedRecordCount":0,"Records":[]}"#;
        assert!(merge_response(Some(upstream), &[None], "s", "1").is_err());
    }
}
