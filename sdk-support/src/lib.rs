//! What the kinesis-rs producer and consumer share about the AWS SDK for Rust: readable error
//! text, telling credentials failures apart, and a credentials check at start.
//!
//! ```
//! use kinesis_sdk_support::{error_text, MESSAGE_LIMIT};
//!
//! #[derive(Debug, thiserror::Error)]
//! #[error("dispatch failure")]
//! struct Dispatch(#[source] std::io::Error);
//!
//! let error = Dispatch(std::io::Error::other("connection refused"));
//! assert_eq!(error_text(&error, MESSAGE_LIMIT), "dispatch failure: connection refused");
//! ```

#![cfg_attr(doctest, doc = include_str!("../README.md"))]

use std::error::Error;
use std::future::Future;
use std::time::Duration;

use aws_credential_types::provider::error::CredentialsError;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

/// How long an error message kept with an attempt (or a checkpoint's failure) may be, in bytes:
/// enough for the chain of a connection or credentials failure, small enough that a million
/// failed records do not hold a gigabyte of text.
pub const MESSAGE_LIMIT: usize = 300;

/// `error` and its sources as one line, `outer: inner: innermost`, at most `max` bytes (cut at a
/// character boundary, ending in `…`). A source whose text the line already holds is left out:
/// many errors repeat their source's message in their own. Never the `Debug` form: the SDK's
/// `DisplayErrorContext` appends it, often more than a kilobyte per error.
pub fn error_text(error: &(dyn Error + 'static), max: usize) -> String {
    let mut text = String::new();
    let mut next = Some(error);
    while let Some(error) = next {
        let part = error.to_string();
        let part = part.trim();
        if !part.is_empty() && !text.contains(part) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(part);
        }
        if text.len() > max {
            break;
        }
        next = error.source();
    }
    truncate(text, max)
}

/// `text` cut to at most `max` bytes at a character boundary, with `…` at the cut.
pub fn truncate(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let ellipsis = '…';
    let mut end = max.saturating_sub(ellipsis.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push(ellipsis);
    text
}

/// Whether `error` or one of its sources is the SDK failing to load credentials (no provider
/// found any, a provider timed out or failed, or its configuration is invalid).
pub fn is_credentials_error(error: &(dyn Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(error) = next {
        if error.is::<CredentialsError>() {
            return true;
        }
        next = error.source();
    }
    false
}

/// The code an attempt's error carries when the request failed for want of credentials.
pub const CREDENTIALS_ERROR_CODE: &str = "CredentialsError";

/// How long [`check_credentials`] waits by default: under the 5 s in which a producer without
/// credentials should have said so, above what the default chain takes on a machine that has
/// some (environment or profile: at once; instance metadata: well under a second).
pub const CREDENTIALS_CHECK_TIMEOUT: Duration = Duration::from_secs(4);

/// Why [`check_credentials`] found no credentials.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialsCheckError {
    /// The credentials provider answered with an error (none in the chain had any, or one failed).
    #[error("no credentials could be loaded: {message}")]
    Failed {
        /// The provider's error, as [`error_text`] gives it.
        message: String,
    },
    /// The provider did not answer in time.
    #[error(
        "no credentials could be loaded within {waited:?} (the provider chain is still \
         looking; turn the credentials check off if they come later)"
    )]
    TimedOut {
        /// How long it waited.
        waited: Duration,
    },
}

/// An interceptor that ends a request once it is signed, before anything is sent: the request
/// goes through the client's own credentials resolution (its provider chain and identity cache,
/// which the SDK gives no other way to reach) and nothing reaches the service.
#[derive(Debug, Default, Clone, Copy)]
pub struct StopOnceSigned;

/// What [`StopOnceSigned`] ends the request with.
#[derive(Debug, thiserror::Error)]
#[error("the request was signed and not sent (credentials check)")]
struct Signed;

impl Intercept for StopOnceSigned {
    fn name(&self) -> &'static str {
        "StopOnceSigned"
    }

    fn read_after_signing(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _config: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        Err(Box::new(Signed))
    }
}

