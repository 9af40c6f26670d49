//! The lease table in DynamoDB, through the official SDK client.

use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ReturnValue,
    ScalarAttributeType, TableStatus,
};
use kinesis_aggregation::ShardId;

use super::lease::attribute as a;
use super::lease::{Checkpoint, Item, Lease};
use super::store::{BoxFuture, LeaseStore, LeaseStoreError, ListedLease, Result};
use super::write::{Condition, Expression, Write};

/// A [`LeaseStore`] over a DynamoDB table, KCL-compatible: a Java KCL 2.x application can share
/// or adopt the table.
///
/// Writes are `UpdateItem`s that set and remove only the attributes concerned, with a
/// `ConditionExpression` and `ReturnValues=ALL_NEW`; attributes written by other KCL versions
/// survive. Only [`LeaseStore::create_if_absent`] writes a whole item, and only where none
/// exists.
///
/// ```no_run
/// use kinesis_consumer::lease::{DynamoLeaseStore, LeaseStore};
///
/// # async fn run(client: aws_sdk_dynamodb::Client) -> Result<(), Box<dyn std::error::Error>> {
/// let store = DynamoLeaseStore::new(client, "my-application");
/// store.create_table_if_absent().await?;
/// for lease in store.list().await? {
///     match lease {
///         Ok(lease) => println!("{} held by {:?}", lease.lease_key, lease.lease_owner),
///         Err(bad) => eprintln!("unreadable lease item: {bad}"),
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct DynamoLeaseStore {
    client: Client,
    table: String,
    consistent_scans: bool,
    scan_page_size: Option<i32>,
    table_active_timeout: Duration,
}

impl DynamoLeaseStore {
    /// A store for `table` (the KCL names it after the application).
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoLeaseStore {
            client,
            table: table.into(),
            consistent_scans: false,
            scan_page_size: None,
            table_active_timeout: Duration::from_secs(300),
        }
    }

    /// Whether `list` (the table's scans) reads consistently (default false, as the Java KCL).
    /// Every decision taken from a scan is made by a conditional write, so an item a moment old
    /// costs at most a refused write, while a consistent scan costs twice the read capacity.
    /// `get`, which the parent check and a refused delete read one item with, is always
    /// consistent.
    pub fn with_consistent_reads(mut self, consistent: bool) -> Self {
        self.consistent_scans = consistent;
        self
    }

    /// Most items per `Scan` page (default: DynamoDB's 1 MB pages). Small pages exercise paging
    /// in tests.
    pub fn with_scan_page_size(mut self, items: i32) -> Self {
        self.scan_page_size = Some(items.max(1));
        self
    }

    /// How long [`LeaseStore::create_table_if_absent`] waits for the table to become ACTIVE
    /// or UPDATING (default 5 minutes).
    pub fn with_table_active_timeout(mut self, timeout: Duration) -> Self {
        self.table_active_timeout = timeout;
        self
    }

    /// The table's name.
    pub fn table_name(&self) -> &str {
        &self.table
    }

    /// The SDK client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn key(lease_key: &ShardId) -> (String, AttributeValue) {
        (
            a::LEASE_KEY.to_owned(),
            AttributeValue::S(lease_key.to_string()),
        )
    }

    async fn get_item(&self, lease_key: &ShardId, consistent: bool) -> Result<Option<Item>> {
        let (name, value) = Self::key(lease_key);
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(name, value)
            .consistent_read(consistent)
            .send()
            .await
            .map_err(|e| LeaseStoreError::from_sdk("GetItem", &self.table, Some(lease_key), e))?;
        Ok(output.item().filter(|item| !item.is_empty()).cloned())
    }

    async fn update(&self, write: Write) -> Result<Lease> {
        let (update, condition, Expression { names, values }) = write.render();
        let (name, value) = Self::key(&write.lease_key);
        let sent = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(name, value)
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values((!values.is_empty()).then_some(values))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match sent {
            Ok(output) => {
                let item = output.attributes().cloned().unwrap_or_default();
                Ok(Lease::from_item(&item)?)
            }
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => {
                // Was it our own earlier attempt (the SDK retries requests whose response got
                // lost)? Then the write is done. Always a consistent read: the decision must
                // not rest on a stale copy.
                let current = self.get_item(&write.lease_key, true).await?;
                if write.already_applied(current.as_ref()) {
                    let current = current.expect("applied writes leave an item");
                    return Ok(Lease::from_item(&current)?);
                }
                Err(LeaseStoreError::ConditionFailed {
                    lease_key: write.lease_key,
                })
            }
            Err(e) => Err(LeaseStoreError::from_sdk(
                "UpdateItem",
                &self.table,
                Some(&write.lease_key),
                e,
            )),
        }
    }

    /// The table's status; `None` when it does not exist.
    async fn table_status(&self) -> Result<Option<TableStatus>> {
        match self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
        {
            Ok(output) => Ok(output
                .table()
                .and_then(|t| t.table_status())
                .cloned()
                .or(Some(TableStatus::Creating))),
            Err(e) => match LeaseStoreError::from_sdk("DescribeTable", &self.table, None, e) {
                LeaseStoreError::TableNotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn create_table(&self) -> Result<bool> {
        let build = |e: aws_sdk_dynamodb::error::BuildError| LeaseStoreError::Fatal {
            operation: "CreateTable",
            table: self.table.clone(),
            lease_key: None,
            message: e.to_string(),
            source: std::sync::Arc::new(e),
        };
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(a::LEASE_KEY)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(build)?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(a::LEASE_KEY)
                    .key_type(KeyType::Hash)
                    .build()
                    .map_err(build)?,
            )
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await;
        match created {
            Ok(_) => Ok(true),
            // Another worker created it between our DescribeTable and CreateTable.
            Err(e) if e.code() == Some("ResourceInUseException") => Ok(false),
            Err(e) => Err(LeaseStoreError::from_sdk(
                "CreateTable",
                &self.table,
                None,
                e,
            )),
        }
    }

    async fn wait_until_active(&self) -> Result<()> {
        let mut waited = Duration::ZERO;
        let mut pause = Duration::from_millis(50);
        loop {
            // UPDATING (a capacity or index change under way) is readable and writable, and the
            // Java KCL accepts it too. Any other status, or none (DynamoDB may not yet list a
            // table it has just accepted): keep waiting.
            if let Some(TableStatus::Active | TableStatus::Updating) = self.table_status().await? {
                return Ok(());
            }
            if waited >= self.table_active_timeout {
                return Err(LeaseStoreError::TableNotActive {
                    table: self.table.clone(),
                    waited,
                });
            }
            tokio::time::sleep(pause).await;
            waited += pause;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }

    async fn scan(&self) -> Result<Vec<ListedLease>> {
        let mut leases = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(self.consistent_scans)
                .set_limit(self.scan_page_size)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| LeaseStoreError::from_sdk("Scan", &self.table, None, e))?;
            leases.extend(
                page.items()
                    .iter()
                    .filter(|item| Lease::is_lease_item(item))
                    .map(Lease::from_item),
            );
            match page.last_evaluated_key() {
                Some(key) if !key.is_empty() => start = Some(key.clone()),
                _ => return Ok(leases),
            }
        }
    }
}

