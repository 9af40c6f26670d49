//! The records that go into an aggregate and the Kinesis records that come out.

use bytes::Bytes;

use crate::key::{
    ExplicitHashKey, HashKey, PartitionKey, ValidationError, validate_data, validate_partition_key,
};

/// One record as the application puts it: a partition key, an optional explicit hash key, and data.
///
/// Construction validates everything Kinesis would refuse, so an aggregator never holds a record that
/// would fail on the wire.
///
/// ```
/// use kinesis_aggregation::UserRecord;
/// let record = UserRecord::new("device-42", &b"hello"[..])?
///     .with_explicit_hash_key("0")?;
/// assert_eq!(record.hash_key().0, 0);
/// # Ok::<(), kinesis_aggregation::ValidationError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    partition_key: PartitionKey,
    explicit_hash_key: Option<ExplicitHashKey>,
    data: Bytes,
}

impl UserRecord {
    /// A record routed by the MD5 of its partition key.
    pub fn new(
        partition_key: impl Into<String>,
        data: impl Into<Bytes>,
    ) -> Result<Self, ValidationError> {
        let partition_key = PartitionKey::new(partition_key)?;
        let data = data.into();
        validate_data(&data)?;
        Ok(UserRecord {
            partition_key,
            explicit_hash_key: None,
            data,
        })
    }

    /// Routes the record by `explicit_hash_key` (a decimal in `0..2^128`) instead of its partition key.
    pub fn with_explicit_hash_key(
        mut self,
        explicit_hash_key: &str,
    ) -> Result<Self, ValidationError> {
        self.explicit_hash_key = Some(explicit_hash_key.parse()?);
        Ok(self)
    }

    /// Routes the record by an already-parsed explicit hash key.
    pub fn with_hash_key(mut self, hash_key: impl Into<ExplicitHashKey>) -> Self {
        self.explicit_hash_key = Some(hash_key.into());
        self
    }

    /// The partition key.
    pub fn partition_key(&self) -> &str {
        self.partition_key.as_str()
    }

    /// The explicit hash key, if one was given.
    pub fn explicit_hash_key(&self) -> Option<&ExplicitHashKey> {
        self.explicit_hash_key.as_ref()
    }

    /// The data.
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// The hash key that picks this record's shard: the explicit one, or MD5 of the partition key.
    pub fn hash_key(&self) -> HashKey {
        match &self.explicit_hash_key {
            Some(key) => key.hash_key(),
            None => self.partition_key.hash_key(),
        }
    }

    /// Takes the record apart: partition key, explicit hash key, data.
    pub fn into_parts(self) -> (String, Option<ExplicitHashKey>, Bytes) {
        (
            self.partition_key.into_string(),
            self.explicit_hash_key,
            self.data,
        )
    }
}

/// One record as Kinesis stores it: what a `PutRecords` entry carries, or what `GetRecords` returns.
///
/// It is either one user record sent as is, or an aggregate of several.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KinesisRecord {
    /// The partition key Kinesis sees.
    pub partition_key: String,
    /// The explicit hash key, if any (decimal).
    pub explicit_hash_key: Option<String>,
    /// The data blob: a user record's data, or an encoded aggregate.
    pub data: Bytes,
}

impl KinesisRecord {
    /// A Kinesis record with no explicit hash key.
    pub fn new(partition_key: impl Into<String>, data: impl Into<Bytes>) -> Self {
        KinesisRecord {
            partition_key: partition_key.into(),
            explicit_hash_key: None,
            data: data.into(),
        }
    }

    /// The bytes this record counts against the `PutRecords` request limit (5 MiB) and a shard's
    /// write limit: partition key plus data.
    pub fn billed_size(&self) -> usize {
        self.partition_key.len() + self.data.len()
    }

    /// Checks the partition key and data against the Kinesis limits.
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_partition_key(&self.partition_key)?;
        if let Some(key) = &self.explicit_hash_key {
            key.parse::<HashKey>()?;
        }
        validate_data(&self.data)
    }
}
