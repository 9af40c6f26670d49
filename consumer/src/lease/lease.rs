//! The lease model, attribute for attribute the Java KCL 2.x lease table item
//! (`DynamoDBLeaseSerializer`), so a table written by a Java KCL application is adopted and the
//! other way round.

use std::collections::HashMap;
use std::fmt;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use bytes::Bytes;
use kinesis_aggregation::{HashKey, SequenceNumber, ShardId};

use crate::Position;

/// A lease table item as the DynamoDB SDK hands it over.
pub type Item = HashMap<String, AttributeValue>;

/// The attribute names of a lease table item, as the Java KCL writes them.
pub mod attribute {
    /// `S`, the table's hash key: the shard id.
    pub const LEASE_KEY: &str = "leaseKey";
    /// `S`, absent when nobody holds the lease.
    pub const LEASE_OWNER: &str = "leaseOwner";
    /// `N`, incremented by every conditional write; the lease's heartbeat and fencing token.
    pub const LEASE_COUNTER: &str = "leaseCounter";
    /// `S`: a sequence number, or `TRIM_HORIZON`, `LATEST`, `AT_TIMESTAMP`, `SHARD_END`.
    pub const CHECKPOINT: &str = "checkpoint";
    /// `N`: the user record's index in the aggregate at `checkpoint`; 0 when absent.
    pub const CHECKPOINT_SUB_SEQUENCE_NUMBER: &str = "checkpointSubSequenceNumber";
    /// `S`, optional: a checkpoint prepared by `prepareCheckpoint` and not yet committed.
    pub const PENDING_CHECKPOINT: &str = "pendingCheckpoint";
    /// `N`, optional: the sub-sequence number of the pending checkpoint.
    pub const PENDING_CHECKPOINT_SUB_SEQUENCE_NUMBER: &str = "pendingCheckpointSubSequenceNumber";
    /// `B`, optional: application state stored with the pending checkpoint (KCL 2.3+).
    pub const PENDING_CHECKPOINT_STATE: &str = "pendingCheckpointState";
    /// `N`: how many times the lease changed hands since the last checkpoint.
    pub const OWNER_SWITCHES_SINCE_CHECKPOINT: &str = "ownerSwitchesSinceCheckpoint";
    /// `SS`, optional: the parent shards (one after a split, two after a merge). Singular name,
    /// set type: that is how the Java KCL spells it.
    pub const PARENT_SHARD_ID: &str = "parentShardId";
    /// `SS`, optional: the child shards, written when the shard ends.
    pub const CHILD_SHARD_IDS: &str = "childShardIds";
    /// `S`, optional: the shard's first hash key, in decimal.
    pub const STARTING_HASH_KEY: &str = "startingHashKey";
    /// `S`, optional: the shard's last hash key, in decimal.
    pub const ENDING_HASH_KEY: &str = "endingHashKey";
    /// `S`, KCL 3.x: the previous owner during a graceful hand-off. Removed when a lease is taken
    /// or released, as KCL 3.x does; otherwise left alone.
    pub const CHECKPOINT_OWNER: &str = "checkpointOwner";
    /// `S`, KCL 3.4+: `LEASE` for a lease; other values mark coordinator items kept in the same
    /// table, which are not leases and are skipped. Absent on leases written by older versions.
    pub const ENTITY_TYPE: &str = "entityType";
    /// The [`ENTITY_TYPE`] value of a lease.
    pub const ENTITY_TYPE_LEASE: &str = "LEASE";
}

use attribute as a;

