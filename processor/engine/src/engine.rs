//! Applying a batch of stream records with exactly-once effect.
//!
//! The loop is optimistic concurrency control: read the ledgers and aggregates the batch
//! touches, [`plan`] absolute new values from that snapshot, and commit each transaction on the
//! condition that every item is still as read. A failed condition means a concurrent writer or
//! a redelivery got there first: the cancellation reasons carry the items' current state, the
//! snapshot is corrected and the rest re-planned. See docs/design.md for why this is exact under
//! every delivery schedule SPEC lists.
//!
//! # No poison
//! An item whose writes DynamoDB refuses for good ([`StoreError::Refused`]: a value or key it
//! cannot store that no rule foresaw) must not hold back the rest of its batch. A refused read or
//! commit of several items is narrowed down: each item is then read or committed alone, the ones
//! DynamoDB refuses are set aside as [`Refused`], every other item is applied, and the batch
//! reports from the first unapplied record.

use std::collections::{BTreeMap, HashSet};

use aggregates::AggregateKey;
use chrono::Utc;
use tokio::time::Instant;

use crate::decode::{Change, ItemKey, Origin};
use crate::plan::{group, needed_keys, plan, ItemChanges, Snapshot, Transaction, MAX_TRANSACTION_ACTIONS};
use crate::retry::RetryBudget;
use crate::store::codec::{self, ConditionalPut};
use crate::store::{SdkItem, StoreError, Table, Usage};

/// What became of a batch.
#[derive(Debug, Clone, Default)]
pub struct BatchOutcome {
    pub records: usize,
    /// Records by what happened to them: `applied`, `already_applied`, `no_effect`, and the
    /// skipped origins (`own_aggregate`, `own_bookkeeping`, `unknown`, `other_table`).
    pub by_class: BTreeMap<&'static str, u64>,
    /// Rejected images by reason; the records still count in `by_class`.
    pub rejected: BTreeMap<&'static str, u64>,
    pub ttl_removals: u64,
    /// Commits that found an item changed since it was read, and were re-planned.
    pub conflicts: u64,
    /// Waits after a transient failure or a conflict.
    pub retries: u64,
    pub transactions: u64,
    /// Position of the first record not applied. It and every record after it must be delivered
    /// again; every record before it has been applied or needed nothing.
    pub failed_from: Option<usize>,
    pub failure: Option<String>,
    /// Items DynamoDB refused for good; retrying their records cannot help.
    pub refused: Vec<Refused>,
    /// Whether items other than the refused ones were left unapplied (the deadline passed, or the
    /// table failed every write): delivering the batch again may apply them.
    pub incomplete: bool,
    pub usage: Usage,
}

/// A source item whose reads or writes DynamoDB refused for good. Its records stay unapplied:
/// they are reported as failures, and a redelivery fails the same way (SPEC, "No poison").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// Batch position of the item's first record.
    pub index: usize,
    pub event_id: String,
    pub key: ItemKey,
    pub cause: String,
}

impl std::fmt::Display for Refused {
    /// Names the record, not the item's key: ids may be personal data, and this reaches the logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "record {} (eventID `{}`): {}", self.index, self.event_id, self.cause)
    }
}

/// Many batches' outcomes added up: what `replay` and `consume` report.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Totals {
    pub records: u64,
    pub by_class: BTreeMap<&'static str, u64>,
    pub rejected: BTreeMap<&'static str, u64>,
    pub ttl_removals: u64,
    pub conflicts: u64,
    pub dynamodb_requests: u64,
    /// Capacity as DynamoDB reported it.
    pub read_units: f64,
    pub write_units: f64,
    /// Capacity from the documented sizing rules (DynamoDB Local under-reports).
    pub estimated_read_units: u64,
    pub estimated_write_units: u64,
}

impl Totals {
    pub fn add(&mut self, outcome: &BatchOutcome) {
        self.records += outcome.records as u64;
        for (class, count) in &outcome.by_class {
            *self.by_class.entry(class).or_default() += count;
        }
        for (reason, count) in &outcome.rejected {
            *self.rejected.entry(reason).or_default() += count;
        }
        self.ttl_removals += outcome.ttl_removals;
        self.conflicts += outcome.conflicts;
        self.dynamodb_requests += outcome.usage.requests;
        self.read_units += outcome.usage.read_units;
        self.write_units += outcome.usage.write_units;
        self.estimated_read_units += outcome.usage.estimated_read_units;
        self.estimated_write_units += outcome.usage.estimated_write_units;
    }
}

