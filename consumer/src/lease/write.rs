//! Every conditional write on the lease table, described once as data: the condition, the
//! attributes set and the attributes removed. The DynamoDB store renders a description into
//! expressions; the in-memory store evaluates and applies it to its items. One description, so
//! both stores have the same semantics by construction.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use kinesis_aggregation::ShardId;

use super::lease::attribute as a;
use super::lease::{Checkpoint, Item, Lease, blob, n, s, string_set};

/// What must hold of the stored item for a write to go ahead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Condition {
    /// No item with this key (`attribute_not_exists(leaseKey)`).
    Absent,
    /// An item with this key (`attribute_exists(leaseKey)`).
    Present,
    /// `leaseCounter = counter`.
    Counter(u64),
    /// `leaseCounter = counter` and `leaseOwner = owner` (absent or NULL when `owner` is None).
    CounterAndOwner { counter: u64, owner: Option<String> },
}

impl Condition {
    /// Evaluates the condition as DynamoDB would, against the stored item (None: no item).
    pub(crate) fn holds(&self, item: Option<&Item>) -> bool {
        let counter_is = |item: &Item, expected: u64| {
            // DynamoDB compares numbers by value, and an `N` that is not an integer can never
            // equal one.
            matches!(item.get(a::LEASE_COUNTER), Some(AttributeValue::N(text)) if text.parse::<u64>() == Ok(expected))
        };
        match (self, item) {
            (Condition::Absent, item) => item.is_none(),
            (Condition::Present, item) => item.is_some(),
            (_, None) => false,
            (Condition::Counter(counter), Some(item)) => counter_is(item, *counter),
            (Condition::CounterAndOwner { counter, owner }, Some(item)) => {
                counter_is(item, *counter)
                    && match (owner, item.get(a::LEASE_OWNER)) {
                        (None, None | Some(AttributeValue::Null(_))) => true,
                        (Some(expected), Some(AttributeValue::S(stored))) => expected == stored,
                        _ => false,
                    }
            }
        }
    }

    /// The `ConditionExpression`, with its names and values added to `expression`.
    pub(crate) fn render(&self, expression: &mut Expression) -> String {
        match self {
            Condition::Absent => format!("attribute_not_exists({})", expression.name(a::LEASE_KEY)),
            Condition::Present => format!("attribute_exists({})", expression.name(a::LEASE_KEY)),
            Condition::Counter(counter) => {
                format!(
                    "{} = {}",
                    expression.name(a::LEASE_COUNTER),
                    expression.value(n(*counter))
                )
            }
            Condition::CounterAndOwner { counter, owner } => {
                let counter = Condition::Counter(*counter).render(expression);
                let owner_name = expression.name(a::LEASE_OWNER);
                let owner = match owner {
                    Some(owner) => format!("{owner_name} = {}", expression.value(s(owner))),
                    None => format!(
                        "(attribute_not_exists({owner_name}) OR attribute_type({owner_name}, {}))",
                        expression.value(s("NULL"))
                    ),
                };
                format!("{counter} AND {owner}")
            }
        }
    }
}

/// Expression attribute names (`#n0`) and values (`:v0`) collected while rendering.
#[derive(Debug, Default)]
pub(crate) struct Expression {
    pub(crate) names: HashMap<String, String>,
    pub(crate) values: HashMap<String, AttributeValue>,
}

impl Expression {
    /// A placeholder for an attribute name. Names always go through placeholders, so no
    /// attribute can clash with DynamoDB's reserved words.
    fn name(&mut self, attribute: &str) -> String {
        if let Some((placeholder, _)) = self.names.iter().find(|(_, name)| *name == attribute) {
            return placeholder.clone();
        }
        let placeholder = format!("#n{}", self.names.len());
        self.names.insert(placeholder.clone(), attribute.to_owned());
        placeholder
    }

    fn value(&mut self, value: AttributeValue) -> String {
        let placeholder = format!(":v{}", self.values.len());
        self.values.insert(placeholder.clone(), value);
        placeholder
    }
}

/// A conditional `UpdateItem`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Write {
    pub(crate) lease_key: ShardId,
    pub(crate) condition: Condition,
    pub(crate) set: Vec<(&'static str, AttributeValue)>,
    pub(crate) remove: Vec<&'static str>,
}

impl Write {
    /// `leaseCounter + 1`, conditional on the counter and the owner the caller holds.
    pub(crate) fn renew(lease: &Lease) -> Write {
        Write {
            lease_key: lease.lease_key.clone(),
            condition: held_by_caller(lease),
            set: vec![(a::LEASE_COUNTER, n(lease.lease_counter + 1))],
            remove: vec![],
        }
    }

