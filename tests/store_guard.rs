//! Rules cannot hurt the table, on DynamoDB Local: an application item at a key where the rules
//! also put an aggregate (a rules file whose key template gives an application item's key) is
//! never overwritten, only the records that would write there are refused, and the rest of
//! their batch applies exactly.
#![cfg(feature = "dynamodb-local")]

mod support;

use std::sync::Mutex;

use aggregates::{AggregateKey, AggregateValues, Number, Rules};
use serde_json::{json, Value};
use support::images::*;
use support::{aggregate, apply, drift, drop_table, fresh_table, number, Rec};
use tally_engine::items::ItemKey;
use tally_engine::items::{AggregateWrite, StoredAggregate};
use tally_engine::outcome::{BatchOutcome, RecordClass};
use tally_engine::store::{Commit, DynamoTable, Found, SdkItem, Store, StoreError, Usage};
use tally_engine::Engine;

const AT: &str = "2026-03-01T10:00:00Z";

/// Writes `image` (DynamoDB JSON) whole and unconditioned, as the application (or an earlier
/// release of tally) would, and returns it as stored.
async fn write_item(table: &DynamoTable, image: Value) -> SdkItem {
    let item: serde_dynamo::Item = serde_json::from_value(image).expect("test images are DynamoDB JSON");
    table.put_source(item.clone()).await.expect("writing the item");
    item.into()
}

/// Deletes the application's item, so that the oracle sees tally's items alone.
async fn delete_application_item(table: &DynamoTable, pk: &str, sk: &str) {
    table.delete_source(&ItemKey { pk: pk.into(), sk: sk.into() }).await.expect("deleting the application's item");
}

/// One enrollment in each of `courses`, in that order.
fn enrollments(courses: &[&str]) -> Vec<Rec> {
    courses.iter().enumerate().map(|(i, course)| Rec::insert(i as u64 + 1, enrollment(course, &format!("s{i}"), AT))).collect()
}

/// The batch positions of the refused items, and their causes.
fn refusals(outcome: &BatchOutcome) -> (Vec<usize>, Vec<String>) {
    let refused = outcome.failure.as_ref().map(|failure| failure.refused.as_slice()).unwrap_or_default();
    (refused.iter().map(|refused| refused.index).collect(), refused.iter().map(|refused| refused.cause.to_string()).collect())
}

/// Delivers `recs` twice: each time the records at `refused` (batch positions, of the courses
/// whose `stats` key holds an application item) are refused and reported, naming the key and
/// not the item's values, and every other record applies (the second time, as already applied).
async fn deliver_and_expect_refused(table: &DynamoTable, recs: &[Rec], refused: &[usize], values: &[&str]) {
    let engine = Engine::new(support::university(), table.clone());
    for delivery in ["first", "redelivery"] {
        let outcome = apply(&engine, table.name(), recs).await;
        let failure = outcome.failure.as_ref().unwrap_or_else(|| panic!("{delivery}: the refused records are reported"));
        assert!(failure.cause.is_none(), "{delivery}: every other item applied: {failure}");
        assert!(!failure.is_retryable(), "{delivery}");
        assert_eq!(outcome.failed_from(), refused.first().copied(), "{delivery}");
        let (positions, causes) = refusals(&outcome);
        assert_eq!(positions, refused, "{delivery}");
        for (position, cause) in positions.iter().zip(&causes) {
            let pk = recs[*position].new.as_ref().expect("inserts")["pk"]["S"].as_str().expect("a string pk").to_owned();
            assert!(cause.contains(&format!("pk=`{pk}` sk=`stats` is not tally's `stats`")), "{delivery}: {cause}");
            assert!(values.iter().all(|value| !cause.contains(value)), "{delivery}: no item values: {cause}");
        }
        assert_eq!(outcome.count_of(RecordClass::Refused), refused.len() as u64, "{delivery}");
        let others = (recs.len() - refused.len()) as u64;
        let class = if delivery == "first" { RecordClass::Applied } else { RecordClass::AlreadyApplied };
        assert_eq!(outcome.count_of(class), others, "{delivery}: {outcome:?}");
    }
}

/// After the application's items are gone, tally's items equal a recompute of the records that
/// were not refused.
async fn assert_the_rest_equals_a_recompute(table: &DynamoTable, recs: &[Rec], refused: &[usize]) {
    let applied: Vec<Value> =
        recs.iter().enumerate().filter(|(position, _)| !refused.contains(position)).filter_map(|(_, rec)| rec.new.clone()).collect();
    let drift = drift(table, Rules::university(), &applied).await;
    assert!(drift.is_empty(), "{drift:?}");
}

