//! One conformance suite for every `LeaseStore`: the in-memory store, and the DynamoDB store on
//! DynamoDB Local and on dynalite (real local servers, started by `scripts/servers start`; a
//! missing server fails the test). Each behaviour is one generic async function; the macro at
//! the bottom runs each against each backend, with its own table.

use std::collections::HashMap;
use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use kinesis_aggregation::{HashKey, SequenceNumber, ShardId};
use kinesis_consumer::lease::{
    Checkpoint, DynamoLeaseStore, InMemoryLeaseStore, Item, Lease, LeaseError, LeaseStore,
    LeaseStoreError,
};
use kinesis_test_support::{DynamoDbServer, dynamodb_client, unique_name};

/// A store under test, and a way to read and write raw items behind its back, as another KCL
/// application or an operator would.
struct Backend {
    store: Arc<dyn LeaseStore>,
    /// The same table, listed in pages of a few items.
    paged: Arc<dyn LeaseStore>,
    raw: Raw,
}

enum Raw {
    Memory(Arc<InMemoryLeaseStore>),
    Dynamo {
        client: aws_sdk_dynamodb::Client,
        table: String,
    },
}

impl Backend {
    async fn memory() -> Backend {
        let store = Arc::new(InMemoryLeaseStore::new());
        assert!(store.create_table_if_absent().await.unwrap());
        Backend {
            store: store.clone(),
            paged: store.clone(),
            raw: Raw::Memory(store),
        }
    }

    async fn dynamo(server: DynamoDbServer) -> Backend {
        let client = dynamodb_client(server).await;
        let table = unique_name("leases");
        let store = DynamoLeaseStore::new(client.clone(), &table);
        assert!(
            store.create_table_if_absent().await.unwrap(),
            "a new table is created"
        );
        Backend {
            paged: Arc::new(store.clone().with_scan_page_size(7)),
            store: Arc::new(store),
            raw: Raw::Dynamo { client, table },
        }
    }

    /// A store of the same kind whose table was never created.
    async fn without_table(&self) -> Arc<dyn LeaseStore> {
        match &self.raw {
            Raw::Memory(_) => Arc::new(InMemoryLeaseStore::new()),
            Raw::Dynamo { client, .. } => Arc::new(DynamoLeaseStore::new(
                client.clone(),
                unique_name("no-such-table"),
            )),
        }
    }

    async fn put_raw(&self, item: Item) {
        match &self.raw {
            Raw::Memory(store) => store.put_raw_item(item),
            Raw::Dynamo { client, table } => {
                client
                    .put_item()
                    .table_name(table)
                    .set_item(Some(item))
                    .send()
                    .await
                    .unwrap();
            }
        }
    }

    async fn raw(&self, key: &str) -> Option<Item> {
        match &self.raw {
            Raw::Memory(store) => store.raw_item(key),
            Raw::Dynamo { client, table } => client
                .get_item()
                .table_name(table)
                .key("leaseKey", s(key))
                .consistent_read(true)
                .send()
                .await
                .unwrap()
                .item()
                .cloned(),
        }
    }

    async fn cleanup(self) {
        if let Raw::Dynamo { client, table } = &self.raw {
            client
                .delete_table()
                .table_name(table)
                .send()
                .await
                .unwrap();
        }
    }
}

fn s(text: &str) -> AttributeValue {
    AttributeValue::S(text.to_owned())
}

fn n(text: &str) -> AttributeValue {
    AttributeValue::N(text.to_owned())
}

fn item(pairs: &[(&str, AttributeValue)]) -> Item {
    pairs
        .iter()
        .map(|(name, value)| (name.to_string(), value.clone()))
        .collect()
}

fn seq(digits: &str) -> SequenceNumber {
    SequenceNumber::new(digits).unwrap()
}

fn at(digits: &str, sub: u64) -> Checkpoint {
    Checkpoint::at(seq(digits), sub)
}

fn new_lease(key: &str) -> Lease {
    Lease::new(key.into(), Checkpoint::TrimHorizon)
}