/// A lease table item that cannot be read as a lease. Names the item and the attribute, so a
/// worker can report the bad item and go on with the others.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LeaseError {
    /// An attribute is missing, has the wrong DynamoDB type, or does not parse.
    #[error("lease table item {item}: attribute {attribute}: {reason}")]
    Malformed {
        /// The item's `leaseKey`, when it has a readable one.
        lease_key: Option<ShardId>,
        /// How to find the item: its lease key, or a short rendering of it when it has none.
        item: String,
        /// The attribute at fault.
        attribute: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl LeaseError {
    /// The lease key of the bad item, when it has a readable one.
    pub fn lease_key(&self) -> Option<&ShardId> {
        match self {
            LeaseError::Malformed { lease_key, .. } => lease_key.as_ref(),
        }
    }

    /// The attribute at fault.
    pub fn attribute(&self) -> &'static str {
        match self {
            LeaseError::Malformed { attribute, .. } => attribute,
        }
    }
}

/// A checkpoint sentinel or sequence number that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is neither a sequence number nor TRIM_HORIZON, LATEST, AT_TIMESTAMP or SHARD_END")]
pub struct InvalidCheckpoint(pub String);

/// Where a shard's processing stands, as the `checkpoint` and `checkpointSubSequenceNumber`
/// attributes store it.
///
/// ```
/// use kinesis_consumer::lease::Checkpoint;
/// let at = Checkpoint::parse("49590338271490256608559692538361571095921575989136588898", 3)?;
/// assert_eq!(at.sub_sequence_number(), 3);
/// assert_eq!(Checkpoint::parse("SHARD_END", 0)?, Checkpoint::ShardEnd);
/// assert_eq!(Checkpoint::TrimHorizon.as_str(), "TRIM_HORIZON");
/// # Ok::<(), kinesis_consumer::lease::InvalidCheckpoint>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Checkpoint {
    /// `TRIM_HORIZON`: start at the oldest record still in the shard.
    TrimHorizon,
    /// `LATEST`: start after the newest record.
    Latest,
    /// `AT_TIMESTAMP`: start at the configured timestamp (the timestamp lives in the worker's
    /// configuration, not in the lease).
    AtTimestamp,
    /// `SHARD_END`: every record of the (closed) shard has been processed.
    ShardEnd,
    /// Every user record up to and including this one has been processed.
    Sequence {
        /// The Kinesis record's sequence number.
        sequence_number: SequenceNumber,
        /// The user record's index within that record's KPL aggregate (0 for a plain record).
        sub_sequence_number: u64,
    },
}

impl Checkpoint {
    /// The `checkpoint` attribute value of [`Checkpoint::TrimHorizon`].
    pub const TRIM_HORIZON: &str = "TRIM_HORIZON";
    /// The `checkpoint` attribute value of [`Checkpoint::Latest`].
    pub const LATEST: &str = "LATEST";
    /// The `checkpoint` attribute value of [`Checkpoint::AtTimestamp`].
    pub const AT_TIMESTAMP: &str = "AT_TIMESTAMP";
    /// The `checkpoint` attribute value of [`Checkpoint::ShardEnd`].
    pub const SHARD_END: &str = "SHARD_END";

    /// Reads the two attributes. The sub-sequence number of a sentinel is meaningless (the Java
    /// KCL writes 0) and dropped.
    pub fn parse(checkpoint: &str, sub_sequence_number: u64) -> Result<Self, InvalidCheckpoint> {
        Ok(match checkpoint {
            Self::TRIM_HORIZON => Checkpoint::TrimHorizon,
            Self::LATEST => Checkpoint::Latest,
            Self::AT_TIMESTAMP => Checkpoint::AtTimestamp,
            Self::SHARD_END => Checkpoint::ShardEnd,
            digits => Checkpoint::Sequence {
                sequence_number: SequenceNumber::new(digits)
                    .map_err(|_| InvalidCheckpoint(digits.chars().take(140).collect()))?,
                sub_sequence_number,
            },
        })
    }

    /// A checkpoint at a user record.
    pub fn at(sequence_number: SequenceNumber, sub_sequence_number: u64) -> Self {
        Checkpoint::Sequence {
            sequence_number,
            sub_sequence_number,
        }
    }

