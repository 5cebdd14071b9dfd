//! The items tally writes, to and from DynamoDB attributes.
//!
//! Aggregate items carry the fields the rules give them (the university's: docs/university.md)
//! plus `version`, the counter their optimistic writes are conditioned on. Ledger items (`pk` =
//! `tally#ledger#{source pk}`, `sk` = source sk) hold the last sequence number applied for one
//! source item and the contribution the aggregates hold for it; they expire by TTL after the
//! stream's 24 h retention.
//!
//! Names come from the rules: the key attributes, the TTL attribute, the bookkeeping prefix,
//! each aggregate's fields and averages, and the attribute tally's items carry their type in.

use aggregates::keys::UPDATED_AT;
use aggregates::{AggregateKey, AggregateValues, Deltas, Number, Rules};
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, SecondsFormat, Utc};

use crate::items::ItemKey;
use crate::items::{AggregateWrite, Assumption, Ledger, LedgerWrite, StoredAggregate};
use crate::registry::{self, Bookkeeping, LEDGER};
use crate::sequence::SequenceNumber;
use crate::store::error::{Current, SdkItem, StoreError};
use crate::store::Commit;
use std::sync::Arc;

use registry::attributes::{
    ASSUMED_BASELINE, ASSUMED_FROM, BACKFILL_RUN, CONTRIBUTION, FIELDS, RULES_DIGEST, SEQUENCE_NUMBER, VERSION, WRITTEN_BY,
};
use registry::LEDGER_RETENTION;

/// Who wrote a ledger: backfill's writes must not look like stream activity to the next backfill,
/// and a segmented run's workers must see which ledgers another worker of the run has reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writer<'a> {
    /// The engine, applying the stream's records.
    Stream,
    /// A backfill.
    Backfill {
        /// The segmented run it belongs to; `None` for a whole-table backfill.
        run: Option<&'a str>,
    },
}

impl Writer<'_> {
    /// The writer as a ledger's `writtenBy` records it: `stream` or `backfill`.
    pub fn as_str(self) -> &'static str {
        match self {
            Writer::Stream => "stream",
            Writer::Backfill { .. } => "backfill",
        }
    }
}

/// A write that must find the item as it was read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ConditionalPut {
    pub key: ItemKey,
    pub item: SdkItem,
    pub expect: Expect,
}

/// What a put requires of the item it replaces.
///
/// # Rules cannot hurt the table
/// tally creates an item only where none exists, and replaces only an item that carries tally's
/// own type for it in the rules' type attribute: an aggregate's name, or a bookkeeping kind's
/// ([`Bookkeeping::entity_type`]). A rules file whose key template gives an application item's
/// key then fails that item's condition instead of overwriting it. Only bookkeeping under the
/// bookkeeping prefix, which no source item may use, is written whatever is there.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expect {
    /// Whatever is there: bookkeeping under the bookkeeping prefix, rewritten whole.
    Anything,
    /// The item does not exist.
    Absent,
    /// The item exists and is tally's: its type attribute is `entity_type`, and its `version` is
    /// `version`, or it has none (`None`: written before tally versioned its items).
    Owned { entity_type: String, version: Option<u64> },
}

/// The condition for an item of type `entity_type` read at `version` (`None`: absent; 0: present
/// without a version).
fn expect_owned(entity_type: &str, version: Option<u64>) -> Expect {
    match version {
        None => Expect::Absent,
        Some(0) => Expect::Owned { entity_type: entity_type.to_owned(), version: None },
        Some(version) => Expect::Owned { entity_type: entity_type.to_owned(), version: Some(version) },
    }
}

fn decode_version(item: &SdkItem) -> Result<u64, String> {
    match item.get(VERSION) {
        None => Ok(0),
        Some(AttributeValue::N(text)) => text.parse().map_err(|_| format!("`{VERSION}` is not a whole number")),
        Some(_) => Err(format!("`{VERSION}` is not a number")),
    }
}

/// How tally's items look as DynamoDB attributes in a table with these rules.
#[derive(Debug, Clone)]
pub(crate) struct Codec {
    rules: Arc<Rules>,
    /// [`LEDGER`]'s partition-key prefix in this table: `tally#ledger#`.
    ledger_prefix: String,
}

impl Codec {
    pub(crate) fn new(rules: Arc<Rules>) -> Self {
        let ledger_prefix = LEDGER.pk_prefix(rules.table());
        Codec { rules, ledger_prefix }
    }