#[track_caller]
fn assert_condition_failed<T: std::fmt::Debug>(result: Result<T, LeaseStoreError>, key: &str) {
    match result {
        Err(LeaseStoreError::ConditionFailed { lease_key }) => assert_eq!(lease_key.as_str(), key),
        other => panic!("expected ConditionFailed for {key}, got {other:?}"),
    }
}

/// Creates a lease and takes it for `owner`.
async fn held(b: &Backend, key: &str, owner: &str) -> Lease {
    let lease = b.store.create_if_absent(&new_lease(key)).await.unwrap();
    b.store.take(&lease, owner).await.unwrap()
}

async fn table_is_created_once(b: &Backend) {
    assert!(!b.store.create_table_if_absent().await.unwrap());
    assert!(b.store.list().await.unwrap().is_empty());
}

async fn missing_table_is_reported(b: &Backend) {
    let store = b.without_table().await;
    assert!(
        matches!(
            store.list().await,
            Err(LeaseStoreError::TableNotFound { .. })
        ),
        "list on a missing table"
    );
    assert!(matches!(
        store.renew(&new_lease("shardId-0")).await,
        Err(LeaseStoreError::TableNotFound { .. })
    ));
}

async fn create_if_absent_twice(b: &Backend) {
    let lease = new_lease("shardId-000000000000").with_parents(["shardId-parent".into()]);
    assert_eq!(b.store.create_if_absent(&lease).await.unwrap(), lease);

    let mut other = new_lease("shardId-000000000000");
    other.checkpoint = Checkpoint::Latest;
    assert_condition_failed(
        b.store.create_if_absent(&other).await,
        "shardId-000000000000",
    );
    let stored = b.store.get(&lease.lease_key).await.unwrap().unwrap();
    assert_eq!(stored, lease, "the existing lease stays as it was");
}

async fn leases_round_trip(b: &Backend) {
    let mut lease = new_lease("shardId-000000000007")
        .with_parents(["shardId-000000000003".into(), "shardId-000000000001".into()])
        .with_hash_key_range(HashKey(0), HashKey(u128::MAX / 2));
    lease.lease_owner = Some("worker-1".into());
    lease.lease_counter = 17;
    lease.checkpoint = at(
        "49590338271490256608559692538361571095921575989136588898",
        4,
    );
    lease.pending_checkpoint = Some(Checkpoint::ShardEnd);
    lease.pending_checkpoint_state = Some(bytes::Bytes::from_static(b"state"));
    lease.owner_switches_since_checkpoint = 3;
    lease.child_shard_ids = vec!["shardId-000000000008".into()];
    b.store.create_if_absent(&lease).await.unwrap();
    assert_eq!(
        b.store.get(&lease.lease_key).await.unwrap(),
        Some(lease.clone())
    );
    assert_eq!(
        b.store
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(Result::unwrap)
            .collect::<Vec<_>>(),
        vec![lease]
    );
    assert_eq!(b.store.get(&"shardId-absent".into()).await.unwrap(), None);
}

async fn renew_moves_the_counter_and_a_retry_is_recognised(b: &Backend) {
    let mine = held(b, "shardId-1", "w1").await;
    assert_eq!(mine.lease_counter, 1);
    let renewed = b.store.renew(&mine).await.unwrap();
    assert_eq!(renewed.lease_counter, 2);
    assert_eq!(renewed.lease_owner.as_deref(), Some("w1"));

    // The same renewal again (as an SDK retry after a lost response would send it): the table
    // already shows exactly its effect, so it counts as done and changes nothing.
    let again = b.store.renew(&mine).await.unwrap();
    assert_eq!(again.lease_counter, 2);
    assert_eq!(
        b.store
            .get(&mine.lease_key)
            .await
            .unwrap()
            .unwrap()
            .lease_counter,
        2
    );
}

