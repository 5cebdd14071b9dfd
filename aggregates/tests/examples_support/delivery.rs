//! At-least-once delivery, as Lambda's event source mapping gives it: which records reach the
//! processor, in which order, how often.
//!
//! The first delivery of each record keeps every item's records in order (DynamoDB streams
//! guarantee order per key, nothing across keys): the items' records are interleaved at random.
//! They are cut into batches. A batch may fail part-way, after the processor applied a prefix
//! of it, and then be
//! - retried from the failure point it reported (`BatchItemFailures`),
//! - retried whole (a timeout or crash after the prefix was applied, so the response was lost),
//! - bisected (`BisectBatchOnFunctionError`): its first half again, then the rest;
//!
//! and a retry may fail again. Later, an old batch or a single old record may arrive again
//! after newer records of the same items were applied (a redrive, a stale invocation).

use std::collections::BTreeMap;

use super::dice::Dice;
use super::workload::{Key, Record};

/// What a schedule did, to show the faults were exercised.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Faults {
    pub batches: usize,
    pub failure_point_retries: usize,
    pub whole_retries: usize,
    pub bisections: usize,
    pub stale_batches: usize,
    pub stale_records: usize,
}

impl std::ops::AddAssign for Faults {
    fn add_assign(&mut self, other: Faults) {
        self.batches += other.batches;
        self.failure_point_retries += other.failure_point_retries;
        self.whole_retries += other.whole_retries;
        self.bisections += other.bisections;
        self.stale_batches += other.stale_batches;
        self.stale_records += other.stale_records;
    }
}

/// The deliveries, as indexes into the records, in the order they reach the processor.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub deliveries: Vec<usize>,
    pub faults: Faults,
}

impl Schedule {
    /// Whether each delivery is one of its record's second or later.
    pub fn repeats(&self) -> Vec<bool> {
        let mut seen = vec![false; self.deliveries.iter().max().map_or(0, |max| max + 1)];
        self.deliveries.iter().map(|&index| std::mem::replace(&mut seen[index], true)).collect()
    }
}

/// A random at-least-once delivery of `records` (one epoch of a history).
pub fn schedule(records: &[Record], dice: &mut Dice) -> Schedule {
    let mut faults = Faults::default();
    let order = interleave(records, dice);
    let mut deliveries = Vec::with_capacity(order.len() * 2);
    let mut batches: Vec<&[usize]> = Vec::new();
    let mut start = 0;
    while start < order.len() {
        let size = dice.between(1, 10).min(order.len() - start);
        let batch = &order[start..start + size];
        start += size;
        faults.batches += 1;
        let mut from = 0;
        let mut failures = 0;
        loop {
            let pending = &batch[from..];
            if failures == 3 || !dice.chance(30) {
                deliveries.extend_from_slice(pending);
                break;
            }
            failures += 1;
            // Applied up to `cut`, then something went wrong.
            let cut = dice.below(pending.len() + 1);
            deliveries.extend_from_slice(&pending[..cut]);
            match dice.below(3) {
                0 => {
                    faults.failure_point_retries += 1;
                    from += cut;
                    if from == batch.len() {
                        break;
                    }
                }
                1 => {
                    faults.whole_retries += 1;
                    from = 0;
                }
                _ => {
                    faults.bisections += 1;
                    let mid = from + pending.len() / 2;
                    deliveries.extend_from_slice(&batch[from..mid]);
                    from = mid;
                    if from == batch.len() {
                        break;
                    }
                }
            }
        }
        batches.push(batch);
        if batches.len() > 1 && dice.chance(8) {
            let old = batches[dice.below(batches.len() - 1)];
            deliveries.extend_from_slice(old);
            faults.stale_batches += 1;
        }
        if dice.chance(8) {
            let old = deliveries[dice.below(deliveries.len())];
            deliveries.push(old);
            faults.stale_records += 1;
        }
    }
    Schedule { deliveries, faults }
}

/// The records' indexes in a random order that keeps each item's records in order.
fn interleave(records: &[Record], dice: &mut Dice) -> Vec<usize> {
    let mut queues: BTreeMap<&Key, std::collections::VecDeque<usize>> = BTreeMap::new();
    for (index, record) in records.iter().enumerate() {
        queues.entry(&record.key).or_default().push_back(index);
    }
    let mut queues: Vec<_> = queues.into_values().collect();
    let mut order = Vec::with_capacity(records.len());
    while !queues.is_empty() {
        let pick = dice.below(queues.len());
        let next = queues[pick].pop_front().expect("queues are not left empty");
        order.push(next);
        if queues[pick].is_empty() {
            queues.swap_remove(pick);
        }
    }
    order
}
