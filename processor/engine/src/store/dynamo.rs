//! [`Table`] over the AWS SDK: `BatchGetItem` for reads, `TransactWriteItems` for commits.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use aggregates::{AggregateKey, Rules};
use aws_sdk_dynamodb::types::{
    AttributeValue, ConsumedCapacity, KeysAndAttributes, Put, ReturnConsumedCapacity, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem,
};
use aws_sdk_dynamodb::Client as DynamoDbClient;
use chrono::Utc;

use crate::items::ItemKey;
use crate::registry::attributes::VERSION;
use crate::retry::RetryBudget;
use crate::store::codec::{Codec, ConditionalPut, Expect};
use crate::store::error::{self, Failure, SdkItem, StoreError};
use crate::store::{capacity, Commit, Found, Store, Usage};

/// Most keys one `BatchGetItem` takes.
const MAX_BATCH_GET_KEYS: usize = 100;
/// `BatchGetItem` may leave keys unprocessed under load: asked again after the retry policy's
/// backoff, this many times, before the caller's own loop takes over.
const MAX_UNPROCESSED_ROUNDS: usize = 5;

/// [`Store`] over the AWS SDK, and the scans, checkpoints and bookkeeping of the jobs besides.
#[derive(Debug, Clone)]
pub struct DynamoTable {
    client: DynamoDbClient,
    name: String,
    codec: Arc<Codec>,
    meter: Arc<Meter>,
}

#[derive(Debug, Default)]
struct Meter {
    requests: AtomicU64,
    /// Capacity units × 1000, so that half units add up exactly in an integer.
    read_milli_units: AtomicU64,
    write_milli_units: AtomicU64,
    estimated_read_units: AtomicU64,
    estimated_write_units: AtomicU64,
}

impl Meter {
    fn record(&self, consumed: &[ConsumedCapacity], write: bool) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let units: f64 = consumed.iter().filter_map(ConsumedCapacity::capacity_units).sum();
        let counter = if write { &self.write_milli_units } else { &self.read_milli_units };
        counter.fetch_add((units * 1000.0).round() as u64, Ordering::Relaxed);
    }
}

impl DynamoTable {
    /// The table `name` through `client`, tally's items in it encoded by `rules`.
    pub fn new(client: DynamoDbClient, name: impl Into<String>, rules: Arc<Rules>) -> Self {
        DynamoTable { client, name: name.into(), codec: Arc::new(Codec::new(rules)), meter: Arc::default() }
    }

    /// The table's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How tally's items look in this table: for the store's other modules.
    pub(crate) fn codec(&self) -> &Codec {
        &self.codec
    }

    /// The SDK client: for the store's other modules; nothing outside the store names the SDK.
    pub(crate) fn client(&self) -> &DynamoDbClient {
        &self.client
    }

    /// The table's current stream ARN, from `DescribeTable`; `None` when no stream is enabled.
    pub async fn latest_stream_arn(&self) -> Result<Option<String>, StoreError> {
        let output =
            self.client.describe_table().table_name(&self.name).send().await.map_err(|err| error::classify("DescribeTable", err))?;
        Ok(output.table.and_then(|table| table.latest_stream_arn))
    }

    /// Hands every item of the partition `pk` to `each`, with strong consistency, page by page.
    pub(crate) async fn for_each_in_partition(
        &self,
        pk: &str,
        mut each: impl FnMut(SdkItem) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut items = self
            .client
            .query()
            .table_name(&self.name)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", self.codec.rules().table().pk())
            .expression_attribute_values(":pk", AttributeValue::S(pk.to_owned()))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        while let Some(item) = items.next().await {
            each(item.map_err(|err| error::classify("Query", err))?)?;
        }
        Ok(())
    }

    /// Reads whole items by key, with strong consistency; absent items are absent from the result.
    pub async fn read_items(&self, keys: &[ItemKey]) -> Result<HashMap<ItemKey, SdkItem>, StoreError> {
        let mut found = HashMap::with_capacity(keys.len());
        for chunk in keys.chunks(MAX_BATCH_GET_KEYS) {
            self.read_chunk(chunk, &mut found).await?;
        }
        let units: u64 = keys.iter().map(|key| capacity::consistent_read_units(found.get(key))).sum();
        self.meter.estimated_read_units.fetch_add(units, Ordering::Relaxed);
        Ok(found)
    }

