//! The rules digest ([`Rules::digest`]): 16 hex digits (the first 8 bytes) of a SHA-256 over a
//! canonical encoding of what the compiled rules mean. tally stores it on every ledger and
//! aggregate item it writes (`rulesDigest`); `tally verify` and `tally backfill` count the items
//! carrying another as written under other rules ([`Rules::wrote`]). 64 bits tell rule sets
//! apart; nothing relies on the digest being unforgeable.
//!
//! The encoding is built field by field from the compiled rules, never from their `Debug` text,
//! so a refactor of the compiled types cannot change a digest unnoticed: the encoder takes every
//! struct apart exhaustively (`let Table { pk, sk, .. } = table` naming every field), so a field
//! added to a compiled type does not compile until this module encodes it, or says why it is no
//! meaning. The pinned digests (`aggregates/tests/rules_digest.rs`) catch any change of value.
//!
//! # Encoding, version 1
//!
//! Values are written as:
//!
//! - *text*: its length in bytes, as a *number*, then its UTF-8 bytes;
//! - *number* (a byte count, a limit, `places`, digits): 8 bytes, little-endian;
//! - *flag*: one byte, `0` or `1`;
//! - *option*: one byte, `0` for none, or `1` followed by the value;
//! - *list*: its length, as a *number*, then each element;
//! - *record*: each field in the order below, as its name (a *text*) then its value;
//! - *choice* (an enum): the variant's name below (a *text*) then its fields, as a record's.
//!
//! The bytes are the text `tally rules digest` and the version (a *number*, 1), then the
//! record:
//!
//! - `table`: `pk`, `sk` (texts), `entity_type` (option of text), `bookkeeping_prefix`, `ttl`
//!   (texts), `reserved_prefixes` (list of texts). Not `indexes`: tally reads none.
//! - `limits`: `source_pk_bytes`, `source_sk_bytes` (numbers).
//! - `fields`: every counter and sum name, once, in the order first declared (list of texts).
//! - `aggregates`, in the file's order (list of records): `name`, `pk` and `sk` (patterns),
//!   `counters` and `sums` (lists of field names), `averages` (list of records: `name`, `sum`
//!   and `count` as field names, `places`).
//! - `entities`, in the file's order (list of records): `name`, `match` (choice `type` or
//!   `keys`), `pk` and `sk` (patterns), `attributes` (list of records: `name`, `type` (choice
//!   `id`, `string`, `number`, `date`, `datetime`, `any`), `required` (flag), `negative_reason`
//!   (option of text), `max_digits` (option of record: `integer`, `fraction`)), `groups` (list
//!   of records: `aggregate` by name, `params` (list of records: `parameter`, the aggregate's
//!   key parameter, and `value`, the entity's capture or attribute bound to it, by name),
//!   `adds` (list of records: `conditions` (list of choices: `present` with `value`, or
//!   `equals` with `value` and `text`), `field` by name, `amount` (choice `one`, or `attribute`
//!   with `value`))).
//!
//! A pattern is a list of choices: `literal` with `text`, or `capture` with `name` and `type`
//! (`id`, `date` or `datetime`). Its shape and literal byte count are derived from those.
//!
//! Aggregates, fields and an entity's values are named, never numbered, so the encoding says
//! what the rules mean rather than how the compiler laid them out. The file's name, comments,
//! layout and indexes are not meaning.
//!
//! # Changing it
//!
//! A new field of a compiled type that has a default is encoded only when it differs from the
//! default, so rules that do not use it keep their digest. Any other change of the encoding
//! changes every digest: bump the version and add each pinned digest's previous value to
//! [`LEGACY`], or every deployed table reads as written under other rules and needs
//! `tally backfill --rules-changed`.

use sha2::{Digest as _, Sha256};

use super::compiled::{Add, Aggregate, Amount, Attribute, Average, Condition, Digits, Entity, FieldId, Group, Limits, Rules, Table};
use super::model::AttributeType;
use super::pattern::{Capture, CaptureType, Pattern, Segment};

/// The version of the encoding.
const VERSION: u64 = 1;

/// What one legacy digest stands for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Alias {
    /// A digest tally wrote before this encoding.
    pub legacy: &'static str,
    /// The rules it was the digest of, where the repository keeps them (the tests load them).
    #[cfg_attr(not(test), allow(dead_code))]
    pub rules: &'static str,
    /// Those rules' digest in this encoding.
    pub digest: &'static str,
}

