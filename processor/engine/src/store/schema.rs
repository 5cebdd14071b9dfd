//! Creating the table the rules describe: its keys, its global secondary indexes and its TTL
//! attribute (the university's, as docs/university.md defines it, by default).

use std::time::Duration;

use aws_sdk_dynamodb::error::ProvideErrorMetadata as _;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, PointInTimeRecoverySpecification, Projection,
    ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType, TableStatus, TimeToLiveSpecification,
};

use crate::retry::RetryBudget;
use crate::store::error::{classify, Failure, StoreError};
use crate::store::DynamoTable;

/// Whether [`create_table`] made the table or found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// It did not exist: it was made.
    New,
    /// It existed already, and was left as it is.
    Existing,
}

fn key(name: &str, key_type: KeyType) -> KeySchemaElement {
    KeySchemaElement::builder().attribute_name(name).key_type(key_type).build().expect("name and key type are set")
}

fn string_attribute(name: &str) -> AttributeDefinition {
    AttributeDefinition::builder().attribute_name(name).attribute_type(ScalarAttributeType::S).build().expect("name and type are set")
}

fn index(name: &str, keys: Vec<KeySchemaElement>) -> GlobalSecondaryIndex {
    GlobalSecondaryIndex::builder()
        .index_name(name)
        .set_key_schema(Some(keys))
        .projection(Projection::builder().projection_type(ProjectionType::All).build())
        .build()
        .expect("name, keys and projection are set")
}

/// Creates the table the rules describe (keys, their GSIs, on-demand, stream NEW_AND_OLD_IMAGES,
/// TTL on their TTL attribute) unless it exists, and waits until it is ACTIVE. Safe to run again.
pub async fn create_table(table: &DynamoTable) -> Result<Created, StoreError> {
    let (client, name) = (table.client(), table.name());
    let rules = table.codec().rules().table();
    // Every key attribute, of the table and of its indexes, once.
    let mut attributes: Vec<&str> = Vec::new();
    let index_keys = rules.indexes().iter().flat_map(|declared| std::iter::once(declared.pk()).chain(declared.sk()));
    for name in [rules.pk(), rules.sk()].into_iter().chain(index_keys) {
        if !attributes.contains(&name) {
            attributes.push(name);
        }
    }
    let indexes = rules.indexes().iter().map(|declared| {
        let keys = std::iter::once(key(declared.pk(), KeyType::Hash)).chain(declared.sk().map(|sk| key(sk, KeyType::Range)));
        index(declared.name(), keys.collect())
    });
    let created = match client
        .create_table()
        .table_name(name)
        .set_attribute_definitions(Some(attributes.into_iter().map(string_attribute).collect()))
        .set_key_schema(Some(vec![key(rules.pk(), KeyType::Hash), key(rules.sk(), KeyType::Range)]))
        .set_global_secondary_indexes(Some(indexes.collect::<Vec<_>>()).filter(|indexes| !indexes.is_empty()))
        .billing_mode(BillingMode::PayPerRequest)
        .stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewAndOldImages)
                .build()
                .expect("enabled is set"),
        )
        .send()
        .await
    {
        Ok(_) => Created::New,
        Err(err) if err.as_service_error().is_some_and(|err| err.is_resource_in_use_exception()) => Created::Existing,
        Err(err) => return Err(classify("CreateTable", err)),
    };
    wait_active(table).await?;
    if created == Created::New {
        client
            .update_time_to_live()
            .table_name(name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder().enabled(true).attribute_name(rules.ttl()).build().expect("fields are set"),
            )
            .send()
            .await
            .map_err(|err| classify("UpdateTimeToLive", err))?;
    }
    Ok(created)
}

/// The key attributes a table was created with, when they are not the ones its rules name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtherKeys {
    /// The partition key attribute; empty if the table names none.
    pub pk: String,
    /// The sort key attribute; `None` if the table has none.
    pub sk: Option<String>,
}

/// Reads the table's key schema (`DescribeTable`): `Some` if it is keyed by other attributes
/// than the rules' `pk` and `sk` (the table was made for other rules, and every key tally would
/// build misses it). A table that does not exist has no other keys: the first call that needs
/// it says so, in its own terms.
pub async fn other_keys(table: &DynamoTable) -> Result<Option<OtherKeys>, StoreError> {
    let described = match table.client().describe_table().table_name(table.name()).send().await {
        Ok(described) => described,
        Err(err) if err.as_service_error().is_some_and(|err| err.is_resource_not_found_exception()) => return Ok(None),
        Err(err) => return Err(classify("DescribeTable", err)),
    };
    let schema = described.table().map(|described| described.key_schema()).unwrap_or_default();
    let of = |kind: KeyType| schema.iter().find(|key| *key.key_type() == kind).map(|key| key.attribute_name().to_owned());
    let (pk, sk) = (of(KeyType::Hash).unwrap_or_default(), of(KeyType::Range));
    let rules = table.codec().rules().table();
    Ok((pk != rules.pk() || sk.as_deref() != Some(rules.sk())).then_some(OtherKeys { pk, sk }))
}

/// Whether point-in-time recovery is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// It is on.
    Enabled,
    /// The endpoint does not implement it (DynamoDB Local).
    Unsupported,
}

/// Turns on point-in-time recovery, as the university contract (docs/university.md) has it; a
/// no-op where it already is. Just after `CreateTable` the service may answer that backups are
/// not available yet: that is retried for up to a minute.
pub async fn enable_point_in_time_recovery(table: &DynamoTable) -> Result<Recovery, StoreError> {
    const OPERATION: &str = "UpdateContinuousBackups";
    let specification = PointInTimeRecoverySpecification::builder().point_in_time_recovery_enabled(true).build().expect("enabled is set");
    let mut budget = RetryBudget::within(Duration::from_secs(60));
    loop {
        let request = table.client().update_continuous_backups().table_name(table.name());
        match request.point_in_time_recovery_specification(specification.clone()).send().await {
            Ok(_) => return Ok(Recovery::Enabled),
            Err(err) if err.code() == Some("UnknownOperationException") => return Ok(Recovery::Unsupported),
            Err(err) if err.code() == Some("ContinuousBackupsUnavailableException") => {
                if budget.pause().await.is_err() {
                    let message = format!("backups of `{}` stayed unavailable for a minute", table.name());
                    return Err(StoreError::Transient(Failure::new(OPERATION, message)));
                }
            }
            Err(err) => return Err(classify(OPERATION, err)),
        }
    }
}

async fn wait_active(table: &DynamoTable) -> Result<(), StoreError> {
    let mut budget = RetryBudget::within(Duration::from_secs(300));
    loop {
        let described =
            table.client().describe_table().table_name(table.name()).send().await.map_err(|err| classify("DescribeTable", err))?;
        if described.table().and_then(|described| described.table_status()) == Some(&TableStatus::Active) {
            return Ok(());
        }
        if budget.pause().await.is_err() {
            let message = format!("table `{}` did not become ACTIVE within 5 minutes", table.name());
            return Err(StoreError::Transient(Failure::new("DescribeTable", message)));
        }
    }
}
