//! The oracle property: whatever the delivery schedule, every aggregate in the table equals a
//! recompute from the final source items.
//!
//! Random histories of source items (inserts, overwrites, regrades, moves between assignments,
//! deletes, TTL deletes, invalid images) become stream records with increasing sequence numbers,
//! spread over three shards by partition key as DynamoDB does, and within a shard over up to three
//! lanes (ParallelizationFactor: one key's records stay in order on one lane). Each lane is fed to
//! its own engine by a simulated event source mapping that redelivers whole batches, retries from
//! the reported failure point, bisects after a crash between two commits, redelivers stale batches
//! after newer ones and loses responses to applied writes, and discards batches to the failure
//! destination. An operator's redrive of each discarded range, oldest known first, runs while the
//! lanes do: the range is the shard's, so it re-applies other lanes' records too, and two writers
//! work on one item. Every lane and redrive runs concurrently against one DynamoDB Local table.
//! Some cases cap transactions at a few puts, so that one batch is several commits and a crash can
//! fall between them.
//!
//! A history comes in two epochs. Between them every ledger expires, as TTL deletes it 48 h after
//! its item's last write: the deletions land at random while the second epoch runs (between a
//! writer's read and its commit, too), conditioned as TTL's are on the ledger not having been
//! written since, and the second epoch touches the same items again.
//!
//! `TALLY_ORACLE_CASES` sets the number of cases (default 150, as `make test` runs it).
#![cfg(feature = "dynamodb-local")]

mod support;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aggregates::Rules;
use aws_sdk_dynamodb::types::AttributeValue;
use proptest::prelude::*;
use serde_json::Value;
use support::faults::{Fault, FaultyTable};
use support::history::{op, records_after, Dice};
use support::{apply, drift, drop_table, fresh_table, scan, Rec};
use tally_engine::outcome::RecordClass;
use tally_engine::store::DynamoTable;
use tally_engine::Engine;

const MAX_LANES: usize = 3;

/// What every case of the run exercised, printed once after the last case.
#[derive(Debug)]
struct Exercised {
    cases: AtomicU64,
    records: AtomicU64,
    lanes: AtomicU64,
    batches: AtomicU64,
    crashes_between_commits: AtomicU64,
    failure_point_retries: AtomicU64,
    lost_responses: AtomicU64,
    stale_redeliveries: AtomicU64,
    whole_redeliveries: AtomicU64,
    discarded: AtomicU64,
    redriven: AtomicU64,
    ledgers_expired: AtomicU64,
}

static EXERCISED: Exercised = Exercised {
    cases: AtomicU64::new(0),
    records: AtomicU64::new(0),
    lanes: AtomicU64::new(0),
    batches: AtomicU64::new(0),
    crashes_between_commits: AtomicU64::new(0),
    failure_point_retries: AtomicU64::new(0),
    lost_responses: AtomicU64::new(0),
    stale_redeliveries: AtomicU64::new(0),
    whole_redeliveries: AtomicU64::new(0),
    discarded: AtomicU64::new(0),
    redriven: AtomicU64::new(0),
    ledgers_expired: AtomicU64::new(0),
};

fn count(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

impl Exercised {
    fn report(&self) {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        eprintln!(
            "oracle: {} cases, {} records over {} lanes, {} deliveries: {} crashes between two commits then bisection, {} retries \
             from a failure point, {} batches with lost responses and resets, {} stale redeliveries, {} whole redeliveries, {} \
             batches discarded and {} ranges redriven while lanes ran, {} ledgers expired mid-run; drift 0",
            get(&self.cases),
            get(&self.records),
            get(&self.lanes),
            get(&self.batches),
            get(&self.crashes_between_commits),
            get(&self.failure_point_retries),
            get(&self.lost_responses),
            get(&self.stale_redeliveries),
            get(&self.whole_redeliveries),
            get(&self.discarded),
            get(&self.redriven),
            get(&self.ledgers_expired),
        );
    }
}

/// The lane of its shard a partition key's records go to.
fn lane_of(pk: &str, lanes: usize) -> usize {
    pk.bytes().fold(7usize, |hash, byte| hash.wrapping_mul(31).wrapping_add(usize::from(byte))) % lanes
}

/// The shard positions a failure message names: the first and last sequence number of the batch.
#[derive(Debug, Clone, Copy)]
struct Range {
    first: u64,
    last: u64,
}

/// What the lanes of one shard share: its records, and its failure destination.
struct Shard<'a> {
    recs: &'a [Rec],
    discarded: RefCell<Vec<Range>>,
    lanes_running: Cell<usize>,
    /// Whether any batch of the case has been discarded yet.
    case_discarded: &'a Cell<bool>,
}

