//! A team's own Lambda handler on its table's stream: tally keeps the aggregates exact, and the
//! team's code does its own work with the same batch.
//!
//! tally's part is one call, [`Engine::apply`]: it applies every record exactly once, however
//! often Lambda delivers it, and says from which record on nothing was applied. The team's part
//! here, [`welcome_new_students`], greets each student who enrolled: a stand-in for whatever a
//! team does with its stream (emails, search indexing, webhooks).
//!
//! The team's code runs on the records tally applied, never on those it reports for redelivery,
//! so the two stay in step. It is still at-least-once: Lambda may deliver an applied record
//! again (a retried batch, a timeout after the work was done), and tally's ledgers make that
//! harmless only for the aggregates. Work that must not repeat needs its own idempotency key;
//! the record's `eventID` is one.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_lambda_events::event::streams::DynamoDbEventResponse;
use lambda_runtime::LambdaEvent;
use serde_dynamo::AttributeValue;
use tally_engine::decode::DecodeError;
use tally_engine::retry;
use tally_engine::store::Store;
use tally_engine::Engine;

/// Where the team's greetings go: an email service in production, a log line in `main`, a list
/// in the tests.
pub trait Greeter: Sync {
    /// Greets `student` for enrolling in `course`; `event_id` identifies the record, for a
    /// greeter that must not greet twice.
    fn greet(&self, event_id: &str, course: &str, student: &str);
}

/// Handles one invocation: tally first, then the team's own work on what tally applied.
///
/// # Errors
/// A record that cannot be identified fails the whole invocation before anything is written,
/// as tally's own Lambda does (Lambda then bisects the batch to isolate it).
pub async fn handle<S: Store>(
    engine: &Engine<S>,
    greeter: &impl Greeter,
    event: LambdaEvent<Event>,
) -> Result<DynamoDbEventResponse, DecodeError> {
    let records = &event.payload.records;
    let outcome = engine.apply(records, retry::lambda_deadline(event.context.deadline)).await?;
    let applied = outcome.failed_from().unwrap_or(records.len());
    welcome_new_students(&records[..applied], greeter);
    Ok(outcome.response(records))
}

/// The team's own code: greets the student of every new enrollment (an INSERT of a `student`
/// item under a course, as the university table writes them).
pub fn welcome_new_students(records: &[EventRecord], greeter: &impl Greeter) {
    for record in records.iter().filter(|record| record.event_name == "INSERT") {
        let image = &record.change.new_image;
        let text = |name: &str| match image.get(name) {
            Some(AttributeValue::S(value)) => Some(value.as_str()),
            _ => None,
        };
        if text("entityType") != Some("student") {
            continue;
        }
        let course = text("pk").and_then(|pk| pk.strip_prefix("course#"));
        if let (Some(course), Some(student)) = (course, text("studentID")) {
            greeter.greet(&record.event_id, course, student);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, SystemTime};

    use aggregates::Rules;
    use lambda_runtime::Context;
    use serde_json::{json, Value};
    use tally_engine::store::memory::{Call, Fault};
    use tally_engine::store::MemoryTable;

    use super::*;

    /// Greetings as sent: `(course, student)`.
    #[derive(Default)]
    struct Sent(Mutex<Vec<(String, String)>>);

    impl Greeter for Sent {
        fn greet(&self, _event_id: &str, course: &str, student: &str) {
            self.0.lock().expect("not poisoned").push((course.to_owned(), student.to_owned()));
        }
    }

    impl Sent {
        fn taken(&self) -> Vec<(String, String)> {
            std::mem::take(&mut self.0.lock().expect("not poisoned"))
        }
    }

    fn engine() -> Engine<MemoryTable> {
        let rules = Arc::new(Rules::university().clone());
        Engine::new(Arc::clone(&rules), MemoryTable::new("university", rules))
    }

    fn enrollment(sequence: u64, course: &str, student: &str) -> Value {
        let image = json!({
            "pk": {"S": format!("course#{course}")}, "sk": {"S": format!("student#{student}")}, "entityType": {"S": "student"},
            "studentID": {"S": student}, "enrolledAt": {"S": "2026-01-05T09:00:00Z"}
        });
        json!({
            "eventID": format!("e{sequence}"), "eventName": "INSERT", "eventVersion": "1.1", "eventSource": "aws:dynamodb", "awsRegion": "us-east-1",
            "eventSourceARN": "arn:aws:dynamodb:us-east-1:000000000000:table/university/stream/2026-01-01T00:00:00.000",
            "dynamodb": {"ApproximateCreationDateTime": 1767603600.0, "Keys": {"pk": image["pk"], "sk": image["sk"]}, "NewImage": image,
                         "SequenceNumber": format!("{sequence:021}"), "SizeBytes": 128,
                         "StreamViewType": "NEW_AND_OLD_IMAGES"}
        })
    }

    fn invocation(records: &[Value]) -> LambdaEvent<Event> {
        let mut context = Context::default();
        let deadline = SystemTime::now() + Duration::from_secs(60);
        context.deadline = deadline.duration_since(SystemTime::UNIX_EPOCH).expect("after 1970").as_millis() as u64;
        LambdaEvent::new(serde_json::from_value(json!({ "Records": records })).expect("test events are Lambda's shape"), context)
    }

    fn enrolled(engine: &Engine<MemoryTable>, course: &str) -> String {
        let key = Rules::university().parse_key(&format!("course#{course}"), "stats").expect("a course's key");
        let count = Rules::university().field("enrollmentCount").expect("a university field");
        engine.store().aggregates().expect("aggregates decode").get(&key).map(|values| values.get(count).to_string()).unwrap_or_default()
    }

    #[tokio::test]
    async fn the_team_greets_each_new_student_and_tally_counts_each_once() {
        let (engine, sent) = (engine(), Sent::default());
        let batch = [enrollment(1, "c1", "s1"), enrollment(2, "c1", "s2")];
        let response = handle(&engine, &sent, invocation(&batch)).await.expect("the batch decodes");
        assert!(response.batch_item_failures.is_empty());
        assert_eq!(sent.taken(), [("c1".to_owned(), "s1".to_owned()), ("c1".to_owned(), "s2".to_owned())]);
        assert_eq!(enrolled(&engine, "c1"), "2");

        // Lambda delivers the batch again: the aggregates do not move; the team's code, which is
        // at-least-once, sees the records again.
        handle(&engine, &sent, invocation(&batch)).await.expect("the batch decodes");
        assert_eq!(enrolled(&engine, "c1"), "2");
        assert_eq!(sent.taken().len(), 2);
    }

    #[tokio::test]
    async fn records_tally_could_not_apply_are_left_for_redelivery_and_not_greeted() {
        let (engine, sent) = (engine(), Sent::default());
        engine.store().inject(Call::Read, Fault::Reject);
        let response = handle(&engine, &sent, invocation(&[enrollment(1, "c1", "s1")])).await.expect("the batch decodes");
        let failed: Vec<_> = response.batch_item_failures.iter().filter_map(|failure| failure.item_identifier.clone()).collect();
        assert_eq!(failed, ["000000000000000000001"]);
        assert!(sent.taken().is_empty(), "nobody is greeted for an enrollment that is not counted yet");
    }
}
