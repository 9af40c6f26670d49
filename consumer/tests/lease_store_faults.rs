//! The DynamoDB lease store under faults, through the fault-injecting proxy in front of DynamoDB
//! Local: throttling and 5xx are `Transient`, other errors `Fatal`, and a write whose response
//! was lost (the SDK retries it) is recognised instead of passing for a lost lease.

use std::time::Duration;

use aws_sdk_dynamodb::config::retry::RetryConfig;
use kinesis_aggregation::SequenceNumber;
use kinesis_consumer::lease::{Checkpoint, DynamoLeaseStore, Lease, LeaseStore, LeaseStoreError};
use kinesis_test_support::proxy::{
    ErrorResponse, FaultKind, FaultProxy, Faults, RequestErrors, Resets, Targets,
};
use kinesis_test_support::{DynamoDbServer, sdk_config, unique_name};

/// A store whose requests go through a proxy to DynamoDB Local, with fast SDK retries (3
/// attempts), and a lease held by `w1`.
async fn proxied() -> (FaultProxy, DynamoLeaseStore, Lease) {
    let proxy = FaultProxy::start(&DynamoDbServer::DynamoDbLocal.endpoint()).await;
    let config = aws_sdk_dynamodb::config::Builder::from(&sdk_config(proxy.endpoint()).await)
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(3)
                .with_initial_backoff(Duration::from_millis(5))
                .with_max_backoff(Duration::from_millis(20)),
        )
        .build();
    let store = DynamoLeaseStore::new(
        aws_sdk_dynamodb::Client::from_conf(config),
        unique_name("lease-faults"),
    );
    store.create_table_if_absent().await.unwrap();
    let lease = store
        .create_if_absent(&Lease::new("shardId-1".into(), Checkpoint::TrimHorizon))
        .await
        .unwrap();
    let lease = store.take(&lease, "w1").await.unwrap();
    (proxy, store, lease)
}

fn errors(operation: &str, response: ErrorResponse) -> Faults {
    Faults {
        errors: RequestErrors {
            targets: Targets::only([operation]),
            rate: 1.0,
            responses: vec![response],
        },
        ..Faults::default()
    }
}

async fn cleanup(store: &DynamoLeaseStore) {
    store
        .client()
        .delete_table()
        .table_name(store.table_name())
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn throttling_and_server_errors_are_transient_and_change_nothing() {
    let (proxy, store, lease) = proxied().await;
    for (response, throttled) in [
        (ErrorResponse::ProvisionedThroughputExceeded, true),
        (ErrorResponse::Throttling, true),
        (ErrorResponse::InternalError, false),
        (ErrorResponse::ServiceUnavailable, false),
    ] {
        proxy.set_faults(errors("UpdateItem", response.clone()));
        match store.renew(&lease).await {
            Err(
                error @ LeaseStoreError::Transient {
                    operation: "UpdateItem",
                    throttled: t,
                    ..
                },
            ) => {
                assert_eq!(t, throttled, "{response:?}: {error}");
                assert!(error.is_transient());
                assert!(error.to_string().contains("shardId-1"), "{error}");
            }
            other => panic!("{response:?}: expected Transient, got {other:?}"),
        }
    }

    proxy.set_faults(errors("Scan", ErrorResponse::InternalError));
    assert!(matches!(
        store.list().await,
        Err(LeaseStoreError::Transient {
            operation: "Scan",
            ..
        })
    ));

    proxy.set_faults(Faults {
        resets: Resets {
            targets: Targets::only(["UpdateItem"]),
            before_forwarding: 1.0,
            after_forwarding: 0.0,
        },
        ..Faults::default()
    });
    assert!(matches!(
        store.renew(&lease).await,
        Err(LeaseStoreError::Transient {
            throttled: false,
            ..
        })
    ));

    proxy.set_faults(errors(
        "UpdateItem",
        ErrorResponse::Custom {
            status: 400,
            code: "ValidationException".into(),
            message: "One or more parameter values were invalid".into(),
        },
    ));
    assert!(matches!(
        store.renew(&lease).await,
        Err(LeaseStoreError::Fatal {
            operation: "UpdateItem",
            ..
        })
    ));

    // None of the refused requests reached the table: the lease is as it was.
    proxy.set_faults(Faults::none());
    assert_eq!(
        store.get(&lease.lease_key).await.unwrap(),
        Some(lease.clone())
    );
    assert_eq!(store.renew(&lease).await.unwrap().lease_counter, 2);
    cleanup(&store).await;
}

#[tokio::test]
async fn a_write_whose_response_was_lost_is_recognised_on_retry() {
    let (proxy, store, mut lease) = proxied().await;
    // Half of the UpdateItem responses are lost after DynamoDB applied the write; the SDK
    // retries, and the retry's condition fails on the write's own effect.
    proxy.set_faults(Faults {
        seed: Some(11),
        resets: Resets {
            targets: Targets::only(["UpdateItem"]),
            before_forwarding: 0.0,
            after_forwarding: 0.5,
        },
        ..Faults::default()
    });
    proxy.reset_stats();
    let mut gave_up = 0;
    for i in 1..=40u64 {
        let result = if i % 2 == 0 {
            store.renew(&lease).await
        } else {
            let at = Checkpoint::at(SequenceNumber::new(&(1000 + i).to_string()).unwrap(), 0);
            store.checkpoint(&lease, &at, None).await
        };
        match result {
            Ok(next) => {
                assert_eq!(next.lease_counter, lease.lease_counter + 1, "write {i}");
                assert_eq!(next.lease_owner.as_deref(), Some("w1"));
                lease = next;
            }
            // Every attempt lost its response: the outcome is unknown, so read it back.
            Err(LeaseStoreError::Transient { .. }) => {
                gave_up += 1;
                lease = store.get(&lease.lease_key).await.unwrap().unwrap();
                assert_eq!(lease.lease_owner.as_deref(), Some("w1"));
            }
            Err(other) => panic!("write {i}: our own write reported as {other:?}"),
        }
    }
    let stats = proxy.stats();
    assert!(stats.faults(FaultKind::ResetAfterForwarding) > 0);
    // GetItems beyond the read-backs are recoveries: a condition failed on our own write.
    let recoveries = stats.received("GetItem") - gave_up;
    assert!(recoveries > 0, "no lost response was retried ({stats:?})");
    proxy.set_faults(Faults::none());
    assert_eq!(store.get(&lease.lease_key).await.unwrap(), Some(lease));
    cleanup(&store).await;
}
