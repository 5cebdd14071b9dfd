//! One worker of a segmented run: it resets its slice's ledgers and stores its slice's partial
//! sums for the combine, under the run's mark.

use std::process::ExitCode;

use aggregates::AggregateKey;
use anyhow::Context as _;

use super::commit::{retried, write_ledgers};
use super::{marker, recompute, summary};
use crate::audit::Audit;
use crate::Context;
use tally_engine::items::LedgerWrite;
use tally_engine::store::marker::Owner;
use tally_engine::store::partials::{PartialSum, Partials, MAX_SUMS_PER_WRITE};
use tally_engine::store::{DynamoTable, Writer};

/// Where one slice of a segmented run is.
#[derive(Debug, Clone, Copy)]
pub struct Slice<'a> {
    pub segment: u32,
    pub total: u32,
    pub run: &'a str,
}

/// Writes one slice: `ledgers` (the resets planned from its scan), its orphans, its partial sums.
pub async fn cmd(
    ctx: &Context,
    table: &DynamoTable,
    audit: &Audit<'_>,
    mut ledgers: Vec<LedgerWrite>,
    slice: Slice<'_>,
) -> anyhow::Result<ExitCode> {
    let Slice { segment, total, run } = slice;
    ledgers.extend(recompute::orphans_of_slice(table, audit, run).await?);
    marker::begin(table, &Owner::Run(run)).await?;
    let partials = Partials::new(table, run);
    // A re-run worker first takes back its earlier done marker: killed half-way, it must not
    // leave the combine an old entry count over a mix of old and new partial sums.
    retried(|| partials.begin_segment(segment, total)).await.with_context(|| format!("marking segment {segment} as started"))?;
    write_ledgers(table, ctx.rules(), &ledgers, Writer::Backfill { run: Some(run) }).await?;
    let entries = write_partials(&partials, segment, total, audit).await?;
    summary::print(
        ctx,
        audit,
        None,
        ledgers.len(),
        false,
        &format!("segment {segment} of {total} for run `{run}`: {entries} partial aggregate(s) stored"),
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Stores one slice's sums: an entry per aggregate the slice computed or holds (so the combine
/// also zeroes aggregates nothing counts any more), then the marker saying how many there are.
async fn write_partials(partials: &Partials<'_>, segment: u32, total: u32, audit: &Audit<'_>) -> anyhow::Result<usize> {
    let mut keys: Vec<&AggregateKey> = audit.recompute.totals.keys().chain(audit.stored.keys()).collect();
    keys.sort();
    keys.dedup();
    let sums: Vec<PartialSum> = keys
        .into_iter()
        .map(|key| PartialSum {
            aggregate: key.clone(),
            fields: audit.recompute.totals.fields(key).map(|(field, amount)| (field, amount.clone())).collect(),
            // The one slice that holds the aggregate item records the version it saw, so that
            // the combine can tell whether anything wrote it since.
            scanned_version: audit.stored.get(key).map(|scanned| scanned.stored.version),
        })
        .collect();
    for (index, chunk) in sums.chunks(MAX_SUMS_PER_WRITE).enumerate() {
        retried(|| partials.write_sums(segment, index * MAX_SUMS_PER_WRITE, chunk))
            .await
            .with_context(|| format!("storing the partial sums of segment {segment}"))?;
    }
    retried(|| partials.finish_segment(segment, total, sums.len())).await.with_context(|| format!("marking segment {segment} done"))?;
    Ok(sums.len())
}
