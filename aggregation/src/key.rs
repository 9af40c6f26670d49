//! Partition keys, explicit hash keys and the 128-bit hash key that routes a record to a shard.

use std::fmt;
use std::str::FromStr;

use md5::{Digest, Md5};

/// The most Unicode scalar values a partition key may hold (Kinesis limit).
pub const MAX_PARTITION_KEY_CHARS: usize = 256;

/// The largest data blob of one record, in bytes (Kinesis limit: 1 MiB).
pub const MAX_RECORD_DATA_SIZE: usize = 1_048_576;

/// Why a partition key, explicit hash key or data blob was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationError {
    /// Kinesis refuses an empty partition key.
    #[error("partition key is empty (Kinesis needs 1 to 256 characters)")]
    EmptyPartitionKey,
    /// Kinesis refuses partition keys over 256 characters.
    #[error("partition key has {chars} characters; Kinesis allows at most 256")]
    PartitionKeyTooLong {
        /// How many characters the key has.
        chars: usize,
    },
    /// An explicit hash key must be a decimal in `0..2^128` without leading zeros.
    #[error("explicit hash key {key:?} is not a decimal integer in 0..2^128")]
    InvalidExplicitHashKey {
        /// The refused key (at most its first 64 characters).
        key: String,
    },
    /// Kinesis refuses a data blob over 1 MiB.
    #[error("record data is {size} bytes; Kinesis allows at most 1,048,576")]
    DataTooLarge {
        /// The data's size in bytes.
        size: usize,
    },
}

/// A position in the 128-bit hash-key space that Kinesis divides among a stream's shards.
///
/// Ordered as the unsigned integer it is. Displayed and parsed in decimal, as Kinesis writes it.
///
/// ```
/// use kinesis_aggregation::HashKey;
/// let key = HashKey::of_partition_key("device-42");
/// assert_eq!(key.to_string().parse::<HashKey>().unwrap(), key);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HashKey(pub u128);

impl HashKey {
    /// The smallest hash key.
    pub const MIN: HashKey = HashKey(0);
    /// The largest hash key, `2^128 - 1`.
    pub const MAX: HashKey = HashKey(u128::MAX);

    /// The hash key Kinesis derives from a partition key: MD5 of its UTF-8 bytes, big-endian.
    pub fn of_partition_key(partition_key: &str) -> HashKey {
        HashKey(hash_key(partition_key))
    }
}

/// MD5 of the partition key's UTF-8 bytes read as a big-endian unsigned 128-bit integer:
/// the hash key Kinesis uses to pick a record's shard when no explicit hash key is given.
///
/// ```
/// // MD5("a") = 0cc175b9c0f1b6a831c399e269772661
/// assert_eq!(kinesis_aggregation::hash_key("a"), 0x0cc175b9c0f1b6a831c399e269772661);
/// ```
pub fn hash_key(partition_key: &str) -> u128 {
    u128::from_be_bytes(Md5::digest(partition_key.as_bytes()).into())
}

impl fmt::Display for HashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl FromStr for HashKey {
    type Err = ValidationError;

    /// Parses the decimal form Kinesis accepts: `0|[1-9][0-9]{0,38}`, at most `2^128 - 1`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || ValidationError::InvalidExplicitHashKey {
            key: s.chars().take(64).collect(),
        };
        let bytes = s.as_bytes();
        let well_formed = !bytes.is_empty()
            && bytes.len() <= 39
            && bytes.iter().all(u8::is_ascii_digit)
            && (bytes[0] != b'0' || bytes.len() == 1);
        if !well_formed {
            return Err(invalid());
        }
        s.parse::<u128>().map(HashKey).map_err(|_| invalid())
    }
}

/// A validated partition key: 1 to 256 Unicode characters.
///
/// ```
/// use kinesis_aggregation::PartitionKey;
/// assert!(PartitionKey::new("device-42").is_ok());
/// assert!(PartitionKey::new("").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartitionKey(String);

