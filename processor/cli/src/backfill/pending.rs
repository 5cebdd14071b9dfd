//! Ledgers for items backfill did not count but whose records still wait on the stream.
//!
//! Backfill counts each item as its scan found it and leaves every counted item a ledger saying
//! so. The engine measures an item without a ledger from its first record's old image, taken as
//! counted. For an item the scan did not count (gone, or no longer of a kind that counts) whose
//! records were written before the scan but are not applied yet, that image was not counted: a
//! TTL deletion of an enrollment whose ledger had expired would be subtracted a second time. So
//! every such item found among the stream's retained records gets an empty ledger. Records
//! written after this read need none: they follow from the state the scan saw.

use std::collections::BTreeSet;

use aggregates::Deltas;
use anyhow::Context as _;

use super::commit::write_ledgers;
use crate::Context;
use tally_engine::registry;
use tally_engine::decode::{decode_batch, Origin};
use tally_engine::items::ItemKey;
use tally_engine::items::{Ledger, LedgerWrite};
use tally_engine::sequence::SequenceNumber;
use tally_engine::store::{DynamoTable, Writer};
use tally_engine::stream::StreamReader;

/// Writes the ledgers [`ledgers_for_pending_records`] finds; returns a line for the summary.
pub async fn protect(ctx: &Context, table: &DynamoTable) -> anyhow::Result<String> {
    Ok(match ledgers_for_pending_records(ctx, table).await? {
        Some(ledgers) => {
            write_ledgers(table, ctx.rules(), &ledgers, Writer::Backfill { run: None }).await?;
            format!("{} ledger(s) written for uncounted items with records still in the stream", ledgers.len())
        }
        None => "the table has no stream: no records pending".to_owned(),
    })
}

/// Gives an empty ledger to every item with contributing records in the stream and no ledger.
/// Returns the ledgers to write, or `None` when the table has no stream (nothing is pending).
async fn ledgers_for_pending_records(ctx: &Context, table: &DynamoTable) -> anyhow::Result<Option<Vec<LedgerWrite>>> {
    let Some(arn) = table.latest_stream_arn().await? else { return Ok(None) };
    let region = arn.split(':').nth(3).unwrap_or_default().to_owned();
    let reader = StreamReader::new(ctx.streams_client().await, &arn, region);
    let mut items = BTreeSet::new();
    reader
        .read_retained(|records| {
            for record in records {
                // A record the engine cannot identify never reaches the aggregates.
                let Ok(changes) = decode_batch(std::slice::from_ref(&record), table.name(), ctx.rules()) else { continue };
                for change in changes {
                    if change.origin == Origin::Source && !(change.old.contribution().is_empty() && change.new.contribution().is_empty()) {
                        items.insert(change.key);
                    }
                }
            }
        })
        .await
        .with_context(|| format!("reading the records still in stream {arn}"))?;
    let items: Vec<ItemKey> = items.into_iter().collect();
    // Read as a scan reads them: a ledger written under other rules is there all the same.
    let keys: Vec<ItemKey> = items.iter().map(|item| registry::ledger_key(ctx.rules().table(), item)).collect();
    let found = table.read_decoded(&keys).await.context("reading the ledgers of items with records in the stream")?;
    let items = items.into_iter().zip(keys);
    let nothing_yet = SequenceNumber::zero();
    Ok(Some(
        items
            .filter(|(_, ledger)| !found.contains_key(ledger))
            .map(|(item, _)| LedgerWrite {
                item,
                expected_version: None,
                ledger: Ledger::new(nothing_yet.clone(), Deltas::new()),
            })
            .collect(),
    ))
}
