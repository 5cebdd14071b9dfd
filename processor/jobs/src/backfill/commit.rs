//! Backfill's writes: each conditioned on the item as scanned, and retried while DynamoDB is
//! busy. The rule for what a failed condition means lives here.

use std::borrow::Cow;
use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use aggregates::Rules;

use crate::error::BackfillError;
use crate::Progress;
use tally_engine::items::ItemKey;
use tally_engine::items::{first_version, AggregateWrite, LedgerWrite};
use tally_engine::plan::MAX_TRANSACTION_ACTIONS;
use tally_engine::registry;
use tally_engine::retry::{retry_until, RetryBudget, RetryError};
use tally_engine::store::{Commit, Current, Store, StoreError, Writer};

/// Items per commit: the most one DynamoDB transaction takes.
const CHUNK: usize = MAX_TRANSACTION_ACTIONS;
/// How long one write keeps retrying transient failures.
const RETRY_FOR: Duration = Duration::from_secs(120);

/// Commits one chunk of backfill's writes, each conditioned on the item as scanned.
///
/// A ledger that has disappeared since the scan was deleted by TTL (ledgers expire 48 h after
/// their last write, lazily): that is a legitimate state, so its reset is written as a new ledger.
/// Any other changed item means a writer raced backfill, and the chunk is refused. So is a chunk
/// with a write where an item that is not tally's stands: the store never replaces one.
///
/// # Errors
/// [`BackfillError::Raced`] naming the items a writer changed; [`BackfillError::NotOwned`];
/// [`BackfillError::Write`] when the commit fails for good or its retries run out.
pub async fn commit<T: Store>(table: &T, rules: &Rules, commit: Commit<'_>) -> Result<(), BackfillError> {
    let mut budget = RetryBudget::within(RETRY_FOR);
    let mut ledgers = Cow::Borrowed(commit.ledgers);
    loop {
        let attempt = Commit { ledgers: &ledgers, ..commit };
        let changed = match retry_until(&mut budget, || table.commit(attempt)).await {
            Ok(()) => return Ok(()),
            Err(RetryError::Failed(StoreError::Changed(changed))) => changed,
            Err(RetryError::Failed(err @ StoreError::NotOwned { .. })) => return Err(BackfillError::NotOwned(err)),
            Err(err) => return Err(BackfillError::Write(err)),
        };
        let expired: HashSet<&ItemKey> = changed
            .iter()
            .filter_map(|current| match current {
                Current::Ledger { source, ledger: None } => Some(source),
                _ => None,
            })
            .collect();
        let raced: Vec<&Current> = changed.iter().filter(|current| !matches!(current, Current::Ledger { ledger: None, .. })).collect();
        let recreate = |write: &LedgerWrite| write.expected_version.is_some() && expired.contains(&write.item);
        if raced.is_empty() && ledgers.iter().any(recreate) {
            for write in ledgers.to_mut().iter_mut().filter(|write| recreate(write)) {
                write.expected_version = None;
                write.ledger.version = first_version();
            }
            continue;
        }
        return Err(BackfillError::Raced(raced.into_iter().map(|current| table_key(rules, current)).collect()));
    }
}

/// The changed item's key in the table, as an operator would look it up.
fn table_key(rules: &Rules, current: &Current) -> ItemKey {
    match current {
        Current::Ledger { source, .. } => registry::ledger_key(rules.table(), source),
        Current::Aggregate { key, .. } => ItemKey::from(key),
    }
}

/// Writes recomputed aggregates a chunk at a time, `progress` advancing by the aggregates written.
///
/// # Errors
/// As [`commit`]'s, for the first chunk that fails; the chunks before it are written.
pub(crate) async fn write_aggregates<T: Store>(
    table: &T,
    rules: &Rules,
    aggregates: &[AggregateWrite],
    progress: &impl Progress,
) -> Result<(), BackfillError> {
    progress.begin(aggregates.len() as u64, "writes");
    for chunk in aggregates.chunks(CHUNK) {
        commit(table, rules, Commit { ledgers: &[], aggregates: chunk, writer: Writer::Backfill { run: None } }).await?;
        progress.advance(chunk.len() as u64);
    }
    progress.finish();
    Ok(())
}

/// Writes ledger resets a chunk at a time, recorded as `writer`'s.
///
/// # Errors
/// As [`commit`]'s, for the first chunk that fails; the chunks before it are written.
pub(crate) async fn write_ledgers<T: Store>(
    table: &T,
    rules: &Rules,
    ledgers: &[LedgerWrite],
    writer: Writer<'_>,
) -> Result<(), BackfillError> {
    for chunk in ledgers.chunks(CHUNK) {
        commit(table, rules, Commit { ledgers: chunk, aggregates: &[], writer }).await?;
    }
    Ok(())
}

