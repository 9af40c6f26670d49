//! One request through the proxy: decide its faults, forward it (perhaps altered), answer.

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Request, Response, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tokio::sync::Notify;

use super::Shared;
use super::errors::{self, RequestContext};
use super::faults::{Block, ErrorResponse, Faults};
use super::put_records::{EntryError, PutRecordsRequest, merge_response};
use super::stats::{FaultKind, bump};

/// Headers not copied across: those that describe one hop of a connection rather than the
/// message, `content-length` (set from the possibly altered body) and `expect` (the body is
/// already read in full).
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
    "expect",
];

/// The operation part of a target: `PutRecords` for `Kinesis_20131202.PutRecords`.
fn operation(target: &str) -> &str {
    target.split_once('.').map_or(target, |(_, op)| op)
}

/// Injected PutRecords entry failures, to merge into the server's response.
struct EntryPlan {
    failures: Vec<Option<EntryError>>,
    /// The request without the failed entries; `None` when all failed.
    reduced_body: Option<Bytes>,
    stream: String,
    account: String,
}

/// Answers one request. To reset the connection instead, notifies `reset` and never returns
/// (the connection task drops this future with the connection).
pub(crate) async fn handle(
    shared: &Shared,
    reset: &Notify,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    // Read the whole body first: the PutRecords surgery needs it, and a reset "before
    // forwarding" should come after the client finished sending, as with a server that died.
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        return plain(400, "could not read the request body");
    };
    shared.with_stats(|s| bump(&mut s.received_by_target, &target));
    let _in_flight = (operation(&target) == "PutRecords")
        .then(|| PutRecordsRequest::parse(&body))
        .flatten()
        .map(|request| InFlight::new(shared, request.billed_bytes()));
    let faults = shared.faults.borrow().clone();
    let ctx = RequestContext {
        target: &target,
        content_type: parts.headers.get(header::CONTENT_TYPE),
        stream: None,
        request_id: shared.next_request_id(),
    };

    if let Some(blocked) = &faults.block
        && blocked.targets.matches(&target)
    {
        if blocked.mode == Block::Hang {
            shared.count_fault(FaultKind::BlockedHeld);
            shared.wait_unblocked(&target).await;
        } else {
            shared.count_fault(FaultKind::BlockedFailed);
        }
        return errors::response(&ErrorResponse::InternalError, &ctx);
    }

    if faults.latency.targets.matches(&target) {
        let delay = faults.latency.fixed + shared.jitter(faults.latency.jitter);
        if !delay.is_zero() {
            shared.count_fault(FaultKind::Delayed);
            tokio::time::sleep(delay).await;
        }
    }

    let resets_apply = faults.resets.targets.matches(&target);
    if resets_apply && shared.chance(faults.resets.before_forwarding) {
        shared.count_fault(FaultKind::ResetBeforeForwarding);
        return reset_connection(reset).await;
    }

    if let Some(response) = injected_error(shared, &faults, &ctx, &body) {
        return response;
    }

    let mut forward_body = body;
    let plan = entry_failures(shared, &faults, &parts.headers, &forward_body);
    if let Some(plan) = &plan {
        match &plan.reduced_body {
            Some(reduced) => forward_body = reduced.clone(),
            None => {
                // Every entry failed: like Kinesis, write nothing at all.
                shared.count_fault(FaultKind::PutRecordsNotForwarded);
                return merged_put_records(shared, None, plan, &ctx);
            }
        }
    }

    let response = match forward(shared, &parts, forward_body).await {
        Ok(response) => response,
        Err(error) => {
            shared.count_fault(FaultKind::UpstreamError);
            return errors::json_error(502, "BadGateway", &error, &ctx);
        }
    };
    shared.with_stats(|s| bump(&mut s.forwarded_by_target, &target));

    if resets_apply && shared.chance(faults.resets.after_forwarding) {
        shared.count_fault(FaultKind::ResetAfterForwarding);
        return reset_connection(reset).await;
    }

    match plan {
        Some(plan) if response.status() == 200 => {
            merged_put_records(shared, Some(response), &plan, &ctx)
        }
        _ if operation(&target) == "GetRecords" && response.status() == 200 => {
            match faults.get_records.millis_behind_latest {
                Some(behind) => with_millis_behind_latest(shared, response, behind),
                None => response.map(Full::new),
            }
        }
        _ => response.map(Full::new),
    }
}

