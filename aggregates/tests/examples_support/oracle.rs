//! tally's exactly-once bookkeeping, modelled purely (the DynamoDB-backed engine does not read
//! rules files yet), and the two things it is checked against: a recompute from the table, and
//! the naive processor that applies every delivery.
//!
//! The model is the engine's: per source item a ledger holding the last applied sequence
//! number and the contribution the aggregates hold for the item. A record whose sequence number
//! is not above its ledger's is already applied, and skipped; otherwise the aggregates get
//! `contribution(new image) - ledger's contribution` and the ledger the new contribution. An
//! item with no ledger (never seen, or its ledger expired by TTL) is measured from the record's
//! old image, taken on trust. A record neither of whose images adds anything (a profile, an
//! unknown item, an image invalid before and after) writes nothing, not even a ledger: a
//! redelivery of it can add nothing either. Records of tally's own items (aggregates, ledgers),
//! which the table streams like any other, are skipped; every write tally makes is streamed
//! back to it.

use std::collections::BTreeMap;

use aggregates::rules::{FieldId, RuleAssessment, Rules};
use aggregates::{AggregateKey, Deltas, KeyOwner, Number};
use serde_dynamo::{AttributeValue, Item};

use super::workload::{item, n, s, Event, Key, Record, Seq};

/// Every aggregate item's non-zero fields. A missing item, a missing field and a zero are alike,
/// as they are for readers.
pub type Totals = BTreeMap<AggregateKey, BTreeMap<FieldId, Number>>;

/// Adds `contribution` to `totals` (subtracts it, if `negate`).
pub fn add(totals: &mut Totals, contribution: &Deltas, negate: bool) {
    for (aggregate, field, amount) in contribution.iter() {
        let fields = totals.entry(aggregate.clone()).or_default();
        let value = fields.entry(field).or_insert_with(Number::zero);
        if negate {
            *value += &-amount;
        } else {
            *value += amount;
        }
        if value.is_zero() {
            fields.remove(&field);
        }
        if fields.is_empty() {
            totals.remove(aggregate);
        }
    }
}

/// What an image adds while it exists: nothing unless it is a valid source item.
pub fn contribution(rules: &Rules, image: Option<&Item>) -> Deltas {
    rules.assess(image).contribution().clone()
}

/// A record's images, assessed once.
#[derive(Debug, Clone)]
pub struct Assessed {
    pub old: Deltas,
    pub new: Deltas,
}

pub fn assess_all(rules: &Rules, records: &[Record]) -> Vec<Assessed> {
    records
        .iter()
        .map(|record| Assessed { old: contribution(rules, record.old.as_ref()), new: contribution(rules, record.new.as_ref()) })
        .collect()
}

fn text<'a>(image: &'a Item, name: &str) -> Option<&'a str> {
    match image.get(name) {
        Some(AttributeValue::S(text)) => Some(text),
        _ => None,
    }
}

/// A recompute (backfill) from a scan of the table: tally's own items are skipped by their
/// keys, every other item adds its contribution.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recount {
    pub totals: Totals,
    pub sources: u64,
    pub own: u64,
    pub unknown: u64,
    pub rejected: BTreeMap<String, u64>,
}

pub fn recompute<'a>(rules: &Rules, items: impl IntoIterator<Item = &'a Item>) -> Recount {
    let mut recount = Recount::default();
    for image in items {
        if let (Some(pk), Some(sk)) = (text(image, rules.table().pk()), text(image, rules.table().sk())) {
            if rules.owner(pk, sk) != KeyOwner::Application {
                recount.own += 1;
                continue;
            }
        }
        match rules.assess(Some(image)) {
            RuleAssessment::Source { contribution, .. } => {
                recount.sources += 1;
                add(&mut recount.totals, &contribution, false);
            }
            RuleAssessment::Rejected { violation, .. } => *recount.rejected.entry(violation.reason().to_owned()).or_default() += 1,
            RuleAssessment::Unknown | RuleAssessment::Absent => recount.unknown += 1,
        }
    }
    recount
}

/// The naive processor: every delivery applied, `contribution(new) - contribution(old)`.
pub fn naive(assessed: &[Assessed], deliveries: &[usize], totals: &mut Totals) {
    for &index in deliveries {
        add(totals, &assessed[index].old, true);
        add(totals, &assessed[index].new, false);
    }
}

/// A source item's ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ledger {
    pub seq: Seq,
    pub held: Deltas,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub applied: u64,
    pub already_applied: u64,
    /// Applied without a ledger, from the record's old image.
    pub trusted_old_image: u64,
    /// Records neither of whose images adds anything: nothing written.
    pub no_effect: u64,
    /// Records of tally's own items, skipped.
    pub own: u64,
    /// TTL deletions applied or of no effect (counted apart, the university contract says).
    pub ttl_deletions: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Applied,
    AlreadyApplied,
    NoEffect,
    Own,
}

/// The processor, with its bookkeeping.
#[derive(Debug)]
pub struct Tally<'r> {
    rules: &'r Rules,
    pub ledgers: BTreeMap<Key, Ledger>,
    pub totals: Totals,
    pub counts: Counts,
    /// Records of tally's own writes, which the stream carries back to it, not yet delivered.
    echoes: Vec<Record>,
    echo_seq: u64,
}