    /// Conditional on the counter only, as in the Java KCL: whoever held the lease, the counter
    /// proves the caller saw its latest state. `ownerSwitchesSinceCheckpoint` grows only when
    /// the lease passes from one owner to another (not when it was unowned, nor when the owner
    /// takes back its own lease). A KCL 3.x `checkpointOwner` is removed: a take ends any
    /// hand-off, as KCL 3.x's take does.
    pub(crate) fn take(lease: &Lease, new_owner: &str) -> Write {
        let switched = lease
            .lease_owner
            .as_deref()
            .is_some_and(|old| old != new_owner);
        Write {
            lease_key: lease.lease_key.clone(),
            condition: Condition::Counter(lease.lease_counter),
            set: vec![
                (a::LEASE_COUNTER, n(lease.lease_counter + 1)),
                (a::LEASE_OWNER, s(new_owner)),
                (
                    a::OWNER_SWITCHES_SINCE_CHECKPOINT,
                    n(lease.owner_switches_since_checkpoint + u64::from(switched)),
                ),
            ],
            remove: vec![a::CHECKPOINT_OWNER],
        }
    }

    /// Removes the owner and bumps the counter, so any worker may take the lease at once
    /// instead of waiting for it to expire (the Java KCL's `evictLease`).
    pub(crate) fn release(lease: &Lease) -> Write {
        Write {
            lease_key: lease.lease_key.clone(),
            condition: held_by_caller(lease),
            set: vec![(a::LEASE_COUNTER, n(lease.lease_counter + 1))],
            remove: vec![a::LEASE_OWNER, a::CHECKPOINT_OWNER],
        }
    }

    /// The Java KCL's `setCheckpoint` → `updateLease`: checkpoint set, pending checkpoint set or
    /// cleared, owner switches reset to 0, counter + 1 (a checkpoint also renews the lease).
    pub(crate) fn checkpoint(
        lease: &Lease,
        checkpoint: &Checkpoint,
        pending: Option<&Checkpoint>,
    ) -> Write {
        let mut write = Write {
            lease_key: lease.lease_key.clone(),
            condition: held_by_caller(lease),
            set: vec![
                (a::LEASE_COUNTER, n(lease.lease_counter + 1)),
                (a::CHECKPOINT, s(checkpoint.as_str())),
                (
                    a::CHECKPOINT_SUB_SEQUENCE_NUMBER,
                    n(checkpoint.sub_sequence_number()),
                ),
                (a::OWNER_SWITCHES_SINCE_CHECKPOINT, n(0)),
            ],
            // A committed checkpoint makes any prepared state stale.
            remove: vec![a::PENDING_CHECKPOINT_STATE],
        };
        write.set_pending(pending);
        write
    }

    /// The Java KCL's `prepareCheckpoint` → `updateLease`: the pending checkpoint (and its
    /// application state) set, the checkpoint and owner switches kept, counter + 1.
    pub(crate) fn prepare_checkpoint(
        lease: &Lease,
        pending: &Checkpoint,
        state: Option<&[u8]>,
    ) -> Write {
        let mut write = Write {
            lease_key: lease.lease_key.clone(),
            condition: held_by_caller(lease),
            set: vec![(a::LEASE_COUNTER, n(lease.lease_counter + 1))],
            remove: vec![],
        };
        write.set_pending(Some(pending));
        match state {
            Some(state) => write.set.push((a::PENDING_CHECKPOINT_STATE, blob(state))),
            None => write.remove.push(a::PENDING_CHECKPOINT_STATE),
        }
        write
    }

    /// The Java KCL's `updateLeaseWithMetaInfo(CHILD_SHARDS)`: conditional only on the lease
    /// existing and without a counter change, so it never disturbs the holder's renewals.
    pub(crate) fn child_shards(lease_key: &ShardId, children: &[ShardId]) -> Write {
        let mut write = Write {
            lease_key: lease_key.clone(),
            condition: Condition::Present,
            set: vec![],
            remove: vec![],
        };
        let mut children = children.to_vec();
        children.sort();
        children.dedup();
        match string_set(&children) {
            Some(set) => write.set.push((a::CHILD_SHARD_IDS, set)),
            None => write.remove.push(a::CHILD_SHARD_IDS),
        }
        write
    }

