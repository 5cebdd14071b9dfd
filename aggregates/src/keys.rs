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

    pub const SEQUENCE_NUMBER: &str = "sequenceNumber";
    pub const CONTRIBUTION: &str = "contribution";
    pub const ASSUMED_FROM: &str = "assumedFrom";
    pub const ASSUMED_BASELINE: &str = "assumedBaseline";
    /// A contribution entry's (and a backfill partial's) field amounts.
    pub const FIELDS: &str = "fields";
    /// Whether the stream or a backfill last wrote a ledger.
    pub const WRITTEN_BY: &str = "writtenBy";
    /// The segmented backfill run that last reset a ledger.
    pub const BACKFILL_RUN: &str = "backfillRun";
    /// A backfill partial's aggregate, and the version its segment scanned.
    pub const AGGREGATE_PK: &str = "aggregatePk";
    pub const AGGREGATE_SK: &str = "aggregateSk";
    pub const SCANNED_VERSION: &str = "scannedVersion";
    /// A backfill segment's marker.
    pub const TOTAL_SEGMENTS: &str = "totalSegments";
    pub const ENTRIES: &str = "entries";
    /// The backfill marker's, and a checkpoint's `finished`.
    pub const STARTED_AT: &str = "startedAt";
    pub const FINISHED: &str = "finished";
    pub const RUN: &str = "run";
    pub const OWNER: &str = "owner";

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

/// DynamoDB's limits on a key, in UTF-8 bytes.
pub const MAX_PARTITION_KEY_BYTES: usize = 2048;
pub const MAX_SORT_KEY_BYTES: usize = 1024;
/// DynamoDB's limit on actions in one `TransactWriteItems`: a source item's ledger and every
/// aggregate item its change moves commit in one.
pub const MAX_TRANSACTION_ACTIONS: usize = 100;
/// What follows the bookkeeping prefix in a ledger's partition key: `tally#ledger#{pk}`.
pub const LEDGER_PK_INFIX: &str = "ledger#";
/// The longest source keys tally accepts (SPEC): the margin below DynamoDB's limits leaves room
/// for the prefix of the item's ledger key (`tally#ledger#{pk}`, with the university's prefix;
/// the rules checker holds another prefix to the same room).
pub const MAX_SOURCE_PK_BYTES: usize = 1984;
pub const MAX_SOURCE_SK_BYTES: usize = 960;

/// One aggregate item: its kind (an aggregate of the rules) and its rendered table keys.
/// Ordered by kind, in the rules file's order, then by keys.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AggregateKey {
    pub kind: AggregateId,
    pub pk: String,
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
