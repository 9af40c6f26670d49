//! Identifiers Kinesis hands out: shard ids and sequence numbers.

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

/// A shard's id, e.g. `shardId-000000000000`. Cheap to clone.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ShardId(Arc<str>);

impl ShardId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for ShardId {
    fn from(id: &str) -> Self {
        ShardId(Arc::from(id))
    }
}

impl From<String> for ShardId {
    fn from(id: String) -> Self {
        ShardId(Arc::from(id))
    }
}

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// A record's sequence number within its shard: a decimal of up to 128 digits.
///
/// Ordered as the number it is (Kinesis sequence numbers exceed `u128`, so they are compared as
/// canonical decimals: shorter is smaller, then digit by digit).
///
/// ```
/// use kinesis_aggregation::SequenceNumber;
/// let a = SequenceNumber::new("9")?;
/// let b = SequenceNumber::new("49590338271490256608559692538361571095921575989136588898")?;
/// assert!(a < b);
/// # Ok::<(), kinesis_aggregation::InvalidSequenceNumber>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SequenceNumber(Arc<str>);

/// A sequence number that is not a decimal of 1 to 128 digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a Kinesis sequence number (a decimal of 1 to 128 digits)")]
pub struct InvalidSequenceNumber(pub String);

impl SequenceNumber {
    /// Validates `text`: 1 to 128 decimal digits. Leading zeros are dropped so that ordering and
    /// equality follow the number's value.
    pub fn new(text: &str) -> Result<Self, InvalidSequenceNumber> {
        if text.is_empty() || text.len() > 128 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(InvalidSequenceNumber(text.chars().take(140).collect()));
        }
        let trimmed = text.trim_start_matches('0');
        Ok(SequenceNumber(Arc::from(if trimmed.is_empty() {
            "0"
        } else {
            trimmed
        })))
    }

    /// The decimal text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Ord for SequenceNumber {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0
            .len()
            .cmp(&other.0.len())
            .then_with(|| self.0.cmp(&other.0))
    }
}

impl PartialOrd for SequenceNumber {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for SequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SequenceNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_order_as_numbers() {
        let n = |s| SequenceNumber::new(s).unwrap();
        assert!(n("9") < n("10"));
        assert!(n("100") > n("99"));
        assert_eq!(n("007"), n("7"));
        assert_eq!(n("000"), n("0"));
        let long = "4".repeat(56);
        assert!(n(&long) > n("340282366920938463463374607431768211455"));
        for bad in ["", "-1", "1e5", " 1", &"1".repeat(129)] {
            assert!(SequenceNumber::new(bad).is_err(), "{bad:?}");
        }
    }
}
