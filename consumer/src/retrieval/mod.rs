//! Reading a shard: where to start, and the polling fetcher (`GetShardIterator` + `GetRecords`).

mod polling;
mod start;

pub use polling::{Batch, ChildShard, FetchError, PollingConfig, ShardFetcher};
pub use start::StartingPosition;