impl BatchOutcome {
    fn count(&mut self, class: &'static str, records: usize) {
        *self.by_class.entry(class).or_default() += records as u64;
    }
}

/// The engine, over any [`Table`].
#[derive(Debug, Clone)]
pub struct Engine<T> {
    table: T,
    max_actions: usize,
}

impl<T: Table> Engine<T> {
    pub fn new(table: T) -> Self {
        Engine { table, max_actions: MAX_TRANSACTION_ACTIONS }
    }

    /// Commits batches in transactions of at most `actions` puts (1 to DynamoDB's 100, the
    /// default). Smaller transactions make one batch several commits, which is how the tests put
    /// a crash between two of them.
    pub fn with_transaction_limit(mut self, actions: usize) -> Self {
        self.max_actions = actions.clamp(1, MAX_TRANSACTION_ACTIONS);
        self
    }

    pub fn table(&self) -> &T {
        &self.table
    }

    /// Applies `changes` (one batch, in delivery order), giving up at `deadline`.
    pub async fn process(&self, changes: &[Change], deadline: Instant) -> BatchOutcome {
        let usage_before = self.table.usage();
        let mut outcome = BatchOutcome { records: changes.len(), ..BatchOutcome::default() };
        for change in changes {
            if change.origin != Origin::Source {
                // tally's own TTL'd ledgers and other tables' records are not the application's.
                outcome.count(change.origin.label(), 1);
                continue;
            }
            for rejection in change.rejections() {
                *outcome.rejected.entry(rejection.reason()).or_default() += 1;
            }
            outcome.ttl_removals += u64::from(change.ttl_removal);
        }
        let items = group(changes);
        let mut run = Run {
            items: &items,
            pending: (0..items.len()).collect(),
            snapshot: Snapshot::default(),
            max_actions: self.max_actions,
            solo: HashSet::new(),
            refused: Vec::new(),
            outcome: &mut outcome,
        };
        let result = run.drive(&self.table, RetryBudget::new(deadline)).await;
        let refused = std::mem::take(&mut run.refused);
        let incomplete = !run.pending.is_empty();
        let unapplied = run.pending.iter().chain(refused.iter().map(|(position, _)| position));
        let failed_from = unapplied.map(|&position| items[position].first_index()).min();
        let mut failures: Vec<String> = result.err().into_iter().collect();
        for (position, cause) in refused {
            let item = &items[position];
            let index = item.first_index();
            let event_id = changes.iter().find(|change| change.index == index).map_or_else(String::new, |change| change.event_id.clone());
            outcome.count("refused", item.records.len());
            outcome.refused.push(Refused { index, event_id, key: item.key.clone(), cause });
        }
        if !outcome.refused.is_empty() {
            let list: Vec<String> = outcome.refused.iter().map(ToString::to_string).collect();
            let others = if incomplete { "" } else { ", every other item applied" };
            failures.push(format!(
                "{} item(s) refused by DynamoDB for good{others}; retrying them cannot help: {}",
                outcome.refused.len(),
                list.join("; ")
            ));
        }
        outcome.incomplete = incomplete;
        if failed_from.is_some() {
            outcome.failed_from = failed_from;
            outcome.failure = Some(failures.join("; and "));
        }
        outcome.usage = self.table.usage() - usage_before;
        outcome
    }
}

/// One batch in progress.
struct Run<'a> {
    items: &'a [ItemChanges],
    /// Positions in `items` not yet applied, in batch order.
    pending: Vec<usize>,
    snapshot: Snapshot,
    max_actions: usize,
    /// Items to commit one per transaction: a commit of several of them was refused.
    solo: HashSet<usize>,
    /// Items DynamoDB refused for good, with the cause; no longer pending.
    refused: Vec<(usize, String)>,
    outcome: &'a mut BatchOutcome,
}

