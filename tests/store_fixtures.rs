//! The checked-in fixture events, applied batch by batch, give the hand-computed aggregates in
//! fixtures/expected, and applying them again changes nothing.
#![cfg(feature = "dynamodb-local")]

mod support;

use std::path::Path;

use aggregates::Rules;
use aws_lambda_events::event::dynamodb::Event;
use serde_json::Value;
use support::{aggregate, drop_table, fresh_table, number, scan};
use tally_engine::decode::decode_batch;
use tally_engine::outcome::RecordClass;
use tally_engine::Engine;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures");

fn load(name: &str) -> Event {
    let text = std::fs::read_to_string(Path::new(FIXTURES).join("events").join(name)).expect("fixture file");
    serde_json::from_str(&text).expect("fixture parses as a Lambda DynamoDB event")
}

#[tokio::test]
async fn fixtures_give_the_expected_aggregates_once() {
    let table = fresh_table().await;
    let engine = Engine::new(support::university(), table.clone());
    let deadline = || tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    let files = ["01-term-opens.json", "02-grading-and-expiry.json"];
    for round in 0..2 {
        for file in files {
            // The fixtures name the table `university`; records from `library` are another table's.
            let changes = decode_batch(&load(file).records, "university", Rules::university()).unwrap();
            let outcome = engine.process(&changes, deadline()).await;
            assert_eq!(outcome.failed_from(), None, "{file}: {outcome:?}");
            if round == 1 {
                assert_eq!(outcome.by_class.get(&RecordClass::Applied), None, "second replay of {file} applies nothing: {outcome:?}");
            }
        }
    }
    let second = decode_batch(&load("02-grading-and-expiry.json").records, "university", Rules::university()).unwrap();
    let outcome = engine.process(&second, deadline()).await;
    assert_eq!((outcome.ttl_deletions, outcome.rejected.get("wrong_type")), (2, Some(&1)));
    assert_eq!(
        (
            outcome.by_class.get(&RecordClass::OwnAggregate),
            outcome.by_class.get(&RecordClass::Unknown),
            outcome.by_class.get(&RecordClass::OtherTable)
        ),
        (Some(&1), Some(&1), Some(&1))
    );

    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(Path::new(FIXTURES).join("expected/university.json")).unwrap()).unwrap();
    let expected = expected["aggregates"].as_array().unwrap();
    for want in expected {
        let (pk, sk) = (want["pk"].as_str().unwrap(), want["sk"].as_str().unwrap());
        let have = aggregate(&table, pk, sk).await;
        for (field, value) in want.as_object().unwrap() {
            if matches!(field.as_str(), "pk" | "sk" | "entityType") {
                continue;
            }
            assert_eq!(number(&have, field).as_deref(), value.as_str(), "{pk} {sk} {field}");
        }
        assert_eq!(number(&have, "gradeAverage").is_some(), want.get("gradeAverage").is_some(), "{pk} {sk} gradeAverage");
    }
    let aggregates = scan(&support::client().await, table.name())
        .await
        .into_iter()
        .filter(|item| !item["pk"].as_s().unwrap().starts_with("tally#"))
        .count();
    assert_eq!(aggregates, expected.len(), "no aggregate beyond the expected ones");
    drop_table(&table).await;
}
