//! The mark a backfill leaves while it writes, so that an interrupted one cannot go unnoticed.
//!
//! Backfill writes the aggregates, then the ledgers, in many commits. Killed in between, it
//! leaves aggregates that agree with a recompute (so `verify` finds no drift) beside ledgers that
//! still hold what the stream applied before: processing the stream then would count the records
//! it still holds twice. So backfill marks the table before its first write and clears the mark
//! after its last; `verify` reports a mark still set, and the commands that process the stream
//! (`consume`, `replay`, `redrive`) refuse to run until a backfill has finished. How the mark is
//! kept is [`tally_engine::store::marker`]'s business.

use super::commit::retried;
use crate::error::MarkError;
pub use tally_engine::store::marker::Owner;
use tally_engine::store::marker::{Cleared, Marker};
use tally_engine::store::DynamoTable;

/// A backfill that started and has not finished: running, or interrupted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unfinished {
    /// When it set its mark, as the mark says.
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
///
/// # Errors
/// [`MarkError::Begin`] when the mark cannot be set.
pub async fn begin(table: &DynamoTable, owner: &Owner<'_>) -> Result<(), MarkError> {
    let marker = Marker::new(table);
    retried(|| marker.set(*owner)).await.map_err(MarkError::Begin)
}

/// Clears the mark after backfill's last write, if it is still this backfill's: another one that
/// started meanwhile keeps it until it finishes.
///
/// # Errors
/// [`MarkError::HeldByAnother`] when another backfill holds the mark; [`MarkError::Finish`] when
/// it cannot be cleared.
pub async fn finish(table: &DynamoTable, owner: &Owner<'_>) -> Result<(), MarkError> {
    let marker = Marker::new(table);
    match retried(|| marker.clear(*owner)).await.map_err(MarkError::Finish)? {
        Cleared::Cleared => Ok(()),
        Cleared::HeldByAnother => Err(MarkError::HeldByAnother),
    }
}

/// The backfill that has not finished, if one has not. A table that does not exist has none:
/// whatever the caller does next says so better.
///
/// # Errors
/// [`MarkError::Read`] when the mark cannot be read.
pub async fn unfinished(table: &DynamoTable) -> Result<Option<Unfinished>, MarkError> {
    match Marker::new(table).read().await {
        Ok(mark) => {
            Ok(mark.map(|mark| Unfinished { started_at: mark.started_at.unwrap_or_else(|| "an unknown time".to_owned()), run: mark.run }))
        }
        Err(err) if err.is_missing_table() => Ok(None),
        Err(err) => Err(MarkError::Read(err)),
    }
}

/// Refuses to process the stream while a backfill has not finished.
///
/// # Errors
/// [`MarkError::Unfinished`] while one has not; [`MarkError::Read`] when the mark cannot be read.
pub async fn ensure_finished(table: &DynamoTable) -> Result<(), MarkError> {
    match unfinished(table).await? {
        Some(unfinished) => Err(MarkError::Unfinished(unfinished)),
        None => Ok(()),
    }
}