async fn renew_with_a_stale_counter_fails(b: &Backend) {
    let first = held(b, "shardId-1", "w1").await;
    let second = b.store.renew(&first).await.unwrap();
    let _third = b.store.renew(&second).await.unwrap();
    assert_condition_failed(b.store.renew(&first).await, "shardId-1");

    // The right counter with the wrong owner fails too.
    let mut impostor = b.store.get(&first.lease_key).await.unwrap().unwrap();
    impostor.lease_owner = Some("w2".into());
    assert_condition_failed(b.store.renew(&impostor).await, "shardId-1");
    assert_eq!(
        b.store
            .get(&first.lease_key)
            .await
            .unwrap()
            .unwrap()
            .lease_counter,
        3
    );
}

async fn take_then_the_old_owner_fails(b: &Backend) {
    let w1 = held(b, "shardId-1", "w1").await;
    let seen_by_w2 = b.store.get(&w1.lease_key).await.unwrap().unwrap();
    let w2 = b.store.take(&seen_by_w2, "w2").await.unwrap();
    assert_eq!(w2.lease_owner.as_deref(), Some("w2"));
    assert_eq!(w2.lease_counter, w1.lease_counter + 1);
    assert_eq!(
        w2.owner_switches_since_checkpoint, 1,
        "passed from w1 to w2"
    );

    assert_condition_failed(b.store.renew(&w1).await, "shardId-1");
    assert_condition_failed(b.store.release(&w1).await, "shardId-1");
    assert_condition_failed(b.store.take(&w1, "w1").await, "shardId-1");
    let stored = b.store.get(&w1.lease_key).await.unwrap().unwrap();
    assert_eq!(stored, w2);
}

async fn a_zombie_checkpoint_never_overwrites_the_new_owner(b: &Backend) {
    let w1 = held(b, "shardId-1", "w1").await;
    let w1 = b.store.checkpoint(&w1, &at("100", 0), None).await.unwrap();
    assert_eq!(w1.checkpoint, at("100", 0));

    // w1 stalls past the failover time; w2 takes the lease and moves on.
    let seen_by_w2 = b.store.get(&w1.lease_key).await.unwrap().unwrap();
    let w2 = b.store.take(&seen_by_w2, "w2").await.unwrap();
    let w2 = b.store.checkpoint(&w2, &at("200", 5), None).await.unwrap();

    // w1 wakes up and checkpoints with the lease it still holds in memory.
    assert_condition_failed(
        b.store.checkpoint(&w1, &at("150", 0), None).await,
        "shardId-1",
    );
    assert_condition_failed(
        b.store.prepare_checkpoint(&w1, &at("160", 0), None).await,
        "shardId-1",
    );
    assert_condition_failed(b.store.renew(&w1).await, "shardId-1");

    let stored = b.store.get(&w1.lease_key).await.unwrap().unwrap();
    assert_eq!(
        stored.checkpoint,
        at("200", 5),
        "the checkpoint never goes backwards"
    );
    assert_eq!(stored.lease_owner.as_deref(), Some("w2"));
    assert_eq!(stored, w2);
}

async fn checkpoint_sets_and_clears_pending(b: &Backend) {
    let w1 = held(b, "shardId-1", "w1").await;
    let seen = b.store.get(&w1.lease_key).await.unwrap().unwrap();
    let w2 = b.store.take(&seen, "w2").await.unwrap();
    assert_eq!(w2.owner_switches_since_checkpoint, 1);

    let prepared = b
        .store
        .prepare_checkpoint(&w2, &at("300", 2), Some(b"app-state"))
        .await
        .unwrap();
    assert_eq!(prepared.lease_counter, w2.lease_counter + 1);
    assert_eq!(
        prepared.checkpoint,
        Checkpoint::TrimHorizon,
        "not moved by a prepare"
    );
    assert_eq!(prepared.pending_checkpoint, Some(at("300", 2)));
    assert_eq!(
        prepared.pending_checkpoint_state.as_deref(),
        Some(&b"app-state"[..])
    );
    assert_eq!(
        prepared.owner_switches_since_checkpoint, 1,
        "kept by a prepare"
    );

    let committed = b
        .store
        .checkpoint(&prepared, &at("300", 2), None)
        .await
        .unwrap();
    assert_eq!(committed.lease_counter, prepared.lease_counter + 1);
    assert_eq!(committed.checkpoint, at("300", 2));
    assert_eq!(committed.pending_checkpoint, None);
    assert_eq!(committed.pending_checkpoint_state, None);
    assert_eq!(committed.owner_switches_since_checkpoint, 0);
    let raw = b.raw("shardId-1").await.unwrap();
    for gone in [
        "pendingCheckpoint",
        "pendingCheckpointSubSequenceNumber",
        "pendingCheckpointState",
    ] {
        assert!(!raw.contains_key(gone), "{gone} removed");
    }

    let with_pending = b
        .store
        .checkpoint(&committed, &Checkpoint::ShardEnd, Some(&at("400", 0)))
        .await
        .unwrap();
    assert_eq!(with_pending.checkpoint, Checkpoint::ShardEnd);
    assert_eq!(with_pending.pending_checkpoint, Some(at("400", 0)));
    assert_eq!(
        b.store.get(&w1.lease_key).await.unwrap().unwrap(),
        with_pending
    );
}

