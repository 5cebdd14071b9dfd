//! Every item tally itself keeps in the application's table, in one place.
//!
//! Three things must agree on what is tally's and what is the application's: the decoder, which
//! skips tally's own items coming back on the stream; backfill and verify, which recompute from
//! the application's items and compare with tally's; and the event source mapping's
//! `FilterCriteria`, which keeps tally's own writes from invoking the function at all. All three
//! are derived from this registry and from the rules' aggregate and source entity types, so that
//! adding a kind of item is one entry here (or in the rules), not a hunt through the code.

pub use aggregates::keys::BOOKKEEPING_PK_PREFIX;
use aggregates::keys::{ENTITY_TYPE, PK};
use aggregates::source;
use aggregates::AggregateKind;
use serde_json::{json, Value};

/// A kind of bookkeeping item: every one lives under [`BOOKKEEPING_PK_PREFIX`] and carries its
/// own `entityType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bookkeeping {
    pub entity_type: &'static str,
    /// The partition key, or its prefix when the kind has many partitions.
    pub pk_prefix: &'static str,
}

/// One per source item: the last sequence number applied and the contribution the aggregates
/// hold for it. `pk` = prefix + the item's pk, `sk` = the item's sk.
pub const LEDGER: Bookkeeping = Bookkeeping { entity_type: "tally_ledger", pk_prefix: "tally#ledger#" };
/// `tally consume`'s position in one shard: `pk` = prefix + stream ARN, `sk` = shard id.
pub const CHECKPOINT: Bookkeeping = Bookkeeping { entity_type: "tally_checkpoint", pk_prefix: "tally#checkpoint#" };
/// One segmented-backfill worker's sums: `pk` = prefix + run id.
pub const BACKFILL_PARTIAL: Bookkeeping = Bookkeeping { entity_type: "tally_backfill_partial", pk_prefix: "tally#backfill#" };
/// Stands while a backfill writes: `pk` is exactly this.
pub const BACKFILL_MARKER: Bookkeeping = Bookkeeping { entity_type: "tally_backfill_marker", pk_prefix: "tally#backfill" };

pub const BOOKKEEPING: [Bookkeeping; 4] = [LEDGER, CHECKPOINT, BACKFILL_PARTIAL, BACKFILL_MARKER];

/// Attributes tally adds to the items it writes, beyond the rules' fields.
pub mod attributes {
    /// The counter every write of a ledger or an aggregate is conditioned on.
    pub const VERSION: &str = "version";
    pub const SEQUENCE_NUMBER: &str = "sequenceNumber";
    pub const CONTRIBUTION: &str = "contribution";
    pub const ASSUMED_FROM: &str = "assumedFrom";
    pub const ASSUMED_BASELINE: &str = "assumedBaseline";
    /// A contribution entry's field amounts.
    pub const FIELDS: &str = "fields";
    /// Whether the stream or a backfill last wrote a ledger.
    pub const WRITTEN_BY: &str = "writtenBy";
    /// The segmented backfill run that last reset a ledger.
    pub const BACKFILL_RUN: &str = "backfillRun";
}

/// The `entityType` of every item tally writes: the rules' aggregates and the bookkeeping.
pub fn own_entity_types() -> impl Iterator<Item = &'static str> {
    AggregateKind::ALL.into_iter().map(AggregateKind::entity_type).chain(BOOKKEEPING.iter().map(|kind| kind.entity_type))
}

/// The event source mapping's `FilterCriteria`: a record reaches the function when either image
/// is an application item. Filters are ORed; a rule on an absent field never matches except
/// `{"exists": false}`, INSERT has only a new image and REMOVE only an old one.
///
/// 1. and 2. That image has a string `entityType` that is not one of tally's own. MODIFY passes if
///    either side is a source item, so an item retyped to or from an aggregate type still has its
///    old contribution retracted.
/// 3. and 4. That image has no string `entityType` (the processor counts it as unknown) and its pk
///    has a source prefix; the prefix rule also makes the image required, so `{"exists": false}`
///    cannot match the image an INSERT or a REMOVE lacks, and untyped `tally#` items stay out.
pub fn filter_criteria() -> Value {
    let own: Vec<&str> = own_entity_types().collect();
    let prefixes: Vec<Value> = source::pk_prefixes().map(|prefix| json!({ "prefix": prefix })).collect();
    let typed = |image: &str| json!({ "dynamodb": { image: { ENTITY_TYPE: { "S": [{ "anything-but": own }] } } } });
    let untyped = |image: &str| json!({ "dynamodb": { image: { ENTITY_TYPE: { "S": [{ "exists": false }] }, PK: { "S": prefixes } } } });
    let patterns = [typed("NewImage"), typed("OldImage"), untyped("NewImage"), untyped("OldImage")];
    json!({ "Filters": patterns.iter().map(|pattern| json!({ "Pattern": pattern.to_string() })).collect::<Vec<_>>() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bookkeeping_lives_under_the_prefix_the_decoder_skips() {
        for kind in BOOKKEEPING {
            assert!(kind.pk_prefix.starts_with(BOOKKEEPING_PK_PREFIX), "{kind:?}");
            assert_eq!(aggregates::KeyOwner::of(kind.pk_prefix, "x"), aggregates::KeyOwner::Bookkeeping, "{kind:?}");
        }
    }

    #[test]
    fn own_entity_types_never_name_a_source_item() {
        let own: Vec<&str> = own_entity_types().collect();
        assert_eq!(own.len(), AggregateKind::ALL.len() + BOOKKEEPING.len());
        for entity_type in &own {
            assert!(source::entity_of(entity_type).is_none(), "{entity_type}");
        }
    }
}