    /// The `checkpoint` attribute value: the sentinel's name or the sequence number.
    pub fn as_str(&self) -> &str {
        match self {
            Checkpoint::TrimHorizon => Self::TRIM_HORIZON,
            Checkpoint::Latest => Self::LATEST,
            Checkpoint::AtTimestamp => Self::AT_TIMESTAMP,
            Checkpoint::ShardEnd => Self::SHARD_END,
            Checkpoint::Sequence {
                sequence_number, ..
            } => sequence_number.as_str(),
        }
    }

    /// The `checkpointSubSequenceNumber` attribute value (0 for a sentinel).
    pub fn sub_sequence_number(&self) -> u64 {
        match self {
            Checkpoint::Sequence {
                sub_sequence_number,
                ..
            } => *sub_sequence_number,
            _ => 0,
        }
    }

    /// Whether the shard has been processed to its end.
    pub fn is_shard_end(&self) -> bool {
        matches!(self, Checkpoint::ShardEnd)
    }

    /// The position of a sequence-number checkpoint; `None` for a sentinel.
    pub fn position(&self) -> Option<Position> {
        match self {
            Checkpoint::Sequence {
                sequence_number,
                sub_sequence_number,
            } => Some(Position {
                sequence_number: sequence_number.clone(),
                sub_sequence_number: *sub_sequence_number,
            }),
            _ => None,
        }
    }
}

impl From<Position> for Checkpoint {
    fn from(position: Position) -> Self {
        Checkpoint::at(position.sequence_number, position.sub_sequence_number)
    }
}

impl fmt::Display for Checkpoint {
    /// The sentinel's name, or `sequence/sub-sequence`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Checkpoint::Sequence {
                sequence_number,
                sub_sequence_number,
            } => write!(f, "{sequence_number}/{sub_sequence_number}"),
            sentinel => f.write_str(sentinel.as_str()),
        }
    }
}

/// The closed range of hash keys a shard owns (`startingHashKey`, `endingHashKey`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HashKeyRange {
    /// The first hash key of the shard.
    pub starting: HashKey,
    /// The last hash key of the shard.
    pub ending: HashKey,
}

/// One shard's lease, as stored in the lease table.
///
/// Every field maps to one attribute of [`attribute`]. Attributes this model does not know
/// (written by other KCL versions, e.g. `throughputKBps`) are never overwritten: stores change
/// only the attributes an operation is about.
///
/// ```
/// use kinesis_consumer::lease::{Checkpoint, Lease};
/// let lease = Lease::new("shardId-000000000001".into(), Checkpoint::TrimHorizon);
/// let item = lease.to_item();
/// assert_eq!(Lease::from_item(&item)?, lease);
/// # Ok::<(), kinesis_consumer::lease::LeaseError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Lease {
    /// `leaseKey`: the shard id.
    pub lease_key: ShardId,
    /// `leaseOwner`: the worker holding the lease, if any.
    pub lease_owner: Option<String>,
    /// `leaseCounter`: the value a conditional write must present.
    pub lease_counter: u64,
    /// `checkpoint` and `checkpointSubSequenceNumber`.
    pub checkpoint: Checkpoint,
    /// `pendingCheckpoint` and `pendingCheckpointSubSequenceNumber`.
    pub pending_checkpoint: Option<Checkpoint>,
    /// `pendingCheckpointState`: application state saved with the pending checkpoint.
    pub pending_checkpoint_state: Option<Bytes>,
    /// `ownerSwitchesSinceCheckpoint`.
    pub owner_switches_since_checkpoint: u64,
    /// `parentShardId` (a string set), sorted.
    pub parent_shard_ids: Vec<ShardId>,
    /// `childShardIds` (a string set), sorted.
    pub child_shard_ids: Vec<ShardId>,
    /// `startingHashKey` and `endingHashKey`.
    pub hash_key_range: Option<HashKeyRange>,
}

impl Lease {
    /// A new, unowned lease with counter 0, as shard sync creates it.
    pub fn new(lease_key: ShardId, checkpoint: Checkpoint) -> Self {
        Lease {
            lease_key,
            lease_owner: None,
            lease_counter: 0,
            checkpoint,
            pending_checkpoint: None,
            pending_checkpoint_state: None,
            owner_switches_since_checkpoint: 0,
            parent_shard_ids: Vec::new(),
            child_shard_ids: Vec::new(),
            hash_key_range: None,
        }
    }