    pub(crate) fn rules(&self) -> &Rules {
        &self.rules
    }

    /// The key of the ledger of the source item `item`: [`registry::ledger_key`], with the
    /// prefix worked out once.
    pub(crate) fn ledger_key(&self, item: &ItemKey) -> ItemKey {
        ItemKey { pk: format!("{}{}", self.ledger_prefix, item.pk), sk: item.sk.clone() }
    }

    /// The source item a ledger key belongs to.
    pub(crate) fn source_of_ledger(&self, ledger: &ItemKey) -> Option<ItemKey> {
        ledger.pk.strip_prefix(self.ledger_prefix.as_str()).map(|pk| ItemKey { pk: pk.to_owned(), sk: ledger.sk.clone() })
    }

    /// The attributes every bookkeeping item of `kind` at `key` carries: its keys, its type and
    /// when it was written.
    pub(crate) fn bookkeeping_item(&self, kind: Bookkeeping, key: &ItemKey, now: DateTime<Utc>) -> SdkItem {
        let table = self.rules.table();
        [
            (table.pk().to_owned(), s(&key.pk)),
            (table.sk().to_owned(), s(&key.sk)),
            (table.type_attribute().to_owned(), s(kind.entity_type)),
            (UPDATED_AT.to_owned(), timestamp(now)),
        ]
        .into()
    }

    /// An item's table key, if both its key attributes are strings.
    pub(crate) fn item_key(&self, item: &SdkItem) -> Option<ItemKey> {
        let table = self.rules.table();
        Some(ItemKey { pk: text(item, table.pk())?.to_owned(), sk: text(item, table.sk())?.to_owned() })
    }

    /// The puts of one commit, ledgers first.
    pub(crate) fn encode_commit(&self, commit: Commit<'_>, now: DateTime<Utc>) -> Vec<ConditionalPut> {
        let ledgers = commit.ledgers.iter().map(|write| self.encode_ledger(write, commit.writer, now));
        ledgers.chain(commit.aggregates.iter().map(|write| self.encode_aggregate(write, now))).collect()
    }

    /// The state of a ledger or an aggregate as a failed condition returned it (`None`: absent).
    /// An item there that is not tally's is [`StoreError::NotOwned`]: the condition failed
    /// because tally does not replace it, and no re-plan can change that.
    pub(crate) fn current(&self, key: &ItemKey, item: Option<&SdkItem>) -> Result<Current, StoreError> {
        if let Some(source) = self.source_of_ledger(key) {
            let ledger = item.map(|item| self.read_ledger(key, item)).transpose()?;
            Ok(Current::Ledger { source, ledger })
        } else if let Some(aggregate) = self.rules.parse_key(&key.pk, &key.sk) {
            let stored = item.map(|item| self.read_aggregate(&aggregate, item)).transpose()?;
            Ok(Current::Aggregate { key: aggregate, stored })
        } else {
            Err(StoreError::Corrupt {
                key: key.clone(),
                problem: "a commit wrote an item that is neither a ledger nor an aggregate".into(),
            })
        }
    }

    pub(crate) fn encode_ledger(&self, write: &LedgerWrite, writer: Writer<'_>, now: DateTime<Utc>) -> ConditionalPut {
        let table = self.rules.table();
        let key = self.ledger_key(&write.item);
        let mut item = self.bookkeeping_item(LEDGER, &key, now);
        item.extend([
            (SEQUENCE_NUMBER.to_owned(), s(write.ledger.sequence.as_str())),
            (VERSION.to_owned(), n(write.ledger.version)),
            (CONTRIBUTION.to_owned(), self.encode_deltas(&write.ledger.contribution)),
            (table.ttl().to_owned(), n((now + LEDGER_RETENTION).timestamp())),
            (WRITTEN_BY.to_owned(), s(writer.as_str())),
            (RULES_DIGEST.to_owned(), s(self.rules.digest())),
        ]);
        if let Writer::Backfill { run: Some(run) } = writer {
            item.insert(BACKFILL_RUN.to_owned(), s(run));
        }
        if let Some(assumed) = &write.ledger.assumed {
            item.insert(ASSUMED_FROM.to_owned(), s(assumed.from.as_str()));
            item.insert(ASSUMED_BASELINE.to_owned(), self.encode_deltas(&assumed.baseline));
        }
        ConditionalPut { key, item, expect: expect_owned(LEDGER.entity_type, write.expected_version) }
    }

