//! What the generators produce: the application's writes to one table, as the stream records
//! DynamoDB would emit for them (`NEW_AND_OLD_IMAGES`), in write order.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;

use serde_dynamo::{AttributeValue, Item};

use super::dice::Dice;

/// An item's table key: partition key, sort key.
pub type Key = (String, String);

/// A stream sequence number: 21 to 40 decimal digits, compared as the university contract says
/// (as integers: without leading zeros, by length, then lexically), since 40 digits overflow
/// `u128`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seq(pub String);

impl Ord for Seq {
    fn cmp(&self, other: &Seq) -> Ordering {
        let (a, b) = (self.0.trim_start_matches('0'), other.0.trim_start_matches('0'));
        a.len().cmp(&b.len()).then_with(|| a.cmp(b))
    }
}

impl PartialOrd for Seq {
    fn partial_cmp(&self, other: &Seq) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Insert,
    Modify,
    Remove,
}

/// One stream record.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub seq: Seq,
    pub event: Event,
    /// A REMOVE by DynamoDB's TTL sweeper (`userIdentity` is the service's).
    pub ttl_deletion: bool,
    pub key: Key,
    pub old: Option<Item>,
    pub new: Option<Item>,
}

/// A generated history: the records, where its second epoch starts (the oracle may expire
/// every ledger between the two, as TTL does 48 h after an item's last write), and the items
/// the table holds at the end.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    pub records: Vec<Record>,
    pub second_epoch: usize,
    pub items: BTreeMap<Key, Item>,
}

impl Workload {
    pub fn epochs(&self) -> [&[Record]; 2] {
        let (first, second) = self.records.split_at(self.second_epoch);
        [first, second]
    }
}

/// The table as the application writes it: each write becomes a record, with the next
/// sequence number.
#[derive(Debug)]
pub struct Writer {
    pk: &'static str,
    sk: &'static str,
    /// Sequence numbers are `seq_prefix` then a zero-padded counter of `seq_digits` digits.
    seq_prefix: &'static str,
    seq_digits: usize,
    next_seq: u64,
    /// Gaps between sequence numbers: DynamoDB's grow, but not by one.
    gaps: Dice,
    items: BTreeMap<Key, Item>,
    records: Vec<Record>,
}

impl Writer {
    pub fn new(pk: &'static str, sk: &'static str, seq_prefix: &'static str, seq_digits: usize, seed: u64) -> Writer {
        Writer { pk, sk, seq_prefix, seq_digits, next_seq: 1, gaps: Dice::new(seed), items: BTreeMap::new(), records: Vec::new() }
    }

    fn seq(&mut self) -> Seq {
        self.next_seq += self.gaps.between(1, 5_000) as u64;
        Seq(format!("{}{:0width$}", self.seq_prefix, self.next_seq, width = self.seq_digits))
    }

    pub fn key_of(&self, item: &Item) -> Key {
        let text = |name: &str| match item.get(name) {
            Some(AttributeValue::S(text)) => text.clone(),
            other => panic!("a table item's key `{name}` is a string, not {other:?}"),
        };
        (text(self.pk), text(self.sk))
    }

    /// A PutItem: INSERT, or MODIFY of the item with the same key. Writing an identical image
    /// makes no record, as DynamoDB streams do.
    pub fn put(&mut self, item: Item) {
        let key = self.key_of(&item);
        let old = self.items.insert(key.clone(), item.clone());
        if old.as_ref() == Some(&item) {
            return;
        }
        let event = if old.is_some() { Event::Modify } else { Event::Insert };
        let seq = self.seq();
        self.records.push(Record { seq, event, ttl_deletion: false, key, old, new: Some(item) });
    }

    /// A DeleteItem by the application, or by the TTL sweeper; nothing if there is no item.
    pub fn delete(&mut self, key: &Key, ttl_deletion: bool) {
        let Some(old) = self.items.remove(key) else { return };
        let seq = self.seq();
        self.records.push(Record { seq, event: Event::Remove, ttl_deletion, key: key.clone(), old: Some(old), new: None });
    }

    /// Records written so far.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn finish(self, second_epoch: usize) -> Workload {
        let second_epoch = second_epoch.min(self.records.len());
        Workload { records: self.records, second_epoch, items: self.items }
    }
}

pub fn s(text: impl Into<String>) -> AttributeValue {
    AttributeValue::S(text.into())
}

pub fn n(number: impl ToString) -> AttributeValue {
    AttributeValue::N(number.to_string())
}

/// An item from name/value pairs.
pub fn item(pairs: Vec<(&str, AttributeValue)>) -> Item {
    Item::from(pairs.into_iter().map(|(name, value)| (name.to_owned(), value)).collect::<std::collections::HashMap<_, _>>())
}