    /// Sets the parent shards (sorted).
    pub fn with_parents(mut self, parents: impl IntoIterator<Item = ShardId>) -> Self {
        self.parent_shard_ids = sorted(parents);
        self
    }

    /// Sets the hash-key range.
    pub fn with_hash_key_range(mut self, starting: HashKey, ending: HashKey) -> Self {
        self.hash_key_range = Some(HashKeyRange { starting, ending });
        self
    }

    /// Whether the item is a lease. KCL 3.4+ keeps coordinator items in the lease table and
    /// marks them with another `entityType`; those are skipped, as the Java KCL skips them.
    pub fn is_lease_item(item: &Item) -> bool {
        match item.get(a::ENTITY_TYPE) {
            Some(AttributeValue::S(entity)) => entity == a::ENTITY_TYPE_LEASE,
            _ => true,
        }
    }

    /// Reads a lease table item. Missing optional attributes take the Java KCL's defaults
    /// (sub-sequence numbers and owner switches 0, no parents); `leaseKey`, `leaseCounter` and
    /// `checkpoint` are required.
    pub fn from_item(item: &Item) -> Result<Lease, LeaseError> {
        let lease_key = match item.get(a::LEASE_KEY) {
            Some(AttributeValue::S(key)) if !key.is_empty() => ShardId::from(key.as_str()),
            Some(other) => {
                return Err(malformed_item(
                    item,
                    a::LEASE_KEY,
                    format!("expected a non-empty string (S), found {}", describe(other)),
                ));
            }
            None => return Err(malformed_item(item, a::LEASE_KEY, "missing".into())),
        };
        let reader = Reader {
            item,
            key: &lease_key,
        };
        let checkpoint = reader.checkpoint(a::CHECKPOINT, a::CHECKPOINT_SUB_SEQUENCE_NUMBER)?;
        let checkpoint = checkpoint.ok_or_else(|| reader.malformed(a::CHECKPOINT, "missing"))?;
        Ok(Lease {
            lease_owner: reader.string(a::LEASE_OWNER)?.map(str::to_owned),
            lease_counter: reader
                .number(a::LEASE_COUNTER)?
                .ok_or_else(|| reader.malformed(a::LEASE_COUNTER, "missing"))?,
            checkpoint,
            pending_checkpoint: reader.checkpoint(
                a::PENDING_CHECKPOINT,
                a::PENDING_CHECKPOINT_SUB_SEQUENCE_NUMBER,
            )?,
            pending_checkpoint_state: reader.bytes(a::PENDING_CHECKPOINT_STATE)?,
            owner_switches_since_checkpoint: reader
                .number(a::OWNER_SWITCHES_SINCE_CHECKPOINT)?
                .unwrap_or(0),
            parent_shard_ids: reader.shard_ids(a::PARENT_SHARD_ID)?,
            child_shard_ids: reader.shard_ids(a::CHILD_SHARD_IDS)?,
            hash_key_range: reader.hash_key_range()?,
            lease_key,
        })
    }

