//! What the table holds against what it should hold: the oracle of the tests, `tally verify`,
//! and the plan `tally backfill` writes.

use std::collections::BTreeMap;

use aggregates::keys::GRADE_AVERAGE;
use aggregates::{AggregateKey, AggregateValues, Assessment, Deltas};
use serde::Serialize;

use tally_engine::decode::ItemKey;
use tally_engine::plan::{first_version, AggregateWrite, Ledger, LedgerWrite, StoredAggregate};
use tally_engine::sequence::SequenceNumber;
use tally_engine::store::scan::TableItem;

/// One field of one aggregate that differs from the recompute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Drift {
    pub pk: String,
    pub sk: String,
    pub field: &'static str,
    /// `None`: the item or attribute is absent.
    pub stored: Option<String>,
    pub expected: Option<String>,
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |value: &Option<String>| value.clone().unwrap_or_else(|| "(absent)".into());
        write!(f, "pk=`{}` sk=`{}` {}: stored {}, expected {}", self.pk, self.sk, self.field, show(&self.stored), show(&self.expected))
    }
}

/// An aggregate item as scanned.
#[derive(Debug, Clone)]
pub struct Scanned {
    pub stored: StoredAggregate,
    pub average: Option<String>,
}

/// What a scan keeps besides the recompute and the stored aggregates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Keep {
    /// Nothing per item: memory grows with the number of aggregates, not of items (verify).
    #[default]
    Aggregates,
    /// Every source item's contribution and every ledger, which resetting the ledgers needs
    /// (backfill).
    Items,
}

/// Everything a scan learns: the recompute from source items, the stored aggregates, and what
/// backfill needs to reset the ledgers.
#[derive(Debug, Default)]
pub struct Audit {
    pub keep: Keep,
    /// Every item scanned, tally's own included.
    pub scanned: u64,
    pub recompute: aggregates::Recompute,
    pub stored: BTreeMap<AggregateKey, Scanned>,
    /// Contribution of each application item that can contribute (all but courses, users,
    /// sessions and unknown items), as scanned; with [`Keep::Items`] only.
    pub contributions: BTreeMap<ItemKey, Deltas>,
    /// Ledgers by source item; with [`Keep::Items`] only.
    pub ledgers: BTreeMap<ItemKey, Ledger>,
    /// The segmented backfill run that last reset a ledger, by source item; with [`Keep::Items`] only.
    pub ledger_runs: BTreeMap<ItemKey, String>,
    /// Latest `updatedAt` of a ledger the stream processor wrote: when it last applied a record.
    pub latest_ledger_write: Option<String>,
}

impl Audit {
    pub fn new(keep: Keep) -> Self {
        Audit { keep, ..Audit::default() }
    }

    /// Adds one item of the table, as a scan or a read by key found it.
    pub fn add(&mut self, item: TableItem) {
        self.scanned += 1;
        match item {
            TableItem::Source { key, image } => {
                let assessment = self.recompute.add_item(&image);
                if let (Keep::Items, Some(key), Some(assessment)) = (self.keep, key, assessment) {
                    if needs_ledger(&assessment) {
                        self.contributions.insert(key, assessment.contribution());
                    }
                }
            }
            TableItem::Aggregate { key, stored, grade_average } => {
                // Compared as numbers: `91.50` and `91.5` are the same average.
                let average = grade_average.map(|text| text.parse::<aggregates::Number>().map_or(text, |n| n.to_string()));
                self.stored.insert(key, Scanned { stored, average });
            }
            TableItem::Ledger(scanned) => {
                if !scanned.by_backfill {
                    if let Some(updated) = &scanned.updated_at {
                        if self.latest_ledger_write.as_ref().is_none_or(|latest| latest < updated) {
                            self.latest_ledger_write = Some(updated.clone());
                        }
                    }
                }
                if self.keep == Keep::Items {
                    if let Some(run) = scanned.backfill_run {
                        self.ledger_runs.insert(scanned.source.clone(), run);
                    }
                    self.ledgers.insert(scanned.source, scanned.ledger);
                }
            }
            TableItem::Other => {}
        }
    }

    /// Folds another slice's audit in (slices of one table are disjoint).
    pub fn combine(&mut self, other: Audit) {
        self.scanned += other.scanned;
        self.recompute.combine(&other.recompute);
        self.stored.extend(other.stored);
        self.contributions.extend(other.contributions);
        self.ledgers.extend(other.ledgers);
        self.ledger_runs.extend(other.ledger_runs);
        if other.latest_ledger_write > self.latest_ledger_write {
            self.latest_ledger_write = other.latest_ledger_write;
        }
    }

