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
use std::future::Future;

use aggregates::{Deltas, Rules};

use super::commit::write_ledgers;
use crate::error::BackfillError;
use tally_engine::decode::{decode_batch, Origin};
use tally_engine::items::ItemKey;
use tally_engine::items::{Ledger, LedgerWrite};
use tally_engine::registry;
use tally_engine::sequence::SequenceNumber;
use tally_engine::store::{DynamoTable, Writer};
use tally_engine::stream::StreamReader;

/// How a job reaches a table's stream: the caller holds the DynamoDB Streams client.
pub trait Streams: Sync {
    /// A reader of the stream `arn`.
    fn reader(&self, arn: &str) -> impl Future<Output = StreamReader> + Send;
}

/// What backfill did about the records still in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pending {
    /// The table has no stream: no records are pending.
    NoStream,
    /// Empty ledgers were written for this many items the scan did not count whose records are
    /// still in the stream.
    Protected {
        /// The ledgers written.
        ledgers: usize,
    },
}

/// Writes the ledgers [`ledgers_for_pending_records`] finds.
pub(super) async fn protect(table: &DynamoTable, rules: &Rules, streams: &impl Streams) -> Result<Pending, BackfillError> {
    Ok(match ledgers_for_pending_records(table, rules, streams).await? {
        Some(ledgers) => {
            write_ledgers(table, rules, &ledgers, Writer::Backfill { run: None }).await?;
            Pending::Protected { ledgers: ledgers.len() }
        }
        None => Pending::NoStream,
    })
}

/// Gives an empty ledger to every item with contributing records in the stream and no ledger.
/// Returns the ledgers to write, or `None` when the table has no stream (nothing is pending).
async fn ledgers_for_pending_records(
    table: &DynamoTable,
    rules: &Rules,
    streams: &impl Streams,
) -> Result<Option<Vec<LedgerWrite>>, BackfillError> {
    let Some(arn) = table.latest_stream_arn().await? else { return Ok(None) };
    let reader = streams.reader(&arn).await;
    let mut items = BTreeSet::new();
    reader
        .read_retained(|records| {
            for record in records {
                // A record the engine cannot identify never reaches the aggregates.
                let Ok(changes) = decode_batch(std::slice::from_ref(&record), table.name(), rules) else { continue };
                for change in changes {
                    if change.origin == Origin::Source && !(change.old.contribution().is_empty() && change.new.contribution().is_empty()) {
                        items.insert(change.key);
                    }
                }
            }
        })
        .await
        .map_err(|source| BackfillError::Stream { arn: arn.clone(), source })?;
    let items: Vec<ItemKey> = items.into_iter().collect();
    // Read as a scan reads them: a ledger written under other rules is there all the same.
    let keys: Vec<ItemKey> = items.iter().map(|item| registry::ledger_key(rules.table(), item)).collect();
    let found = table
        .read_decoded(&keys)
        .await
        .map_err(|source| BackfillError::Read { reading: "reading the ledgers of items with records in the stream", source })?;
    let items = items.into_iter().zip(keys);
    let nothing_yet = SequenceNumber::zero();
    Ok(Some(
        items
            .filter(|(_, ledger)| !found.contains_key(ledger))
            .map(|(item, _)| LedgerWrite { item, expected_version: None, ledger: Ledger::new(nothing_yet.clone(), Deltas::new()) })
            .collect(),
    ))
}
