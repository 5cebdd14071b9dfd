//! Each rule of the university contract (docs/university.md) end to end: stream records in,
//! aggregate items read back from DynamoDB Local.
#![cfg(feature = "dynamodb-local")]

mod support;

use aggregates::Rules;

use serde_json::json;
use support::images::*;
use support::{aggregate, apply, drift, drop_table, fresh_table, number, Rec};
use tally_engine::outcome::RecordClass;
use tally_engine::Engine;

#[tokio::test]
async fn enrollments_count_on_course_student_and_day() {
    let table = fresh_table().await;
    let engine = Engine::new(support::university(), table.clone());
    let a = enrollment("c1", "s1", "2026-03-01T23:30:00-01:00");
    let b = enrollment("c1", "s2", "2026-03-02T08:00:00Z");
    let outcome = apply(&engine, table.name(), &[Rec::insert(1, a.clone()), Rec::insert(2, b.clone())]).await;
    assert_eq!(outcome.failed_from(), None, "{outcome:?}");
    assert_eq!(outcome.by_class.get(&RecordClass::Applied), Some(&2));

    let course = aggregate(&table, "course#c1", "stats").await;
    assert_eq!(number(&course, "enrollmentCount").as_deref(), Some("2"));
    assert_eq!(number(&aggregate(&table, "user#s1", "academic_stats").await, "enrollmentCount").as_deref(), Some("1"));
    // 23:30 at -01:00 is the next UTC day.
    assert_eq!(number(&aggregate(&table, "stats#university", "day#2026-03-02").await, "enrollments").as_deref(), Some("2"));
    assert!(drift(&table, Rules::university(), &[a, b]).await.is_empty());
    drop_table(&table).await;
}

#[tokio::test]
async fn submissions_grades_and_average_follow_every_change() {
    let table = fresh_table().await;
    let engine = Engine::new(support::university(), table.clone());
    let ungraded = submission("c1", "a1", "s1", "2026-03-01T10:00:00Z", None);
    let graded = submission("c1", "a1", "s1", "2026-03-01T10:00:00Z", Some(n("90")));
    let regraded = submission("c1", "a1", "s1", "2026-03-01T10:00:00Z", Some(n("85.5")));
    let other = submission("c1", "a1", "s2", "2026-03-01T11:00:00Z", Some(n("71")));
    // The same item (its key cannot change) with another assignmentID.
    let mut moved = submission("c1", "a2", "s1", "2026-03-01T10:00:00Z", Some(n("85.5")));
    moved["sk"] = regraded["sk"].clone();

    apply(
        &engine,
        table.name(),
        &[Rec::insert(1, ungraded.clone()), Rec::modify(2, ungraded, graded.clone()), Rec::insert(3, other.clone())],
    )
    .await;
    let stats = aggregate(&table, "course#c1", "stats#assignment#a1").await;
    assert_eq!(number(&stats, "submissionCount").as_deref(), Some("2"));
    assert_eq!(number(&stats, "gradeSum").as_deref(), Some("161"));
    assert_eq!(number(&stats, "gradeAverage").as_deref(), Some("80.5"));

    apply(&engine, table.name(), &[Rec::modify(4, graded, regraded.clone())]).await;
    let course = aggregate(&table, "course#c1", "stats").await;
    assert_eq!(number(&course, "gradeSum").as_deref(), Some("156.5"));
    assert_eq!(number(&course, "gradeAverage").as_deref(), Some("78.25"));

    // Changing assignmentID moves the submission between assignment aggregates.
    apply(&engine, table.name(), &[Rec::modify(5, regraded, moved.clone())]).await;
    assert_eq!(number(&aggregate(&table, "course#c1", "stats#assignment#a1").await, "gradeSum").as_deref(), Some("71"));
    assert_eq!(number(&aggregate(&table, "course#c1", "stats#assignment#a2").await, "gradeAverage").as_deref(), Some("85.5"));
    assert_eq!(number(&aggregate(&table, "user#s1", "academic_stats").await, "gradedCount").as_deref(), Some("1"));

    // Removing the last graded submission of a2 removes its average.
    apply(&engine, table.name(), &[Rec::remove(6, moved)]).await;
    let a2 = aggregate(&table, "course#c1", "stats#assignment#a2").await;
    assert_eq!(number(&a2, "gradedCount").as_deref(), Some("0"));
    assert_eq!(number(&a2, "gradeAverage"), None);
    assert!(drift(&table, Rules::university(), &[other]).await.is_empty());
    drop_table(&table).await;
}

