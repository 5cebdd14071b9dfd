//! `tally redrive`: re-apply the stream ranges named by Lambda's on-failure destination messages.
//!
//! Lambda sends only positions (`DDBStreamBatchInfo`), not records; they must be fetched from the
//! stream within its 24 h retention. The engine's ledgers make a range that was partly applied,
//! or redriven twice, safe.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use aws_lambda_events::event::dynamodb::EventRecord;
use clap::Args;
use serde_json::Value;

use crate::cli::Common;
use crate::consume::{BatchInfo, FailureMessage};
use crate::decode::decode_batch;
use crate::engine::Engine;
use crate::sequence::SequenceNumber;
use crate::store::DynamoTable;
use crate::stream::{Position, StreamReader};

#[derive(Debug, Args)]
pub struct Opts {
    /// Files of failure messages: one message body, a JSON array of them, one per line, or the
    /// output of `aws sqs receive-message` (bodies under `Messages[].Body`).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Seconds the engine gets per range.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
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
            let message: FailureMessage =
                serde_json::from_value(Value::Object(object)).context("not an on-failure message with `DDBStreamBatchInfo`")?;
            found.push(message.batch);
            Ok(())
        }
        other => bail!("expected a message object, found {other}"),
    }
}

pub async fn cmd(common: &Common, opts: Opts) -> anyhow::Result<ExitCode> {
    let mut all = Vec::new();
    for file in &opts.files {
        all.extend(messages(file)?);
    }
    // Oldest first within each shard: a record older than what its item's ledger took on trust
    // corrects that baseline, and the correction is exact only from the earliest such record.
    all.sort_by(|a, b| {
        let start = |info: &BatchInfo| SequenceNumber::parse(&info.start_sequence_number);
        (&a.stream_arn, &a.shard_id).cmp(&(&b.stream_arn, &b.shard_id)).then_with(|| start(a).cmp(&start(b)))
    });
    let engine = Engine::new(DynamoTable::new(common.client().await, common.table.clone()));
    let streams = common.streams_client().await;
    let mut failed = 0;
    let mut reports = Vec::new();
    for info in &all {
        let region = info.stream_arn.split(':').nth(3).unwrap_or_default().to_owned();
        let reader = StreamReader::new(streams.clone(), &info.stream_arn, region);
        let label = format!("shard {} [{}..{}]", info.shard_id, info.start_sequence_number, info.end_sequence_number);
        let result = redrive(&engine, &reader, info, &common.table, Duration::from_secs(opts.timeout)).await;
        match result {
            Ok(outcome) => {
                if common.json {
                    reports.push(serde_json::json!({"range": label, "records": outcome.records, "by_class": outcome.by_class}));
                } else {
                    println!("{label}: {} record(s) {:?}", outcome.records, outcome.by_class);
                }
            }
            Err(err) => {
                failed += 1;
                if common.json {
                    reports.push(serde_json::json!({"range": label, "error": format!("{err:#}")}));
                } else {
                    eprintln!("tally: error: {label}: {err:#}");
                }
            }
        }
    }
    if common.json {
        println!("{}", serde_json::json!({ "messages": all.len(), "failed": failed, "ranges": reports }));
    }
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(2) })
}

async fn redrive(
    engine: &Engine<DynamoTable>,
    reader: &StreamReader,
    info: &BatchInfo,
    table: &str,
    timeout: Duration,
) -> anyhow::Result<crate::engine::BatchOutcome> {
    let end = SequenceNumber::parse(&info.end_sequence_number).context("`endSequenceNumber` is not a sequence number")?;
    let mut iterator = reader.iterator(&info.shard_id, &Position::At(info.start_sequence_number.clone())).await?;
    let mut records: Vec<EventRecord> = Vec::new();
    let mut empty_pages = 0;
    'pages: while let Some(current) = iterator.take() {
        let page = reader.page(&current, 1000).await?;
        empty_pages = if page.records.is_empty() { empty_pages + 1 } else { 0 };
        for record in page.records {
            let past_end = record.change.sequence_number.as_deref().and_then(SequenceNumber::parse).is_none_or(|sequence| sequence > end);
            if past_end {
                break 'pages;
            }
            records.push(record);
        }
        if empty_pages >= 3 {
            break;
        }
        iterator = page.next;
    }
    if records.is_empty() {
        bail!("no records found in the range (expired from the stream, or the shard is gone)");
    }
    let changes = decode_batch(&records, table)?;
    let outcome = engine.process(&changes, tokio::time::Instant::now() + timeout).await;
    if let Some(failed_from) = outcome.failed_from {
        bail!("applied up to record {failed_from} of {}: {}; run redrive again", records.len(), outcome.failure.unwrap_or_default());
    }
    Ok(outcome)
}
