//! Aggregate items by key, who owns a table key, and DynamoDB's limits on keys.

use crate::rules::AggregateId;

/// When tally last wrote an item (aggregates and bookkeeping alike).
pub const UPDATED_AT: &str = "updatedAt";
/// The counter tally's optimistic writes of an item are conditioned on.
pub const VERSION: &str = "version";
/// [`crate::Rules::digest`] of the rules a ledger or an aggregate item was written under.
pub const RULES_DIGEST: &str = "rulesDigest";
/// The attribute tally's own items carry their type in, in a table whose rules name no
/// entity-type attribute (in one that does, they use that one).
pub const TYPE_ATTRIBUTE: &str = "entityType";

/// DynamoDB's limits on a key, in UTF-8 bytes.
pub const MAX_PARTITION_KEY_BYTES: usize = 2048;
pub const MAX_SORT_KEY_BYTES: usize = 1024;
/// The longest source keys tally accepts (SPEC): the margin below DynamoDB's limits leaves room
/// for the prefix of the item's ledger key (`tally#ledger#{pk}`).
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