    /// The whole item, as the Java KCL's `toDynamoRecord` writes a new lease. Used only to
    /// create a lease that does not exist yet; updates touch single attributes.
    pub fn to_item(&self) -> Item {
        let mut item = Item::new();
        let mut put = |name: &str, value| {
            item.insert(name.to_owned(), value);
        };
        put(a::LEASE_KEY, s(self.lease_key.as_str()));
        put(a::LEASE_COUNTER, n(self.lease_counter));
        if let Some(owner) = &self.lease_owner {
            put(a::LEASE_OWNER, s(owner));
        }
        put(
            a::OWNER_SWITCHES_SINCE_CHECKPOINT,
            n(self.owner_switches_since_checkpoint),
        );
        put(a::CHECKPOINT, s(self.checkpoint.as_str()));
        put(
            a::CHECKPOINT_SUB_SEQUENCE_NUMBER,
            n(self.checkpoint.sub_sequence_number()),
        );
        if let Some(pending) = &self.pending_checkpoint {
            put(a::PENDING_CHECKPOINT, s(pending.as_str()));
            put(
                a::PENDING_CHECKPOINT_SUB_SEQUENCE_NUMBER,
                n(pending.sub_sequence_number()),
            );
        }
        if let Some(state) = &self.pending_checkpoint_state {
            put(a::PENDING_CHECKPOINT_STATE, blob(state));
        }
        // DynamoDB refuses empty sets: no parents means no attribute, as in the Java KCL.
        if let Some(parents) = string_set(&self.parent_shard_ids) {
            put(a::PARENT_SHARD_ID, parents);
        }
        if let Some(children) = string_set(&self.child_shard_ids) {
            put(a::CHILD_SHARD_IDS, children);
        }
        if let Some(range) = &self.hash_key_range {
            put(a::STARTING_HASH_KEY, s(&range.starting.to_string()));
            put(a::ENDING_HASH_KEY, s(&range.ending.to_string()));
        }
        item
    }
}

/// Typed access to one item's attributes; every error names the item and the attribute.
struct Reader<'a> {
    item: &'a Item,
    key: &'a ShardId,
}

impl<'a> Reader<'a> {
    fn malformed(&self, attribute: &'static str, reason: impl Into<String>) -> LeaseError {
        LeaseError::Malformed {
            lease_key: Some(self.key.clone()),
            item: self.key.to_string(),
            attribute,
            reason: reason.into(),
        }
    }

    fn wrong_type(
        &self,
        attribute: &'static str,
        expected: &str,
        found: &AttributeValue,
    ) -> LeaseError {
        self.malformed(
            attribute,
            format!("expected {expected}, found {}", describe(found)),
        )
    }

    /// `S`; an explicit `NULL` reads as absent, as the Java KCL's `safeGetString` does.
    fn string(&self, name: &'static str) -> Result<Option<&'a str>, LeaseError> {
        match self.item.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::S(text)) => Ok(Some(text)),
            Some(other) => Err(self.wrong_type(name, "a string (S)", other)),
        }
    }

    /// `N` holding a non-negative integer (the Java KCL reads it as a `Long`).
    fn number(&self, name: &'static str) -> Result<Option<u64>, LeaseError> {
        match self.item.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::N(text)) => text.parse::<u64>().map(Some).map_err(|_| {
                self.malformed(name, format!("{text:?} is not a non-negative integer"))
            }),
            Some(other) => Err(self.wrong_type(name, "a number (N)", other)),
        }
    }

    fn bytes(&self, name: &'static str) -> Result<Option<Bytes>, LeaseError> {
        match self.item.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::B(blob)) => Ok(Some(Bytes::copy_from_slice(blob.as_ref()))),
            Some(other) => Err(self.wrong_type(name, "binary (B)", other)),
        }
    }

    fn shard_ids(&self, name: &'static str) -> Result<Vec<ShardId>, LeaseError> {
        match self.item.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(Vec::new()),
            Some(AttributeValue::Ss(ids)) => {
                Ok(sorted(ids.iter().map(|id| ShardId::from(id.as_str()))))
            }
            Some(other) => Err(self.wrong_type(name, "a string set (SS)", other)),
        }
    }

    /// A checkpoint from its sequence attribute and its sub-sequence attribute. An empty
    /// sequence string counts as absent (the Java KCL's `Strings.isNullOrEmpty`).
    fn checkpoint(
        &self,
        sequence: &'static str,
        sub_sequence: &'static str,
    ) -> Result<Option<Checkpoint>, LeaseError> {
        let Some(text) = self.string(sequence)?.filter(|t| !t.is_empty()) else {
            return Ok(None);
        };
        let sub = self.number(sub_sequence)?.unwrap_or(0);
        Checkpoint::parse(text, sub)
            .map(Some)
            .map_err(|e| self.malformed(sequence, e.to_string()))
    }

    /// Both hash keys or neither: the Java KCL ignores a range with a missing end, and so does
    /// this reader; a value that is not a decimal hash key is an error.
    fn hash_key_range(&self) -> Result<Option<HashKeyRange>, LeaseError> {
        let parse = |name: &'static str| -> Result<Option<HashKey>, LeaseError> {
            let Some(text) = self.string(name)?.filter(|t| !t.is_empty()) else {
                return Ok(None);
            };
            text.parse::<u128>()
                .map(|key| Some(HashKey(key)))
                .map_err(|_| self.malformed(name, format!("{text:?} is not a hash key (0..2^128)")))
        };
        Ok(
            match (parse(a::STARTING_HASH_KEY)?, parse(a::ENDING_HASH_KEY)?) {
                (Some(starting), Some(ending)) => Some(HashKeyRange { starting, ending }),
                _ => None,
            },
        )
    }
}

