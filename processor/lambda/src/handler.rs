//! The Lambda function: a DynamoDB stream batch in, `batchItemFailures` out.

use std::time::{Duration, SystemTime};

use aws_lambda_events::event::dynamodb::Event;
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use lambda_runtime::{Diagnostic, LambdaEvent};
use tokio::time::Instant;

use tally_engine::decode::DecodeError;
use tally_engine::store::Store;
use tally_engine::telemetry;
use tally_engine::{BatchOutcome, Engine};

/// Time kept back from the invocation's deadline to report failures before Lambda kills us.
const MAX_SAFETY_MARGIN: Duration = Duration::from_secs(3);

/// Handles one invocation. A record that cannot be identified fails the invocation before
/// anything is written (Lambda then bisects the batch to isolate it); otherwise every record not
/// applied, and every record after it, is reported back for redelivery.
pub async fn handle<S: Store>(engine: &Engine<S>, event: LambdaEvent<Event>) -> Result<DynamoDbEventResponse, DecodeError> {
    let started = std::time::Instant::now();
    let deadline = deadline_from(event.context.deadline);
    tracing::debug!(request_id = %event.context.request_id, deadline_ms = event.context.deadline, budget_ms = (deadline - Instant::now()).as_millis() as u64, "Batch received.");
    let records = &event.payload.records;
    let outcome = engine
        .apply(records, deadline)
        .await
        .inspect_err(|err| tracing::error!(error = %err, "Batch rejected: a record cannot be identified."))?;
    log_outcome(&outcome, &event.context.request_id);
    telemetry::record_batch(&outcome, started.elapsed());
    let mut response = DynamoDbEventResponse::default();
    if let Some(failed_from) = outcome.failed_from() {
        response.batch_item_failures = records[failed_from..]
            .iter()
            .map(|record| {
                let mut failure = DynamoDbBatchItemFailure::default();
                failure.item_identifier = record.change.sequence_number.clone();
                failure
            })
            .collect();
    }
    Ok(response)
}

/// A function error as Lambda reports it: `errorType` stable ([`DecodeError::ERROR_TYPE`]), for
/// alarms and log queries to match; `errorMessage` naming the record and what is wrong with it.
pub fn function_error(err: &DecodeError) -> Diagnostic {
    Diagnostic { error_type: DecodeError::ERROR_TYPE.to_owned(), error_message: err.to_string() }
}

/// Deadlines below this (in ms) cannot be epoch times (they fall before 2001): runtime emulators,
/// cargo-lambda's among them, send the time budget itself (`600000`) rather than an epoch instant.
const EPOCH_DEADLINE_FLOOR_MS: u64 = 1_000_000_000_000;

/// The instant to stop retrying: Lambda's deadline (epoch ms, `Lambda-Runtime-Deadline-Ms`) less a
/// margin of a fifth of the time left, at most [`MAX_SAFETY_MARGIN`].
fn deadline_from(deadline_ms: u64) -> Instant {
    let remaining = if deadline_ms < EPOCH_DEADLINE_FLOOR_MS {
        Duration::from_millis(deadline_ms)
    } else {
        (SystemTime::UNIX_EPOCH + Duration::from_millis(deadline_ms)).duration_since(SystemTime::now()).unwrap_or_default()
    };
    Instant::now() + remaining - (remaining / 5).min(MAX_SAFETY_MARGIN)
}

fn log_outcome(outcome: &BatchOutcome, request_id: &str) {
    let classes = format!("{:?}", outcome.by_class);
    let rejected = format!("{:?}", outcome.rejected);
    match &outcome.failure {
        Some(failure) => tracing::warn!(
            request_id,
            records = outcome.records,
            failed_from = failure.from,
            failure = %failure,
            retryable = failure.is_retryable(),
            classes,
            rejected,
            conflicts = outcome.conflicts,
            "Batch partly applied; reporting failures."
        ),
        None => tracing::info!(
            request_id,
            records = outcome.records,
            classes,
            rejected,
            conflicts = outcome.conflicts,
            transactions = outcome.transactions,
            requests = outcome.usage.requests,
            write_units = outcome.usage.write_units,
            "Batch applied."
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch_ms(at: SystemTime) -> u64 {
        at.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_millis() as u64
    }

    #[test]
    fn keeps_a_margin_before_lambdas_deadline() {
        let now = Instant::now();
        let left = deadline_from(epoch_ms(SystemTime::now() + Duration::from_secs(60))) - now;
        assert!(left > Duration::from_millis(56_900) && left < Duration::from_millis(57_100), "{left:?}");
        let short = deadline_from(epoch_ms(SystemTime::now() + Duration::from_secs(1))) - Instant::now();
        assert!(short <= Duration::from_millis(800), "{short:?}");
        assert!(deadline_from(epoch_ms(SystemTime::now() - Duration::from_secs(5))) <= Instant::now());
    }

    #[test]
    fn an_emulators_relative_budget_is_a_budget() {
        let left = deadline_from(600_000) - Instant::now();
        assert!(left > Duration::from_millis(596_900) && left <= Duration::from_secs(597), "{left:?}");
    }
}
