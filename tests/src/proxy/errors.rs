//! AWS JSON error responses, shaped as the SDK parses them: the code in `x-amzn-ErrorType`
//! (which the SDK prefers) and in the body's `__type`, with the message in `message`.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

use super::faults::ErrorResponse;

/// The account the local servers use when a request names none (kinesis-mock's default).
pub(crate) const DEFAULT_ACCOUNT: &str = "000000000000";

/// What an error message may mention about the request it answers.
#[derive(Debug, Clone)]
pub(crate) struct RequestContext<'a> {
    /// The `X-Amz-Target` header, empty when absent.
    pub target: &'a str,
    /// The request's content type, echoed so the SDK reads the body with the protocol it used.
    pub content_type: Option<&'a HeaderValue>,
    /// The stream the request names, when known.
    pub stream: Option<&'a str>,
    /// A request id for `x-amzn-RequestId`.
    pub request_id: u64,
}

impl RequestContext<'_> {
    fn is_dynamodb(&self) -> bool {
        self.target.starts_with("DynamoDB")
    }

    fn stream(&self) -> &str {
        self.stream.unwrap_or("unknown")
    }
}

/// Status, code and message of `error` for this request.
pub(crate) fn describe(error: &ErrorResponse, ctx: &RequestContext<'_>) -> (u16, String, String) {
    let (status, code, message) = match error {
        ErrorResponse::InternalError if ctx.is_dynamodb() => (
            500,
            "InternalServerError",
            "Internal server error".to_owned(),
        ),
        ErrorResponse::InternalError => (
            500,
            "InternalFailure",
            "Internal service failure.".to_owned(),
        ),
        ErrorResponse::ServiceUnavailable => (
            503,
            "ServiceUnavailable",
            "The service is unavailable. Please try again shortly.".to_owned(),
        ),
        ErrorResponse::ProvisionedThroughputExceeded if ctx.is_dynamodb() => (
            400,
            "ProvisionedThroughputExceededException",
            "The level of configured provisioned throughput for the table was exceeded. \
             Consider increasing your provisioning level with the UpdateTable API."
                .to_owned(),
        ),
        ErrorResponse::ProvisionedThroughputExceeded => (
            400,
            "ProvisionedThroughputExceededException",
            format!(
                "Rate exceeded for shard shardId-000000000000 in stream {} under account {DEFAULT_ACCOUNT}.",
                ctx.stream()
            ),
        ),
        ErrorResponse::LimitExceeded => (
            400,
            "LimitExceededException",
            format!(
                "Rate exceeded for stream {} under account {DEFAULT_ACCOUNT}.",
                ctx.stream()
            ),
        ),
        ErrorResponse::Throttling => (400, "ThrottlingException", "Rate exceeded".to_owned()),
        ErrorResponse::ExpiredIterator => (
            400,
            "ExpiredIteratorException",
            "Iterator expired. The iterator was created at time Thu Jan 01 00:00:00 UTC 1970 \
             while right now it is Thu Jan 01 00:05:01 UTC 1970 which is further in the future \
             than the tolerated delay of 300000 milliseconds."
                .to_owned(),
        ),
        ErrorResponse::Custom {
            status,
            code,
            message,
        } => return (*status, code.clone(), message.clone()),
    };
    (status, code.to_owned(), message)
}

/// The HTTP response for `error`.
pub(crate) fn response(error: &ErrorResponse, ctx: &RequestContext<'_>) -> Response<Full<Bytes>> {
    let (status, code, message) = describe(error, ctx);
    json_error(status, &code, &message, ctx)
}

/// An AWS JSON error response with an arbitrary status and code.
pub(crate) fn json_error(
    status: u16,
    code: &str,
    message: &str,
    ctx: &RequestContext<'_>,
) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "__type": code, "message": message }).to_string();
    let content_type = ctx
        .content_type
        .filter(|v| v.as_bytes().starts_with(b"application/x-amz-json"))
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static("application/x-amz-json-1.1"));
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, content_type);
    if let Ok(code) = HeaderValue::from_str(code) {
        headers.insert("x-amzn-ErrorType", code);
    }
    headers.insert(
        "x-amzn-RequestId",
        HeaderValue::from_str(&format!("fault-proxy-{:016x}", ctx.request_id))
            .expect("hex is a valid header value"),
    );
    response
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    fn ctx(target: &str) -> RequestContext<'_> {
        RequestContext {
            target,
            content_type: None,
            stream: Some("s"),
            request_id: 7,
        }
    }

    #[test]
    fn codes_and_statuses() {
        let cases = [
            (
                ErrorResponse::InternalError,
                "Kinesis_20131202.PutRecords",
                500,
                "InternalFailure",
            ),
            (
                ErrorResponse::InternalError,
                "DynamoDB_20120810.UpdateItem",
                500,
                "InternalServerError",
            ),
            (
                ErrorResponse::ServiceUnavailable,
                "Kinesis_20131202.PutRecords",
                503,
                "ServiceUnavailable",
            ),
            (
                ErrorResponse::ProvisionedThroughputExceeded,
                "Kinesis_20131202.GetRecords",
                400,
                "ProvisionedThroughputExceededException",
            ),
            (
                ErrorResponse::LimitExceeded,
                "Kinesis_20131202.ListShards",
                400,
                "LimitExceededException",
            ),
            (
                ErrorResponse::ExpiredIterator,
                "Kinesis_20131202.GetRecords",
                400,
                "ExpiredIteratorException",
            ),
        ];
        for (error, target, status, code) in cases {
            let (s, c, _) = describe(&error, &ctx(target));
            assert_eq!((s, c.as_str()), (status, code), "{error:?} for {target}");
        }
    }

    #[tokio::test]
    async fn response_carries_code_in_header_and_body() {
        let dynamo = HeaderValue::from_static("application/x-amz-json-1.0");
        let ctx = RequestContext {
            content_type: Some(&dynamo),
            ..ctx("DynamoDB_20120810.UpdateItem")
        };
        let response = response(&ErrorResponse::Throttling, &ctx);
        assert_eq!(response.status(), 400);
        assert_eq!(
            response.headers()["x-amzn-errortype"],
            "ThrottlingException"
        );
        assert_eq!(
            response.headers()["content-type"],
            "application/x-amz-json-1.0"
        );
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["__type"], "ThrottlingException");
    }
}
