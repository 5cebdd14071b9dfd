//! Applying a batch of stream records with exactly-once effect.
//!
//! The loop is optimistic concurrency control: read the ledgers and aggregates the batch
//! touches, [`plan`] absolute new values from that snapshot, and commit each transaction on the
//! condition that every item is still as read. A failed condition means a concurrent writer or
//! a redelivery got there first: the cancellation reasons carry the items' current state, the
//! snapshot is corrected and the rest re-planned. See docs/design.md for why this is exact under
//! every delivery schedule the university contract (docs/university.md) lists.
//!
//! # No poison
//! An item that can never be applied must not hold back the rest of its batch: DynamoDB refuses
//! its writes for good ([`StoreError::Refused`]: a value or key it cannot store that no rule
//! foresaw), or one of its ledgers or aggregates is an item tally does not own
//! ([`StoreError::NotOwned`]: an application item at a key the rules also give an aggregate) or
//! cannot decode ([`StoreError::Corrupt`]). Such a failure
//! ([`StoreError::is_permanent_for_its_items`]) of a read or a commit of several items is
//! narrowed down: a read is split in halves until the items that fail so stand alone, a commit's
//! items are committed one at a time; those are set aside as [`Refused`], every other item is
//! applied, and the batch reports from the first unapplied record.

#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::sync::Arc;

use aggregates::Rules;
use aws_lambda_events::event::dynamodb::EventRecord;
use tokio::time::Instant;

use crate::decode::{decode_batch, Change, DecodeError, Origin};
use crate::plan::{group, needed_keys, plan, ItemChanges, PlannedCommit, Snapshot, MAX_TRANSACTION_ACTIONS};
use crate::retry::RetryBudget;
use crate::store::{Commit, Current, Store, StoreError, Verdict};

use crate::outcome::{BatchFailure, BatchOutcome, Cause, RecordClass, Refused, Stage};

/// The engine: applies batches of stream records to the aggregates of one table, exactly once
/// however often a record is delivered.
///
/// It owns the rules the table's images are assessed by, and a [`Store`] over the table. Build
/// one per process (at a Lambda's init) and share it: every call is independent.
#[derive(Debug, Clone)]
pub struct Engine<S> {
    rules: Arc<Rules>,
    store: S,
    max_actions: usize,
}

impl<S: Store> Engine<S> {
    /// An engine applying `rules` to the table `store` serves. The store must encode tally's
    /// items by the same rules (build both from one `Arc`).
    pub fn new(rules: Arc<Rules>, store: S) -> Self {
        Engine { rules, store, max_actions: MAX_TRANSACTION_ACTIONS }
    }

    /// Commits batches in transactions of at most `actions` puts (1 to DynamoDB's 100, the
    /// default). Smaller transactions make one batch several commits, which is how the tests put
    /// a crash between two of them.
    pub fn with_transaction_limit(mut self, actions: usize) -> Self {
        self.max_actions = actions.clamp(1, MAX_TRANSACTION_ACTIONS);
        self
    }

    /// The rules images are assessed by.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// The table's store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Decodes a batch of Lambda's records by the engine's rules, records of other tables than
    /// the store's classified as such.
    ///
    /// # Errors
    /// A record that cannot be identified (no table keys, no sequence number), named by position
    /// and `eventID`: nothing of the batch may be applied.
    pub fn decode(&self, records: &[EventRecord]) -> Result<Vec<Change<'_>>, DecodeError> {
        decode_batch(records, self.store.table_name(), &self.rules)
    }

    /// Decodes and applies one batch of Lambda's records, in delivery order, giving up at
    /// `deadline`: what a Lambda handler calls.
    ///
    /// # Errors
    /// As [`Engine::decode`]: a batch with a record that cannot be identified is not applied at
    /// all. Every other failure is in the outcome, with the first record not applied.
    pub async fn apply(&self, records: &[EventRecord], deadline: Instant) -> Result<BatchOutcome, DecodeError> {
        let changes = self.decode(records)?;
        Ok(self.process(&changes, deadline).await)
    }

    /// Applies `changes` (one batch, decoded by [`Engine::decode`], in delivery order), giving up
    /// at `deadline`.
    pub async fn process(&self, changes: &[Change<'_>], deadline: Instant) -> BatchOutcome {
        let usage_before = self.store.usage();
        let mut outcome = BatchOutcome { records: changes.len(), ..BatchOutcome::default() };
        for change in changes {
            if change.origin != Origin::Source {
                // tally's own TTL'd ledgers and other tables' records are not the application's.
                if let Some(class) = RecordClass::of(change.origin) {
                    outcome.count(class, 1);
                }
                continue;
            }
            for rejection in change.rejections() {
                *outcome.rejected.entry(rejection.reason().to_owned()).or_default() += 1;
            }
            outcome.ttl_deletions += u64::from(change.ttl_deletion);
        }
        let items = group(changes);
        let mut run = Run {
            rules: &self.rules,
            items: &items,
            pending: (0..items.len()).collect(),
            snapshot: Snapshot::default(),
            max_actions: self.max_actions,
            solo: HashSet::new(),
            refused: Vec::new(),
            outcome: &mut outcome,
        };
        let result = run.drive(&self.store, RetryBudget::new(deadline)).await;
        let unapplied_refused = std::mem::take(&mut run.refused);
        let unapplied = run.pending.iter().chain(unapplied_refused.iter().map(|(position, _)| position));
        let failed_from = unapplied.map(|&position| items[position].first_index()).min();
        let mut refused = Vec::with_capacity(unapplied_refused.len());
        for (position, cause) in unapplied_refused {
            let item = &items[position];
            let index = item.first_index();
            let event_id = changes.iter().find(|change| change.index == index).map_or_else(String::new, |change| change.event_id.clone());
            outcome.count(RecordClass::Refused, item.records.len());
            refused.push(Refused { index, event_id, key: item.key.clone(), cause });
        }
        outcome.failure = failed_from.map(|from| BatchFailure { from, cause: result.err(), refused });
        outcome.usage = self.store.usage() - usage_before;
        outcome
    }
}

