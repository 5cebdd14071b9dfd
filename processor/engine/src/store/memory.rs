//! [`Store`] in memory, for engine tests that need no server.
//!
//! Items are kept as the attributes the store's codec writes, and each commit's conditions are
//! evaluated on them as DynamoDB evaluates the ones [`DynamoTable`](super::DynamoTable) sends: all
//! hold or nothing is written, and each failed condition is reported with the item's current
//! state. What the network adds (throttling, an answer lost after the write landed, a refusal,
//! latency) is scripted with [`Fault`]s, so a test decides exactly when each happens.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use aggregates::{AggregateKey, Rules};
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::Utc;

use crate::items::ItemKey;
use crate::registry::attributes::VERSION;
use crate::store::codec::{Codec, ConditionalPut, Expect};
use crate::store::error::{Failure, SdkItem, StoreError};
use crate::store::{capacity, Commit, Found, Store, Usage};

/// What the next scripted call does instead of, or besides, its work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Fails with a transient error; nothing is written.
    Throttle,
    /// The commit lands, then its answer is lost: a transient error.
    LoseAnswer,
    /// Fails as DynamoDB does on a value or key it cannot store; nothing is written.
    Refuse,
    /// Fails for good (a missing table, denied permissions); nothing is written.
    Reject,
}

/// Which calls a scripted fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// [`Store::read`].
    Read,
    /// [`Store::commit`].
    Commit,
}

/// An in-memory table with DynamoDB's conditional-write semantics.
#[derive(Debug)]
pub struct MemoryTable {
    name: String,
    codec: Codec,
    state: Mutex<State>,
    latency: Duration,
}

#[derive(Debug, Default)]
struct State {
    items: HashMap<ItemKey, SdkItem>,
    faults: VecDeque<(Call, Fault)>,
    /// Keys every read and commit that touches them is refused for, as DynamoDB refuses a key
    /// or value it cannot store.
    refused: HashSet<ItemKey>,
    usage: Usage,
}

impl MemoryTable {
    /// An empty table `name`, tally's items in it encoded by `rules`.
    pub fn new(name: impl Into<String>, rules: Arc<Rules>) -> Self {
        MemoryTable { name: name.into(), codec: Codec::new(rules), state: Mutex::default(), latency: Duration::ZERO }
    }

    /// How tally's items look in this table: for the engine's own tests.
    #[cfg(test)]
    pub(crate) fn codec(&self) -> &Codec {
        &self.codec
    }

    /// Every call takes `latency` (of `tokio::time`, so a paused clock makes it free).
    pub fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    /// Queues `fault` for the next call of kind `call` that no earlier fault is queued for.
    pub fn inject(&self, call: Call, fault: Fault) {
        self.state().faults.push_back((call, fault));
    }

    /// Refuses, for good, every read and commit that touches `key`.
    pub fn refuse(&self, key: ItemKey) {
        self.state().refused.insert(key);
    }

    /// Faults queued and not yet met.
    pub fn pending_faults(&self) -> usize {
        self.state().faults.len()
    }

    /// A copy of every item, by key.
    pub fn items(&self) -> HashMap<ItemKey, SdkItem> {
        self.state().items.clone()
    }

    /// Writes `item` as another writer would, bypassing every condition.
    pub fn put_item(&self, key: ItemKey, item: SdkItem) {
        self.state().items.insert(key, item);
    }

    /// Deletes an item as TTL would.
    pub fn delete_item(&self, key: &ItemKey) -> Option<SdkItem> {
        self.state().items.remove(key)
    }

    /// The aggregates held, decoded; an item at an aggregate's key that is not tally's is none.
    pub fn aggregates(&self) -> Result<HashMap<AggregateKey, aggregates::AggregateValues>, StoreError> {
        let state = self.state();
        let mut found = HashMap::new();
        for (key, item) in &state.items {
            if let Some(aggregate) = self.codec.rules().parse_key(&key.pk, &key.sk) {
                match self.codec.read_aggregate(&aggregate, item) {
                    Ok(stored) => {
                        found.insert(aggregate, stored.values);
                    }
                    Err(StoreError::NotOwned { .. }) => {}
                    Err(err) => return Err(err),
                }
            }
        }
        Ok(found)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A test that panicked while holding the lock has failed already; its state is still readable.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn take_fault(&self, call: Call) -> Option<Fault> {
        let mut state = self.state();
        let position = state.faults.iter().position(|(queued, _)| *queued == call)?;
        state.faults.remove(position).map(|(_, fault)| fault)
    }

    fn apply(&self, puts: &[ConditionalPut]) -> Result<(), StoreError> {
        let mut state = self.state();
        state.usage.requests += 1;
        if puts.iter().any(|put| state.refused.contains(&put.key)) {
            return Err(failure(Fault::Refuse, "TransactWriteItems"));
        }
        let type_attribute = self.codec.rules().table().type_attribute();
        let mut changed = Vec::new();
        for put in puts {
            let current = state.items.get(&put.key);
            if !holds(&put.expect, current, type_attribute) {
                changed.push(self.codec.current(&put.key, current)?);
            }
        }
        if !changed.is_empty() {
            return Err(StoreError::Changed(changed));
        }
        for put in puts {
            state.usage.estimated_write_units += capacity::transactional_write_units(&put.item);
            state.items.insert(put.key.clone(), put.item.clone());
        }
        Ok(())
    }
}

/// Whether a condition holds for the item as it is (`None`: absent), as DynamoDB evaluates the
/// expressions [`DynamoTable`](super::DynamoTable) builds from it; tally's items carry their type
/// in `type_attribute`. A version compares as a number, as DynamoDB compares `N` values.
fn holds(expect: &Expect, current: Option<&SdkItem>, type_attribute: &str) -> bool {
    match (expect, current) {
        (Expect::Anything, _) => true,
        (Expect::Absent, current) => current.is_none(),
        (Expect::Owned { entity_type, version }, Some(item)) => {
            let owned = matches!(item.get(type_attribute), Some(AttributeValue::S(found)) if found == entity_type.as_str());
            let at_version = match (version, item.get(VERSION)) {
                (None, stored) => stored.is_none(),
                (Some(version), Some(AttributeValue::N(stored))) => stored.parse::<u64>() == Ok(*version),
                (Some(_), _) => false,
            };
            owned && at_version
        }
        (Expect::Owned { .. }, None) => false,
    }
}

fn failure(fault: Fault, operation: &'static str) -> StoreError {
    let failure = |message: &str| Failure::new(operation, format!("injected: {message}"));
    match fault {
        Fault::Throttle => StoreError::Transient(failure("throttled")),
        Fault::LoseAnswer => StoreError::Transient(failure("answer lost after the write")),
        Fault::Refuse => StoreError::Refused(failure("ValidationException")),
        Fault::Reject => StoreError::Permanent(failure("ResourceNotFoundException")),
    }
}

impl Store for MemoryTable {
    fn table_name(&self) -> &str {
        &self.name
    }