impl LeaseStore for DynamoLeaseStore {
    fn create_table_if_absent(&self) -> BoxFuture<'_, Result<bool>> {
        Box::pin(async move {
            // DescribeTable first: an existing table needs no CreateTable permission.
            let created = match self.table_status().await? {
                Some(_) => false,
                None => self.create_table().await?,
            };
            self.wait_until_active().await?;
            Ok(created)
        })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<ListedLease>>> {
        Box::pin(self.scan())
    }

    fn get<'a>(&'a self, lease_key: &'a ShardId) -> BoxFuture<'a, Result<Option<Lease>>> {
        Box::pin(async move {
            match self.get_item(lease_key, true).await? {
                Some(item) => Ok(Some(Lease::from_item(&item)?)),
                None => Ok(None),
            }
        })
    }

    fn create_if_absent<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<Lease>> {
        Box::pin(async move {
            let mut expression = Expression::default();
            let condition = Condition::Absent.render(&mut expression);
            self.client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(lease.to_item()))
                .condition_expression(condition)
                .set_expression_attribute_names(Some(expression.names))
                .send()
                .await
                .map_err(|e| {
                    LeaseStoreError::from_sdk("PutItem", &self.table, Some(&lease.lease_key), e)
                })?;
            Ok(lease.clone())
        })
    }

    fn renew<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<Lease>> {
        Box::pin(self.update(Write::renew(lease)))
    }

    fn take<'a>(&'a self, lease: &'a Lease, new_owner: &'a str) -> BoxFuture<'a, Result<Lease>> {
        Box::pin(self.update(Write::take(lease, new_owner)))
    }

    fn release<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<Lease>> {
        Box::pin(self.update(Write::release(lease)))
    }

    fn checkpoint<'a>(
        &'a self,
        lease: &'a Lease,
        checkpoint: &'a Checkpoint,
        pending: Option<&'a Checkpoint>,
    ) -> BoxFuture<'a, Result<Lease>> {
        Box::pin(self.update(Write::checkpoint(lease, checkpoint, pending)))
    }

    fn prepare_checkpoint<'a>(
        &'a self,
        lease: &'a Lease,
        pending: &'a Checkpoint,
        state: Option<&'a [u8]>,
    ) -> BoxFuture<'a, Result<Lease>> {
        Box::pin(self.update(Write::prepare_checkpoint(lease, pending, state)))
    }

    fn update_child_shards<'a>(
        &'a self,
        lease_key: &'a ShardId,
        child_shard_ids: &'a [ShardId],
    ) -> BoxFuture<'a, Result<Lease>> {
        Box::pin(self.update(Write::child_shards(lease_key, child_shard_ids)))
    }

    fn delete<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let mut expression = Expression::default();
            let condition = Condition::Counter(lease.lease_counter).render(&mut expression);
            let (name, value) = Self::key(&lease.lease_key);
            let deleted = self
                .client
                .delete_item()
                .table_name(&self.table)
                .key(name, value)
                .condition_expression(condition)
                .set_expression_attribute_names(Some(expression.names))
                .set_expression_attribute_values(Some(expression.values))
                .send()
                .await;
            match deleted {
                Ok(_) => Ok(()),
                // The condition fails on a missing item too; a lease already gone is deleted.
                Err(e) if e.code() == Some("ConditionalCheckFailedException") => {
                    match self.get_item(&lease.lease_key, true).await? {
                        None => Ok(()),
                        Some(_) => Err(LeaseStoreError::ConditionFailed {
                            lease_key: lease.lease_key.clone(),
                        }),
                    }
                }
                Err(e) => Err(LeaseStoreError::from_sdk(
                    "DeleteItem",
                    &self.table,
                    Some(&lease.lease_key),
                    e,
                )),
            }
        })
    }
}