    /// A contribution as a list of `{pk, sk, fields}`: the aggregate's keys under the table's key
    /// names, the amounts by field name.
    fn encode_deltas(&self, deltas: &Deltas) -> AttributeValue {
        let table = self.rules.table();
        AttributeValue::L(
            deltas
                .keys()
                .map(|aggregate| {
                    let fields =
                        deltas.fields(aggregate).map(|(field, amount)| (self.rules.field_name(field).to_owned(), n(amount))).collect();
                    AttributeValue::M(
                        [
                            (table.pk().to_owned(), s(&aggregate.pk)),
                            (table.sk().to_owned(), s(&aggregate.sk)),
                            (FIELDS.to_owned(), AttributeValue::M(fields)),
                        ]
                        .into(),
                    )
                })
                .collect(),
        )
    }

    /// A ledger found where the engine keeps one: [`StoreError::NotOwned`] unless the item carries
    /// the ledger's type, so that the engine never plans from, nor replaces, an item not its own.
    pub(crate) fn read_ledger(&self, key: &ItemKey, item: &SdkItem) -> Result<Ledger, StoreError> {
        self.check_owned(key, item, LEDGER.entity_type)?;
        self.decode_ledger(key, item)
    }

    /// An aggregate found at its key, as [`Codec::read_ledger`] reads a ledger: only tally's own.
    pub(crate) fn read_aggregate(&self, key: &AggregateKey, item: &SdkItem) -> Result<StoredAggregate, StoreError> {
        let entity_type = self.rules.aggregate(key.kind).name();
        self.check_owned(&ItemKey::from(key), item, entity_type)?;
        self.decode_aggregate(key, item)
    }

    /// Whether `item`, found at `key`, carries `entity_type` in the rules' type attribute, as
    /// every item tally writes does.
    fn check_owned(&self, key: &ItemKey, item: &SdkItem, entity_type: &str) -> Result<(), StoreError> {
        let type_attribute = self.rules.table().type_attribute();
        if text(item, type_attribute) == Some(entity_type) {
            Ok(())
        } else {
            Err(StoreError::NotOwned { key: key.clone(), entity_type: entity_type.to_owned(), type_attribute: type_attribute.to_owned() })
        }
    }

    /// Decodes a ledger whatever its type: for scans, which tell items apart by their keys.
    pub(crate) fn decode_ledger(&self, key: &ItemKey, item: &SdkItem) -> Result<Ledger, StoreError> {
        self.decode_ledger_reading(key, item, true)
    }

    /// A ledger written under other rules, whose contribution names aggregates or fields these
    /// rules do not have: its version and position only, holding nothing these rules can say.
    /// Backfill rewrites such a ledger whole; the engine never reads one this way.
    pub(crate) fn decode_foreign_ledger(&self, key: &ItemKey, item: &SdkItem) -> Result<Ledger, StoreError> {
        self.decode_ledger_reading(key, item, false)
    }

    fn decode_ledger_reading(&self, key: &ItemKey, item: &SdkItem, contributions: bool) -> Result<Ledger, StoreError> {
        let corrupt = |problem: String| StoreError::Corrupt { key: key.clone(), problem };
        let sequence_at = |name: &str| match item.get(name) {
            Some(AttributeValue::S(text)) => {
                SequenceNumber::parse(text).map(Some).ok_or_else(|| corrupt(format!("`{name}` is not a sequence number")))
            }
            None => Ok(None),
            Some(_) => Err(corrupt(format!("`{name}` is not a string"))),
        };
        let sequence = sequence_at(SEQUENCE_NUMBER)?.ok_or_else(|| corrupt(format!("`{SEQUENCE_NUMBER}` is missing")))?;
        if !contributions {
            return Ok(Ledger { version: decode_version(item).map_err(corrupt)?, sequence, contribution: Deltas::new(), assumed: None });
        }
        let contribution = self.decode_deltas(item.get(CONTRIBUTION), CONTRIBUTION).map_err(corrupt)?;
        let assumed = match sequence_at(ASSUMED_FROM)? {
            Some(from) => {
                Some(Assumption { from, baseline: self.decode_deltas(item.get(ASSUMED_BASELINE), ASSUMED_BASELINE).map_err(corrupt)? })
            }
            None => None,
        };
        Ok(Ledger { version: decode_version(item).map_err(corrupt)?, sequence, contribution, assumed })
    }

