//! Planning a batch: per-item coalescing, then optimistic transactions against a snapshot.
//!
//! No I/O happens here. The engine reads a snapshot of the ledgers and aggregates a batch
//! touches, asks [`plan`] for transactions, and commits them with every read value as a condition,
//! so a plan computed from a stale snapshot can never commit.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use aggregates::{AggregateKey, AggregateValues, Deltas, Rules};

use crate::decode::{Change, Origin};
use crate::items::{first_version, next_version, AggregateWrite, Assumption, ItemKey, Ledger, LedgerWrite, StoredAggregate};
use crate::registry::LEDGER;
use crate::sequence::SequenceNumber;

pub use aggregates::keys::MAX_TRANSACTION_ACTIONS;

/// All of one source item's records in a batch, coalesced.
#[derive(Debug, Clone)]
pub struct ItemChanges {
    /// The source item.
    pub key: ItemKey,
    /// `(batch position, sequence number)` in sequence order, redelivered duplicates dropped.
    pub records: Vec<(usize, SequenceNumber)>,
    /// Contribution of the first record's old image: what the aggregates hold for this item when
    /// no ledger says otherwise.
    pub before: Deltas,
    /// Contribution of the last record's new image: what they must hold afterwards.
    pub after: Deltas,
    /// Whether any image of these records contributes to an aggregate. When none does, the item
    /// never counted and a redelivery can add nothing, so no ledger is needed.
    pub touches_aggregates: bool,
}

impl ItemChanges {
    /// Batch position of the item's first record.
    pub(crate) fn first_index(&self) -> usize {
        self.records.iter().map(|(index, _)| *index).min().unwrap_or(usize::MAX)
    }

    /// Sequence number of the item's oldest record.
    pub(crate) fn first_sequence(&self) -> &SequenceNumber {
        &self.records.first().expect("an item has at least one record").1
    }

    /// Sequence number of the item's newest record.
    pub(crate) fn last_sequence(&self) -> &SequenceNumber {
        &self.records.last().expect("an item has at least one record").1
    }
}

/// Groups the source records of a batch by item, in order of each item's first record.
pub fn group(changes: &[Change<'_>]) -> Vec<ItemChanges> {
    let mut by_item: BTreeMap<&ItemKey, Vec<&Change<'_>>> = BTreeMap::new();
    for change in changes.iter().filter(|change| change.origin == Origin::Source) {
        by_item.entry(&change.key).or_default().push(change);
    }
    let mut items: Vec<ItemChanges> = by_item
        .into_iter()
        .map(|(key, mut records)| {
            // Lambda delivers an item's records in order, but a replayed file need not.
            records.sort_by(|a, b| a.sequence.cmp(&b.sequence));
            records.dedup_by(|a, b| a.sequence == b.sequence);
            let first = records.first().expect("grouped from at least one record");
            let last = records.last().expect("grouped from at least one record");
            ItemChanges {
                key: key.clone(),
                records: records.iter().map(|change| (change.index, change.sequence.clone())).collect(),
                before: first.old.contribution().clone(),
                after: last.new.contribution().clone(),
                touches_aggregates: records
                    .iter()
                    .any(|change| !change.old.contribution().is_empty() || !change.new.contribution().is_empty()),
            }
        })
        .collect();
    items.sort_by_key(ItemChanges::first_index);
    items
}

/// The ledgers and aggregates a plan is computed from; `None` means the item does not exist.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// Ledgers, by the source item they belong to.
    pub ledgers: HashMap<ItemKey, Option<Ledger>>,
    /// Aggregates, by key.
    pub aggregates: HashMap<AggregateKey, Option<StoredAggregate>>,
}

/// One all-or-nothing commit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlannedCommit {
    /// Positions in the plan's item list this commit applies.
    pub items: Vec<usize>,
    /// One ledger per item.
    pub ledgers: Vec<LedgerWrite>,
    /// Every aggregate the items move, with its new absolute values.
    pub aggregates: Vec<AggregateWrite>,
}

impl PlannedCommit {
    /// Its puts: ledgers and aggregates.
    pub(crate) fn actions(&self) -> usize {
        self.ledgers.len() + self.aggregates.len()
    }
}

/// What to do with each pending item.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Items whose ledger already holds their last record: a redelivery.
    pub already_applied: Vec<usize>,
    /// Items that never touch an aggregate (courses, users, sessions, always-invalid images):
    /// nothing to write.
    pub no_effect: Vec<usize>,
    /// The transactions of every other item, to commit in order: each expects the versions the
    /// one before it writes.
    pub commits: Vec<PlannedCommit>,
}

