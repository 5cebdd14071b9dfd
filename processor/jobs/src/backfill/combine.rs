//! The combine of a segmented run: it checks that every slice finished, adds up their partial
//! sums, and writes the aggregates that differ, unless any changed after the workers scanned it.

use std::collections::{BTreeSet, HashMap};

use aggregates::{AggregateKey, Rules};

use super::commit::write_aggregates;
use super::{in_progress, pending, AggregatesWritten, BackfillReport, Kind, Streams};
use crate::audit::{Audit, Keep};
use crate::error::{BackfillError, Shortfall};
use crate::Progress;
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

/// Combines the `total` slices of `run`: writes the aggregates that differ from their sums under
/// the run's mark, then ledgers for the items whose records still wait on the stream.
pub(super) async fn combine(
    table: &DynamoTable,
    rules: &Rules,
    streams: &impl Streams,
    progress: &impl Progress,
    run: &str,
    total: u32,
) -> Result<BackfillReport, BackfillError> {
    let state = Partials::new(table, run).load().await?;
    let entries_of = finished_segments(&state, run, total)?;
    let mut audit = Audit::new(rules, Keep::Aggregates);
    let summed = add_sums(&mut audit, &state, &entries_of, run)?;
    let item_keys: Vec<ItemKey> = summed.keys.iter().map(ItemKey::from).collect();
    let stored =
        table.read_decoded(&item_keys).await.map_err(|source| BackfillError::Read { reading: "reading the current aggregates", source })?;
    stored.into_values().for_each(|item| audit.add(item));
    check_unchanged(&audit, &summed, run)?;
    let (aggregates, _) = audit.backfill_plan();
    let owner = Owner::Run(run);
    in_progress::begin(table, &owner).await?;
    write_aggregates(table, rules, &aggregates, progress).await?;
    let pending = pending::protect(table, rules, streams).await?;
    in_progress::finish(table, &owner).await?;
    let aggregates = AggregatesWritten { drift: audit.drift(), count: aggregates.len() };
    Ok(BackfillReport::of(&audit, 0, Kind::Combine { aggregates, run: run.to_owned(), total, pending }))
}

/// The number of sums each segment wrote, once every one of the `total` has finished.
fn finished_segments(state: &RunState, run: &str, total: u32) -> Result<HashMap<u32, u64>, BackfillError> {
    let mut entries_of = HashMap::new();
    for mark in &state.marks {
        let segment = mark.segment;
        if mark.total_segments != Some(u64::from(total)) {
            return Err(BackfillError::OtherTotal { run: run.to_owned(), segment });
        }
        // Without a count, the worker is still writing (or was killed doing so): unfinished.
        if let Some(entries) = mark.entries {
            entries_of.insert(segment, entries);
        }
    }
    let missing: Vec<u32> = (0..total).filter(|segment| !entries_of.contains_key(segment)).collect();
    if !missing.is_empty() {
        return Err(BackfillError::SegmentsUnfinished { run: run.to_owned(), total, missing });
    }
    Ok(entries_of)
}

/// Adds every counted sum into `audit`'s recompute, if none is missing.
fn add_sums(audit: &mut Audit<'_>, state: &RunState, entries_of: &HashMap<u32, u64>, run: &str) -> Result<Summed, BackfillError> {
    let mut summed = Summed::default();
    let mut found_of: HashMap<u32, u64> = HashMap::new();
    for stored in &state.sums {
        // A worker that ran twice may have left more entries than its marker counts.
        if stored.index >= entries_of.get(&stored.segment).copied().unwrap_or_default() {
            continue;
        }
        *found_of.entry(stored.segment).or_default() += 1;
        let sum = stored.sum.as_ref().map_err(|problem| BackfillError::UnreadablePartial {
            run: run.to_owned(),
            name: stored.name.clone(),
            problem: problem.clone(),
        })?;
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
    let short: Vec<Shortfall> = entries_of
        .iter()
        .map(|(&segment, &written)| Shortfall { segment, found: found_of.get(&segment).copied().unwrap_or_default(), written })
        .filter(|shortfall| shortfall.found != shortfall.written)
        .collect();
    if !short.is_empty() {
        return Err(BackfillError::MissingPartials { run: run.to_owned(), short });
    }
    Ok(summed)
}

/// The partials are sums as of the workers' scans: an aggregate written since (the stream
/// processor ran) would lose that write if overwritten.
fn check_unchanged(audit: &Audit<'_>, summed: &Summed, run: &str) -> Result<(), BackfillError> {
    let moved: Vec<AggregateKey> = summed
        .keys
        .iter()
        .filter(|key| audit.stored.get(*key).map(|scanned| scanned.stored.version) != summed.scanned_versions.get(*key).copied())
        .cloned()
        .collect();
    if !moved.is_empty() {
        return Err(BackfillError::ChangedSinceScan { run: run.to_owned(), moved });
    }
    Ok(())
}
