//! The automatic path without AWS: the table's own stream, read by `tally consume` (and the
//! consumer library), and `tally redrive` of failure-destination messages, on DynamoDB Local.
#![cfg(feature = "dynamodb-local")]

mod support;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use support::cli::{consume, failure_log, json, run, tally, unique_table};
use support::faults::{Fault, FaultyTable};
use tally_engine::store::checkpoints::Checkpoints;
use tally_engine::store::{connect, sdk_config, DynamoTable};
use tally_engine::stream::{Position, StreamReader, Streams};
use tally_engine::Engine;
use tally_jobs::consume::{ConsumeOptions, ConsumeSummary, Consumer};

fn verify_exact(table: &str) {
    let (code, stdout, stderr) = run(tally(table).arg("verify"));
    assert_eq!(code, 0, "verify found drift:\n{stdout}\n{stderr}");
}

async fn reader(table: &str) -> StreamReader {
    let client = connect(None, None).await;
    let arn =
        DynamoTable::new(client.clone(), table, support::university()).latest_stream_arn().await.unwrap().expect("the table has a stream");
    Streams::connect(None, None).await.reader(&arn)
}

/// Consecutive transient failures that outlast a batch's 5 s: the engine's ten waits between
/// them alone (15 ms doubling, capped at 1.5 s, before jitter) add up to 6.4 s, so the batch ends
/// at its deadline, retryable, however fast the server answers.
fn outlasting_the_deadline() -> impl Iterator<Item = Option<Fault>> {
    std::iter::repeat_n(Some(Fault::FailBefore), 11)
}

/// A batch timeout short enough for [`outlasting_the_deadline`] to end batches, and long enough
/// for a batch without faults to apply on a loaded DynamoDB Local.
const SHORT_BATCH: Duration = Duration::from_secs(5);

fn options(table: &str, max_retries: u32) -> ConsumeOptions {
    ConsumeOptions {
        from: Position::TrimHorizon,
        batch_size: 25,
        batch_window: Duration::from_millis(100),
        max_retries,
        batch_timeout: Duration::from_secs(20),
        until_caught_up: true,
        poll_interval: Duration::from_millis(200),
        failure_log: failure_log(table),
    }
}

#[tokio::test]
async fn writes_reach_the_aggregates_through_consume() {
    let name = unique_table();
    json(tally(&name).arg("init"));
    json(tally(&name).args(["seed", "--ops", "400", "--seed", "5"]));
    let summary = consume(&name);
    assert!(summary["by_class"]["applied"].as_u64().unwrap() > 100, "{summary}");
    verify_exact(&name);
    // Caught up: a second run applies nothing.
    let again = consume(&name);
    assert!(again["by_class"].get("applied").is_none(), "{again}");
}

#[tokio::test]
async fn handler_failures_are_retried_from_the_failure_point() {
    let name = unique_table();
    json(tally(&name).arg("init"));
    json(tally(&name).args(["seed", "--ops", "300", "--seed", "8"]));
    let client = connect(None, None).await;
    let reader = reader(&name).await;
    let script: Vec<Option<Fault>> = [None]
        .into_iter()
        .chain(outlasting_the_deadline())
        .chain([Some(Fault::LoseResponse), None, Some(Fault::FailBefore)])
        .chain(outlasting_the_deadline())
        .chain([None])
        .chain(outlasting_the_deadline())
        .collect();
    let table = DynamoTable::new(client, &name, support::university());
    let checkpoints = Checkpoints::new(table.clone(), reader.arn());
    let engine = Engine::new(support::university(), FaultyTable::new(table, script));
    let options = ConsumeOptions { batch_timeout: SHORT_BATCH, ..options(&name, 10) };
    let summary = Consumer::new(&engine, reader, checkpoints, options, Arc::new(AtomicBool::new(false))).run().await.unwrap();
    assert!(summary.retries >= 3, "{summary:?}");
    assert_eq!(summary.records_to_failure_log, 0);
    verify_exact(&name);
}

/// Seeds a table and consumes its stream while the table fails the first batches' commits until
/// their deadlines; with no retries, those batches' positions go to the failure log.
async fn consume_giving_up_the_first_batches(name: &str, seed: &str) -> ConsumeSummary {
    json(tally(name).arg("init"));
    json(tally(name).args(["seed", "--ops", "120", "--seed", seed]));
    let client = connect(None, None).await;
    let reader = reader(name).await;
    let table = DynamoTable::new(client, name, support::university());
    let checkpoints = Checkpoints::new(table.clone(), reader.arn());
    let script: Vec<Option<Fault>> = (0..3).flat_map(|_| outlasting_the_deadline()).collect();
    let engine = Engine::new(support::university(), FaultyTable::new(table, script));
    let _ = std::fs::remove_file(failure_log(name));
    let options = ConsumeOptions { batch_timeout: SHORT_BATCH, ..options(name, 0) };
    let summary = Consumer::new(&engine, reader, checkpoints, options, Arc::new(AtomicBool::new(false))).run().await.unwrap();
    assert!(summary.records_to_failure_log > 0, "{summary:?}");
    summary
}

