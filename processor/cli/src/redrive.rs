//! `tally redrive`: re-apply the stream ranges named by Lambda's on-failure destination messages.
//!
//! Lambda sends only positions (`DDBStreamBatchInfo`), not records; they must be fetched from the
//! stream within its 24 h retention. The engine's ledgers make a range that was partly applied,
//! or redriven twice, safe. Messages come from files, or straight from the SQS failure queue
//! (`--queue-url`), where each is deleted only once its range has been applied.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use aws_lambda_events::event::dynamodb::EventRecord;
use clap::Args;
use serde_json::Value;

use crate::failure_queue::{FailureQueue, Received};
use crate::Context;
use tally_engine::decode::table_of_stream;
use tally_engine::outcome::{BatchOutcome, RecordClass};
use tally_engine::sequence::SequenceNumber;
use tally_engine::store::DynamoTable;
use tally_engine::stream::{Position, StreamReader, Streams, EMPTY_PAGES_AT_END};
use tally_engine::Engine;
use tally_jobs::backfill::in_progress;
use tally_jobs::consume::failure_log::{BatchInfo, FailureMessage};

/// The flags of `tally redrive`.
#[derive(Debug, Args)]
pub struct Opts {
    /// Files of failure messages: one message body, a JSON array of them, one per line, or the
    /// output of `aws sqs receive-message` (bodies under `Messages[].Body`).
    #[arg(required_unless_present = "queue_url")]
    pub files: Vec<PathBuf>,
    /// Drain the SQS failure queue instead: every message is redriven and deleted once its range
    /// is applied; a message that fails stays in the queue. The endpoint follows the SDK's
    /// `AWS_ENDPOINT_URL_SQS` / `AWS_ENDPOINT_URL`.
    #[arg(long, conflicts_with = "files")]
    pub queue_url: Option<String>,
    /// Most messages taken from the queue in one run.
    #[arg(long, default_value_t = 1000, requires = "queue_url", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_messages: u64,
    /// Seconds a received message stays hidden from other readers while this run redrives it
    /// (SQS allows up to 12 hours).
    #[arg(long, default_value_t = 900, requires = "queue_url", value_parser = clap::value_parser!(u64).range(0..=43_200))]
    pub visibility_timeout: u64,
    /// Seconds the engine gets per range.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
}

/// One range to redrive, and where its message came from.
#[derive(Debug)]
struct Range {
    info: BatchInfo,
    source: String,
    /// The queue message to delete once the range is applied.
    message: Option<Received>,
}

/// Reads every message in a file, naming the file and message on error.
pub fn messages(path: &PathBuf) -> anyhow::Result<Vec<BatchInfo>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let mut found = Vec::new();
    for (index, value) in serde_json::Deserializer::from_str(&text).into_iter::<Value>().enumerate() {
        let value = value.with_context(|| format!("{}: value {index} is not JSON", path.display()))?;
        collect(value, &mut found).with_context(|| format!("{}: value {index}", path.display()))?;
    }
    if found.is_empty() {
        bail!("{}: no failure messages", path.display());
    }
    Ok(found)
}

/// Finds the failure messages in a JSON value: a message, an array of them, an SQS message
/// (`Body`) or receive-message output (`Messages`), or an SNS notification (`Message`) when the
/// destination is a topic with the queue subscribed.
fn collect(value: Value, found: &mut Vec<BatchInfo>) -> anyhow::Result<()> {
    match value {
        Value::Array(values) => values.into_iter().try_for_each(|value| collect(value, found)),
        Value::Object(mut object) => {
            if let Some(messages) = object.remove("Messages") {
                return collect(messages, found);
            }
            if let Some(Value::String(body)) = object.remove("Body") {
                return collect(serde_json::from_str(&body).context("`Body` is not JSON")?, found);
            }
            if object.get("Type").and_then(Value::as_str) == Some("Notification") {
                if let Some(Value::String(message)) = object.remove("Message") {
                    return collect(serde_json::from_str(&message).context("the SNS `Message` is not JSON")?, found);
                }
            }
            let message: FailureMessage =
                serde_json::from_value(Value::Object(object)).context("not an on-failure message with `DDBStreamBatchInfo`")?;
            found.push(message.batch);
            Ok(())
        }
        other => bail!("expected a message object, found {other}"),
    }
}