    fn set_pending(&mut self, pending: Option<&Checkpoint>) {
        match pending {
            Some(pending) => {
                self.set.push((a::PENDING_CHECKPOINT, s(pending.as_str())));
                self.set.push((
                    a::PENDING_CHECKPOINT_SUB_SEQUENCE_NUMBER,
                    n(pending.sub_sequence_number()),
                ));
            }
            None => {
                self.remove.push(a::PENDING_CHECKPOINT);
                self.remove.push(a::PENDING_CHECKPOINT_SUB_SEQUENCE_NUMBER);
            }
        }
    }

    /// Applies the write to an item the condition holds for.
    pub(crate) fn apply(&self, item: &mut Item) {
        for (name, value) in &self.set {
            item.insert((*name).to_owned(), value.clone());
        }
        for name in &self.remove {
            item.remove(*name);
        }
    }

    /// Whether `current` is exactly what this write would have produced: then a failed
    /// condition means the write already happened (the SDK retried a request whose first
    /// attempt succeeded but whose response was lost), and the write counts as done. The Java
    /// KCL makes the same check for renewals; applied to every write it also keeps a retried
    /// checkpoint from passing for a lost lease. Only writes that move the counter qualify.
    pub(crate) fn already_applied(&self, current: Option<&Item>) -> bool {
        let Some(current) = current else {
            return false;
        };
        let expected_owner = match &self.condition {
            Condition::CounterAndOwner { owner, .. } => Some(owner.as_deref()),
            Condition::Counter(_) => None,
            Condition::Absent | Condition::Present => return false,
        };
        let owner_matches = expected_owner.is_none_or(|owner| {
            let stored = match current.get(a::LEASE_OWNER) {
                Some(AttributeValue::S(stored)) => Some(stored.as_str()),
                _ => None,
            };
            // A release removes the owner on purpose; otherwise the caller must still hold it.
            self.remove.contains(&a::LEASE_OWNER) || stored == owner
        });
        owner_matches
            && self.set.iter().any(|(name, _)| *name == a::LEASE_COUNTER)
            && self
                .set
                .iter()
                .all(|(name, value)| same_value(current.get(*name), value))
            && self.remove.iter().all(|name| !current.contains_key(*name))
    }

    /// The `UpdateExpression` and `ConditionExpression`, with their placeholders.
    pub(crate) fn render(&self) -> (String, String, Expression) {
        let mut expression = Expression::default();
        let mut update = String::new();
        if !self.set.is_empty() {
            let assignments: Vec<String> = self
                .set
                .iter()
                .map(|(name, value)| {
                    format!(
                        "{} = {}",
                        expression.name(name),
                        expression.value(value.clone())
                    )
                })
                .collect();
            update.push_str("SET ");
            update.push_str(&assignments.join(", "));
        }
        if !self.remove.is_empty() {
            let names: Vec<String> = self
                .remove
                .iter()
                .map(|name| expression.name(name))
                .collect();
            if !update.is_empty() {
                update.push(' ');
            }
            update.push_str("REMOVE ");
            update.push_str(&names.join(", "));
        }
        let condition = self.condition.render(&mut expression);
        (update, condition, expression)
    }
}

/// Counter and owner as the caller holds them: only the holder may renew, checkpoint or
/// release, and only while nobody else has written the lease since.
fn held_by_caller(lease: &Lease) -> Condition {
    Condition::CounterAndOwner {
        counter: lease.lease_counter,
        owner: lease.lease_owner.clone(),
    }
}