/// Digests of the rule sets in this repository as releases before the canonical encoding
/// computed them (a SHA-256 over the compiled types' `Debug` text), each with what it stands
/// for now. An item carrying one was written under those rules: [`Rules::wrote`] takes it for
/// their digest. An entry stays for as long as tables written by those releases may exist,
/// even after its rule set changes (it stands for the rules as they were then); rules files
/// outside the repository had no alias, and their tables need one `tally backfill
/// --rules-changed` after the upgrade.
pub(crate) const LEGACY: &[Alias] = &[
    Alias { legacy: "9e265a763e0180ce", rules: "aggregates/rules/university.toml", digest: "7fbc2f4f4a0ad62e" },
    Alias { legacy: "69c20683f3a1f186", rules: "examples/rules/learning.toml", digest: "9009622497585bf9" },
    Alias { legacy: "491df93578e975c6", rules: "examples/rules/marketplace.toml", digest: "f566ef41fa778ae8" },
    Alias { legacy: "82c4db0e0f3024bf", rules: "fixtures/rules/chat.toml", digest: "2c541149cbaf5a57" },
];

/// The digest a stored `rulesDigest` stands for in this encoding: a legacy one's
/// ([`LEGACY`]), else itself.
pub(crate) fn current(stored: &str) -> &str {
    LEGACY.iter().find(|alias| alias.legacy == stored).map_or(stored, |alias| alias.digest)
}

/// The digest of `rules` (their own `digest` field aside).
pub(crate) fn digest(rules: &Rules) -> String {
    let hash = Sha256::digest(encoding(rules));
    hash.iter().take(8).map(|byte| format!("{byte:02x}")).collect()
}

/// The bytes the digest hashes ([the module's documentation](self)).
pub(crate) fn encoding(rules: &Rules) -> Vec<u8> {
    // The name the rules were loaded under and their digest are not meaning.
    let Rules { source_name: _, digest: _, table, limits, entities, aggregates, fields } = rules;
    let mut out = Encoder { rules, bytes: Vec::new() };
    out.text("tally rules digest");
    out.number(VERSION);
    out.label("table");
    out.table(table);
    out.label("limits");
    let Limits { source_pk_bytes, source_sk_bytes } = *limits;
    out.label("source_pk_bytes");
    out.count(source_pk_bytes);
    out.label("source_sk_bytes");
    out.count(source_sk_bytes);
    out.label("fields");
    out.list(fields, |out, field| out.text(field));
    out.label("aggregates");
    out.list(aggregates, Encoder::aggregate);
    out.label("entities");
    out.list(entities, Encoder::entity);
    out.bytes
}

/// Writes the encoding of one rule set.
struct Encoder<'r> {
    /// What ids are resolved against.
    rules: &'r Rules,
    bytes: Vec<u8>,
}

impl<'r> Encoder<'r> {
    fn number(&mut self, value: u64) {
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }

    fn count(&mut self, value: usize) {
        // Lossless: usize is at most 64 bits on every target tally builds for.
        self.number(value as u64);
    }

    fn text(&mut self, text: &str) {
        self.count(text.len());
        self.bytes.extend_from_slice(text.as_bytes());
    }

    fn flag(&mut self, value: bool) {
        self.bytes.push(u8::from(value));
    }

    /// A record's field name, or a choice's variant.
    fn label(&mut self, name: &str) {
        self.text(name);
    }

    fn option<T>(&mut self, value: Option<T>, some: impl FnOnce(&mut Self, T)) {
        match value {
            None => self.bytes.push(0),
            Some(value) => {
                self.bytes.push(1);
                some(self, value);
            }
        }
    }

    fn list<T>(&mut self, items: &[T], mut each: impl FnMut(&mut Self, &T)) {
        self.count(items.len());
        for item in items {
            each(self, item);
        }
    }

    fn table(&mut self, table: &Table) {
        // tally reads no index: `tally init` creates them, and that is all.
        let Table { pk, sk, entity_type, bookkeeping_prefix, ttl, indexes: _, reserved_prefixes } = table;
        self.label("pk");
        self.text(pk);
        self.label("sk");
        self.text(sk);
        self.label("entity_type");
        self.option(entity_type.as_deref(), Encoder::text);
        self.label("bookkeeping_prefix");
        self.text(bookkeeping_prefix);
        self.label("ttl");
        self.text(ttl);
        self.label("reserved_prefixes");
        self.list(reserved_prefixes, |out, prefix| out.text(prefix));
    }

