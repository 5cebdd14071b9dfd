//! Why a job stopped: one error type per job, and one each for the scan and the backfill's mark
//! that jobs share. Each wraps the store's, the stream's or the retry loop's error where that is
//! the cause, as its source: `tally` prints an error followed by its sources, joined by `: `, so a
//! message never repeats its source.

use std::path::PathBuf;

use aggregates::AggregateKey;
use tally_engine::items::ItemKey;
use tally_engine::outcome::BatchFailure;
use tally_engine::retry::RetryError;
use tally_engine::store::partials::Unreadable;
use tally_engine::store::StoreError;
use tally_engine::stream::StreamError;

use crate::backfill::in_progress::Unfinished;

/// A segment of the table could not be scanned.
#[derive(Debug, thiserror::Error)]
#[error("scanning segment {segment} of {total} of table `{table}`")]
pub struct ScanError {
    /// The segment whose scan failed.
    pub segment: u32,
    /// The number of segments the table was scanned in.
    pub total: u32,
    /// The table's name.
    pub table: String,
    /// Why the scan failed.
    #[source]
    pub source: Box<StoreError>,
}

/// The mark of an unfinished backfill could not be set, cleared or read, or it stops a command
/// that would process the stream.
#[derive(Debug, thiserror::Error)]
pub enum MarkError {
    /// Setting the mark before backfill's first write failed.
    #[error("marking the backfill as started")]
    Begin(#[source] RetryError),
    /// Clearing the mark after backfill's last write failed.
    #[error("marking the backfill as finished")]
    Finish(#[source] RetryError),
    /// Another backfill set the mark after this one did, and still holds it.
    #[error(
        "marking the backfill as finished: another backfill has started since and owns the mark; let it finish, or run backfill again"
    )]
    HeldByAnother,
    /// The mark could not be read.
    #[error("reading the backfill marker")]
    Read(#[source] StoreError),
    /// A backfill has not finished: processing the stream now would count its records twice.
    #[error("{0}")]
    Unfinished(Unfinished),
}

impl MarkError {
    /// Whether a backfill that has not finished stopped the command.
    pub fn is_unfinished(&self) -> bool {
        matches!(self, MarkError::Unfinished(_))
    }

    /// Whether another backfill holds the mark.
    pub fn is_held_by_another(&self) -> bool {
        matches!(self, MarkError::HeldByAnother)
    }