/// Equality as DynamoDB sees it: numbers by value, sets regardless of order.
fn same_value(stored: Option<&AttributeValue>, written: &AttributeValue) -> bool {
    match (stored, written) {
        (Some(AttributeValue::N(x)), AttributeValue::N(y)) => {
            x == y || matches!((x.parse::<u64>(), y.parse::<u64>()), (Ok(x), Ok(y)) if x == y)
        }
        (Some(AttributeValue::Ss(x)), AttributeValue::Ss(y)) => {
            let (mut x, mut y) = (x.clone(), y.clone());
            x.sort();
            y.sort();
            x == y
        }
        (Some(stored), written) => stored == written,
        (None, _) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(owner: Option<&str>, counter: u64) -> Lease {
        let mut lease = Lease::new("shardId-1".into(), Checkpoint::TrimHorizon);
        lease.lease_owner = owner.map(str::to_owned);
        lease.lease_counter = counter;
        lease
    }

    #[test]
    fn renders_expressions_with_placeholders() {
        let write = Write::checkpoint(&lease(Some("w1"), 4), &Checkpoint::ShardEnd, None);
        let (update, condition, expression) = write.render();
        let expand = |text: &str| {
            let mut text = text.to_owned();
            // Longest placeholders first, so #n1 does not eat the start of #n10.
            let mut names: Vec<_> = expression.names.iter().collect();
            names.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
            for (placeholder, name) in names {
                text = text.replace(placeholder.as_str(), name);
            }
            let mut values: Vec<_> = expression.values.iter().collect();
            values.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
            for (placeholder, value) in values {
                let value = match value {
                    AttributeValue::S(s) => format!("'{s}'"),
                    AttributeValue::N(n) => n.clone(),
                    other => format!("{other:?}"),
                };
                text = text.replace(placeholder.as_str(), &value);
            }
            text
        };
        assert_eq!(
            expand(&update),
            "SET leaseCounter = 5, checkpoint = 'SHARD_END', checkpointSubSequenceNumber = 0, \
             ownerSwitchesSinceCheckpoint = 0 \
             REMOVE pendingCheckpointState, pendingCheckpoint, pendingCheckpointSubSequenceNumber"
        );
        assert_eq!(expand(&condition), "leaseCounter = 4 AND leaseOwner = 'w1'");

        let (_, condition, expression) = Write::renew(&lease(None, 0)).render();
        assert_eq!(
            condition,
            "#n0 = :v1 AND (attribute_not_exists(#n1) OR attribute_type(#n1, :v2))"
        );
        assert_eq!(expression.values[":v2"], s("NULL"));
    }

    #[test]
    fn conditions_evaluate_like_dynamodb() {
        let item = lease(Some("w1"), 4).to_item();
        let held = |owner: Option<&str>, counter| Condition::CounterAndOwner {
            counter,
            owner: owner.map(str::to_owned),
        };
        assert!(held(Some("w1"), 4).holds(Some(&item)));
        assert!(!held(Some("w2"), 4).holds(Some(&item)));
        assert!(!held(Some("w1"), 3).holds(Some(&item)));
        assert!(!held(None, 4).holds(Some(&item)));
        assert!(!held(Some("w1"), 4).holds(None));
        assert!(Condition::Counter(4).holds(Some(&item)));
        assert!(!Condition::Absent.holds(Some(&item)));
        assert!(Condition::Absent.holds(None));
        assert!(Condition::Present.holds(Some(&item)));

        let mut unowned = lease(None, 2).to_item();
        assert!(held(None, 2).holds(Some(&unowned)));
        unowned.insert(a::LEASE_OWNER.into(), AttributeValue::Null(true));
        assert!(held(None, 2).holds(Some(&unowned)));
        unowned.insert(a::LEASE_COUNTER.into(), s("2"));
        assert!(
            !Condition::Counter(2).holds(Some(&unowned)),
            "an S never equals an N"
        );
    }

    #[test]
    fn take_counts_owner_switches_like_the_java_kcl() {
        let switches = |owner: Option<&str>, new_owner: &str| {
            let mut item = lease(owner, 1).to_item();
            Write::take(&lease(owner, 1), new_owner).apply(&mut item);
            Lease::from_item(&item)
                .unwrap()
                .owner_switches_since_checkpoint
        };
        assert_eq!(switches(Some("a"), "b"), 1);
        assert_eq!(switches(None, "b"), 0);
        assert_eq!(switches(Some("b"), "b"), 0);
    }

    #[test]
    fn a_write_that_already_happened_is_recognised() {
        let before = lease(Some("w1"), 4);
        let renew = Write::renew(&before);
        let mut item = before.to_item();
        renew.apply(&mut item);
        assert!(renew.already_applied(Some(&item)));

        // Someone else took it after the renewal: not ours any more.
        let mut taken = item.clone();
        Write::take(&Lease::from_item(&item).unwrap(), "w2").apply(&mut taken);
        assert!(!renew.already_applied(Some(&taken)));

        let checkpoint = Write::checkpoint(&before, &Checkpoint::ShardEnd, None);
        let mut checkpointed = before.to_item();
        checkpoint.apply(&mut checkpointed);
        assert!(checkpoint.already_applied(Some(&checkpointed)));
        assert!(
            !Write::checkpoint(&before, &Checkpoint::Latest, None)
                .already_applied(Some(&checkpointed))
        );

        let release = Write::release(&before);
        let mut released = before.to_item();
        release.apply(&mut released);
        assert!(release.already_applied(Some(&released)));
        assert!(!release.already_applied(None));
        assert!(!Write::child_shards(&before.lease_key, &[]).already_applied(Some(&released)));
    }
}
