//! Failures mid-batch, lost responses and deadlines: the batch reports exactly what it did not
//! apply, and redelivery ends exact.
#![cfg(feature = "dynamodb-local")]

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aggregates::Rules;
use lambda_runtime::{Context, LambdaEvent};
use support::faults::{Fault, FaultyTable};
use support::images::*;
use support::{aggregate, apply, drift, drop_table, event, fresh_table, number, records, Rec};
use tally_engine::decode::decode_batch;
use tally_engine::Engine;
use tally_lambda::handler;

fn context(timeout: Duration) -> Context {
    let mut context = Context::default();
    context.request_id = "test-invocation".into();
    context.deadline = (SystemTime::now() + timeout).duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    context
}

/// 150 enrollments in one course: two transactions (100 actions each at most).
fn enrollments() -> Vec<Rec> {
    (0..150).map(|i| Rec::insert(i + 1, enrollment("c1", &format!("s{i}"), "2026-03-01T10:00:00Z"))).collect()
}

#[tokio::test]
async fn a_rejected_commit_reports_the_first_unapplied_record_and_all_after() {
    let table = fresh_table().await;
    let faulty = FaultyTable::new(table.clone(), [None, Some(Fault::Reject)]);
    let engine = Engine::new(support::university(), faulty);
    let recs = enrollments();
    let response = handler::handle(&engine, LambdaEvent::new(event(&recs, table.name()), context(Duration::from_secs(30)))).await.unwrap();

    let failed: Vec<String> = response.batch_item_failures.iter().map(|failure| failure.item_identifier.clone().unwrap()).collect();
    assert!(!failed.is_empty() && failed.len() < recs.len(), "the first transaction applied, the second did not");
    let failed_from = recs.len() - failed.len();
    let expected: Vec<String> = recs[failed_from..].iter().map(Rec::sequence_number).collect();
    assert_eq!(failed, expected, "the first unapplied record and every one after it");
    // Every record before the failure point was applied, and none after.
    assert_eq!(number(&aggregate(&table, "course#c1", "stats").await, "enrollmentCount"), Some(failed_from.to_string()));

    // Lambda redelivers from the failure point; the table takes writes again.
    engine.store().heal();
    let outcome = apply(&engine, table.name(), &recs[failed_from..]).await;
    assert_eq!(outcome.failed_from(), None);
    let finals: Vec<_> = recs.iter().filter_map(|rec| rec.new.clone()).collect();
    assert!(drift(&table, Rules::university(), &finals).await.is_empty());
    drop_table(&table).await;
}

#[tokio::test]
async fn a_write_applied_with_its_response_lost_is_not_applied_twice() {
    let table = fresh_table().await;
    let engine = Engine::new(support::university(), FaultyTable::new(table.clone(), [Some(Fault::LoseResponse), Some(Fault::FailBefore)]));
    let recs = enrollments();
    let outcome = apply(&engine, table.name(), &recs).await;
    assert_eq!(outcome.failed_from(), None, "{outcome:?}");
    assert!(outcome.retries >= 2, "{outcome:?}");
    assert_eq!(number(&aggregate(&table, "course#c1", "stats").await, "enrollmentCount").as_deref(), Some("150"));
    let finals: Vec<_> = recs.iter().filter_map(|rec| rec.new.clone()).collect();
    assert!(drift(&table, Rules::university(), &finals).await.is_empty());
    drop_table(&table).await;
}

#[tokio::test]
async fn retries_stop_at_the_deadline_and_report_the_whole_batch() {
    let table = fresh_table().await;
    let engine = Engine::new(support::university(), FaultyTable::new(table.clone(), std::iter::repeat_n(Some(Fault::FailBefore), 1000)));
    let recs = [Rec::insert(1, enrollment("c1", "s1", "2026-03-01")), Rec::insert(2, order("u1", "2026-03-01", "o1", "5"))];
    let started = std::time::Instant::now();
    let response = handler::handle(&engine, LambdaEvent::new(event(&recs, table.name()), context(Duration::from_secs(3)))).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(3), "gave up before Lambda's deadline");
    assert_eq!(response.batch_item_failures.len(), 2);
    assert_eq!(aggregate(&table, "course#c1", "stats").await, None, "nothing half-applied");

    // Running out of time names what kept failing, not only the deadline. (The budget leaves a
    // loaded DynamoDB Local time for the first read: only then can a commit fail.)
    let changes = decode_batch(&records(&recs, table.name()), table.name(), Rules::university()).unwrap();
    let outcome = engine.process(&changes, tokio::time::Instant::now() + Duration::from_secs(3)).await;
    let failure = outcome.failure.expect("the deadline passed").to_string();
    assert!(
        failure.starts_with("deadline reached")
            && failure.ends_with("last failure: transient DynamoDB failure in TransactWriteItems: injected: connection reset"),
        "{failure}"
    );
    drop_table(&table).await;
}

#[tokio::test]
async fn an_unidentifiable_record_fails_the_batch_before_any_write() {
    let table = fresh_table().await;
    let engine = Engine::new(support::university(), table.clone());
    let mut payload = serde_json::to_value(event(
        &[Rec::insert(1, enrollment("c1", "s1", "2026-03-01")), Rec::insert(2, enrollment("c1", "s2", "2026-03-01"))],
        table.name(),
    ))
    .unwrap();
    payload["Records"][1]["dynamodb"]["Keys"] = serde_json::json!({"pk": {"S": "course#c1"}});
    let err = handler::handle(&engine, LambdaEvent::new(serde_json::from_value(payload).unwrap(), context(Duration::from_secs(30))))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "record 1 (eventID `event-2`): `dynamodb.Keys.sk` is missing");
    assert_eq!(aggregate(&table, "course#c1", "stats").await, None);
    drop_table(&table).await;
}

#[tokio::test]
async fn concurrent_writers_on_the_hot_daily_item_all_land() {
    let table = fresh_table().await;
    let engines: Vec<Engine<_>> = (0..4).map(|_| Engine::new(support::university(), table.clone())).collect();
    let batches: Vec<Vec<Rec>> = (0..4u64)
        .map(|shard| {
            (0..20u64).map(|i| Rec::insert(shard * 1000 + i, order(&format!("u{shard}"), "2026-03-01", &format!("o{i}"), "1.25"))).collect()
        })
        .collect();
    let outcomes = futures::future::join_all(engines.iter().zip(&batches).map(|(engine, batch)| apply(engine, table.name(), batch))).await;
    assert!(outcomes.iter().all(|outcome| outcome.failed_from().is_none()), "{outcomes:?}");
    let day = aggregate(&table, "stats#university", "day#2026-03-01").await;
    assert_eq!((number(&day, "orders").as_deref(), number(&day, "orderTotal").as_deref()), (Some("80"), Some("100")));
    drop_table(&table).await;
}
