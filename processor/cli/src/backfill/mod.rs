//! `tally backfill`: recompute every aggregate from a scan and write what differs.
//!
//! Besides the aggregates, backfill resets each source item's ledger to the contribution it just
//! counted, so records written before the scan but processed after it are measured from what
//! backfill counted, not counted again. What it cannot make safe is a stream processor writing
//! the same aggregates while it runs: writes are conditioned on the scanned versions and abort on
//! a change, and backfill refuses to start when the processor wrote recently.
//!
//! # Segmented runs
//!
//! For a table too large for one machine, N workers each run `--segment I --total-segments N
//! --run ID` on one slice of the scan. A worker resets its own items' ledgers and stores its
//! partial aggregate sums as bookkeeping items (`pk` = `tally#backfill#{run}`), then a done
//! marker. Aggregates are sums, so partial sums over disjoint slices add up to the whole exactly:
//! `--combine --run ID --total-segments N` checks every marker, adds the partials, and writes the
//! aggregates that differ.

pub mod marker;
mod pending;

use std::collections::{HashMap, HashSet};
use std::process::ExitCode;
use std::time::Duration;

use aggregates::keys::{ENTITY_TYPE, PK, SK, TTL, UPDATED_AT};
use aggregates::{AggregateKey, Field, Number};
use anyhow::{bail, ensure, Context as _};
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use clap::{ArgGroup, Args};

use crate::audit::{emptied, needs_ledger, Audit, Keep};
use crate::{scan, Common};
use tally_engine::decode::ItemKey;
use tally_engine::plan::{Ledger, LedgerWrite};
use tally_engine::retry::RetryBudget;
use tally_engine::store::codec::{
    aggregate_key, decode_ledger, encode_aggregate, encode_ledger, is_ledger_key, ledger_key, recreated, ConditionalPut, Expect, Writer,
};
use tally_engine::store::error::classify;
use tally_engine::store::{DynamoTable, SdkItem, StoreError, Table};

/// Puts per `TransactWriteItems`.
const CHUNK: usize = 100;
const PARTIAL_ENTITY_TYPE: &str = "tally_backfill_partial";
const SCANNED_VERSION: &str = "scannedVersion";
/// Partial results outlive any reasonable gap between the workers and the combine.
const PARTIAL_RETENTION: chrono::Duration = chrono::Duration::days(7);

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("segmented").args(["segment", "combine"])))]
pub struct Opts {
    /// Parallel scan segments on this machine (default: two per core, at least 4).
    #[arg(long, conflicts_with_all = ["segment", "combine"])]
    pub segments: Option<u32>,
    /// Report what would change; write nothing.
    #[arg(long, conflicts_with_all = ["segment", "combine"])]
    pub dry_run: bool,
    /// Run even though the stream processor wrote within the quiet period.
    #[arg(long, conflicts_with = "combine")]
    pub force: bool,
    /// Seconds without processor writes required before backfill runs.
    #[arg(long, default_value_t = 300, conflicts_with = "combine")]
    pub quiet_period: u64,
    /// Process only this slice (0-based) of a segmented run.
    #[arg(long, requires_all = ["total_segments", "run"])]
    pub segment: Option<u32>,
    /// Number of slices of a segmented run (with --segment or --combine).
    #[arg(long, requires = "segmented", value_parser = clap::value_parser!(u32).range(1..))]
    pub total_segments: Option<u32>,
    /// Name shared by the workers and the combine of one segmented run (with --segment or --combine).
    #[arg(long, requires = "segmented")]
    pub run: Option<String>,
    /// Add up the slices of a segmented run and write the aggregates. Refuses if any aggregate
    /// changed after the workers scanned it.
    #[arg(long, requires_all = ["total_segments", "run"], conflicts_with = "segment")]
    pub combine: bool,
}

