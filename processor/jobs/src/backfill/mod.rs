//! Backfill: recompute every aggregate from a scan and write what differs.
//!
//! Besides the aggregates, backfill resets each source item's ledger to the contribution it just
//! counted, so records written before the scan but processed after it are measured from what
//! backfill counted, not counted again. What it cannot make safe is a stream processor writing
//! the same aggregates while it runs: writes are conditioned on the scanned versions and abort on
//! a change, and backfill refuses to start when the processor wrote recently.
//!
//! # Segmented runs
//!
//! For a table too large for one machine, N workers each run one [`Slice`] of the scan. A worker
//! resets its own items' ledgers and stores its partial aggregate sums as bookkeeping items
//! (`pk` = `tally#backfill#{run}`), then a done marker. Aggregates are sums, so partial sums over
//! disjoint slices add up to the whole exactly: [`Backfill::combine`] checks every marker, adds
//! the partials, and writes the aggregates that differ.
//!
//! # Layout
//!
//! `recompute` completes what the scan learned (the quiet check, the ledgers and items of other
//! slices); `commit` writes, with backfill's rule for a failed condition ([`commit()`]); `segment`
//! and `combine` are the two halves of a segmented run; `pending` covers items whose records
//! still wait on the stream; [`in_progress`] marks the table while any of this writes.

mod combine;
mod commit;
pub mod in_progress;
mod pending;
mod recompute;
mod segment;

use std::collections::BTreeMap;
use std::time::Duration;

use aggregates::Rules;

use crate::audit::{Audit, Drift, Keep};
use crate::error::BackfillError;
use crate::Progress;
pub use commit::commit;
use commit::{write_aggregates, write_ledgers};
pub use pending::{Pending, Streams};
use tally_engine::items::{AggregateWrite, LedgerWrite};
use tally_engine::store::marker::Owner;
use tally_engine::store::{DynamoTable, Writer};

/// A backfill of one table under its rules.
#[derive(Debug)]
pub struct Backfill<'a, S, P> {
    table: &'a DynamoTable,
    rules: &'a Rules,
    streams: &'a S,
    progress: &'a P,
}

/// What a backfill that scans is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackfillOptions {
    /// The whole table, or one slice of a segmented run.
    pub scope: Scope,
    /// Run even though the stream processor wrote within the quiet period.
    pub force: bool,
    /// How long the stream processor must not have written before backfill runs (whole
    /// seconds count).
    pub quiet_period: Duration,
    /// The rules changed since the table was written: rewrite the ledgers and aggregates written
    /// under other rules. Without it, finding any refuses the backfill.
    pub rules_changed: bool,
}

/// What a backfill that scans covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The whole table, scanned in parallel segments on this machine.
    WholeTable {
        /// Parallel scan segments (0 counts as 1).
        segments: u32,
        /// Report what would change; write nothing.
        dry_run: bool,
    },
    /// One slice of a segmented run.
    Slice(Slice),
}

/// One slice of a segmented run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slice {
    /// The slice, 0-based.
    pub segment: u32,
    /// The run's number of slices.
    pub total: u32,
    /// The name the workers and the combine of the run share.
    pub run: String,
}

/// What a backfill did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackfillReport {
    /// Items read: by the scan, or (a combine) the aggregates read to compare with the sums.
    pub scanned: u64,
    /// Application items among them.
    pub source_items: u64,
    /// Ledgers and aggregates found written under other rules, by those rules' digest: all
    /// rewritten under these (in a dry run, they would be).
    pub other_rules: BTreeMap<String, u64>,
    /// Ledgers written (in a dry run, that would be).
    pub ledgers: usize,
    /// Which backfill it was, and what else it did.
    pub kind: Kind,
}

/// Which backfill ran, and what it did besides resetting ledgers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A dry run over the whole table: nothing was written.
    DryRun(AggregatesWritten),
    /// A backfill of the whole table.
    WholeTable {
        /// The aggregates it wrote.
        aggregates: AggregatesWritten,
        /// What it did about the records still in the stream.
        pending: Pending,
    },
    /// A worker of a segmented run: it writes no aggregate, but stores partial sums.
    Slice {
        /// Its slice.
        slice: Slice,
        /// The partial sums it stored.
        partials: usize,
    },
    /// The combine of a segmented run.
    Combine {
        /// The aggregates it wrote.
        aggregates: AggregatesWritten,
        /// The run's name.
        run: String,
        /// The run's number of slices.
        total: u32,
        /// What it did about the records still in the stream.
        pending: Pending,
    },
}

/// The aggregates a backfill found drifted, and how many it wrote (in a dry run, would write):
/// those that drifted and those written under other rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggregatesWritten {
    /// Every field where the table and the recompute disagreed.
    pub drift: Vec<Drift>,
    /// The aggregates written.
    pub count: usize,
}

