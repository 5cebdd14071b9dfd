//! The example workloads' records (`aggregates/tests/examples_support`) as Lambda delivers
//! them, for the suites that run them through the engine. Its includer declares
//! `examples_support` at its root.

use aggregates::Rules;
use aws_lambda_events::event::dynamodb::EventRecord;
use serde_json::json;

use crate::examples_support::workload::{Event, Record};

/// A generated record as Lambda delivers it, keys under the rules' names.
pub fn event_record(rules: &Rules, table: &str, record: &Record) -> EventRecord {
    let (pk, sk) = (rules.table().pk(), rules.table().sk());
    let image = |item: &serde_dynamo::Item| serde_json::to_value(item).expect("an image is JSON");
    let mut dynamodb = json!({
        "ApproximateCreationDateTime": 1763769600.0,
        "Keys": { pk: { "S": record.key.0 }, sk: { "S": record.key.1 } },
        "SequenceNumber": record.seq.to_string(),
        "SizeBytes": 128,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    });
    if let Some(old) = &record.old {
        dynamodb["OldImage"] = image(old);
    }
    if let Some(new) = &record.new {
        dynamodb["NewImage"] = image(new);
    }
    let event_name = match record.event {
        Event::Insert => "INSERT",
        Event::Modify => "MODIFY",
        Event::Remove => "REMOVE",
    };
    let mut value = json!({
        "eventID": format!("event-{}", record.seq),
        "eventName": event_name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "eventSourceARN": format!("arn:aws:dynamodb:us-east-1:000000000000:table/{table}/stream/2026-11-22T00:00:00.000"),
        "dynamodb": dynamodb,
    });
    if record.ttl_deletion {
        value["userIdentity"] = json!({ "type": "Service", "principalId": "dynamodb.amazonaws.com" });
    }
    serde_json::from_value(value).expect("a generated record is a stream record")
}