    /// Whether setting or clearing the mark still failed transiently when its retries ran out.
    pub fn is_gave_up(&self) -> bool {
        matches!(self, MarkError::Begin(err) | MarkError::Finish(err) if err.is_gave_up())
    }
}

/// Why `verify` could not say whether the table is exact.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The scan failed.
    #[error(transparent)]
    Scan(#[from] ScanError),
    /// The mark of an unfinished backfill could not be read.
    #[error(transparent)]
    Mark(#[from] MarkError),
}

/// Why a backfill stopped. Every refusal (a writer racing it, a stream processor that wrote
/// recently, items written under other rules, a segmented run not ready to combine) comes before
/// the write it would spoil.
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    /// The slice asked for is not one of the run's.
    #[error("--segment {segment} is not below --total-segments {total}")]
    SegmentOutOfRange {
        /// The slice asked for.
        segment: u32,
        /// The run's number of slices.
        total: u32,
    },
    /// The scan failed.
    #[error(transparent)]
    Scan(#[from] ScanError),
    /// The stream processor wrote within the quiet period, and the backfill was not forced.
    #[error(
        "the stream processor wrote to `{table}` at {latest}, within the last {quiet_period} s: a backfill racing it can lose its \
         updates. Disable the event source mapping (aws lambda update-event-source-mapping --uuid UUID --no-enabled), wait for \
         in-flight batches, run backfill, then enable it again; or pass --force"
    )]
    NotQuiet {
        /// The table's name.
        table: String,
        /// When the stream processor last wrote a ledger.
        latest: String,
        /// The quiet period, in seconds.
        quiet_period: u64,
    },
    /// Items were written under other rules, and the backfill was not told the rules changed.
    #[error(
        "{items} ledger(s) and aggregate(s) were written under other rules ({}) than these ({rules}, {digest}): if the rules \
         changed, pass --rules-changed to rewrite them under these; if not, run with the rules the table is written under \
         (--rules / TALLY_RULES). Nothing was written",
        .digests.join(", ")
    )]
    OtherRules {
        /// How many ledgers and aggregates were.
        items: u64,
        /// The digests of the rules they were written under.
        digests: Vec<String>,
        /// Where these rules come from.
        rules: String,
        /// These rules' digest.
        digest: String,
    },
    /// Items the backfill needed could not be read.
    #[error("{reading}")]
    Read {
        /// What was being read.
        reading: &'static str,
        /// Why it could not be.
        #[source]
        source: StoreError,
    },
    /// The store failed otherwise: the table's stream or a segmented run's partial sums could not
    /// be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The records still in the table's stream could not be read.
    #[error("reading the records still in stream {arn}")]
    Stream {
        /// The stream's ARN.
        arn: String,
        /// Why they could not be.
        #[source]
        source: StreamError,
    },
    /// The mark of a running backfill could not be set or cleared.
    #[error(transparent)]
    Mark(#[from] MarkError),
    /// Items changed between the scan and the write: a writer raced the backfill. Holds their
    /// table keys.
    #[error(
        "{} item(s) changed while backfill ran (the stream is being processed?): {}; nothing else in this chunk was written. \
         Pause the event source mapping and run backfill again",
        .0.len(),
        describe(.0)
    )]
    Raced(Vec<ItemKey>),
    /// An item that is not tally's stands where the backfill must write an aggregate; the store
    /// error names it.
    #[error(
        "{0}; nothing in this chunk was written. An item that is not tally's stands where an aggregate of these rules must be: \
         an application item the rules do not describe, or one of an aggregate renamed in place (docs/rules.md, \"Changing \
         rules\"). Move or delete it, then run backfill again"
    )]
    NotOwned(StoreError),
    /// A write failed for good, or still failed transiently when its retries ran out.
    #[error(transparent)]
    Write(#[from] RetryError),
    /// A worker of a segmented run could not record its progress or its partial sums.
    #[error("{}", step.describe(*segment))]
    Partials {
        /// What it was recording.
        step: PartialsStep,
        /// The worker's slice.
        segment: u32,
        /// Why it could not.
        #[source]
        source: RetryError,
    },
    /// A slice of the run was run with another number of slices than the combine's.
    #[error("run `{run}`: segment {segment} was run with a different --total-segments")]
    OtherTotal {
        /// The run's name.
        run: String,
        /// The slice.
        segment: u32,
    },
    /// Slices of the run have not finished.
    #[error(
        "run `{run}`: segment(s) {} of {total} have not finished; run `tally backfill --segment I --total-segments {total} --run {run}` \
         for each",
        join(.missing)
    )]
    SegmentsUnfinished {
        /// The run's name.
        run: String,
        /// The run's number of slices.
        total: u32,
        /// The slices that have not finished, in order.
        missing: Vec<u32>,
    },
    /// A partial sum the combine needs cannot be used.
    #[error("run `{run}`: partial `{name}` {problem}")]
    UnreadablePartial {
        /// The run's name.
        run: String,
        /// The partial sum's sort key.
        name: String,
        /// What is wrong with it.
        problem: Unreadable,
    },
    /// Fewer partial sums are stored than the workers wrote (they expire).
    #[error(
        "run `{run}`: partial sums are missing ({}; they expire 7 days after a worker wrote them); nothing was written. Run every \
         segment and the combine again",
        join(.short)
    )]
    MissingPartials {
        /// The run's name.
        run: String,
        /// The slices short of sums.
        short: Vec<Shortfall>,
    },
    /// Aggregates were written after the workers scanned them: the stream was processed during
    /// the run.
    #[error(
        "run `{run}`: {} aggregate(s) changed after the workers scanned them (the stream was processed during the run): {}; nothing \
         was written. Pause the event source mapping and run every segment and the combine again",
        .moved.len(),
        describe_first(.moved)
    )]
    ChangedSinceScan {
        /// The run's name.
        run: String,
        /// The aggregates that changed.
        moved: Vec<AggregateKey>,
    },
}

impl BackfillError {
    /// Whether a writer raced the backfill: items it planned from changed before it wrote them.
    /// Pausing the stream processor and running it again mends it.
    pub fn is_raced(&self) -> bool {
        matches!(self, BackfillError::Raced(_) | BackfillError::ChangedSinceScan { .. })
    }

    /// Whether an item that is not tally's stands where an aggregate must be written.
    pub fn is_not_owned(&self) -> bool {
        matches!(self, BackfillError::NotOwned(_))
    }

    /// Whether the backfill refused to run because the stream processor wrote recently.
    pub fn is_not_quiet(&self) -> bool {
        matches!(self, BackfillError::NotQuiet { .. })
    }

    /// Whether the backfill refused to rewrite items written under other rules.
    pub fn is_other_rules(&self) -> bool {
        matches!(self, BackfillError::OtherRules { .. })
    }

    /// Whether a segmented run cannot be combined yet, or must be run again: slices unfinished,
    /// run with another number of slices, or partial sums missing or unusable.
    pub fn is_run_incomplete(&self) -> bool {
        matches!(
            self,
            BackfillError::OtherTotal { .. }
                | BackfillError::SegmentsUnfinished { .. }
                | BackfillError::UnreadablePartial { .. }
                | BackfillError::MissingPartials { .. }
        )
    }

