//! The local servers, through the official AWS SDK clients: Kinesis streams route records by the
//! MD5 hash key our aggregation crate computes, aggregates survive the round trip, and DynamoDB
//! refuses a failed conditional write with `ConditionalCheckFailedException`.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, Shard, ShardIteratorType};
use kinesis_aggregation::{Aggregator, HashKey, KinesisRecord, UserRecord, deaggregate};
use kinesis_test_support::{
    DynamoDbServer, KinesisServer, create_lease_table, create_stream, dynamodb_client,
    kinesis_client, unique_name,
};

/// Every shard of `stream`, following `NextToken` pages.
async fn list_shards(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    page_size: Option<i32>,
) -> Vec<Shard> {
    let mut shards = Vec::new();
    let mut next_token: Option<String> = None;
    loop {
        let request = match &next_token {
            Some(token) => client.list_shards().next_token(token),
            None => client.list_shards().stream_name(stream),
        };
        let page = request
            .set_max_results(page_size)
            .send()
            .await
            .expect("ListShards");
        shards.extend(page.shards().iter().cloned());
        next_token = page.next_token().map(str::to_owned);
        if next_token.is_none() {
            return shards;
        }
    }
}

fn hash_range(shard: &Shard) -> (u128, u128) {
    let range = shard.hash_key_range().expect("shard has a hash range");
    (
        range.starting_hash_key().parse().unwrap(),
        range.ending_hash_key().parse().unwrap(),
    )
}

/// Every record in the shard from TRIM_HORIZON until a read returns nothing.
async fn read_shard(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    shard: &str,
) -> Vec<aws_sdk_kinesis::types::Record> {
    let mut iterator = client
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(shard)
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .expect("GetShardIterator")
        .shard_iterator
        .expect("an open shard has an iterator");
    let mut records = Vec::new();
    loop {
        let output = client
            .get_records()
            .shard_iterator(&iterator)
            .send()
            .await
            .expect("GetRecords");
        let empty = output.records().is_empty();
        records.extend(output.records().iter().cloned());
        match output.next_shard_iterator() {
            Some(next) if !empty => iterator = next.to_owned(),
            _ => return records,
        }
    }
}

async fn put_route_and_read_back(server: KinesisServer) {
    let client = kinesis_client(server).await;
    let stream = unique_name("foundation");
    create_stream(&client, &stream, 4).await;

    // kinesalite ignores MaxResults; kinesis-mock pages, which the loop follows.
    let page_size = (server == KinesisServer::KinesisMock).then_some(2);
    let shards = list_shards(&client, &stream, page_size).await;
    assert_eq!(shards.len(), 4, "{server:?}");
    let ranges: HashMap<String, (u128, u128)> = shards
        .iter()
        .map(|s| (s.shard_id().to_owned(), hash_range(s)))
        .collect();

    // 100 plain records, then one aggregate of 50 user records.
    let keys: Vec<String> = (0..100).map(|i| format!("device-{i}")).collect();
    let mut entries: Vec<PutRecordsRequestEntry> = keys
        .iter()
        .map(|key| {
            PutRecordsRequestEntry::builder()
                .partition_key(key)
                .data(Blob::new(format!("payload of {key}")))
                .build()
                .unwrap()
        })
        .collect();
    let mut aggregator = Aggregator::default();
    for i in 0..50 {
        aggregator
            .try_add(&UserRecord::new(format!("agg-{i}"), format!("sub-record {i}")).unwrap())
            .unwrap();
    }
    let aggregate: KinesisRecord = aggregator.finish().unwrap();
    entries.push(
        PutRecordsRequestEntry::builder()
            .partition_key(&aggregate.partition_key)
            .set_explicit_hash_key(aggregate.explicit_hash_key.clone())
            .data(Blob::new(aggregate.data.to_vec()))
            .build()
            .unwrap(),
    );

    let output = client
        .put_records()
        .stream_name(&stream)
        .set_records(Some(entries))
        .send()
        .await
        .expect("PutRecords");
    assert_eq!(output.failed_record_count(), Some(0));
    let results = output.records();
    assert_eq!(results.len(), 101);

    // Kinesis routes each record by MD5 of its partition key: our hash_key must agree.
    let mut acknowledged = HashMap::new();
    for (key, result) in keys.iter().zip(results) {
        let shard = result.shard_id().expect("shard id");
        let (start, end) = ranges[shard];
        let hash = HashKey::of_partition_key(key).0;
        assert!(
            start <= hash && hash <= end,
            "{server:?}: {key} hashed outside {shard}"
        );
        acknowledged.insert(
            result.sequence_number().unwrap().to_owned(),
            (key.clone(), shard.to_owned()),
        );
    }
    let aggregate_result = &results[100];
    let aggregate_shard = aggregate_result.shard_id().unwrap();
    let (start, end) = ranges[aggregate_shard];
    let first_hash = HashKey::of_partition_key("agg-0").0;
    assert!(
        start <= first_hash && first_hash <= end,
        "the aggregate lands on its first record's shard"
    );

    // Read every shard back: each record exactly once, in the shard it was acknowledged in.
    let mut seen_plain = 0;
    let mut user_records_in_aggregate = 0;
    for shard in ranges.keys() {
        for record in read_shard(&client, &stream, shard).await {
            let sequence = record.sequence_number();
            if sequence == aggregate_result.sequence_number().unwrap() {
                assert_eq!(shard, aggregate_shard);
                let (user_records, _) = deaggregate(&KinesisRecord::new(
                    record.partition_key().unwrap_or_default(),
                    record.data().clone().into_inner(),
                ));
                for (i, r) in user_records.iter().enumerate() {
                    assert_eq!(&*r.partition_key, format!("agg-{i}"));
                    assert_eq!(r.data, format!("sub-record {i}").into_bytes());
                }
                user_records_in_aggregate += user_records.len();
                continue;
            }
            let (key, acknowledged_shard) = acknowledged
                .remove(sequence)
                .unwrap_or_else(|| panic!("{server:?}: record {sequence} read twice or never put"));
            assert_eq!(&acknowledged_shard, shard);
            assert_eq!(record.partition_key(), Some(key.as_str()));
            assert_eq!(
                record.data().as_ref(),
                format!("payload of {key}").as_bytes()
            );
            seen_plain += 1;
        }
    }
    assert_eq!(
        seen_plain, 100,
        "{server:?}: unread records: {acknowledged:?}"
    );
    assert_eq!(user_records_in_aggregate, 50);
}