/// A GetRecords answer reporting `behind` as its `MillisBehindLatest` (kept as it is if its body
/// is not a JSON object).
fn with_millis_behind_latest(
    shared: &Shared,
    response: Response<Bytes>,
    behind: i64,
) -> Response<Full<Bytes>> {
    let (mut parts, body) = response.into_parts();
    let Ok(serde_json::Value::Object(mut answer)) = serde_json::from_slice(&body) else {
        return Response::from_parts(parts, Full::new(body));
    };
    answer.insert("MillisBehindLatest".into(), behind.into());
    let body = Bytes::from(serde_json::Value::Object(answer).to_string());
    set_content_length(&mut parts.headers, body.len());
    // The server's checksum no longer matches the body.
    parts.headers.remove("x-amz-crc32");
    shared.count_fault(FaultKind::MillisBehindLatestRewritten);
    Response::from_parts(parts, Full::new(body))
}

/// Counts a PutRecords request's bytes in flight until it is answered (or its connection reset:
/// the handler is dropped then).
struct InFlight<'a> {
    shared: &'a Shared,
    bytes: u64,
}

impl<'a> InFlight<'a> {
    fn new(shared: &'a Shared, bytes: u64) -> Self {
        shared.with_stats(|s| {
            s.put_records_bytes_in_flight += bytes;
            s.peak_put_records_bytes_in_flight = s
                .peak_put_records_bytes_in_flight
                .max(s.put_records_bytes_in_flight);
        });
        InFlight { shared, bytes }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let bytes = self.bytes;
        // Saturating: the stats may have been reset meanwhile.
        self.shared.with_stats(|s| {
            s.put_records_bytes_in_flight = s.put_records_bytes_in_flight.saturating_sub(bytes)
        });
    }
}

/// Chooses the PutRecords entries to fail; `None` when the request is not a PutRecords, entry
/// failures are off, or none was chosen.
fn entry_failures(
    shared: &Shared,
    faults: &Faults,
    headers: &HeaderMap,
    body: &[u8],
) -> Option<EntryPlan> {
    let rates = &faults.put_records;
    if rates.entry_failure_rate <= 0.0
        || headers
            .get("x-amz-target")
            .is_none_or(|t| operation(t.to_str().unwrap_or("")) != "PutRecords")
        || headers.contains_key(header::CONTENT_ENCODING)
    {
        return None;
    }
    let request = PutRecordsRequest::parse(body)?;
    let failures: Vec<Option<EntryError>> = (0..request.len())
        .map(|_| {
            shared.chance(rates.entry_failure_rate).then(|| {
                if shared.chance(rates.internal_failure_share) {
                    EntryError::Internal
                } else {
                    EntryError::Throttled
                }
            })
        })
        .collect();
    if failures.iter().all(Option::is_none) {
        return None;
    }
    shared.with_stats(|s| {
        s.count_fault(FaultKind::PartialPutRecords);
        for error in failures.iter().flatten() {
            bump(&mut s.failed_entries_by_code, error.code());
        }
    });
    Some(EntryPlan {
        reduced_body: request.without(&failures).map(Bytes::from),
        stream: request.stream_name().unwrap_or("unknown").to_owned(),
        account: request.account().to_owned(),
        failures,
    })
}

