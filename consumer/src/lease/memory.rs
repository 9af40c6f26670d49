//! A lease table in memory, with the DynamoDB store's semantics, for fast tests of the logic
//! above the store.

use std::collections::BTreeMap;
use std::fmt;
use std::future::ready;
use std::sync::{Mutex, MutexGuard};

use aws_sdk_dynamodb::types::AttributeValue;
use kinesis_aggregation::ShardId;

use super::lease::attribute as a;
use super::lease::{Checkpoint, Item, Lease, LeaseError};
use super::store::{BoxFuture, LeaseStore, LeaseStoreError, ListedLease, Result};
use super::write::{Condition, Write};

/// Items keyed by `leaseKey`; `None` until the table is created.
type Table = Option<BTreeMap<String, Item>>;

/// A [`LeaseStore`] over a `Mutex<BTreeMap>` of DynamoDB items.
///
/// It keeps whole items, not [`Lease`]s, and runs the very write descriptions the DynamoDB
/// store sends as expressions, so conditions, unknown attributes, malformed items and return
/// values behave the same. Like a real table it must be created first
/// ([`LeaseStore::create_table_if_absent`]); until then operations fail with
/// [`LeaseStoreError::TableNotFound`].
pub struct InMemoryLeaseStore {
    table: Mutex<Table>,
}

impl InMemoryLeaseStore {
    /// The name [`LeaseStoreError::TableNotFound`] reports.
    pub const TABLE_NAME: &str = "in-memory";

    /// A store whose table does not exist yet.
    pub fn new() -> Self {
        InMemoryLeaseStore {
            table: Mutex::new(None),
        }
    }

    /// Writes a raw item, replacing any item with its key, as another application (a Java KCL
    /// worker, an operator in the console) could. For tests of adoption and malformed items.
    ///
    /// # Panics
    /// When the item has no string `leaseKey` (DynamoDB refuses such items) or the table does
    /// not exist.
    pub fn put_raw_item(&self, item: Item) {
        let key = match item.get(a::LEASE_KEY) {
            Some(AttributeValue::S(key)) => key.clone(),
            other => panic!("an item needs a string leaseKey, found {other:?}"),
        };
        self.lock()
            .as_mut()
            .expect("create the table before writing items")
            .insert(key, item);
    }

    /// The raw item with this key, as stored.
    pub fn raw_item(&self, lease_key: &str) -> Option<Item> {
        self.lock().as_ref()?.get(lease_key).cloned()
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // A panic while holding the lock cannot leave a half-applied write (writes are applied
        // after all checks), so a poisoned table is still consistent.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn with_table<T>(&self, f: impl FnOnce(&mut BTreeMap<String, Item>) -> Result<T>) -> Result<T> {
        match self.lock().as_mut() {
            Some(table) => f(table),
            None => Err(LeaseStoreError::TableNotFound {
                table: Self::TABLE_NAME.to_owned(),
            }),
        }
    }

    fn update(&self, write: Write) -> Result<Lease> {
        self.with_table(|table| {
            let key = write.lease_key.as_str();
            let current = table.get(key);
            if !write.condition.holds(current) {
                return if write.already_applied(current) {
                    Ok(Lease::from_item(
                        current.expect("applied writes leave an item"),
                    )?)
                } else {
                    Err(LeaseStoreError::ConditionFailed {
                        lease_key: write.lease_key.clone(),
                    })
                };
            }
            // As with DynamoDB's ALL_NEW: the write stays applied even when the resulting item
            // does not parse (a hand-broken attribute the write did not touch).
            let item = table.entry(key.to_owned()).or_default();
            write.apply(item);
            Ok(Lease::from_item(item)?)
        })
    }
}

impl Default for InMemoryLeaseStore {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for InMemoryLeaseStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let table = self.lock();
        f.debug_struct("InMemoryLeaseStore")
            .field("items", &table.as_ref().map(BTreeMap::len))
            .finish()
    }
}

impl LeaseStore for InMemoryLeaseStore {
    fn create_table_if_absent(&self) -> BoxFuture<'_, Result<bool>> {
        let mut table = self.lock();
        let created = table.is_none();
        table.get_or_insert_with(BTreeMap::new);
        Box::pin(ready(Ok(created)))
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<ListedLease>>> {
        let result = self.with_table(|table| {
            Ok(table
                .values()
                .filter(|item| Lease::is_lease_item(item))
                .map(Lease::from_item)
                .collect::<Vec<std::result::Result<Lease, LeaseError>>>())
        });
        Box::pin(ready(result))
    }

    fn get<'a>(&'a self, lease_key: &'a ShardId) -> BoxFuture<'a, Result<Option<Lease>>> {
        let result = self.with_table(|table| {
            table
                .get(lease_key.as_str())
                .map(|item| Lease::from_item(item).map_err(LeaseStoreError::from))
                .transpose()
        });
        Box::pin(ready(result))
    }

    fn create_if_absent<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<Lease>> {
        let result = self.with_table(|table| {
            let key = lease.lease_key.as_str();
            if !Condition::Absent.holds(table.get(key)) {
                return Err(LeaseStoreError::ConditionFailed {
                    lease_key: lease.lease_key.clone(),
                });
            }
            table.insert(key.to_owned(), lease.to_item());
            Ok(lease.clone())
        });
        Box::pin(ready(result))
    }

    fn renew<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<Lease>> {
        Box::pin(ready(self.update(Write::renew(lease))))
    }

    fn take<'a>(&'a self, lease: &'a Lease, new_owner: &'a str) -> BoxFuture<'a, Result<Lease>> {
        Box::pin(ready(self.update(Write::take(lease, new_owner))))
    }

    fn release<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<Lease>> {
        Box::pin(ready(self.update(Write::release(lease))))
    }

    fn checkpoint<'a>(
        &'a self,
        lease: &'a Lease,
        checkpoint: &'a Checkpoint,
        pending: Option<&'a Checkpoint>,
    ) -> BoxFuture<'a, Result<Lease>> {
        Box::pin(ready(
            self.update(Write::checkpoint(lease, checkpoint, pending)),
        ))
    }

    fn prepare_checkpoint<'a>(
        &'a self,
        lease: &'a Lease,
        pending: &'a Checkpoint,
        state: Option<&'a [u8]>,
    ) -> BoxFuture<'a, Result<Lease>> {
        Box::pin(ready(
            self.update(Write::prepare_checkpoint(lease, pending, state)),
        ))
    }

    fn update_child_shards<'a>(
        &'a self,
        lease_key: &'a ShardId,
        child_shard_ids: &'a [ShardId],
    ) -> BoxFuture<'a, Result<Lease>> {
        Box::pin(ready(
            self.update(Write::child_shards(lease_key, child_shard_ids)),
        ))
    }

    fn delete<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<()>> {
        let result = self.with_table(|table| {
            let key = lease.lease_key.as_str();
            match table.get(key) {
                None => Ok(()),
                Some(item) if Condition::Counter(lease.lease_counter).holds(Some(item)) => {
                    table.remove(key);
                    Ok(())
                }
                Some(_) => Err(LeaseStoreError::ConditionFailed {
                    lease_key: lease.lease_key.clone(),
                }),
            }
        });
        Box::pin(ready(result))
    }
}