impl BackfillReport {
    /// The report of a backfill over `audit`, having written `ledgers` ledgers.
    fn of(audit: &Audit<'_>, ledgers: usize, kind: Kind) -> Self {
        BackfillReport {
            scanned: audit.scanned,
            source_items: audit.recompute.items,
            other_rules: audit.other_rules.clone(),
            ledgers,
            kind,
        }
    }

    /// The aggregates the backfill compared and wrote; `None` for a worker of a segmented run,
    /// which writes none.
    pub fn aggregates(&self) -> Option<&AggregatesWritten> {
        match &self.kind {
            Kind::DryRun(aggregates) | Kind::WholeTable { aggregates, .. } | Kind::Combine { aggregates, .. } => Some(aggregates),
            Kind::Slice { .. } => None,
        }
    }

    /// Whether nothing was written.
    pub fn is_dry_run(&self) -> bool {
        matches!(self.kind, Kind::DryRun(_))
    }
}

impl<'a, S: Streams, P: Progress> Backfill<'a, S, P> {
    /// A backfill of `table`, whose items follow `rules`, reaching its stream through `streams`
    /// and reporting its scan and writes to `progress`.
    pub fn new(table: &'a DynamoTable, rules: &'a Rules, streams: &'a S, progress: &'a P) -> Self {
        Backfill { table, rules, streams, progress }
    }

    /// Scans what `options` cover and writes what differs: for the whole table, the aggregates
    /// and every ledger; for a slice, its ledgers and partial sums.
    ///
    /// # Errors
    /// A refusal before anything is written ([`BackfillError::is_not_quiet`],
    /// [`BackfillError::is_other_rules`], a slice out of range), a writer racing it
    /// ([`BackfillError::is_raced`]), or a failure of the store or the stream.
    pub async fn run(&self, options: &BackfillOptions) -> Result<BackfillReport, BackfillError> {
        let (segments, total, dry_run) = match &options.scope {
            Scope::WholeTable { segments, dry_run } => {
                let total = (*segments).max(1);
                ((0..total).collect(), total, *dry_run)
            }
            Scope::Slice(slice) if slice.segment >= slice.total => {
                return Err(BackfillError::SegmentOutOfRange { segment: slice.segment, total: slice.total })
            }
            Scope::Slice(slice) => (vec![slice.segment], slice.total, false),
        };
        let mut audit = Audit::scan(self.table, self.rules, &segments, total, Keep::Items, self.progress).await?;
        recompute::check_quiet(&audit, self.table.name(), options.quiet_period, options.force || dry_run)?;
        recompute::check_rules(&audit, options.rules_changed || dry_run)?;
        if segments.len() < total as usize {
            recompute::read_ledgers_of_this_slice(self.table, &mut audit).await?;
        }
        let (aggregates, ledgers) = audit.backfill_plan();
        match &options.scope {
            Scope::Slice(slice) => {
                let (ledgers, partials) = segment::write(self.table, self.rules, &audit, ledgers, slice).await?;
                Ok(BackfillReport::of(&audit, ledgers, Kind::Slice { slice: slice.clone(), partials }))
            }
            Scope::WholeTable { .. } => self.whole_table(&audit, &aggregates, ledgers, dry_run).await,
        }
    }

    /// Adds up the `total` slices of the segmented run `run` and writes the aggregates that
    /// differ, then ledgers for the items whose records still wait on the stream.
    ///
    /// # Errors
    /// A run not ready to combine ([`BackfillError::is_run_incomplete`]), aggregates written
    /// since the workers scanned them ([`BackfillError::is_raced`]), or a failure of the store or
    /// the stream.
    pub async fn combine(&self, run: &str, total: u32) -> Result<BackfillReport, BackfillError> {
        combine::combine(self.table, self.rules, self.streams, self.progress, run, total).await
    }

    /// Writes a backfill of the whole table under its mark: the aggregates, the ledgers (every
    /// orphan emptied), then ledgers for the items whose records still wait on the stream.
    async fn whole_table(
        &self,
        audit: &Audit<'_>,
        aggregates: &[AggregateWrite],
        mut ledgers: Vec<LedgerWrite>,
        dry_run: bool,
    ) -> Result<BackfillReport, BackfillError> {
        ledgers.extend(audit.emptied_orphans());
        if dry_run {
            let aggregates = AggregatesWritten { drift: audit.drift(), count: aggregates.len() };
            return Ok(BackfillReport::of(audit, ledgers.len(), Kind::DryRun(aggregates)));
        }
        let owner = uuid::Uuid::new_v4().to_string();
        let owner = Owner::Invocation(&owner);
        in_progress::begin(self.table, &owner).await?;
        write_aggregates(self.table, self.rules, aggregates, self.progress).await?;
        write_ledgers(self.table, self.rules, &ledgers, Writer::Backfill { run: None }).await?;
        let pending = pending::protect(self.table, self.rules, self.streams).await?;
        in_progress::finish(self.table, &owner).await?;
        let aggregates = AggregatesWritten { drift: audit.drift(), count: aggregates.len() };
        Ok(BackfillReport::of(audit, ledgers.len(), Kind::WholeTable { aggregates, pending }))
    }
}
