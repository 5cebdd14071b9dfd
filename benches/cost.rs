//! What a batch costs in DynamoDB: requests, read and write units per record for the standard
//! mix, against DynamoDB Local. Counts, not timings, are the point: they are deterministic and
//! they are what the service bills. Wall-clock times are printed for orientation only.
//!
//! `make bench` (or, with DynamoDB Local running, `cargo bench --bench cost --features dynamodb-local`).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Instant;

use aggregates::Rules;
use support::images::*;
use support::{apply, drop_table, fresh_table, records, Rec};
use tally_engine::decode::decode_batch;
use tally_engine::plan::{group, needed_keys, plan, Snapshot, MAX_TRANSACTION_ACTIONS};
use tally_engine::Engine;

/// 100 records of a university day: enrollments, submissions (half graded), regrades, orders and
/// transactions, a few instructors and assignments, removals; 5 courses, 20 students, 10 users.
fn standard_mix(batch: u64) -> Vec<Rec> {
    let base = batch * 1_000;
    let day = format!("2026-03-0{}", batch % 3 + 1);
    let at = format!("{day}T10:00:00Z");
    let course = |i: u64| format!("c{}", i % 5);
    let student = |i: u64| format!("s{}", (batch * 7 + i) % 20);
    let mut recs = Vec::with_capacity(100);
    for i in 0..30 {
        recs.push(Rec::insert(base + i, enrollment(&course(i), &format!("{}-{batch}", student(i)), &at)));
    }
    let graded = |i: u64, grade: &str| submission(&course(i), &format!("a{batch}-{}", i % 3), &student(i), &at, Some(n(grade)));
    for i in 0..30 {
        let image = if i % 2 == 0 {
            graded(i, &format!("{}.5", 60 + i))
        } else {
            submission(&course(i), &format!("a{batch}-{}", i % 3), &student(i), &at, None)
        };
        recs.push(Rec::insert(base + 100 + i, image));
    }
    for i in 0..10 {
        let i2 = i * 2;
        recs.push(Rec::modify(base + 200 + i, graded(i2, &format!("{}.5", 60 + i2)), graded(i2, "88")));
    }
    for i in 0..10 {
        recs.push(Rec::insert(base + 300 + i, order(&format!("u{i}"), &day, &format!("o{batch}-{i}"), "19.99")));
        recs.push(Rec::insert(base + 400 + i, transaction(&format!("u{i}"), &day, &format!("t{batch}-{i}"), "-4.25")));
    }
    for i in 0..5 {
        recs.push(Rec::insert(base + 500 + i, instructor(&course(i), &format!("i{batch}"))));
    }
    for i in 0..5 {
        recs.push(Rec::remove(base + 600 + i, enrollment(&course(i), &format!("{}-{batch}", student(i)), &at)));
    }
    recs
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    runtime.block_on(async {
        let table = fresh_table().await;
        let engine = Engine::new(support::university(), table.clone());
        println!("standard mix, 100 records a batch, sequential, DynamoDB Local");
        println!("RCU/WCU: estimated from item sizes by DynamoDB's rules (strongly consistent reads, transactional writes);");
        println!("DynamoDB Local's ConsumedCapacity is not faithful. ms: wall clock on DynamoDB Local, for orientation only.");
        println!(
            "{:>5} {:>8} {:>5} {:>6} {:>6} {:>6} {:>10} {:>10} {:>8}",
            "batch", "records", "txns", "reqs", "RCU", "WCU", "reqs/rec", "WCU/rec", "ms"
        );
        let (mut records, mut requests, mut read_units, mut write_units) = (0u64, 0u64, 0u64, 0u64);
        for batch in 0..10 {
            let recs = standard_mix(batch);
            let started = Instant::now();
            let outcome = apply(&engine, table.name(), &recs).await;
            let elapsed = started.elapsed().as_millis();
            assert_eq!(outcome.failed_from(), None, "{outcome:?}");
            let usage = outcome.usage;
            let count = recs.len() as f64;
            println!(
                "{:>5} {:>8} {:>5} {:>6} {:>6} {:>6} {:>10.3} {:>10.2} {:>8}",
                batch,
                recs.len(),
                outcome.transactions,
                usage.requests,
                usage.estimated_read_units,
                usage.estimated_write_units,
                usage.requests as f64 / count,
                usage.estimated_write_units as f64 / count,
                elapsed
            );
            records += recs.len() as u64;
            requests += usage.requests;
            read_units += usage.estimated_read_units;
            write_units += usage.estimated_write_units;
        }
        let per = |total: u64| total as f64 / records as f64;
        println!(
            "total: {records} records, {:.3} requests/record, {:.2} RCU/record, {:.2} WCU/record",
            per(requests),
            per(read_units),
            per(write_units)
        );

        let again = apply(&engine, table.name(), &standard_mix(9)).await;
        println!(
            "redelivery of a 100-record batch: {} requests, {} RCU, {} WCU",
            again.usage.requests, again.usage.estimated_read_units, again.usage.estimated_write_units
        );

        println!("\nhot item: 4 concurrent engines, 25 orders each on one day (one daily_stats item)");
        let engines: Vec<Engine<_>> = (0..4).map(|_| Engine::new(support::university(), table.clone())).collect();
        let batches: Vec<Vec<Rec>> = (0..4u64)
            .map(|shard| {
                (0..25u64)
                    .map(|i| Rec::insert(90_000 + shard * 100 + i, order(&format!("hot{shard}"), "2026-04-01", &format!("h{i}"), "1")))
                    .collect()
            })
            .collect();
        let started = Instant::now();
        let outcomes =
            futures::future::join_all(engines.iter().zip(&batches).map(|(engine, batch)| apply(engine, table.name(), batch))).await;
        let conflicts: u64 = outcomes.iter().map(|outcome| outcome.conflicts).sum();
        let commits: u64 = outcomes.iter().map(|outcome| outcome.transactions).sum();
        let requests: u64 = outcomes.iter().map(|outcome| outcome.usage.requests).sum();
        // Each conflict costs its failed commit and a read of the commit's items not reported changed.
        println!(
            "commits {commits}, conflicts re-planned {conflicts}, requests {requests} in all, elapsed {} ms",
            started.elapsed().as_millis()
        );
        drop_table(&table).await;
    });
    planning_cpu();
}

