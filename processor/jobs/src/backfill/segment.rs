//! One worker of a segmented run: it resets its slice's ledgers and stores its slice's partial
//! sums for the combine, under the run's mark.

use aggregates::{AggregateKey, Rules};

use super::commit::{retried, write_ledgers};
use super::{in_progress, recompute, Slice};
use crate::audit::Audit;
use crate::error::{BackfillError, PartialsStep};
use tally_engine::items::LedgerWrite;
use tally_engine::store::marker::Owner;
use tally_engine::store::partials::{PartialSum, Partials, MAX_SUMS_PER_WRITE};
use tally_engine::store::{DynamoTable, Writer};

/// Writes one slice: `ledgers` (the resets planned from its scan), its orphans, its partial sums.
/// Returns the ledgers written and the partial sums stored.
pub(super) async fn write(
    table: &DynamoTable,
    rules: &Rules,
    audit: &Audit<'_>,
    mut ledgers: Vec<LedgerWrite>,
    slice: &Slice,
) -> Result<(usize, usize), BackfillError> {
    let (segment, total, run) = (slice.segment, slice.total, slice.run.as_str());
    ledgers.extend(recompute::orphans_of_slice(table, audit, run).await?);
    in_progress::begin(table, &Owner::Run(run)).await?;
    let partials = Partials::new(table, run);
    // A re-run worker first takes back its earlier done marker: killed half-way, it must not
    // leave the combine an old entry count over a mix of old and new partial sums.
    retried(|| partials.begin_segment(segment, total)).await.map_err(failed(PartialsStep::Start, segment))?;
    write_ledgers(table, rules, &ledgers, Writer::Backfill { run: Some(run) }).await?;
    let entries = write_partials(&partials, segment, total, audit).await?;
    Ok((ledgers.len(), entries))
}

/// Stores one slice's sums: an entry per aggregate the slice computed or holds (so the combine
/// also zeroes aggregates nothing counts any more), then the marker saying how many there are.
async fn write_partials(partials: &Partials<'_>, segment: u32, total: u32, audit: &Audit<'_>) -> Result<usize, BackfillError> {
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
        retried(|| partials.write_sums(segment, index * MAX_SUMS_PER_WRITE, chunk)).await.map_err(failed(PartialsStep::Sums, segment))?;
    }
    retried(|| partials.finish_segment(segment, total, sums.len())).await.map_err(failed(PartialsStep::Done, segment))?;
    Ok(sums.len())
}

/// The error of a worker that could not record `step`.
fn failed(step: PartialsStep, segment: u32) -> impl FnOnce(tally_engine::retry::RetryError) -> BackfillError {
    move |source| BackfillError::Partials { step, segment, source }
}
