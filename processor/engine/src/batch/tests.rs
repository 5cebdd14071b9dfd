//! Engine-loop tests over the in-memory table: no server, paused clock.
//!
//! Each test delivers stream records as Lambda would (built by [`build`]), scripts what the
//! network does ([`Fault`]s, latency, a concurrent writer), and checks what the guarantees of the
//! university contract (docs/university.md) promise: aggregates equal to a recompute from the
//! items' final images, and an outcome that reports exactly the records left unapplied.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aggregates::{AggregateKey, AggregateValues, FieldId, Number, Rules};
use serde_json::json;

use super::*;
use crate::items::ItemKey;
use crate::items::{AggregateWrite, StoredAggregate};
use crate::store::memory::{Call, Fault, MemoryTable};
use crate::store::SdkItem;
use crate::store::Verdict;
use build::{assignment, changes, enrollment, expected, held, instructor, key, ledger, submission, Rec};

/// Stream records as Lambda delivers them, and what the aggregates should hold after them.
mod build {
    use std::collections::{BTreeMap, HashMap};

    use aggregates::{AggregateKey, AggregateValues, Recompute};
    use aws_lambda_events::event::dynamodb::EventRecord;
    use serde_json::{json, Value};

    use crate::decode::{decode_batch, Change};
    use crate::items::ItemKey;
    use crate::items::Ledger;
    use crate::store::memory::MemoryTable;
    use aggregates::Rules;

    pub const TABLE: &str = "university";
    const STREAM_ARN: &str = "arn:aws:dynamodb:us-east-1:000000000000:table/university/stream/2026-01-01T00:00:00.000";

    pub fn enrollment(course: &str, student: &str) -> Value {
        json!({
            "pk": {"S": format!("course#{course}")}, "sk": {"S": format!("student#{student}")}, "entityType": {"S": "student"},
            "studentID": {"S": student}, "enrolledAt": {"S": "2026-01-05T09:00:00Z"}
        })
    }

    pub fn instructor(course: &str, instructor: &str) -> Value {
        json!({
            "pk": {"S": format!("course#{course}")}, "sk": {"S": format!("instructor#{instructor}")},
            "entityType": {"S": "instructor"}, "instructorID": {"S": instructor}
        })
    }

    pub fn assignment(course: &str, assignment: &str) -> Value {
        json!({
            "pk": {"S": format!("course#{course}")}, "sk": {"S": format!("assignment#{assignment}")},
            "entityType": {"S": "assignment"}, "assignmentID": {"S": assignment}, "dueDate": {"S": "2026-02-01"}
        })
    }

    /// A submission, graded when `grade` is given.
    pub fn submission(course: &str, assignment: &str, student: &str, grade: Option<&str>) -> Value {
        let mut image = json!({
            "pk": {"S": format!("course#{course}")}, "sk": {"S": format!("submission#{assignment}#{student}")},
            "entityType": {"S": "submission"}, "studentID": {"S": student}, "assignmentID": {"S": assignment},
            "submittedAt": {"S": "2026-01-06T12:00:00Z"}
        });
        if let Some(grade) = grade {
            image["grade"] = json!({"N": grade});
        }
        image
    }

    /// The table key of an image.
    pub fn key(image: &Value) -> ItemKey {
        let text = |name: &str| image[name]["S"].as_str().expect("images carry pk and sk").to_owned();
        ItemKey { pk: text("pk"), sk: text("sk") }
    }

    /// One stream record; `sequence` orders the records of an item.
    #[derive(Debug, Clone)]
    pub struct Rec {
        sequence: u64,
        old: Option<Value>,
        new: Option<Value>,
        ttl: bool,
    }

    impl Rec {
        pub fn insert(sequence: u64, new: Value) -> Rec {
            Rec { sequence, old: None, new: Some(new), ttl: false }
        }
        pub fn modify(sequence: u64, old: Value, new: Value) -> Rec {
            Rec { sequence, old: Some(old), new: Some(new), ttl: false }
        }
        /// A deletion by DynamoDB's TTL sweeper.
        pub fn ttl_remove(sequence: u64, old: Value) -> Rec {
            Rec { sequence, old: Some(old), new: None, ttl: true }
        }

        fn image(&self) -> &Value {
            self.new.as_ref().or(self.old.as_ref()).expect("a record has an image")
        }