/// An error for an item without a usable `leaseKey`: it is named by a short rendering.
fn malformed_item(item: &Item, attribute: &'static str, reason: String) -> LeaseError {
    LeaseError::Malformed {
        lease_key: None,
        item: render(item),
        attribute,
        reason,
    }
}

/// `{leaseOwner: "w1", leaseCounter: 3, …}`, sorted by name, values cut short: enough to find
/// the item in the console.
fn render(item: &Item) -> String {
    let mut names: Vec<&String> = item.keys().collect();
    names.sort();
    let fields: Vec<String> = names
        .into_iter()
        .map(|name| {
            let value = match &item[name] {
                AttributeValue::S(text) => format!("{:?}", shorten(text)),
                AttributeValue::N(number) => shorten(number),
                other => describe(other).to_owned(),
            };
            format!("{name}: {value}")
        })
        .collect();
    format!("{{{}}}", fields.join(", "))
}

fn shorten(text: &str) -> String {
    const MAX: usize = 60;
    if text.chars().count() <= MAX {
        text.to_owned()
    } else {
        format!("{}…", text.chars().take(MAX).collect::<String>())
    }
}

/// The DynamoDB type of a value, for error messages.
pub(crate) fn describe(value: &AttributeValue) -> &'static str {
    match value {
        AttributeValue::S(_) => "a string (S)",
        AttributeValue::N(_) => "a number (N)",
        AttributeValue::B(_) => "binary (B)",
        AttributeValue::Bool(_) => "a boolean (BOOL)",
        AttributeValue::Null(_) => "NULL",
        AttributeValue::Ss(_) => "a string set (SS)",
        AttributeValue::Ns(_) => "a number set (NS)",
        AttributeValue::Bs(_) => "a binary set (BS)",
        AttributeValue::L(_) => "a list (L)",
        AttributeValue::M(_) => "a map (M)",
        _ => "an unknown type",
    }
}

fn sorted(ids: impl IntoIterator<Item = ShardId>) -> Vec<ShardId> {
    let mut ids: Vec<ShardId> = ids.into_iter().collect();
    ids.sort();
    ids.dedup();
    ids
}

pub(crate) fn s(text: &str) -> AttributeValue {
    AttributeValue::S(text.to_owned())
}

pub(crate) fn n(number: u64) -> AttributeValue {
    AttributeValue::N(number.to_string())
}

pub(crate) fn blob(bytes: &[u8]) -> AttributeValue {
    AttributeValue::B(Blob::new(bytes.to_vec()))
}

/// A string set, or `None` for no ids (DynamoDB has no empty sets).
pub(crate) fn string_set(ids: &[ShardId]) -> Option<AttributeValue> {
    (!ids.is_empty()).then(|| AttributeValue::Ss(ids.iter().map(|id| id.to_string()).collect()))
}

#[cfg(test)]
#[path = "lease_tests.rs"]
mod tests;
