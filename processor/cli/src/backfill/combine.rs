//! The combine of a segmented run: it checks that every slice finished, adds up their partial
//! sums, and writes the aggregates that differ, unless any changed after the workers scanned it.

use std::collections::{BTreeSet, HashMap};
use std::process::ExitCode;

use aggregates::AggregateKey;
use anyhow::{anyhow, bail, ensure, Context as _};

use super::commit::write_aggregates;
use super::{marker, pending, summary, Opts};
use crate::audit::{Audit, Keep};
use crate::Context;
use tally_engine::items::ItemKey;
use tally_engine::store::marker::Owner;
use tally_engine::store::partials::{Partials, RunState};
use tally_engine::store::DynamoTable;

/// The aggregates the slices sum, and the version at which the slice that held each scanned it.
#[derive(Debug, Default)]
struct Summed {
    keys: BTreeSet<AggregateKey>,
    scanned_versions: HashMap<AggregateKey, u64>,
}

pub async fn cmd(ctx: &Context, table: &DynamoTable, opts: &Opts) -> anyhow::Result<ExitCode> {
    let (Some(total), Some(run)) = (opts.total_segments, &opts.run) else { bail!("--combine needs --total-segments and --run") };
    let state = Partials::new(table, run).load().await?;
    let entries_of = finished_segments(&state, run, total)?;
    let mut audit = Audit::new(ctx.rules(), Keep::Aggregates);
    let summed = add_sums(&mut audit, &state, &entries_of, run)?;
    let item_keys: Vec<ItemKey> = summed.keys.iter().map(ItemKey::from).collect();
    let stored = table.read_decoded(&item_keys).await.context("reading the current aggregates")?;
    stored.into_values().for_each(|item| audit.add(item));
    check_unchanged(&audit, &summed, run)?;
    let (aggregates, _) = audit.backfill_plan();
    let owner = Owner::Run(run);
    marker::begin(table, &owner).await?;
    write_aggregates(table, ctx.rules(), &aggregates, ctx.json).await?;
    let pending = pending::protect(ctx, table).await?;
    marker::finish(table, &owner).await?;
    summary::print(ctx, &audit, Some(aggregates.len()), 0, false, &format!("combined {total} segment(s) of run `{run}`; {pending}"))?;
    Ok(ExitCode::SUCCESS)
}

/// The number of sums each segment wrote, once every one of the `total` has finished.
fn finished_segments(state: &RunState, run: &str, total: u32) -> anyhow::Result<HashMap<u32, u64>> {
    let mut entries_of = HashMap::new();
    for mark in &state.marks {
        let segment = mark.segment;
        ensure!(mark.total_segments == Some(u64::from(total)), "run `{run}`: segment {segment} was run with a different --total-segments");
        // Without a count, the worker is still writing (or was killed doing so): unfinished.
        if let Some(entries) = mark.entries {
            entries_of.insert(segment, entries);
        }
    }
    let missing: Vec<String> = (0..total).filter(|segment| !entries_of.contains_key(segment)).map(|segment| segment.to_string()).collect();
    ensure!(
        missing.is_empty(),
        "run `{run}`: segment(s) {} of {total} have not finished; run `tally backfill --segment I --total-segments {total} --run {run}` for each",
        missing.join(", ")
    );
    Ok(entries_of)
}

/// Adds every counted sum into `audit`'s recompute, if none is missing.
fn add_sums(audit: &mut Audit<'_>, state: &RunState, entries_of: &HashMap<u32, u64>, run: &str) -> anyhow::Result<Summed> {
    let mut summed = Summed::default();
    let mut found_of: HashMap<u32, u64> = HashMap::new();
    for stored in &state.sums {
        // A worker that ran twice may have left more entries than its marker counts.
        if stored.index >= entries_of.get(&stored.segment).copied().unwrap_or_default() {
            continue;
        }
        *found_of.entry(stored.segment).or_default() += 1;
        let sum = stored.sum.as_ref().map_err(|problem| anyhow!("run `{run}`: partial `{}` {problem}", stored.name))?;
        if let Some(version) = sum.scanned_version {
            summed.scanned_versions.insert(sum.aggregate.clone(), version);
        }
        for (field, amount) in &sum.fields {
            audit.recompute.totals.add(sum.aggregate.clone(), *field, amount);
        }
        summed.keys.insert(sum.aggregate.clone());
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
    Ok(summed)
}

/// The partials are sums as of the workers' scans: an aggregate written since (the stream
/// processor ran) would lose that write if overwritten.
fn check_unchanged(audit: &Audit<'_>, summed: &Summed, run: &str) -> anyhow::Result<()> {
    let moved: Vec<String> = summed
        .keys
        .iter()
        .filter(|key| audit.stored.get(*key).map(|scanned| scanned.stored.version) != summed.scanned_versions.get(*key).copied())
        .map(|key| format!("pk=`{}` sk=`{}`", key.pk, key.sk))
        .collect();
    ensure!(
        moved.is_empty(),
        "run `{run}`: {} aggregate(s) changed after the workers scanned them (the stream was processed during the run): {}; \
         nothing was written. Pause the event source mapping and run every segment and the combine again",
        moved.len(),
        moved.iter().take(10).cloned().collect::<Vec<_>>().join(", ")
    );
    Ok(())
}