impl Run<'_> {
    async fn drive<T: Table>(&mut self, table: &T, mut budget: RetryBudget) -> Result<(), String> {
        // What made the last attempt fail, so that running out of time names the cause.
        let mut last_failure: Option<String> = None;
        let gave_up = |reason: &str, last_failure: &Option<String>| match last_failure {
            Some(failure) => format!("{reason}; last failure: {failure}"),
            None => reason.to_owned(),
        };
        while !self.pending.is_empty() {
            if budget.expired() {
                return Err(gave_up("deadline reached", &last_failure));
            }
            // The deadline bounds calls in flight too: one SDK call may retry for longer than the
            // margin left before Lambda's own deadline.
            let deadline = budget.deadline();
            let step = match tokio::time::timeout_at(deadline, self.read_missing(table)).await {
                Ok(Ok(())) => match tokio::time::timeout_at(deadline, self.commit_plan(table, &mut budget)).await {
                    Ok(result) => result,
                    Err(_) => {
                        // A commit cut short may have landed: read everything again.
                        self.snapshot = Snapshot::default();
                        return Err(gave_up("deadline reached during a commit", &last_failure));
                    }
                },
                Ok(Err(err)) => Err(err),
                Err(_) => return Err(gave_up("deadline reached during a read", &last_failure)),
            };
            match step {
                Ok(()) => {}
                Err(StoreError::Changed(current)) => {
                    self.outcome.conflicts += 1;
                    last_failure = Some(format!("{} item(s) changed by a concurrent writer", current.len()));
                    self.absorb(current).map_err(|err| err.to_string())?;
                    self.wait(&mut budget).await.map_err(|reason| gave_up(&reason, &last_failure))?;
                }
                Err(err @ StoreError::Transient { .. }) => {
                    tracing::warn!(error = %err, "Transient DynamoDB failure; retrying.");
                    last_failure = Some(err.to_string());
                    self.wait(&mut budget).await.map_err(|reason| gave_up(&reason, &last_failure))?;
                }
                Err(err) => return Err(err.to_string()),
            }
        }
        Ok(())
    }

    async fn wait(&mut self, budget: &mut RetryBudget) -> Result<(), String> {
        self.outcome.retries += 1;
        budget.pause().await.map_err(|err| err.to_string())
    }

    /// Reads whatever the pending items need that the snapshot lacks. A read DynamoDB refuses is
    /// narrowed down to the items whose keys it refuses; those are set aside.
    async fn read_missing<T: Table>(&mut self, table: &T) -> Result<(), StoreError> {
        let pending = self.pending.clone();
        match self.read_for(table, &pending).await {
            Err(err @ StoreError::Refused { .. }) if pending.len() == 1 => {
                self.refuse(pending[0], &err);
                Ok(())
            }
            Err(StoreError::Refused { .. }) => {
                for position in pending {
                    match self.read_for(table, &[position]).await {
                        Ok(()) => {}
                        Err(err @ StoreError::Refused { .. }) => self.refuse(position, &err),
                        Err(err) => return Err(err),
                    }
                }
                Ok(())
            }
            other => other,
        }
    }

    /// Reads what the items at `positions` need. A ledger can name aggregates the records do
    /// not, hence the loop (two rounds at most).
    async fn read_for<T: Table>(&mut self, table: &T, positions: &[usize]) -> Result<(), StoreError> {
        loop {
            let (ledgers, aggregates) = needed_keys(positions.iter().map(|&position| &self.items[position]), &self.snapshot);
            if ledgers.is_empty() && aggregates.is_empty() {
                return Ok(());
            }
            let mut keys: Vec<ItemKey> = ledgers.iter().map(codec::ledger_key).collect();
            keys.extend(aggregates.iter().map(codec::aggregate_key));
            let mut found = table.read(&keys).await?;
            for item in ledgers {
                let ledger_key = codec::ledger_key(&item);
                let ledger = found.remove(&ledger_key).map(|stored| codec::decode_ledger(&ledger_key, &stored)).transpose()?;
                self.snapshot.ledgers.insert(item, ledger);
            }
            for key in aggregates {
                let stored = found.remove(&codec::aggregate_key(&key)).map(|stored| codec::decode_aggregate(&key, &stored)).transpose()?;
                self.snapshot.aggregates.insert(key, stored);
            }
        }
    }

    /// Plans the pending items and commits the transactions in order, stopping at the first
    /// that fails; items that must go alone are planned and committed one at a time after the rest.
    async fn commit_plan<T: Table>(&mut self, table: &T, budget: &mut RetryBudget) -> Result<(), StoreError> {
        let (alone, together): (Vec<usize>, Vec<usize>) = self.pending.iter().partition(|position| self.solo.contains(position));
        if !together.is_empty() && !self.commit_group(table, &together, budget).await? {
            // A commit was refused and its items now go alone: the caller plans again.
            return Ok(());
        }
        for position in alone {
            self.commit_group(table, &[position], budget).await?;
        }
        Ok(())
    }

    /// Plans the items at `positions` and commits their transactions in order. Returns `false`
    /// when DynamoDB refused a commit: nothing of it was written, and its items are set aside
    /// (one item) or marked to go alone (several).
    async fn commit_group<T: Table>(&mut self, table: &T, positions: &[usize], budget: &mut RetryBudget) -> Result<bool, StoreError> {
        let plan = plan(self.items, positions, &self.snapshot, self.max_actions);
        let records = |positions: &[usize]| positions.iter().map(|&position| self.items[position].records.len()).sum::<usize>();
        self.outcome.count("already_applied", records(&plan.already_applied));
        self.outcome.count("no_effect", records(&plan.unchanged));
        let settled: HashSet<usize> = plan.already_applied.iter().chain(&plan.unchanged).copied().collect();
        self.pending.retain(|position| !settled.contains(position));
        for transaction in &plan.transactions {
            let puts = encode(transaction);
            match table.commit(&puts).await {
                Ok(()) => {
                    self.outcome.transactions += 1;
                    self.outcome.count("applied", records(&transaction.items));
                    self.record_committed(transaction);
                    budget.reset();
                }
                Err(err @ StoreError::Refused { .. }) => {
                    match transaction.items[..] {
                        [position] => self.refuse(position, &err),
                        _ => self.solo.extend(transaction.items.iter().copied()),
                    }
                    return Ok(false);
                }
                Err(err) => {
                    // The commit may have landed with its response lost; or, if its conditions
                    // failed, an item that passed its own may still be stale (deleted by TTL and
                    // created anew): read every item of it again, beyond those reported changed.
                    self.forget(&puts);
                    return Err(err);
                }
            }
        }
        Ok(true)
    }

    fn refuse(&mut self, position: usize, err: &StoreError) {
        let record = self.items[position].first_index();
        tracing::error!(record, error = %err, "Item refused by DynamoDB for good; applying the rest of the batch.");
        self.pending.retain(|pending| *pending != position);
        self.solo.remove(&position);
        self.refused.push((position, err.to_string()));
    }

    fn record_committed(&mut self, transaction: &Transaction) {
        let done: HashSet<usize> = transaction.items.iter().copied().collect();
        self.pending.retain(|position| !done.contains(position));
        for write in &transaction.ledgers {
            self.snapshot.ledgers.insert(write.item.clone(), Some(write.ledger.clone()));
        }
        for write in &transaction.aggregates {
            self.snapshot.aggregates.insert(write.key.clone(), Some(write.stored.clone()));
        }
    }

    /// Takes the current state of items whose conditions failed into the snapshot.
    fn absorb(&mut self, current: Vec<(ItemKey, Option<SdkItem>)>) -> Result<(), StoreError> {
        for (key, item) in current {
            if let Some(aggregate) = AggregateKey::parse(&key.pk, &key.sk) {
                let stored = item.map(|item| codec::decode_aggregate(&aggregate, &item)).transpose()?;
                self.snapshot.aggregates.insert(aggregate, stored);
            } else if let Some(source) = codec::source_of_ledger(&key) {
                let ledger = item.map(|item| codec::decode_ledger(&key, &item)).transpose()?;
                self.snapshot.ledgers.insert(source, ledger);
            }
        }
        Ok(())
    }

    fn forget(&mut self, puts: &[ConditionalPut]) {
        let keys: HashSet<&ItemKey> = puts.iter().map(|put| &put.key).collect();
        self.snapshot.aggregates.retain(|aggregate, _| !keys.contains(&codec::aggregate_key(aggregate)));
        self.snapshot.ledgers.retain(|item, _| !keys.contains(&codec::ledger_key(item)));
    }
}

fn encode(transaction: &Transaction) -> Vec<ConditionalPut> {
    let now = Utc::now();
    transaction
        .ledgers
        .iter()
        .map(|write| codec::encode_ledger(write, codec::Writer::Stream, now))
        .chain(transaction.aggregates.iter().map(|write| codec::encode_aggregate(write, now)))
        .collect()
}