    /// Every field where the table and the recompute disagree. A missing aggregate and an
    /// all-zero one are alike.
    pub fn drift(&self) -> Vec<Drift> {
        let expected = self.recompute.aggregates();
        let mut drift = Vec::new();
        for key in self.aggregate_keys(&expected) {
            let want = expected.get(key).cloned().unwrap_or_else(|| AggregateValues::zero(key.kind()));
            let (have, have_average) = match self.stored.get(key) {
                Some(scanned) => (scanned.stored.values.clone(), scanned.average.clone()),
                None => (AggregateValues::zero(key.kind()), None),
            };
            let mut push = |field, stored, expected| drift.push(Drift { pk: key.pk(), sk: key.sk(), field, stored, expected });
            for field in key.kind().fields() {
                let (stored, wanted) = (have.get(*field), want.get(*field));
                if stored != wanted {
                    push(field.attribute(), Some(stored.to_string()), Some(wanted.to_string()));
                }
            }
            let want_average = want.grade_average().map(|n| n.to_string());
            if key.kind().has_grade_average() && have_average != want_average {
                push(GRADE_AVERAGE, have_average, want_average);
            }
        }
        drift
    }

    /// The writes that make the table agree with the recompute: drifted aggregates with their
    /// recomputed values, and ledgers reset to the contribution just counted, so that stream
    /// records written before the scan but applied after it are measured from what was counted.
    pub fn backfill_plan(&self) -> (Vec<AggregateWrite>, Vec<LedgerWrite>) {
        let expected = self.recompute.aggregates();
        let drifted: std::collections::BTreeSet<(String, String)> = self.drift().into_iter().map(|drift| (drift.pk, drift.sk)).collect();
        let aggregates = self
            .aggregate_keys(&expected)
            .into_iter()
            .filter(|key| drifted.contains(&(key.pk(), key.sk())))
            .map(|key| {
                let values = expected.get(key).cloned().unwrap_or_else(|| AggregateValues::zero(key.kind()));
                let version = self.stored.get(key).map(|scanned| scanned.stored.version);
                AggregateWrite {
                    key: key.clone(),
                    expected_version: version,
                    stored: StoredAggregate { values, version: version.map_or_else(first_version, |v| v + 1) },
                }
            })
            .collect();
        let zero = SequenceNumber::zero();
        let mut ledgers = Vec::new();
        for (item, contribution) in &self.contributions {
            let existing = self.ledgers.get(item);
            // An assumption is cleared too: backfill has just counted the item exactly, so a later
            // redrive of an older record must not correct anything.
            if existing.is_some_and(|ledger| &ledger.contribution == contribution && ledger.assumed.is_none()) {
                continue;
            }
            let sequence = existing.map_or(zero.clone(), |ledger| ledger.sequence.clone());
            ledgers.push(LedgerWrite {
                item: item.clone(),
                expected_version: existing.map(|ledger| ledger.version),
                ledger: Ledger {
                    version: existing.map_or_else(first_version, |ledger| ledger.version + 1),
                    sequence,
                    contribution: contribution.clone(),
                    assumed: None,
                },
            });
        }
        (aggregates, ledgers)
    }

    /// Ledgers that still hold something for an item this audit did not count: the item is gone,
    /// no longer counts, or (in a segmented run) lives in another slice. With `run`, ledgers a
    /// worker of that segmented run has already reset are left out: their item was counted in
    /// that worker's slice.
    pub fn orphan_ledgers(&self, run: Option<&str>) -> Vec<(&ItemKey, &Ledger)> {
        self.ledgers
            .iter()
            .filter(|(item, ledger)| {
                !self.contributions.contains_key(*item) && (!ledger.contribution.is_empty() || ledger.assumed.is_some())
            })
            .filter(|(item, _)| run.is_none_or(|run| self.ledger_runs.get(*item).map(String::as_str) != Some(run)))
            .collect()
    }

    /// In a backfill of the whole table every orphan is emptied, whatever its item holds by
    /// now: the aggregates backfill writes count nothing the scan did not see.
    pub fn emptied_orphans(&self) -> Vec<LedgerWrite> {
        self.orphan_ledgers(None).into_iter().map(|(item, ledger)| emptied(item, ledger)).collect()
    }