async fn release_lets_another_take_at_once(b: &Backend) {
    let w1 = held(b, "shardId-1", "w1").await;
    let released = b.store.release(&w1).await.unwrap();
    assert_eq!(released.lease_owner, None);
    assert_eq!(released.lease_counter, w1.lease_counter + 1);
    assert!(!b.raw("shardId-1").await.unwrap().contains_key("leaseOwner"));

    let w2 = b.store.take(&released, "w2").await.unwrap();
    assert_eq!(w2.lease_owner.as_deref(), Some("w2"));
    assert_eq!(
        w2.owner_switches_since_checkpoint, 0,
        "taking an unowned lease is no owner switch (as in the Java KCL)"
    );
    assert_condition_failed(b.store.renew(&w1).await, "shardId-1");
}

async fn concurrent_takes_have_exactly_one_winner(b: &Backend) {
    for round in 0..10 {
        let key = format!("shardId-{round}");
        let seen = held(b, &key, "dead-worker").await;
        let (first, second) = tokio::join!(b.store.take(&seen, "w1"), b.store.take(&seen, "w2"));
        let winner = match (first, second) {
            (Ok(lease), Err(LeaseStoreError::ConditionFailed { .. })) => {
                assert_eq!(lease.lease_owner.as_deref(), Some("w1"));
                lease
            }
            (Err(LeaseStoreError::ConditionFailed { .. }), Ok(lease)) => {
                assert_eq!(lease.lease_owner.as_deref(), Some("w2"));
                lease
            }
            other => panic!("round {round}: expected exactly one winner, got {other:?}"),
        };
        assert_eq!(winner.lease_counter, seen.lease_counter + 1);
        assert_eq!(b.store.get(&seen.lease_key).await.unwrap().unwrap(), winner);
    }
}

async fn list_pages_through_many_leases(b: &Backend) {
    let mut expected = Vec::new();
    for i in 0..150 {
        let lease = new_lease(&format!("shardId-{i:012}"));
        b.store.create_if_absent(&lease).await.unwrap();
        expected.push(lease);
    }
    for store in [&b.store, &b.paged] {
        let mut listed: Vec<Lease> = store
            .list()
            .await
            .unwrap()
            .into_iter()
            .map(Result::unwrap)
            .collect();
        listed.sort_by(|x, y| x.lease_key.cmp(&y.lease_key));
        assert_eq!(listed, expected);
    }
}