#[tokio::test]
async fn orders_and_transactions_sum_exact_decimals() {
    let table = fresh_table().await;
    let engine = Engine::new(support::university(), table.clone());
    let recs = [
        Rec::insert(1, order("u1", "2026-03-01", "o1", "19.99")),
        Rec::insert(2, order("u1", "2026-03-01", "o2", "0.01")),
        Rec::insert(3, transaction("u1", "2026-03-01", "t1", "-5.5")),
        Rec::insert(4, transaction("u1", "2026-03-02", "t2", "12345678901234567890.12345678")),
    ];
    apply(&engine, table.name(), &recs).await;
    let stats = aggregate(&table, "user#u1", "order_stats").await;
    assert_eq!(number(&stats, "orderCount").as_deref(), Some("2"));
    assert_eq!(number(&stats, "orderTotal").as_deref(), Some("20"));
    assert_eq!(number(&stats, "transactionBalance").as_deref(), Some("12345678901234567884.62345678"));
    let day = aggregate(&table, "stats#university", "day#2026-03-01").await;
    assert_eq!((number(&day, "orders").as_deref(), number(&day, "orderTotal").as_deref()), (Some("2"), Some("20")));
    drop_table(&table).await;
}

#[tokio::test]
async fn ttl_deletions_retract_and_are_counted() {
    let table = fresh_table().await;
    let engine = Engine::new(support::university(), table.clone());
    let enrolled = enrollment("c1", "s1", "2026-03-01T10:00:00Z");
    apply(&engine, table.name(), &[Rec::insert(1, enrolled.clone()), Rec::insert(2, session("x"))]).await;
    let outcome = apply(&engine, table.name(), &[Rec::ttl_remove(3, enrolled), Rec::ttl_remove(4, session("x"))]).await;
    assert_eq!(outcome.ttl_deletions, 2);
    assert_eq!(number(&aggregate(&table, "course#c1", "stats").await, "enrollmentCount").as_deref(), Some("0"));
    // DynamoDB Local sends TTL deletions with an eventName the SDK does not know: the images decide.
    let second = enrollment("c1", "s2", "2026-03-01T10:00:00Z");
    apply(&engine, table.name(), &[Rec::insert(5, second.clone()), Rec::remove(6, second).named("UNKNOWN_TO_SDK_VERSION")]).await;
    assert!(drift(&table, Rules::university(), &[]).await.is_empty());
    drop_table(&table).await;
}

#[tokio::test]
async fn invalid_images_contribute_nothing_on_either_side() {
    let table = fresh_table().await;
    let engine = Engine::new(support::university(), table.clone());
    let valid = submission("c1", "a1", "s1", "2026-03-01T10:00:00Z", Some(n("80")));
    let letter = submission("c1", "a1", "s1", "2026-03-01T10:00:00Z", Some(json!({"S": "A+"})));
    let negative = submission("c1", "a1", "s1", "2026-03-01T10:00:00Z", Some(n("-3")));
    let long = order("u1", "2026-03-01", "o1", &"1".repeat(39));
    let outcome = apply(&engine, table.name(), &[Rec::insert(1, valid.clone()), Rec::insert(2, long)]).await;
    assert_eq!(outcome.rejected.get("number_too_precise"), Some(&1));
    assert_eq!(aggregate(&table, "user#u1", "order_stats").await, None);

    // valid → invalid retracts the valid contribution; invalid → invalid changes nothing.
    let outcome = apply(&engine, table.name(), &[Rec::modify(3, valid, letter.clone()), Rec::modify(4, letter, negative.clone())]).await;
    assert_eq!(outcome.rejected.get("wrong_type"), Some(&2));
    assert_eq!(outcome.rejected.get("negative_grade"), Some(&1));
    assert_eq!(outcome.failed_from(), None);
    assert_eq!(number(&aggregate(&table, "course#c1", "stats").await, "submissionCount").as_deref(), Some("0"));
    assert!(drift(&table, Rules::university(), &[negative]).await.is_empty());
    drop_table(&table).await;
}

