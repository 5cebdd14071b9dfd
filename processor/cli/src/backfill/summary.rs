//! What a backfill prints when it is done: text, or one JSON object with `--json`.

use crate::audit::Audit;
use crate::Context;

/// Prints the summary. `aggregates` is the number of aggregates written, `None` for a worker of
/// a segmented run (which writes none); `note` is a last line, if any.
pub fn print(ctx: &Context, audit: &Audit<'_>, aggregates: Option<usize>, ledgers: usize, dry_run: bool, note: &str) -> anyhow::Result<()> {
    let drift = audit.drift();
    if ctx.json {
        let summary = serde_json::json!({
            "scanned": audit.scanned,
            "source_items": audit.recompute.items,
            "drift": if aggregates.is_some() { serde_json::to_value(&drift)? } else { serde_json::Value::Null },
            "aggregates_written": if dry_run { 0 } else { aggregates.unwrap_or(0) },
            "ledgers_written": if dry_run { 0 } else { ledgers },
            "written_under_other_rules": audit.other_rules,
            "dry_run": dry_run,
            "note": note,
        });
        println!("{summary}");
        return Ok(());
    }
    if let Some(aggregates) = aggregates {
        for line in &drift {
            println!("{} {line}", if dry_run { "WOULD FIX" } else { "FIXED" });
        }
        println!(
            "scanned {} items ({} source items); {} drifted field(s); {aggregates} aggregate(s) and {ledgers} ledger(s) {}",
            audit.scanned,
            audit.recompute.items,
            drift.len(),
            if dry_run { "would be written (dry run)" } else { "written" }
        );
    } else {
        println!("scanned {} items ({} source items); {ledgers} ledger(s) written", audit.scanned, audit.recompute.items);
    }
    let foreign: u64 = audit.other_rules.values().sum();
    if foreign > 0 {
        let digests: Vec<&str> = audit.other_rules.keys().map(String::as_str).collect();
        let verb = if dry_run { "would be rewritten" } else { "rewritten" };
        println!("{foreign} item(s) had been written under other rules ({}): {verb} under {}", digests.join(", "), audit.rules().digest());
    }
    if !note.is_empty() {
        println!("{note}");
    }
    Ok(())
}