pub async fn cmd(common: &Common, opts: Opts) -> anyhow::Result<ExitCode> {
    let table = DynamoTable::new(common.client().await, common.table.clone());
    if opts.combine {
        return combine(common, &table, &opts).await;
    }
    let (segments, total) = match (opts.segment, opts.total_segments) {
        (Some(segment), Some(total)) => {
            ensure!(segment < total, "--segment {segment} is not below --total-segments {total}");
            (vec![segment], total)
        }
        _ => {
            let total = opts.segments.unwrap_or_else(scan::default_segments).max(1);
            ((0..total).collect(), total)
        }
    };
    let mut audit = scan::audit(common, &segments, total, Keep::Items).await?;
    check_quiet(&audit, common, &opts)?;
    if segments.len() < total as usize {
        read_ledgers_of_this_slice(&table, &mut audit).await?;
    }
    let (aggregates, mut ledgers) = audit.backfill_plan();

    if let (Some(segment), Some(run)) = (opts.segment, &opts.run) {
        ledgers.extend(orphans_of_slice(&table, &audit, run).await?);
        marker::begin(&table, &marker::Owner::Run(run)).await?;
        // A re-run worker first takes back its earlier done marker: killed half-way, it must not
        // leave the combine an old entry count over a mix of old and new partial sums.
        commit_all(&table, &[unconditional(segment_marker(run, segment, total, None))], true)
            .await
            .with_context(|| format!("marking segment {segment} as started"))?;
        write_ledgers(&table, &ledgers, Writer::Backfill { run: Some(run) }).await?;
        let entries = write_partials(&table, run, segment, total, &audit).await?;
        summarize(
            common,
            &audit,
            None,
            ledgers.len(),
            false,
            &format!("segment {segment} of {total} for run `{run}`: {entries} partial aggregate(s) stored"),
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    ledgers.extend(audit.emptied_orphans());
    let mut note = String::new();
    if !opts.dry_run {
        let owner = uuid::Uuid::new_v4().to_string();
        let owner = marker::Owner::Invocation(&owner);
        marker::begin(&table, &owner).await?;
        let now = Utc::now();
        let puts: Vec<ConditionalPut> = aggregates.iter().map(|write| encode_aggregate(write, now)).collect();
        commit_all(&table, &puts, common.json).await?;
        write_ledgers(&table, &ledgers, Writer::Backfill { run: None }).await?;
        note = protect_pending_records(common, &table).await?;
        marker::finish(&table, &owner).await?;
    }
    summarize(common, &audit, Some(aggregates.len()), ledgers.len(), opts.dry_run, &note)?;
    Ok(ExitCode::SUCCESS)
}

/// Writes [`pending::ledgers_for_pending_records`]; returns a line for the summary.
async fn protect_pending_records(common: &Common, table: &DynamoTable) -> anyhow::Result<String> {
    Ok(match pending::ledgers_for_pending_records(common, table).await? {
        Some(ledgers) => {
            write_ledgers(table, &ledgers, Writer::Backfill { run: None }).await?;
            format!("{} ledger(s) written for uncounted items with records still in the stream", ledgers.len())
        }
        None => "the table has no stream: no records pending".to_owned(),
    })
}

fn check_quiet(audit: &Audit, common: &Common, opts: &Opts) -> anyhow::Result<()> {
    let Some(latest) = &audit.latest_ledger_write else { return Ok(()) };
    let age = DateTime::parse_from_rfc3339(latest).map(|at| Utc::now().signed_duration_since(at)).ok();
    if !opts.force && !opts.dry_run && age.is_none_or(|age| age.num_seconds() < opts.quiet_period as i64) {
        bail!(
            "the stream processor wrote to `{}` at {latest}, within the last {} s: a backfill racing it can lose its updates. \
             Disable the event source mapping (aws lambda update-event-source-mapping --uuid UUID --no-enabled), \
             wait for in-flight batches, run backfill, then enable it again; or pass --force",
            common.table,
            opts.quiet_period
        );
    }
    Ok(())
}

/// A ledger's key (`tally#ledger#{pk}`) hashes to another scan segment than its item, so a slice
/// sees few of its own items' ledgers: the rest are read by key, or their reset would expect them
/// absent and fail.
async fn read_ledgers_of_this_slice(table: &DynamoTable, audit: &mut Audit) -> anyhow::Result<()> {
    let items: Vec<ItemKey> = audit.contributions.keys().filter(|item| !audit.ledgers.contains_key(*item)).cloned().collect();
    let found = read_ledgers(table, &items).await.context("reading the ledgers of this slice's items")?;
    audit.ledgers.extend(found);
    Ok(())
}

/// The ledgers of `items` that exist, by source item.
async fn read_ledgers(table: &DynamoTable, items: &[ItemKey]) -> anyhow::Result<HashMap<ItemKey, Ledger>> {
    let keys: Vec<ItemKey> = items.iter().map(ledger_key).collect();
    let found = table.read(&keys).await?;
    let mut ledgers = HashMap::new();
    for (item, key) in items.iter().zip(&keys) {
        if let Some(stored) = found.get(key) {
            ledgers.insert(item.clone(), decode_ledger(key, stored)?);
        }
    }
    Ok(ledgers)
}

/// Ledgers this slice scanned whose item it did not count. The item may be another slice's, so it
/// is read: gone (or no longer counting) means the ledger now holds nothing. Ledgers another
/// worker of this run has reset are left alone: their item was counted in that worker's slice.
async fn orphans_of_slice(table: &DynamoTable, audit: &Audit, run: &str) -> anyhow::Result<Vec<LedgerWrite>> {
    let orphans = audit.orphan_ledgers(Some(run));
    let keys: Vec<ItemKey> = orphans.iter().map(|(item, _)| (*item).clone()).collect();
    let found = table.read(&keys).await.context("reading the items of orphaned ledgers")?;
    Ok(orphans
        .into_iter()
        .filter(|(item, _)| {
            found.get(*item).is_none_or(|image| !needs_ledger(&aggregates::assess(Some(&serde_dynamo::Item::from(image.clone())))))
        })
        .map(|(item, ledger)| emptied(item, ledger))
        .collect())
}

/// Encoded a chunk at a time: a whole table's ledger items at once would double backfill's memory.
async fn write_ledgers(table: &DynamoTable, ledgers: &[LedgerWrite], writer: Writer<'_>) -> anyhow::Result<()> {
    let now = Utc::now();
    for chunk in ledgers.chunks(CHUNK) {
        let puts: Vec<ConditionalPut> = chunk.iter().map(|write| encode_ledger(write, writer, now)).collect();
        commit(table, &puts).await?;
    }
    Ok(())
}

async fn commit_all(table: &DynamoTable, puts: &[ConditionalPut], quiet: bool) -> anyhow::Result<()> {
    let progress = crate::progress::Progress::new(puts.len() as u64, "writes", quiet);
    for chunk in puts.chunks(CHUNK) {
        commit(table, chunk).await?;
        progress.advance(chunk.len() as u64);
    }
    progress.finish();
    Ok(())
}

/// Commits one chunk of backfill's writes, each conditioned on the item as scanned.
///
/// A ledger that has disappeared since the scan was deleted by TTL (ledgers expire 48 h after
/// their last write, lazily): that is a legitimate state, so its reset is written as a new ledger.
/// Any other changed item means a writer raced backfill, and the chunk is refused.
pub async fn commit<T: Table>(table: &T, puts: &[ConditionalPut]) -> anyhow::Result<()> {
    let mut budget = RetryBudget::new(tokio::time::Instant::now() + Duration::from_secs(120));
    let mut puts = puts.to_vec();
    loop {
        match table.commit(&puts).await {
            Ok(()) => return Ok(()),
            Err(StoreError::Changed(changed)) => {
                let (expired, raced): (Vec<_>, Vec<_>) = changed.iter().partition(|(key, current)| current.is_none() && is_ledger_key(key));
                let expired: HashSet<&ItemKey> = expired.into_iter().map(|(key, _)| key).collect();
                let recreate: Vec<&mut ConditionalPut> =
                    puts.iter_mut().filter(|put| expired.contains(&put.key) && put.expect != Expect::Absent).collect();
                if raced.is_empty() && !recreate.is_empty() {
                    for put in recreate {
                        *put = recreated(put);
                    }
                    continue;
                }
                let keys: Vec<String> = raced.iter().map(|(key, _)| format!("pk=`{}` sk=`{}`", key.pk, key.sk)).collect();
                bail!(
                    "{} item(s) changed while backfill ran (the stream is being processed?): {}; nothing else in this chunk was written. \
                     Pause the event source mapping and run backfill again",
                    keys.len(),
                    keys.join(", ")
                );
            }
            Err(err @ StoreError::Transient { .. }) => {
                budget.pause().await.with_context(|| format!("giving up after retries: {err}"))?;
            }
            Err(err) => return Err(err.into()),
        }
    }
}

fn partition(run: &str) -> String {
    format!("tally#backfill#{run}")
}

/// Stores one slice's sums: an entry per aggregate the slice computed or holds (so the combine
/// also zeroes aggregates nothing counts any more), then the marker saying how many there are.
async fn write_partials(table: &DynamoTable, run: &str, segment: u32, total: u32, audit: &Audit) -> anyhow::Result<usize> {
    let now = Utc::now();
    let ttl = AttributeValue::N((now + PARTIAL_RETENTION).timestamp().to_string());
    let mut keys: Vec<&AggregateKey> = audit.recompute.totals.keys().chain(audit.stored.keys()).collect();
    keys.sort();
    keys.dedup();
    let entries: Vec<SdkItem> = keys
        .iter()
        .enumerate()
        .map(|(index, key)| {
            let fields: HashMap<String, AttributeValue> = audit
                .recompute
                .totals
                .fields(key)
                .map(|(field, amount)| (field.attribute().to_owned(), AttributeValue::N(amount.to_string())))
                .collect();
            let mut entry = HashMap::from([
                (PK.to_owned(), AttributeValue::S(partition(run))),
                (SK.to_owned(), AttributeValue::S(format!("part#{segment:06}#{index:09}"))),
                (ENTITY_TYPE.to_owned(), AttributeValue::S(PARTIAL_ENTITY_TYPE.into())),
                ("aggregatePk".to_owned(), AttributeValue::S(key.pk())),
                ("aggregateSk".to_owned(), AttributeValue::S(key.sk())),
                (TTL.to_owned(), ttl.clone()),
            ]);
            // An aggregate nothing counts any more has no fields. The attribute is left out rather
            // than an empty map: DynamoDB Local's stream renders `{"M": {}}` as `{}`, which no SDK
            // can parse, and `tally consume` would stop at it.
            if !fields.is_empty() {
                entry.insert("fields".to_owned(), AttributeValue::M(fields));
            }
            // The one slice that holds the aggregate item records the version it saw, so that
            // the combine can tell whether anything wrote it since.
            if let Some(scanned) = audit.stored.get(key) {
                entry.insert(SCANNED_VERSION.to_owned(), AttributeValue::N(scanned.stored.version.to_string()));
            }
            entry
        })
        .collect();
    let count = entries.len();
    let puts: Vec<ConditionalPut> = entries.into_iter().map(unconditional).collect();
    commit_all(table, &puts, true).await.with_context(|| format!("storing the partial sums of segment {segment}"))?;
    commit_all(table, &[unconditional(segment_marker(run, segment, total, Some(count)))], true)
        .await
        .with_context(|| format!("marking segment {segment} done"))?;
    Ok(count)
}

/// A worker's marker: with its entry count once its partial sums are all written, without one
/// while it is writing them (the combine then takes the segment as unfinished).
fn segment_marker(run: &str, segment: u32, total: u32, entries: Option<usize>) -> SdkItem {
    let now = Utc::now();
    let mut marker = HashMap::from([
        (PK.to_owned(), AttributeValue::S(partition(run))),
        (SK.to_owned(), AttributeValue::S(format!("done#{segment:06}"))),
        (ENTITY_TYPE.to_owned(), AttributeValue::S(PARTIAL_ENTITY_TYPE.into())),
        ("totalSegments".to_owned(), AttributeValue::N(total.to_string())),
        (UPDATED_AT.to_owned(), AttributeValue::S(now.to_rfc3339())),
        (TTL.to_owned(), AttributeValue::N((now + PARTIAL_RETENTION).timestamp().to_string())),
    ]);
    if let Some(entries) = entries {
        marker.insert("entries".to_owned(), AttributeValue::N(entries.to_string()));
    }
    marker
}

/// Partials are rewritten whole by a re-run worker. Written in transactions (authorised as
/// `PutItem`) so the operator policy needs no `BatchWriteItem`, which would also allow deletes.
fn unconditional(item: SdkItem) -> ConditionalPut {
    let text = |name| match item.get(name) {
        Some(AttributeValue::S(value)) => value.clone(),
        _ => String::new(),
    };
    ConditionalPut { key: ItemKey { pk: text(PK), sk: text(SK) }, item, expect: Expect::Anything }
}

async fn combine(common: &Common, table: &DynamoTable, opts: &Opts) -> anyhow::Result<ExitCode> {
    let (Some(total), Some(run)) = (opts.total_segments, &opts.run) else { bail!("--combine needs --total-segments and --run") };
    let items = query_run(table, run).await?;
    let text = |item: &SdkItem, name: &str| match item.get(name) {
        Some(AttributeValue::S(value)) => Some(value.clone()),
        _ => None,
    };
    let whole = |item: &SdkItem, name: &str| match item.get(name) {
        Some(AttributeValue::N(value)) => value.parse::<u64>().ok(),
        _ => None,
    };
    let mut entries_of: HashMap<u32, u64> = HashMap::new();
    for item in &items {
        let Some(sk) = text(item, SK) else { continue };
        if let Some(segment) = sk.strip_prefix("done#").and_then(|segment| segment.parse::<u32>().ok()) {
            ensure!(
                whole(item, "totalSegments") == Some(u64::from(total)),
                "run `{run}`: segment {segment} was run with a different --total-segments"
            );
            // Without a count, the worker is still writing (or was killed doing so): unfinished.
            if let Some(entries) = whole(item, "entries") {
                entries_of.insert(segment, entries);
            }
        }
    }
    let missing: Vec<String> = (0..total).filter(|segment| !entries_of.contains_key(segment)).map(|segment| segment.to_string()).collect();
    ensure!(
        missing.is_empty(),
        "run `{run}`: segment(s) {} of {total} have not finished; run `tally backfill --segment I --total-segments {total} --run {run}` for each",
        missing.join(", ")
    );
    let mut audit = Audit::default();
    let mut keys = std::collections::BTreeSet::new();
    let mut scanned_versions: HashMap<AggregateKey, u64> = HashMap::new();
    let mut found_of: HashMap<u32, u64> = HashMap::new();
    for item in &items {
        let Some(sk) = text(item, SK) else { continue };
        let Some(rest) = sk.strip_prefix("part#") else { continue };
        let Some((segment, index)) = rest.split_once('#') else { continue };
        let (Ok(segment), Ok(index)) = (segment.parse::<u32>(), index.parse::<u64>()) else { continue };
        // A worker that ran twice may have left more entries than its marker counts.
        if index >= entries_of.get(&segment).copied().unwrap_or_default() {
            continue;
        }
        *found_of.entry(segment).or_default() += 1;
        let (Some(pk), Some(aggregate_sk)) = (text(item, "aggregatePk"), text(item, "aggregateSk")) else {
            bail!("run `{run}`: partial `{sk}` names no aggregate")
        };
        let key = AggregateKey::parse(&pk, &aggregate_sk).with_context(|| format!("run `{run}`: partial `{sk}` names no aggregate"))?;
        if let Some(version) = whole(item, SCANNED_VERSION) {
            scanned_versions.insert(key.clone(), version);
        }
        if let Some(AttributeValue::M(fields)) = item.get("fields") {
            for (name, value) in fields {
                let field =
                    Field::from_attribute(name).with_context(|| format!("run `{run}`: partial `{sk}` has unknown field `{name}`"))?;
                let AttributeValue::N(text) = value else { bail!("run `{run}`: partial `{sk}` field `{name}` is not a number") };
                let amount: Number = text.parse().with_context(|| format!("run `{run}`: partial `{sk}` field `{name}`"))?;
                audit.recompute.totals.add(key.clone(), field, &amount);
            }
        }
        keys.insert(key);
    }
    // Partials expire by TTL after 7 days: a combine that finds fewer than a worker wrote would
    // write sums short of what it counted.
    let short: Vec<String> = entries_of
        .iter()
        .filter(|(segment, entries)| found_of.get(segment).copied().unwrap_or_default() != **entries)
        .map(|(segment, entries)| format!("segment {segment}: {} of {entries}", found_of.get(segment).copied().unwrap_or_default()))
        .collect();
    ensure!(
        short.is_empty(),
        "run `{run}`: partial sums are missing ({}; they expire 7 days after a worker wrote them); nothing was written. \
         Run every segment and the combine again",
        short.join(", ")
    );
    let item_keys: Vec<ItemKey> = keys.iter().map(aggregate_key).collect();
    let stored = table.read(&item_keys).await.context("reading the current aggregates")?;
    for key in &keys {
        if let Some(item) = stored.get(&aggregate_key(key)) {
            audit.add(item)?;
        }
    }
    // The partials are sums as of the workers' scans: an aggregate written since (the stream
    // processor ran) would lose that write if overwritten.
    let moved: Vec<String> = keys
        .iter()
        .filter(|key| audit.stored.get(*key).map(|scanned| scanned.stored.version) != scanned_versions.get(*key).copied())
        .map(|key| format!("pk=`{}` sk=`{}`", key.pk(), key.sk()))
        .collect();
    ensure!(
        moved.is_empty(),
        "run `{run}`: {} aggregate(s) changed after the workers scanned them (the stream was processed during the run): {}; \
         nothing was written. Pause the event source mapping and run every segment and the combine again",
        moved.len(),
        moved.iter().take(10).cloned().collect::<Vec<_>>().join(", ")
    );
    let (aggregates, _) = audit.backfill_plan();
    let now = Utc::now();
    let puts: Vec<ConditionalPut> = aggregates.iter().map(|write| encode_aggregate(write, now)).collect();
    let owner = marker::Owner::Run(run);
    marker::begin(table, &owner).await?;
    commit_all(table, &puts, common.json).await?;
    let pending = protect_pending_records(common, table).await?;
    marker::finish(table, &owner).await?;
    summarize(common, &audit, Some(aggregates.len()), 0, false, &format!("combined {total} segment(s) of run `{run}`; {pending}"))?;
    Ok(ExitCode::SUCCESS)
}

async fn query_run(table: &DynamoTable, run: &str) -> anyhow::Result<Vec<SdkItem>> {
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let output = table
            .client()
            .query()
            .table_name(table.name())
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_values(":pk", AttributeValue::S(partition(run)))
            .consistent_read(true)
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|err| classify("Query", &err))?;
        items.extend(output.items.unwrap_or_default());
        start = output.last_evaluated_key;
        if start.is_none() {
            return Ok(items);
        }
    }
}