async fn malformed_items_are_named_and_the_others_still_parse(b: &Backend) {
    for key in ["shardId-good-1", "shardId-good-2", "shardId-good-3"] {
        b.store.create_if_absent(&new_lease(key)).await.unwrap();
    }
    let base = |key: &str| {
        item(&[
            ("leaseKey", s(key)),
            ("leaseCounter", n("3")),
            ("checkpoint", s("LATEST")),
        ])
    };
    let with = |key: &str, name: &str, value: Option<AttributeValue>| {
        let mut item = base(key);
        match value {
            Some(value) => item.insert(name.to_owned(), value),
            None => item.remove(name),
        };
        item
    };
    let bad = [
        (
            "bad-counter-text",
            "leaseCounter",
            with("bad-counter-text", "leaseCounter", Some(s("abc"))),
        ),
        (
            "bad-counter-fraction",
            "leaseCounter",
            with("bad-counter-fraction", "leaseCounter", Some(n("1.5"))),
        ),
        (
            "no-counter",
            "leaseCounter",
            with("no-counter", "leaseCounter", None),
        ),
        (
            "no-checkpoint",
            "checkpoint",
            with("no-checkpoint", "checkpoint", None),
        ),
        (
            "bad-checkpoint",
            "checkpoint",
            with("bad-checkpoint", "checkpoint", Some(s("YESTERDAY"))),
        ),
        (
            "bad-owner",
            "leaseOwner",
            with("bad-owner", "leaseOwner", Some(n("7"))),
        ),
    ];
    for (_, _, item) in &bad {
        b.put_raw(item.clone()).await;
    }
    // A KCL 3.x coordinator item kept in the lease table: not a lease, skipped silently.
    b.put_raw(item(&[
        ("leaseKey", s("Leader")),
        ("entityType", s("LEADER")),
    ]))
    .await;

    let listed = b.store.list().await.unwrap();
    let mut good: Vec<String> = Vec::new();
    let mut errors: HashMap<String, &'static str> = HashMap::new();
    for result in &listed {
        match result {
            Ok(lease) => good.push(lease.lease_key.to_string()),
            Err(error @ LeaseError::Malformed { .. }) => {
                let key = error
                    .lease_key()
                    .expect("each bad item has a key")
                    .to_string();
                assert!(error.to_string().contains(&key), "{error}");
                errors.insert(key, error.attribute());
            }
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }
    good.sort();
    assert_eq!(good, ["shardId-good-1", "shardId-good-2", "shardId-good-3"]);
    let expected: HashMap<String, &'static str> = bad
        .iter()
        .map(|(key, attribute, _)| (key.to_string(), *attribute))
        .collect();
    assert_eq!(errors, expected);

    match b.store.get(&"bad-counter-text".into()).await {
        Err(LeaseStoreError::Malformed(error)) => {
            assert_eq!(error.attribute(), "leaseCounter");
            assert_eq!(error.lease_key().unwrap().as_str(), "bad-counter-text");
        }
        other => panic!("expected Malformed, got {other:?}"),
    }
}

async fn a_java_kcl_item_is_adopted_and_extra_attributes_survive(b: &Backend) {
    let java = item(&[
        ("leaseKey", s("shardId-000000000004")),
        ("leaseOwner", s("java-worker-1")),
        ("leaseCounter", n("42")),
        (
            "checkpoint",
            s("49590338271490256608559692538361571095921575989136588898"),
        ),
        ("checkpointSubSequenceNumber", n("3")),
        ("ownerSwitchesSinceCheckpoint", n("2")),
        (
            "parentShardId",
            AttributeValue::Ss(vec!["shardId-000000000001".into()]),
        ),
        ("startingHashKey", s("0")),
        (
            "endingHashKey",
            s("170141183460469231731687303715884105727"),
        ),
        // Written by other KCL versions; never ours to change.
        ("throughputKBps", n("12.5")),
        ("checkpointOwner", s("java-worker-0")),
        ("entityType", s("LEASE")),
        (
            "futureAttribute",
            AttributeValue::M(HashMap::from([("x".to_owned(), n("1"))])),
        ),
    ]);
    b.put_raw(java.clone()).await;

    let lease = b
        .store
        .get(&"shardId-000000000004".into())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lease.lease_owner.as_deref(), Some("java-worker-1"));
    assert_eq!(lease.lease_counter, 42);
    assert_eq!(
        lease.checkpoint,
        at(
            "49590338271490256608559692538361571095921575989136588898",
            3
        )
    );
    assert_eq!(lease.owner_switches_since_checkpoint, 2);
    assert_eq!(
        lease.parent_shard_ids,
        vec![ShardId::from("shardId-000000000001")]
    );
    assert_eq!(lease.hash_key_range.unwrap().ending, HashKey(u128::MAX / 2));

    // A checkpoint changes its own attributes only.
    let checkpointed = b
        .store
        .checkpoint(
            &lease,
            &at(
                "49590338271490256608559692538361571095921575989136599999",
                0,
            ),
            None,
        )
        .await
        .unwrap();
    assert_eq!(checkpointed.lease_counter, 43);
    assert_eq!(checkpointed.owner_switches_since_checkpoint, 0);
    let raw = b.raw("shardId-000000000004").await.unwrap();
    for kept in [
        "throughputKBps",
        "checkpointOwner",
        "entityType",
        "futureAttribute",
        "parentShardId",
        "startingHashKey",
        "endingHashKey",
    ] {
        assert_eq!(raw.get(kept), java.get(kept), "{kept} kept by a checkpoint");
    }
    assert_eq!(
        raw["checkpoint"],
        s("49590338271490256608559692538361571095921575989136599999")
    );
    assert_eq!(raw["checkpointSubSequenceNumber"], n("0"));

    // Taking over from the Java worker ends any KCL 3.x hand-off (as KCL 3.x's take does) and
    // keeps everything else.
    let taken = b.store.take(&checkpointed, "rust-worker").await.unwrap();
    assert_eq!(taken.owner_switches_since_checkpoint, 1);
    let raw = b.raw("shardId-000000000004").await.unwrap();
    assert!(!raw.contains_key("checkpointOwner"));
    for kept in [
        "throughputKBps",
        "entityType",
        "futureAttribute",
        "parentShardId",
    ] {
        assert_eq!(raw.get(kept), java.get(kept), "{kept} kept by a take");
    }
    b.store.renew(&taken).await.unwrap();
}