    /// Writes every put or none: each only if its item is still as expected. An item is created
    /// only where none exists, and replaced only if it carries the type tally gives it
    /// ([`Expect`]); conditions cost no capacity.
    pub(crate) async fn commit_puts(&self, puts: &[ConditionalPut]) -> Result<(), StoreError> {
        let table = self.codec.rules().table();
        let (pk, type_attribute) = (table.pk(), table.type_attribute());
        let items = puts
            .iter()
            .map(|put| {
                let builder = Put::builder()
                    .table_name(&self.name)
                    .set_item(Some(put.item.clone()))
                    .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
                let builder = match &put.expect {
                    Expect::Anything => builder,
                    Expect::Absent => builder.condition_expression("attribute_not_exists(#pk)").expression_attribute_names("#pk", pk),
                    Expect::Owned { entity_type, version } => {
                        let owned = builder
                            .expression_attribute_names("#type", type_attribute)
                            .expression_attribute_values(":type", AttributeValue::S(entity_type.clone()))
                            .expression_attribute_names("#version", VERSION);
                        match version {
                            Some(version) => owned
                                .condition_expression("#type = :type AND #version = :version")
                                .expression_attribute_values(":version", AttributeValue::N(version.to_string())),
                            None => owned.condition_expression("#type = :type AND attribute_not_exists(#version)"),
                        }
                    }
                };
                builder
                    .build()
                    .map(|put| TransactWriteItem::builder().put(put).build())
                    .map_err(|err| StoreError::Permanent(Failure::new("TransactWriteItems", err.to_string())))
            })
            .collect::<Result<Vec<_>, _>>()?;
        // A fresh token per commit: the SDK's own retry of this request is then idempotent on
        // the service, and a re-planned commit is never mistaken for this one.
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .client_request_token(uuid::Uuid::new_v4().to_string())
            .return_consumed_capacity(ReturnConsumedCapacity::Total)
            .send()
            .await;
        match result {
            Ok(output) => {
                self.meter.record(output.consumed_capacity(), true);
                let units: u64 = puts.iter().map(|put| capacity::transactional_write_units(&put.item)).sum();
                self.meter.estimated_write_units.fetch_add(units, Ordering::Relaxed);
                Ok(())
            }
            Err(err) => {
                self.meter.record(&[], true);
                let keys: Vec<ItemKey> = puts.iter().map(|put| put.key.clone()).collect();
                Err(error::classify_commit(err, &keys, &self.codec))
            }
        }
    }

    fn key_attributes(&self, key: &ItemKey) -> SdkItem {
        let table = self.codec.rules().table();
        [(table.pk().to_owned(), AttributeValue::S(key.pk.clone())), (table.sk().to_owned(), AttributeValue::S(key.sk.clone()))].into()
    }

    async fn read_chunk(&self, keys: &[ItemKey], found: &mut HashMap<ItemKey, SdkItem>) -> Result<(), StoreError> {
        let mut request = KeysAndAttributes::builder()
            .set_keys(Some(keys.iter().map(|key| self.key_attributes(key)).collect()))
            .consistent_read(true)
            .build()
            .map_err(|err| StoreError::Permanent(Failure::new("BatchGetItem", err.to_string())))?;
        let mut backoff = RetryBudget::unbounded();
        for round in 0..MAX_UNPROCESSED_ROUNDS {
            if round > 0 {
                backoff.pause().await.map_err(|err| StoreError::Transient(Failure::new("BatchGetItem", err.to_string())))?;
            }
            let output = self
                .client
                .batch_get_item()
                .request_items(&self.name, request)
                .return_consumed_capacity(ReturnConsumedCapacity::Total)
                .send()
                .await
                .map_err(|err| error::classify("BatchGetItem", err))?;
            self.meter.record(output.consumed_capacity(), false);
            for item in output.responses.unwrap_or_default().remove(&self.name).unwrap_or_default() {
                if let Some(key) = self.codec.item_key(&item) {
                    found.insert(key, item);
                }
            }
            match output.unprocessed_keys.and_then(|mut unprocessed| unprocessed.remove(&self.name)) {
                Some(rest) if !rest.keys().is_empty() => request = rest,
                _ => return Ok(()),
            }
        }
        Err(StoreError::Transient(Failure::new("BatchGetItem", "keys left unprocessed after repeated requests")))
    }
}

impl Store for DynamoTable {
    fn table_name(&self) -> &str {
        &self.name
    }

    async fn read(&self, sources: &[ItemKey], aggregates: &[AggregateKey]) -> Result<Found, StoreError> {
        let ledger_keys: Vec<ItemKey> = sources.iter().map(|source| self.codec.ledger_key(source)).collect();
        let aggregate_keys: Vec<ItemKey> = aggregates.iter().map(ItemKey::from).collect();
        let keys: Vec<ItemKey> = ledger_keys.iter().chain(&aggregate_keys).cloned().collect();
        let mut items = self.read_items(&keys).await?;
        let mut found = Found::default();
        for (source, key) in sources.iter().zip(&ledger_keys) {
            if let Some(item) = items.remove(key) {
                found.ledgers.insert(source.clone(), self.codec.read_ledger(key, &item)?);
            }
        }
        for (aggregate, key) in aggregates.iter().zip(&aggregate_keys) {
            if let Some(item) = items.remove(key) {
                found.aggregates.insert(aggregate.clone(), self.codec.read_aggregate(aggregate, &item)?);
            }
        }
        Ok(found)
    }

    async fn commit(&self, commit: Commit<'_>) -> Result<(), StoreError> {
        self.commit_puts(&self.codec.encode_commit(commit, Utc::now())).await
    }

    fn usage(&self) -> Usage {
        Usage {
            requests: self.meter.requests.load(Ordering::Relaxed),
            read_units: self.meter.read_milli_units.load(Ordering::Relaxed) as f64 / 1000.0,
            write_units: self.meter.write_milli_units.load(Ordering::Relaxed) as f64 / 1000.0,
            estimated_read_units: self.meter.estimated_read_units.load(Ordering::Relaxed),
            estimated_write_units: self.meter.estimated_write_units.load(Ordering::Relaxed),
        }
    }
}
