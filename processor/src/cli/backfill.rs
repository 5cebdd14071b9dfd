//! `tally backfill`: recompute every aggregate from a scan and write what differs.
//!
//! Besides the aggregates, backfill resets each source item's ledger to the contribution it just
//! counted, so records written before the scan but processed after it are measured from what
//! backfill counted, not counted again. What it cannot make safe is a stream processor writing
//! the same aggregates while it runs: writes are conditioned on the scanned versions and abort on
//! a change, and backfill refuses to start when the processor wrote recently.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use chrono::{DateTime, Utc};
use clap::Args;

use crate::cli::{scan, Common};
use crate::retry::RetryBudget;
use crate::store::codec::{encode_aggregate, encode_ledger, ConditionalPut, Writer};
use crate::store::{DynamoTable, StoreError, Table};

/// Puts per `TransactWriteItems`.
const CHUNK: usize = 100;

#[derive(Debug, Args)]
pub struct Opts {
    /// Parallel scan segments (default: two per core, at least 4).
    #[arg(long)]
    pub segments: Option<u32>,
    /// Report what would change; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Run even though the stream processor wrote within the quiet period.
    #[arg(long)]
    pub force: bool,
    /// Seconds without processor writes required before backfill runs.
    #[arg(long, default_value_t = 300)]
    pub quiet_period: u64,
}

pub async fn cmd(common: &Common, opts: Opts) -> anyhow::Result<ExitCode> {
    let total = opts.segments.unwrap_or_else(scan::default_segments).max(1);
    let audit = scan::audit(common, &(0..total).collect::<Vec<_>>(), total).await?;
    if let Some(latest) = &audit.latest_ledger_write {
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
    }
    let drift = audit.drift();
    let (aggregates, ledgers) = audit.backfill_plan();
    let mut written = 0;
    if !opts.dry_run {
        let now = Utc::now();
        let puts: Vec<ConditionalPut> = aggregates
            .iter()
            .map(|write| encode_aggregate(write, now))
            .chain(ledgers.iter().map(|write| encode_ledger(write, Writer::Backfill, now)))
            .collect();
        let table = DynamoTable::new(common.client().await, common.table.clone());
        let progress = crate::cli::progress::Progress::new(puts.len() as u64, "writes", common.json);
        for chunk in puts.chunks(CHUNK) {
            commit(&table, chunk).await?;
            written += chunk.len();
            progress.advance(chunk.len() as u64);
        }
        progress.finish();
    }
    if common.json {
        let summary = serde_json::json!({
            "scanned": audit.scanned,
            "source_items": audit.recompute.items,
            "drift": drift,
            "aggregates_written": if opts.dry_run { 0 } else { aggregates.len() },
            "ledgers_written": if opts.dry_run { 0 } else { ledgers.len() },
            "dry_run": opts.dry_run,
        });
        println!("{summary}");
    } else {
        for line in &drift {
            println!("{} {line}", if opts.dry_run { "WOULD FIX" } else { "FIXED" });
        }
        println!(
            "scanned {} items ({} source items); {} drifted field(s); {} aggregate(s) and {} ledger(s) {}",
            audit.scanned,
            audit.recompute.items,
            drift.len(),
            aggregates.len(),
            ledgers.len(),
            if opts.dry_run { "would be written (dry run)" } else { "written" }
        );
    }
    debug_assert!(opts.dry_run || written == aggregates.len() + ledgers.len());
    Ok(ExitCode::SUCCESS)
}

async fn commit(table: &DynamoTable, puts: &[ConditionalPut]) -> anyhow::Result<()> {
    let mut budget = RetryBudget::new(tokio::time::Instant::now() + Duration::from_secs(120));
    loop {
        match table.commit(puts).await {
            Ok(()) => return Ok(()),
            Err(StoreError::Changed(changed)) => {
                let keys: Vec<String> = changed.iter().map(|(key, _)| format!("pk=`{}` sk=`{}`", key.pk, key.sk)).collect();
                bail!(
                    "{} changed while backfill ran (the stream is being processed?): {}; nothing else in this chunk was written. \
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
