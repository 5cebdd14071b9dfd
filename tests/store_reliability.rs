//! The holes a hostile review found, each closed and kept closed, on DynamoDB Local: another
//! table's records, inputs DynamoDB cannot store (the university contract's limits, and poison no
//! rule foresaw), two writers on one item while TTL deletes its ledger, and backfill racing TTL.
#![cfg(feature = "dynamodb-local")]

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aggregates::{AggregateKey, Rules};
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::{json, Value};
use support::images::*;
use support::{aggregate, apply, drift, drop_table, fresh_table, number, records, Rec};
use tally_engine::decode::decode_batch;
use tally_engine::items::ItemKey;
use tally_engine::items::{AggregateWrite, Ledger, LedgerWrite};
use tally_engine::outcome::RecordClass;
use tally_engine::store::{Commit, DynamoTable, Found, Store, StoreError, Usage, Writer};
use tally_engine::Engine;
use tokio::sync::Notify;

#[tokio::test]
async fn a_record_of_another_table_is_skipped_whatever_its_keys_are_called() {
    let table = fresh_table().await;
    let engine = Engine::new(support::university(), table.clone());
    let enrolled = enrollment("c1", "s1", "2026-03-01T10:00:00Z");
    let mut batch =
        records(&[Rec::insert(1, enrolled.clone()), Rec::insert(3, enrollment("c1", "s2", "2026-03-01T10:00:00Z"))], table.name());
    // A captured record of another table, whose only key is `id`.
    let foreign: aws_lambda_events::event::dynamodb::EventRecord = serde_json::from_value(json!({
        "eventID": "foreign-1", "eventName": "INSERT", "eventVersion": "1.1", "eventSource": "aws:dynamodb", "awsRegion": "us-east-1",
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:000000000000:table/orders/stream/2026-11-22T00:00:00.000",
        "dynamodb": {"Keys": {"id": {"N": "42"}}, "NewImage": {"id": {"N": "42"}, "entityType": {"S": "student"}},
                     "SequenceNumber": "400000000000000000002", "SizeBytes": 20, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    }))
    .unwrap();
    batch.insert(1, foreign);
    let changes = decode_batch(&batch, table.name(), Rules::university()).expect("another table's record does not fail the batch");
    let outcome = engine.process(&changes, tokio::time::Instant::now() + Duration::from_secs(60)).await;
    assert_eq!(outcome.failed_from(), None, "{outcome:?}");
    assert_eq!(
        (outcome.by_class.get(&RecordClass::OtherTable), outcome.by_class.get(&RecordClass::Applied)),
        (Some(&1), Some(&2)),
        "{outcome:?}"
    );
    assert_eq!(number(&aggregate(&table, "course#c1", "stats").await, "enrollmentCount").as_deref(), Some("2"));
    drop_table(&table).await;
}

/// A string of exactly `bytes` UTF-8 bytes, with multi-byte characters (limits are in bytes).
fn id_of_bytes(bytes: usize) -> String {
    let mut id = "é".repeat(bytes / 2);
    id.push_str(&"x".repeat(bytes % 2));
    assert_eq!(id.len(), bytes);
    id
}

#[tokio::test]
async fn ids_and_numbers_at_every_limit_apply_past_it_are_rejected_and_block_nothing() {
    let table = fresh_table().await;
    let engine = Engine::new(support::university(), table.clone());
    let day = "2026-03-01";
    let at = "2026-03-01T10:00:00Z";
    // At each limit: stored, counted, beside ordinary items that share its aggregates.
    let long_pk = format!("course#{}", id_of_bytes(1984 - "course#".len()));
    let mut at_pk = instructor("c1", "i1");
    at_pk["pk"] = json!({"S": long_pk});
    // The aggregates follow the `studentID` / `assignmentID` attributes, not the ids in `sk`.
    let short_sk = |mut image: Value, sk: &str| {
        image["sk"] = json!({"S": sk});
        image
    };
    let at_limits = vec![
        short_sk(enrollment("c1", &id_of_bytes(2048 - "user#".len()), at), "student#long"),
        short_sk(
            submission("c1", &id_of_bytes(1024 - "stats#assignment#".len()), "s1", at, Some(n("99999999999999999999.99999999"))),
            "submission#long#s1",
        ),
        at_pk,
        order("u1", day, "o-big", "99999999999999999999.99999999"),
        order("u1", day, "o-small", "0.00000001"),
        transaction("u1", day, "t-big", "-99999999999999999999"),
    ];
    // Past each limit (the university contract's key_too_long, out_of_range): rejected, and
    // nothing else blocked.
    let mut past_pk = instructor("c1", "i2");
    past_pk["pk"] = json!({"S": format!("course#{}", id_of_bytes(2040 - "course#".len()))});
    let mut past_sk = instructor("c1", "i3");
    past_sk["sk"] = json!({"S": format!("instructor#{}", id_of_bytes(961 - "instructor#".len()))});
    let past_limits = vec![
        short_sk(enrollment("c1", &id_of_bytes(2044), at), "student#longer"),
        short_sk(submission("c1", &id_of_bytes(1008), "s1", at, Some(n("90"))), "submission#longer#s1"),
        past_pk,
        past_sk,
        order("u1", day, "o-huge", "1E+37"),
        submission("c1", "a1", "s2", at, Some(n("2E+35"))),
        order("u1", day, "o-fine", "0.000000001"),
    ];
    let ordinary = vec![
        enrollment("c1", "s1", at),
        submission("c1", "a1", "s1", at, Some(n("80"))),
        order("u1", day, "o1", "0.01"),
        transaction("u1", day, "t1", "5"),
    ];
    let mut recs = Vec::new();
    for (sequence, image) in ordinary.iter().chain(&past_limits).chain(&at_limits).enumerate() {
        recs.push(Rec::insert(sequence as u64 + 1, image.clone()));
    }
    let outcome = apply(&engine, table.name(), &recs).await;
    assert_eq!(outcome.failed_from(), None, "{outcome:?}");
    assert_eq!(outcome.rejected.get("key_too_long"), Some(&4), "{outcome:?}");
    assert_eq!(outcome.rejected.get("out_of_range"), Some(&3), "{outcome:?}");
    let day_stats = aggregate(&table, "stats#university", "day#2026-03-01").await;
    assert_eq!(number(&day_stats, "orderTotal").as_deref(), Some("100000000000000000000.01"));
    assert_eq!(number(&aggregate(&table, "course#c1", "stats").await, "enrollmentCount").as_deref(), Some("2"));
    let finals: Vec<Value> = ordinary.into_iter().chain(past_limits).chain(at_limits).collect();
    let drift = drift(&table, Rules::university(), &finals).await;
    assert!(drift.is_empty(), "{drift:?}");
    drop_table(&table).await;
}

/// A table that makes DynamoDB itself refuse what concerns items whose `pk` holds `poison`, as it
/// would for a limit the university contract failed to foresee: their reads gain a key past the
/// partition key limit, and so does their aggregate's write. Both are the service's own `ValidationException`.
#[derive(Debug)]
struct Poisoned {
    inner: DynamoTable,
    reads: bool,
}

const POISON: &str = "poison";

impl Store for Poisoned {
    async fn read(&self, sources: &[ItemKey], aggregates: &[AggregateKey]) -> Result<Found, StoreError> {
        let mut sources = sources.to_vec();
        if self.reads && (sources.iter().any(|key| key.pk.contains(POISON)) || aggregates.iter().any(|key| key.pk.contains(POISON))) {
            sources.push(ItemKey { pk: "p".repeat(2049), sk: "s".into() });
        }
        self.inner.read(&sources, aggregates).await
    }

    async fn commit(&self, commit: Commit<'_>) -> Result<(), StoreError> {
        // The poisoned item's aggregate gains a partition key past DynamoDB's 2,048 bytes.
        let course = Rules::university().parse_key("course#c", "stats").expect("the course aggregate's key").kind;
        let aggregates: Vec<AggregateWrite> = commit
            .aggregates
            .iter()
            .cloned()
            .map(|mut write| {
                if write.key.kind == course && write.key.pk.contains(POISON) {
                    write.key.pk.push_str(&"x".repeat(2049));
                }
                write
            })
            .collect();
        self.inner.commit(Commit { aggregates: &aggregates, ..commit }).await
    }

    fn usage(&self) -> Usage {
        self.inner.usage()
    }

    fn table_name(&self) -> &str {
        self.inner.table_name()
    }
}

async fn one_poisoned_item_holds_back_nothing_else(reads: bool) {
    let table = fresh_table().await;
    let engine = Engine::new(support::university(), Poisoned { inner: table.clone(), reads });
    let at = "2026-03-01T10:00:00Z";
    let mut images: Vec<Value> = (0..6).map(|i| enrollment("c1", &format!("s{i}"), at)).collect();
    images.insert(3, enrollment(POISON, "s9", at));
    images.extend((0..4).map(|i| order("u1", "2026-03-01", &format!("o{i}"), "2.5")));
    let recs: Vec<Rec> = images.iter().enumerate().map(|(i, image)| Rec::insert(i as u64 + 1, image.clone())).collect();

    let outcome = apply(&engine, table.name(), &recs).await;
    assert_eq!(outcome.failed_from(), Some(3), "reported from the poisoned record: {outcome:?}");
    assert_eq!(
        (outcome.by_class.get(&RecordClass::Applied), outcome.by_class.get(&RecordClass::Refused)),
        (Some(&10), Some(&1)),
        "{outcome:?}"
    );
    let failure = outcome.failure.as_ref().expect("the poisoned item is reported").to_string();
    assert!(
        failure.contains("refused by DynamoDB for good") && failure.contains("every other item applied; retrying them cannot help"),
        "{failure}"
    );
    assert!(failure.contains("record 3 (eventID `event-4`): DynamoDB refused"), "{failure}");
    assert_eq!(outcome.failure.as_ref().map(|failure| failure.refused[0].key.pk.as_str()), Some("course#poison"));
    let fine: Vec<Value> = images.iter().filter(|image| image["pk"]["S"] != "course#poison").cloned().collect();
    assert!(drift(&table, Rules::university(), &fine).await.is_empty(), "every other item applied");

    // Lambda redelivers from the failure point: the others are already applied, the poison fails alike.
    let again = apply(&engine, table.name(), &recs[3..]).await;
    assert_eq!(again.failed_from(), Some(0), "{again:?}");
    assert_eq!(
        (again.by_class.get(&RecordClass::AlreadyApplied), again.by_class.get(&RecordClass::Refused)),
        (Some(&7), Some(&1)),
        "{again:?}"
    );
    assert!(drift(&table, Rules::university(), &fine).await.is_empty());
    drop_table(&table).await;
}

#[tokio::test]
async fn a_commit_dynamodb_refuses_for_one_item_is_narrowed_to_it() {
    one_poisoned_item_holds_back_nothing_else(false).await;
}

#[tokio::test]
async fn a_read_dynamodb_refuses_for_one_item_is_narrowed_to_it() {
    one_poisoned_item_holds_back_nothing_else(true).await;
}

/// Holds the first commit until told to go on: a writer paused between its read and its commit.
#[derive(Debug)]
struct Paused {
    inner: DynamoTable,
    held: AtomicBool,
    reached: Notify,
    resume: Notify,
}

impl Store for Paused {
    async fn read(&self, sources: &[ItemKey], aggregates: &[AggregateKey]) -> Result<Found, StoreError> {
        self.inner.read(sources, aggregates).await
    }

    async fn commit(&self, commit: Commit<'_>) -> Result<(), StoreError> {
        if !self.held.swap(true, Ordering::SeqCst) {
            self.reached.notify_one();
            self.resume.notified().await;
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

async fn delete_ledger(table: &DynamoTable, item: &ItemKey) {
    let key = tally_engine::registry::ledger_key(Rules::university().table(), item);
    support::client()
        .await
        .delete_item()
        .table_name(table.name())
        .key("pk", AttributeValue::S(key.pk))
        .key("sk", AttributeValue::S(key.sk))
        .condition_expression("attribute_exists(pk)")
        .send()
        .await
        .expect("the ledger exists, and TTL deletes it");
}

#[tokio::test]
async fn a_ledger_recreated_after_ttl_never_passes_for_the_one_another_writer_read() {
    // The live lane (A) and an operator's redrive (B) both bring record 2 of one enrollment, which
    // moves it from 1 March to 2 March. B reads the ledger, TTL deletes it (late, as it may), A
    // applies record 2 without a ledger and creates a new one, then B commits.
    let table = fresh_table().await;
    let live = Engine::new(support::university(), table.clone());
    let redrive = Engine::new(
        support::university(),
        Paused { inner: table.clone(), held: AtomicBool::new(false), reached: Notify::new(), resume: Notify::new() },
    );
    let first = enrollment("c1", "s1", "2026-03-01T10:00:00Z");
    let moved = enrollment("c1", "s1", "2026-03-02T10:00:00Z");
    assert_eq!(apply(&live, table.name(), &[Rec::insert(1, first.clone())]).await.failed_from(), None);
    let record = [Rec::modify(2, first, moved.clone())];
    let item = ItemKey { pk: "course#c1".into(), sk: "student#s1".into() };
    let (b, ()) = tokio::join!(apply(&redrive, table.name(), &record), async {
        redrive.store().reached.notified().await;
        delete_ledger(&table, &item).await;
        assert_eq!(apply(&live, table.name(), &record).await.failed_from(), None);
        redrive.store().resume.notify_one();
    });
    assert_eq!(b.failed_from(), None, "{b:?}");
    let day = |day: &'static str| {
        let table = table.clone();
        async move { number(&aggregate(&table, "stats#university", &format!("day#{day}")).await, "enrollments") }
    };
    assert_eq!((day("2026-03-01").await.as_deref(), day("2026-03-02").await.as_deref()), (Some("0"), Some("1")));
    assert!(drift(&table, Rules::university(), &[moved]).await.is_empty());
    drop_table(&table).await;
}

async fn read_ledger(table: &DynamoTable, item: &ItemKey) -> Option<Ledger> {
    table.read(std::slice::from_ref(item), &[]).await.unwrap().ledgers.remove(item)
}

/// Commits one ledger reset as backfill does.
async fn backfill(table: &DynamoTable, write: &LedgerWrite) -> anyhow::Result<()> {
    let commit = Commit { ledgers: std::slice::from_ref(write), aggregates: &[], writer: Writer::Backfill { run: None } };
    Ok(tally_jobs::backfill::commit(table, Rules::university(), commit).await?)
}

#[tokio::test]
async fn backfill_writes_its_reset_of_a_ledger_ttl_deleted_after_the_scan() {
    let table = fresh_table().await;
    let engine = Engine::new(support::university(), table.clone());
    let enrolled = enrollment("c1", "s1", "2026-03-01T10:00:00Z");
    apply(&engine, table.name(), &[Rec::insert(1, enrolled.clone())]).await;
    let item = ItemKey { pk: "course#c1".into(), sk: "student#s1".into() };
    let scanned = read_ledger(&table, &item).await.expect("the stream wrote a ledger");
    // Backfill's reset of that ledger, conditioned on the version it scanned.
    let reset = |scanned: &Ledger| {
        let ledger = Ledger { version: scanned.version + 1, assumed: None, ..scanned.clone() };
        LedgerWrite { item: item.clone(), expected_version: Some(scanned.version), ledger }
    };
    let write = reset(&scanned);
    delete_ledger(&table, &item).await;
    backfill(&table, &write).await.expect("a ledger TTL deleted is not a race");
    let written = read_ledger(&table, &item).await.expect("the reset is written as a new ledger");
    assert_eq!((&written.sequence, &written.contribution, written.assumed.is_none()), (&scanned.sequence, &scanned.contribution, true));
    assert_ne!(written.version, scanned.version + 1, "a new incarnation, at a version of its own");

    // A ledger that moved on, though, is a writer racing backfill: refused, naming the item.
    let write = reset(&written);
    apply(&engine, table.name(), &[Rec::modify(2, enrolled, enrollment("c1", "s1", "2026-03-02T10:00:00Z"))]).await;
    let err = backfill(&table, &write).await.unwrap_err().to_string();
    assert!(err.contains("1 item(s) changed while backfill ran") && err.contains("pk=`tally#ledger#course#c1` sk=`student#s1`"), "{err}");
    drop_table(&table).await;
}

#[tokio::test]
async fn only_the_backfill_that_set_the_mark_clears_it() {
    use tally_jobs::backfill::in_progress::{begin, finish, unfinished, Owner};
    let table = fresh_table().await;
    assert_eq!(unfinished(&table).await.unwrap(), None);
    begin(&table, &Owner::Invocation("a")).await.unwrap();
    // A second backfill starts while the first still writes; the first then finishes.
    begin(&table, &Owner::Run("r1")).await.unwrap();
    let err = finish(&table, &Owner::Invocation("a")).await.unwrap_err();
    assert!(format!("{err:#}").contains("another backfill has started since and owns the mark"), "{err:#}");
    let left = unfinished(&table).await.unwrap().expect("still marked: the second has not finished");
    assert_eq!(left.run.as_deref(), Some("r1"));
    finish(&table, &Owner::Run("r1")).await.unwrap();
    assert_eq!(unfinished(&table).await.unwrap(), None);
    drop_table(&table).await;
}
