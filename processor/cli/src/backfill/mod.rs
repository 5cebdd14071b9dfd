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
//!
//! # Layout
//!
//! `recompute` completes what the scan learned (the quiet check, the ledgers and items of other
//! slices); `commit` writes, with backfill's rule for a failed condition; `segment` and `combine`
//! are the two halves of a segmented run; `pending` covers items whose records still wait on the
//! stream; [`marker`] marks the table while any of this writes; `summary` prints the result.

mod combine;
mod commit;
pub mod marker;
mod pending;
mod recompute;
mod segment;
mod summary;

pub use commit::commit;

use std::process::ExitCode;

use anyhow::ensure;
use clap::{ArgGroup, Args};

use crate::audit::{Audit, Keep};
use crate::{scan, Context};
use commit::{write_aggregates, write_ledgers};
use tally_engine::items::{AggregateWrite, LedgerWrite};
use tally_engine::store::marker::Owner;
use tally_engine::store::{DynamoTable, Writer};

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
    /// The rules changed since the table was written: rewrite the ledgers and aggregates written
    /// under other rules. Without it, finding any refuses the backfill (wrong --rules?).
    #[arg(long, conflicts_with = "combine")]
    pub rules_changed: bool,
}

pub async fn cmd(ctx: &Context, opts: Opts) -> anyhow::Result<ExitCode> {
    let table = ctx.open().await?;
    if opts.combine {
        return combine::cmd(ctx, &table, &opts).await;
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
    let mut audit = scan::audit(ctx, &table, &segments, total, Keep::Items).await?;
    recompute::check_quiet(&audit, ctx, &opts)?;
    recompute::check_rules(&audit, &opts)?;
    if segments.len() < total as usize {
        recompute::read_ledgers_of_this_slice(&table, &mut audit).await?;
    }
    let (aggregates, ledgers) = audit.backfill_plan();
    if let (Some(segment), Some(run)) = (opts.segment, &opts.run) {
        return segment::cmd(ctx, &table, &audit, ledgers, segment::Slice { segment, total, run }).await;
    }
    whole_table(ctx, &table, &audit, &aggregates, ledgers, opts.dry_run).await
}

/// Writes a backfill of the whole table under its mark: the aggregates, the ledgers (every
/// orphan emptied), then ledgers for the items whose records still wait on the stream.
async fn whole_table(
    ctx: &Context,
    table: &DynamoTable,
    audit: &Audit<'_>,
    aggregates: &[AggregateWrite],
    mut ledgers: Vec<LedgerWrite>,
    dry_run: bool,
) -> anyhow::Result<ExitCode> {
    ledgers.extend(audit.emptied_orphans());
    let mut note = String::new();
    if !dry_run {
        let owner = uuid::Uuid::new_v4().to_string();
        let owner = Owner::Invocation(&owner);
        marker::begin(table, &owner).await?;
        write_aggregates(table, ctx.rules(), aggregates, ctx.json).await?;
        write_ledgers(table, ctx.rules(), &ledgers, Writer::Backfill { run: None }).await?;
        note = pending::protect(ctx, table).await?;
        marker::finish(table, &owner).await?;
    }
    summary::print(ctx, audit, Some(aggregates.len()), ledgers.len(), dry_run, &note)?;
    Ok(ExitCode::SUCCESS)
}