#[tokio::test]
async fn a_permanent_failure_stops_consume_at_once_and_a_later_run_resumes() {
    let name = unique_table();
    json(tally(&name).arg("init"));
    json(tally(&name).args(["seed", "--ops", "120", "--seed", "5"]));
    let table = DynamoTable::new(connect(None, None).await, &name, support::university());
    let _ = std::fs::remove_file(failure_log(&name));
    let engine = Engine::new(support::university(), FaultyTable::new(table.clone(), [None, Some(Fault::Reject)]));
    let checkpoints = Checkpoints::new(table.clone(), reader(&name).await.arn());
    let stopped = Consumer::new(&engine, reader(&name).await, checkpoints, options(&name, 10), Arc::new(AtomicBool::new(false)))
        .run()
        .await
        .expect_err("a permanent failure stops the consumer");
    let message = format!("{stopped:#}");
    assert!(message.contains("DynamoDB rejected TransactWriteItems: injected: table rejects writes"), "{message}");
    assert!(message.contains("fix it and run consume again (it resumes from the last checkpoint)"), "{message}");
    assert!(!failure_log(&name).exists(), "nothing was given up: no retry was wasted and no position logged");

    // Once the cause is gone, the next run resumes from the last checkpoint and counts nothing twice.
    let checkpoints = Checkpoints::new(table.clone(), reader(&name).await.arn());
    let healed = Engine::new(support::university(), table);
    let summary =
        Consumer::new(&healed, reader(&name).await, checkpoints, options(&name, 10), Arc::new(AtomicBool::new(false))).run().await.unwrap();
    assert_eq!(summary.records_to_failure_log, 0, "{summary:?}");
    verify_exact(&name);
}

#[tokio::test]
async fn exhausted_retries_go_to_the_failure_log_and_redrive_applies_them() {
    let name = unique_table();
    consume_giving_up_the_first_batches(&name, "9").await;
    assert_eq!(run(tally(&name).arg("verify")).0, 1, "the given-up records are missing");

    let redriven = json(tally(&name).args(["redrive", failure_log(&name).to_str().unwrap()]));
    assert_eq!(redriven["failed"], 0, "{redriven}");
    verify_exact(&name);
    // Redriving the same messages again counts nothing twice.
    json(tally(&name).args(["redrive", failure_log(&name).to_str().unwrap()]));
    verify_exact(&name);
}

#[tokio::test]
async fn a_hand_made_failure_message_redrives_a_range_once() {
    let name = unique_table();
    json(tally(&name).arg("init"));
    json(tally(&name).args(["seed", "--ops", "60", "--seed", "2"]));
    consume(&name);
    // More writes that nothing consumes: only the redrive will apply them.
    json(tally(&name).args(["seed", "--ops", "60", "--seed", "3"]));
    let reader = reader(&name).await;
    let shards = reader.shards().await.unwrap();
    let shard = shards.last().unwrap().shard_id().unwrap().to_owned();
    let mut records = Vec::new();
    let mut iterator = reader.iterator(&shard, &Position::TrimHorizon).await.unwrap();
    let mut empty = 0;
    while let Some(current) = iterator.take() {
        let page = reader.page(&current, 1000).await.unwrap();
        empty = if page.records.is_empty() { empty + 1 } else { 0 };
        records.extend(page.records);
        if empty >= 3 {
            break;
        }
        iterator = page.next;
    }
    let sequence = |index: usize| records[index].change.sequence_number.clone().unwrap();
    let message = |start: usize, end: usize| {
        json!({
            "requestContext": {"requestId": "hand-made", "condition": "RetryAttemptsExhausted", "approximateInvokeCount": 3},
            "version": "1.0", "timestamp": "2026-11-22T00:00:00Z",
            "DDBStreamBatchInfo": {"shardId": shard, "startSequenceNumber": sequence(start), "endSequenceNumber": sequence(end), "batchSize": end - start + 1, "streamArn": reader.arn()}
        })
    };
    // As SQS delivers it: the message is the body, and `aws sqs receive-message` nests bodies.
    let path = std::env::temp_dir().join(format!("{name}-redrive.json"));
    let sqs = json!({"Messages": [{"MessageId": "m1", "Body": message(0, records.len() - 1).to_string()}]});
    std::fs::write(&path, sqs.to_string()).unwrap();
    let redriven = json(tally(&name).args(["redrive", path.to_str().unwrap()]));
    assert_eq!(redriven["failed"], 0, "{redriven}");
    assert!(redriven["ranges"][0]["by_class"]["already_applied"].as_u64().unwrap() > 0, "the consumed part is recognised: {redriven}");
    assert!(redriven["ranges"][0]["by_class"]["applied"].as_u64().unwrap() > 0, "the unconsumed part is applied: {redriven}");
    verify_exact(&name);

    // Into another table, the range would be all `other_table` records: applied as nothing.
    let (code, _, stderr) = run(tally(&name).args(["--table", "elsewhere", "redrive", path.to_str().unwrap()]));
    assert_eq!(code, 2);
    assert!(stderr.contains(&format!("the range is in the stream of table `{name}`, not of `elsewhere`: pass --table {name}")), "{stderr}");

    let gone = std::env::temp_dir().join(format!("{name}-gone.json"));
    let mut bogus = message(0, 1);
    bogus["DDBStreamBatchInfo"]["shardId"] = json!("shardId-00000000000000000000-deadbeef");
    std::fs::write(&gone, bogus.to_string()).unwrap();
    let (code, _, stderr) = run(tally(&name).args(["redrive", gone.to_str().unwrap()]));
    assert_eq!(code, 2);
    assert!(stderr.contains("shardId-00000000000000000000-deadbeef"), "{stderr}");
}