#[tokio::test]
async fn kinesis_mock_routes_by_hash_key_and_reads_back() {
    put_route_and_read_back(KinesisServer::KinesisMock).await;
}

#[tokio::test]
async fn kinesalite_routes_by_hash_key_and_reads_back() {
    put_route_and_read_back(KinesisServer::Kinesalite).await;
}

async fn conditional_writes(server: DynamoDbServer) {
    let client = dynamodb_client(server).await;
    let table = unique_name("leases");
    create_lease_table(&client, &table).await;

    let create = || {
        client
            .put_item()
            .table_name(&table)
            .item("leaseKey", AttributeValue::S("shardId-000000000000".into()))
            .item("leaseCounter", AttributeValue::N("0".into()))
            .condition_expression("attribute_not_exists(leaseKey)")
            .send()
    };
    create().await.expect("the first create succeeds");
    let error = create()
        .await
        .expect_err("the second create must fail its condition");
    assert!(
        error
            .into_service_error()
            .is_conditional_check_failed_exception(),
        "{server:?}: a failed condition is ConditionalCheckFailedException"
    );

    let renew = |expected: &str| {
        client
            .update_item()
            .table_name(&table)
            .key("leaseKey", AttributeValue::S("shardId-000000000000".into()))
            .update_expression("SET leaseCounter = leaseCounter + :one")
            .condition_expression("leaseCounter = :expected")
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":expected", AttributeValue::N(expected.into()))
            .send()
    };
    renew("0").await.expect("renewal with the current counter");
    let stale = renew("0").await.expect_err("a stale counter must fail");
    assert!(
        stale
            .into_service_error()
            .is_conditional_check_failed_exception()
    );
    let item = client
        .get_item()
        .table_name(&table)
        .key("leaseKey", AttributeValue::S("shardId-000000000000".into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    assert_eq!(
        item.item().unwrap()["leaseCounter"],
        AttributeValue::N("1".into()),
        "{server:?}: exactly one renewal applied"
    );
}

#[tokio::test]
async fn dynamodb_local_refuses_a_failed_condition() {
    conditional_writes(DynamoDbServer::DynamoDbLocal).await;
}

#[tokio::test]
async fn dynalite_refuses_a_failed_condition() {
    conditional_writes(DynamoDbServer::Dynalite).await;
}
