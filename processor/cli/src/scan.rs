//! Scanning the table into an [`Audit`], segments in parallel, with progress.

use anyhow::Context as _;

use crate::audit::{Audit, Keep};
use crate::progress::Progress;
use crate::Context;
use tally_engine::store::DynamoTable;

/// Default parallelism: two segments per core, at least 4.
pub fn default_segments() -> u32 {
    std::thread::available_parallelism().map_or(4, |cores| (cores.get() as u32 * 2).max(4))
}

/// Scans `segments` (numbers out of `total`) concurrently and folds them into one audit.
pub async fn audit<'c>(ctx: &'c Context, table: &DynamoTable, segments: &[u32], total: u32, keep: Keep) -> anyhow::Result<Audit<'c>> {
    let progress = Progress::new(0, "items scanned", ctx.json);
    let scans = segments.iter().map(|&segment| {
        let progress = &progress;
        async move {
            let mut audit = Audit::new(ctx.rules(), keep);
            table
                .scan_segment(segment, total, |items| {
                    progress.advance(items.len() as u64);
                    items.into_iter().for_each(|item| audit.add(item));
                })
                .await
                .with_context(|| format!("scanning segment {segment} of {total} of table `{}`", table.name()))?;
            anyhow::Ok(audit)
        }
    });
    let mut whole = Audit::new(ctx.rules(), keep);
    for audit in futures::future::join_all(scans).await {
        whole.combine(audit?);
    }
    progress.finish();
    Ok(whole)
}
