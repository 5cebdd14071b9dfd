//! What backfill needs besides its scan before it plans its writes: a quiet stream processor,
//! and, in a segmented run, the ledgers and items that live in other slices.

use anyhow::{bail, Context as _};
use chrono::{DateTime, Utc};

use super::Opts;
use crate::audit::{emptied, needs_ledger, Audit};
use crate::Context;
use tally_engine::registry;
use tally_engine::items::ItemKey;
use tally_engine::items::LedgerWrite;
use tally_engine::store::scan::TableItem;
use tally_engine::store::DynamoTable;

/// Refuses to run while the stream processor wrote within the quiet period, unless forced.
pub fn check_quiet(audit: &Audit<'_>, ctx: &Context, opts: &Opts) -> anyhow::Result<()> {
    let Some(latest) = &audit.latest_ledger_write else { return Ok(()) };
    let age = DateTime::parse_from_rfc3339(latest).map(|at| Utc::now().signed_duration_since(at)).ok();
    if !opts.force && !opts.dry_run && age.is_none_or(|age| age.num_seconds() < opts.quiet_period as i64) {
        bail!(
            "the stream processor wrote to `{}` at {latest}, within the last {} s: a backfill racing it can lose its updates. \
             Disable the event source mapping (aws lambda update-event-source-mapping --uuid UUID --no-enabled), \
             wait for in-flight batches, run backfill, then enable it again; or pass --force",
            ctx.table,
            opts.quiet_period
        );
    }
    Ok(())
}

/// Refuses to rewrite items written under other rules unless told the rules changed: run under
/// the wrong rules (a forgotten `--rules`), backfill would rewrite the whole table under them.
pub fn check_rules(audit: &Audit<'_>, opts: &Opts) -> anyhow::Result<()> {
    if audit.other_rules.is_empty() || opts.rules_changed || opts.dry_run {
        return Ok(());
    }
    let items: u64 = audit.other_rules.values().sum();
    let digests: Vec<&str> = audit.other_rules.keys().map(String::as_str).collect();
    let rules = audit.rules();
    bail!(
        "{items} ledger(s) and aggregate(s) were written under other rules ({}) than these ({}, {}): if the rules changed, \
         pass --rules-changed to rewrite them under these; if not, run with the rules the table is written under (--rules / TALLY_RULES). \
         Nothing was written",
        digests.join(", "),
        rules.source_name(),
        rules.digest()
    );
}

/// A ledger's key (`tally#ledger#{pk}`) hashes to another scan segment than its item, so a slice
/// sees few of its own items' ledgers: the rest are read by key, or their reset would expect them
/// absent and fail.
///
/// They are read as a scan reads them, so that one written under other rules is rewritten too.
pub async fn read_ledgers_of_this_slice(table: &DynamoTable, audit: &mut Audit<'_>) -> anyhow::Result<()> {
    let table_keys = audit.rules().table();
    let keys: Vec<ItemKey> = audit
        .contributions
        .keys()
        .filter(|item| !audit.ledgers.contains_key(*item))
        .map(|item| registry::ledger_key(table_keys, item))
        .collect();
    let found = table.read_decoded(&keys).await.context("reading the ledgers of this slice's items")?;
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
pub async fn orphans_of_slice(table: &DynamoTable, audit: &Audit<'_>, run: &str) -> anyhow::Result<Vec<LedgerWrite>> {
    let orphans = audit.orphan_ledgers(Some(run));
    let keys: Vec<ItemKey> = orphans.iter().map(|(item, _)| (*item).clone()).collect();
    let found = table.read_decoded(&keys).await.context("reading the items of orphaned ledgers")?;
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
