//! `tally verify`: recompute every aggregate from the table and report drift, writing nothing.

use std::process::ExitCode;

use clap::Args;

use crate::progress::Stages;
use crate::Context;
use tally_jobs::audit::default_segments;

/// The flags of `tally verify`.
#[derive(Debug, Args)]
pub struct Opts {
    /// Parallel scan segments (default: two per core, at least 4).
    #[arg(long)]
    pub segments: Option<u32>,
}

/// Exit status: 0 no drift, 1 drift (or a backfill that has not finished, or items written under
/// other rules), 2 error.
pub async fn cmd(ctx: &Context, opts: Opts) -> anyhow::Result<ExitCode> {
    let segments = opts.segments.unwrap_or_else(default_segments);
    let table = ctx.open().await?;
    let verification = tally_jobs::verify::verify(&table, ctx.rules(), segments, &Stages::new(ctx.json)).await?;
    let (audit, drift, unfinished) = (&verification.audit, &verification.drift, &verification.unfinished);
    if ctx.json {
        let summary = serde_json::json!({
            "scanned": audit.scanned,
            "source_items": audit.recompute.items,
            "aggregates": audit.stored.len(),
            "rejected": audit.recompute.rejected,
            "drift": drift,
            "rules": { "source": audit.rules().source_name(), "digest": audit.rules().digest() },
            "written_under_other_rules": audit.other_rules,
            "unfinished_backfill": unfinished.as_ref().map(ToString::to_string),
        });
        println!("{summary}");
    } else {
        println!(
            "scanned {} items: {} source items, {} stored aggregates, {} recomputed",
            audit.scanned,
            audit.recompute.items,
            audit.stored.len(),
            audit.recompute.aggregates().len()
        );
        for line in drift {
            println!("DRIFT {line}");
        }
        match drift.len() {
            0 => println!("no drift"),
            n => println!("{n} drifted field(s); `tally backfill` repairs them"),
        }
        for (digest, items) in &audit.other_rules {
            println!(
                "OTHER RULES {items} ledger(s) and aggregate(s) were written under rules {digest}, not these ({} {}): \
                 the rules changed since; `tally backfill --rules-changed` rewrites them under these",
                audit.rules().source_name(),
                audit.rules().digest()
            );
        }
        if let Some(unfinished) = unfinished {
            println!("UNFINISHED {unfinished}");
        }
    }
    Ok(if verification.is_exact() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