/// Runs a write of backfill's bookkeeping (the marks, partial sums) until it lands, retrying
/// transient failures for up to two minutes. The writes are whole items, so a retry after a
/// lost answer rewrites the same item.
///
/// # Errors
/// [`RetryError`] when the write fails for good or is still failing when the two minutes are up.
pub(crate) async fn retried<T, Fut>(attempt: impl FnMut() -> Fut) -> Result<T, RetryError>
where
    Fut: Future<Output = Result<T, StoreError>>,
{
    retry_until(&mut RetryBudget::within(RETRY_FOR), attempt).await
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use aggregates::Deltas;
    use tally_engine::items::{Ledger, StoredAggregate};
    use tally_engine::sequence::SequenceNumber;
    use tally_engine::store::{MemoryTable, SdkItem};

    use super::*;

    fn item() -> ItemKey {
        ItemKey { pk: "course#c1".into(), sk: "student#s1".into() }
    }

    /// The ledger the stream leaves, at a fresh version.
    fn streamed() -> LedgerWrite {
        let ledger = Ledger { version: first_version(), sequence: SequenceNumber::zero(), contribution: Deltas::new(), assumed: None };
        LedgerWrite { item: item(), expected_version: None, ledger }
    }

    /// Backfill's reset of `scanned`, conditioned on its version.
    fn reset(scanned: &Ledger) -> LedgerWrite {
        LedgerWrite {
            item: item(),
            expected_version: Some(scanned.version),
            ledger: Ledger { version: scanned.version + 1, ..scanned.clone() },
        }
    }

    async fn write(table: &MemoryTable, write: &LedgerWrite, writer: Writer<'_>) -> Result<(), BackfillError> {
        commit(table, Rules::university(), Commit { ledgers: std::slice::from_ref(write), aggregates: &[], writer }).await
    }

    async fn ledger(table: &MemoryTable) -> Option<Ledger> {
        table.read(&[item()], &[]).await.expect("the table reads").ledgers.remove(&item())
    }

    #[tokio::test]
    async fn a_ledger_ttl_deleted_since_the_scan_is_written_as_a_new_incarnation() {
        let table = MemoryTable::new("university", Arc::new(Rules::university().clone()));
        let scanned = streamed();
        write(&table, &scanned, Writer::Stream).await.unwrap();
        table.delete_item(&registry::ledger_key(Rules::university().table(), &item())).expect("the ledger was there");
        write(&table, &reset(&scanned.ledger), Writer::Backfill { run: None }).await.expect("a ledger TTL deleted is not a race");
        let written = ledger(&table).await.expect("written anew");
        assert!(![scanned.ledger.version, scanned.ledger.version + 1].contains(&written.version), "at a version of its own");
    }

    #[tokio::test]
    async fn an_aggregate_write_where_an_application_item_stands_refuses_the_chunk_and_leaves_the_item() {
        let rules = aggregates::Rules::university();
        let table = MemoryTable::new("university", Arc::new(rules.clone()));
        let key = rules.parse_key("course#c1", "stats").expect("a course's stats key");
        let note = serde_json::json!({"pk": {"S": "course#c1"}, "sk": {"S": "stats"}, "title": {"S": "Reading list"}});
        let note: SdkItem = serde_json::from_value::<serde_dynamo::Item>(note).expect("DynamoDB JSON").into();
        let at = ItemKey { pk: key.pk.clone(), sk: key.sk.clone() };
        table.put_item(at.clone(), note.clone());
        // The scan reads the application's item as the application's, so backfill expects no
        // aggregate there; a scan of an earlier release read it as tally's, without a version.
        for expected_version in [None, Some(0)] {
            let stored = StoredAggregate { values: aggregates::AggregateValues::zero(rules, key.kind), version: 1 };
            let write = AggregateWrite { key: key.clone(), expected_version, stored };
            let err = write_aggregates(&table, rules, &[write], &()).await.unwrap_err();
            assert!(err.is_not_owned() && !err.is_raced(), "{err:?}");
            let err = err.to_string();
            assert!(err.starts_with("item pk=`course#c1` sk=`stats` is not tally's `stats`"), "{expected_version:?}: {err}");
            assert_eq!(table.items().get(&at), Some(&note));
        }
    }

    #[tokio::test]
    async fn a_ledger_that_moved_on_refuses_the_chunk_naming_it() {
        let table = MemoryTable::new("university", Arc::new(Rules::university().clone()));
        let scanned = streamed();
        write(&table, &scanned, Writer::Stream).await.unwrap();
        write(&table, &reset(&scanned.ledger), Writer::Stream).await.unwrap();
        let err = write(&table, &reset(&scanned.ledger), Writer::Backfill { run: None }).await.unwrap_err();
        assert!(err.is_raced() && !err.is_not_owned(), "{err:?}");
        let err = err.to_string();
        assert!(err.starts_with("1 item(s) changed while backfill ran"), "{err}");
        assert!(err.contains("pk=`tally#ledger#course#c1` sk=`student#s1`"), "{err}");
    }
}
