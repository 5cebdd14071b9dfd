//! What the table holds against what it should hold: the oracle of the tests, [`crate::verify`],
//! and the plan [`crate::backfill`] writes. [`Audit::scan`] reads the table into one.

use std::collections::{BTreeMap, BTreeSet};

use aggregates::{AggregateKey, AggregateValues, Deltas, Recompute, RuleAssessment, Rules};
use serde::Serialize;

use crate::error::ScanError;
use crate::Progress;
use tally_engine::items::ItemKey;
use tally_engine::items::{next_version, AggregateWrite, Ledger, LedgerWrite, StoredAggregate};
use tally_engine::sequence::SequenceNumber;
use tally_engine::store::scan::{ScannedLedger, TableItem};
use tally_engine::store::DynamoTable;

/// Parallel scan segments by default: two per core, at least 4.
pub fn default_segments() -> u32 {
    std::thread::available_parallelism().map_or(4, |cores| (cores.get() as u32 * 2).max(4))
}

/// One field of one aggregate that differs from the recompute.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Drift {
    /// The aggregate's partition key.
    pub pk: String,
    /// The aggregate's sort key.
    pub sk: String,
    /// The field's name (or the average's).
    pub field: String,
    /// What the table holds; `None`: the item or attribute is absent.
    pub stored: Option<String>,
    /// What the recompute gives; `None`: no average (nothing to divide by).
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
    /// Its values and version.
    pub stored: StoredAggregate,
    /// Its kind's averages as stored, in the rules' order, normalised as numbers.
    pub averages: Vec<Option<String>>,
    /// Written under other rules than the audit's (a digest other than theirs).
    pub foreign: bool,
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
#[derive(Debug)]
pub struct Audit<'r> {
    /// What the audit keeps besides the recompute and the stored aggregates.
    pub keep: Keep,
    /// Every item scanned, tally's own included.
    pub scanned: u64,
    /// The aggregates recomputed from the application items scanned.
    pub recompute: Recompute<'r>,
    /// The aggregate items scanned.
    pub stored: BTreeMap<AggregateKey, Scanned>,
    /// Contribution of each application item that needs a ledger ([`needs_ledger`]: an entity
    /// with contributions, or an invalid image), as scanned; with [`Keep::Items`] only.
    pub contributions: BTreeMap<ItemKey, Deltas>,
    /// Ledgers by source item; with [`Keep::Items`] only.
    pub ledgers: BTreeMap<ItemKey, Ledger>,
    /// The segmented backfill run that last reset a ledger, by source item; with [`Keep::Items`] only.
    pub ledger_runs: BTreeMap<ItemKey, String>,
    /// Ledgers written under other rules, by source item; with [`Keep::Items`] only.
    pub foreign_ledgers: BTreeSet<ItemKey>,
    /// Latest `updatedAt` of a ledger the stream processor wrote: when it last applied a record.
    pub latest_ledger_write: Option<String>,
    /// Ledgers and aggregates written under other rules than these, by those rules' digest:
    /// their contributions and fields are the other rules' (a rules change; backfill rewrites
    /// them). Items written before tally stored digests count as the university rules'.
    pub other_rules: BTreeMap<String, u64>,
}

impl<'r> Audit<'r> {
    /// An empty audit of a table whose items follow `rules`.
    pub fn new(rules: &'r Rules, keep: Keep) -> Self {
        Audit {
            keep,
            scanned: 0,
            recompute: Recompute::new(rules),
            stored: BTreeMap::new(),
            contributions: BTreeMap::new(),
            ledgers: BTreeMap::new(),
            ledger_runs: BTreeMap::new(),
            foreign_ledgers: BTreeSet::new(),
            latest_ledger_write: None,
            other_rules: BTreeMap::new(),
        }
    }

    /// Scans `segments` (numbers out of `total`) of `table` concurrently and folds them into one
    /// audit, `progress` advancing by the items scanned.
    ///
    /// # Errors
    /// [`ScanError`] naming the first segment (in `segments`' order) whose scan failed.
    pub async fn scan(
        table: &DynamoTable,
        rules: &'r Rules,
        segments: &[u32],
        total: u32,
        keep: Keep,
        progress: &impl Progress,
    ) -> Result<Self, ScanError> {
        progress.begin(0, "items scanned");
        let scans = segments.iter().map(|&segment| async move {
            let mut audit = Audit::new(rules, keep);
            table
                .scan_segment(segment, total, |items| {
                    progress.advance(items.len() as u64);
                    items.into_iter().for_each(|item| audit.add(item));
                })
                .await
                .map_err(|source| ScanError { segment, total, table: table.name().to_owned(), source: Box::new(source) })?;
            Ok::<_, ScanError>(audit)
        });
        let mut whole = Audit::new(rules, keep);
        for audit in futures::future::join_all(scans).await {
            whole.combine(audit?);
        }
        progress.finish();
        Ok(whole)
    }

