//! The only module that talks to DynamoDB.
//!
//! [`Table`] is the engine's whole view of the database: a consistent read of many items and an
//! all-or-nothing conditional commit. [`DynamoTable`] implements it with `BatchGetItem` and
//! `TransactWriteItems`; tests wrap it to inject faults.

pub mod capacity;
pub mod codec;
mod connect;
pub mod error;
pub mod scan;
pub mod schema;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConsumedCapacity, KeysAndAttributes, Put, ReturnConsumedCapacity, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem,
};
use aws_sdk_dynamodb::Client as DynamoDbClient;

use aggregates::keys::{PK, SK};
use codec::{ConditionalPut, Expect};
pub use connect::{connect, sdk_config};
pub use error::{SdkItem, StoreError};

use crate::decode::ItemKey;

/// Most keys one `BatchGetItem` takes.
const MAX_BATCH_GET_KEYS: usize = 100;
/// `BatchGetItem` may leave keys unprocessed under load; this many immediate re-asks before the
/// caller's backoff takes over.
const MAX_UNPROCESSED_ROUNDS: usize = 5;

/// DynamoDB work done: requests, and capacity both as reported and as DynamoDB's sizing rules give it
/// (DynamoDB Local does not report it faithfully).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    pub requests: u64,
    /// Capacity as the responses report it.
    pub read_units: f64,
    pub write_units: f64,
    /// Capacity from DynamoDB's documented sizing rules ([`capacity`]).
    pub estimated_read_units: u64,
    pub estimated_write_units: u64,
}

impl std::ops::Sub for Usage {
    type Output = Usage;
    fn sub(self, rhs: Usage) -> Usage {
        Usage {
            requests: self.requests - rhs.requests,
            read_units: self.read_units - rhs.read_units,
            write_units: self.write_units - rhs.write_units,
            estimated_read_units: self.estimated_read_units - rhs.estimated_read_units,
            estimated_write_units: self.estimated_write_units - rhs.estimated_write_units,
        }
    }
}

/// The engine's view of the table.
pub trait Table: Send + Sync {
    /// Reads `keys` with strong consistency; absent items are absent from the result.
    fn read(&self, keys: &[ItemKey]) -> impl Future<Output = Result<HashMap<ItemKey, SdkItem>, StoreError>> + Send;

    /// Writes every put or none: each only if its item is still as expected.
    fn commit(&self, puts: &[ConditionalPut]) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Work done so far by this table handle.
    fn usage(&self) -> Usage;
}

/// [`Table`] over the AWS SDK.
#[derive(Debug, Clone)]
pub struct DynamoTable {
    client: DynamoDbClient,
    name: String,
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
    pub fn new(client: DynamoDbClient, name: impl Into<String>) -> Self {
        DynamoTable { client, name: name.into(), meter: Arc::default() }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn client(&self) -> &DynamoDbClient {
        &self.client
    }

    /// The table's current stream ARN, from `DescribeTable`; `None` when no stream is enabled.
    pub async fn latest_stream_arn(&self) -> Result<Option<String>, StoreError> {
        let output =
            self.client.describe_table().table_name(&self.name).send().await.map_err(|err| error::classify("DescribeTable", &err))?;
        Ok(output.table.and_then(|table| table.latest_stream_arn))
    }

    fn key_attributes(key: &ItemKey) -> SdkItem {
        [(PK.to_owned(), AttributeValue::S(key.pk.clone())), (SK.to_owned(), AttributeValue::S(key.sk.clone()))].into()
    }

    fn item_key(item: &SdkItem) -> Option<ItemKey> {
        match (item.get(PK), item.get(SK)) {
            (Some(AttributeValue::S(pk)), Some(AttributeValue::S(sk))) => Some(ItemKey { pk: pk.clone(), sk: sk.clone() }),
            _ => None,
        }
    }

    async fn read_chunk(&self, keys: &[ItemKey], found: &mut HashMap<ItemKey, SdkItem>) -> Result<(), StoreError> {
        let mut request = KeysAndAttributes::builder()
            .set_keys(Some(keys.iter().map(Self::key_attributes).collect()))
            .consistent_read(true)
            .build()
            .map_err(|err| StoreError::Permanent { operation: "BatchGetItem", message: err.to_string() })?;
        for _ in 0..MAX_UNPROCESSED_ROUNDS {
            let output = self
                .client
                .batch_get_item()
                .request_items(&self.name, request)
                .return_consumed_capacity(ReturnConsumedCapacity::Total)
                .send()
                .await
                .map_err(|err| error::classify("BatchGetItem", &err))?;
            self.meter.record(output.consumed_capacity(), false);
            for item in output.responses.unwrap_or_default().remove(&self.name).unwrap_or_default() {
                if let Some(key) = Self::item_key(&item) {
                    found.insert(key, item);
                }
            }
            match output.unprocessed_keys.and_then(|mut unprocessed| unprocessed.remove(&self.name)) {
                Some(rest) if !rest.keys().is_empty() => request = rest,
                _ => return Ok(()),
            }
        }
        Err(StoreError::Transient { operation: "BatchGetItem", message: "keys left unprocessed after repeated requests".into() })
    }
}

impl Table for DynamoTable {
    async fn read(&self, keys: &[ItemKey]) -> Result<HashMap<ItemKey, SdkItem>, StoreError> {
        let mut found = HashMap::with_capacity(keys.len());
        for chunk in keys.chunks(MAX_BATCH_GET_KEYS) {
            self.read_chunk(chunk, &mut found).await?;
        }
        let units: u64 = keys.iter().map(|key| capacity::consistent_read_units(found.get(key))).sum();
        self.meter.estimated_read_units.fetch_add(units, Ordering::Relaxed);
        Ok(found)
    }

    async fn commit(&self, puts: &[ConditionalPut]) -> Result<(), StoreError> {
        let items = puts
            .iter()
            .map(|put| {
                let builder = Put::builder()
                    .table_name(&self.name)
                    .set_item(Some(put.item.clone()))
                    .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
                let builder = match &put.expect {
                    Expect::Anything => builder,
                    Expect::Absent => builder.condition_expression("attribute_not_exists(#pk)").expression_attribute_names("#pk", PK),
                    Expect::Missing { attribute } => builder
                        .condition_expression("attribute_exists(#pk) AND attribute_not_exists(#attr)")
                        .expression_attribute_names("#pk", PK)
                        .expression_attribute_names("#attr", *attribute),
                    Expect::Equals { attribute, value } => builder
                        .condition_expression("#attr = :expected")
                        .expression_attribute_names("#attr", *attribute)
                        .expression_attribute_values(":expected", value.clone()),
                };
                builder
                    .build()
                    .map(|put| TransactWriteItem::builder().put(put).build())
                    .map_err(|err| StoreError::Permanent { operation: "TransactWriteItems", message: err.to_string() })
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
                if let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) = err.as_service_error() {
                    let keys: Vec<ItemKey> = puts.iter().map(|put| put.key.clone()).collect();
                    let message = cancelled.message().unwrap_or("transaction cancelled").to_owned();
                    return Err(error::classify_cancellation(cancelled.cancellation_reasons(), &keys, message));
                }
                Err(error::classify("TransactWriteItems", &err))
            }
        }
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