#[tokio::test]
async fn an_application_item_of_another_type_at_an_aggregate_key_is_left_as_it_is() {
    let table = fresh_table().await;
    let note = json!({"pk": {"S": "course#c1"}, "sk": {"S": "stats"}, "entityType": {"S": "note"}, "title": {"S": "Office hours"}});
    let note = write_item(&table, note).await;
    let recs = enrollments(&["c2", "c1", "c3", "c1"]);

    deliver_and_expect_refused(&table, &recs, &[1, 3], &["note", "Office hours"]).await;

    assert_eq!(aggregate(&table, "course#c1", "stats").await, Some(note), "the application's item, untouched");
    delete_application_item(&table, "course#c1", "stats").await;
    assert_the_rest_equals_a_recompute(&table, &recs, &[1, 3]).await;
    drop_table(&table).await;
}

#[tokio::test]
async fn an_application_item_with_a_string_under_a_fields_name_is_refused_not_corrupt() {
    let table = fresh_table().await;
    let note = json!({"pk": {"S": "course#c1"}, "sk": {"S": "stats"}, "entityType": {"S": "note"}, "enrollmentCount": {"S": "many"}});
    let note = write_item(&table, note).await;
    let recs = enrollments(&["c1", "c2", "c3"]);

    deliver_and_expect_refused(&table, &recs, &[0], &["note", "many"]).await;

    assert_eq!(aggregate(&table, "course#c1", "stats").await, Some(note), "the application's item, untouched");
    delete_application_item(&table, "course#c1", "stats").await;
    assert_the_rest_equals_a_recompute(&table, &recs, &[0]).await;
    drop_table(&table).await;
}

#[tokio::test]
async fn an_application_item_without_any_type_is_not_tallys_even_with_a_version() {
    let table = fresh_table().await;
    // Applications keep a `version` of their own for optimistic locking.
    let untyped = json!({"pk": {"S": "course#c2"}, "sk": {"S": "stats"}, "version": {"N": "3"}, "title": {"S": "Reading list"}});
    let untyped = write_item(&table, untyped).await;
    let recs = enrollments(&["c1", "c2", "c3"]);

    deliver_and_expect_refused(&table, &recs, &[1], &["Reading list"]).await;

    assert_eq!(aggregate(&table, "course#c2", "stats").await, Some(untyped), "the application's item, untouched");
    delete_application_item(&table, "course#c2", "stats").await;
    assert_the_rest_equals_a_recompute(&table, &recs, &[1]).await;
    drop_table(&table).await;
}

/// The application writes `items` after the engine has read, just before the engine's first
/// commit: the read saw tally's item (or none), so only the commit's conditions stand between
/// the application's items and tally's writes.
#[derive(Debug)]
struct ApplicationWritesBeforeCommit {
    inner: DynamoTable,
    items: Mutex<Vec<serde_dynamo::Item>>,
}

impl Store for ApplicationWritesBeforeCommit {
    async fn read(&self, sources: &[ItemKey], aggregates: &[AggregateKey]) -> Result<Found, StoreError> {
        self.inner.read(sources, aggregates).await
    }

    async fn commit(&self, commit: Commit<'_>) -> Result<(), StoreError> {
        let items = std::mem::take(&mut *self.items.lock().expect("not poisoned"));
        for item in items {
            self.inner.put_source(item).await?;
        }
        self.inner.commit(commit).await
    }

    fn usage(&self) -> Usage {
        self.inner.usage()
    }

    fn table_name(&self) -> &str {
        self.inner.table_name()
    }
}

#[tokio::test]
async fn an_application_item_written_between_read_and_commit_is_not_overwritten() {
    let table = fresh_table().await;
    // Course c2 has tally's aggregate, which the application replaces with an item of its own
    // without a type or a version: the case an "exists without a version" condition let through.
    let earlier = [Rec::insert(1, enrollment("c2", "s0", AT))];
    assert_eq!(apply(&Engine::new(support::university(), table.clone()), table.name(), &earlier).await.failed_from(), None);
    let untyped = json!({"pk": {"S": "course#c2"}, "sk": {"S": "stats"}, "title": {"S": "Reading list"}});
    // Course c3 has no aggregate: the application creates an item at its key.
    let note = json!({"pk": {"S": "course#c3"}, "sk": {"S": "stats"}, "entityType": {"S": "note"}, "title": {"S": "Office hours"}});
    let items: Vec<serde_dynamo::Item> =
        [untyped, note].into_iter().map(|image| serde_json::from_value(image).expect("test images are DynamoDB JSON")).collect();
    let engine =
        Engine::new(support::university(), ApplicationWritesBeforeCommit { inner: table.clone(), items: Mutex::new(items.clone()) });
    let recs: Vec<Rec> = ["c1", "c2", "c3", "c4"]
        .iter()
        .enumerate()
        .map(|(i, course)| Rec::insert(i as u64 + 10, enrollment(course, &format!("s{}", i + 1), AT)))
        .collect();

    let outcome = apply(&engine, table.name(), &recs).await;

    let failure = outcome.failure.as_ref().expect("the refused records are reported");
    assert!(failure.cause.is_none(), "every other item applied: {failure}");
    let (positions, causes) = refusals(&outcome);
    assert_eq!(positions, vec![1, 2], "{outcome:?}");
    for (cause, key) in causes.iter().zip(["course#c2", "course#c3"]) {
        assert!(cause.contains(&format!("pk=`{key}` sk=`stats` is not tally's `stats`")), "{cause}");
    }
    assert_eq!(outcome.count_of(RecordClass::Applied), 2, "{outcome:?}");
    for (item, key) in items.into_iter().zip(["course#c2", "course#c3"]) {
        assert_eq!(aggregate(&table, key, "stats").await, Some(SdkItem::from(item)), "{key}: the application's item, untouched");
    }
    for key in ["course#c1", "course#c4"] {
        assert_eq!(number(&aggregate(&table, key, "stats").await, "enrollmentCount").as_deref(), Some("1"), "{key}");
    }
    let day = aggregate(&table, "stats#university", "day#2026-03-01").await;
    assert_eq!(number(&day, "enrollments").as_deref(), Some("3"), "the earlier enrollment, c1's and c4's: {day:?}");
    drop_table(&table).await;
}