    /// The rules the audit recomputes by.
    pub fn rules(&self) -> &'r Rules {
        self.recompute.rules()
    }

    /// Counts an item written under other rules; whether it was ([`Rules::wrote`]: a digest
    /// from before the canonical encoding counts as its rule set's).
    fn note_digest(&mut self, digest: String) -> bool {
        let foreign = !self.rules().wrote(Some(&digest));
        if foreign {
            *self.other_rules.entry(digest).or_default() += 1;
        }
        foreign
    }

    /// Keeps a ledger for resetting (with [`Keep::Items`]).
    fn keep_ledger(&mut self, scanned: ScannedLedger, foreign: bool) {
        if self.keep == Keep::Items {
            if foreign {
                self.foreign_ledgers.insert(scanned.source.clone());
            }
            if let Some(run) = scanned.backfill_run {
                self.ledger_runs.insert(scanned.source.clone(), run);
            }
            self.ledgers.insert(scanned.source, scanned.ledger);
        }
    }

    /// Adds a ledger another slice's scan found (read by key for this slice's items): kept like
    /// a scanned one, counted by the slice that scanned it.
    pub fn add_ledger_of_slice(&mut self, scanned: ScannedLedger) {
        let foreign = !self.rules().wrote(Some(&scanned.rules_digest));
        self.keep_ledger(scanned, foreign);
    }

    /// Adds one item of the table, as a scan or a read by key found it.
    pub fn add(&mut self, item: TableItem) {
        self.scanned += 1;
        match item {
            TableItem::Source { key, image } => {
                let assessment = self.recompute.add_item(&image);
                if let (Keep::Items, Some(key), Some(assessment)) = (self.keep, key, assessment) {
                    if needs_ledger(&assessment) {
                        self.contributions.insert(key, assessment.contribution().clone());
                    }
                }
            }
            TableItem::Aggregate { key, stored, averages, rules_digest } => {
                let foreign = self.note_digest(rules_digest);
                // Compared as numbers: `91.50` and `91.5` are the same average.
                let normalised = |text: String| text.parse::<aggregates::Number>().map_or(text, |n| n.to_string());
                let averages = averages.into_iter().map(|average| average.map(normalised)).collect();
                self.stored.insert(key, Scanned { stored, averages, foreign });
            }
            TableItem::Ledger(scanned) => {
                let foreign = self.note_digest(scanned.rules_digest.clone());
                if !scanned.by_backfill {
                    if let Some(updated) = &scanned.updated_at {
                        if self.latest_ledger_write.as_ref().is_none_or(|latest| latest < updated) {
                            self.latest_ledger_write = Some(updated.clone());
                        }
                    }
                }
                self.keep_ledger(scanned, foreign);
            }
            TableItem::Other => {}
        }
    }

    /// Folds another slice's audit in (slices of one table are disjoint).
    pub fn combine(&mut self, other: Audit<'r>) {
        self.scanned += other.scanned;
        self.recompute.combine(&other.recompute);
        self.stored.extend(other.stored);
        self.contributions.extend(other.contributions);
        self.ledgers.extend(other.ledgers);
        self.ledger_runs.extend(other.ledger_runs);
        self.foreign_ledgers.extend(other.foreign_ledgers);
        for (digest, count) in other.other_rules {
            *self.other_rules.entry(digest).or_default() += count;
        }
        if other.latest_ledger_write > self.latest_ledger_write {
            self.latest_ledger_write = other.latest_ledger_write;
        }
    }

    /// Every field where the table and the recompute disagree. A missing aggregate and an
    /// all-zero one are alike.
    pub fn drift(&self) -> Vec<Drift> {
        let rules = self.rules();
        let expected = self.recompute.aggregates();
        let mut drift = Vec::new();
        for key in self.aggregate_keys(&expected) {
            let want = expected.get(key).cloned().unwrap_or_else(|| AggregateValues::zero(rules, key.kind));
            let (have, have_averages) = match self.stored.get(key) {
                Some(scanned) => (scanned.stored.values.clone(), scanned.averages.clone()),
                None => (AggregateValues::zero(rules, key.kind), Vec::new()),
            };
            let mut push = |field: &str, stored, expected| {
                drift.push(Drift { pk: key.pk.clone(), sk: key.sk.clone(), field: field.to_owned(), stored, expected })
            };
            for field in rules.aggregate(key.kind).fields() {
                let (stored, wanted) = (have.get(field), want.get(field));
                if stored != wanted {
                    push(rules.field_name(field), Some(stored.to_string()), Some(wanted.to_string()));
                }
            }
            for (index, (average, value)) in want.averages(rules).enumerate() {
                let (stored, wanted) = (have_averages.get(index).cloned().flatten(), value.map(|n| n.to_string()));
                if stored != wanted {
                    push(average.name(), stored, wanted);
                }
            }
        }
        drift
    }

    /// The writes that make the table agree with the recompute: drifted aggregates with their
    /// recomputed values, and ledgers reset to the contribution just counted, so that stream
    /// records written before the scan but applied after it are measured from what was counted.
    /// Items written under other rules are rewritten under these, drifted or not.
    pub fn backfill_plan(&self) -> (Vec<AggregateWrite>, Vec<LedgerWrite>) {
        let expected = self.recompute.aggregates();
        let drifted: BTreeSet<(String, String)> = self.drift().into_iter().map(|drift| (drift.pk, drift.sk)).collect();
        let foreign = |key: &AggregateKey| self.stored.get(key).is_some_and(|scanned| scanned.foreign);
        let aggregates = self
            .aggregate_keys(&expected)
            .into_iter()
            .filter(|key| drifted.contains(&(key.pk.clone(), key.sk.clone())) || foreign(key))
            .map(|key| {
                let values = expected.get(key).cloned().unwrap_or_else(|| AggregateValues::zero(self.rules(), key.kind));
                let version = self.stored.get(key).map(|scanned| scanned.stored.version);
                AggregateWrite {
                    key: key.clone(),
                    expected_version: version,
                    stored: StoredAggregate { values, version: next_version(version) },
                }
            })
            .collect();
        let zero = SequenceNumber::zero();
        let mut ledgers = Vec::new();
        for (item, contribution) in &self.contributions {
            let existing = self.ledgers.get(item);
            // An assumption is cleared too: backfill has just counted the item exactly, so a later
            // redrive of an older record must not correct anything.
            let current = existing.is_some_and(|ledger| &ledger.contribution == contribution && ledger.assumed.is_none());
            if current && !self.foreign_ledgers.contains(item) {
                continue;
            }
            let sequence = existing.map_or(zero.clone(), |ledger| ledger.sequence.clone());
            ledgers.push(LedgerWrite {
                item: item.clone(),
                expected_version: existing.map(|ledger| ledger.version),
                ledger: Ledger {
                    version: next_version(existing.map(|ledger| ledger.version)),
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
                let holds = !ledger.contribution.is_empty() || ledger.assumed.is_some() || self.foreign_ledgers.contains(*item);
                !self.contributions.contains_key(*item) && holds
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
pub fn needs_ledger(assessment: &RuleAssessment<'_>) -> bool {
    match assessment {
        RuleAssessment::Source { entity, .. } => entity.contributes(),
        RuleAssessment::Rejected { .. } => true,
        RuleAssessment::Unknown | RuleAssessment::Absent => false,
    }
}

#[cfg(test)]
mod tests {
    use aggregates::Number;

    use super::*;

    fn rules() -> &'static Rules {
        Rules::university()
    }

    fn course() -> AggregateKey {
        rules().parse_key("course#c1", "stats").unwrap()
    }

    fn item(sk: &str) -> ItemKey {
        ItemKey { pk: "course#c1".into(), sk: sk.into() }
    }

    fn enrollment() -> Deltas {
        let mut deltas = Deltas::new();
        deltas.add(course(), rules().field("enrollmentCount").unwrap(), &Number::one());
        deltas
    }

    fn ledger(version: u64) -> Ledger {
        Ledger { version, sequence: SequenceNumber::parse("42").unwrap(), contribution: enrollment(), assumed: None }
    }

    #[test]
    fn only_the_streams_ledger_writes_date_the_processor_and_verify_keeps_no_ledgers() {
        let mut audit = Audit::new(rules(), Keep::Aggregates);
        let scanned = |by_backfill, at: &str| {
            let updated_at = Some(at.to_owned());
            let rules_digest = rules().digest().to_owned();
            TableItem::Ledger(ScannedLedger {
                source: item("student#s1"),
                ledger: ledger(1),
                by_backfill,
                backfill_run: None,
                updated_at,
                rules_digest,
            })
        };
        audit.add(scanned(false, "2026-01-01T00:00:00.000Z"));
        audit.add(scanned(true, "2026-01-02T00:00:00.000Z"));
        assert_eq!(audit.latest_ledger_write.as_deref(), Some("2026-01-01T00:00:00.000Z"));
        assert!(audit.ledgers.is_empty());
        assert_eq!(audit.scanned, 2);
    }

    #[test]
    fn stored_averages_compare_as_numbers() {
        let key = course();
        let stored = StoredAggregate { values: AggregateValues::zero(rules(), key.kind), version: 1 };
        let mut audit = Audit::new(rules(), Keep::Aggregates);
        let (averages, rules_digest) = (vec![Some("91.50".into())], rules().digest().to_owned());
        audit.add(TableItem::Aggregate { key: key.clone(), stored, averages, rules_digest });
        assert_eq!(audit.stored[&key].averages, vec![Some("91.5".to_owned())]);
        assert!(audit.other_rules.is_empty());
    }

    #[test]
    fn items_written_under_other_rules_are_counted_and_rewritten() {
        let mut audit = Audit::new(rules(), Keep::Items);
        let counted = rules().assess(Some(
            &serde_json::from_value(serde_json::json!({
                "pk": {"S": "course#c1"}, "sk": {"S": "student#s1"}, "entityType": {"S": "student"}, "studentID": {"S": "s1"}
            }))
            .unwrap(),
        ));
        let contribution = counted.contribution().clone();
        audit.recompute.totals.merge(&contribution);
        // Right as stored, but written under other rules.
        let values = audit.recompute.aggregates()[&course()].clone();
        let stored = StoredAggregate { values, version: 1 };
        audit.add(TableItem::Aggregate { key: course(), stored, averages: vec![None], rules_digest: "0123456789abcdef".into() });
        assert!(!audit.drift().iter().any(|drift| drift.pk == "course#c1"));
        audit.contributions.insert(item("student#s1"), contribution.clone());
        let scanned = ScannedLedger {
            source: item("student#s1"),
            ledger: Ledger { version: 7, sequence: SequenceNumber::parse("42").unwrap(), contribution, assumed: None },
            by_backfill: false,
            backfill_run: None,
            updated_at: None,
            rules_digest: "0123456789abcdef".into(),
        };
        audit.add(TableItem::Ledger(scanned));
        assert_eq!(audit.other_rules, BTreeMap::from([("0123456789abcdef".to_owned(), 2)]));
        let (aggregates, ledgers) = audit.backfill_plan();
        assert!(aggregates.iter().any(|write| write.key == course()), "rewritten under these rules though it did not drift");
        assert_eq!(ledgers.len(), 1, "its contribution is right, but it was written under other rules");
        assert_eq!(ledgers[0].expected_version, Some(7));
    }

    /// A table written by a release before the canonical digest encoding carries the
    /// university's digest as it was then: still the university rules'.
    #[test]
    fn items_carrying_the_legacy_university_digest_were_written_under_the_university_rules() {
        let mut audit = Audit::new(rules(), Keep::Items);
        let legacy = "9e265a763e0180ce";
        assert_ne!(rules().digest(), legacy);
        let stored = StoredAggregate { values: AggregateValues::zero(rules(), course().kind), version: 1 };
        audit.add(TableItem::Aggregate { key: course(), stored, averages: vec![None], rules_digest: legacy.into() });
        let scanned = ScannedLedger {
            source: item("student#s1"),
            ledger: ledger(3),
            by_backfill: false,
            backfill_run: None,
            updated_at: None,
            rules_digest: legacy.into(),
        };
        audit.add_ledger_of_slice(scanned.clone());
        audit.add(TableItem::Ledger(scanned.clone()));
        assert!(audit.other_rules.is_empty(), "{:?}", audit.other_rules);
        assert!(!audit.stored[&course()].foreign);
        assert!(audit.foreign_ledgers.is_empty());
        // Under other rules it is the university's, and counted.
        let learning = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/rules/learning.toml")).unwrap();
        let learning = Rules::from_toml(&learning, "learning.toml").unwrap();
        let mut audit = Audit::new(&learning, Keep::Aggregates);
        audit.add(TableItem::Ledger(scanned));
        assert_eq!(audit.other_rules, BTreeMap::from([(legacy.to_owned(), 1)]));
    }

    #[test]
    fn a_whole_table_backfill_empties_every_ledger_whose_item_it_did_not_count() {
        let mut audit = Audit::new(rules(), Keep::Items);
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
        let mut audit = Audit::new(rules(), Keep::Items);
        audit.ledgers.insert(item("student#elsewhere"), ledger(2));
        audit.ledger_runs.insert(item("student#elsewhere"), "r1".into());
        assert!(audit.orphan_ledgers(Some("r1")).is_empty(), "counted in the other worker's slice");
        assert_eq!(audit.orphan_ledgers(Some("r2")).len(), 1, "reset by an earlier run: still to be judged");
        assert_eq!(audit.orphan_ledgers(None).len(), 1);
    }
}
