//! The mark a backfill leaves while it writes, so that an interrupted one cannot go unnoticed.
//!
//! Backfill writes the aggregates, then the ledgers, in many commits. Killed in between, it
//! leaves aggregates that agree with a recompute (so `verify` finds no drift) beside ledgers that
//! still hold what the stream applied before: processing the stream then would count the records
//! it still holds twice. So backfill marks the table before its first write and clears the mark
//! after its last; `verify` reports a mark still set, and the commands that process the stream
//! (`consume`, `replay`, `redrive`) refuse to run until a backfill has finished.
//!
//! The mark is a bookkeeping item (`pk` = `tally#backfill`, `sk` = `in-progress`): the engine
//! skips it on the stream, and scans ignore it.

use aggregates::keys::{ENTITY_TYPE, PK, SK, UPDATED_AT};
use anyhow::{bail, Context as _};
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{SecondsFormat, Utc};

use tally_engine::decode::ItemKey;
use tally_engine::store::codec::{ConditionalPut, Expect};
use tally_engine::store::{SdkItem, Table};

const MARKER_PK: &str = "tally#backfill";
const MARKER_SK: &str = "in-progress";
const MARKER_ENTITY_TYPE: &str = "tally_backfill_marker";
const STARTED_AT: &str = "startedAt";
const FINISHED: &str = "finished";
const RUN: &str = "run";
const OWNER: &str = "owner";

/// Who set the mark: only its owner clears it, so that a backfill finishing does not clear the
/// mark of another one still writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner<'a> {
    /// One whole-table backfill, by a token of its own.
    Invocation(&'a str),
    /// Every worker and the combine of a segmented run.
    Run(&'a str),
}

impl Owner<'_> {
    fn id(&self) -> String {
        match self {
            Owner::Invocation(token) => format!("invocation#{token}"),
            Owner::Run(run) => format!("run#{run}"),
        }
    }
}

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

fn key() -> ItemKey {
    ItemKey { pk: MARKER_PK.to_owned(), sk: MARKER_SK.to_owned() }
}

async fn write<T: Table>(table: &T, finished: bool, owner: &Owner<'_>) -> anyhow::Result<()> {
    let now = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
    let mut item: SdkItem = [
        (PK.to_owned(), AttributeValue::S(MARKER_PK.to_owned())),
        (SK.to_owned(), AttributeValue::S(MARKER_SK.to_owned())),
        (ENTITY_TYPE.to_owned(), AttributeValue::S(MARKER_ENTITY_TYPE.to_owned())),
        (FINISHED.to_owned(), AttributeValue::Bool(finished)),
        (UPDATED_AT.to_owned(), AttributeValue::S(now.clone())),
        (OWNER.to_owned(), AttributeValue::S(owner.id())),
    ]
    .into();
    if !finished {
        item.insert(STARTED_AT.to_owned(), AttributeValue::S(now));
    }
    if let Owner::Run(run) = owner {
        item.insert(RUN.to_owned(), AttributeValue::S((*run).to_owned()));
    }
    let expect = if finished { Expect::Equals { attribute: OWNER, value: AttributeValue::S(owner.id()) } } else { Expect::Anything };
    super::commit(table, &[ConditionalPut { key: key(), item, expect }]).await
}

/// Marks the table before backfill's first write.
pub async fn begin<T: Table>(table: &T, owner: &Owner<'_>) -> anyhow::Result<()> {
    write(table, false, owner).await.context("marking the backfill as started")
}

/// Clears the mark after backfill's last write, if it is still this backfill's: another one that
/// started meanwhile keeps it until it finishes.
pub async fn finish<T: Table>(table: &T, owner: &Owner<'_>) -> anyhow::Result<()> {
    write(table, true, owner).await.context(
        "marking the backfill as finished: another backfill has started since and owns the mark; let it finish, or run backfill again",
    )
}

/// The backfill that has not finished, if one has not. A table that does not exist has none:
/// whatever the caller does next says so better.
pub async fn unfinished<T: Table>(table: &T) -> anyhow::Result<Option<Unfinished>> {
    let found = match table.read(&[key()]).await {
        Ok(found) => found,
        Err(err) if err.is_missing_table() => return Ok(None),
        Err(err) => return Err(err).context("reading the backfill marker"),
    };
    let Some(item) = found.get(&key()) else { return Ok(None) };
    let text = |name| match item.get(name) {
        Some(AttributeValue::S(value)) => Some(value.clone()),
        _ => None,
    };
    Ok(match item.get(FINISHED) {
        Some(AttributeValue::Bool(true)) => None,
        _ => Some(Unfinished { started_at: text(STARTED_AT).unwrap_or_else(|| "an unknown time".to_owned()), run: text(RUN) }),
    })
}

/// Refuses to process the stream while a backfill has not finished.
pub async fn ensure_finished<T: Table>(table: &T) -> anyhow::Result<()> {
    if let Some(unfinished) = unfinished(table).await? {
        bail!("{unfinished}");
    }
    Ok(())
}