    /// Whether a write still failed transiently when its retries ran out: running the backfill
    /// again may succeed.
    pub fn is_gave_up(&self) -> bool {
        match self {
            BackfillError::Write(err) | BackfillError::Partials { source: err, .. } => err.is_gave_up(),
            BackfillError::Mark(err) => err.is_gave_up(),
            _ => false,
        }
    }
}

/// What a worker of a segmented run was recording when it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartialsStep {
    /// That it started (taking back an earlier run's done marker).
    Start,
    /// Its partial sums.
    Sums,
    /// That it is done, and how many sums it stored.
    Done,
}

impl PartialsStep {
    /// What the worker of `segment` was doing, as its error says it.
    fn describe(self, segment: u32) -> String {
        match self {
            PartialsStep::Start => format!("marking segment {segment} as started"),
            PartialsStep::Sums => format!("storing the partial sums of segment {segment}"),
            PartialsStep::Done => format!("marking segment {segment} done"),
        }
    }
}

/// A slice of a segmented run with fewer partial sums stored than its worker wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shortfall {
    /// The slice.
    pub segment: u32,
    /// The sums found.
    pub found: u64,
    /// The sums its worker wrote.
    pub written: u64,
}

impl std::fmt::Display for Shortfall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "segment {}: {} of {}", self.segment, self.found, self.written)
    }
}

/// Why `consume` stopped before it was caught up or told to stop.
#[derive(Debug, thiserror::Error)]
pub enum ConsumeError {
    /// The checkpoints could not be loaded.
    #[error("loading checkpoints")]
    LoadCheckpoints(#[source] StoreError),
    /// A shard's checkpoint could not be saved.
    #[error("saving the checkpoint of shard {shard}")]
    SaveCheckpoint {
        /// The shard.
        shard: String,
        /// Why it could not be.
        #[source]
        source: StoreError,
    },
    /// The stream's shards could not be listed, or a shard's iterator renewed.
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// A shard could not be opened at its position.
    #[error("shard {shard}")]
    OpenShard {
        /// The shard.
        shard: String,
        /// Why it could not be.
        #[source]
        source: StreamError,
    },
    /// A shard could not be read.
    #[error("reading shard {shard}")]
    ReadShard {
        /// The shard.
        shard: String,
        /// Why it could not be.
        #[source]
        source: StreamError,
    },
    /// A store failure that retrying cannot fix left a batch unapplied; every later batch would
    /// fail alike, so the checkpoint stays before it.
    #[error(
        "shard {shard}: record {} of a batch of {records} not applied: {failure}; fix it and run consume again (it resumes from \
         the last checkpoint)",
        .failure.from
    )]
    NotApplied {
        /// The shard.
        shard: String,
        /// The number of records in the batch.
        records: usize,
        /// What was not applied, and why.
        failure: Box<BatchFailure>,
    },
    /// The failure log could not be opened.
    #[error("opening failure log {}", .path.display())]
    OpenFailureLog {
        /// The log's path.
        path: PathBuf,
        /// Why it could not be.
        #[source]
        source: std::io::Error,
    },
    /// The failure log could not be written.
    #[error("writing failure log {}", .path.display())]
    WriteFailureLog {
        /// The log's path.
        path: PathBuf,
        /// Why it could not be.
        #[source]
        source: std::io::Error,
    },
}

impl ConsumeError {
    /// Whether a batch was left unapplied for a reason retrying cannot fix.
    pub fn is_not_applied(&self) -> bool {
        matches!(self, ConsumeError::NotApplied { .. })
    }

    /// Whether the stream could not be read.
    pub fn is_stream(&self) -> bool {
        matches!(self, ConsumeError::Stream(_) | ConsumeError::OpenShard { .. } | ConsumeError::ReadShard { .. })
    }

    /// Whether positions could not be written to the failure log.
    pub fn is_failure_log(&self) -> bool {
        matches!(self, ConsumeError::OpenFailureLog { .. } | ConsumeError::WriteFailureLog { .. })
    }
}

/// Items joined by `, `.
fn join(items: &[impl std::fmt::Display]) -> String {
    items.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

/// Table keys as an operator would look them up, joined by `, `.
fn describe(keys: &[ItemKey]) -> String {
    keys.iter().map(|key| format!("pk=`{}` sk=`{}`", key.pk, key.sk)).collect::<Vec<_>>().join(", ")
}

/// The first ten aggregates' keys, as [`describe`] shows them.
fn describe_first(keys: &[AggregateKey]) -> String {
    keys.iter().take(10).map(|key| format!("pk=`{}` sk=`{}`", key.pk, key.sk)).collect::<Vec<_>>().join(", ")
}
