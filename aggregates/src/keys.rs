//! Aggregate items by key, who owns a table key, and DynamoDB's limits on keys.

use crate::rules::AggregateId;

/// When tally last wrote an item (aggregates and bookkeeping alike).
pub const UPDATED_AT: &str = "updatedAt";
/// The counter tally's optimistic writes of an item are conditioned on.
pub const VERSION: &str = "version";
/// [`crate::Rules::digest`] of the rules a ledger or an aggregate item was written under.
pub const RULES_DIGEST: &str = "rulesDigest";
/// How the types of tally's bookkeeping items begin (`tally_ledger`, ...). The rules checker
/// refuses an entity or aggregate named so: it would be taken for one, its items under the
/// bookkeeping prefix skipped and a ledger's condition on its type passing on them.
pub const TALLY_TYPE_PREFIX: &str = "tally_";
/// The attribute tally's own items carry their type in, in a table whose rules name no
/// entity-type attribute (in one that does, they use that one).
pub const TYPE_ATTRIBUTE: &str = "entityType";

/// Every attribute tally writes on its own items besides the rules' names (keys, type, TTL,
/// fields, averages). The rules checker keeps a rules file's names off them: a TTL attribute or
/// a field named `version` would overwrite what tally's conditions are built on.
pub mod attributes {
    pub use super::{RULES_DIGEST, UPDATED_AT, VERSION};

    /// The sequence number of the last record applied: a ledger's, for its item; a checkpoint's,
    /// from its shard.
    pub const SEQUENCE_NUMBER: &str = "sequenceNumber";
    /// A ledger's contribution: what the aggregates hold for its item, as a list of
    /// `{pk, sk, fields}` entries.
    pub const CONTRIBUTION: &str = "contribution";
    /// The sequence number of the record that created a ledger, whose old image was taken as
    /// already counted.
    pub const ASSUMED_FROM: &str = "assumedFrom";
    /// The contribution a ledger took on trust at [`ASSUMED_FROM`]: what that old image adds.
    pub const ASSUMED_BASELINE: &str = "assumedBaseline";
    /// A contribution entry's (and a backfill partial's) field amounts.
    pub const FIELDS: &str = "fields";
    /// Whether the stream or a backfill last wrote a ledger.
    pub const WRITTEN_BY: &str = "writtenBy";
    /// The segmented backfill run that last reset a ledger.
    pub const BACKFILL_RUN: &str = "backfillRun";
    /// The partition key of a backfill partial's aggregate item.
    pub const AGGREGATE_PK: &str = "aggregatePk";
    /// The sort key of a backfill partial's aggregate item.
    pub const AGGREGATE_SK: &str = "aggregateSk";
    /// A backfill partial's aggregate item's version, from the one segment whose scan found it.
    pub const SCANNED_VERSION: &str = "scannedVersion";
    /// How many segments the run of a backfill segment's marker has.
    pub const TOTAL_SEGMENTS: &str = "totalSegments";
    /// How many partial sums a backfill segment wrote: set on its marker once all are written.
    pub const ENTRIES: &str = "entries";
    /// When the backfill marker was set (RFC 3339).
    pub const STARTED_AT: &str = "startedAt";
    /// Whether the backfill marker is cleared, or a checkpoint's shard closed and read to its end.
    pub const FINISHED: &str = "finished";
    /// The segmented backfill run the backfill marker belongs to.
    pub const RUN: &str = "run";
    /// The backfill that set the backfill marker: only it clears the marker.
    pub const OWNER: &str = "owner";

    /// Every attribute of this module: names a rules file may not give a field or its TTL
    /// attribute.
    pub const ALL: [&str; 19] = [
        VERSION,
        RULES_DIGEST,
        UPDATED_AT,
        SEQUENCE_NUMBER,
        CONTRIBUTION,
        ASSUMED_FROM,
        ASSUMED_BASELINE,
        FIELDS,
        WRITTEN_BY,
        BACKFILL_RUN,
        AGGREGATE_PK,
        AGGREGATE_SK,
        SCANNED_VERSION,
        TOTAL_SEGMENTS,
        ENTRIES,
        STARTED_AT,
        FINISHED,
        RUN,
        OWNER,
    ];
}

/// DynamoDB's limit on a partition key, in UTF-8 bytes.
pub const MAX_PARTITION_KEY_BYTES: usize = 2048;
/// DynamoDB's limit on a sort key, in UTF-8 bytes.
pub const MAX_SORT_KEY_BYTES: usize = 1024;
/// DynamoDB's limit on actions in one `TransactWriteItems`: a source item's ledger and every
/// aggregate item its change moves commit in one.
pub const MAX_TRANSACTION_ACTIONS: usize = 100;
/// What follows the bookkeeping prefix in a ledger's partition key: `tally#ledger#{pk}`.
pub const LEDGER_PK_INFIX: &str = "ledger#";
/// The longest partition key tally accepts on a source item, in UTF-8 bytes (the university
/// contract, docs/university.md): the margin below DynamoDB's limit leaves room for the prefix of
/// the item's ledger key (`tally#ledger#{pk}`, with the university's prefix; the rules checker
/// holds another prefix to the same room). A rules file may lower it, never raise it.
pub const MAX_SOURCE_PK_BYTES: usize = 1984;
/// The longest sort key tally accepts on a source item, in UTF-8 bytes (the university
/// contract). A rules file may lower it, never raise it.
pub const MAX_SOURCE_SK_BYTES: usize = 960;

/// One aggregate item: its kind (an aggregate of the rules) and its rendered table keys.
/// Ordered by kind, in the rules file's order, then by keys.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AggregateKey {
    /// The aggregate it is an item of.
    pub kind: AggregateId,
    /// The partition key, rendered from the aggregate's template.
    pub pk: String,
    /// The sort key, rendered from the aggregate's template.
    pub sk: String,
}

/// Who an item belongs to, judged from its table key alone (a REMOVE carries no new image).
/// [`crate::rules::Rules::owner`] tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOwner {
    /// An aggregate item tally writes.
    Aggregate,
    /// A bookkeeping item tally writes (ledger, checkpoint).
    Bookkeeping,
    /// Anything else: the application's items.
    Application,
}