/// Keys a plan for `items` needs in its snapshot before [`plan`] can run: every ledger, and every
/// aggregate either side of each item touches.
pub fn needed_keys<'a>(
    items: impl IntoIterator<Item = &'a ItemChanges>,
    snapshot: &Snapshot,
    rules: &Rules,
) -> (Vec<ItemKey>, Vec<AggregateKey>) {
    let ledger_prefix = LEDGER.pk_prefix(rules.table());
    let mut ledgers = Vec::new();
    let mut aggregates = BTreeSet::new();
    for item in items {
        match snapshot.ledgers.get(&item.key) {
            // A key too long for its ledger's key never had a ledger: every image of it is invalid.
            None if !item.key.fits_ledger(&ledger_prefix) => {}
            None => ledgers.push(item.key.clone()),
            Some(ledger) => {
                if let Some(ledger) = ledger {
                    aggregates.extend(ledger.contribution.keys().cloned());
                    if let Some(assumed) = &ledger.assumed {
                        aggregates.extend(assumed.baseline.keys().cloned());
                    }
                }
            }
        }
        aggregates.extend(item.before.keys().cloned());
        aggregates.extend(item.after.keys().cloned());
    }
    aggregates.retain(|key| !snapshot.aggregates.contains_key(key));
    (ledgers, aggregates.into_iter().collect())
}

