//! `tally replay`: apply Lambda DynamoDB event files through the engine, exactly as the Lambda would.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aggregates::Rules;
use aws_lambda_events::event::dynamodb::Event;
use chrono::{DateTime, SecondsFormat, Utc};
use clap::Args;
use serde::Serialize;
use serde_dynamo::AttributeValue;

use crate::Context;
use tally_engine::decode::{decode_batch, table_of_stream, Change, Origin};
use tally_engine::outcome::Totals;
use tally_engine::registry::LEDGER_RETENTION;
use tally_engine::stream::STREAM_RETENTION;
use tally_engine::Engine;
use tally_jobs::backfill::in_progress;

/// The flags of `tally replay`.
#[derive(Debug, Args)]
pub struct Opts {
    /// Event files (`{"Records": [...]}`) or directories of them, taken in lexical order.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Give up on a file's batch after this many seconds of retrying.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    /// Apply records older than the stream's 24 h retention. Their items' ledgers may have
    /// expired, so a record applied before would count again: only for a table that never saw
    /// these records (a fresh table, a test).
    #[arg(long)]
    pub allow_stale: bool,
    /// The table the files were captured from, when it is not --table: records whose
    /// `eventSourceARN` names NAME are applied to --table, as its own (production's capture
    /// replayed into staging, say). Records of any other table, --table's own included, are still
    /// skipped (`other_table`). Without it, only records of --table are applied. Either way, a run
    /// in which every record is another table's fails, writing nothing.
    #[arg(long, value_name = "NAME", value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub source_table: Option<String>,
}

/// A file that cannot be replayed; names the file, and the record and field where known.
#[derive(Debug, thiserror::Error)]
#[error("{}: {problem}", .path.display())]
pub struct FileError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong with it.
    pub problem: String,
}

/// One file, parsed and decoded, ready to apply.
#[derive(Debug)]
pub struct Batch<'r> {
    /// The file.
    pub path: PathBuf,
    /// Its records, decoded, in order.
    pub changes: Vec<Change<'r>>,
    /// When DynamoDB wrote each record (`dynamodb.ApproximateCreationDateTime`), by position.
    pub written_at: Vec<DateTime<Utc>>,
    /// The table each record of another table ([`Origin::OtherTable`]) is of, by position in
    /// the batch, as its `eventSourceARN` names it.
    pub other_tables: Vec<(usize, String)>,
}

impl Batch<'_> {
    /// The first record of the table written more than `retention` before `now`, as a refusal
    /// naming it. Another table's records are skipped whatever their age, so it is not judged.
    pub fn first_stale(&self, now: DateTime<Utc>, retention: chrono::Duration) -> Option<FileError> {
        let (change, at) = self
            .changes
            .iter()
            .zip(&self.written_at)
            .filter(|(change, _)| change.origin != Origin::OtherTable)
            .find(|(_, at)| now.signed_duration_since(**at) > retention)?;
        let (index, event_id) = (change.index, change.event_id.as_str());
        // The event type reads a missing time as the epoch.
        let written = if at.timestamp() == 0 {
            "has no `dynamodb.ApproximateCreationDateTime`, so it cannot be shown to be".to_owned()
        } else {
            format!("was written at {} (`dynamodb.ApproximateCreationDateTime`),", at.to_rfc3339_opts(SecondsFormat::Secs, true))
        };
        Some(FileError {
            path: self.path.clone(),
            problem: format!(
                "record {index} (eventID `{event_id}`) {written} longer ago than the \
                 stream's {} h retention. Ledgers expire {} h after an item's last write, so a record applied back then would now \
                 count twice. To rebuild the aggregates from the table, run `tally backfill`; to apply the file anyway (a table \
                 that never saw these records), pass --allow-stale. Nothing was written",
                retention.num_hours(),
                LEDGER_RETENTION.num_hours(),
            ),
        })
    }
}