        fn to_record(&self) -> EventRecord {
            let image = self.image();
            let mut dynamodb = json!({
                "ApproximateCreationDateTime": 1767600000.0,
                "Keys": {"pk": image["pk"], "sk": image["sk"]},
                // As the service writes them: 21 digits.
                "SequenceNumber": format!("4{:020}", self.sequence),
                "SizeBytes": 128,
                "StreamViewType": "NEW_AND_OLD_IMAGES",
            });
            if let Some(old) = &self.old {
                dynamodb["OldImage"] = old.clone();
            }
            if let Some(new) = &self.new {
                dynamodb["NewImage"] = new.clone();
            }
            let event_name = match (&self.old, &self.new) {
                (None, Some(_)) => "INSERT",
                (Some(_), Some(_)) => "MODIFY",
                _ => "REMOVE",
            };
            let mut record = json!({
                "eventID": format!("event-{}", self.sequence), "eventName": event_name, "eventVersion": "1.1",
                "eventSource": "aws:dynamodb", "awsRegion": "us-east-1", "eventSourceARN": STREAM_ARN, "dynamodb": dynamodb,
            });
            if self.ttl {
                record["userIdentity"] = json!({"type": "Service", "principalId": "dynamodb.amazonaws.com"});
            }
            serde_json::from_value(record).expect("test records are well-formed")
        }
    }

    /// A batch, decoded as the handler decodes it.
    pub fn changes(recs: &[Rec]) -> Vec<Change<'static>> {
        let records: Vec<EventRecord> = recs.iter().map(Rec::to_record).collect();
        decode_batch(&records, TABLE, Rules::university()).expect("test records decode")
    }

    pub type Aggregates = BTreeMap<AggregateKey, AggregateValues>;

    /// What a recompute (backfill) gives once every record in `recs` has happened: each item as
    /// its newest record left it. All-zero aggregates are left out, as readers treat them as absent.
    pub fn expected(recs: &[Rec]) -> Aggregates {
        let mut latest: HashMap<ItemKey, &Rec> = HashMap::new();
        for rec in recs {
            let newest = latest.entry(key(rec.image())).or_insert(rec);
            if rec.sequence > newest.sequence {
                *newest = rec;
            }
        }
        let mut recompute = Recompute::new(Rules::university());
        for image in latest.values().filter_map(|rec| rec.new.as_ref()) {
            recompute.add_item(&serde_json::from_value(image.clone()).expect("test images are DynamoDB JSON"));
        }
        nonzero(recompute.aggregates())
    }

    /// The aggregates the table holds, all-zero ones left out.
    pub fn held(table: &MemoryTable) -> Aggregates {
        nonzero(table.aggregates().expect("stored aggregates decode").into_iter().collect())
    }

    fn nonzero(mut aggregates: Aggregates) -> Aggregates {
        aggregates.retain(|_, values| values.fields.values().any(|amount| !amount.is_zero()));
        aggregates
    }

    /// The ledger the table holds for a source item.
    pub fn ledger(table: &MemoryTable, item: &ItemKey) -> Option<Ledger> {
        let key = table.codec().ledger_key(item);
        table.items().get(&key).map(|stored| table.codec().decode_ledger(&key, stored).expect("stored ledgers decode"))
    }
}

/// What each call of a slow table costs, so that a deadline can fall between two calls.
const LATENCY: Duration = Duration::from_millis(10);

fn ample() -> Instant {
    Instant::now() + Duration::from_secs(60)
}

fn course(course_id: &str) -> AggregateKey {
    Rules::university().parse_key(&format!("course#{course_id}"), "stats").expect("a course's stats key")
}

fn field(name: &str) -> FieldId {
    Rules::university().field(name).expect("a university field")
}

fn university() -> Arc<Rules> {
    Arc::new(Rules::university().clone())
}

fn memory_table() -> MemoryTable {
    MemoryTable::new(build::TABLE, university())
}

/// Records by class, classes with none left out.
fn classes(outcome: &BatchOutcome) -> BTreeMap<RecordClass, u64> {
    outcome.by_class.iter().filter(|(_, records)| **records > 0).map(|(class, records)| (*class, *records)).collect()
}

fn count(table: &MemoryTable, key: &AggregateKey, field: FieldId) -> Number {
    table.aggregates().unwrap().get(key).map(|values| values.get(field)).unwrap_or_default()
}

#[tokio::test(start_paused = true)]
async fn a_batch_applies_once_and_its_redelivery_applies_nothing() {
    let graded = submission("c1", "a1", "s1", Some("90"));
    let batch = [
        Rec::insert(1, enrollment("c1", "s1")),
        Rec::insert(2, enrollment("c1", "s2")),
        Rec::insert(3, graded.clone()),
        Rec::modify(4, graded, submission("c1", "a1", "s1", Some("85.5"))),
        Rec::insert(5, enrollment("c2", "s1")),
    ];
    let engine = Engine::new(university(), memory_table());

    let first = engine.process(&changes(&batch), ample()).await;
    assert!(first.failure.is_none(), "{:?}", first.failure);
    assert_eq!(classes(&first), [(RecordClass::Applied, 5)].into());
    assert_eq!(held(engine.store()), expected(&batch));
    assert_eq!(count(engine.store(), &course("c1"), field("gradeSum")).to_string(), "85.5");

    let stored = engine.store().items();
    let again = engine.process(&changes(&batch), ample()).await;
    assert!(again.failure.is_none(), "{:?}", again.failure);
    assert_eq!(classes(&again), [(RecordClass::AlreadyApplied, 5)].into());
    assert_eq!(again.transactions, 0, "a redelivery costs the read only");
    assert_eq!(again.usage.estimated_write_units, 0);
    assert_eq!(engine.store().items(), stored, "nothing rewritten, not even a version");
}