async fn a_null_owner_reads_as_unowned(b: &Backend) {
    b.put_raw(item(&[
        ("leaseKey", s("shardId-1")),
        ("leaseOwner", AttributeValue::Null(true)),
        ("leaseCounter", n("5")),
        ("checkpoint", s("TRIM_HORIZON")),
    ]))
    .await;
    let lease = b.store.get(&"shardId-1".into()).await.unwrap().unwrap();
    assert_eq!(lease.lease_owner, None);
    // Writes conditional on "no owner" accept a NULL owner.
    let released = b.store.release(&lease).await.unwrap();
    assert_eq!(released.lease_counter, 6);
    assert!(!b.raw("shardId-1").await.unwrap().contains_key("leaseOwner"));
    let taken = b.store.take(&released, "w1").await.unwrap();
    assert_eq!(taken.owner_switches_since_checkpoint, 0);
}

async fn child_shards_are_recorded_without_a_counter_change(b: &Backend) {
    let mine = held(b, "shardId-1", "w1").await;
    let updated = b
        .store
        .update_child_shards(&mine.lease_key, &["shardId-3".into(), "shardId-2".into()])
        .await
        .unwrap();
    assert_eq!(
        updated.child_shard_ids,
        vec![ShardId::from("shardId-2"), ShardId::from("shardId-3")]
    );
    assert_eq!(
        updated.lease_counter, mine.lease_counter,
        "the holder's counter stays valid"
    );
    b.store.renew(&mine).await.unwrap();

    assert_condition_failed(
        b.store
            .update_child_shards(&"shardId-absent".into(), &["shardId-9".into()])
            .await,
        "shardId-absent",
    );
    assert_eq!(b.store.get(&"shardId-absent".into()).await.unwrap(), None);
}

async fn delete_is_conditional(b: &Backend) {
    let first = held(b, "shardId-1", "w1").await;
    let renewed = b.store.renew(&first).await.unwrap();
    assert_condition_failed(b.store.delete(&first).await, "shardId-1");
    assert!(b.store.get(&first.lease_key).await.unwrap().is_some());

    b.store.delete(&renewed).await.unwrap();
    assert_eq!(b.store.get(&first.lease_key).await.unwrap(), None);
    b.store.delete(&renewed).await.unwrap();
}