    fn pattern(&mut self, pattern: &Pattern) {
        // The shape and the literal bytes are derived from the segments and captures.
        let Pattern { segments, captures, shape: _, literal_bytes: _ } = pattern;
        self.list(segments, |out, segment| match segment {
            Segment::Literal(literal) => {
                out.label("literal");
                out.label("text");
                out.text(literal);
            }
            Segment::Capture(index) => {
                out.label("capture");
                match captures.get(*index) {
                    Some(Capture { name, kind }) => {
                        out.label("name");
                        out.text(name);
                        out.label("type");
                        out.label(match kind {
                            CaptureType::Id => "id",
                            CaptureType::Date => "date",
                            CaptureType::DateTime => "datetime",
                        });
                    }
                    // Only in rules that do not load, whose digest nobody reads.
                    None => out.count(*index),
                }
            }
        });
    }

    /// A field, by name.
    fn field(&mut self, id: &FieldId) {
        let rules = self.rules;
        self.text(rules.fields.get(id.0).map_or("", String::as_str));
    }

    fn aggregate(&mut self, aggregate: &Aggregate) {
        let Aggregate { name, pk, sk, counters, sums, averages } = aggregate;
        self.label("name");
        self.text(name);
        self.label("pk");
        self.pattern(pk);
        self.label("sk");
        self.pattern(sk);
        self.label("counters");
        self.list(counters, Encoder::field);
        self.label("sums");
        self.list(sums, Encoder::field);
        self.label("averages");
        self.list(averages, |out, average| {
            let Average { name, sum, count, places } = average;
            out.label("name");
            out.text(name);
            out.label("sum");
            out.field(sum);
            out.label("count");
            out.field(count);
            out.label("places");
            out.number(u64::from(*places));
        });
    }

    fn entity(&mut self, entity: &Entity) {
        let Entity { name, by_keys, pk, sk, attributes, groups } = entity;
        // Its values (slots), by name: pk's captures, sk's, then the attributes.
        let captures = pk.captures.iter().chain(&sk.captures).map(|capture| capture.name.as_str());
        let values: Vec<&str> = captures.chain(attributes.iter().map(|attribute| attribute.name.as_str())).collect();
        let value = |slot: usize| values.get(slot).copied().unwrap_or("");
        self.label("name");
        self.text(name);
        self.label("match");
        self.label(if *by_keys { "keys" } else { "type" });
        self.label("pk");
        self.pattern(pk);
        self.label("sk");
        self.pattern(sk);
        self.label("attributes");
        self.list(attributes, Encoder::attribute);
        self.label("groups");
        self.list(groups, |out, group| {
            let Group { aggregate, params, adds } = group;
            let rules = out.rules;
            let target = rules.aggregates.get(aggregate.0);
            out.label("aggregate");
            out.text(target.map_or("", |target| target.name.as_str()));
            // The aggregate's key parameters: pk's captures, then sk's.
            let parameters: Vec<&str> = target
                .map_or_else(Vec::new, |target| target.pk.captures.iter().chain(&target.sk.captures).map(|c| c.name.as_str()).collect());
            out.label("params");
            out.count(params.len());
            for (index, slot) in params.iter().enumerate() {
                out.label("parameter");
                out.text(parameters.get(index).copied().unwrap_or(""));
                out.label("value");
                out.text(value(*slot));
            }
            out.label("adds");
            out.list(adds, |out, add| {
                let Add { conditions, field, amount } = add;
                out.label("conditions");
                out.list(conditions, |out, condition| match condition {
                    Condition::Present(slot) => {
                        out.label("present");
                        out.label("value");
                        out.text(value(*slot));
                    }
                    Condition::Equals(slot, text) => {
                        out.label("equals");
                        out.label("value");
                        out.text(value(*slot));
                        out.label("text");
                        out.text(text);
                    }
                });
                out.label("field");
                out.field(field);
                out.label("amount");
                match amount {
                    Amount::One => out.label("one"),
                    Amount::Attribute(slot) => {
                        out.label("attribute");
                        out.label("value");
                        out.text(value(*slot));
                    }
                }
            });
        });
    }