    /// A ledger's contribution back. An aggregate or a field the rules do not have is an error:
    /// a ledger written under other rules (run `tally backfill` after a rules change).
    fn decode_deltas(&self, value: Option<&AttributeValue>, name: &str) -> Result<Deltas, String> {
        let table = self.rules.table();
        let Some(AttributeValue::L(entries)) = value else { return Err(format!("`{name}` is missing or not a list")) };
        let mut deltas = Deltas::new();
        for entry in entries {
            let AttributeValue::M(entry) = entry else { return Err(format!("a `{name}` entry is not a map")) };
            let text = |field: &str| match entry.get(field) {
                Some(AttributeValue::S(value)) => Ok(value.as_str()),
                _ => Err(format!("a `{name}` entry has no string `{field}`")),
            };
            let aggregate =
                self.rules.parse_key(text(table.pk())?, text(table.sk())?).ok_or_else(|| format!("a `{name}` entry names no aggregate"))?;
            let Some(AttributeValue::M(fields)) = entry.get(FIELDS) else { return Err(format!("a `{name}` entry has no `{FIELDS}` map")) };
            for (field_name, value) in fields {
                let field = self.rules.field(field_name).ok_or_else(|| format!("unknown field `{field_name}`"))?;
                deltas.add(aggregate.clone(), field, &number(value).map_err(|problem| format!("`{field_name}`: {problem}"))?);
            }
        }
        Ok(deltas)
    }

    pub(crate) fn encode_aggregate(&self, write: &AggregateWrite, now: DateTime<Utc>) -> ConditionalPut {
        let table = self.rules.table();
        let aggregate = self.rules.aggregate(write.key.kind);
        let key = ItemKey::from(&write.key);
        let values = &write.stored.values;
        let mut item: SdkItem = [
            (table.pk().to_owned(), s(&key.pk)),
            (table.sk().to_owned(), s(&key.sk)),
            (table.type_attribute().to_owned(), s(aggregate.name())),
            (UPDATED_AT.to_owned(), timestamp(now)),
            (VERSION.to_owned(), n(write.stored.version)),
            (RULES_DIGEST.to_owned(), s(self.rules.digest())),
        ]
        .into();
        for field in aggregate.fields() {
            item.insert(self.rules.field_name(field).to_owned(), n(values.get(field)));
        }
        for (average, value) in values.averages(&self.rules) {
            if let Some(value) = value {
                item.insert(average.name().to_owned(), n(value));
            }
        }
        ConditionalPut { key, item, expect: expect_owned(aggregate.name(), write.expected_version) }
    }

    /// Reads an aggregate item back, whatever its type: every field of its kind (missing ones as
    /// zero) and its version.
    pub(crate) fn decode_aggregate(&self, key: &AggregateKey, item: &SdkItem) -> Result<StoredAggregate, StoreError> {
        let corrupt = |problem: String| StoreError::Corrupt { key: ItemKey::from(key), problem };
        let mut values = AggregateValues::zero(&self.rules, key.kind);
        for field in self.rules.aggregate(key.kind).fields() {
            let name = self.rules.field_name(field);
            if let Some(value) = item.get(name) {
                values.fields.insert(field, number(value).map_err(|problem| corrupt(format!("`{name}`: {problem}")))?);
            }
        }
        let version = decode_version(item).map_err(corrupt)?;
        Ok(StoredAggregate { values, version })
    }
}

/// A string attribute of an item, if it has one.
pub(crate) fn text<'a>(item: &'a SdkItem, name: &str) -> Option<&'a str> {
    match item.get(name) {
        Some(AttributeValue::S(value)) => Some(value),
        _ => None,
    }
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn timestamp(now: DateTime<Utc>) -> AttributeValue {
    s(now.to_rfc3339_opts(SecondsFormat::Millis, true))
}

