//! Listing a stream's open shards into a [`ShardMap`].

use aws_sdk_kinesis::error::ProvideErrorMetadata;
use kinesis_aggregation::{HashKey, ShardId};
use kinesis_sdk_support::{
    CREDENTIALS_ERROR_CODE, MESSAGE_LIMIT, error_text, is_credentials_error,
};

use crate::shard_map::{ShardMap, ShardMapError, ShardRange};

/// Why the shard map could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShardListError {
    /// `ListShards` failed.
    #[error("ListShards on {stream} failed: {code}: {message}")]
    Request {
        /// The stream.
        stream: String,
        /// The error code (`ResourceNotFoundException`, `AccessDeniedException`, …).
        code: String,
        /// The error message.
        message: String,
    },
    /// The listed shards do not form a map.
    #[error("the shards of {stream} do not form a map: {source}")]
    Map {
        /// The stream.
        stream: String,
        /// What is wrong.
        source: ShardMapError,
    },
    /// A shard's hash range is not a pair of decimals.
    #[error("shard {shard} of {stream} has a malformed hash-key range")]
    MalformedRange {
        /// The stream.
        stream: String,
        /// The shard.
        shard: String,
    },
}

impl ShardListError {
    /// The error code of a failed request, if that is what happened.
    pub fn code(&self) -> Option<&str> {
        match self {
            ShardListError::Request { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// Lists every shard of `stream` (following `NextToken`) and keeps the open ones: a closed parent
/// shard has an ending sequence number, and its children own its range now.
pub async fn load_shard_map(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
) -> Result<ShardMap, ShardListError> {
    let mut ranges = Vec::new();
    let mut next_token: Option<String> = None;
    loop {
        let request = match &next_token {
            Some(token) => client.list_shards().next_token(token),
            None => client.list_shards().stream_name(stream),
        };
        let page = request
            .send()
            .await
            .map_err(|error| ShardListError::Request {
                stream: stream.to_owned(),
                code: match error.code() {
                    Some(code) => code.to_owned(),
                    None if is_credentials_error(&error) => CREDENTIALS_ERROR_CODE.to_owned(),
                    None => "ClientError".to_owned(),
                },
                message: error
                    .message()
                    .map(str::to_owned)
                    .unwrap_or_else(|| error_text(&error, MESSAGE_LIMIT)),
            })?;
        for shard in page.shards() {
            let open = shard
                .sequence_number_range()
                .is_none_or(|r| r.ending_sequence_number().is_none());
            if !open {
                continue;
            }
            let malformed = || ShardListError::MalformedRange {
                stream: stream.to_owned(),
                shard: shard.shard_id().to_owned(),
            };
            let range = shard.hash_key_range().ok_or_else(malformed)?;
            let start = range
                .starting_hash_key()
                .parse::<HashKey>()
                .map_err(|_| malformed())?;
            let end = range
                .ending_hash_key()
                .parse::<HashKey>()
                .map_err(|_| malformed())?;
            ranges.push(ShardRange {
                shard_id: ShardId::from(shard.shard_id()),
                start,
                end,
            });
        }
        next_token = page.next_token().map(str::to_owned);
        if next_token.is_none() {
            break;
        }
    }
    ShardMap::new(ranges).map_err(|source| ShardListError::Map {
        stream: stream.to_owned(),
        source,
    })
}
