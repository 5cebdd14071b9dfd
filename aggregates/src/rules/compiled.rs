//! The compiled rules: what [`super::Rules::from_toml`] makes of a file once, so that
//! evaluating an image is lookups by index and pattern splits, with no name resolution, regex or
//! formatting left to do per record.
//!
//! Every value an entity reads (its key captures, then its attributes) has a *slot*: pk captures
//! first, then sk captures, then attributes in the file's order. Contributions name slots.

use super::model::AttributeType;
use super::pattern::{CaptureType, Pattern};
use crate::keys::AggregateKey;
use crate::keys::{MAX_SOURCE_PK_BYTES, MAX_SOURCE_SK_BYTES};
use crate::number::{Number, AVERAGE_SCALE};

/// A rules file, checked and compiled: what an image contributes to which aggregates.
///
/// Build one with [`Rules::from_toml`] (or take [`Rules::university`]) once, then call
/// [`Rules::assess`] per image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    pub(crate) source_name: String,
    /// What [`Rules::digest`] gives.
    pub(crate) digest: String,
    pub(crate) table: Table,
    pub(crate) limits: Limits,
    pub(crate) entities: Vec<Entity>,
    pub(crate) aggregates: Vec<Aggregate>,
    /// Every field name, once: a [`FieldId`] indexes this.
    pub(crate) fields: Vec<String>,
}

impl Rules {
    /// The name the rules were loaded under.
    pub fn source_name(&self) -> &str {
        &self.source_name
    }

    /// A fingerprint of what the rules mean (16 hex digits): tally stores it on the ledgers
    /// and aggregates it writes, so that `tally verify` can tell items written under other rules.
    /// Comments, layout and the file's name do not change it.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Whether an item carrying `stored` as its rules digest (`rulesDigest`; `None` if it carries
    /// none) was written under these rules. Every comparison of a stored digest goes through
    /// here: a digest releases before the canonical encoding wrote for a rule set of this
    /// repository counts as that rule set's (`digest::LEGACY`), and an item without one as the
    /// university's (releases before digests knew no other rules).
    pub fn wrote(&self, stored: Option<&str>) -> bool {
        match stored {
            None => self.is_university(),
            Some(stored) => super::digest::current(stored) == self.digest,
        }
    }

    /// Whether these are the university rules compiled into tally, wherever they were loaded from.
    pub fn is_university(&self) -> bool {
        self.digest == Rules::university().digest
    }

    /// How the table names its keys and types, and which keys are tally's own.
    pub fn table(&self) -> &Table {
        &self.table
    }

    /// The longest own keys a source item may have.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The entities, in the file's order.
    pub fn entities(&self) -> &[Entity] {
        &self.entities
    }

    /// The entity named `name`, if the rules have one.
    pub fn entity(&self, name: &str) -> Option<&Entity> {
        self.entities.iter().find(|entity| entity.name == name)
    }

    /// The aggregates, in the file's order; an [`AggregateId`] indexes this.
    pub fn aggregates(&self) -> &[Aggregate] {
        &self.aggregates
    }

    /// The aggregate `id` names.
    pub fn aggregate(&self, id: AggregateId) -> &Aggregate {
        &self.aggregates[id.0]
    }

    /// Every aggregate kind, in the file's order.
    pub fn aggregate_ids(&self) -> impl Iterator<Item = AggregateId> {
        (0..self.aggregates.len()).map(AggregateId)
    }

    /// The attribute name of a field on its aggregate items.
    pub fn field_name(&self, id: FieldId) -> &str {
        &self.fields[id.0]
    }

    /// The field named `name`, if some aggregate has it.
    pub fn field(&self, name: &str) -> Option<FieldId> {
        self.fields.iter().position(|field| field == name).map(FieldId)
    }
}

/// How the table names its keys and types, and which keys are tally's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub(crate) pk: String,
    pub(crate) sk: String,
    pub(crate) entity_type: Option<String>,
    pub(crate) bookkeeping_prefix: String,
    pub(crate) ttl: String,
    pub(crate) indexes: Vec<Index>,
    /// Partition-key prefixes the application never writes (the bookkeeping prefix aside).
    pub(crate) reserved_prefixes: Vec<String>,
}

impl Table {
    /// The partition key's attribute name (`pk`, `PK`).
    pub fn pk(&self) -> &str {
        &self.pk
    }

    /// The sort key's attribute name.
    pub fn sk(&self) -> &str {
        &self.sk
    }

    /// The attribute that names an item's type, if the table has one (`entityType`). Aggregate
    /// items carry it too, with their aggregate's name.
    pub fn entity_type(&self) -> Option<&str> {
        self.entity_type.as_deref()
    }

    /// The attribute tally's own items (aggregates and bookkeeping) carry their type in: the
    /// entity-type attribute, or [`crate::keys::TYPE_ATTRIBUTE`] in a table without one.
    pub fn type_attribute(&self) -> &str {
        self.entity_type.as_deref().unwrap_or(crate::keys::TYPE_ATTRIBUTE)
    }