#[tokio::test(start_paused = true)]
async fn concurrent_engines_on_overlapping_batches_conflict_and_replan_to_the_exact_total() {
    // Everything is in course c1, on one day: both batches write the same course and daily items.
    let graded = submission("c1", "a1", "s1", Some("90"));
    let records = [
        Rec::insert(1, enrollment("c1", "s1")),
        Rec::insert(2, enrollment("c1", "s2")),
        Rec::insert(3, graded.clone()),
        Rec::insert(4, enrollment("c1", "s3")),
        Rec::insert(5, submission("c1", "a1", "s2", Some("70"))),
        Rec::modify(6, graded, submission("c1", "a1", "s1", Some("80"))),
    ];
    // Two records go to both (a retried batch racing a `consume`, say).
    let one = [0, 1, 2, 3].map(|i| records[i].clone());
    let other = [1, 3, 4, 5].map(|i| records[i].clone());
    let table = Arc::new(memory_table().with_latency(LATENCY));
    let (left, right) = (Engine::new(university(), Arc::clone(&table)), Engine::new(university(), Arc::clone(&table)));

    let (one, other) = (changes(&one), changes(&other));
    let (a, b) = tokio::join!(left.process(&one, ample()), right.process(&other, ample()));

    assert!(a.failure.is_none() && b.failure.is_none(), "{:?} / {:?}", a.failure, b.failure);
    assert!(a.conflicts + b.conflicts > 0, "both read before either committed: one of them must have re-planned");
    assert_eq!(held(&table), expected(&records));
    let total = |class| a.count_of(class) + b.count_of(class);
    assert_eq!((total(RecordClass::Applied), total(RecordClass::AlreadyApplied)), (6, 2), "each record applied by one engine only");
}

#[tokio::test(start_paused = true)]
async fn a_commit_whose_answer_was_lost_is_read_back_as_applied_not_counted_twice() {
    let batch = [
        Rec::insert(1, enrollment("c1", "s1")),
        Rec::insert(2, submission("c1", "a1", "s1", Some("90"))),
        Rec::insert(3, enrollment("c1", "s2")),
    ];
    // One item per commit: the first lands, and its answer is lost; the rest follow it.
    let engine = Engine::new(university(), memory_table()).with_transaction_limit(1);
    engine.store().inject(Call::Commit, Fault::LoseAnswer);

    let outcome = engine.process(&changes(&batch), ample()).await;

    assert!(outcome.failure.is_none(), "{:?}", outcome.failure);
    assert_eq!(engine.store().pending_faults(), 0);
    assert_eq!(held(engine.store()), expected(&batch));
    assert_eq!(outcome.retries, 1);
    assert_eq!(outcome.conflicts, 0, "the lost commit's items are read again, not committed from the stale snapshot");
    assert_eq!(outcome.count_of(RecordClass::Applied) + outcome.count_of(RecordClass::AlreadyApplied), 3);
    assert_eq!(outcome.count_of(RecordClass::AlreadyApplied), 1, "the re-read ledger shows the lost commit landed");
}

#[tokio::test(start_paused = true)]
async fn throttled_reads_and_commits_are_retried_with_backoff_until_the_batch_applies() {
    let batch = [Rec::insert(1, enrollment("c1", "s1")), Rec::insert(2, submission("c1", "a1", "s1", Some("90")))];
    let engine = Engine::new(university(), memory_table());
    engine.store().inject(Call::Read, Fault::Throttle);
    engine.store().inject(Call::Read, Fault::Throttle);
    engine.store().inject(Call::Commit, Fault::Throttle);
    let start = Instant::now();

    let outcome = engine.process(&changes(&batch), ample()).await;

    assert!(outcome.failure.is_none(), "{:?}", outcome.failure);
    assert_eq!(engine.store().pending_faults(), 0);
    assert_eq!((outcome.retries, outcome.conflicts), (3, 0));
    assert_eq!(classes(&outcome), [(RecordClass::Applied, 2)].into());
    assert_eq!(held(engine.store()), expected(&batch));
    // The waits are 15-30 ms, 30-60 ms and 60-120 ms.
    assert!(start.elapsed() >= Duration::from_millis(105), "retried without waiting: {:?}", start.elapsed());
}