/// What became of one range, for the summary.
#[derive(Debug, serde::Serialize)]
struct Report {
    range: String,
    source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    records: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    by_class: Option<std::collections::BTreeMap<RecordClass, u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// Whether its queue message was deleted.
    deleted: bool,
}

/// Fetches the range of each message from the stream and applies it, oldest first per shard;
/// with `--queue-url`, each message is deleted once its range is applied.
///
/// Exit status: 0 every range applied, 2 any not (its message left in the queue) or error.
pub async fn cmd(ctx: &Context, opts: Opts) -> anyhow::Result<ExitCode> {
    // Before any message is received: a refused run must leave the queue as it was.
    let engine = Engine::new(Arc::clone(&ctx.rules), ctx.open().await?);
    in_progress::ensure_finished(engine.store()).await?;
    let queue = match &opts.queue_url {
        Some(url) => Some(open_queue(ctx, url).await),
        None => None,
    };
    let (mut ranges, mut reports) = match &queue {
        Some(queue) => received_ranges(queue, &opts).await?,
        None => (file_ranges(&opts.files)?, Vec::new()),
    };
    sort_oldest_first(&mut ranges);
    let streams = ctx.streams().await;
    let timeout = Duration::from_secs(opts.timeout);
    for range in ranges {
        reports.push(apply(&engine, &streams, range, queue.as_ref(), timeout).await);
    }
    let failed = reports.iter().filter(|report| report.error.is_some()).count();
    print_reports(&reports, failed, queue.as_ref(), ctx.json);
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(2) })
}

/// The failure queue at `url`; its endpoint follows the SDK's variables, not `--endpoint`.
async fn open_queue(ctx: &Context, url: &str) -> FailureQueue {
    FailureQueue::connect(url, ctx.region.as_deref()).await
}

/// The ranges of the messages received from the queue; a message that names no single range
/// is reported failed, and stays in the queue.
async fn received_ranges(queue: &FailureQueue, opts: &Opts) -> anyhow::Result<(Vec<Range>, Vec<Report>)> {
    let received =
        queue.receive_all(usize::try_from(opts.max_messages).unwrap_or(usize::MAX), Duration::from_secs(opts.visibility_timeout)).await?;
    let (mut ranges, mut reports) = (Vec::new(), Vec::new());
    for message in received {
        let source = format!("SQS message {}", message.message_id);
        let mut found = Vec::new();
        match serde_json::from_str(&message.body).map_err(anyhow::Error::from).and_then(|value| collect(value, &mut found)) {
            Ok(()) if found.len() == 1 => {
                ranges.push(Range { info: found.remove(0), source, message: Some(message) });
            }
            Ok(()) => reports.push(failed_report(source, format!("holds {} failure messages, expected one", found.len()))),
            Err(err) => reports.push(failed_report(source, format!("{err:#}"))),
        }
    }
    Ok((ranges, reports))
}

/// The ranges of every message in `files`; any unreadable file fails the run before anything
/// is applied.
fn file_ranges(files: &[PathBuf]) -> anyhow::Result<Vec<Range>> {
    let mut ranges = Vec::new();
    for file in files {
        let source = file.display().to_string();
        ranges.extend(messages(file)?.into_iter().map(|info| Range { info, source: source.clone(), message: None }));
    }
    Ok(ranges)
}

/// Oldest first within each shard: a record older than what its item's ledger took on trust
/// corrects that baseline, and the correction is exact only from the earliest such record.
fn sort_oldest_first(ranges: &mut [Range]) {
    ranges.sort_by(|a, b| {
        let start = |info: &BatchInfo| SequenceNumber::parse(&info.start_sequence_number);
        (&a.info.stream_arn, &a.info.shard_id)
            .cmp(&(&b.info.stream_arn, &b.info.shard_id))
            .then_with(|| start(&a.info).cmp(&start(&b.info)))
    });
}