impl<'r> Tally<'r> {
    pub fn new(rules: &'r Rules) -> Tally<'r> {
        Tally { rules, ledgers: BTreeMap::new(), totals: Totals::new(), counts: Counts::default(), echoes: Vec::new(), echo_seq: 0 }
    }

    /// One delivery of `record`, whose images assess to `assessed`.
    pub fn deliver(&mut self, record: &Record, assessed: &Assessed) -> Class {
        let (pk, sk) = &record.key;
        if self.rules.owner(pk, sk) != KeyOwner::Application {
            self.counts.own += 1;
            return Class::Own;
        }
        if assessed.old.is_empty() && assessed.new.is_empty() {
            self.counts.no_effect += 1;
            self.counts.ttl_deletions += u64::from(record.ttl_deletion);
            return Class::NoEffect;
        }
        let held = match self.ledgers.get(&record.key) {
            Some(ledger) if record.seq <= ledger.seq => {
                self.counts.already_applied += 1;
                return Class::AlreadyApplied;
            }
            Some(ledger) => ledger.held.clone(),
            None => {
                if record.old.is_some() {
                    self.counts.trusted_old_image += 1;
                }
                assessed.old.clone()
            }
        };
        add(&mut self.totals, &held, true);
        add(&mut self.totals, &assessed.new, false);
        self.ledgers.insert(record.key.clone(), Ledger { seq: record.seq.clone(), held: assessed.new.clone() });
        self.counts.applied += 1;
        if record.ttl_deletion {
            self.counts.ttl_deletions += 1;
        }
        // What tally wrote (the ledger, and every aggregate item the change touched) comes back
        // on the stream. Whose an item is, is judged from its keys alone (a REMOVE has no new
        // image), so the echoes carry only their keys.
        let ledger_key = self.ledger_key(&record.key);
        self.echo(ledger_key);
        let mut touched: Vec<&AggregateKey> = held.keys().chain(assessed.new.keys()).collect();
        touched.sort();
        touched.dedup();
        for aggregate in touched {
            self.echo((aggregate.pk.clone(), aggregate.sk.clone()));
        }
        Class::Applied
    }

    /// Delivers the records of tally's own writes so far: each must be skipped.
    pub fn deliver_echoes(&mut self) -> usize {
        let echoes = std::mem::take(&mut self.echoes);
        let nothing = Assessed { old: Deltas::new(), new: Deltas::new() };
        for record in &echoes {
            let class = self.deliver(record, &nothing);
            assert_eq!(class, Class::Own, "tally's own write {:?} was taken for the application's", record.key);
        }
        echoes.len()
    }

    /// TTL deletes every ledger, 48 h after its last write: after the stream's 24 h retention,
    /// so no record measured by a deleted ledger can still arrive.
    pub fn expire_ledgers(&mut self) {
        self.ledgers.clear();
    }

    fn echo(&mut self, key: Key) {
        self.echo_seq += 1;
        let seq = Seq(format!("9{:039}", self.echo_seq));
        self.echoes.push(Record { seq, event: Event::Modify, ttl_deletion: false, key, old: None, new: None });
    }

    fn ledger_key(&self, (pk, sk): &Key) -> Key {
        (format!("{}ledger#{pk}", self.rules.table().bookkeeping_prefix()), sk.clone())
    }

    fn ledger_image(&self, key: &Key) -> Item {
        let ledger = &self.ledgers[key];
        let (pk, sk) = self.ledger_key(key);
        let table = self.rules.table();
        let mut image = item(vec![
            (table.pk(), s(pk)),
            (table.sk(), s(sk)),
            ("sequenceNumber", s(&ledger.seq.0)),
            ("parts", n(ledger.held.keys().count())),
            (table.ttl(), n(1_766_400_000)),
        ]);
        if let Some(entity_type) = table.entity_type() {
            image.insert(entity_type.to_owned(), s("tally_ledger"));
        }
        image
    }

    /// An aggregate item as tally writes it: its keys, its type (if the table has a type
    /// attribute), every field (zero included), its averages and `updatedAt`.
    pub fn aggregate_image(&self, key: &AggregateKey) -> Item {
        let table = self.rules.table();
        let aggregate = self.rules.aggregate(key.kind);
        let mut image = item(vec![(table.pk(), s(&key.pk)), (table.sk(), s(&key.sk)), ("updatedAt", s("2025-12-22T00:00:00Z"))]);
        if let Some(entity_type) = table.entity_type() {
            image.insert(entity_type.to_owned(), s(aggregate.name()));
        }
        let value = |field: FieldId| self.totals.get(key).and_then(|fields| fields.get(&field)).cloned().unwrap_or_default();
        for field in aggregate.fields() {
            image.insert(self.rules.field_name(field).to_owned(), n(value(field)));
        }
        for average in aggregate.averages() {
            if let Some(mean) = average.value(&value(average.sum()), &value(average.count())) {
                image.insert(average.name().to_owned(), n(mean));
            }
        }
        image
    }

    /// tally's items as the table holds them at the end: an aggregate item for every key ever
    /// written (zeros stay), and the ledgers.
    pub fn own_items(&self, written: &[AggregateKey]) -> Vec<Item> {
        let mut items: Vec<Item> = written.iter().map(|key| self.aggregate_image(key)).collect();
        items.extend(self.ledgers.keys().map(|key| self.ledger_image(key)));
        items
    }
}

/// Every aggregate item the records' images touch.
pub fn touched(assessed: &[Assessed]) -> Vec<AggregateKey> {
    let mut keys: Vec<AggregateKey> = assessed.iter().flat_map(|a| a.old.keys().chain(a.new.keys())).cloned().collect();
    keys.sort();
    keys.dedup();
    keys
}

/// `totals` as text, one `aggregate pk sk field amount` per line, for readable failures.
pub fn show(rules: &Rules, totals: &Totals) -> Vec<String> {
    totals
        .iter()
        .flat_map(|(key, fields)| {
            fields.iter().map(move |(field, amount)| {
                format!("{} {} {} {} {amount}", rules.aggregate(key.kind).name(), key.pk, key.sk, rules.field_name(*field))
            })
        })
        .collect()
}