    fn aggregate_keys<'a>(&'a self, expected: &'a BTreeMap<AggregateKey, AggregateValues>) -> Vec<&'a AggregateKey> {
        let mut keys: Vec<&AggregateKey> = expected.keys().chain(self.stored.keys()).collect();
        keys.sort();
        keys.dedup();
        keys
    }
}

/// Rewrites a ledger to hold nothing, from the version it was read at.
pub fn emptied(item: &ItemKey, ledger: &Ledger) -> LedgerWrite {
    LedgerWrite {
        item: item.clone(),
        expected_version: Some(ledger.version),
        ledger: Ledger { version: ledger.version + 1, sequence: ledger.sequence.clone(), contribution: Deltas::new(), assumed: None },
    }
}

/// Whether an application item needs a ledger: it can contribute, or is invalid now but may not
/// have been when a pending record was written.
pub fn needs_ledger(assessment: &Assessment) -> bool {
    match assessment {
        Assessment::Source { entity_type, .. } => aggregates::source::entity_of(entity_type).is_some_and(|entity| entity.contributes),
        Assessment::Rejected(_) => true,
        Assessment::Unknown | Assessment::Absent => false,
    }
}

#[cfg(test)]
mod tests {
    use aggregates::{AggregateKey, Field, Number};

    use super::*;

    fn item(sk: &str) -> ItemKey {
        ItemKey { pk: "course#c1".into(), sk: sk.into() }
    }

    fn enrollment() -> Deltas {
        let mut deltas = Deltas::new();
        deltas.add(AggregateKey::Course { course_id: "c1".into() }, Field::EnrollmentCount, &Number::one());
        deltas
    }

    fn ledger(version: u64) -> Ledger {
        Ledger { version, sequence: SequenceNumber::parse("42").unwrap(), contribution: enrollment(), assumed: None }
    }

    #[test]
    fn only_the_streams_ledger_writes_date_the_processor_and_verify_keeps_no_ledgers() {
        use tally_engine::store::scan::ScannedLedger;
        let mut audit = Audit::new(Keep::Aggregates);
        let scanned = |by_backfill, at: &str| {
            let updated_at = Some(at.to_owned());
            TableItem::Ledger(ScannedLedger { source: item("student#s1"), ledger: ledger(1), by_backfill, backfill_run: None, updated_at })
        };
        audit.add(scanned(false, "2026-01-01T00:00:00.000Z"));
        audit.add(scanned(true, "2026-01-02T00:00:00.000Z"));
        assert_eq!(audit.latest_ledger_write.as_deref(), Some("2026-01-01T00:00:00.000Z"));
        assert!(audit.ledgers.is_empty());
        assert_eq!(audit.scanned, 2);
    }

    #[test]
    fn stored_averages_compare_as_numbers() {
        let key = AggregateKey::Course { course_id: "c1".into() };
        let stored = StoredAggregate { values: AggregateValues::zero(key.kind()), version: 1 };
        let mut audit = Audit::default();
        audit.add(TableItem::Aggregate { key: key.clone(), stored, grade_average: Some("91.50".into()) });
        assert_eq!(audit.stored[&key].average.as_deref(), Some("91.5"));
    }

    #[test]
    fn a_whole_table_backfill_empties_every_ledger_whose_item_it_did_not_count() {
        let mut audit = Audit::new(Keep::Items);
        audit.ledgers.insert(item("student#gone"), ledger(3));
        audit.ledgers.insert(item("student#counted"), ledger(5));
        audit.contributions.insert(item("student#counted"), enrollment());
        let emptied = audit.emptied_orphans();
        assert_eq!(emptied.len(), 1);
        assert_eq!(emptied[0].item, item("student#gone"));
        assert_eq!((emptied[0].expected_version, emptied[0].ledger.version), (Some(3), 4));
        assert!(emptied[0].ledger.contribution.is_empty());
        assert_eq!(emptied[0].ledger.sequence, SequenceNumber::parse("42").unwrap(), "the last applied record stays applied");
    }

    #[test]
    fn a_segment_leaves_alone_the_orphans_another_worker_of_its_run_reset() {
        let mut audit = Audit::new(Keep::Items);
        audit.ledgers.insert(item("student#elsewhere"), ledger(2));
        audit.ledger_runs.insert(item("student#elsewhere"), "r1".into());
        assert!(audit.orphan_ledgers(Some("r1")).is_empty(), "counted in the other worker's slice");
        assert_eq!(audit.orphan_ledgers(Some("r2")).len(), 1, "reset by an earlier run: still to be judged");
        assert_eq!(audit.orphan_ledgers(None).len(), 1);
    }
}
