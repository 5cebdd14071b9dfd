//! Creating the university table as SPEC defines it.

use std::time::Duration;

use aggregates::keys::{ENTITY_TYPE, PK, SK, TTL};
use aws_sdk_dynamodb::error::ProvideErrorMetadata as _;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, PointInTimeRecoverySpecification, Projection,
    ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType, TableStatus, TimeToLiveSpecification,
};

use crate::retry::RetryBudget;
use crate::store::error::{classify, Failure, StoreError};
use crate::store::DynamoTable;

pub const STUDENT_INDEX: &str = "studentID-index";
pub const ENTITY_DATE_INDEX: &str = "entityType-courseDate-index";
const STUDENT_ID: &str = "studentID";
const COURSE_DATE: &str = "courseDate";

/// Whether [`create_table`] made the table or found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    New,
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

/// Creates the table (keys, both GSIs, on-demand, stream NEW_AND_OLD_IMAGES, TTL on `ttl`) unless
/// it exists, and waits until it is ACTIVE. Safe to run again.
pub async fn create_table(table: &DynamoTable) -> Result<Created, StoreError> {
    let (client, name) = (table.client(), table.name());
    let created = match client
        .create_table()
        .table_name(name)
        .set_attribute_definitions(Some(vec![
            string_attribute(PK),
            string_attribute(SK),
            string_attribute(STUDENT_ID),
            string_attribute(ENTITY_TYPE),
            string_attribute(COURSE_DATE),
        ]))
        .set_key_schema(Some(vec![key(PK, KeyType::Hash), key(SK, KeyType::Range)]))
        .global_secondary_indexes(index(STUDENT_INDEX, vec![key(STUDENT_ID, KeyType::Hash)]))
        .global_secondary_indexes(index(ENTITY_DATE_INDEX, vec![key(ENTITY_TYPE, KeyType::Hash), key(COURSE_DATE, KeyType::Range)]))
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
                TimeToLiveSpecification::builder().enabled(true).attribute_name(TTL).build().expect("fields are set"),
            )
            .send()
            .await
            .map_err(|err| classify("UpdateTimeToLive", err))?;
    }
    Ok(created)
}

/// Whether point-in-time recovery is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    Enabled,
    /// The endpoint does not implement it (DynamoDB Local).
    Unsupported,
}

/// Turns on point-in-time recovery (SPEC: PITR on); a no-op where it already is. Just after
/// `CreateTable` the service may answer that backups are not available yet: that is retried for
/// up to a minute.
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