#[tokio::test]
async fn own_writes_other_tables_and_unknown_entities_change_nothing() {
    let table = fresh_table().await;
    let engine = Engine::new(support::university(), table.clone());
    let enrolled = enrollment("c1", "s1", "2026-03-01T10:00:00Z");
    apply(&engine, table.name(), &[Rec::insert(1, enrolled.clone())]).await;
    let before = support::scan(&support::client().await, table.name()).await;

    // Feed every item tally wrote back as INSERT, MODIFY and REMOVE records, as the stream does.
    let own: Vec<serde_json::Value> =
        before.iter().map(|item| serde_json::to_value(serde_dynamo::Item::from(item.clone())).unwrap()).collect();
    let mut recs = Vec::new();
    for (i, image) in own.iter().enumerate() {
        let base = 100 + 3 * i as u64;
        recs.push(Rec::insert(base, image.clone()));
        recs.push(Rec::modify(base + 1, image.clone(), image.clone()));
        recs.push(Rec::remove(base + 2, image.clone()));
    }
    recs.push(Rec::insert(900, enrollment("c1", "s9", "2026-03-01T10:00:00Z")).in_table("another-table"));
    recs.push(Rec::insert(901, json!({"pk": {"S": "course#c1"}, "sk": {"S": "note#1"}, "entityType": {"S": "note"}})));
    recs.push(Rec::insert(902, json!({"pk": {"S": "course#c1"}, "sk": {"S": "note#2"}})));
    let outcome = apply(&engine, table.name(), &recs).await;
    assert_eq!(outcome.by_class.get(&RecordClass::OwnAggregate), Some(&9), "{outcome:?}");
    assert_eq!(outcome.by_class.get(&RecordClass::OwnBookkeeping), Some(&3));
    assert_eq!(outcome.by_class.get(&RecordClass::OtherTable), Some(&1));
    assert_eq!(outcome.by_class.get(&RecordClass::Unknown), Some(&2));
    assert_eq!(outcome.usage.requests, 0, "skipped records must cost nothing");

    let mut after = support::scan(&support::client().await, table.name()).await;
    let mut before = before;
    let key = |item: &tally_engine::store::SdkItem| format!("{:?}{:?}", item.get("pk"), item.get("sk"));
    before.sort_by_key(key);
    after.sort_by_key(key);
    assert_eq!(before, after);
    assert!(drift(&table, Rules::university(), &[enrolled]).await.is_empty());
    drop_table(&table).await;
}

#[tokio::test]
async fn redelivery_whole_or_stale_is_a_no_op() {
    let table = fresh_table().await;
    let engine = Engine::new(support::university(), table.clone());
    let v1 = submission("c1", "a1", "s1", "2026-03-01T10:00:00Z", Some(n("50")));
    let v2 = submission("c1", "a1", "s1", "2026-03-01T10:00:00Z", Some(n("70")));
    let first = [Rec::insert(1, v1.clone()), Rec::insert(2, enrollment("c1", "s1", "2026-03-01"))];
    apply(&engine, table.name(), &first).await;
    let again = apply(&engine, table.name(), &first).await;
    assert_eq!(again.by_class.get(&RecordClass::AlreadyApplied), Some(&2));
    assert_eq!(again.transactions, 0);

    // A record arriving again after a newer record of its item was applied.
    apply(&engine, table.name(), &[Rec::modify(3, v1.clone(), v2.clone())]).await;
    let stale = apply(&engine, table.name(), &[Rec::insert(1, v1)]).await;
    assert_eq!(stale.by_class.get(&RecordClass::AlreadyApplied), Some(&1));
    assert_eq!(number(&aggregate(&table, "course#c1", "stats").await, "gradeSum").as_deref(), Some("70"));
    assert!(drift(&table, Rules::university(), &[v2, enrollment("c1", "s1", "2026-03-01")]).await.is_empty());
    drop_table(&table).await;
}
