//! Helpers for tests against DynamoDB Local: fresh tables, stream events, the oracle.
#![allow(dead_code)] // each test binary uses a different subset

pub mod cli;
pub mod faults;
pub mod history;
pub mod images;
pub mod proxy;

use std::sync::Arc;
use std::time::Duration;

use aggregates::Rules;
use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_sdk_dynamodb::Client as DynamoDbClient;
use serde_json::{json, Value};
use tally_engine::decode::decode_batch;
use tally_engine::outcome::BatchOutcome;
use tally_engine::store::{schema, DynamoTable, SdkItem, Store};
use tally_engine::Engine;
use tally_jobs::audit::{Audit, Drift, Keep};

pub const STREAM_ARN_TEMPLATE: &str = "arn:aws:dynamodb:us-east-1:000000000000:table/{table}/stream/2026-11-22T00:00:00.000";

/// The university rules, shared as an engine and a store take them.
pub fn university() -> Arc<Rules> {
    Arc::new(Rules::university().clone())
}

/// A client of DynamoDB Local, for what the application does to the table in a test.
pub async fn client() -> DynamoDbClient {
    tally_engine::store::connect(None, None).await
}

/// A uniquely named table with the university's schema, per test (DynamoDB Local keeps it in
/// memory).
pub async fn fresh_table() -> DynamoTable {
    let name = format!("university-{}", uuid::Uuid::new_v4().simple());
    let table = DynamoTable::connect(name, None, None, university()).await;
    schema::create_table(&table).await.expect("creating a table on DynamoDB Local (is it running? use `make test`)");
    table
}

pub async fn drop_table(table: &DynamoTable) {
    client().await.delete_table().table_name(table.name()).send().await.expect("deleting the test table");
}

/// One stream record as Lambda delivers it.
#[derive(Debug, Clone)]
pub struct Rec {
    pub sequence: u64,
    pub old: Option<Value>,
    pub new: Option<Value>,
    pub ttl: bool,
    pub table: Option<String>,
    /// The eventName to send; `None` derives it from the images.
    pub event_name: Option<&'static str>,
}

impl Rec {
    pub fn insert(sequence: u64, new: Value) -> Rec {
        Rec { sequence, old: None, new: Some(new), ttl: false, table: None, event_name: None }
    }
    pub fn modify(sequence: u64, old: Value, new: Value) -> Rec {
        Rec { sequence, old: Some(old), new: Some(new), ttl: false, table: None, event_name: None }
    }
    pub fn remove(sequence: u64, old: Value) -> Rec {
        Rec { sequence, old: Some(old), new: None, ttl: false, table: None, event_name: None }
    }
    pub fn ttl_remove(sequence: u64, old: Value) -> Rec {
        Rec { ttl: true, ..Rec::remove(sequence, old) }
    }
    pub fn in_table(mut self, table: &str) -> Rec {
        self.table = Some(table.to_owned());
        self
    }
    pub fn named(mut self, event_name: &'static str) -> Rec {
        self.event_name = Some(event_name);
        self
    }

    /// The sequence number as the service writes it: a 21-digit string.
    pub fn sequence_number(&self) -> String {
        format!("4{:020}", self.sequence)
    }

    pub fn to_json(&self, table: &str) -> Value {
        let image = self.new.as_ref().or(self.old.as_ref()).expect("a record has an image");
        let keys = json!({"pk": image["pk"], "sk": image["sk"]});
        let event_name = self.event_name.unwrap_or(match (&self.old, &self.new) {
            (None, Some(_)) => "INSERT",
            (Some(_), Some(_)) => "MODIFY",
            _ => "REMOVE",
        });
        let arn = STREAM_ARN_TEMPLATE.replace("{table}", self.table.as_deref().unwrap_or(table));
        let mut dynamodb = json!({
            "ApproximateCreationDateTime": 1763769600.0,
            "Keys": keys,
            "SequenceNumber": self.sequence_number(),
            "SizeBytes": 128,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        });
        if let Some(old) = &self.old {
            dynamodb["OldImage"] = old.clone();
        }
        if let Some(new) = &self.new {
            dynamodb["NewImage"] = new.clone();
        }
        let mut record = json!({
            "eventID": format!("event-{}", self.sequence),
            "eventName": event_name,
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": "us-east-1",
            "eventSourceARN": arn,
            "dynamodb": dynamodb,
        });
        if self.ttl {
            record["userIdentity"] = json!({"type": "Service", "principalId": "dynamodb.amazonaws.com"});
        }
        record
    }
}

pub fn event(recs: &[Rec], table: &str) -> Event {
    let records: Vec<Value> = recs.iter().map(|rec| rec.to_json(table)).collect();
    serde_json::from_value(json!({ "Records": records })).expect("test records are well-formed")
}

pub fn records(recs: &[Rec], table: &str) -> Vec<EventRecord> {
    event(recs, table).records
}

/// Runs one batch through the engine, as the handler does, with a generous deadline.
pub async fn apply<T: Store>(engine: &Engine<T>, table_name: &str, recs: &[Rec]) -> BatchOutcome {
    let changes = decode_batch(&records(recs, table_name), table_name, engine.rules()).expect("test records decode");
    engine.process(&changes, tokio::time::Instant::now() + Duration::from_secs(60)).await
}

/// Every item of the table as DynamoDB holds it (consistent reads).
pub async fn scan(client: &DynamoDbClient, table: &str) -> Vec<SdkItem> {
    let items = client.scan().table_name(table).consistent_read(true).into_paginator().items().send();
    items.try_collect().await.expect("scanning the test table")
}

/// The oracle: aggregates in the table against a recompute from `source_items` (the items'
/// final images; the table itself holds only aggregates and ledgers in stream-only tests).
pub async fn drift(table: &DynamoTable, rules: &Rules, source_items: &[Value]) -> Vec<Drift> {
    let mut audit = Audit::new(rules, Keep::Aggregates);
    table.scan_segment(0, 1, |page| page.into_iter().for_each(|item| audit.add(item))).await.expect("stored items decode");
    for image in source_items {
        let item: serde_dynamo::Item = serde_json::from_value(image.clone()).expect("test images are DynamoDB JSON");
        audit.recompute.add_item(&item);
    }
    audit.drift()
}

/// One aggregate item as stored, by key.
pub async fn aggregate(table: &DynamoTable, pk: &str, sk: &str) -> Option<SdkItem> {
    use aws_sdk_dynamodb::types::AttributeValue;
    client()
        .await
        .get_item()
        .table_name(table.name())
        .key("pk", AttributeValue::S(pk.into()))
        .key("sk", AttributeValue::S(sk.into()))
        .consistent_read(true)
        .send()
        .await
        .expect("reading an aggregate")
        .item
}

/// A number attribute of an item, normalized (`199.0000` → `199`), or `None`.
pub fn number(item: &Option<SdkItem>, attribute: &str) -> Option<String> {
    use aws_sdk_dynamodb::types::AttributeValue;
    match item.as_ref()?.get(attribute)? {
        AttributeValue::N(text) => Some(text.parse::<aggregates::Number>().expect("stored numbers parse").to_string()),
        other => panic!("{attribute} is not a number: {other:?}"),
    }
}