fn summarize(common: &Common, audit: &Audit, aggregates: Option<usize>, ledgers: usize, dry_run: bool, note: &str) -> anyhow::Result<()> {
    let drift = audit.drift();
    if common.json {
        let summary = serde_json::json!({
            "scanned": audit.scanned,
            "source_items": audit.recompute.items,
            "drift": if aggregates.is_some() { serde_json::to_value(&drift)? } else { serde_json::Value::Null },
            "aggregates_written": if dry_run { 0 } else { aggregates.unwrap_or(0) },
            "ledgers_written": if dry_run { 0 } else { ledgers },
            "dry_run": dry_run,
            "note": note,
        });
        println!("{summary}");
        return Ok(());
    }
    if let Some(aggregates) = aggregates {
        for line in &drift {
            println!("{} {line}", if dry_run { "WOULD FIX" } else { "FIXED" });
        }
        println!(
            "scanned {} items ({} source items); {} drifted field(s); {aggregates} aggregate(s) and {ledgers} ledger(s) {}",
            audit.scanned,
            audit.recompute.items,
            drift.len(),
            if dry_run { "would be written (dry run)" } else { "written" }
        );
    } else {
        println!("scanned {} items ({} source items); {ledgers} ledger(s) written", audit.scanned, audit.recompute.items);
    }
    if !note.is_empty() {
        println!("{note}");
    }
    Ok(())
}
