//! Reading and writing lease table items.

use super::*;

fn item(pairs: &[(&str, AttributeValue)]) -> Item {
    pairs
        .iter()
        .map(|(name, value)| (name.to_string(), value.clone()))
        .collect()
}

fn n_(text: &str) -> AttributeValue {
    AttributeValue::N(text.into())
}

const SEQ: &str = "49590338271490256608559692538361571095921575989136588898";

#[test]
fn checkpoint_strings_map_exactly() {
    for (text, checkpoint) in [
        ("TRIM_HORIZON", Checkpoint::TrimHorizon),
        ("LATEST", Checkpoint::Latest),
        ("AT_TIMESTAMP", Checkpoint::AtTimestamp),
        ("SHARD_END", Checkpoint::ShardEnd),
    ] {
        assert_eq!(Checkpoint::parse(text, 0).unwrap(), checkpoint);
        assert_eq!(checkpoint.as_str(), text);
        assert_eq!(checkpoint.sub_sequence_number(), 0);
    }
    let at = Checkpoint::parse(SEQ, 7).unwrap();
    assert_eq!(at.as_str(), SEQ);
    assert_eq!(at.sub_sequence_number(), 7);
    assert_eq!(at.to_string(), format!("{SEQ}/7"));
    for bad in ["", "trim_horizon", "TRIM_HORIZON ", "-1", "12a"] {
        assert!(Checkpoint::parse(bad, 0).is_err(), "{bad:?}");
    }
}

#[test]
fn a_java_kcl_item_is_read_attribute_for_attribute() {
    let java = item(&[
        ("leaseKey", s("shardId-000000000002")),
        ("leaseOwner", s("worker-a")),
        ("leaseCounter", n_("42")),
        ("checkpoint", s(SEQ)),
        ("checkpointSubSequenceNumber", n_("3")),
        (
            "pendingCheckpoint",
            s("49590338271490256608559692538361571095921575989136589999"),
        ),
        ("pendingCheckpointSubSequenceNumber", n_("1")),
        ("ownerSwitchesSinceCheckpoint", n_("2")),
        (
            "parentShardId",
            AttributeValue::Ss(vec![
                "shardId-000000000001".into(),
                "shardId-000000000000".into(),
            ]),
        ),
        (
            "childShardIds",
            AttributeValue::Ss(vec!["shardId-000000000005".into()]),
        ),
        ("startingHashKey", s("0")),
        (
            "endingHashKey",
            s("340282366920938463463374607431768211455"),
        ),
        ("throughputKBps", n_("12.5")),
        ("checkpointOwner", s("worker-b")),
    ]);
    let lease = Lease::from_item(&java).unwrap();
    assert_eq!(lease.lease_key.as_str(), "shardId-000000000002");
    assert_eq!(lease.lease_owner.as_deref(), Some("worker-a"));
    assert_eq!(lease.lease_counter, 42);
    assert_eq!(lease.checkpoint, Checkpoint::parse(SEQ, 3).unwrap());
    assert_eq!(
        lease
            .pending_checkpoint
            .as_ref()
            .unwrap()
            .sub_sequence_number(),
        1
    );
    assert_eq!(lease.owner_switches_since_checkpoint, 2);
    assert_eq!(
        lease.parent_shard_ids,
        vec![
            ShardId::from("shardId-000000000000"),
            ShardId::from("shardId-000000000001")
        ]
    );
    assert_eq!(
        lease.child_shard_ids,
        vec![ShardId::from("shardId-000000000005")]
    );
    assert_eq!(
        lease.hash_key_range,
        Some(HashKeyRange {
            starting: HashKey::MIN,
            ending: HashKey::MAX
        })
    );

    // Writing it back produces the same attributes, minus the ones this model leaves alone.
    let mut expected = java.clone();
    expected.remove("throughputKBps");
    expected.remove("checkpointOwner");
    let mut written = lease.to_item();
    for set in ["parentShardId", "childShardIds"] {
        if let (Some(AttributeValue::Ss(w)), Some(AttributeValue::Ss(e))) =
            (written.get_mut(set), expected.get_mut(set))
        {
            w.sort();
            e.sort();
        }
    }
    assert_eq!(written, expected);
}

#[test]
fn defaults_follow_the_java_kcl() {
    let minimal = item(&[
        ("leaseKey", s("shardId-1")),
        ("leaseCounter", n_("0")),
        ("checkpoint", s("TRIM_HORIZON")),
        ("leaseOwner", AttributeValue::Null(true)),
        ("startingHashKey", s("5")), // without an ending key: ignored, as in Java
    ]);
    let lease = Lease::from_item(&minimal).unwrap();
    assert_eq!(
        lease,
        Lease::new("shardId-1".into(), Checkpoint::TrimHorizon)
    );
}

#[test]
fn errors_name_the_item_and_the_attribute() {
    let base = || {
        item(&[
            ("leaseKey", s("shardId-9")),
            ("leaseCounter", n_("1")),
            ("checkpoint", s("LATEST")),
        ])
    };
    let cases: Vec<(&str, Item)> = vec![
        ("leaseCounter", {
            let mut i = base();
            i.insert("leaseCounter".into(), s("abc"));
            i
        }),
        ("leaseCounter", {
            let mut i = base();
            i.insert("leaseCounter".into(), n_("1.5"));
            i
        }),
        ("leaseCounter", {
            let mut i = base();
            i.remove("leaseCounter");
            i
        }),
        ("checkpoint", {
            let mut i = base();
            i.remove("checkpoint");
            i
        }),
        ("checkpoint", {
            let mut i = base();
            i.insert("checkpoint".into(), s("NOT_A_CHECKPOINT"));
            i
        }),
        ("leaseOwner", {
            let mut i = base();
            i.insert("leaseOwner".into(), n_("7"));
            i
        }),
        ("parentShardId", {
            let mut i = base();
            i.insert("parentShardId".into(), s("shardId-0"));
            i
        }),
        ("endingHashKey", {
            let mut i = base();
            i.insert("startingHashKey".into(), s("0"));
            i.insert(
                "endingHashKey".into(),
                s("340282366920938463463374607431768211456"),
            );
            i
        }),
    ];
    for (attribute, bad) in cases {
        let error = Lease::from_item(&bad).unwrap_err();
        assert_eq!(error.attribute(), attribute, "{error}");
        assert_eq!(error.lease_key().map(|k| k.as_str()), Some("shardId-9"));
        assert!(error.to_string().contains("shardId-9"), "{error}");
        assert!(error.to_string().contains(attribute), "{error}");
    }

    let keyless = item(&[("leaseOwner", s("w")), ("leaseCounter", n_("1"))]);
    let error = Lease::from_item(&keyless).unwrap_err();
    assert_eq!(error.attribute(), "leaseKey");
    assert_eq!(error.lease_key(), None);
    assert!(error.to_string().contains(r#"leaseOwner: "w""#), "{error}");
}

#[test]
fn coordinator_items_are_not_leases() {
    let mut lease = Lease::new("shardId-1".into(), Checkpoint::Latest).to_item();
    assert!(Lease::is_lease_item(&lease));
    lease.insert("entityType".into(), s("LEASE"));
    assert!(Lease::is_lease_item(&lease));
    lease.insert("entityType".into(), s("LEADER"));
    assert!(!Lease::is_lease_item(&lease));
}