    async fn read(&self, sources: &[ItemKey], aggregates: &[AggregateKey]) -> Result<Found, StoreError> {
        tokio::time::sleep(self.latency).await;
        if let Some(fault) = self.take_fault(Call::Read) {
            self.state().usage.requests += 1;
            return Err(failure(fault, "BatchGetItem"));
        }
        let mut state = self.state();
        state.usage.requests += (sources.len() + aggregates.len()).div_ceil(100) as u64;
        let keys = sources.iter().map(|source| self.codec.ledger_key(source)).chain(aggregates.iter().map(ItemKey::from));
        if keys.into_iter().any(|key| state.refused.contains(&key)) {
            return Err(failure(Fault::Refuse, "BatchGetItem"));
        }
        let mut found = Found::default();
        let mut units = 0;
        for source in sources {
            let key = self.codec.ledger_key(source);
            let item = state.items.get(&key);
            units += capacity::consistent_read_units(item);
            if let Some(item) = item {
                found.ledgers.insert(source.clone(), self.codec.read_ledger(&key, item)?);
            }
        }
        for aggregate in aggregates {
            let key = ItemKey::from(aggregate);
            let item = state.items.get(&key);
            units += capacity::consistent_read_units(item);
            if let Some(item) = item {
                found.aggregates.insert(aggregate.clone(), self.codec.read_aggregate(aggregate, item)?);
            }
        }
        state.usage.estimated_read_units += units;
        Ok(found)
    }

    async fn commit(&self, commit: Commit<'_>) -> Result<(), StoreError> {
        tokio::time::sleep(self.latency).await;
        let puts = self.codec.encode_commit(commit, Utc::now());
        match self.take_fault(Call::Commit) {
            None => self.apply(&puts),
            Some(Fault::LoseAnswer) => {
                self.apply(&puts)?;
                Err(failure(Fault::LoseAnswer, "TransactWriteItems"))
            }
            Some(fault) => {
                self.state().usage.requests += 1;
                Err(failure(fault, "TransactWriteItems"))
            }
        }
    }

    fn usage(&self) -> Usage {
        self.state().usage
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(attributes: &[(&str, AttributeValue)]) -> SdkItem {
        attributes.iter().map(|(name, value)| ((*name).to_owned(), value.clone())).collect()
    }

    #[test]
    fn only_an_item_of_tallys_own_type_passes_a_condition_on_its_version() {
        let (stats, note) = (AttributeValue::S("stats".into()), AttributeValue::S("note".into()));
        let three = AttributeValue::N("3".into());
        let owned = |version| Expect::Owned { entity_type: "stats".into(), version };
        let holds = |expect: &Expect, current: Option<&SdkItem>| holds(expect, current, "entityType");
        let tallys = item(&[("entityType", stats.clone()), ("version", three.clone())]);
        let tallys_unversioned = item(&[("entityType", stats)]);
        let applications = item(&[("entityType", note), ("version", three)]);
        let untyped = item(&[("title", AttributeValue::S("Reading list".into()))]);

        assert!(holds(&owned(Some(3)), Some(&tallys)));
        assert!(!holds(&owned(Some(4)), Some(&tallys)));
        assert!(!holds(&owned(Some(3)), Some(&applications)), "the application's own version 3");
        assert!(holds(&owned(None), Some(&tallys_unversioned)));
        assert!(!holds(&owned(None), Some(&untyped)), "exists without a version, but is not tally's");
        assert!(!holds(&owned(None), Some(&tallys)));
        assert!(!holds(&owned(Some(3)), None) && !holds(&owned(None), None));
        assert!(holds(&Expect::Absent, None) && !holds(&Expect::Absent, Some(&untyped)));
        assert!(holds(&Expect::Anything, Some(&untyped)));
    }
}