/// One batch in progress.
struct Run<'a> {
    rules: &'a Rules,
    items: &'a [ItemChanges],
    /// Positions in `items` not yet applied, in batch order.
    pending: Vec<usize>,
    snapshot: Snapshot,
    max_actions: usize,
    /// Items to commit one per transaction: a commit of several of them was refused.
    solo: HashSet<usize>,
    /// Items refused for good (by DynamoDB, or as needing an item that is not tally's or is
    /// corrupt), with the cause; no longer pending.
    refused: Vec<(usize, StoreError)>,
    outcome: &'a mut BatchOutcome,
}

impl Run<'_> {
    async fn drive<S: Store>(&mut self, store: &S, mut budget: RetryBudget) -> Result<(), Cause> {
        // What made the last attempt fail, so that running out of time names the cause.
        let mut last_failure: Option<StoreError> = None;
        while !self.pending.is_empty() {
            let gave_up = |during, last_failure: &mut Option<StoreError>| Cause::Deadline { during, last_failure: last_failure.take() };
            if budget.expired() {
                return Err(gave_up(Stage::Attempt, &mut last_failure));
            }
            // The deadline bounds calls in flight too: one SDK call may retry for longer than the
            // margin left before Lambda's own deadline.
            let deadline = budget.deadline();
            let step = match tokio::time::timeout_at(deadline, self.read_missing(store)).await {
                Ok(Ok(())) => match tokio::time::timeout_at(deadline, self.commit_plan(store, &mut budget)).await {
                    Ok(result) => result,
                    // A commit cut short may have landed: the batch ends here, and its redelivery
                    // reads everything again.
                    Err(_) => return Err(gave_up(Stage::Commit, &mut last_failure)),
                },
                Ok(Err(err)) => Err(err),
                Err(_) => return Err(gave_up(Stage::Read, &mut last_failure)),
            };
            let err = match step {
                Ok(()) => continue,
                Err(err) => err,
            };
            match err.verdict() {
                Verdict::Replan => {
                    self.outcome.conflicts += 1;
                    if let StoreError::Changed(current) = &err {
                        self.absorb(current.clone());
                    }
                }
                Verdict::Retry => tracing::warn!(error = %err, "Transient DynamoDB failure; retrying."),
                // Read and commit set aside the items such a failure is about, one at a time: one
                // that reaches here is about none of them in particular.
                Verdict::SetAside | Verdict::Stop => return Err(Cause::Store(err)),
            }
            last_failure = Some(err);
            self.outcome.retries += 1;
            if budget.pause().await.is_err() {
                return Err(gave_up(Stage::Backoff, &mut last_failure));
            }
        }
        Ok(())
    }

    /// Reads whatever the pending items need that the snapshot lacks. A read that fails for good
    /// for some of its items (DynamoDB refuses a key, an item found is not tally's or is corrupt)
    /// is split in halves until the items whose own reads fail so stand alone; those are set
    /// aside. One such item among N costs about 2·log2(N) reads, not N.
    async fn read_missing<S: Store>(&mut self, store: &S) -> Result<(), StoreError> {
        let mut groups = vec![self.pending.clone()];
        while let Some(group) = groups.pop() {
            match self.read_for(store, &group).await {
                Ok(()) => {}
                Err(err) if err.is_permanent_for_its_items() => match group[..] {
                    [position] => self.refuse(position, &err),
                    _ => {
                        let (first, second) = group.split_at(group.len() / 2);
                        groups.push(second.to_vec());
                        groups.push(first.to_vec());
                    }
                },
                Err(err) => return Err(err),
            }
        }
        Ok(())
    }

    /// Reads what the items at `positions` need. A ledger can name aggregates the records do
    /// not, hence the loop (two rounds at most).
    async fn read_for<S: Store>(&mut self, store: &S, positions: &[usize]) -> Result<(), StoreError> {
        loop {
            let (ledgers, aggregates) = needed_keys(positions.iter().map(|&position| &self.items[position]), &self.snapshot, self.rules);
            if ledgers.is_empty() && aggregates.is_empty() {
                return Ok(());
            }
            let mut found = store.read(&ledgers, &aggregates).await?;
            for item in ledgers {
                let ledger = found.ledgers.remove(&item);
                self.snapshot.ledgers.insert(item, ledger);
            }
            for key in aggregates {
                let stored = found.aggregates.remove(&key);
                self.snapshot.aggregates.insert(key, stored);
            }
        }
    }

    /// Plans the pending items and commits the transactions in order, stopping at the first
    /// that fails; items that must go alone are planned and committed one at a time after the rest.
    async fn commit_plan<S: Store>(&mut self, store: &S, budget: &mut RetryBudget) -> Result<(), StoreError> {
        let (alone, together): (Vec<usize>, Vec<usize>) = self.pending.iter().partition(|position| self.solo.contains(position));
        if !together.is_empty() && !self.commit_group(store, &together, budget).await? {
            // A commit was refused and its items now go alone: the caller plans again.
            return Ok(());
        }
        for position in alone {
            self.commit_group(store, &[position], budget).await?;
        }
        Ok(())
    }

    /// Plans the items at `positions` and commits their transactions in order. Returns `false`
    /// when a commit failed for good for some of its items (DynamoDB refused it, or a condition
    /// failed on an item that is not tally's or is corrupt): nothing of it was written, and its
    /// items are set aside (one item) or marked to go alone (several).
    async fn commit_group<S: Store>(&mut self, store: &S, positions: &[usize], budget: &mut RetryBudget) -> Result<bool, StoreError> {
        let plan = plan(self.items, positions, &self.snapshot, self.max_actions, self.rules);
        let records = |positions: &[usize]| positions.iter().map(|&position| self.items[position].records.len()).sum::<usize>();
        self.outcome.count(RecordClass::AlreadyApplied, records(&plan.already_applied));
        self.outcome.count(RecordClass::NoEffect, records(&plan.no_effect));
        let settled: HashSet<usize> = plan.already_applied.iter().chain(&plan.no_effect).copied().collect();
        self.pending.retain(|position| !settled.contains(position));
        for transaction in &plan.commits {
            match store.commit(Commit::stream(&transaction.ledgers, &transaction.aggregates)).await {
                Ok(()) => {
                    self.outcome.transactions += 1;
                    self.outcome.count(RecordClass::Applied, records(&transaction.items));
                    self.record_committed(transaction);
                    budget.reset();
                }
                Err(err) if err.is_permanent_for_its_items() => {
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
                    self.forget(transaction);
                    return Err(err);
                }
            }
        }
        Ok(true)
    }

    fn refuse(&mut self, position: usize, err: &StoreError) {
        let record = self.items[position].first_index();
        tracing::error!(record, error = %err, "Item refused for good; applying the rest of the batch.");
        self.pending.retain(|pending| *pending != position);
        self.solo.remove(&position);
        self.refused.push((position, err.clone()));
    }

    fn record_committed(&mut self, transaction: &PlannedCommit) {
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
    fn absorb(&mut self, current: Vec<Current>) {
        for item in current {
            match item {
                Current::Ledger { source, ledger } => self.snapshot.ledgers.insert(source, ledger).map(drop),
                Current::Aggregate { key, stored } => self.snapshot.aggregates.insert(key, stored).map(drop),
            };
        }
    }

    fn forget(&mut self, transaction: &PlannedCommit) {
        for write in &transaction.ledgers {
            self.snapshot.ledgers.remove(&write.item);
        }
        for write in &transaction.aggregates {
            self.snapshot.aggregates.remove(&write.key);
        }
    }
}