/// The guarantee lives in the writes, whatever the caller read: a commit conditioned on an
/// aggregate's version (or on its having none, as tally's items written before versions) fails
/// on an item without tally's type, and says whose it is not.
#[tokio::test]
async fn a_write_conditioned_on_a_version_never_replaces_an_item_without_tallys_type() {
    let table = fresh_table().await;
    let rules = Rules::university();
    let cases = [
        // As read: tally's, without a version. There: the application's, without one either.
        ("c1", json!({"pk": {"S": "course#c1"}, "sk": {"S": "stats"}, "title": {"S": "Reading list"}}), 0),
        // As read: tally's, at version 3. There: the application's, at its own version 3.
        ("c2", json!({"pk": {"S": "course#c2"}, "sk": {"S": "stats"}, "entityType": {"S": "note"}, "version": {"N": "3"}}), 3),
    ];
    for (course, image, expected_version) in cases {
        let stored = write_item(&table, image).await;
        let key = rules.parse_key(&format!("course#{course}"), "stats").expect("a course's stats key");
        let mut values = AggregateValues::zero(rules, key.kind);
        values.fields.insert(rules.field("enrollmentCount").expect("a university field"), Number::one());
        let write = AggregateWrite {
            key: key.clone(),
            expected_version: Some(expected_version),
            stored: StoredAggregate { values, version: expected_version + 1 },
        };

        let err = table.commit(Commit::stream(&[], std::slice::from_ref(&write))).await.expect_err("the condition fails");

        assert!(matches!(err, StoreError::NotOwned { .. }) && err.is_permanent_for_its_items(), "{course}: {err:?}");
        assert!(err.to_string().contains(&format!("pk=`course#{course}` sk=`stats` is not tally's `stats`")), "{course}: {err}");
        assert_eq!(aggregate(&table, &key.pk, "stats").await, Some(stored), "{course}: the application's item, untouched");
    }
    drop_table(&table).await;
}

/// Aggregates written before tally versioned its items carry its type but no `version`: they
/// are still tally's, and updated.
#[tokio::test]
async fn an_old_aggregate_of_tallys_type_without_a_version_is_still_updated() {
    let table = fresh_table().await;
    let old = json!({"pk": {"S": "course#c1"}, "sk": {"S": "stats"}, "entityType": {"S": "stats"}, "enrollmentCount": {"N": "2"}});
    write_item(&table, old).await;

    let outcome = apply(&Engine::new(support::university(), table.clone()), table.name(), &enrollments(&["c1"])).await;

    assert_eq!(outcome.failed_from(), None, "{outcome:?}");
    let stored = aggregate(&table, "course#c1", "stats").await;
    assert_eq!(number(&stored, "enrollmentCount").as_deref(), Some("3"));
    assert!(number(&stored, "version").is_some(), "versioned from now on: {stored:?}");
    drop_table(&table).await;
}

#[tokio::test]
async fn a_scan_reads_application_items_in_tallys_key_space_as_the_applications() {
    let table = fresh_table().await;
    // Where an aggregate would be, holding a string under a field's name; and under the
    // bookkeeping prefix, where a ledger would be.
    write_item(
        &table,
        json!({"pk": {"S": "course#c1"}, "sk": {"S": "stats"}, "entityType": {"S": "note"}, "enrollmentCount": {"S": "many"}}),
    )
    .await;
    write_item(&table, json!({"pk": {"S": "tally#ledger#course#c9"}, "sk": {"S": "student#s1"}, "entityType": {"S": "note"}})).await;
    let recs = enrollments(&["c2", "c3"]);
    let outcome = apply(&Engine::new(support::university(), table.clone()), table.name(), &recs).await;
    assert!(outcome.failure.is_none(), "{outcome:?}");

    // verify and backfill scan the table: neither item stops the scan or reads as tally's.
    let applied: Vec<Value> = recs.iter().filter_map(|rec| rec.new.clone()).collect();
    let drift = drift(&table, Rules::university(), &applied).await;
    assert!(drift.is_empty(), "{drift:?}");
    drop_table(&table).await;
}
