//! The items tally reads and writes, as the engine and the store speak of them: the key of an
//! application's item, the ledger tally keeps for it, an aggregate as stored, and the writes of
//! both that a transaction carries, each conditioned on the version that was read.

use aggregates::keys::{MAX_PARTITION_KEY_BYTES, MAX_SORT_KEY_BYTES};
use aggregates::{AggregateKey, AggregateValues, Deltas};

use crate::sequence::SequenceNumber;

/// The key of a source item in the table.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ItemKey {
    /// The partition key's value.
    pub pk: String,
    /// The sort key's value.
    pub sk: String,
}

impl ItemKey {
    /// Whether the item's ledger key (`tally#ledger#{pk}`, `sk`) fits DynamoDB's key limits.
    /// `ledger_prefix` is [`crate::registry::LEDGER`]'s in this table.
    /// A key that does not can have no ledger, so it is not read for one (the read would be
    /// refused). Keys between the limits on a source item's key (the university contract,
    /// docs/university.md) and these may hold ledgers written before the limits existed: those
    /// are read, so that the item's retraction is applied.
    pub fn fits_ledger(&self, ledger_prefix: &str) -> bool {
        ledger_prefix.len() + self.pk.len() <= MAX_PARTITION_KEY_BYTES && self.sk.len() <= MAX_SORT_KEY_BYTES
    }
}

impl From<&AggregateKey> for ItemKey {
    /// The table key an aggregate item is stored at.
    fn from(key: &AggregateKey) -> Self {
        ItemKey { pk: key.pk.clone(), sk: key.sk.clone() }
    }
}

/// The version a newly created ledger or aggregate starts at: random, not 1.
///
/// Writes are conditioned on the version that was read. TTL deletes a ledger, and another writer
/// may then create the item anew; had every incarnation started at 1, a writer holding the old
/// incarnation's version 1 would pass the new one's condition and commit a plan computed from a
/// ledger that no longer exists. With a random 62-bit start, incarnations never share a version
/// (the university contract, docs/university.md: "Two writers").
pub fn first_version() -> u64 {
    rand::random_range(1 << 32..1 << 62)
}

/// The version a write gives an item read at `read` (`None`: absent): the next one, or a first.
pub fn next_version(read: Option<u64>) -> u64 {
    read.map_or_else(first_version, |version| version + 1)
}

/// What the ledger remembers of a source item: the last record applied and the contribution the
/// aggregates hold for the item since.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ledger {
    /// Every write of a ledger bumps it; writes are conditioned on it. The sequence number cannot
    /// serve: a repair or a backfill rewrites a ledger without moving it.
    pub version: u64,
    /// The sequence number of the last record applied for the item.
    pub sequence: SequenceNumber,
    /// What the aggregates hold for the item: the contribution of the last applied record's new
    /// image.
    pub contribution: Deltas,
    /// Set when the ledger was created: what the item's first applied record took as already
    /// counted (its old image), and that record's sequence number.
    pub assumed: Option<Assumption>,
}

impl Ledger {
    /// A ledger not written before: at a first version, holding `contribution` as of `sequence`,
    /// nothing assumed.
    pub fn new(sequence: SequenceNumber, contribution: Deltas) -> Self {
        Ledger { version: first_version(), sequence, contribution, assumed: None }
    }
}

/// A baseline taken on trust. No record of the item older than `from` that is still in the stream
/// can have been applied (it would have left a ledger, and ledgers outlive the stream's
/// retention), so if one arrives later (a redrive of a discarded batch) the trust was misplaced
/// by exactly `baseline - contribution(its old image)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assumption {
    /// The sequence number of the record that created the ledger.
    pub from: SequenceNumber,
    /// What that record's old image contributes: taken as already counted.
    pub baseline: Deltas,
}

/// An aggregate item as read, with the version its next write must find.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAggregate {
    /// Its counters and sums.
    pub values: AggregateValues,
    /// The version its next write is conditioned on; 0 for an item written before tally
    /// versioned its items.
    pub version: u64,
}

/// Writes one ledger, if it is still at the version that was read (`None`: absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerWrite {
    /// The source item the ledger belongs to, not the ledger's own key.
    pub item: ItemKey,
    /// The version the ledger was read at; `None`: it must not exist.
    pub expected_version: Option<u64>,
    /// The ledger as written, at its new version.
    pub ledger: Ledger,
}

/// Writes one aggregate with absolute values, if it is still at the version that was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggregateWrite {
    /// The aggregate.
    pub key: AggregateKey,
    /// The version the aggregate was read at; `None`: it must not exist.
    pub expected_version: Option<u64>,
    /// Its new values and version.
    pub stored: StoredAggregate,
}
