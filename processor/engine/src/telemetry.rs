//! Logs and metrics.
//!
//! Logs go through `tracing` (JSON under Lambda). Metrics go through `metrics` and, under
//! Lambda, are flushed after each invocation in CloudWatch Embedded Metric Format, namespace
//! [`NAMESPACE`], dimension `TableName`, which is what the alarms in infra/ read.

use std::time::Duration;

use metrics::{counter, describe_histogram, histogram, Unit};

use crate::outcome::{BatchOutcome, RecordClass};

/// The CloudWatch namespace of every metric.
pub const NAMESPACE: &str = "Tally";

/// Records, by what became of them: dimension `Class`, a [`RecordClass`].
pub const RECORDS: &str = "Records";
/// Rejected images, every reason together.
pub const RECORDS_REJECTED: &str = "RecordsRejected";
/// Rejected images, by dimension `Reason`.
pub const RECORDS_REJECTED_BY_REASON: &str = "RecordsRejectedByReason";
/// Records left unapplied, to be delivered again: from a batch's first unapplied record to its end.
pub const RECORDS_FAILED: &str = "RecordsFailed";
/// Records of items DynamoDB refused for good (the university contract, docs/university.md:
/// "No poison"); alarmed in infra/.
pub const RECORDS_REFUSED: &str = "RecordsRefused";
/// Source records of deletions by DynamoDB's TTL.
pub const TTL_DELETIONS: &str = "TtlDeletions";
/// Commits that found an item changed since it was read, and were re-planned.
pub const CONFLICT_RETRIES: &str = "ConflictRetries";
/// Waits after a transient failure or a conflict.
pub const RETRIES: &str = "Retries";
/// DynamoDB requests sent.
pub const DYNAMODB_REQUESTS: &str = "DynamoDbRequests";
/// Write capacity units one batch consumed, as DynamoDB reported them (a histogram).
pub const CONSUMED_WRITE_UNITS: &str = "ConsumedWriteUnits";
/// Read capacity units one batch consumed, as DynamoDB reported them (a histogram).
pub const CONSUMED_READ_UNITS: &str = "ConsumedReadUnits";
/// Time to apply one batch, in milliseconds (a histogram).
pub const BATCH_DURATION: &str = "BatchDuration";

/// Installs the log subscriber; `RUST_LOG` filters (default `info`).
pub fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // A second init (tests, repeated CLI setup) keeps the first subscriber.
    let _ = if json { builder.json().flatten_event(true).with_current_span(false).try_init() } else { builder.compact().try_init() };
}

/// Gives the metrics their units; call once after installing a recorder.
pub fn describe() {
    describe_histogram!(BATCH_DURATION, Unit::Milliseconds, "Time to apply one batch");
    describe_histogram!(CONSUMED_WRITE_UNITS, Unit::Count, "DynamoDB write capacity units consumed by one batch");
    describe_histogram!(CONSUMED_READ_UNITS, Unit::Count, "DynamoDB read capacity units consumed by one batch");
}

/// Emits one batch's metrics.
pub fn record_batch(outcome: &BatchOutcome, elapsed: Duration) {
    for (class, records) in &outcome.by_class {
        counter!(RECORDS, "Class" => class.as_str()).increment(*records);
    }
    counter!(RECORDS_REJECTED).increment(outcome.rejected.values().sum());
    for (reason, records) in &outcome.rejected {
        counter!(RECORDS_REJECTED_BY_REASON, "Reason" => reason.clone()).increment(*records);
    }
    if let Some(failed_from) = outcome.failed_from() {
        counter!(RECORDS_FAILED).increment((outcome.records - failed_from) as u64);
    }
    counter!(RECORDS_REFUSED).increment(outcome.count_of(RecordClass::Refused));
    counter!(TTL_DELETIONS).increment(outcome.ttl_deletions);
    counter!(CONFLICT_RETRIES).increment(outcome.conflicts);
    counter!(RETRIES).increment(outcome.retries);
    counter!(DYNAMODB_REQUESTS).increment(outcome.usage.requests);
    histogram!(CONSUMED_WRITE_UNITS).record(outcome.usage.write_units);
    histogram!(CONSUMED_READ_UNITS).record(outcome.usage.read_units);
    histogram!(BATCH_DURATION).record(elapsed.as_secs_f64() * 1000.0);
}