async fn writes_to_a_missing_lease_fail_and_create_nothing(b: &Backend) {
    let mut ghost = new_lease("shardId-ghost");
    ghost.lease_owner = Some("w1".into());
    assert_condition_failed(b.store.renew(&ghost).await, "shardId-ghost");
    assert_condition_failed(b.store.take(&ghost, "w1").await, "shardId-ghost");
    assert_condition_failed(b.store.release(&ghost).await, "shardId-ghost");
    assert_condition_failed(
        b.store
            .checkpoint(&ghost, &Checkpoint::ShardEnd, None)
            .await,
        "shardId-ghost",
    );
    assert_eq!(b.store.get(&ghost.lease_key).await.unwrap(), None);
    assert!(b.raw("shardId-ghost").await.is_none());
}

macro_rules! conformance {
    ($($test:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $test() {
                    let backend = super::Backend::memory().await;
                    super::$test(&backend).await;
                    backend.cleanup().await;
                }
            )*
        }

        mod dynamodb_local {
            $(
                #[tokio::test]
                async fn $test() {
                    let backend =
                        super::Backend::dynamo(super::DynamoDbServer::DynamoDbLocal).await;
                    super::$test(&backend).await;
                    backend.cleanup().await;
                }
            )*
        }

        mod dynalite {
            $(
                #[tokio::test]
                async fn $test() {
                    let backend = super::Backend::dynamo(super::DynamoDbServer::Dynalite).await;
                    super::$test(&backend).await;
                    backend.cleanup().await;
                }
            )*
        }
    };
}

conformance!(
    table_is_created_once,
    missing_table_is_reported,
    create_if_absent_twice,
    leases_round_trip,
    renew_moves_the_counter_and_a_retry_is_recognised,
    renew_with_a_stale_counter_fails,
    take_then_the_old_owner_fails,
    a_zombie_checkpoint_never_overwrites_the_new_owner,
    checkpoint_sets_and_clears_pending,
    release_lets_another_take_at_once,
    concurrent_takes_have_exactly_one_winner,
    list_pages_through_many_leases,
    malformed_items_are_named_and_the_others_still_parse,
    a_java_kcl_item_is_adopted_and_extra_attributes_survive,
    a_null_owner_reads_as_unowned,
    child_shards_are_recorded_without_a_counter_change,
    delete_is_conditional,
    writes_to_a_missing_lease_fail_and_create_nothing,
);

/// A lease table in UPDATING (a capacity or index change under way) is readable and writable:
/// a worker starts on it at once, as the Java KCL accepts ACTIVE or UPDATING, instead of waiting
/// for ACTIVE (dynalite, which keeps a table UPDATING for 2 s after `UpdateTable`).
#[tokio::test]
async fn a_lease_table_being_updated_is_used_at_once() {
    use aws_sdk_dynamodb::types::{BillingMode, ProvisionedThroughput, TableStatus};

    let client = dynamodb_client(DynamoDbServer::Dynalite).await;
    let table = unique_name("updating");
    let store = DynamoLeaseStore::new(client.clone(), &table)
        .with_table_active_timeout(std::time::Duration::from_millis(300));
    assert!(store.create_table_if_absent().await.unwrap());
    client
        .update_table()
        .table_name(&table)
        .billing_mode(BillingMode::Provisioned)
        .provisioned_throughput(
            ProvisionedThroughput::builder()
                .read_capacity_units(5)
                .write_capacity_units(5)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let status = client
        .describe_table()
        .table_name(&table)
        .send()
        .await
        .unwrap()
        .table()
        .and_then(|t| t.table_status().cloned());
    assert_eq!(
        status,
        Some(TableStatus::Updating),
        "the server shows the state"
    );
    // The time limit (300 ms) is far shorter than the update (2 s): only accepting UPDATING
    // lets this pass.
    assert!(!store.create_table_if_absent().await.unwrap());
    let lease = Lease::new(
        ShardId::from("shardId-000000000000"),
        Checkpoint::TrimHorizon,
    );
    store.create_if_absent(&lease).await.unwrap();
    assert_eq!(store.list().await.unwrap().len(), 1);
}
