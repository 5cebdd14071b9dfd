//! What backfill needs besides its scan before it plans its writes: a quiet stream processor,
//! and, in a segmented run, the ledgers and items that live in other slices.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::audit::{emptied, needs_ledger, Audit};
use crate::error::BackfillError;
use tally_engine::items::ItemKey;
use tally_engine::items::LedgerWrite;
use tally_engine::registry;
use tally_engine::store::scan::TableItem;
use tally_engine::store::DynamoTable;

/// Refuses to run while the stream processor wrote to `table` within `quiet_period`, unless
/// `forced` (or a dry run, which writes nothing).
pub(super) fn check_quiet(audit: &Audit<'_>, table: &str, quiet_period: Duration, forced: bool) -> Result<(), BackfillError> {
    let Some(latest) = &audit.latest_ledger_write else { return Ok(()) };
    let age = DateTime::parse_from_rfc3339(latest).map(|at| Utc::now().signed_duration_since(at)).ok();
    let quiet_period = quiet_period.as_secs();
    if !forced && age.is_none_or(|age| age.num_seconds() < quiet_period as i64) {
        return Err(BackfillError::NotQuiet { table: table.to_owned(), latest: latest.clone(), quiet_period });
    }
    Ok(())
}

/// Refuses to rewrite items written under other rules unless told the rules changed (or a dry
/// run, which writes nothing): run under the wrong rules (a forgotten `--rules`), backfill would
/// rewrite the whole table under them.
pub(super) fn check_rules(audit: &Audit<'_>, rules_changed: bool) -> Result<(), BackfillError> {
    if audit.other_rules.is_empty() || rules_changed {
        return Ok(());
    }
    let rules = audit.rules();
    Err(BackfillError::OtherRules {
        items: audit.other_rules.values().sum(),
        digests: audit.other_rules.keys().cloned().collect(),
        rules: rules.source_name().to_owned(),
        digest: rules.digest().to_owned(),
    })
}

/// A ledger's key (`tally#ledger#{pk}`) hashes to another scan segment than its item, so a slice
/// sees few of its own items' ledgers: the rest are read by key, or their reset would expect them
/// absent and fail.
///
/// They are read as a scan reads them, so that one written under other rules is rewritten too.
pub(super) async fn read_ledgers_of_this_slice(table: &DynamoTable, audit: &mut Audit<'_>) -> Result<(), BackfillError> {
    let table_keys = audit.rules().table();
    let keys: Vec<ItemKey> = audit
        .contributions
        .keys()
        .filter(|item| !audit.ledgers.contains_key(*item))
        .map(|item| registry::ledger_key(table_keys, item))
        .collect();
    let found = table
        .read_decoded(&keys)
        .await
        .map_err(|source| BackfillError::Read { reading: "reading the ledgers of this slice's items", source })?;
    for item in found.into_values() {
        if let TableItem::Ledger(scanned) = item {
            audit.add_ledger_of_slice(scanned);
        }
    }
    Ok(())
}

/// Ledgers this slice scanned whose item it did not count. The item may be another slice's, so it
/// is read: gone (or no longer counting) means the ledger now holds nothing. Ledgers another
/// worker of this run has reset are left alone: their item was counted in that worker's slice.
pub(super) async fn orphans_of_slice(table: &DynamoTable, audit: &Audit<'_>, run: &str) -> Result<Vec<LedgerWrite>, BackfillError> {
    let orphans = audit.orphan_ledgers(Some(run));
    let keys: Vec<ItemKey> = orphans.iter().map(|(item, _)| (*item).clone()).collect();
    let found = table
        .read_decoded(&keys)
        .await
        .map_err(|source| BackfillError::Read { reading: "reading the items of orphaned ledgers", source })?;
    Ok(orphans
        .into_iter()
        .filter(|(item, _)| match found.get(*item) {
            Some(TableItem::Source { image, .. }) => !needs_ledger(&audit.rules().assess(Some(image))),
            // Gone. (A ledger's item has an application key, so whatever is there reads as a source.)
            _ => true,
        })
        .map(|(item, ledger)| emptied(item, ledger))
        .collect())
}