/// Redrives one range and, once it is applied, deletes its queue message.
async fn apply(engine: &Engine<DynamoTable>, streams: &Streams, range: Range, queue: Option<&FailureQueue>, timeout: Duration) -> Report {
    let info = &range.info;
    let reader = streams.reader(&info.stream_arn);
    let label = format!("shard {} [{}..{}]", info.shard_id, info.start_sequence_number, info.end_sequence_number);
    let mut report = match redrive(engine, &reader, info, engine.store().name(), timeout).await {
        Ok(outcome) => Report {
            range: label,
            source: range.source,
            records: Some(outcome.records),
            by_class: Some(outcome.by_class),
            error: None,
            deleted: false,
        },
        Err(err) => {
            Report { range: label, source: range.source, records: None, by_class: None, error: Some(format!("{err:#}")), deleted: false }
        }
    };
    if let (None, Some(queue), Some(message)) = (&report.error, queue, &range.message) {
        match queue.delete(message).await {
            Ok(()) => report.deleted = true,
            Err(err) => {
                report.error = Some(format!("applied, but the message could not be deleted (redriving it again is harmless): {err}"))
            }
        }
    }
    report
}

/// The summary: one JSON object, or a line per range (errors on stderr) and the queue's count.
fn print_reports(reports: &[Report], failed: usize, queue: Option<&FailureQueue>, json: bool) {
    if json {
        println!("{}", serde_json::json!({ "messages": reports.len(), "failed": failed, "ranges": reports }));
        return;
    }
    for report in reports {
        match (&report.error, &report.by_class) {
            (Some(error), _) => eprintln!("tally: error: {}: {}: {error}", report.source, report.range),
            (None, by_class) => println!(
                "{}: {}: {} record(s) {:?}{}",
                report.source,
                report.range,
                report.records.unwrap_or_default(),
                by_class.clone().unwrap_or_default(),
                if report.deleted { ", message deleted" } else { "" }
            ),
        }
    }
    if let Some(queue) = queue {
        println!("{} message(s) from {}: {} redriven, {failed} left in the queue", reports.len(), queue.url(), reports.len() - failed);
    }
}

fn failed_report(source: String, error: String) -> Report {
    Report { range: "(unreadable)".into(), source, records: None, by_class: None, error: Some(error), deleted: false }
}

async fn redrive(
    engine: &Engine<DynamoTable>,
    reader: &StreamReader,
    info: &BatchInfo,
    table: &str,
    timeout: Duration,
) -> anyhow::Result<BatchOutcome> {
    // Records of another table's stream are skipped by the engine: redriven into the wrong table,
    // the range would apply nothing and look done.
    match table_of_stream(&info.stream_arn) {
        Some(stream_table) if stream_table == table => {}
        Some(stream_table) => bail!("the range is in the stream of table `{stream_table}`, not of `{table}`: pass --table {stream_table}"),
        None => bail!("`streamArn` `{}` is not a DynamoDB stream ARN", info.stream_arn),
    }
    let end = SequenceNumber::parse(&info.end_sequence_number).context("`endSequenceNumber` is not a sequence number")?;
    let mut iterator = reader.iterator(&info.shard_id, &Position::At(info.start_sequence_number.clone())).await?;
    let mut records: Vec<EventRecord> = Vec::new();
    let mut empty_pages = 0;
    let mut reached_end = false;
    'pages: while let Some(current) = iterator.take() {
        let page = reader.page(&current, 1000).await?;
        empty_pages = if page.records.is_empty() { empty_pages + 1 } else { 0 };
        for record in page.records {
            let Some(sequence) = record.change.sequence_number.as_deref().and_then(SequenceNumber::parse) else {
                bail!("record `{}` of the range has no valid sequence number", record.event_id);
            };
            if sequence > end {
                reached_end = true;
                break 'pages;
            }
            records.push(record);
            if sequence == end {
                reached_end = true;
                break 'pages;
            }
        }
        // An open shard can answer empty pages before the records that follow; the range's end
        // was in the stream once, so keep reading, within reason.
        if empty_pages >= EMPTY_PAGES_AT_END {
            break;
        }
        iterator = page.next;
    }
    if records.is_empty() {
        bail!("no records found in the range (expired from the stream, or the shard is gone)");
    }
    if !reached_end {
        bail!(
            "read {} record(s) of the range but not its end `{}` (the stream answered nothing more); nothing was applied, run redrive again",
            records.len(),
            info.end_sequence_number
        );
    }
    let outcome = engine.apply(&records, tokio::time::Instant::now() + timeout).await?;
    if let Some(failure) = &outcome.failure {
        let advice = crate::rerun_advice(failure, "redrive");
        bail!("not applied from record {} of {}: {failure}; {advice}", failure.from, records.len());
    }
    Ok(outcome)
}