#[tokio::test(start_paused = true)]
async fn throttled_until_the_deadline_the_batch_names_the_last_failure_as_the_store_gave_it() {
    let batch = [Rec::insert(1, enrollment("c1", "s1"))];
    let engine = Engine::new(university(), memory_table());
    for _ in 0..50 {
        engine.store().inject(Call::Read, Fault::Throttle);
    }
    let outcome = engine.process(&changes(&batch), Instant::now() + Duration::from_secs(1)).await;

    let failure = outcome.failure.as_ref().expect("the deadline cut the batch short");
    match &failure.cause {
        Some(Cause::Deadline { last_failure: Some(last), .. }) => assert!(last.verdict() == Verdict::Retry, "{last:?}"),
        other => panic!("expected the deadline with the last failure, got {other:?}"),
    }
    assert!(failure.to_string().ends_with("; last failure: transient DynamoDB failure in BatchGetItem: injected: throttled"), "{failure}");
    assert!(failure.is_retryable() && engine.store().items().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_deadline_mid_batch_reports_from_the_first_unapplied_record_and_the_retry_completes_it() {
    let ungraded = submission("c2", "a1", "s2", None);
    let batch = [
        Rec::insert(1, enrollment("c1", "s1")),
        Rec::insert(2, ungraded.clone()),
        Rec::insert(3, enrollment("c3", "s3")),
        Rec::insert(4, enrollment("c4", "s4")),
        Rec::modify(5, ungraded, submission("c2", "a1", "s2", Some("75"))),
        Rec::insert(6, enrollment("c5", "s5")),
    ];
    // One item per commit, each commit 10 ms after a 10 ms read: the deadline falls in the fourth
    // commit, that of the item at record 3, after the items of records 0, 1 (and 4) and 2.
    let engine = Engine::new(university(), memory_table().with_latency(LATENCY)).with_transaction_limit(1);
    let start = Instant::now();
    let deadline = start + LATENCY * 9 / 2;

    let outcome = engine.process(&changes(&batch), deadline).await;

    assert!(Instant::now() <= deadline, "returned {:?} after the deadline", Instant::now() - deadline);
    let failure = outcome.failure.as_ref().expect("the deadline cut the batch short");
    assert!(matches!(failure.cause, Some(Cause::Deadline { during: Stage::Commit, .. })), "{failure}");
    assert!(failure.is_retryable());
    assert!(failure.refused.is_empty());
    assert_eq!(outcome.failed_from(), Some(3));
    assert_eq!(outcome.count_of(RecordClass::Applied), 4);
    let applied = [0, 1, 2, 4].map(|i| batch[i].clone());
    assert_eq!(held(engine.store()), expected(&applied), "every item before the failure point is applied, nothing else");

    // Lambda delivers the batch again from the failure point.
    let retry = engine.process(&changes(&batch[3..]), ample()).await;
    assert!(retry.failure.is_none(), "{:?}", retry.failure);
    assert_eq!(classes(&retry), [(RecordClass::Applied, 2), (RecordClass::AlreadyApplied, 1)].into());
    assert_eq!(held(engine.store()), expected(&batch));
}

#[tokio::test(start_paused = true)]
async fn a_permanent_failure_stops_the_batch_at_once_and_is_not_worth_retrying() {
    let batch = [Rec::insert(1, enrollment("c1", "s1")), Rec::insert(2, enrollment("c1", "s2"))];
    for call in [Call::Read, Call::Commit] {
        let engine = Engine::new(university(), memory_table().with_latency(LATENCY));
        engine.store().inject(call, Fault::Reject);
        let start = Instant::now();

        let outcome = engine.process(&changes(&batch), ample()).await;

        let failure = outcome.failure.as_ref().expect("a rejected call fails the batch");
        assert!(matches!(failure.cause, Some(Cause::Store(StoreError::Permanent(_)))), "{call:?}: {failure}");
        assert!(!failure.is_retryable(), "{call:?}");
        assert_eq!(outcome.failed_from(), Some(0), "{call:?}");
        assert_eq!(outcome.retries, 0, "{call:?}");
        assert!(start.elapsed() <= LATENCY * 2, "{call:?}: waited {:?}: no backoff for a permanent failure", start.elapsed());
        assert!(engine.store().items().is_empty(), "{call:?}: nothing half-applied");
    }
}

#[tokio::test(start_paused = true)]
async fn an_item_dynamodb_refuses_for_good_does_not_keep_the_rest_of_its_batch_from_applying() {
    let poison = enrollment("c1", "s2");
    let mut moved = poison.clone();
    moved["enrolledAt"] = serde_json::json!({"S": "2026-01-07T09:00:00Z"});
    let batch = [
        Rec::insert(1, enrollment("c1", "s1")),
        Rec::insert(2, poison.clone()),
        Rec::insert(3, enrollment("c1", "s3")),
        Rec::modify(4, poison.clone(), moved),
        Rec::insert(5, submission("c1", "a1", "s1", Some("88"))),
    ];
    let engine = Engine::new(university(), memory_table());
    engine.store().refuse(engine.store().codec().ledger_key(&key(&poison)));
    let others = [0, 2, 4].map(|i| batch[i].clone());

    let first = engine.process(&changes(&batch), ample()).await;
    let stored = engine.store().items();
    let again = engine.process(&changes(&batch), ample()).await;

    for (delivery, outcome) in [("first", &first), ("redelivery", &again)] {
        let failure = outcome.failure.as_ref().expect("the refused item is reported");
        assert!(failure.cause.is_none(), "{delivery}: every other item applied: {failure}");
        assert!(!failure.is_retryable(), "{delivery}");
        assert_eq!(outcome.failed_from(), Some(1), "{delivery}: from the refused item's first record");
        let refused: Vec<_> = failure.refused.iter().map(|refused| (refused.index, refused.event_id.as_str(), &refused.key)).collect();
        assert_eq!(refused, vec![(1, "event-2", &key(&poison))], "{delivery}");
        assert_eq!(outcome.count_of(RecordClass::Refused), 2, "{delivery}: both of its records");
    }
    assert_eq!(first.count_of(RecordClass::Applied), 3);
    assert_eq!((again.count_of(RecordClass::Applied), again.count_of(RecordClass::AlreadyApplied)), (0, 3));
    assert_eq!(held(engine.store()), expected(&others));
    assert_eq!(engine.store().items(), stored, "the redelivery applied nothing twice");
}

#[tokio::test(start_paused = true)]
async fn a_refused_commit_of_several_items_is_narrowed_to_the_item_dynamodb_refuses() {
    let batch = [
        Rec::insert(1, enrollment("c1", "s1")),
        Rec::insert(2, enrollment("c1", "s2")),
        Rec::insert(3, submission("c1", "a1", "s1", Some("60"))),
    ];
    let engine = Engine::new(university(), memory_table());
    // The batch's one commit is refused, then the first item's commit alone: only it is at fault.
    engine.store().inject(Call::Commit, Fault::Refuse);
    engine.store().inject(Call::Commit, Fault::Refuse);

    let outcome = engine.process(&changes(&batch), ample()).await;

    assert_eq!(engine.store().pending_faults(), 0);
    let failure = outcome.failure.as_ref().expect("the refused item is reported");
    assert!(failure.cause.is_none(), "{failure}");
    assert_eq!(failure.refused.iter().map(|refused| refused.index).collect::<Vec<_>>(), vec![0]);
    assert_eq!(outcome.failed_from(), Some(0));
    assert_eq!((outcome.count_of(RecordClass::Refused), outcome.count_of(RecordClass::Applied)), (1, 2));
    assert_eq!(outcome.retries, 0, "a refusal is narrowed, not waited out");
    assert_eq!(held(engine.store()), expected(&batch[1..]));
}

#[tokio::test(start_paused = true)]
async fn a_concurrent_write_between_read_and_commit_is_replanned_from_its_new_value() {
    // Three items, one commit each: course c1 (records 0 and 2) and course c2 (record 1).
    let batch = [Rec::insert(1, instructor("c1", "i1")), Rec::insert(2, instructor("c2", "i2")), Rec::insert(3, assignment("c1", "a1"))];
    let engine = Engine::new(university(), memory_table().with_latency(LATENCY)).with_transaction_limit(1);
    // Read at 10 ms, commits at 20, 30 and 40 ms. At 25 ms another writer (a second processor)
    // leaves course c2 with 5 instructors, under the second commit's feet.
    let mut theirs = AggregateValues::zero(Rules::university(), course("c2").kind);
    theirs.fields.insert(field("instructorCount"), Number::from(5));
    let write = AggregateWrite { key: course("c2"), expected_version: None, stored: StoredAggregate { values: theirs, version: 7 } };
    let concurrent_writer = async {
        tokio::time::sleep(LATENCY * 5 / 2).await;
        engine.store().put_item(ItemKey::from(&course("c2")), engine.store().codec().encode_aggregate(&write, chrono::Utc::now()).item);
    };
    let changes = changes(&batch);

    let (outcome, ()) = tokio::join!(engine.process(&changes, ample()), concurrent_writer);

    assert!(outcome.failure.is_none(), "{:?}", outcome.failure);
    assert_eq!(classes(&outcome), [(RecordClass::Applied, 3)].into());
    let held = |key: &AggregateKey, field| count(engine.store(), key, field);
    assert_eq!(held(&course("c2"), field("instructorCount")), Number::from(6), "their 5 and our 1: no lost update");
    assert_eq!(
        (held(&course("c1"), field("instructorCount")), held(&course("c1"), field("assignmentCount"))),
        (Number::one(), Number::one())
    );
    // Re-planned once, from the changed item's state in the cancellation reasons and from what the
    // batch's own first commit wrote to course c1: no second conflict.
    assert_eq!((outcome.conflicts, outcome.retries), (1, 1));
    // One read of 3 ledgers and 2 aggregates, then of the failed commit's item not reported
    // changed (its ledger): course c2's state came with the cancellation.
    assert_eq!(outcome.usage.estimated_read_units, 5 + 1);
}

#[tokio::test(start_paused = true)]
async fn a_call_in_flight_at_the_deadline_is_abandoned_by_the_deadline() {
    let batch = [Rec::insert(1, enrollment("c1", "s1"))];
    // A read takes 1 s and so does a commit: a deadline at 0.5 s falls in the read, one at 1.5 s
    // in the commit. Lambda's own deadline does not wait for a slow call.
    for (after, stage) in [(Duration::from_millis(500), Stage::Read), (Duration::from_millis(1500), Stage::Commit)] {
        let engine = Engine::new(university(), memory_table().with_latency(Duration::from_secs(1)));
        let deadline = Instant::now() + after;

        let outcome = engine.process(&changes(&batch), deadline).await;

        assert_eq!(Instant::now(), deadline, "{stage:?}: returns at the deadline");
        let failure = outcome.failure.as_ref().expect("nothing applied in time");
        assert!(matches!(failure.cause, Some(Cause::Deadline { during, .. }) if during == stage), "{stage:?}: {failure}");
        assert!(failure.is_retryable());
        assert_eq!(outcome.failed_from(), Some(0));
        assert!(engine.store().items().is_empty());
    }
}

#[tokio::test(start_paused = true)]
async fn after_ttl_deletes_a_ledger_the_next_records_are_measured_from_their_old_images() {
    let enrolled = enrollment("c1", "s1");
    let graded = submission("c1", "a1", "s1", Some("90"));
    let first = [Rec::insert(1, enrolled.clone()), Rec::insert(2, graded.clone())];
    let engine = Engine::new(university(), memory_table());
    assert!(engine.process(&changes(&first), ample()).await.failure.is_none());
    let expired = ledger(engine.store(), &key(&graded)).expect("a ledger per applied item");

    // 48 h later TTL deletes both ledgers; only then do the items change again (a regrade, and
    // the enrollment's own TTL deletion).
    for image in [&enrolled, &graded] {
        engine.store().delete_item(&engine.store().codec().ledger_key(&key(image))).expect("the ledger was there");
    }
    let second = [Rec::modify(10, graded.clone(), submission("c1", "a1", "s1", Some("70"))), Rec::ttl_remove(11, enrolled.clone())];
    let outcome = engine.process(&changes(&second), ample()).await;

    assert!(outcome.failure.is_none(), "{:?}", outcome.failure);
    assert_eq!((outcome.count_of(RecordClass::Applied), outcome.ttl_deletions), (2, 1));
    let history: Vec<Rec> = first.iter().chain(&second).cloned().collect();
    assert_eq!(held(engine.store()), expected(&history), "the regrade moves 90 to 70, the TTL deletion retracts the enrollment once");
    let recreated = ledger(engine.store(), &key(&graded)).expect("the ledger is created anew");
    let assumed = recreated.assumed.as_ref().expect("a ledgerless record's old image is taken on trust");
    let regrade = &changes(&second)[0];
    assert_eq!((&assumed.from, &assumed.baseline), (&regrade.sequence, regrade.old.contribution()));
    assert!(![expired.version, expired.version + 1].contains(&recreated.version), "a new incarnation, at a fresh version");

    let stored = engine.store().items();
    let again = engine.process(&changes(&second), ample()).await;
    assert_eq!(classes(&again), [(RecordClass::AlreadyApplied, 2)].into());
    assert_eq!(engine.store().items(), stored);
}

/// An item as another writer puts it, from DynamoDB JSON.
fn item(image: serde_json::Value) -> SdkItem {
    serde_json::from_value::<serde_dynamo::Item>(image).expect("test items are DynamoDB JSON").into()
}

/// The batch positions of the items refused, and the causes given.
fn refusals(outcome: &BatchOutcome) -> (Vec<usize>, Vec<String>) {
    let refused = outcome.failure.as_ref().map(|failure| failure.refused.as_slice()).unwrap_or_default();
    (refused.iter().map(|refused| refused.index).collect(), refused.iter().map(|refused| refused.cause.to_string()).collect())
}

/// A rules file whose aggregate key template gives an application item's key: tally must
/// neither overwrite the application's item nor let it hold back the rest of the batch.
#[tokio::test(start_paused = true)]
async fn an_application_item_at_an_aggregate_key_is_left_as_it_is_and_only_the_records_that_need_it_are_refused() {
    // One of another type, one with no type at all; neither carries a version.
    let note = item(json!({"pk": {"S": "course#c1"}, "sk": {"S": "stats"}, "entityType": {"S": "note"}, "title": {"S": "Office hours"}}));
    let untyped = item(json!({"pk": {"S": "course#c2"}, "sk": {"S": "stats"}, "title": {"S": "Reading list"}}));
    let batch = [
        Rec::insert(1, enrollment("c1", "s1")),
        Rec::insert(2, enrollment("c3", "s2")),
        Rec::insert(3, enrollment("c2", "s3")),
        Rec::insert(4, submission("c3", "a1", "s2", Some("70"))),
    ];
    let engine = Engine::new(university(), memory_table());
    engine.store().put_item(ItemKey::from(&course("c1")), note.clone());
    engine.store().put_item(ItemKey::from(&course("c2")), untyped.clone());

    let first = engine.process(&changes(&batch), ample()).await;
    let again = engine.process(&changes(&batch), ample()).await;

    for (delivery, outcome) in [("first", &first), ("redelivery", &again)] {
        let failure = outcome.failure.as_ref().expect("the refused records are reported");
        assert!(failure.cause.is_none(), "{delivery}: every other item applied: {failure}");
        assert!(!failure.is_retryable(), "{delivery}");
        assert_eq!(outcome.failed_from(), Some(0), "{delivery}");
        let (positions, causes) = refusals(outcome);
        assert_eq!(positions, vec![0, 2], "{delivery}");
        for (cause, course_id) in causes.iter().zip(["c1", "c2"]) {
            assert!(cause.contains(&format!("pk=`course#{course_id}` sk=`stats` is not tally's `stats`")), "{delivery}: {cause}");
            assert!(!cause.contains("note") && !cause.contains("Office") && !cause.contains("Reading"), "{delivery}: {cause}");
        }
        assert_eq!(outcome.count_of(RecordClass::Refused), 2, "{delivery}");
    }
    assert_eq!(first.count_of(RecordClass::Applied), 2);
    assert_eq!(again.count_of(RecordClass::AlreadyApplied), 2);
    let items = engine.store().items();
    assert_eq!(items.get(&ItemKey::from(&course("c1"))), Some(&note), "the application's item, untouched");
    assert_eq!(items.get(&ItemKey::from(&course("c2"))), Some(&untyped), "the application's item, untouched");
    assert_eq!(held(engine.store()), expected(&[batch[1].clone(), batch[3].clone()]));
}

#[tokio::test(start_paused = true)]
async fn one_item_that_cannot_be_read_costs_a_bisection_not_a_read_per_item() {
    let batch: Vec<Rec> = (0..64).map(|i| Rec::insert(i + 1, enrollment(&format!("c{i}"), &format!("s{i}")))).collect();
    let engine = Engine::new(university(), memory_table());
    let note = item(json!({"pk": {"S": "course#c40"}, "sk": {"S": "stats"}, "entityType": {"S": "note"}}));
    engine.store().put_item(ItemKey::from(&course("c40")), note);

    let outcome = engine.process(&changes(&batch), ample()).await;

    assert_eq!(refusals(&outcome).0, vec![40]);
    assert_eq!(outcome.count_of(RecordClass::Applied), 63);
    // The batch's read, halves down to the one item (2 reads per level, 6 levels), and the
    // commits (63 ledgers and 63 aggregates: two transactions, a third at most): 16, where a
    // read per item took 68.
    assert!(outcome.usage.requests <= 1 + 2 * 6 + 3, "{:?}", outcome.usage);
}

#[tokio::test(start_paused = true)]
async fn an_application_item_with_a_string_under_a_fields_name_is_refused_not_corrupt() {
    let note = item(json!({"pk": {"S": "course#c1"}, "sk": {"S": "stats"}, "entityType": {"S": "note"}, "enrollmentCount": {"S": "many"}}));
    let batch = [Rec::insert(1, enrollment("c2", "s1")), Rec::insert(2, enrollment("c1", "s2")), Rec::insert(3, enrollment("c2", "s3"))];
    let engine = Engine::new(university(), memory_table());
    engine.store().put_item(ItemKey::from(&course("c1")), note.clone());

    let outcome = engine.process(&changes(&batch), ample()).await;

    let failure = outcome.failure.as_ref().expect("the refused record is reported");
    assert!(failure.cause.is_none(), "not the whole batch: {failure}");
    let (positions, causes) = refusals(&outcome);
    assert_eq!(positions, vec![1]);
    assert!(causes[0].contains("is not tally's `stats`") && !causes[0].contains("many"), "{}", causes[0]);
    assert_eq!(outcome.count_of(RecordClass::Applied), 2);
    assert_eq!(engine.store().items().get(&ItemKey::from(&course("c1"))), Some(&note));
    assert_eq!(held(engine.store()), expected(&[batch[0].clone(), batch[2].clone()]));
}

#[tokio::test(start_paused = true)]
async fn an_application_item_written_between_read_and_commit_is_not_overwritten() {
    // One commit for the whole batch, at 20 ms, after the read at 10 ms; at 15 ms the
    // application writes its own item at course c2's aggregate key.
    let batch = [Rec::insert(1, enrollment("c1", "s1")), Rec::insert(2, enrollment("c2", "s2")), Rec::insert(3, enrollment("c3", "s3"))];
    let engine = Engine::new(university(), memory_table().with_latency(LATENCY));
    let note = item(json!({"pk": {"S": "course#c2"}, "sk": {"S": "stats"}, "entityType": {"S": "note"}, "title": {"S": "Syllabus"}}));
    let application = async {
        tokio::time::sleep(LATENCY * 3 / 2).await;
        engine.store().put_item(ItemKey::from(&course("c2")), note.clone());
    };
    let changes = changes(&batch);

    let (outcome, ()) = tokio::join!(engine.process(&changes, ample()), application);

    let failure = outcome.failure.as_ref().expect("the refused record is reported");
    assert!(failure.cause.is_none(), "{failure}");
    assert_eq!(refusals(&outcome).0, vec![1]);
    assert_eq!(outcome.count_of(RecordClass::Applied), 2);
    assert_eq!(outcome.retries, 0, "narrowed, not waited out");
    assert_eq!(engine.store().items().get(&ItemKey::from(&course("c2"))), Some(&note));
    assert_eq!(held(engine.store()), expected(&[batch[0].clone(), batch[2].clone()]));
}

#[tokio::test(start_paused = true)]
async fn a_corrupt_aggregate_sets_aside_only_the_records_that_need_it() {
    // tally's own type, but a field that is not a number.
    let corrupt = item(
        json!({"pk": {"S": "course#c1"}, "sk": {"S": "stats"}, "entityType": {"S": "stats"}, "version": {"N": "5"}, "enrollmentCount": {"S": "x"}}),
    );
    let batch = [
        Rec::insert(1, enrollment("c2", "s1")),
        Rec::insert(2, enrollment("c1", "s2")),
        Rec::insert(3, instructor("c1", "i1")),
        Rec::insert(4, enrollment("c3", "s3")),
    ];
    let engine = Engine::new(university(), memory_table());
    engine.store().put_item(ItemKey::from(&course("c1")), corrupt.clone());

    let outcome = engine.process(&changes(&batch), ample()).await;

    let failure = outcome.failure.as_ref().expect("the corrupt item's records are reported");
    assert!(failure.cause.is_none(), "every other item applied: {failure}");
    assert!(!failure.is_retryable());
    let (positions, causes) = refusals(&outcome);
    assert_eq!(positions, vec![1, 2]);
    assert!(causes.iter().all(|cause| cause == "item pk=`course#c1` sk=`stats` is corrupt: `enrollmentCount`: not a number"), "{causes:?}");
    assert_eq!((outcome.count_of(RecordClass::Applied), outcome.count_of(RecordClass::Refused)), (2, 2));
    let items = engine.store().items();
    assert_eq!(items.get(&ItemKey::from(&course("c1"))), Some(&corrupt));
    for course_id in ["c2", "c3"] {
        let stored = items.get(&ItemKey::from(&course(course_id))).expect("the other courses' records applied");
        let stored = engine.store().codec().read_aggregate(&course(course_id), stored).expect("tally's aggregate");
        assert_eq!(stored.values.get(field("enrollmentCount")), Number::one(), "{course_id}");
    }
    assert!(ledger(engine.store(), &key(&enrollment("c1", "s2"))).is_none(), "nothing of the refused items written");
}

/// Aggregates written before tally versioned its items carry its type but no `version`: they
/// are still tally's, and updated.
#[tokio::test(start_paused = true)]
async fn an_old_aggregate_of_tallys_type_without_a_version_is_still_updated() {
    let old = item(json!({"pk": {"S": "course#c1"}, "sk": {"S": "stats"}, "entityType": {"S": "stats"}, "enrollmentCount": {"N": "2"}}));
    let engine = Engine::new(university(), memory_table());
    engine.store().put_item(ItemKey::from(&course("c1")), old);

    let outcome = engine.process(&changes(&[Rec::insert(1, enrollment("c1", "s3"))]), ample()).await;

    assert!(outcome.failure.is_none(), "{:?}", outcome.failure);
    assert_eq!(count(engine.store(), &course("c1"), field("enrollmentCount")), Number::from(3));
    let stored = &engine.store().items()[&ItemKey::from(&course("c1"))];
    let stored = engine.store().codec().read_aggregate(&course("c1"), stored).expect("still tally's");
    assert_ne!(stored.version, 0, "versioned from now on");
}