    /// Partition-key prefix of tally's bookkeeping items (ledgers, checkpoints): `tally#`.
    pub fn bookkeeping_prefix(&self) -> &str {
        &self.bookkeeping_prefix
    }

    /// The table's TTL attribute (`ttl` unless the file names another): ledgers set it, to
    /// expire once the stream has forgotten their records.
    pub fn ttl(&self) -> &str {
        &self.ttl
    }

    /// The global secondary indexes `tally init` creates (tally reads none).
    pub fn indexes(&self) -> &[Index] {
        &self.indexes
    }

    /// Partition-key prefixes the file declares the application never writes. Aggregates whose
    /// keys start with one cannot meet an application item; an image whose own partition key
    /// starts with one is rejected (`reserved_key`).
    pub fn reserved_prefixes(&self) -> &[String] {
        &self.reserved_prefixes
    }

    /// The reserved prefix `pk` starts with, the bookkeeping prefix first: a key the
    /// application promised never to write.
    pub fn reserved_prefix_of(&self, pk: &str) -> Option<&str> {
        std::iter::once(&self.bookkeeping_prefix)
            .chain(&self.reserved_prefixes)
            .find(|prefix| pk.starts_with(prefix.as_str()))
            .map(String::as_str)
    }
}

/// A global secondary index of the table, all attributes projected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    pub(crate) name: String,
    pub(crate) pk: String,
    pub(crate) sk: Option<String>,
}

impl Index {
    /// The index's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its partition key's attribute (a string).
    pub fn pk(&self) -> &str {
        &self.pk
    }

    /// Its sort key's attribute (a string), if it has one.
    pub fn sk(&self) -> Option<&str> {
        self.sk.as_deref()
    }
}

/// The longest own keys a source item may have, in UTF-8 bytes (by default 1,984 and 960, as
/// the university contract sets them, which leave room for its ledger's key). A file may lower
/// them, never raise them. Aggregate keys are held to DynamoDB's own limits
/// ([`crate::keys::MAX_PARTITION_KEY_BYTES`], ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most bytes in a source item's own partition key (`limits.source_pk_bytes`); over it, the
    /// image is rejected (`key_too_long`).
    pub source_pk_bytes: usize,
    /// Most bytes in a source item's own sort key (`limits.source_sk_bytes`); over it, the image
    /// is rejected (`key_too_long`).
    pub source_sk_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { source_pk_bytes: MAX_SOURCE_PK_BYTES, source_sk_bytes: MAX_SOURCE_SK_BYTES }
    }
}

/// A kind of source item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entity {
    pub(crate) name: String,
    /// Recognised by its key patterns rather than by its entity-type attribute.
    pub(crate) by_keys: bool,
    pub(crate) pk: Pattern,
    pub(crate) sk: Pattern,
    pub(crate) attributes: Vec<Attribute>,
    pub(crate) groups: Vec<Group>,
}

impl Entity {
    /// Its name: the value of the table's entity-type attribute that marks it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether an item of it can add to an aggregate. One that cannot needs no ledger.
    pub fn contributes(&self) -> bool {
        !self.groups.is_empty()
    }

    /// Whether it is recognised by its key patterns (no entity-type attribute names it).
    pub fn matched_by_keys(&self) -> bool {
        self.by_keys
    }

    /// The literal start of its partition key pattern (`course#`).
    pub fn pk_prefix(&self) -> &str {
        self.pk.prefix()
    }

    pub(crate) fn first_attribute_slot(&self) -> usize {
        self.pk.captures().len() + self.sk.captures().len()
    }

    pub(crate) fn slots(&self) -> usize {
        self.first_attribute_slot() + self.attributes.len()
    }
}

/// An attribute an entity reads, and what makes it invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Attribute {
    pub name: String,
    pub kind: AttributeType,
    pub required: bool,
    /// The rejection reason of a negative value, if negative values are invalid.
    pub negative_reason: Option<String>,
    pub max_digits: Option<Digits>,
}

/// Most digits before and after the decimal point (trailing zeros do not count).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Digits {
    pub integer: u64,
    pub fraction: u64,
}

/// Everything one entity adds to one aggregate item: the aggregate and the slots its key
/// parameters come from (pk's captures, then sk's), and the amounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Group {
    pub aggregate: AggregateId,
    pub params: Vec<usize>,
    pub adds: Vec<Add>,
}

