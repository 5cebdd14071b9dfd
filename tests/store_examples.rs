//! The example rule sets end to end against DynamoDB Local: each table created from its rules
//! (`tally init`'s schema), its seed-style workload delivered at least once through the engine
//! (retries from the failure point, whole retries, bisections, stale batches and records, and
//! every ledger expired between the two epochs, as TTL does), then the oracle: what the table's
//! aggregates hold is a recompute from the final items, by the same rules.
//!
//! The workloads, the delivery schedules and the seeded dice are `aggregates`' own
//! (aggregates/tests/examples_support), where the same histories run through a model of tally.
#![cfg(feature = "dynamodb-local")]

// Shared with aggregates/tests/rules_examples.rs, which uses the rest of it.
#[allow(dead_code)]
#[path = "../aggregates/tests/examples_support/mod.rs"]
mod examples_support;

#[path = "support/stream_records.rs"]
mod stream_records;

use std::time::Duration;

use std::sync::Arc;

use aggregates::Rules;
use aws_lambda_events::event::dynamodb::EventRecord;
use examples_support::delivery::schedule;
use examples_support::dice::Dice;
use examples_support::workload::Workload;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use stream_records::event_record;
use tally_engine::decode::decode_batch;
use tally_engine::outcome::RecordClass;
use tally_engine::registry::LEDGER;
use tally_engine::store::{connect, schema, DynamoTable};
use tally_engine::Engine;
use tally_jobs::audit::{Audit, Keep};

/// Cases per rule set; `TALLY_ORACLE_CASES` (the university oracle's) scales them for a soak.
fn cases() -> u32 {
    let university: u32 = std::env::var("TALLY_ORACLE_CASES").ok().and_then(|cases| cases.parse().ok()).unwrap_or(150);
    (university / 10).max(4)
}

async fn fresh_table(rules: &'static Rules, name: &str) -> DynamoTable {
    let name = format!("{name}-{}", uuid::Uuid::new_v4().simple());
    let table = DynamoTable::new(connect(None, None).await, name, Arc::new(rules.clone()));
    schema::create_table(&table).await.expect("creating a table on DynamoDB Local (is it running? use `make test`)");
    table
}

/// Deletes every ledger, as TTL does 48 h after each one's last write.
async fn expire_ledgers(table: &DynamoTable, rules: &Rules) -> usize {
    let rules = rules.table();
    let prefix = LEDGER.pk_prefix(rules);
    let client = connect(None, None).await;
    let items: Vec<_> = client.scan().table_name(table.name()).into_paginator().items().send().try_collect().await.expect("scanning");
    let mut expired = 0;
    for item in items {
        let key = |name: &str| item.get(name).and_then(|value| value.as_s().ok()).cloned().unwrap_or_default();
        if key(rules.pk()).starts_with(&prefix) {
            let (pk, sk) = (key(rules.pk()), key(rules.sk()));
            let delete = client.delete_item().table_name(table.name());
            let delete = delete.key(rules.pk(), aws_sdk_dynamodb::types::AttributeValue::S(pk));
            delete.key(rules.sk(), aws_sdk_dynamodb::types::AttributeValue::S(sk)).send().await.expect("deleting a ledger");
            expired += 1;
        }
    }
    expired
}

/// What one history did, to show the suite exercised what it claims.
#[derive(Debug, Default)]
struct Exercised {
    deliveries: usize,
    repeats: usize,
    applied: u64,
    already_applied: u64,
    expired_ledgers: usize,
    aggregates: usize,
}

