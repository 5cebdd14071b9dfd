//! The rules file as serde reads it: every name and value with its place in the file, nothing
//! resolved or checked yet ([`super::compile`] does both).
//!
//! Tables whose order matters (an entity's attributes: the first failing one is the rejection
//! reason) are read as [`Ordered`] lists, in the file's order.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

/// A name or text as written, with where it is written.
pub(crate) type Text = Spanned<String>;

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RulesFile {
    pub table: TableDecl,
    #[serde(default)]
    pub limits: LimitsDecl,
    #[serde(default)]
    pub aggregates: Ordered<AggregateDecl>,
    #[serde(default)]
    pub entities: Ordered<EntityDecl>,
}

/// `[table]`: how the table names things.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TableDecl {
    pub pk: Text,
    pub sk: Text,
    pub entity_type: Option<Text>,
    pub bookkeeping_prefix: Text,
    pub ttl: Option<Text>,
    #[serde(default)]
    pub indexes: Vec<IndexDecl>,
    /// Partition-key prefixes the application never writes: aggregates may live there.
    #[serde(default)]
    pub reserved_prefixes: Vec<Text>,
}

/// `indexes = [{ name = "...", pk = "...", sk = "..." }]`: a global secondary index `tally init`
/// creates. tally reads none.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct IndexDecl {
    pub name: Text,
    pub pk: Text,
    pub sk: Option<Text>,
}

/// `[limits]`: the longest own keys a source item may have, in UTF-8 bytes.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LimitsDecl {
    pub source_pk_bytes: Option<Spanned<usize>>,
    pub source_sk_bytes: Option<Spanned<usize>>,
}

/// `[aggregates.NAME]`: an aggregate item, its `entityType` being `NAME`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AggregateDecl {
    pub pk: Text,
    pub sk: Text,
    #[serde(default)]
    pub counters: Vec<Text>,
    #[serde(default)]
    pub sums: Vec<Text>,
    #[serde(default)]
    pub averages: Ordered<AverageDecl>,
}

/// `averages.NAME = { sum = ..., count = ..., places = ... }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AverageDecl {
    pub sum: Text,
    pub count: Text,
    pub places: Spanned<u32>,
}

/// `[entities.NAME]`: a kind of source item.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EntityDecl {
    #[serde(rename = "match")]
    pub matched_by: Option<Spanned<MatchBy>>,
    pub pk: Text,
    pub sk: Text,
    #[serde(default)]
    pub attributes: Ordered<AttributeDecl>,
    #[serde(default)]
    pub contributions: Vec<ContributionDecl>,
}

/// How an image is recognised as an entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum MatchBy {
    /// Its entity-type attribute is the entity's name.
    Type,
    /// Its keys have the entity's patterns.
    Keys,
}

/// The DynamoDB type and meaning of a source attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum AttributeType {
    /// A string that must not be empty.
    Id,
    /// Any string.
    String,
    /// A DynamoDB number, exact.
    Number,
    /// A string `YYYY-MM-DD`, exactly.
    Date,
    /// A string in ISO 8601's extended form, a date or a date-time (UTC without an offset).
    Datetime,
    /// Any type: only its presence is read.
    Any,
}

impl AttributeType {
    pub(crate) fn name(self) -> &'static str {
        match self {
            AttributeType::Id => "id",
            AttributeType::String => "string",
            AttributeType::Number => "number",
            AttributeType::Date => "date",
            AttributeType::Datetime => "datetime",
            AttributeType::Any => "any",
        }
    }
}

/// `attributes.NAME = { type = ..., ... }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AttributeDecl {
    #[serde(rename = "type")]
    pub kind: Spanned<AttributeType>,
    #[serde(default)]
    pub optional: bool,
    pub non_negative: Option<Spanned<bool>>,
    pub negative_reason: Option<Text>,
    pub max_digits: Option<Spanned<DigitsDecl>>,
}

/// `max_digits = { integer = 20, fraction = 8 }`: the university contract's `out_of_range` bounds.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DigitsDecl {
    pub integer: u64,
    pub fraction: u64,
}

/// One `[[entities.NAME.contributions]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ContributionDecl {
    pub to: Spanned<Targets>,
    #[serde(default)]
    pub key: Ordered<Text>,
    #[serde(default)]
    pub when: WhenDecl,
    pub add: Spanned<Ordered<Spanned<AmountDecl>>>,
}

/// `to = "stats"` or `to = ["stats", "assignment_stats"]`.
#[derive(Debug)]
pub(crate) enum Targets {
    /// One name; its place is the [`Spanned`] around the whole value.
    One(String),
    Many(Vec<Text>),
}

impl<'de> Deserialize<'de> for Targets {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TargetsVisitor;
        impl<'de> Visitor<'de> for TargetsVisitor {
            type Value = Targets;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an aggregate's name or a list of them")
            }
            fn visit_str<E: de::Error>(self, name: &str) -> Result<Targets, E> {
                Ok(Targets::One(name.to_owned()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Targets, A::Error> {
                let mut names = Vec::new();
                while let Some(name) = seq.next_element()? {
                    names.push(name);
                }
                Ok(Targets::Many(names))
            }
        }
        deserializer.deserialize_any(TargetsVisitor)
    }
}

/// `when = { present = "grade", equals = { status = "paid" } }`: all must hold.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WhenDecl {
    pub present: Option<Text>,
    #[serde(default)]
    pub equals: Ordered<Text>,
}

/// What `add` adds to a field: `1`, or the name of a number attribute.
#[derive(Debug)]
pub(crate) enum AmountDecl {
    Integer(i64),
    Attribute(String),
}

impl<'de> Deserialize<'de> for AmountDecl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AmountVisitor;
        impl Visitor<'_> for AmountVisitor {
            type Value = AmountDecl;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("1 or the name of a number attribute")
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<AmountDecl, E> {
                Ok(AmountDecl::Integer(value))
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<AmountDecl, E> {
                i64::try_from(value).map(AmountDecl::Integer).map_err(|_| E::invalid_value(de::Unexpected::Unsigned(value), &self))
            }
            fn visit_str<E: de::Error>(self, name: &str) -> Result<AmountDecl, E> {
                Ok(AmountDecl::Attribute(name.to_owned()))
            }
        }
        deserializer.deserialize_any(AmountVisitor)
    }
}

/// A TOML table read as a list, in the file's order, each key with its place.
#[derive(Debug)]
pub(crate) struct Ordered<V>(pub Vec<(Text, V)>);

impl<V> Default for Ordered<V> {
    fn default() -> Self {
        Ordered(Vec::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Ordered<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OrderedVisitor<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for OrderedVisitor<V> {
            type Value = Ordered<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ordered<V>, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Ordered(entries))
            }
        }
        deserializer.deserialize_map(OrderedVisitor(PhantomData))
    }
}