/// `tally redrive` of one shard's failure destination, while its lanes run: each range, oldest
/// known first, read back from the shard (every lane's records in it), until the lanes are done
/// and nothing is left.
async fn redrive(engine: &Engine<DynamoTable>, table: &str, shard: &Shard<'_>) {
    loop {
        let next = {
            let mut discarded = shard.discarded.borrow_mut();
            let oldest = discarded.iter().enumerate().min_by_key(|(_, range)| range.first).map(|(index, _)| index);
            oldest.map(|index| discarded.remove(index))
        };
        match next {
            Some(range) => {
                count(&EXERCISED.redriven, 1);
                let recs: Vec<Rec> = shard.recs.iter().filter(|rec| (range.first..=range.last).contains(&rec.sequence)).cloned().collect();
                let outcome = apply(engine, table, &recs).await;
                assert_eq!(outcome.failed_from(), None, "{outcome:?}");
            }
            None if shard.lanes_running.get() == 0 => return,
            None => tokio::time::sleep(Duration::from_millis(2)).await,
        }
    }
}

/// Feeds one lane of a shard to its engine the way Lambda's event source mapping may.
async fn deliver_lane(engine: &Engine<FaultyTable>, table: &str, recs: &[Rec], dice: &mut Dice<'_>, max_batch: usize, shard: &Shard<'_>) {
    // A crash after the batch's first `commits` transactions (when it has that many).
    let crash_after = |commits: usize| std::iter::repeat_n(None, commits).chain([Some(Fault::Reject)]);
    let mut position = 0;
    let mut delivered: Vec<(usize, usize)> = Vec::new();
    while position < recs.len() {
        let end = (position + 1 + dice.roll(max_batch)).min(recs.len());
        let batch = &recs[position..end];
        count(&EXERCISED.batches, 1);
        match dice.roll(9) {
            // A crash between two commits (function error): Lambda bisects and delivers each half in turn.
            0 if batch.len() > 1 => {
                count(&EXERCISED.crashes_between_commits, 1);
                engine.store().reset(crash_after(dice.roll(3)));
                apply(engine, table, batch).await;
                engine.store().reset([]);
                let half = batch.len() / 2;
                for part in [&batch[..half], &batch[half..]] {
                    let outcome = apply(engine, table, part).await;
                    assert_eq!(outcome.failed_from(), None, "{outcome:?}");
                }
                position = end;
            }
            // A commit rejected after others landed: retry from the reported failure point.
            1 => {
                count(&EXERCISED.failure_point_retries, 1);
                engine.store().reset(crash_after(dice.roll(3)));
                let outcome = apply(engine, table, batch).await;
                engine.store().reset([]);
                position += outcome.failed_from().unwrap_or(batch.len());
            }
            // A response lost after the write landed, or a connection reset before it.
            2 => {
                count(&EXERCISED.lost_responses, 1);
                engine.store().reset([Some(Fault::LoseResponse), Some(Fault::FailBefore), None, Some(Fault::LoseResponse)]);
                let outcome = apply(engine, table, batch).await;
                engine.store().reset([]);
                assert_eq!(outcome.failed_from(), None, "{outcome:?}");
                position = end;
            }
            // A stale batch, delivered again after newer ones were applied.
            3 if !delivered.is_empty() => {
                count(&EXERCISED.stale_redeliveries, 1);
                let (from, to) = delivered[dice.roll(delivered.len())];
                let outcome = apply(engine, table, &recs[from..to]).await;
                assert_eq!(outcome.failed_from(), None, "{outcome:?}");
                // Once a batch has been discarded, an older record may legitimately correct an
                // assumed baseline (docs/design.md, "Assumed baselines"); before, it is a no-op.
                if !shard.case_discarded.get() {
                    assert_eq!(outcome.by_class.get(&RecordClass::Applied), None, "a stale batch applies nothing: {outcome:?}");
                }
            }
            // The whole batch retried after it succeeded (its response to Lambda was lost).
            4 => {
                count(&EXERCISED.whole_redeliveries, 1);
                for _ in 0..2 {
                    let outcome = apply(engine, table, batch).await;
                    assert_eq!(outcome.failed_from(), None, "{outcome:?}");
                }
                delivered.push((position, end));
                position = end;
            }
            // Retries exhausted: the batch's shard positions go to the failure destination.
            5 => {
                count(&EXERCISED.discarded, 1);
                shard.case_discarded.set(true);
                shard.discarded.borrow_mut().push(Range { first: batch[0].sequence, last: batch[batch.len() - 1].sequence });
                position = end;
            }
            _ => {
                let outcome = apply(engine, table, batch).await;
                assert_eq!(outcome.failed_from(), None, "{outcome:?}");
                delivered.push((position, end));
                position = end;
            }
        }
    }
}