/// Checks that a client can load credentials: `signed_request` is a request of that client with
/// [`StopOnceSigned`] as an interceptor (e.g. `client.describe_limits().customize()
/// .interceptor(StopOnceSigned).send()`), so it resolves the credentials, is signed, and is never
/// sent. A producer or consumer built without credentials then fails at once with a clear error,
/// instead of retrying every record until it expires. Waits at most `timeout`. An error that is
/// not about credentials (the request could not be built, say) is not this check's to report: it
/// passes, and the real requests report it.
pub async fn check_credentials<T, E>(
    signed_request: impl Future<Output = Result<T, E>>,
    timeout: Duration,
) -> Result<(), CredentialsCheckError>
where
    E: Error + 'static,
{
    match tokio::time::timeout(timeout, signed_request).await {
        Err(_) => Err(CredentialsCheckError::TimedOut { waited: timeout }),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) if is_credentials_error(&error) => Err(CredentialsCheckError::Failed {
            message: error_text(&error, MESSAGE_LIMIT),
        }),
        Ok(Err(_)) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::Credentials;
    use aws_credential_types::provider::{ProvideCredentials, future};

    #[derive(Debug, thiserror::Error)]
    #[error("{text}")]
    struct Layer {
        text: String,
        #[source]
        source: Option<Box<dyn Error + Send + Sync>>,
    }

    fn layer(text: &str, source: Option<Box<dyn Error + Send + Sync>>) -> Layer {
        Layer {
            text: text.into(),
            source,
        }
    }

    #[test]
    fn the_text_is_the_display_chain_with_repeats_left_out() {
        let inner = layer("connection refused", None);
        let middle = layer("io error: connection refused", Some(Box::new(inner)));
        let outer = layer("dispatch failure", Some(Box::new(middle)));
        assert_eq!(
            error_text(&outer, MESSAGE_LIMIT),
            "dispatch failure: io error: connection refused"
        );
    }

    #[test]
    fn the_text_is_capped_at_a_character_boundary() {
        let long = layer(&"é".repeat(400), None);
        let text = error_text(&long, MESSAGE_LIMIT);
        assert!(text.len() <= MESSAGE_LIMIT, "{}", text.len());
        assert!(text.ends_with('…'));
        assert!(text.starts_with("éé"));
        assert_eq!(truncate("short".into(), 4), "s…");
        assert_eq!(truncate("short".into(), 5), "short");
    }

    #[test]
    fn a_credentials_failure_is_told_apart_wherever_it_sits_in_the_chain() {
        let credentials =
            CredentialsError::not_loaded("no providers in chain provided credentials");
        let wrapped = layer("dispatch failure", Some(Box::new(credentials)));
        assert!(is_credentials_error(&wrapped));
        assert!(error_text(&wrapped, MESSAGE_LIMIT).contains("credentials"));
        assert!(!is_credentials_error(&layer("dispatch failure", None)));
    }

    #[derive(Debug)]
    struct Failing;

    impl ProvideCredentials for Failing {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            future::ProvideCredentials::ready(Err(CredentialsError::not_loaded(
                "nothing in the environment",
            )))
        }
    }

    #[derive(Debug)]
    struct Hanging;

    impl ProvideCredentials for Hanging {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            future::ProvideCredentials::new(std::future::pending())
        }
    }

    /// A Kinesis client of `provider` whose endpoint nothing listens on: the check must not
    /// need it.
    fn client(provider: impl ProvideCredentials + 'static) -> aws_sdk_kinesis::Client {
        aws_sdk_kinesis::Client::from_conf(
            aws_sdk_kinesis::Config::builder()
                .behavior_version(aws_sdk_kinesis::config::BehaviorVersion::latest())
                .region(aws_sdk_kinesis::config::Region::new("us-east-1"))
                .endpoint_url("http://127.0.0.1:9")
                .credentials_provider(provider)
                .build(),
        )
    }

    async fn check(
        client: &aws_sdk_kinesis::Client,
        timeout: Duration,
    ) -> Result<(), CredentialsCheckError> {
        check_credentials(
            client
                .describe_limits()
                .customize()
                .interceptor(StopOnceSigned)
                .send(),
            timeout,
        )
        .await
    }

    #[tokio::test]
    async fn the_check_passes_with_credentials_and_says_why_without() {
        let good = client(Credentials::new("AKID", "secret", None, None, "test"));
        check(&good, CREDENTIALS_CHECK_TIMEOUT)
            .await
            .expect("static credentials sign the request");

        let failed = check(&client(Failing), CREDENTIALS_CHECK_TIMEOUT)
            .await
            .unwrap_err();
        assert!(
            matches!(&failed, CredentialsCheckError::Failed { message } if message.contains("nothing in the environment")),
            "{failed}"
        );
        assert!(failed.to_string().len() < 400, "{failed}");

        let waited = Duration::from_millis(100);
        let hung = check(&client(Hanging), waited).await.unwrap_err();
        assert!(
            matches!(hung, CredentialsCheckError::TimedOut { waited: w } if w == waited),
            "{hung}"
        );
    }
}
