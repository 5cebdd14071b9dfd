//! What became of a batch: per record class, and why the part not applied was not.

use std::collections::BTreeMap;
use std::fmt;

use aws_lambda_events::event::dynamodb::EventRecord;
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use serde::Serialize;

use crate::decode::Origin;
use crate::items::ItemKey;
use crate::store::{StoreError, Usage};

/// What happened to a record; the `Class` dimension of the `Records` metric.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordClass {
    /// Its item's contribution moved, and the move was committed.
    Applied,
    /// Its item's ledger already held it: a redelivery.
    AlreadyApplied,
    /// It changed nothing any aggregate counts.
    NoEffect,
    /// Its item was refused for good (the university contract, docs/university.md: "No poison"):
    /// DynamoDB cannot store it, or it needs a ledger or an aggregate whose item is not tally's or
    /// is corrupt.
    Refused,
    /// An aggregate tally wrote, coming back on the stream.
    OwnAggregate,
    /// A ledger, checkpoint or other bookkeeping item tally wrote.
    OwnBookkeeping,
    /// Neither image has an entity type the rules know.
    Unknown,
    /// The record's source ARN names another table.
    OtherTable,
}

impl RecordClass {
    /// The class a record of `origin` is counted under; `None` for a source item's, which the
    /// engine classes by what applying it did.
    pub fn of(origin: Origin) -> Option<RecordClass> {
        match origin {
            Origin::Source => None,
            Origin::OwnAggregate => Some(RecordClass::OwnAggregate),
            Origin::OwnBookkeeping => Some(RecordClass::OwnBookkeeping),
            Origin::Unknown => Some(RecordClass::Unknown),
            Origin::OtherTable => Some(RecordClass::OtherTable),
        }
    }

    /// Its name as the metric's `Class` dimension, in logs and in JSON: `applied`,
    /// `already_applied`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            RecordClass::Applied => "applied",
            RecordClass::AlreadyApplied => "already_applied",
            RecordClass::NoEffect => "no_effect",
            RecordClass::Refused => "refused",
            RecordClass::OwnAggregate => "own_aggregate",
            RecordClass::OwnBookkeeping => "own_bookkeeping",
            RecordClass::Unknown => "unknown",
            RecordClass::OtherTable => "other_table",
        }
    }
}

/// As its metric name, so that logs of counts by class read `{"applied": 3}`.
impl fmt::Debug for RecordClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for RecordClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// What became of a batch.
#[derive(Debug, Clone, Default)]
pub struct BatchOutcome {
    /// Records in the batch.
    pub records: usize,
    /// Records by what happened to them.
    pub by_class: BTreeMap<RecordClass, u64>,
    /// Rejected images by reason; the records still count in `by_class`.
    pub rejected: BTreeMap<String, u64>,
    /// Source records of deletions by DynamoDB's TTL.
    pub ttl_deletions: u64,
    /// Commits that found an item changed since it was read, and were re-planned.
    pub conflicts: u64,
    /// Waits after a transient failure or a conflict.
    pub retries: u64,
    /// Transactions committed.
    pub transactions: u64,
    /// Set when some records were not applied.
    pub failure: Option<BatchFailure>,
    /// The DynamoDB work the batch took.
    pub usage: Usage,
}

impl BatchOutcome {
    /// Position of the first record not applied, if any was not.
    pub fn failed_from(&self) -> Option<usize> {
        self.failure.as_ref().map(|failure| failure.from)
    }

    /// The answer to Lambda for the batch `records` this is the outcome of, with
    /// `ReportBatchItemFailures`: every record from the first not applied to the end of the batch,
    /// by sequence number, to be delivered again; none when all were applied. Given records that
    /// are not the outcome's batch (fewer than its first unapplied one), it reports all of them:
    /// a redelivery is harmless, a success claimed for records not applied loses them.
    pub fn response(&self, records: &[EventRecord]) -> DynamoDbEventResponse {
        let mut response = DynamoDbEventResponse::default();
        if let Some(from) = self.failed_from() {
            let unapplied = if from < records.len() { &records[from..] } else { records };
            response.batch_item_failures = unapplied
                .iter()
                .map(|record| {
                    let mut failure = DynamoDbBatchItemFailure::default();
                    failure.item_identifier = record.change.sequence_number.clone();
                    failure
                })
                .collect();
        }
        response
    }

    /// Records of `class`.
    pub fn count_of(&self, class: RecordClass) -> u64 {
        self.by_class.get(&class).copied().unwrap_or_default()
    }