fn number(value: &AttributeValue) -> Result<Number, String> {
    match value {
        AttributeValue::N(text) => text.parse().map_err(|err: aggregates::NumberError| err.to_string()),
        _ => Err("not a number".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codec() -> Codec {
        Codec::new(std::sync::Arc::new(Rules::university().clone()))
    }

    fn field(name: &str) -> aggregates::FieldId {
        Rules::university().field(name).unwrap()
    }

    #[test]
    fn ledger_round_trips() {
        let (codec, rules) = (codec(), Rules::university());
        let mut contribution = Deltas::new();
        contribution.add(rules.parse_key("course#c1", "stats").unwrap(), field("gradeSum"), &"91.5".parse().unwrap());
        contribution.add(rules.parse_key("stats#university", "day#2026-01-02").unwrap(), field("submissions"), &Number::one());
        let item = ItemKey { pk: "course#c1".into(), sk: "submission#a1#s1".into() };
        let assumed =
            Some(Assumption { from: SequenceNumber::parse("40").unwrap(), baseline: Deltas::between(&contribution, &Deltas::new()) });
        let write = LedgerWrite {
            item: item.clone(),
            expected_version: None,
            ledger: Ledger { version: 1, sequence: SequenceNumber::parse("42").unwrap(), contribution, assumed },
        };
        let put = codec.encode_ledger(&write, Writer::Stream, Utc::now());
        assert_eq!(put.key, ItemKey { pk: "tally#ledger#course#c1".into(), sk: "submission#a1#s1".into() });
        assert_eq!(put.expect, Expect::Absent);
        assert_eq!(codec.source_of_ledger(&put.key), Some(item));
        assert_eq!(codec.decode_ledger(&put.key, &put.item).unwrap(), write.ledger);
    }

    #[test]
    fn aggregate_round_trips_with_average() {
        let (codec, rules) = (codec(), Rules::university());
        let key = rules.parse_key("course#c1", "stats#assignment#a1").unwrap();
        let mut values = AggregateValues::zero(rules, key.kind);
        values.fields.insert(field("gradedCount"), "3".parse().unwrap());
        values.fields.insert(field("gradeSum"), "10".parse().unwrap());
        let write = AggregateWrite { key: key.clone(), expected_version: Some(4), stored: StoredAggregate { values, version: 5 } };
        let put = codec.encode_aggregate(&write, Utc::now());
        assert_eq!(put.item.get("gradeAverage"), Some(&AttributeValue::N("3.3333".into())));
        assert_eq!(put.item.get("entityType"), Some(&AttributeValue::S("assignment_stats".into())));
        assert_eq!(put.expect, Expect::Owned { entity_type: "assignment_stats".into(), version: Some(4) });
        assert_eq!(codec.decode_aggregate(&key, &put.item).unwrap(), write.stored);
    }

    #[test]
    fn an_item_without_a_version_is_expected_without_one_but_with_tallys_type() {
        assert_eq!(expect_owned("stats", Some(0)), Expect::Owned { entity_type: "stats".into(), version: None });
        assert_eq!(expect_owned("stats", None), Expect::Absent);
    }

    #[test]
    fn only_an_item_of_tallys_own_type_is_read_as_tallys() {
        let (codec, rules) = (codec(), Rules::university());
        let key = rules.parse_key("course#c1", "stats").unwrap();
        let note: SdkItem = [
            ("pk".to_owned(), s("course#c1")),
            ("sk".to_owned(), s("stats")),
            ("entityType".to_owned(), s("note")),
            ("title".to_owned(), s("private")),
        ]
        .into();
        let err = codec.read_aggregate(&key, &note).unwrap_err();
        assert!(matches!(err, StoreError::NotOwned { ref entity_type, .. } if entity_type == "stats"), "{err:?}");
        assert_eq!(
            err.to_string(),
            "item pk=`course#c1` sk=`stats` is not tally's `stats`: its `entityType` is not `stats`, and tally neither reads nor \
             replaces an item it does not own"
        );
        let mut untyped = note.clone();
        untyped.remove("entityType");
        assert!(matches!(codec.read_aggregate(&key, &untyped), Err(StoreError::NotOwned { .. })));
        let ledger = ItemKey { pk: "tally#ledger#course#c1".into(), sk: "student#s1".into() };
        assert!(
            matches!(codec.read_ledger(&ledger, &note), Err(StoreError::NotOwned { ref entity_type, .. }) if entity_type == "tally_ledger")
        );
        let mut own = note;
        own.insert("entityType".into(), s("stats"));
        assert_eq!(codec.read_aggregate(&key, &own).unwrap().version, 0, "tally's, from before versions");
    }

    #[test]
    fn corrupt_items_are_named() {
        let key = ItemKey { pk: "tally#ledger#x".into(), sk: "y".into() };
        let err = codec().decode_ledger(&key, &SdkItem::new()).unwrap_err();
        assert_eq!(err.to_string(), "item pk=`tally#ledger#x` sk=`y` is corrupt: `sequenceNumber` is missing");
    }
}