/// Expands directories into their `.json` files, sorted.
pub fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>, FileError> {
    let mut files = Vec::new();
    for path in paths {
        let error = |problem: String| FileError { path: path.clone(), problem };
        let meta = std::fs::metadata(path).map_err(|err| error(format!("cannot read: {err}")))?;
        if meta.is_dir() {
            let mut inside = Vec::new();
            for entry in std::fs::read_dir(path).map_err(|err| error(format!("cannot list: {err}")))? {
                let entry = entry.map_err(|err| error(format!("cannot list: {err}")))?.path();
                if entry.extension().is_some_and(|ext| ext == "json") {
                    inside.push(entry);
                }
            }
            inside.sort();
            if inside.is_empty() {
                return Err(error("directory holds no .json files".into()));
            }
            files.extend(inside);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

/// Parses and validates one file completely, its records decoded by `rules`, those of `table`
/// (by their `eventSourceARN`) as the table's own; nothing is written until every file passes.
pub fn load<'r>(path: &Path, table: &str, rules: &'r Rules) -> Result<Batch<'r>, FileError> {
    let error = |problem: String| FileError { path: path.to_owned(), problem };
    let bytes = std::fs::read(path).map_err(|err| error(format!("cannot read: {err}")))?;
    let bytes = crate::text_bytes(&bytes).map_err(error)?;
    if bytes.iter().find(|byte| !byte.is_ascii_whitespace()) == Some(&b'[') {
        return Err(error("the file holds a JSON array; an event is one JSON object, `{\"Records\": [...]}`".into()));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let event: Event = serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let at = err.path().to_string();
        let inner = err.into_inner();
        if inner.to_string().starts_with("recursion limit exceeded") {
            error(format!("nested deeper than the 128 levels a Lambda event may have: {inner}"))
        } else if inner.is_syntax() || inner.is_eof() {
            error(format!("not JSON: {inner}"))
        } else {
            error(format!("not a Lambda DynamoDB event at `{at}`: {inner}"))
        }
    })?;
    // A second event (or anything else) after the first would otherwise be dropped unread.
    deserializer.end().map_err(|err| error(format!("more after the event, which must be the file's only JSON value: {err}")))?;
    if event.records.is_empty() {
        return Err(error("`Records` is empty".into()));
    }
    for (index, record) in event.records.iter().enumerate() {
        let images = [("Keys", &record.change.keys), ("NewImage", &record.change.new_image), ("OldImage", &record.change.old_image)];
        for (image_name, image) in images {
            for (name, value) in image.iter() {
                check_numbers(value).map_err(|problem| {
                    error(format!("record {index} (eventID `{}`): `dynamodb.{image_name}.{name}`: {problem}", record.event_id))
                })?;
            }
        }
    }
    let changes = decode_batch(&event.records, table, rules).map_err(|err| error(err.to_string()))?;
    let written_at = event.records.iter().map(|record| record.change.approximate_creation_date_time).collect();
    // Decoding judged these ARNs to name another table, so they name one.
    let other_tables = changes
        .iter()
        .filter(|change| change.origin == Origin::OtherTable)
        .filter_map(|change| {
            let arn = event.records.get(change.index)?.event_source_arn.as_deref()?;
            Some((change.index, table_of_stream(arn)?.to_owned()))
        })
        .collect();
    Ok(Batch { path: path.to_owned(), changes, written_at, other_tables })
}

/// Refuses a run in which every record is another table's: it would apply nothing, almost always
/// because the files are a capture of a table of another name. `source_table` is
/// `--source-table`, if given; the error names the records' tables, each with its first record.
fn check_any_own(batches: &[Batch<'_>], table: &str, source_table: Option<&str>) -> anyhow::Result<()> {
    let changes = || batches.iter().flat_map(|batch| &batch.changes);
    if changes().next().is_none() || changes().any(|change| change.origin != Origin::OtherTable) {
        return Ok(());
    }
    // Per table, in the order first seen: how many records, and the first.
    let mut of_table: Vec<OtherTable<'_>> = Vec::new();
    for batch in batches {
        for (index, name) in &batch.other_tables {
            match of_table.iter_mut().find(|seen| seen.name == name) {
                Some(seen) => seen.records += 1,
                None => {
                    let event_id = batch.changes.get(*index).map_or("", |change| change.event_id.as_str());
                    of_table.push(OtherTable { name, records: 1, path: &batch.path, index: *index, event_id });
                }
            }
        }
    }
    // The most records first; among equals, the first seen.
    of_table.sort_by_key(|table| std::cmp::Reverse(table.records));
    let tables = of_table.iter().map(OtherTable::to_string).collect::<Vec<_>>().join(", ");
    let captured = of_table.first().map_or("", |table| table.name);
    match source_table {
        None => anyhow::bail!(
            "no record is of table `{table}`; every record's `eventSourceARN` names another table: {tables}. Records of another \
             table are skipped, so nothing would be applied. Nothing was written. To apply the capture of `{captured}` to \
             `{table}`, pass --source-table {captured} (records of any other table are still skipped); to apply it to \
             `{captured}` itself, pass --table {captured}"
        ),
        Some(source) if captured == table => anyhow::bail!(
            "no record's `eventSourceARN` names --source-table `{source}`: the records are of {tables}. Nothing was written. \
             To apply the records of `{table}` to `{table}` itself, leave out --source-table"
        ),
        Some(source) => anyhow::bail!(
            "no record's `eventSourceARN` names --source-table `{source}`: the records are of {tables}. Nothing was written. \
             Pass the table the files were captured from: --source-table {captured}"
        ),
    }
}

/// A number DynamoDB could not have stored cannot come from a real stream: the file is not a
/// faithful capture. (The Lambda path rejects the image when the rules read that attribute, as
/// the university contract (docs/university.md) says, and ignores it otherwise.)
fn check_numbers(value: &AttributeValue) -> Result<(), String> {
    match value {
        AttributeValue::N(text) => text.parse::<aggregates::Number>().map(drop).map_err(|err| err.to_string()),
        AttributeValue::Ns(texts) => texts.iter().try_for_each(|text| check_numbers(&AttributeValue::N(text.clone()))),
        AttributeValue::L(values) => values.iter().try_for_each(check_numbers),
        AttributeValue::M(values) => values.values().try_for_each(check_numbers),
        _ => Ok(()),
    }
}

/// The records of one other table in a run, for [`check_any_own`]'s error.
struct OtherTable<'a> {
    name: &'a str,
    records: usize,
    /// The first record: its file, index there and eventID.
    path: &'a Path,
    index: usize,
    event_id: &'a str,
}