    /// Counts records of `class`; a class no record fell in stays absent.
    pub(super) fn count(&mut self, class: RecordClass, records: usize) {
        if records > 0 {
            *self.by_class.entry(class).or_default() += records as u64;
        }
    }
}

/// The part of a batch that was not applied, and why.
#[derive(Debug, Clone, thiserror::Error)]
pub struct BatchFailure {
    /// Position of the first record not applied. It and every record after it must be delivered
    /// again; every record before it has been applied or needed nothing.
    pub from: usize,
    /// Why items other than the refused ones were left unapplied; `None` when none were.
    pub cause: Option<Cause>,
    /// Items refused for good: by DynamoDB, or as needing an item that is not tally's or is
    /// corrupt.
    pub refused: Vec<Refused>,
}

impl BatchFailure {
    /// Whether delivering the batch again may apply more of it. Refused items fail the same way
    /// every time, and so does a store failure retrying cannot fix (a missing table, denied
    /// permissions): only a batch the deadline cut short is worth retrying.
    pub fn is_retryable(&self) -> bool {
        matches!(self.cause, Some(Cause::Deadline { .. }))
    }
}

impl fmt::Display for BatchFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(cause) = &self.cause {
            write!(f, "{cause}")?;
        }
        if !self.refused.is_empty() {
            if self.cause.is_some() {
                f.write_str("; and ")?;
            }
            let others = if self.cause.is_some() { "" } else { ", every other item applied" };
            write!(f, "{} item(s) refused by DynamoDB for good{others}; retrying them cannot help: ", self.refused.len())?;
            for (position, refused) in self.refused.iter().enumerate() {
                if position > 0 {
                    f.write_str("; ")?;
                }
                write!(f, "{refused}")?;
            }
        }
        Ok(())
    }
}

/// Why pending items were left unapplied.
#[derive(Debug, Clone)]
pub enum Cause {
    /// The deadline came before they could be applied. Transient: a redelivery may apply them.
    Deadline {
        /// Where in the loop it passed.
        during: Stage,
        /// The conflict or transient failure that made the last attempt fail, if one did.
        last_failure: Option<StoreError>,
    },
    /// A failure that retrying cannot fix. Permanent.
    Store(StoreError),
}

/// Where in the loop the deadline passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Before an attempt began.
    Attempt,
    /// Waiting to try again: the wait would have passed it.
    Backoff,
    /// While reading.
    Read,
    /// While committing: the commit may have landed.
    Commit,
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Deadline { during, last_failure } => {
                f.write_str(match during {
                    Stage::Attempt => "deadline reached",
                    Stage::Backoff => "deadline reached before the next attempt",
                    Stage::Read => "deadline reached during a read",
                    Stage::Commit => "deadline reached during a commit",
                })?;
                match last_failure {
                    Some(failure) => write!(f, "; last failure: {failure}"),
                    None => Ok(()),
                }
            }
            Cause::Store(err) => write!(f, "{err}"),
        }
    }
}

/// A source item refused for good: DynamoDB refused its reads or writes, or one of its ledgers
/// or aggregates is an item that is not tally's or is corrupt. Its records stay unapplied: they
/// are reported as failures, and a redelivery fails the same way (the university contract,
/// docs/university.md: "No poison").
#[derive(Debug, Clone)]
pub struct Refused {
    /// Batch position of the item's first record.
    pub index: usize,
    /// The `eventID` of that record.
    pub event_id: String,
    /// The source item.
    pub key: ItemKey,
    /// Why: [`StoreError::is_permanent_for_its_items`] holds of it.
    pub cause: StoreError,
}

impl fmt::Display for Refused {
    /// Names the record, not the item's key: ids may be personal data, and this reaches the logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "record {} (eventID `{}`): {}", self.index, self.event_id, self.cause)
    }
}

/// Many batches' outcomes added up: what `replay` and `consume` report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    /// Records, every batch's.
    pub records: u64,
    /// Records by what happened to them.
    pub by_class: BTreeMap<RecordClass, u64>,
    /// Rejected images by reason; the records still count in `by_class`.
    pub rejected: BTreeMap<String, u64>,
    /// Source records of deletions by DynamoDB's TTL.
    pub ttl_deletions: u64,
    /// Commits that found an item changed since it was read, and were re-planned.
    pub conflicts: u64,
    /// DynamoDB requests sent.
    pub dynamodb_requests: u64,
    /// Read capacity as DynamoDB reported it.
    pub read_units: f64,
    /// Write capacity as DynamoDB reported it.
    pub write_units: f64,
    /// Read capacity from the documented sizing rules (DynamoDB Local under-reports).
    pub estimated_read_units: u64,
    /// Write capacity from the documented sizing rules.
    pub estimated_write_units: u64,
}

