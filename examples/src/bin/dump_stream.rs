//! Prints every user record of a stream from its oldest record, deaggregating KPL aggregates.
//!
//! ```text
//! cargo run -p kinesis-examples --bin dump_stream -- STREAM [ENDPOINT_URL]
//! ```
//!
//! Without an endpoint URL it talks to AWS with the default credential chain and region.

use aws_sdk_kinesis::types::ShardIteratorType;
use kinesis_aggregation::{Deaggregator, KinesisRecord};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let stream = args
        .next()
        .ok_or("usage: dump_stream STREAM [ENDPOINT_URL]")?;
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(endpoint) = args.next() {
        loader = loader.endpoint_url(endpoint);
    }
    let client = aws_sdk_kinesis::Client::new(&loader.load().await);

    let mut deaggregator = Deaggregator::new();
    let mut user_records = Vec::new();
    let mut shards = Vec::new();
    let mut next_token: Option<String> = None;
    loop {
        let request = match &next_token {
            Some(token) => client.list_shards().next_token(token),
            None => client.list_shards().stream_name(&stream),
        };
        let page = request.send().await?;
        shards.extend(page.shards().iter().map(|s| s.shard_id().to_owned()));
        next_token = page.next_token().map(str::to_owned);
        if next_token.is_none() {
            break;
        }
    }
    for shard in shards {
        let mut iterator = client
            .get_shard_iterator()
            .stream_name(&stream)
            .shard_id(&shard)
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await?
            .shard_iterator;
        // Stop at the first empty read: this dumps what is there now; it does not follow the shard.
        while let Some(current) = iterator {
            let output = client.get_records().shard_iterator(current).send().await?;
            if output.records().is_empty() {
                break;
            }
            for record in output.records() {
                let kinesis_record = KinesisRecord::new(
                    record.partition_key().unwrap_or_default(),
                    record.data().clone().into_inner(),
                );
                user_records.clear();
                deaggregator.deaggregate_into(&kinesis_record, &mut user_records);
                for user_record in &user_records {
                    println!(
                        "{shard} {}:{} {} {}",
                        record.sequence_number(),
                        user_record.sub_sequence_number,
                        user_record.partition_key,
                        String::from_utf8_lossy(&user_record.data)
                    );
                }
            }
            iterator = output.next_shard_iterator().map(str::to_owned);
        }
    }
    let stats = deaggregator.stats();
    eprintln!(
        "{} Kinesis records ({} aggregates, {} plain, {} corrupt) → {} user records",
        stats.kinesis_records, stats.aggregates, stats.plain, stats.corrupt, stats.user_records
    );
    Ok(())
}
