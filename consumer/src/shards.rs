//! Listing a stream's shards with their parents, for shard sync and for finding the children of
//! an ended shard on servers that do not name them in `GetRecords`.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_kinesis::error::ProvideErrorMetadata;
use aws_sdk_kinesis::types::ShardFilter;
use kinesis_aggregation::ShardId;
use kinesis_sdk_support::{MESSAGE_LIMIT, error_text};

use crate::lease::HashKeyRange;
use crate::retrieval::hash_key_range;

/// One shard as `ListShards` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardInfo {
    /// The shard.
    pub shard_id: ShardId,
    /// Its parent and, after a merge, adjacent parent.
    pub parents: Vec<ShardId>,
    /// Whether it is still open (no ending sequence number).
    pub open: bool,
    /// Its hash-key range (`None` if the server gave none that parses).
    pub hash_key_range: Option<HashKeyRange>,
}

/// Every shard of `stream`, open or closed, following `NextToken`.
pub async fn list_shards(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
) -> Result<Vec<ShardInfo>, String> {
    list_shards_filtered(client, stream, None).await
}

/// The shards `filter` selects (`ShardFilter` of `ListShards`: e.g. only the shards open at the
/// latest position or at a timestamp), following `NextToken`. Some servers ignore the filter
/// and return every shard: callers that depend on it filter again with what they can see.
pub(crate) async fn list_shards_filtered(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    filter: Option<ShardFilter>,
) -> Result<Vec<ShardInfo>, String> {
    let mut shards = Vec::new();
    let mut next_token: Option<String> = None;
    loop {
        // The filter, like the stream name, goes only with the first page: a NextToken carries
        // them and the API refuses both together.
        let request = match &next_token {
            Some(token) => client.list_shards().next_token(token),
            None => client
                .list_shards()
                .stream_name(stream)
                .set_shard_filter(filter.clone()),
        };
        let page = request.send().await.map_err(|error| {
            format!(
                "{}: {}",
                error.code().unwrap_or("ClientError"),
                error
                    .message()
                    .map(str::to_owned)
                    .unwrap_or_else(|| error_text(&error, MESSAGE_LIMIT))
            )
        })?;
        for shard in page.shards() {
            let parents = [shard.parent_shard_id(), shard.adjacent_parent_shard_id()]
                .into_iter()
                .flatten()
                .map(ShardId::from)
                .collect();
            shards.push(ShardInfo {
                shard_id: ShardId::from(shard.shard_id()),
                parents,
                open: shard
                    .sequence_number_range()
                    .is_none_or(|r| r.ending_sequence_number().is_none()),
                hash_key_range: shard.hash_key_range().and_then(hash_key_range),
            });
        }
        next_token = page.next_token().map(str::to_owned);
        if next_token.is_none() {
            return Ok(shards);
        }
    }
}

/// One listing of a stream shared by a worker's readers: at most one `ListShards` per `max_age`
/// however many of them ask (concurrent askers wait for the one call under way).
#[derive(Debug)]
pub(crate) struct SharedShardListing {
    max_age: Duration,
    last: tokio::sync::Mutex<Option<(tokio::time::Instant, Arc<Vec<ShardInfo>>)>>,
}

impl SharedShardListing {
    pub(crate) fn new(max_age: Duration) -> Self {
        SharedShardListing {
            max_age,
            last: tokio::sync::Mutex::new(None),
        }
    }

    /// The shards of `stream`, listed at most `max_age` ago.
    pub(crate) async fn get(
        &self,
        client: &aws_sdk_kinesis::Client,
        stream: &str,
    ) -> Result<Arc<Vec<ShardInfo>>, String> {
        let mut last = self.last.lock().await;
        if let Some((at, shards)) = last.as_ref()
            && at.elapsed() < self.max_age
        {
            return Ok(shards.clone());
        }
        let shards = Arc::new(list_shards(client, stream).await?);
        *last = Some((tokio::time::Instant::now(), shards.clone()));
        Ok(shards)
    }
}