/// The engine's own CPU per batch, without DynamoDB: decoding and validating 100 records,
/// coalescing them per item and planning their transactions against an empty snapshot.
fn planning_cpu() {
    const ROUNDS: usize = 300;
    let events = records(&standard_mix(1), "university");
    let rules = Rules::university();
    let mut samples: Vec<std::time::Duration> = (0..ROUNDS)
        .map(|_| {
            let started = Instant::now();
            let changes = decode_batch(&events, "university", rules).expect("the standard mix decodes");
            let items = group(&changes);
            let mut snapshot = Snapshot::default();
            let (ledgers, aggregates) = needed_keys(&items, &snapshot, rules);
            snapshot.ledgers.extend(ledgers.into_iter().map(|key| (key, None)));
            snapshot.aggregates.extend(aggregates.into_iter().map(|key| (key, None)));
            let pending: Vec<usize> = (0..items.len()).collect();
            let planned = plan(&items, &pending, &snapshot, MAX_TRANSACTION_ACTIONS, rules);
            std::hint::black_box(planned);
            started.elapsed()
        })
        .collect();
    samples.sort();
    let median = samples[ROUNDS / 2];
    println!(
        "\nengine CPU without DynamoDB (decode, validate, coalesce, plan) of one 100-record batch: median {} us over {ROUNDS} rounds, {:.1} us/record",
        median.as_micros(),
        median.as_secs_f64() * 1e6 / events.len() as f64
    );
}
