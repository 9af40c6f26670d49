//! The stream's shard map: which open shard owns which hash-key range.

use kinesis_aggregation::{HashKey, ShardId};

/// One open shard's hash-key range, as `ListShards` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardRange {
    /// The shard.
    pub shard_id: ShardId,
    /// First hash key of the range.
    pub start: HashKey,
    /// Last hash key of the range (inclusive).
    pub end: HashKey,
}

/// A shard map that does not cover the hash-key space with disjoint ranges.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShardMapError {
    /// No open shard at all.
    #[error("the stream has no open shard")]
    Empty,
    /// Two ranges overlap or leave a gap (e.g. listed in the middle of a reshard).
    #[error("shard {shard} starts at {start}, expected {expected}")]
    NotContiguous {
        /// The shard whose start is wrong.
        shard: ShardId,
        /// Its start.
        start: HashKey,
        /// Where the previous range ended, plus one.
        expected: HashKey,
    },
    /// The ranges do not reach the end of the hash-key space.
    #[error("the open shards end at {0}, not at 2^128-1")]
    Incomplete(HashKey),
}

/// Open shards sorted by hash-key range; a lookup is a binary search on the ranges' ends.
///
/// ```
/// use kinesis_aggregation::{HashKey, ShardId};
/// use kinesis_producer::{ShardMap, ShardRange};
///
/// let half = u128::MAX / 2;
/// let map = ShardMap::new(vec![
///     ShardRange { shard_id: ShardId::from("shardId-1"), start: HashKey(half + 1), end: HashKey::MAX },
///     ShardRange { shard_id: ShardId::from("shardId-0"), start: HashKey(0), end: HashKey(half) },
/// ])?;
/// assert_eq!(map.shard_for(HashKey(7)).as_str(), "shardId-0");
/// assert_eq!(map.shard_for(HashKey::MAX).as_str(), "shardId-1");
/// # Ok::<(), kinesis_producer::ShardMapError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardMap {
    ranges: Vec<ShardRange>,
}

impl ShardMap {
    /// Builds a map from the open shards' ranges, which must cover `0..=2^128-1` without gaps or
    /// overlaps.
    pub fn new(mut ranges: Vec<ShardRange>) -> Result<Self, ShardMapError> {
        ranges.sort_by_key(|r| r.start);
        let mut expected = Some(0u128);
        for range in &ranges {
            match expected {
                Some(next) if range.start.0 == next && range.end >= range.start => {
                    expected = range.end.0.checked_add(1);
                }
                _ => {
                    return Err(ShardMapError::NotContiguous {
                        shard: range.shard_id.clone(),
                        start: range.start,
                        expected: HashKey(expected.unwrap_or(u128::MAX)),
                    });
                }
            }
        }
        match (ranges.last(), expected) {
            (None, _) => Err(ShardMapError::Empty),
            (Some(_), None) => Ok(ShardMap { ranges }),
            (Some(last), Some(_)) => Err(ShardMapError::Incomplete(last.end)),
        }
    }

    /// The shard that owns `hash_key`.
    pub fn shard_for(&self, hash_key: HashKey) -> &ShardId {
        let i = self.ranges.partition_point(|r| r.end < hash_key);
        // The ranges cover the whole space, so every key has a shard.
        &self.ranges[i.min(self.ranges.len() - 1)].shard_id
    }

    /// The range of `shard`, if it is in the map.
    pub fn range_of(&self, shard: &ShardId) -> Option<&ShardRange> {
        self.ranges.iter().find(|r| &r.shard_id == shard)
    }

    /// The open shards, in hash-key order.
    pub fn shards(&self) -> impl ExactSizeIterator<Item = &ShardRange> {
        self.ranges.iter()
    }

    /// How many open shards.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// Never true for a built map.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(id: &str, start: u128, end: u128) -> ShardRange {
        ShardRange {
            shard_id: ShardId::from(id),
            start: HashKey(start),
            end: HashKey(end),
        }
    }

    /// `n` equal ranges, as CreateStream makes them.
    fn even(n: u128) -> Vec<ShardRange> {
        let width = u128::MAX / n;
        (0..n)
            .map(|i| {
                let end = if i == n - 1 {
                    u128::MAX
                } else {
                    (i + 1) * width - 1
                };
                range(&format!("shardId-{i:012}"), i * width, end)
            })
            .collect()
    }

    #[test]
    fn lookups_hit_the_owning_range_at_every_boundary() {
        let ranges = even(64);
        let map = ShardMap::new(ranges.clone()).unwrap();
        for r in &ranges {
            for key in [r.start.0, r.start.0 + 1, r.end.0 - 1, r.end.0] {
                assert_eq!(map.shard_for(HashKey(key)), &r.shard_id, "{key}");
            }
        }
        assert_eq!(map.len(), 64);
    }

    #[test]
    fn a_single_shard_owns_everything() {
        let map = ShardMap::new(vec![range("only", 0, u128::MAX)]).unwrap();
        assert_eq!(map.shard_for(HashKey(0)).as_str(), "only");
        assert_eq!(map.shard_for(HashKey::MAX).as_str(), "only");
    }

    #[test]
    fn gaps_overlaps_and_short_maps_are_refused() {
        assert_eq!(ShardMap::new(vec![]), Err(ShardMapError::Empty));
        assert!(matches!(
            ShardMap::new(vec![range("a", 0, 10), range("b", 12, u128::MAX)]),
            Err(ShardMapError::NotContiguous { .. })
        ));
        // A parent listed with its children (the parent should have been filtered as closed).
        assert!(matches!(
            ShardMap::new(vec![range("parent", 0, u128::MAX), range("child", 0, 5)]),
            Err(ShardMapError::NotContiguous { .. })
        ));
        assert_eq!(
            ShardMap::new(vec![range("a", 0, 10)]),
            Err(ShardMapError::Incomplete(HashKey(10)))
        );
    }
}