/// Whole-request errors and GetRecords faults, answered without forwarding.
fn injected_error(
    shared: &Shared,
    faults: &Faults,
    ctx: &RequestContext<'_>,
    body: &[u8],
) -> Option<Response<Full<Bytes>>> {
    let errors = &faults.errors;
    let (kind, error) = if errors.targets.matches(ctx.target)
        && !errors.responses.is_empty()
        && shared.chance(errors.rate)
    {
        let error = &errors.responses[shared.pick(errors.responses.len())];
        (FaultKind::RequestError, error)
    } else if operation(ctx.target) == "GetRecords"
        && shared.chance(faults.get_records.throttle_rate)
    {
        (
            FaultKind::GetRecordsThrottled,
            &ErrorResponse::ProvisionedThroughputExceeded,
        )
    } else if operation(ctx.target) == "GetRecords"
        && shared.chance(faults.get_records.expired_iterator_rate)
    {
        (FaultKind::ExpiredIterator, &ErrorResponse::ExpiredIterator)
    } else {
        return None;
    };
    shared.count_fault(kind);
    // Only now, on the rare faulted request, look for the stream name the message mentions.
    let stream = stream_name(body);
    let ctx = RequestContext {
        stream: stream.as_deref(),
        ..ctx.clone()
    };
    Some(errors::response(error, &ctx))
}

/// `StreamName` (or the name in `StreamARN`) of a Kinesis request body.
fn stream_name(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    if let Some(name) = value.get("StreamName").and_then(|v| v.as_str()) {
        return Some(name.to_owned());
    }
    let arn = value.get("StreamARN")?.as_str()?;
    Some(arn.rsplit_once("stream/")?.1.to_owned())
}

/// The PutRecords answer with the injected failures merged in.
fn merged_put_records(
    shared: &Shared,
    upstream: Option<Response<Bytes>>,
    plan: &EntryPlan,
    ctx: &RequestContext<'_>,
) -> Response<Full<Bytes>> {
    let (mut parts, upstream_body) = match upstream {
        Some(response) => {
            let (parts, body) = response.into_parts();
            (parts, Some(body))
        }
        None => {
            let mut parts = Response::new(()).into_parts().0;
            let content_type = ctx
                .content_type
                .cloned()
                .unwrap_or_else(|| HeaderValue::from_static("application/x-amz-json-1.1"));
            parts.headers.insert(header::CONTENT_TYPE, content_type);
            (parts, None)
        }
    };
    match merge_response(
        upstream_body.as_deref(),
        &plan.failures,
        &plan.stream,
        &plan.account,
    ) {
        Ok(body) => {
            // The body changed: a checksum of the server's body would now be wrong.
            parts.headers.remove("x-amz-crc32");
            set_content_length(&mut parts.headers, body.len());
            Response::from_parts(parts, Full::new(Bytes::from(body)))
        }
        Err(error) => {
            shared.count_fault(FaultKind::UpstreamError);
            errors::json_error(502, "BadGateway", &error, ctx)
        }
    }
}

/// Sends the request to the server and reads the whole response.
async fn forward(shared: &Shared, parts: &Parts, body: Bytes) -> Result<Response<Bytes>, String> {
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let uri: http::Uri = format!("{}{path}", shared.upstream)
        .parse()
        .map_err(|e| format!("bad upstream URI: {e}"))?;
    let mut request = Request::builder()
        .method(parts.method.clone())
        .uri(uri)
        .body(Full::new(Bytes::new()))
        .expect("method and URI are valid");
    // Host and the SigV4 headers go across unchanged: the servers do not check signatures,
    // and a body the proxy changed only needs the new Content-Length.
    copy_end_to_end(&parts.headers, request.headers_mut());
    set_content_length(request.headers_mut(), body.len());
    *request.body_mut() = Full::new(body);

    let response = shared
        .client
        .request(request)
        .await
        .map_err(|e| format!("forwarding to {}: {e}", shared.upstream))?;
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| format!("reading the response of {}: {e}", shared.upstream))?
        .to_bytes();
    let mut response = Response::new(body);
    *response.status_mut() = parts.status;
    copy_end_to_end(&parts.headers, response.headers_mut());
    let len = response.body().len();
    set_content_length(response.headers_mut(), len);
    Ok(response)
}

fn copy_end_to_end(from: &HeaderMap, to: &mut HeaderMap) {
    for (name, value) in from {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            to.append(name.clone(), value.clone());
        }
    }
}

fn set_content_length(headers: &mut HeaderMap, len: usize) {
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
}

async fn reset_connection(reset: &Notify) -> Response<Full<Bytes>> {
    reset.notify_one();
    std::future::pending().await
}

fn plain(status: u16, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = http::StatusCode::from_u16(status).expect("a valid status");
    response
}
