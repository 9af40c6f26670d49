//! Reading a shard: where to start, the polling fetcher (`GetShardIterator` + `GetRecords`), and
//! the enhanced fan-out fetcher (`SubscribeToShard`).

mod fanout;
mod feed;
mod polling;
mod records;
mod start;

use std::sync::Arc;

use kinesis_aggregation::ShardId;

use crate::lease::HashKeyRange;
use crate::shards::SharedShardListing;

pub use fanout::{
    FanOutConfig, FanOutFetcher, RegistrationError, StreamConsumer, register_stream_consumer,
};
pub use polling::{Batch, ChildShard, FetchError, PollingConfig, ShardFetcher};
pub(crate) use records::hash_key_range;
pub use start::StartingPosition;

/// How a worker reads its shards.
#[derive(Debug, Clone, PartialEq)]
pub enum RetrievalConfig {
    /// `GetRecords` polling: shares the shard's 2 MiB/s and 5 reads/s with every polling
    /// application of the stream.
    Polling(PollingConfig),
    /// Enhanced fan-out: `SubscribeToShard` pushes records over a dedicated 2 MiB/s per shard.
    FanOut(FanOutConfig),
}

impl Default for RetrievalConfig {
    fn default() -> Self {
        RetrievalConfig::Polling(PollingConfig::default())
    }
}

/// A retrieval mode made ready to read: fan-out with its registered consumer's ARN.
#[derive(Debug, Clone)]
pub(crate) enum Retrieval {
    Polling(PollingConfig),
    FanOut {
        config: FanOutConfig,
        consumer_arn: Arc<str>,
        /// The stream's listing the subscriptions share to see whether their shard closed.
        listing: Arc<SharedShardListing>,
    },
}

impl Retrieval {
    pub(crate) fn start(
        &self,
        client: aws_sdk_kinesis::Client,
        stream: Arc<str>,
        shard: ShardId,
        start: StartingPosition,
        range: Option<HashKeyRange>,
    ) -> Fetcher {
        match self {
            Retrieval::Polling(config) => Fetcher::Polling(ShardFetcher::start(
                client,
                stream,
                shard,
                start,
                range,
                config.clone(),
            )),
            Retrieval::FanOut {
                config,
                consumer_arn,
                listing,
            } => Fetcher::FanOut(FanOutFetcher::start_sharing(
                client,
                stream,
                consumer_arn.clone(),
                shard,
                start,
                range,
                config.clone(),
                listing.clone(),
            )),
        }
    }
}

/// A running reader of either kind.
pub(crate) enum Fetcher {
    Polling(ShardFetcher),
    FanOut(FanOutFetcher),
}

impl Fetcher {
    pub(crate) async fn next(&mut self) -> Option<Result<Batch, FetchError>> {
        match self {
            Fetcher::Polling(fetcher) => fetcher.next().await,
            Fetcher::FanOut(fetcher) => fetcher.next().await,
        }
    }
}