impl std::fmt::Display for OtherTable<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self { name, records, path, index, event_id } = self;
        let first = format!("{} record {index} (eventID `{event_id}`)", path.display());
        match records {
            1 => write!(f, "`{name}` (1 record; {first})"),
            _ => write!(f, "`{name}` ({records} records; the first: {first})"),
        }
    }
}

/// What a replay did.
#[derive(Debug, Default, Serialize)]
struct Summary {
    files: usize,
    #[serde(flatten)]
    totals: Totals,
    elapsed_ms: u128,
    /// Set when a batch could not be applied in full.
    failure: Option<String>,
}

/// Loads and checks every file, then applies them through the engine in order, stopping at the
/// first batch not applied in full.
///
/// Exit status: 0 every file applied, 2 error (a file refused, so nothing written, included).
pub async fn cmd(ctx: &Context, opts: Opts) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    // Records of `--source-table` are decoded as the table's own; the engine writes them to
    // `--table`, which it opens.
    let captured = opts.source_table.as_deref().unwrap_or(&ctx.table);
    let batches = expand(&opts.paths)?.iter().map(|path| load(path, captured, ctx.rules())).collect::<Result<Vec<_>, _>>()?;
    check_any_own(&batches, &ctx.table, opts.source_table.as_deref())?;
    if !opts.allow_stale {
        let now = Utc::now();
        if let Some(refusal) = batches.iter().find_map(|batch| batch.first_stale(now, STREAM_RETENTION)) {
            return Err(refusal.into());
        }
    }
    let engine = Engine::new(Arc::clone(&ctx.rules), ctx.open().await?);
    in_progress::ensure_finished(engine.store()).await?;
    let mut summary = Summary { files: batches.len(), ..Summary::default() };
    let progress = crate::progress::Progress::new(batches.len() as u64, "files", ctx.json);
    for batch in &batches {
        let outcome = engine.process(&batch.changes, tokio::time::Instant::now() + Duration::from_secs(opts.timeout)).await;
        summary.totals.add(&outcome);
        progress.advance(1);
        if let Some(failure) = &outcome.failure {
            let failed_from = failure.from;
            let record = &batch.changes[failed_from];
            summary.failure = Some(format!(
                "{}: record {failed_from} (eventID `{}`) and the {} after it were not applied: {failure}; {}",
                batch.path.display(),
                record.event_id,
                batch.changes.len() - failed_from - 1,
                crate::rerun_advice(failure, "replay of the file"),
            ));
            break;
        }
    }
    progress.finish();
    summary.elapsed_ms = started.elapsed().as_millis();
    print_summary(&summary, ctx.json)?;
    Ok(if summary.failure.is_some() { ExitCode::from(2) } else { ExitCode::SUCCESS })
}

fn print_summary(summary: &Summary, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(summary)?);
        return Ok(());
    }
    println!("files        {}", summary.files);
    let totals = &summary.totals;
    println!("records      {}", totals.records);
    for (class, count) in &totals.by_class {
        println!("  {class:<16} {count}");
    }
    for (reason, count) in &totals.rejected {
        println!("  rejected {reason:<10} {count}");
    }
    println!("ttl deleted  {}", totals.ttl_deletions);
    println!(
        "dynamodb     {} requests; reported {:.1} RCU, {:.1} WCU; estimated {} RCU, {} WCU",
        totals.dynamodb_requests, totals.read_units, totals.write_units, totals.estimated_read_units, totals.estimated_write_units
    );
    println!("elapsed      {} ms", summary.elapsed_ms);
    if let Some(failure) = &summary.failure {
        eprintln!("tally: error: {failure}");
    }
    Ok(())
}
