//! The Lambda function: a DynamoDB stream batch in, `batchItemFailures` out.

use aws_lambda_events::event::dynamodb::Event;
use aws_lambda_events::event::streams::DynamoDbEventResponse;
use lambda_runtime::{Diagnostic, LambdaEvent};
use tokio::time::Instant;

use tally_engine::decode::DecodeError;
use tally_engine::retry;
use tally_engine::store::Store;
use tally_engine::telemetry;
use tally_engine::{BatchOutcome, Engine};

/// Handles one invocation. A record that cannot be identified fails the invocation before
/// anything is written (Lambda then bisects the batch to isolate it); otherwise every record not
/// applied, and every record after it, is reported back for redelivery.
pub async fn handle<S: Store>(engine: &Engine<S>, event: LambdaEvent<Event>) -> Result<DynamoDbEventResponse, DecodeError> {
    let started = std::time::Instant::now();
    let deadline = retry::lambda_deadline(event.context.deadline);
    tracing::debug!(request_id = %event.context.request_id, deadline_ms = event.context.deadline, budget_ms = (deadline - Instant::now()).as_millis() as u64, "Batch received.");
    let records = &event.payload.records;
    let outcome = engine
        .apply(records, deadline)
        .await
        .inspect_err(|err| tracing::error!(error = %err, "Batch rejected: a record cannot be identified."))?;
    log_outcome(&outcome, &event.context.request_id);
    telemetry::record_batch(&outcome, started.elapsed());
    Ok(outcome.response(records))
}

/// A function error as Lambda reports it: `errorType` stable ([`DecodeError::ERROR_TYPE`]), for
/// alarms and log queries to match; `errorMessage` naming the record and what is wrong with it.
pub fn function_error(err: &DecodeError) -> Diagnostic {
    Diagnostic { error_type: DecodeError::ERROR_TYPE.to_owned(), error_message: err.to_string() }
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
    use std::sync::Arc;

    use aggregates::Rules;
    use lambda_runtime::Context;
    use serde_json::{json, Value};
    use tally_engine::store::memory::{Call, Fault};
    use tally_engine::store::MemoryTable;

    use std::time::{Duration, SystemTime};

    use super::*;

    const TABLE: &str = "university";

    fn epoch_ms(at: SystemTime) -> u64 {
        at.duration_since(SystemTime::UNIX_EPOCH).expect("after 1970").as_millis() as u64
    }

    fn engine() -> Engine<MemoryTable> {
        let rules = Arc::new(Rules::university().clone());
        Engine::new(Arc::clone(&rules), MemoryTable::new(TABLE, rules))
    }

    /// An enrollment of student `student` in course c1, inserted at `sequence`.
    fn enrollment(sequence: u64, student: &str) -> Value {
        let image = json!({
            "pk": {"S": "course#c1"}, "sk": {"S": format!("student#{student}")}, "entityType": {"S": "student"},
            "studentID": {"S": student}, "enrolledAt": {"S": "2026-01-05T09:00:00Z"}
        });
        json!({
            "eventID": format!("e{sequence}"), "eventName": "INSERT", "eventVersion": "1.1", "eventSource": "aws:dynamodb", "awsRegion": "us-east-1",
            "eventSourceARN": format!("arn:aws:dynamodb:us-east-1:000000000000:table/{TABLE}/stream/2026-01-01T00:00:00.000"),
            "dynamodb": {"ApproximateCreationDateTime": 1767603600.0, "Keys": {"pk": image["pk"], "sk": image["sk"]}, "NewImage": image,
                         "SequenceNumber": format!("{sequence:021}"), "SizeBytes": 128,
                         "StreamViewType": "NEW_AND_OLD_IMAGES"}
        })
    }

    fn invocation(records: Vec<Value>) -> LambdaEvent<Event> {
        let mut context = Context::default();
        context.request_id = "test-invocation".into();
        context.deadline = epoch_ms(SystemTime::now() + Duration::from_secs(60));
        LambdaEvent::new(serde_json::from_value(json!({ "Records": records })).expect("test events are Lambda's shape"), context)
    }

    fn enrolled(engine: &Engine<MemoryTable>) -> String {
        let course = Rules::university().parse_key("course#c1", "stats").expect("a course's key");
        let count = Rules::university().field("enrollmentCount").expect("a university field");
        engine.store().aggregates().expect("aggregates decode").get(&course).map(|values| values.get(count).to_string()).unwrap_or_default()
    }

    fn failures(response: &DynamoDbEventResponse) -> Vec<String> {
        response.batch_item_failures.iter().filter_map(|failure| failure.item_identifier.clone()).collect()
    }

    #[tokio::test]
    async fn a_batch_is_applied_once_however_often_it_is_delivered() {
        let engine = engine();
        let batch = || invocation((1..=3).map(|sequence| enrollment(sequence, &format!("s{sequence}"))).collect());
        let response = handle(&engine, batch()).await.expect("the batch decodes");
        assert!(failures(&response).is_empty(), "{response:?}");
        assert_eq!(enrolled(&engine), "3");
        let stored = engine.store().items();
        let again = handle(&engine, batch()).await.expect("the batch decodes");
        assert!(failures(&again).is_empty());
        assert_eq!(engine.store().items(), stored, "a redelivery writes nothing");
    }

    #[tokio::test]
    async fn a_store_that_rejects_every_call_reports_the_whole_batch_for_redelivery() {
        let engine = engine();
        engine.store().inject(Call::Read, Fault::Reject);
        let response = handle(&engine, invocation(vec![enrollment(1, "s1"), enrollment(2, "s2")])).await.expect("decodes");
        assert_eq!(failures(&response), ["000000000000000000001", "000000000000000000002"]);
        assert!(engine.store().items().is_empty(), "nothing half-applied");
    }

    #[tokio::test]
    async fn a_record_that_cannot_be_identified_fails_the_invocation_with_a_stable_error_type() {
        let engine = engine();
        let mut unidentifiable = enrollment(2, "s2");
        unidentifiable["dynamodb"]["SequenceNumber"] = json!("not a number");
        let err = handle(&engine, invocation(vec![enrollment(1, "s1"), unidentifiable])).await.unwrap_err();
        assert!(err.is_bad_sequence_number(), "{err:?}");
        let diagnostic = function_error(&err);
        assert_eq!(diagnostic.error_type, "tally.UnidentifiableRecord");
        assert_eq!(diagnostic.error_message, "record 1 (eventID `e2`): `dynamodb.SequenceNumber` `not a number` is not a string of digits");
        assert!(engine.store().items().is_empty(), "nothing of the batch is applied");
    }
}