impl Totals {
    /// Adds one batch's outcome.
    pub fn add(&mut self, outcome: &BatchOutcome) {
        self.records += outcome.records as u64;
        for (class, count) in &outcome.by_class {
            *self.by_class.entry(*class).or_default() += count;
        }
        for (reason, count) in &outcome.rejected {
            *self.rejected.entry(reason.clone()).or_default() += count;
        }
        self.ttl_deletions += outcome.ttl_deletions;
        self.conflicts += outcome.conflicts;
        self.dynamodb_requests += outcome.usage.requests;
        self.read_units += outcome.usage.read_units;
        self.write_units += outcome.usage.write_units;
        self.estimated_read_units += outcome.usage.estimated_read_units;
        self.estimated_write_units += outcome.usage.estimated_write_units;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::error::Failure;

    fn refused(index: usize) -> Refused {
        let key = ItemKey { pk: "course#c1".into(), sk: format!("e{index}") };
        let cause = StoreError::Refused(Failure::new("TransactWriteItems", "too big"));
        Refused { index, event_id: format!("ev{index}"), key, cause }
    }

    fn records(count: usize) -> Vec<EventRecord> {
        (0..count)
            .map(|index| {
                let mut record = EventRecord::default();
                record.change.sequence_number = Some(format!("{index:03}"));
                record
            })
            .collect()
    }

    fn reported(response: &DynamoDbEventResponse) -> Vec<String> {
        response.batch_item_failures.iter().filter_map(|failure| failure.item_identifier.clone()).collect()
    }

    #[test]
    fn the_response_asks_again_for_every_record_from_the_first_unapplied_one() {
        let batch = records(4);
        let applied = BatchOutcome { records: 4, ..BatchOutcome::default() };
        assert!(applied.response(&batch).batch_item_failures.is_empty());
        let cut = BatchOutcome {
            records: 4,
            failure: Some(BatchFailure { from: 2, cause: None, refused: vec![refused(2)] }),
            ..BatchOutcome::default()
        };
        assert_eq!(reported(&cut.response(&batch)), ["002", "003"]);
        // Paired with records that are not its batch, it never claims a success.
        assert_eq!(reported(&cut.response(&batch[..1])), ["000"]);
    }

    #[test]
    fn only_a_batch_the_deadline_cut_short_is_worth_retrying() {
        let deadline =
            Cause::Deadline { during: Stage::Commit, last_failure: Some(StoreError::Transient(Failure::new("BatchGetItem", "throttled"))) };
        let failure = |cause, refused| BatchFailure { from: 3, cause, refused };
        assert!(failure(Some(deadline.clone()), vec![]).is_retryable());
        assert!(failure(Some(deadline), vec![refused(1)]).is_retryable(), "the items the deadline held back may still apply");
        assert!(!failure(None, vec![refused(1)]).is_retryable());
        let missing = StoreError::Permanent(Failure::new("BatchGetItem", "ResourceNotFoundException: no table"));
        assert!(!failure(Some(Cause::Store(missing)), vec![]).is_retryable());
    }

    #[test]
    fn a_failure_says_what_was_left_and_why() {
        let deadline =
            Cause::Deadline { during: Stage::Read, last_failure: Some(StoreError::Transient(Failure::new("BatchGetItem", "throttled"))) };
        let both = BatchFailure { from: 1, cause: Some(deadline), refused: vec![refused(1), refused(4)] };
        assert_eq!(
            both.to_string(),
            "deadline reached during a read; last failure: transient DynamoDB failure in BatchGetItem: throttled; and 2 item(s) \
             refused by DynamoDB for good; retrying them cannot help: record 1 (eventID `ev1`): DynamoDB refused TransactWriteItems \
             for its items: too big; record 4 (eventID `ev4`): DynamoDB refused TransactWriteItems for its items: too big"
        );
        let alone = BatchFailure { from: 4, cause: None, refused: vec![refused(4)] };
        assert_eq!(
            alone.to_string(),
            "1 item(s) refused by DynamoDB for good, every other item applied; retrying them cannot help: record 4 (eventID `ev4`): \
             DynamoDB refused TransactWriteItems for its items: too big"
        );
    }

    #[test]
    fn classes_serialize_as_their_metric_names() {
        let classes = [RecordClass::Applied, RecordClass::AlreadyApplied, RecordClass::OtherTable];
        for class in classes {
            assert_eq!(serde_json::to_value(class).unwrap(), serde_json::Value::from(class.as_str()));
        }
    }
}
