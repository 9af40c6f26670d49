//! The producer and its credentials, against kinesalite: the check at build, and credentials that
//! go away mid-run (records fail with `CredentialsError` attempts whose messages are short and
//! shared by the records that travelled together, never a Debug dump per record).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, future};
use kinesis_producer::{BuildError, Producer, PutError};
use kinesis_test_support::{KinesisServer, create_stream, kinesis_client, sdk_config, unique_name};

/// Credentials that expire after a second (so the SDK asks again for each request) until they
/// are revoked; from then on the provider fails, as an expired session's would.
#[derive(Debug, Clone, Default)]
struct Revocable {
    revoked: Arc<AtomicBool>,
    calls: Arc<AtomicUsize>,
}

impl ProvideCredentials for Revocable {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if self.revoked.load(Ordering::Relaxed) {
            return future::ProvideCredentials::ready(Err(CredentialsError::not_loaded(
                "the session was revoked",
            )));
        }
        future::ProvideCredentials::ready(Ok(Credentials::new(
            "test",
            "test",
            None,
            Some(SystemTime::now() + Duration::from_secs(1)),
            "revocable",
        )))
    }
}

async fn client_with(credentials: Revocable) -> aws_sdk_kinesis::Client {
    let sdk = sdk_config(&KinesisServer::Kinesalite.endpoint()).await;
    aws_sdk_kinesis::Client::from_conf(
        aws_sdk_kinesis::config::Builder::from(&sdk)
            .credentials_provider(credentials)
            .build(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_credentials_the_build_fails_at_once_unless_told_not_to_check() {
    let stream = unique_name("no-credentials");
    create_stream(&kinesis_client(KinesisServer::Kinesalite).await, &stream, 1).await;
    let credentials = Revocable::default();
    credentials.revoked.store(true, Ordering::Relaxed);
    let client = client_with(credentials).await;

    let started = Instant::now();
    let refused = Producer::builder(client.clone(), &stream).build().await;
    let Err(BuildError::Credentials(error)) = refused else {
        panic!("expected a credentials error, got {:?}", refused.err());
    };
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let message = BuildError::Credentials(error).to_string();
    assert!(message.contains("the session was revoked"), "{message}");
    assert!(message.len() < 500, "{message}");

    let unchecked = Producer::builder(client, &stream)
        .verify_credentials(false)
        .build()
        .await
        .expect("builds without the check");
    unchecked.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_lost_mid_run_fail_records_with_short_shared_credentials_errors() {
    let stream = unique_name("revoked");
    create_stream(&kinesis_client(KinesisServer::Kinesalite).await, &stream, 2).await;
    let credentials = Revocable::default();
    let producer = Producer::builder(client_with(credentials.clone()).await, &stream)
        .record_ttl(Duration::from_millis(1_500))
        .record_max_buffered_time(Duration::from_millis(20))
        .min_backoff(Duration::from_millis(50))
        .max_backoff(Duration::from_millis(200))
        .build()
        .await
        .expect("credentials at start");

    let mut before = Vec::new();
    for i in 0..100 {
        before.push(
            producer
                .put_data(format!("before-{i}"), vec![7u8; 100])
                .await
                .unwrap(),
        );
    }
    for handle in before {
        handle.await.expect("put while the credentials work");
    }

    credentials.revoked.store(true, Ordering::Relaxed);
    let calls_at_revocation = credentials.calls.load(Ordering::Relaxed);
    let mut after = Vec::new();
    for i in 0..2_000 {
        after.push(
            producer
                .put_data(format!("after-{i}"), vec![9u8; 100])
                .await
                .unwrap(),
        );
    }
    let mut attempt_lists: Vec<Arc<[kinesis_producer::Attempt]>> = Vec::new();
    for (i, handle) in after.into_iter().enumerate() {
        match handle.await {
            Err(PutError::Expired { record, attempts }) => {
                assert_eq!(record.partition_key(), format!("after-{i}"));
                assert_eq!(&record.data()[..], &[9u8; 100][..]);
                assert!(!attempts.is_empty());
                for attempt in attempts.iter() {
                    let error = attempt.error.as_ref().expect("a failed attempt");
                    assert_eq!(error.code, "CredentialsError", "{error:?}");
                    assert!(error.message.len() <= 300, "{}", error.message);
                    assert!(
                        error.message.contains("the session was revoked"),
                        "{}",
                        error.message
                    );
                    assert!(
                        !error.message.contains("DispatchFailure("),
                        "{}",
                        error.message
                    );
                }
                if !attempt_lists
                    .iter()
                    .any(|seen| Arc::ptr_eq(seen, &attempts))
                {
                    attempt_lists.push(attempts);
                }
            }
            other => panic!("record {i}: expected Expired, got {other:?}"),
        }
    }
    // Aggregated: the 2,000 records travelled in a few Kinesis records, each with one list of
    // attempts that its records share (a copy per record is what cost 1.66 GB before).
    assert!(
        attempt_lists.len() <= 40,
        "{} attempt lists",
        attempt_lists.len()
    );
    // The provider was asked again (the SDK's cache saw the credentials expire).
    assert!(credentials.calls.load(Ordering::Relaxed) > calls_at_revocation);
    producer.shutdown().await.unwrap();
}
