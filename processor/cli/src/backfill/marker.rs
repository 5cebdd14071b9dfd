//! The mark a backfill leaves while it writes, so that an interrupted one cannot go unnoticed.
//!
//! Backfill writes the aggregates, then the ledgers, in many commits. Killed in between, it
//! leaves aggregates that agree with a recompute (so `verify` finds no drift) beside ledgers that
//! still hold what the stream applied before: processing the stream then would count the records
//! it still holds twice. So backfill marks the table before its first write and clears the mark
//! after its last; `verify` reports a mark still set, and the commands that process the stream
//! (`consume`, `replay`, `redrive`) refuse to run until a backfill has finished. How the mark is
//! kept is [`tally_engine::store::marker`]'s business.

use anyhow::{bail, Context as _};

use super::commit::retried;
pub use tally_engine::store::marker::Owner;
use tally_engine::store::marker::{Cleared, Marker};
use tally_engine::store::DynamoTable;

/// A backfill that started and has not finished: running, or interrupted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unfinished {
    pub started_at: String,
    /// The segmented run it belongs to, if any.
    pub run: Option<String>,
}

impl std::fmt::Display for Unfinished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let run = self.run.as_deref().map(|run| format!(" (segmented run `{run}`)")).unwrap_or_default();
        write!(
            f,
            "a backfill started at {}{run} has not finished, or was interrupted: until one finishes, the ledgers may not \
             match the aggregates, and processing the stream would count its records twice. Run `tally backfill` again \
             (with the event source mapping still disabled), or finish the segmented run with `--combine`",
            self.started_at
        )
    }
}

/// Marks the table before backfill's first write.
pub async fn begin(table: &DynamoTable, owner: &Owner<'_>) -> anyhow::Result<()> {
    let marker = Marker::new(table);
    retried(|| marker.set(*owner)).await.context("marking the backfill as started")
}

/// Clears the mark after backfill's last write, if it is still this backfill's: another one that
/// started meanwhile keeps it until it finishes.
pub async fn finish(table: &DynamoTable, owner: &Owner<'_>) -> anyhow::Result<()> {
    let marker = Marker::new(table);
    match retried(|| marker.clear(*owner)).await.context("marking the backfill as finished")? {
        Cleared::Cleared => Ok(()),
        Cleared::HeldByAnother => bail!(
            "marking the backfill as finished: another backfill has started since and owns the mark; let it finish, or run backfill again"
        ),
    }
}

/// The backfill that has not finished, if one has not. A table that does not exist has none:
/// whatever the caller does next says so better.
pub async fn unfinished(table: &DynamoTable) -> anyhow::Result<Option<Unfinished>> {
    match Marker::new(table).read().await {
        Ok(mark) => {
            Ok(mark.map(|mark| Unfinished { started_at: mark.started_at.unwrap_or_else(|| "an unknown time".to_owned()), run: mark.run }))
        }
        Err(err) if err.is_missing_table() => Ok(None),
        Err(err) => Err(err).context("reading the backfill marker"),
    }
}

/// Refuses to process the stream while a backfill has not finished.
pub async fn ensure_finished(table: &DynamoTable) -> anyhow::Result<()> {
    if let Some(unfinished) = unfinished(table).await? {
        bail!("{unfinished}");
    }
    Ok(())
}