/// Delivers one epoch's shards: every lane and every shard's redrive concurrently.
async fn deliver(table: &DynamoTable, shards: &[Vec<Rec>], dice: &[u8], epoch: usize, case: &Case) {
    let name = table.name();
    let case_discarded = Cell::new(false);
    let shards: Vec<Shard<'_>> = shards
        .iter()
        .map(|recs| Shard { recs, discarded: RefCell::default(), lanes_running: Cell::new(case.lanes), case_discarded: &case_discarded })
        .collect();
    let mut work = Vec::new();
    count(&EXERCISED.lanes, (shards.len() * case.lanes) as u64);
    for (number, shard) in shards.iter().enumerate() {
        count(&EXERCISED.records, shard.recs.len() as u64);
        let mut lanes: Vec<Vec<Rec>> = vec![Vec::new(); case.lanes];
        for rec in shard.recs {
            let image = rec.new.as_ref().or(rec.old.as_ref()).expect("a record has an image");
            lanes[lane_of(image["pk"]["S"].as_str().unwrap(), case.lanes)].push(rec.clone());
        }
        for (lane, recs) in lanes.into_iter().enumerate() {
            let engine =
                Engine::new(support::university(), FaultyTable::new(table.clone(), [])).with_transaction_limit(case.transaction_limit);
            work.push(Box::pin(async move {
                let mut dice = Dice { faces: dice, next: epoch * 11 + number * 7 + lane * 3 };
                deliver_lane(&engine, name, &recs, &mut dice, case.max_batch, shard).await;
                shard.lanes_running.set(shard.lanes_running.get() - 1);
            }) as std::pin::Pin<Box<dyn std::future::Future<Output = ()> + '_>>);
        }
        let engine = Engine::new(support::university(), table.clone());
        work.push(Box::pin(async move { redrive(&engine, name, shard).await }));
    }
    futures::future::join_all(work).await;
}

/// Every ledger in the table with its version, to expire.
async fn ledgers(table: &DynamoTable) -> Vec<(String, String, String)> {
    let text = |item: &tally_engine::store::SdkItem, name: &str| match item.get(name) {
        Some(AttributeValue::S(value) | AttributeValue::N(value)) => value.clone(),
        _ => String::new(),
    };
    scan(&support::client().await, table.name())
        .await
        .iter()
        .filter(|item| text(item, "pk").starts_with("tally#ledger#"))
        .map(|item| (text(item, "pk"), text(item, "sk"), text(item, "version")))
        .collect()
}

/// TTL's deletion of each ledger, in the dice's order and at the dice's moments; like TTL's, it
/// deletes only a ledger not written since it expired.
async fn expire(table: &DynamoTable, ledgers: Vec<(String, String, String)>, dice: &mut Dice<'_>) -> usize {
    let mut deleted = 0;
    let client = support::client().await;
    for (pk, sk, version) in ledgers {
        tokio::time::sleep(Duration::from_millis(dice.roll(15) as u64)).await;
        let result = client
            .delete_item()
            .table_name(table.name())
            .key("pk", AttributeValue::S(pk))
            .key("sk", AttributeValue::S(sk))
            .condition_expression("version = :read")
            .expression_attribute_values(":read", AttributeValue::N(version))
            .send()
            .await;
        match result {
            Ok(_) => deleted += 1,
            Err(err) if err.as_service_error().is_some_and(|err| err.is_conditional_check_failed_exception()) => {}
            Err(err) => panic!("expiring a ledger: {err:?}"),
        }
    }
    deleted
}

/// The knobs one case draws.
#[derive(Debug, Clone, Copy)]
struct Case {
    max_batch: usize,
    transaction_limit: usize,
    lanes: usize,
}

fn cases() -> u32 {
    std::env::var("TALLY_ORACLE_CASES").ok().and_then(|cases| cases.parse().ok()).unwrap_or(150)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), max_shrink_iters: 200, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn aggregates_equal_a_recompute_whatever_the_delivery(
        first_epoch in prop::collection::vec(op(), 1..40),
        second_epoch in prop::collection::vec(op(), 0..30),
        dice in prop::collection::vec(any::<u8>(), 16..128),
        max_batch in 1usize..12,
        transaction_limit in prop_oneof![Just(100usize), 2usize..8],
        lanes in 1..=MAX_LANES,
    ) {
        let case = Case { max_batch, transaction_limit, lanes };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let drift = runtime.block_on(async {
            let table = fresh_table().await;
            let mut state: BTreeMap<usize, Value> = BTreeMap::new();
            let shards = records_after(&first_epoch, &mut state, 1000);
            deliver(&table, &shards, &dice, 0, &case).await;
            let expiring = ledgers(&table).await;
            let shards = records_after(&second_epoch, &mut state, 2000);
            let mut expiry_dice = Dice { faces: &dice, next: 5 };
            let ((), expired) = tokio::join!(deliver(&table, &shards, &dice, 1, &case), expire(&table, expiring, &mut expiry_dice));
            count(&EXERCISED.ledgers_expired, expired as u64);
            let finals: Vec<Value> = state.into_values().collect();
            let drift = drift(&table, Rules::university(), &finals).await;
            drop_table(&table).await;
            drift
        });
        prop_assert!(drift.is_empty(), "drift: {}", drift.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"));
        if EXERCISED.cases.fetch_add(1, Ordering::Relaxed) + 1 == u64::from(cases()) {
            EXERCISED.report();
        }
    }
}