/// Plans the items selected by `pending` (positions in `items`) against `snapshot`, which must
/// hold every key [`needed_keys`] names, in transactions of at most `max_actions` puts; new
/// aggregate items get the fields `rules` give them. An item's
/// writes never split across transactions, so one item alone may exceed a limit below
/// [`MAX_TRANSACTION_ACTIONS`].
///
/// Each item moves the aggregates from what its ledger says they hold for it (or, with no
/// ledger, its first old image) to its last new image. Measuring from the ledger rather than
/// from the record makes a redelivered record a no-op and heals a gap left by a discarded batch;
/// records older than the ledger's [`Assumption`] correct the baseline it took on trust.
pub fn plan(items: &[ItemChanges], pending: &[usize], snapshot: &Snapshot, max_actions: usize, rules: &Rules) -> Plan {
    let mut result = Plan::default();
    let mut current = PlannedCommit::default();
    let mut aggregate_deltas: BTreeMap<AggregateKey, Deltas> = BTreeMap::new();
    // Aggregates as they will be once the transactions planned so far commit, in order.
    let mut projected: HashMap<AggregateKey, Option<StoredAggregate>> = HashMap::new();

    let close = |current: &mut PlannedCommit,
                 aggregate_deltas: &mut BTreeMap<AggregateKey, Deltas>,
                 projected: &mut HashMap<AggregateKey, Option<StoredAggregate>>,
                 result: &mut Plan| {
        if current.items.is_empty() {
            return;
        }
        for (key, deltas) in std::mem::take(aggregate_deltas) {
            let before = projected.get(&key).cloned().unwrap_or_else(|| snapshot.aggregates.get(&key).cloned().flatten());
            let mut values = before.as_ref().map(|stored| stored.values.clone()).unwrap_or_else(|| AggregateValues::zero(rules, key.kind));
            values.apply(&key, &deltas);
            let stored = StoredAggregate { values, version: next_version(before.as_ref().map(|stored| stored.version)) };
            projected.insert(key.clone(), Some(stored.clone()));
            current.aggregates.push(AggregateWrite { key, expected_version: before.map(|stored| stored.version), stored });
        }
        result.commits.push(std::mem::take(current));
    };

    for &position in pending {
        let item = &items[position];
        let ledger = snapshot.ledgers.get(&item.key).cloned().flatten();
        let (change, next) = match &ledger {
            None => (
                Deltas::between(&item.before, &item.after),
                Ledger {
                    version: first_version(),
                    sequence: item.last_sequence().clone(),
                    contribution: item.after.clone(),
                    assumed: Some(Assumption { from: item.first_sequence().clone(), baseline: item.before.clone() }),
                },
            ),
            Some(ledger) => {
                let repair = ledger.assumed.as_ref().filter(|assumed| *item.first_sequence() < assumed.from);
                let newer = ledger.sequence < *item.last_sequence();
                if repair.is_none() && !newer {
                    result.already_applied.push(position);
                    continue;
                }
                let mut change = Deltas::new();
                if let Some(assumed) = repair {
                    change.merge(&Deltas::between(&item.before, &assumed.baseline));
                }
                let (sequence, contribution) = if newer {
                    change.merge(&Deltas::between(&ledger.contribution, &item.after));
                    (item.last_sequence().clone(), item.after.clone())
                } else {
                    (ledger.sequence.clone(), ledger.contribution.clone())
                };
                // The corrected baseline is now the first record's old image: a still older record
                // (a message redriven out of order) corrects it again, exactly.
                let assumed = match repair {
                    Some(_) => Some(Assumption { from: item.first_sequence().clone(), baseline: item.before.clone() }),
                    None => ledger.assumed.clone(),
                };
                (change, Ledger { version: ledger.version + 1, sequence, contribution, assumed })
            }
        };
        // A net-zero change still advances the ledger: were an INSERT and REMOVE applied as
        // nothing, a later redelivery of the INSERT alone would count again.
        if change.is_empty() && !item.touches_aggregates {
            result.no_effect.push(position);
            continue;
        }
        let new_aggregates = change.keys().filter(|key| !aggregate_deltas.contains_key(*key)).count();
        if current.actions() + aggregate_deltas.len() + 1 + new_aggregates > max_actions {
            close(&mut current, &mut aggregate_deltas, &mut projected, &mut result);
        }
        for key in change.keys() {
            aggregate_deltas.entry(key.clone()).or_default().add_to(key.clone(), change.fields(key));
        }
        current.items.push(position);
        current.ledgers.push(LedgerWrite { item: item.key.clone(), expected_version: ledger.map(|ledger| ledger.version), ledger: next });
    }
    close(&mut current, &mut aggregate_deltas, &mut projected, &mut result);
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use aggregates::{FieldId, Number, RuleAssessment};

    fn rules() -> &'static Rules {
        Rules::university()
    }

    fn course(id: &str) -> AggregateKey {
        rules().parse_key(&format!("course#{id}"), "stats").unwrap()
    }

    fn enrollment_count() -> FieldId {
        rules().field("enrollmentCount").unwrap()
    }

    fn key(sk: &str) -> ItemKey {
        ItemKey { pk: "course#c1".into(), sk: sk.into() }
    }

    fn enrollment(course: &str) -> Deltas {
        let mut deltas = Deltas::new();
        deltas.add(self::course(course), enrollment_count(), &Number::one());
        deltas
    }

    fn change(index: usize, sk: &str, sequence: &str, old: Deltas, new: Deltas) -> Change<'static> {
        let assess = |deltas: Deltas| {
            if deltas.is_empty() {
                RuleAssessment::Absent
            } else {
                RuleAssessment::Source { entity: rules().entity("student").unwrap(), contribution: deltas }
            }
        };
        Change {
            index,
            event_id: format!("e{index}"),
            sequence: SequenceNumber::parse(sequence).unwrap(),
            key: key(sk),
            origin: Origin::Source,
            old: assess(old),
            new: assess(new),
            ttl_deletion: false,
        }
    }

    fn snapshot_for(items: &[ItemChanges]) -> Snapshot {
        let mut snapshot = Snapshot::default();
        let (ledgers, aggregates) = needed_keys(items, &snapshot, rules());
        snapshot.ledgers.extend(ledgers.into_iter().map(|key| (key, None)));
        snapshot.aggregates.extend(aggregates.into_iter().map(|key| (key, None)));
        snapshot
    }

    #[test]
    fn coalesces_an_items_records_in_sequence_order() {
        let changes = vec![
            change(0, "student#s1", "20", enrollment("a"), enrollment("b")),
            change(1, "student#s2", "15", Deltas::new(), enrollment("a")),
            change(2, "student#s1", "10", Deltas::new(), enrollment("a")),
            change(3, "student#s1", "20", enrollment("a"), enrollment("b")),
        ];
        let items = group(&changes);
        assert_eq!(items.len(), 2);
        let s1 = &items[0];
        assert_eq!(s1.key, key("student#s1"));
        assert_eq!(s1.records.iter().map(|(index, _)| *index).collect::<Vec<_>>(), vec![2, 0]);
        assert!(s1.before.is_empty());
        assert_eq!(s1.after, enrollment("b"));
    }

    #[test]
    fn a_ledger_at_or_past_the_last_record_means_already_applied() {
        let items = group(&[change(0, "student#s1", "10", Deltas::new(), enrollment("a"))]);
        let mut snapshot = snapshot_for(&items);
        snapshot.ledgers.insert(
            key("student#s1"),
            Some(Ledger { version: 3, sequence: SequenceNumber::parse("10").unwrap(), contribution: enrollment("a"), assumed: None }),
        );
        let plan = plan(&items, &[0], &snapshot, MAX_TRANSACTION_ACTIONS, rules());
        assert_eq!(plan.already_applied, vec![0]);
        assert!(plan.commits.is_empty());
    }

    #[test]
    fn measures_from_the_ledger_not_the_old_image() {
        // The ledger says the aggregates hold enrollment in course a (a record in between was
        // lost to the failure destination); the new record's old image claims course b.
        let items = group(&[change(0, "student#s1", "30", enrollment("b"), enrollment("c"))]);
        let mut snapshot = snapshot_for(&items);
        snapshot.ledgers.insert(
            key("student#s1"),
            Some(Ledger { version: 3, sequence: SequenceNumber::parse("10").unwrap(), contribution: enrollment("a"), assumed: None }),
        );
        let (_, missing) = needed_keys(&items, &snapshot, rules());
        snapshot.aggregates.extend(missing.into_iter().map(|key| (key, None)));
        let plan = plan(&items, &[0], &snapshot, MAX_TRANSACTION_ACTIONS, rules());
        let txn = &plan.commits[0];
        let value = |course: &str| {
            txn.aggregates
                .iter()
                .find(|write| write.key == self::course(course))
                .map(|write| write.stored.values.get(enrollment_count()).to_string())
        };
        assert_eq!(value("a").as_deref(), Some("-1"));
        assert_eq!(value("b"), None);
        assert_eq!(value("c").as_deref(), Some("1"));
        assert_eq!(txn.ledgers[0].expected_version, Some(3));
        assert_eq!(txn.ledgers[0].ledger.version, 4);
    }

    #[test]
    fn transactions_stay_within_the_action_limit_and_chain_versions() {
        // 150 enrollments in one course: one shared aggregate, 150 ledgers.
        let changes: Vec<Change<'_>> =
            (0..150).map(|i| change(i, &format!("student#s{i}"), &format!("{}", 100 + i), Deltas::new(), enrollment("a"))).collect();
        let items = group(&changes);
        let pending: Vec<usize> = (0..items.len()).collect();
        let plan = plan(&items, &pending, &snapshot_for(&items), MAX_TRANSACTION_ACTIONS, rules());
        assert_eq!(plan.commits.len(), 2);
        assert!(plan.commits.iter().all(|txn| txn.actions() <= MAX_TRANSACTION_ACTIONS));
        let first = &plan.commits[0].aggregates[0];
        let second = &plan.commits[1].aggregates[0];
        assert_eq!(first.expected_version, None);
        assert_eq!((second.expected_version, second.stored.version), (Some(first.stored.version), first.stored.version + 1));
        assert_eq!(second.stored.values.get(enrollment_count()).to_string(), "150");
    }

    #[test]
    fn a_smaller_limit_splits_a_batch_but_never_an_item() {
        // Each enrollment writes its ledger and one course aggregate; a move writes three puts.
        let mut changes: Vec<Change<'_>> =
            (0..5).map(|i| change(i, &format!("student#s{i}"), &format!("{}", 100 + i), Deltas::new(), enrollment("a"))).collect();
        changes.push(change(5, "student#s9", "200", enrollment("a"), enrollment("b")));
        let items = group(&changes);
        let pending: Vec<usize> = (0..items.len()).collect();
        let plan = plan(&items, &pending, &snapshot_for(&items), 3, rules());
        let sizes: Vec<(usize, usize)> = plan.commits.iter().map(|txn| (txn.items.len(), txn.actions())).collect();
        assert_eq!(sizes, vec![(2, 3), (2, 3), (1, 2), (1, 3)]);
        let writes: Vec<&AggregateWrite> =
            plan.commits.iter().flat_map(|txn| &txn.aggregates).filter(|write| write.key == self::course("a")).collect();
        let first = writes[0].stored.version;
        let counts: Vec<String> = writes
            .iter()
            .map(|write| format!("{}@{}", write.stored.values.get(enrollment_count()), write.stored.version - first))
            .collect();
        assert_eq!(counts, vec!["2@0", "4@1", "5@2", "4@3"], "values and versions chain across the transactions");
    }

    #[test]
    fn net_zero_items_advance_the_ledger_only() {
        let items = group(&[
            change(0, "student#s1", "10", Deltas::new(), enrollment("a")),
            change(1, "student#s1", "11", enrollment("a"), Deltas::new()),
        ]);
        let plan = plan(&items, &[0], &snapshot_for(&items), MAX_TRANSACTION_ACTIONS, rules());
        assert!(plan.no_effect.is_empty());
        let txn = &plan.commits[0];
        assert_eq!(txn.ledgers[0].ledger.sequence, SequenceNumber::parse("11").unwrap());
        assert!(txn.ledgers[0].ledger.contribution.is_empty());
        assert!(txn.aggregates.is_empty());
    }

    #[test]
    fn records_older_than_the_assumed_baseline_correct_it_once() {
        // Enrolled in a (record 10, discarded to the failure destination), then moved to b
        // (record 20, applied with no ledger: the old image a was assumed counted).
        let moved = group(&[change(0, "student#s1", "20", enrollment("a"), enrollment("b"))]);
        let first = plan(&moved, &[0], &snapshot_for(&moved), MAX_TRANSACTION_ACTIONS, rules());
        let ledger = first.commits[0].ledgers[0].ledger.clone();
        assert_eq!(ledger.assumed, Some(Assumption { from: SequenceNumber::parse("20").unwrap(), baseline: enrollment("a") }));
        assert_eq!(first.commits[0].aggregates.len(), 2, "a -1, b +1");

        // The redrive brings record 10: a was never counted, so a's -1 is corrected by +1.
        let redriven = group(&[change(0, "student#s1", "10", Deltas::new(), enrollment("a"))]);
        let mut snapshot = Snapshot::default();
        snapshot.ledgers.insert(key("student#s1"), Some(ledger));
        let (_, missing) = needed_keys(&redriven, &snapshot, rules());
        snapshot.aggregates.extend(missing.into_iter().map(|key| (key, None)));
        let repair = plan(&redriven, &[0], &snapshot, MAX_TRANSACTION_ACTIONS, rules());
        let txn = &repair.commits[0];
        assert_eq!(txn.aggregates.len(), 1);
        assert_eq!(txn.aggregates[0].key, self::course("a"));
        assert_eq!(txn.aggregates[0].stored.values.get(enrollment_count()).to_string(), "1");
        assert_eq!(txn.ledgers[0].ledger.assumed, Some(Assumption { from: SequenceNumber::parse("10").unwrap(), baseline: Deltas::new() }));
        assert_eq!(txn.ledgers[0].ledger.sequence, SequenceNumber::parse("20").unwrap());

        // Redriven again: no longer older than the assumption, so it is stale.
        let mut snapshot = Snapshot::default();
        snapshot.ledgers.insert(key("student#s1"), Some(txn.ledgers[0].ledger.clone()));
        assert_eq!(plan(&redriven, &[0], &snapshot, MAX_TRANSACTION_ACTIONS, rules()).already_applied, vec![0]);
    }

    #[test]
    fn new_items_start_at_versions_no_earlier_incarnation_shares() {
        let versions: std::collections::HashSet<u64> = (0..1000).map(|_| first_version()).collect();
        assert_eq!(versions.len(), 1000);
        assert!(versions.iter().all(|version| *version >= 1 << 32), "never 0, which means an item without a version");
    }

    #[test]
    fn a_key_too_long_for_a_ledger_is_not_read() {
        // `tally#ledger#` + 2,036 bytes is past the partition key limit; 2,035 would still be read.
        let long = ItemKey { pk: format!("course#{}", "c".repeat(2036 - "course#".len())), sk: "student#s1".into() };
        assert!(!long.fits_ledger("tally#ledger#"));
        assert!(ItemKey { pk: "c".repeat(2035), sk: "s".repeat(1024) }.fits_ledger("tally#ledger#"));
        let mut record = change(0, "student#s1", "10", Deltas::new(), Deltas::new());
        record.key = long;
        let items = group(&[record]);
        let (ledgers, aggregates) = needed_keys(&items, &Snapshot::default(), rules());
        assert!(ledgers.is_empty() && aggregates.is_empty());
        assert_eq!(plan(&items, &[0], &Snapshot::default(), MAX_TRANSACTION_ACTIONS, rules()).no_effect, vec![0]);
    }

    #[test]
    fn items_that_never_count_write_nothing() {
        let items = group(&[change(0, "metadata", "10", Deltas::new(), Deltas::new())]);
        let plan = plan(&items, &[0], &snapshot_for(&items), MAX_TRANSACTION_ACTIONS, rules());
        assert_eq!(plan.no_effect, vec![0]);
        assert!(plan.commits.is_empty());
    }
}