#[tokio::test]
async fn a_consumer_killed_mid_stream_resumes_exactly() {
    let name = unique_table();
    json(tally(&name).arg("init"));
    json(tally(&name).args(["seed", "--ops", "1500", "--seed", "4"]));
    let log = failure_log(&name);
    let mut child = tally(&name)
        .args(["consume", "--batch-size", "20", "--failure-log", log.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it (SIGKILL: no clean stop) once it has checkpointed some progress.
    let client = connect(None, None).await;
    let table = DynamoTable::new(client, &name, support::university());
    let arn = table.latest_stream_arn().await.unwrap().expect("the table has a stream");
    let checkpoints = Checkpoints::new(table, &arn);
    for _ in 0..100 {
        if checkpoints.load().await.unwrap().values().any(|checkpoint| checkpoint.sequence.is_some()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(run(tally(&name).arg("verify")).0, 1, "killed part-way, the aggregates are behind");
    consume(&name);
    verify_exact(&name);
}

#[tokio::test]
async fn redrive_drains_the_failure_queue_deleting_only_what_it_applied() {
    assert!(
        std::env::var_os("AWS_ENDPOINT_URL_SQS").is_some(),
        "AWS_ENDPOINT_URL_SQS is not set: run under scripts/with-sqs-local.sh (make test does)"
    );
    let name = unique_table();
    consume_giving_up_the_first_batches(&name, "12").await;
    let bodies: Vec<String> = std::fs::read_to_string(failure_log(&name)).unwrap().lines().map(str::to_owned).collect();
    assert!(!bodies.is_empty(), "the rejected batches reached the failure log");

    // Lambda's on-failure destination: one message per given-up batch, and two that cannot be
    // applied: one that is not an on-failure message, one whose shard does not exist.
    let sqs = aws_sdk_sqs::Client::new(&sdk_config(None, None).await);
    let queue = sqs.create_queue().queue_name(format!("failures-{name}")).send().await.unwrap().queue_url.unwrap();
    let mut gone: serde_json::Value = serde_json::from_str(&bodies[0]).unwrap();
    gone["DDBStreamBatchInfo"]["shardId"] = json!("shardId-00000000000000000000-deadbeef");
    for body in bodies.iter().cloned().chain([r#"{"hello": "world"}"#.to_owned(), gone.to_string()]) {
        sqs.send_message().queue_url(&queue).message_body(body).send().await.unwrap();
    }

    let (code, stdout, stderr) = run(tally(&name).args(["redrive", "--queue-url", &queue, "--json"]));
    assert_eq!(code, 2, "two messages could not be applied\n{stdout}\n{stderr}");
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!((summary["messages"].as_u64(), summary["failed"].as_u64()), (Some(bodies.len() as u64 + 2), Some(2)), "{summary}");
    for range in summary["ranges"].as_array().unwrap() {
        assert!(range["source"].as_str().unwrap().starts_with("SQS message "), "{range}");
        assert_eq!(range["deleted"].as_bool(), Some(range.get("error").is_none()), "deleted exactly when applied: {range}");
    }
    verify_exact(&name);

    // Only the two failures are left, hidden until their visibility timeout, then redelivered.
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(&queue)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap();
    let left: u64 = attributes.values().map(|count| count.parse::<u64>().unwrap()).sum();
    assert_eq!(left, 2, "{attributes:?}");
}