    fn attribute(&mut self, attribute: &Attribute) {
        let Attribute { name, kind, required, negative_reason, max_digits } = attribute;
        self.label("name");
        self.text(name);
        self.label("type");
        self.label(match kind {
            AttributeType::Id => "id",
            AttributeType::String => "string",
            AttributeType::Number => "number",
            AttributeType::Date => "date",
            AttributeType::Datetime => "datetime",
            AttributeType::Any => "any",
        });
        self.label("required");
        self.flag(*required);
        self.label("negative_reason");
        self.option(negative_reason.as_deref(), Encoder::text);
        self.label("max_digits");
        self.option(max_digits.as_ref(), |out, digits| {
            let Digits { integer, fraction } = digits;
            out.label("integer");
            out.number(*integer);
            out.label("fraction");
            out.number(*fraction);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every part of the format: both match kinds, all attribute properties, both conditions,
    /// both amounts, an average, a date key parameter, limits, a reserved prefix and an index.
    const EVERYTHING: &str = r#"
[table]
pk = "pk"
sk = "sk"
entity_type = "type"
bookkeeping_prefix = "tally#"
ttl = "expires"
reserved_prefixes = ["internal#"]
indexes = [{ name = "byUser", pk = "userId" }]

[limits]
source_pk_bytes = 1000
source_sk_bytes = 500

[aggregates.user_stats]
pk = "user#{userId}"
sk = "day#{day:date}"
counters = ["orders"]
sums = ["total"]
averages.mean = { sum = "total", count = "orders", places = 2 }

[aggregates.totals]
pk = "totals"
sk = "all"
counters = ["orders", "paid"]

[entities.order]
pk = "user#{userId}"
sk = "order#{orderId}"
attributes.amount = { type = "number", non_negative = true, negative_reason = "negative_amount", max_digits = { integer = 10, fraction = 2 } }
attributes.at = { type = "datetime" }
attributes.status = { type = "string", optional = true }

[[entities.order.contributions]]
to = "user_stats"
key = { userId = "userId", day = "at" }
add = { orders = 1, total = "amount" }

[[entities.order.contributions]]
to = "totals"
when = { present = "status", equals = { status = "paid" } }
add = { orders = 1, paid = 1 }

[entities.event]
match = "keys"
pk = "event#{id}"
sk = "x"
"#;

    fn everything() -> Rules {
        Rules::from_toml(EVERYTHING, "everything.toml").unwrap_or_else(|errors| panic!("{errors}"))
    }

    fn parsed(text: &str) -> Pattern {
        Pattern::parse(text).unwrap()
    }

    /// Each change of meaning, one at a time, by the compiled field it changes. A field a
    /// compiled type gains must be encoded (the encoder does not compile until it names it) and
    /// then added here.
    #[test]
    fn every_field_of_the_compiled_rules_is_encoded() {
        type Change = (&'static str, fn(&mut Rules));
        let changes: Vec<Change> = vec![
            ("table.pk", |rules| rules.table.pk = "PK".into()),
            ("table.sk", |rules| rules.table.sk = "SK".into()),
            ("table.entity_type", |rules| rules.table.entity_type = None),
            ("table.bookkeeping_prefix", |rules| rules.table.bookkeeping_prefix = "_tally#".into()),
            ("table.ttl", |rules| rules.table.ttl = "ttl".into()),
            ("table.reserved_prefixes", |rules| rules.table.reserved_prefixes.push("more#".into())),
            ("limits.source_pk_bytes", |rules| rules.limits.source_pk_bytes -= 1),
            ("limits.source_sk_bytes", |rules| rules.limits.source_sk_bytes -= 1),
            ("fields", |rules| rules.fields.reverse()),
            ("aggregate.name", |rules| rules.aggregates[0].name = "user_totals".into()),
            ("aggregate.pk", |rules| rules.aggregates[0].pk = parsed("customer#{userId}")),
            ("aggregate.sk", |rules| rules.aggregates[0].sk = parsed("days#{day:date}")),
            ("aggregate.counters", |rules| rules.aggregates[1].counters.pop().map_or((), drop)),
            ("aggregate.sums", |rules| rules.aggregates[0].sums.clear()),
            ("average.name", |rules| rules.aggregates[0].averages[0].name = "avg".into()),
            ("average.sum", |rules| rules.aggregates[0].averages[0].sum = FieldId(0)),
            ("average.count", |rules| rules.aggregates[0].averages[0].count = FieldId(1)),
            ("average.places", |rules| rules.aggregates[0].averages[0].places = 3),
            ("aggregates' order", |rules| rules.aggregates.reverse()),
            ("entity.name", |rules| rules.entities[0].name = "purchase".into()),
            ("entity.by_keys", |rules| rules.entities[0].by_keys = true),
            ("entity.pk", |rules| rules.entities[0].pk = parsed("customer#{userId}")),
            ("entity.sk", |rules| rules.entities[0].sk = parsed("order#{orderId}#")),
            ("pattern literal", |rules| rules.entities[0].sk.segments[0] = Segment::Literal("orders#".into())),
            ("capture name", |rules| rules.entities[1].pk.captures[0].name = "eventId".into()),
            ("capture type", |rules| rules.entities[1].pk.captures[0].kind = CaptureType::Date),
            ("entities' order", |rules| rules.entities.reverse()),
            ("attribute.name", |rules| rules.entities[0].attributes[2].name = "state".into()),
            ("attribute.kind", |rules| rules.entities[0].attributes[2].kind = AttributeType::Id),
            ("attribute.required", |rules| rules.entities[0].attributes[2].required = true),
            ("attribute.negative_reason", |rules| rules.entities[0].attributes[0].negative_reason = Some("below_zero".into())),
            ("attribute.max_digits", |rules| rules.entities[0].attributes[0].max_digits = None),
            ("digits.integer", |rules| rules.entities[0].attributes[0].max_digits.as_mut().unwrap().integer = 9),
            ("digits.fraction", |rules| rules.entities[0].attributes[0].max_digits.as_mut().unwrap().fraction = 3),
            ("attributes' order", |rules| rules.entities[0].attributes.swap(1, 2)),
            ("group.aggregate", |rules| rules.entities[0].groups[0].aggregate = super::super::AggregateId(1)),
            ("group.params", |rules| rules.entities[0].groups[0].params[0] = 1),
            ("group.adds", |rules| rules.entities[0].groups[0].adds.clear()),
            ("add.conditions", |rules| rules.entities[0].groups[1].adds[0].conditions.clear()),
            ("condition present", |rules| rules.entities[0].groups[1].adds[0].conditions[0] = Condition::Present(2)),
            ("condition equals", |rules| rules.entities[0].groups[1].adds[0].conditions[1] = Condition::Equals(3, "due".into())),
            ("add.field", |rules| rules.entities[0].groups[1].adds[0].field = FieldId(2)),
            ("add.amount", |rules| rules.entities[0].groups[0].adds[1].amount = Amount::One),
            ("amount's attribute", |rules| rules.entities[0].groups[0].adds[1].amount = Amount::Attribute(3)),
            ("groups' order", |rules| rules.entities[0].groups.reverse()),
        ];
        let rules = everything();
        assert_eq!(rules.digest, digest(&rules));
        let mut seen = vec![rules.digest.clone()];
        for (what, change) in changes {
            let mut changed = rules.clone();
            change(&mut changed);
            assert_ne!(changed, rules, "{what}: the change changes nothing");
            let digest = digest(&changed);
            assert!(!seen.contains(&digest), "{what}: {digest} is another rules' digest, or unchanged");
            seen.push(digest);
        }
    }

    #[test]
    fn the_name_indexes_and_derived_parts_are_not_meaning() {
        let rules = everything();
        let mut changed = rules.clone();
        changed.source_name = "elsewhere.toml".into();
        changed.digest = "0123456789abcdef".into();
        changed.table.indexes.clear();
        changed.entities[0].sk.shape = "shown otherwise".into();
        changed.entities[0].sk.literal_bytes += 1;
        assert_eq!(digest(&changed), rules.digest);
    }

    #[test]
    fn texts_are_length_prefixed() {
        let mut rules = everything();
        (rules.table.pk, rules.table.sk) = ("ab".into(), "c".into());
        let mut other = rules.clone();
        (other.table.pk, other.table.sk) = ("a".into(), "bc".into());
        assert_ne!(digest(&rules), digest(&other));
        assert!(encoding(&rules).starts_with(b"\x12\0\0\0\0\0\0\0tally rules digest\x01\0\0\0\0\0\0\0"));
    }

    /// Each rule set of the repository whose legacy digest has an alias: loaded, it has the
    /// digest the alias stands for. When one of them changes meaning its alias stays (it stands
    /// for the rules as releases before the encoding wrote them) and its entry leaves this check.
    #[test]
    fn legacy_digests_stand_for_the_rules_they_were_computed_from() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        for alias in LEGACY {
            let text = std::fs::read_to_string(root.join(alias.rules)).unwrap();
            let rules = Rules::from_toml(&text, alias.rules).unwrap_or_else(|errors| panic!("{errors}"));
            assert_eq!(rules.digest(), alias.digest, "{}", alias.rules);
            assert!(rules.wrote(Some(alias.legacy)), "{}", alias.rules);
            assert_eq!(current(alias.legacy), alias.digest);
        }
    }

    #[test]
    fn an_item_with_the_legacy_university_digest_was_written_under_the_university_rules() {
        let university = Rules::university();
        assert!(university.wrote(Some("9e265a763e0180ce")), "written by a release before the canonical encoding");
        assert!(university.wrote(Some(university.digest())));
        assert!(university.wrote(None), "written before digests were stored");
        assert!(!university.wrote(Some("0123456789abcdef")));
        let other = everything();
        assert!(!other.wrote(Some("9e265a763e0180ce")), "the university's, not these");
        assert!(!other.wrote(None), "the university's, not these");
        assert!(other.wrote(Some(other.digest())));
    }
}