/// One amount for one field, when its conditions hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Add {
    pub conditions: Vec<Condition>,
    pub field: FieldId,
    pub amount: Amount,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Condition {
    /// The slot holds a value.
    Present(usize),
    /// The slot holds this text.
    Equals(usize, String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Amount {
    One,
    /// The number in this slot; nothing when absent.
    Attribute(usize),
}

/// A kind of aggregate item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aggregate {
    pub(crate) name: String,
    pub(crate) pk: Pattern,
    pub(crate) sk: Pattern,
    pub(crate) counters: Vec<FieldId>,
    pub(crate) sums: Vec<FieldId>,
    pub(crate) averages: Vec<Average>,
}

impl Aggregate {
    /// Its name, which its items also carry as their type ([`Table::type_attribute`]).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Fields that count items (+1 each).
    pub fn counters(&self) -> &[FieldId] {
        &self.counters
    }

    /// Fields that sum an attribute.
    pub fn sums(&self) -> &[FieldId] {
        &self.sums
    }

    /// Every stored counter and sum: all of them are written, even when zero.
    pub fn fields(&self) -> impl Iterator<Item = FieldId> + '_ {
        self.counters.iter().chain(&self.sums).copied()
    }

    /// Fields derived from the others when the item is written.
    pub fn averages(&self) -> &[Average] {
        &self.averages
    }

    /// Whether its items are one per day: a key parameter is a date.
    pub fn by_day(&self) -> bool {
        self.pk.captures().iter().chain(self.sk.captures()).any(|capture| capture.kind != CaptureType::Id)
    }

    /// The key parameters of one of its items, by name, in the templates' order: what the item
    /// is of (`courseId = c1`). `None` if `key` is not of this aggregate.
    pub fn parameters<'k>(&self, key: &'k AggregateKey) -> Option<Vec<(&str, &'k str)>> {
        let mut parameters = Vec::new();
        for (pattern, key) in [(&self.pk, key.pk.as_str()), (&self.sk, key.sk.as_str())] {
            let mut texts = Vec::new();
            if !pattern.split(key, true, |index, _, text| {
                texts.push((index, text));
                true
            }) {
                return None;
            }
            parameters.extend(texts.into_iter().map(|(index, text)| (pattern.captures()[index].name.as_str(), text)));
        }
        Some(parameters)
    }
}

/// `sum / count`, rounded half-even to `places`; absent (the attribute removed) when `count`
/// is not positive. The university's `gradeAverage` is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Average {
    pub(crate) name: String,
    pub(crate) sum: FieldId,
    pub(crate) count: FieldId,
    pub(crate) places: u32,
}

impl Average {
    /// The attribute name on the aggregate item.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The sum it divides: a sum of the same aggregate.
    pub fn sum(&self) -> FieldId {
        self.sum
    }

    /// The count it divides by: a counter of the same aggregate.
    pub fn count(&self) -> FieldId {
        self.count
    }

    /// Decimal places it is rounded to, 0 to 4.
    pub fn places(&self) -> u32 {
        self.places
    }

    /// The average of `sum` over `count`; `None` unless `count > 0`.
    pub fn value(&self, sum: &Number, count: &Number) -> Option<Number> {
        // [`Number::average`] rounds to 4 places. To p places: scale the count by 10^(4-p),
        // average to 4 places, scale back; both scalings are exact (an exponent, not a division).
        let shift = AVERAGE_SCALE - i64::from(self.places);
        if shift == 0 {
            return Number::average(sum, count);
        }
        let scaled: Number = format!("{count}E{shift}").parse().ok()?;
        let average = Number::average(sum, &scaled)?;
        format!("{average}E{shift}").parse().ok()
    }
}

/// An aggregate kind: indexes [`Rules::aggregates`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AggregateId(pub(crate) usize);

impl AggregateId {
    /// Its position in [`Rules::aggregates`].
    pub fn index(self) -> usize {
        self.0
    }
}

/// A field of an aggregate, by name across all aggregates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FieldId(pub(crate) usize);

impl FieldId {
    /// Its position among the rules' counters and sums, each name once across all aggregates.
    pub fn index(self) -> usize {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use bigdecimal::{BigDecimal, RoundingMode};
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn averages_round_half_even_to_any_places(sum in -10_000_000i64..10_000_000, scale in 0u32..6, count in 1i64..5_000, places in 0u32..=4) {
            let average = Average { name: "mean".into(), sum: FieldId(0), count: FieldId(1), places };
            let sum = BigDecimal::new(sum.into(), scale.into());
            // Far from a tie a wide division is exact enough; ties are exact decimals.
            let reference = (&sum / BigDecimal::from(count)).with_scale_round(places.into(), RoundingMode::HalfEven);
            let ours = average.value(&sum.to_string().parse().unwrap(), &Number::from(count));
            prop_assert_eq!(ours, Some(reference.to_string().parse().unwrap()));
        }
    }

    #[test]
    fn an_average_of_nothing_is_absent() {
        let average = Average { name: "mean".into(), sum: FieldId(0), count: FieldId(1), places: 2 };
        assert_eq!(average.value(&Number::from(5), &Number::zero()), None);
        assert_eq!(average.value(&Number::from(5), &Number::from(-1)), None);
    }
}