impl PartitionKey {
    /// Validates `key`.
    pub fn new(key: impl Into<String>) -> Result<Self, ValidationError> {
        let key = key.into();
        validate_partition_key(&key)?;
        Ok(PartitionKey(key))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The hash key Kinesis derives from this partition key.
    pub fn hash_key(&self) -> HashKey {
        HashKey::of_partition_key(&self.0)
    }

    /// The key as a `String`.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for PartitionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for PartitionKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Checks the Kinesis rule for partition keys: 1 to 256 Unicode characters.
pub fn validate_partition_key(key: &str) -> Result<(), ValidationError> {
    if key.is_empty() {
        return Err(ValidationError::EmptyPartitionKey);
    }
    // A key of at most 256 bytes has at most 256 characters; count only longer ones.
    if key.len() > MAX_PARTITION_KEY_CHARS {
        let chars = key.chars().count();
        if chars > MAX_PARTITION_KEY_CHARS {
            return Err(ValidationError::PartitionKeyTooLong { chars });
        }
    }
    Ok(())
}

/// Checks the Kinesis rule for a record's data: at most 1 MiB.
pub fn validate_data(data: &[u8]) -> Result<(), ValidationError> {
    if data.len() > MAX_RECORD_DATA_SIZE {
        return Err(ValidationError::DataTooLarge { size: data.len() });
    }
    Ok(())
}

/// A validated explicit hash key, kept both as the decimal text that goes on the wire and as its value.
///
/// ```
/// use kinesis_aggregation::ExplicitHashKey;
/// let key: ExplicitHashKey = "340282366920938463463374607431768211455".parse().unwrap();
/// assert_eq!(key.hash_key().0, u128::MAX);
/// assert!("340282366920938463463374607431768211456".parse::<ExplicitHashKey>().is_err());
/// assert!("0042".parse::<ExplicitHashKey>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ExplicitHashKey {
    text: String,
    value: HashKey,
}

impl ExplicitHashKey {
    /// The decimal text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The hash key's value.
    pub fn hash_key(&self) -> HashKey {
        self.value
    }
}

impl From<HashKey> for ExplicitHashKey {
    fn from(value: HashKey) -> Self {
        ExplicitHashKey {
            text: value.to_string(),
            value,
        }
    }
}

impl FromStr for ExplicitHashKey {
    type Err = ValidationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let value = s.parse::<HashKey>()?;
        Ok(ExplicitHashKey {
            text: s.to_owned(),
            value,
        })
    }
}

impl fmt::Display for ExplicitHashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_key_is_md5_big_endian() {
        // MD5("") = d41d8cd98f00b204e9800998ecf8427e
        assert_eq!(hash_key(""), 0xd41d8cd98f00b204e9800998ecf8427e);
        assert_eq!(
            HashKey::of_partition_key("partitionKey-0").to_string(),
            u128::from_str_radix(&format!("{:x}", Md5::digest(b"partitionKey-0")), 16)
                .unwrap()
                .to_string()
        );
    }

    #[test]
    fn partition_key_limits_count_characters_not_bytes() {
        assert_eq!(
            validate_partition_key(""),
            Err(ValidationError::EmptyPartitionKey)
        );
        assert!(validate_partition_key(&"k".repeat(256)).is_ok());
        assert_eq!(
            validate_partition_key(&"k".repeat(257)),
            Err(ValidationError::PartitionKeyTooLong { chars: 257 })
        );
        // 256 three-byte characters: 768 bytes, still valid.
        assert!(validate_partition_key(&"€".repeat(256)).is_ok());
        assert_eq!(
            validate_partition_key(&"€".repeat(257)),
            Err(ValidationError::PartitionKeyTooLong { chars: 257 })
        );
    }

    #[test]
    fn explicit_hash_key_accepts_only_canonical_decimals_in_range() {
        for ok in [
            "0",
            "1",
            "170141183460469231731687303715884105728",
            &u128::MAX.to_string(),
        ] {
            assert_eq!(ok.parse::<HashKey>().unwrap().to_string(), ok);
        }
        for bad in [
            "",
            "-1",
            "+1",
            "01",
            "1.0",
            " 1",
            "1 ",
            "0x10",
            "340282366920938463463374607431768211456",
            "9999999999999999999999999999999999999999",
        ] {
            assert!(
                matches!(
                    bad.parse::<HashKey>(),
                    Err(ValidationError::InvalidExplicitHashKey { .. })
                ),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn data_limit_is_one_mebibyte() {
        assert!(validate_data(&vec![0; MAX_RECORD_DATA_SIZE]).is_ok());
        assert_eq!(
            validate_data(&vec![0; MAX_RECORD_DATA_SIZE + 1]),
            Err(ValidationError::DataTooLarge {
                size: MAX_RECORD_DATA_SIZE + 1
            })
        );
    }
}