async fn run(rules: &'static Rules, name: &str, workload: &Workload, delivery_seed: u64, expire: bool) -> Result<Exercised, TestCaseError> {
    let table = fresh_table(rules, name).await;
    let engine = Engine::new(Arc::new(rules.clone()), table.clone());
    let mut dice = Dice::new(delivery_seed);
    let mut exercised = Exercised::default();
    for (epoch, records) in workload.epochs().into_iter().enumerate() {
        if epoch == 1 && expire {
            exercised.expired_ledgers += expire_ledgers(&table, rules).await;
        }
        let schedule = schedule(records, &mut dice);
        exercised.deliveries += schedule.deliveries.len();
        exercised.repeats += schedule.repeats().into_iter().filter(|repeat| *repeat).count();
        // The deliveries in invocations of 1 to 25 records.
        let mut rest: &[usize] = &schedule.deliveries;
        while !rest.is_empty() {
            let (batch, after) = rest.split_at(dice.between(1, 25).min(rest.len()));
            rest = after;
            let events: Vec<EventRecord> = batch.iter().map(|&index| event_record(rules, table.name(), &records[index])).collect();
            let changes = decode_batch(&events, table.name(), rules).map_err(|err| TestCaseError::fail(err.to_string()))?;
            let outcome = engine.process(&changes, tokio::time::Instant::now() + Duration::from_secs(60)).await;
            prop_assert!(outcome.failure.is_none(), "{outcome:?}");
            exercised.applied += outcome.by_class.get(&RecordClass::Applied).copied().unwrap_or(0);
            exercised.already_applied += outcome.by_class.get(&RecordClass::AlreadyApplied).copied().unwrap_or(0);
        }
    }
    // The oracle: the aggregates and ledgers as scanned, against a recompute from the final
    // items (the table holds only tally's items: the stream here is synthesised).
    let mut audit = Audit::new(rules, Keep::Aggregates);
    table.scan_segment(0, 1, |page| page.into_iter().for_each(|item| audit.add(item))).await.expect("tally's items decode");
    prop_assert_eq!(audit.recompute.items, 0, "only tally's items are in the table");
    for item in workload.items.values() {
        audit.recompute.add_item(item);
    }
    let drift: Vec<String> = audit.drift().iter().map(ToString::to_string).collect();
    prop_assert!(drift.is_empty(), "{} record(s), {} deliveries: {:#?}", workload.records.len(), exercised.deliveries, drift);
    prop_assert!(audit.other_rules.is_empty(), "{:?}", audit.other_rules);
    exercised.aggregates = audit.stored.len();
    connect(None, None).await.delete_table().table_name(table.name()).send().await.expect("deleting the test table");
    Ok(exercised)
}

/// Runs `cases` histories of one rule set and checks the suite exercised redeliveries, expired
/// ledgers and aggregates that hold something.
fn oracle(rules: &'static Rules, name: &str, workload: fn(u64, usize) -> Workload) {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let mut runner = TestRunner::new(Config { cases: cases(), failure_persistence: None, ..Config::default() });
    let totals = std::cell::RefCell::new(Exercised::default());
    let strategy = (any::<u64>(), 20usize..150, any::<u64>(), any::<bool>());
    let result = runner.run(&strategy, |(seed, ops, delivery_seed, expire)| {
        let exercised = runtime.block_on(run(rules, name, &workload(seed, ops), delivery_seed, expire))?;
        let mut totals = totals.borrow_mut();
        totals.deliveries += exercised.deliveries;
        totals.repeats += exercised.repeats;
        totals.applied += exercised.applied;
        totals.already_applied += exercised.already_applied;
        totals.expired_ledgers += exercised.expired_ledgers;
        totals.aggregates += exercised.aggregates;
        Ok(())
    });
    if let Err(err) = result {
        panic!("{name}: {err}");
    }
    let totals = totals.into_inner();
    println!("{name}: {} histories, {totals:?}", cases());
    assert!(totals.repeats > 0 && totals.already_applied > 0, "redeliveries were exercised: {totals:?}");
    assert!(totals.expired_ledgers > 0, "expired ledgers were exercised: {totals:?}");
    assert!(totals.applied > 0 && totals.aggregates > 0, "aggregates were written: {totals:?}");
}

#[test]
fn learning_aggregates_equal_a_recompute_whatever_the_delivery() {
    oracle(examples_support::learning(), "learning", examples_support::learning::workload);
}

#[test]
fn marketplace_aggregates_equal_a_recompute_whatever_the_delivery() {
    oracle(examples_support::marketplace(), "marketplace", examples_support::marketplace::workload);
}
