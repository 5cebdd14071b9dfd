//! `tally backfill`: recompute every aggregate from a scan and write what differs.
//!
//! [`tally_jobs::backfill`] does the work, a whole table at once or a segmented run: N workers
//! each run `--segment I --total-segments N --run ID` on one slice of the scan, then
//! `--combine --run ID --total-segments N` adds up their partial sums and writes the aggregates.
//! This command resolves the flags and prints what it did.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use clap::{ArgGroup, Args};

use crate::progress::Stages;
use crate::Context;
use tally_jobs::audit::default_segments;
use tally_jobs::backfill::{Backfill, BackfillOptions, BackfillReport, Kind, Pending, Scope, Slice};

/// The flags of `tally backfill`.
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

/// Exit status: 0 done, 2 error (a refusal included).
pub async fn cmd(ctx: &Context, opts: Opts) -> anyhow::Result<ExitCode> {
    let table = ctx.open().await?;
    let progress = Stages::new(ctx.json);
    let backfill = Backfill::new(&table, ctx.rules(), ctx, &progress);
    let report = if opts.combine {
        let (Some(total), Some(run)) = (opts.total_segments, &opts.run) else { bail!("--combine needs --total-segments and --run") };
        backfill.combine(run, total).await?
    } else {
        let scope = match (opts.segment, opts.total_segments, opts.run) {
            (Some(segment), Some(total), Some(run)) => Scope::Slice(Slice { segment, total, run }),
            _ => Scope::WholeTable { segments: opts.segments.unwrap_or_else(default_segments), dry_run: opts.dry_run },
        };
        let options = BackfillOptions {
            scope,
            force: opts.force,
            quiet_period: Duration::from_secs(opts.quiet_period),
            rules_changed: opts.rules_changed,
        };
        backfill.run(&options).await?
    };
    print(ctx, &report)?;
    Ok(ExitCode::SUCCESS)
}

/// Prints what the backfill did: text, or one JSON object with `--json`.
fn print(ctx: &Context, report: &BackfillReport) -> anyhow::Result<()> {
    let dry_run = report.is_dry_run();
    let aggregates = report.aggregates();
    let ledgers = report.ledgers;
    let note = note(report);
    if ctx.json {
        let summary = serde_json::json!({
            "scanned": report.scanned,
            "source_items": report.source_items,
            "drift": match aggregates { Some(aggregates) => serde_json::to_value(&aggregates.drift)?, None => serde_json::Value::Null },
            "aggregates_written": if dry_run { 0 } else { aggregates.map_or(0, |aggregates| aggregates.count) },
            "ledgers_written": if dry_run { 0 } else { ledgers },
            "written_under_other_rules": report.other_rules,
            "dry_run": dry_run,
            "note": note,
        });
        println!("{summary}");
        return Ok(());
    }
    if let Some(aggregates) = aggregates {
        for line in &aggregates.drift {
            println!("{} {line}", if dry_run { "WOULD FIX" } else { "FIXED" });
        }
        println!(
            "scanned {} items ({} source items); {} drifted field(s); {} aggregate(s) and {ledgers} ledger(s) {}",
            report.scanned,
            report.source_items,
            aggregates.drift.len(),
            aggregates.count,
            if dry_run { "would be written (dry run)" } else { "written" }
        );
    } else {
        println!("scanned {} items ({} source items); {ledgers} ledger(s) written", report.scanned, report.source_items);
    }
    let foreign: u64 = report.other_rules.values().sum();
    if foreign > 0 {
        let digests: Vec<&str> = report.other_rules.keys().map(String::as_str).collect();
        let verb = if dry_run { "would be rewritten" } else { "rewritten" };
        println!("{foreign} item(s) had been written under other rules ({}): {verb} under {}", digests.join(", "), ctx.rules().digest());
    }
    if !note.is_empty() {
        println!("{note}");
    }
    Ok(())
}

/// The summary's last line: what the backfill did besides writing aggregates and ledgers.
fn note(report: &BackfillReport) -> String {
    let pending = |pending: &Pending| match pending {
        Pending::Protected { ledgers } => format!("{ledgers} ledger(s) written for uncounted items with records still in the stream"),
        Pending::NoStream => "the table has no stream: no records pending".to_owned(),
    };
    match &report.kind {
        Kind::DryRun(_) => String::new(),
        Kind::WholeTable { pending: written, .. } => pending(written),
        Kind::Slice { slice, partials } => {
            format!("segment {} of {} for run `{}`: {partials} partial aggregate(s) stored", slice.segment, slice.total, slice.run)
        }
        Kind::Combine { run, total, pending: written, .. } => format!("combined {total} segment(s) of run `{run}`; {}", pending(written)),
    }
}
