//! Verify: recompute every aggregate from the table and compare, writing nothing.

use aggregates::Rules;

use crate::audit::{Audit, Drift, Keep};
use crate::backfill::in_progress::{self, Unfinished};
use crate::error::VerifyError;
use crate::Progress;
use tally_engine::store::DynamoTable;

/// What verify found.
#[derive(Debug)]
pub struct Verification<'r> {
    /// The scan of the whole table.
    pub audit: Audit<'r>,
    /// Every field where the table and the recompute disagree.
    pub drift: Vec<Drift>,
    /// A backfill that has not finished: while one has not, no drift is no proof, for the
    /// ledgers may not match what it counted.
    pub unfinished: Option<Unfinished>,
}

impl Verification<'_> {
    /// Whether the table is exact: no drift, no unfinished backfill, and nothing written under
    /// other rules than the audit's.
    pub fn is_exact(&self) -> bool {
        self.drift.is_empty() && self.unfinished.is_none() && self.audit.other_rules.is_empty()
    }
}

/// Scans `table` in `segments` parallel segments (0 counts as 1), recomputes every aggregate of
/// `rules` and compares; then reads whether a backfill has not finished. `progress` advances by
/// the items scanned.
///
/// # Errors
/// [`VerifyError`] when the scan or the read of the backfill's mark fails.
pub async fn verify<'r>(
    table: &DynamoTable,
    rules: &'r Rules,
    segments: u32,
    progress: &impl Progress,
) -> Result<Verification<'r>, VerifyError> {
    let total = segments.max(1);
    let audit = Audit::scan(table, rules, &(0..total).collect::<Vec<_>>(), total, Keep::Aggregates, progress).await?;
    let drift = audit.drift();
    let unfinished = in_progress::unfinished(table).await?;
    Ok(Verification { audit, drift, unfinished })
}
