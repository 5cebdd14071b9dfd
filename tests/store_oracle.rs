//! The oracle property: whatever the delivery schedule, every aggregate in the table equals a
//! recompute from the final source items.
//!
//! Random histories of source items (inserts, overwrites, regrades, moves between assignments,
//! deletes, TTL deletes, invalid images) become stream records with increasing sequence numbers,
//! spread over three shards by partition key as DynamoDB does. Each shard is fed to its own engine
//! by a simulated event source mapping that redelivers whole batches, retries from the reported
//! failure point, bisects after a crash between two commits, redelivers stale batches after newer
//! ones and loses responses to applied writes, and discards batches to the failure destination
//! that are redriven, oldest first, once the shard is done; the shards run concurrently against
//! one DynamoDB Local table. Some cases cap transactions at a few puts, so that one batch is
//! several commits and a crash can fall between them.
//!
//! `TALLY_ORACLE_CASES` sets the number of cases (default 200).
#![cfg(feature = "dynamodb-local")]

mod support;

use processor::engine::Engine;
use proptest::prelude::*;
use support::faults::{Fault, FaultyTable};
use support::history::{op, records, Dice, SHARDS};
use support::{apply, drift, drop_table, fresh_table, Rec};

/// Feeds one shard to its engine the way Lambda's event source mapping may.
async fn deliver_shard(engine: &Engine<FaultyTable>, table: &str, recs: &[Rec], dice: &mut Dice<'_>, max_batch: usize) {
    // A crash after the batch's first `commits` transactions (when it has that many).
    let crash_after = |commits: usize| std::iter::repeat_n(None, commits).chain([Some(Fault::Reject)]);
    let mut position = 0;
    let mut delivered: Vec<(usize, usize)> = Vec::new();
    let mut discarded: Vec<(usize, usize)> = Vec::new();
    while position < recs.len() {
        let end = (position + 1 + dice.roll(max_batch)).min(recs.len());
        let batch = &recs[position..end];
        match dice.roll(9) {
            // A crash between two commits (function error): Lambda bisects and delivers each half in turn.
            0 if batch.len() > 1 => {
                engine.table().reset(crash_after(dice.roll(3)));
                apply(engine, table, batch).await;
                engine.table().reset([]);
                let half = batch.len() / 2;
                for part in [&batch[..half], &batch[half..]] {
                    let outcome = apply(engine, table, part).await;
                    assert_eq!(outcome.failed_from, None, "{outcome:?}");
                }
                position = end;
            }
            // A commit rejected after others landed: retry from the reported failure point.
            1 => {
                engine.table().reset(crash_after(dice.roll(3)));
                let outcome = apply(engine, table, batch).await;
                engine.table().reset([]);
                position += outcome.failed_from.unwrap_or(batch.len());
            }
            // A response lost after the write landed, or a connection reset before it.
            2 => {
                engine.table().reset([Some(Fault::LoseResponse), Some(Fault::FailBefore), None, Some(Fault::LoseResponse)]);
                let outcome = apply(engine, table, batch).await;
                engine.table().reset([]);
                assert_eq!(outcome.failed_from, None, "{outcome:?}");
                position = end;
            }
            // A stale batch, delivered again after newer ones were applied.
            3 if !delivered.is_empty() => {
                let (from, to) = delivered[dice.roll(delivered.len())];
                let outcome = apply(engine, table, &recs[from..to]).await;
                assert_eq!(outcome.failed_from, None, "{outcome:?}");
                // Once a batch has been discarded, an older record may legitimately correct an
                // assumed baseline (docs/design.md, "Assumed baselines"); before, it is a no-op.
                if discarded.is_empty() {
                    assert_eq!(outcome.by_class.get("applied"), None, "a stale batch applies nothing: {outcome:?}");
                }
            }
            // The whole batch retried after it succeeded (its response to Lambda was lost).
            4 => {
                for _ in 0..2 {
                    let outcome = apply(engine, table, batch).await;
                    assert_eq!(outcome.failed_from, None, "{outcome:?}");
                }
                delivered.push((position, end));
                position = end;
            }
            // Retries exhausted: the batch's positions go to the failure destination.
            5 => {
                discarded.push((position, end));
                position = end;
            }
            _ => {
                let outcome = apply(engine, table, batch).await;
                assert_eq!(outcome.failed_from, None, "{outcome:?}");
                delivered.push((position, end));
                position = end;
            }
        }
    }
    // `tally redrive`, oldest range first.
    for (from, to) in discarded {
        let outcome = apply(engine, table, &recs[from..to]).await;
        assert_eq!(outcome.failed_from, None, "{outcome:?}");
    }
}

fn cases() -> u32 {
    std::env::var("TALLY_ORACLE_CASES").ok().and_then(|cases| cases.parse().ok()).unwrap_or(200)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), max_shrink_iters: 200, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn aggregates_equal_a_recompute_whatever_the_delivery(
        history in prop::collection::vec(op(), 1..60),
        dice in prop::collection::vec(any::<u8>(), 16..128),
        max_batch in 1usize..12,
        transaction_limit in prop_oneof![Just(100usize), 2usize..8],
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let drift = runtime.block_on(async {
            let table = fresh_table().await;
            let (shards, finals) = records(&history);
            let engines: Vec<Engine<FaultyTable>> = (0..SHARDS).map(|_| Engine::new(FaultyTable::new(table.clone(), [])).with_transaction_limit(transaction_limit)).collect();
            let deliveries = shards.iter().zip(&engines).enumerate().map(|(shard, (recs, engine))| {
                let dice = &dice;
                let name = table.name().to_owned();
                async move {
                    let mut dice = Dice { faces: dice, next: shard * 7 };
                    deliver_shard(engine, &name, recs, &mut dice, max_batch).await;
                }
            });
            futures::future::join_all(deliveries).await;
            let drift = drift(&table, &finals).await;
            drop_table(&table).await;
            drift
        });
        prop_assert!(drift.is_empty(), "drift: {}", drift.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"));
    }
}
