//! A property test over rules files themselves: random files within the format (overlapping
//! and disjoint templates, entities matched by type and by keys, conditions, date buckets,
//! digit budgets, fan-out; `tests/support/generated_rules.rs`) and random application
//! histories for them. For every generated file, either `rules check` refuses it, or, with the
//! history's records delivered at least once through `decode_batch` and `Engine::process`:
//!
//! - (a) every aggregate the table holds equals a recompute from the application's final items
//!   (each assessed by the rules, contributions summed; absent and all-zero alike), averages
//!   included;
//! - (b) every application item is exactly what the application last wrote: tally modified,
//!   deleted or overwrote none, and every item tally wrote is one it can read back as its own;
//! - (c) no batch failed for good, except for records the engine refused because an
//!   application item squats an aggregate key they feed (those keys, and the keys the refused
//!   items feed, are left out of (a); the squatter must be untouched).
//!
//! The in-memory run (`MemoryTable`, behind DynamoDB's limits of 100 actions per transaction and
//! 2,048/1,024 bytes per key) needs no server; a sample of the accepted files runs on DynamoDB
//! Local with the `dynamodb-local` feature. `TALLY_RULES_CASES` sets the number of files
//! (default 400), `TALLY_RULES_SEED` the seed (default fixed: the default run is the same every
//! time), `TALLY_RULES_DDB_CASES` the DynamoDB Local sample (default 6).

#[allow(dead_code)]
#[path = "../aggregates/tests/examples_support/mod.rs"]
mod examples_support;

#[allow(dead_code)]
#[path = "support/generated_rules.rs"]
mod generated;

#[path = "support/stream_records.rs"]
mod stream_records;

#[cfg(feature = "dynamodb-local")]
mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aggregates::rules::{RuleAssessment, Rules, RulesErrors};
use aggregates::{AggregateKey, Deltas, Number};
use aws_lambda_events::event::dynamodb::EventRecord;
use aws_sdk_dynamodb::types::AttributeValue as SdkValue;
use examples_support::delivery::schedule;
use examples_support::dice::Dice;
use examples_support::workload::Key;
use generated::{FileSpec, History, Mode, SAFETY_REASONS};
use stream_records::event_record;
use tally_engine::decode::decode_batch;
use tally_engine::items::ItemKey;
use tally_engine::outcome::RecordClass;
use tally_engine::registry::LEDGER;
use tally_engine::store::error::Failure;
use tally_engine::store::{Commit, Found, MemoryTable, SdkItem, Store, StoreError, Usage};
use tally_engine::Engine;

const DEFAULT_CASES: usize = 400;
const DEFAULT_SEED: u64 = 0x7A11_7E57_2026;

fn env_number<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|value| value.trim().parse().ok())
}

fn cases() -> usize {
    env_number("TALLY_RULES_CASES").unwrap_or(DEFAULT_CASES)
}

fn base_seed() -> u64 {
    env_number("TALLY_RULES_SEED").unwrap_or(DEFAULT_SEED)
}

/// The seeds of one case: the file, its history, its delivery.
fn case_seeds(case: usize) -> (u64, u64, u64) {
    let mut dice = Dice::new(base_seed() ^ (case as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    (dice.next_u64(), dice.next_u64(), dice.next_u64())
}

/// What `rules check` made of a file.
enum Verdict {
    Accepted(&'static Rules),
    /// Refused; the safety reasons of its problems (empty: an ordinary format error).
    Refused(BTreeSet<&'static str>, RulesErrors),
}

fn check_file(spec: &FileSpec) -> Verdict {
    match Rules::from_toml(&spec.toml(), "generated.toml") {
        // Each accepted file's rules live for the rest of the test, as a process's do.
        Ok(rules) => Verdict::Accepted(Box::leak(Box::new(rules))),
        Err(errors) => {
            let reasons = errors.errors.iter().filter_map(|error| error.problem.safety_reason()).collect();
            Verdict::Refused(reasons, errors)
        }
    }
}

// --- DynamoDB's limits, in front of the in-memory table ---------------------------------------

/// A table that refuses what DynamoDB refuses for good and `MemoryTable` does not model: a
/// transaction of more than 100 actions, a key over 2,048 (pk) or 1,024 (sk) bytes.
struct Limited {
    table: MemoryTable,
    ledger_prefix: String,
}

impl Limited {
    fn new(rules: &'static Rules) -> Self {
        Limited { table: MemoryTable::new("generated", Arc::new(rules.clone())), ledger_prefix: LEDGER.pk_prefix(rules.table()) }
    }
}

fn too_long(pk: &str, sk: &str) -> bool {
    pk.len() > 2048 || sk.len() > 1024
}

fn refused(operation: &'static str, message: String) -> StoreError {
    StoreError::Refused(Failure::new(operation, format!("ValidationException: {message}")))
}

impl Store for Limited {
    fn table_name(&self) -> &str {
        self.table.table_name()
    }

    async fn read(&self, sources: &[ItemKey], aggregates: &[AggregateKey]) -> Result<Found, StoreError> {
        let ledgers = sources.iter().map(|source| (format!("{}{}", self.ledger_prefix, source.pk), source.sk.clone()));
        if ledgers.chain(aggregates.iter().map(|key| (key.pk.clone(), key.sk.clone()))).any(|(pk, sk)| too_long(&pk, &sk)) {
            return Err(refused("BatchGetItem", "a key is over DynamoDB's limits".into()));
        }
        self.table.read(sources, aggregates).await
    }

    async fn commit(&self, commit: Commit<'_>) -> Result<(), StoreError> {
        let actions = commit.ledgers.len() + commit.aggregates.len();
        if actions > 100 {
            return Err(refused("TransactWriteItems", format!("{actions} actions, over DynamoDB's 100")));
        }
        let ledgers = commit.ledgers.iter().map(|write| (format!("{}{}", self.ledger_prefix, write.item.pk), write.item.sk.clone()));
        if ledgers
            .chain(commit.aggregates.iter().map(|write| (write.key.pk.clone(), write.key.sk.clone())))
            .any(|(pk, sk)| too_long(&pk, &sk))
        {
            return Err(refused("TransactWriteItems", "a key is over DynamoDB's limits".into()));
        }
        self.table.commit(commit).await
    }

    fn usage(&self) -> Usage {
        self.table.usage()
    }
}

// --- Where a case runs ------------------------------------------------------------------------

/// The table a case runs on: the application's writes, the engine, and the table's items.
trait Backend {
    type T: Store;
    fn engine(&self) -> &Engine<Self::T>;
    fn name(&self) -> &str;
    async fn put(&self, key: &Key, item: SdkItem);
    async fn delete(&self, key: &Key);
    /// Deletes every ledger, as TTL does 48 h after each one's last write.
    async fn expire_ledgers(&self) -> usize;
    async fn items(&self) -> HashMap<Key, SdkItem>;
}

struct Memory {
    engine: Engine<Limited>,
}

impl Backend for Memory {
    type T = Limited;

    fn engine(&self) -> &Engine<Limited> {
        &self.engine
    }

    fn name(&self) -> &str {
        "generated"
    }

    async fn put(&self, key: &Key, item: SdkItem) {
        self.engine.store().table.put_item(ItemKey { pk: key.0.clone(), sk: key.1.clone() }, item);
    }

    async fn delete(&self, key: &Key) {
        self.engine.store().table.delete_item(&ItemKey { pk: key.0.clone(), sk: key.1.clone() });
    }

    async fn expire_ledgers(&self) -> usize {
        let table = self.engine.store();
        let ledgers: Vec<ItemKey> = table.table.items().into_keys().filter(|key| key.pk.starts_with(&table.ledger_prefix)).collect();
        for key in &ledgers {
            table.table.delete_item(key);
        }
        ledgers.len()
    }

    async fn items(&self) -> HashMap<Key, SdkItem> {
        self.engine.store().table.items().into_iter().map(|(key, item)| ((key.pk, key.sk), item)).collect()
    }
}

// --- One case ---------------------------------------------------------------------------------

/// What one case exercised.
#[derive(Debug, Default, Clone)]
struct Exercised {
    records: usize,
    deliveries: usize,
    repeats: usize,
    batches: usize,
    applied: u64,
    already_applied: u64,
    refused_records: u64,
    expired_ledgers: usize,
    squatters: usize,
    aggregates_checked: usize,
    rejected: BTreeMap<String, u64>,
}

impl Exercised {
    fn add(&mut self, other: &Exercised) {
        self.records += other.records;
        self.deliveries += other.deliveries;
        self.repeats += other.repeats;
        self.batches += other.batches;
        self.applied += other.applied;
        self.already_applied += other.already_applied;
        self.refused_records += other.refused_records;
        self.expired_ledgers += other.expired_ledgers;
        self.squatters += other.squatters;
        self.aggregates_checked += other.aggregates_checked;
        for (reason, count) in &other.rejected {
            *self.rejected.entry(reason.clone()).or_default() += count;
        }
    }
}

/// A property a case broke: its kind (for grouping and shrinking) and what was seen.
#[derive(Debug, Clone)]
struct Broken {
    kind: &'static str,
    detail: String,
}

fn broken(kind: &'static str, detail: String) -> Broken {
    Broken { kind, detail }
}

/// An attribute as compared: numbers normalized (DynamoDB writes `12.50` back as `12.5`).
fn comparable(value: &SdkValue) -> String {
    match value {
        SdkValue::N(text) => match text.parse::<Number>() {
            Ok(number) => format!("N:{number}"),
            Err(_) => format!("N:{text}"),
        },
        other => format!("{other:?}"),
    }
}

fn comparable_item(item: &SdkItem) -> BTreeMap<String, String> {
    item.iter().map(|(name, value)| (name.clone(), comparable(value))).collect()
}

fn short(text: &str) -> String {
    if text.len() > 48 {
        format!("{}…({} bytes)", &text[..24.min(text.len())], text.len())
    } else {
        text.to_owned()
    }
}

fn show_key(pk: &str, sk: &str) -> String {
    format!("`{}` / `{}`", short(pk), short(sk))
}

async fn run_case<B: Backend>(
    backend: &B,
    rules: &'static Rules,
    history: &History,
    delivery_seed: u64,
    expire: bool,
) -> (Exercised, Vec<Broken>) {
    let mut exercised = Exercised { squatters: history.squatters.len(), ..Exercised::default() };
    let mut problems = Vec::new();
    let mut dice = Dice::new(delivery_seed);
    // Source items with records the engine refused, and what each refusal said.
    let mut refused_items: BTreeMap<Key, String> = BTreeMap::new();
    let workload = &history.workload;
    exercised.records = workload.records.len();
    'epochs: for (epoch, records) in workload.epochs().into_iter().enumerate() {
        if epoch == 1 && expire {
            exercised.expired_ledgers += backend.expire_ledgers().await;
        }
        // The application's writes of the epoch land before their records are delivered.
        for record in records {
            match &record.new {
                Some(item) => backend.put(&record.key, item.clone().into()).await,
                None => backend.delete(&record.key).await,
            }
        }
        let schedule = schedule(records, &mut dice);
        exercised.deliveries += schedule.deliveries.len();
        exercised.repeats += schedule.repeats().into_iter().filter(|repeat| *repeat).count();
        let mut rest: &[usize] = &schedule.deliveries;
        while !rest.is_empty() {
            let (batch, after) = rest.split_at(dice.between(1, 25).min(rest.len()));
            rest = after;
            exercised.batches += 1;
            let events: Vec<EventRecord> = batch.iter().map(|&index| event_record(rules, backend.name(), &records[index])).collect();
            let changes = match decode_batch(&events, backend.name(), rules) {
                Ok(changes) => changes,
                Err(err) => {
                    problems.push(broken("batch_failed", format!("the batch does not decode: {err}")));
                    break 'epochs;
                }
            };
            let outcome = backend.engine().process(&changes, tokio::time::Instant::now() + Duration::from_secs(3)).await;
            exercised.applied += outcome.count_of(RecordClass::Applied);
            exercised.already_applied += outcome.count_of(RecordClass::AlreadyApplied);
            exercised.refused_records += outcome.count_of(RecordClass::Refused);
            for (reason, count) in &outcome.rejected {
                *exercised.rejected.entry((*reason).to_owned()).or_default() += count;
            }
            if let Some(failure) = &outcome.failure {
                for item in &failure.refused {
                    refused_items.entry((item.key.pk.clone(), item.key.sk.clone())).or_insert_with(|| item.cause.to_string());
                }
                if let Some(cause) = &failure.cause {
                    problems.push(broken("batch_failed", format!("a batch failed for good from record {}: {cause}", failure.from)));
                    break 'epochs;
                }
            }
        }
    }
    let items = backend.items().await;
    problems.extend(judge(rules, history, &refused_items, &items, expire, &mut exercised));
    (exercised, problems)
}

/// (a), (b) and (c) on the table's items at the end of a case.
fn judge(
    rules: &'static Rules,
    history: &History,
    refused_items: &BTreeMap<Key, String>,
    items: &HashMap<Key, SdkItem>,
    expired: bool,
    exercised: &mut Exercised,
) -> Vec<Broken> {
    let mut problems = Vec::new();
    let table = rules.table();
    let final_items = &history.workload.items;
    let ledger_prefix = LEDGER.pk_prefix(table);

    // (b) Every application item as the application last wrote it.
    for (key, item) in final_items {
        let expected: SdkItem = item.clone().into();
        match items.get(key) {
            None => problems.push(broken("app_item_changed", format!("application item {} was deleted", show_key(&key.0, &key.1)))),
            Some(stored) if comparable_item(stored) != comparable_item(&expected) => {
                let written_by_tally = stored.get(table.type_attribute()) != expected.get(table.type_attribute());
                problems.push(broken(
                    "app_item_changed",
                    format!(
                        "application item {} was modified{}",
                        show_key(&key.0, &key.1),
                        if written_by_tally { " (overwritten by a tally item)" } else { "" }
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    // Every other item is tally's, at a key tally reads back as its own.
    let mut stored_aggregates: BTreeMap<(String, String), (String, SdkItem)> = BTreeMap::new();
    for (key, item) in items {
        if final_items.contains_key(key) {
            continue;
        }
        if key.0.starts_with(&ledger_prefix) {
            continue;
        }
        match rules.parse_key(&key.0, &key.1) {
            Some(aggregate) => {
                let kind = rules.aggregate(aggregate.kind).name().to_owned();
                let typed = matches!(item.get(table.type_attribute()), Some(SdkValue::S(name)) if *name == kind);
                if !typed {
                    problems.push(broken(
                        "aggregate_kind",
                        format!(
                            "the item at {} is read as `{kind}` but carries type {:?}: two aggregates share the key",
                            show_key(&key.0, &key.1),
                            item.get(table.type_attribute())
                        ),
                    ));
                }
                stored_aggregates.insert(key.clone(), (kind, item.clone()));
            }
            None => problems.push(broken(
                "unreadable_tally_item",
                format!(
                    "tally wrote an item at {} (type {:?}), a key its rules do not read back as an aggregate",
                    show_key(&key.0, &key.1),
                    item.get(table.type_attribute())
                ),
            )),
        }
    }

    // (c) Refusals only for squatters.
    let squatted: BTreeSet<(String, String)> = history.squatters.iter().cloned().collect();
    let mut excluded: BTreeSet<(String, String)> = squatted.clone();
    let touched = |image: Option<&serde_dynamo::Item>| -> Vec<(String, String)> {
        rules.assess(image).contribution().keys().map(|key| (key.pk.clone(), key.sk.clone())).collect()
    };
    for (item, cause) in refused_items {
        let keys: BTreeSet<(String, String)> = history
            .workload
            .records
            .iter()
            .filter(|record| record.key == *item)
            .flat_map(|record| touched(record.old.as_ref()).into_iter().chain(touched(record.new.as_ref())))
            .collect();
        if !keys.iter().any(|key| squatted.contains(key)) {
            problems.push(broken(
                "refused_for_good",
                format!(
                    "the records of item {} were refused for good, though no application item squats a key they feed: {cause}",
                    show_key(&item.0, &item.1)
                ),
            ));
        }
        excluded.extend(keys);
    }
    if !expired {
        // Without expired ledgers, an item whose final image adds to a squatted key cannot have
        // had its last record applied.
        for (key, item) in final_items {
            if touched(Some(item)).iter().any(|aggregate| squatted.contains(aggregate)) && !refused_items.contains_key(key) {
                problems.push(broken(
                    "squatter_not_refused",
                    format!(
                        "item {} adds to a squatted aggregate key, and none of its records was reported refused",
                        show_key(&key.0, &key.1)
                    ),
                ));
            }
        }
    }

    // (a) Aggregates against a recompute from the application's final items.
    let mut totals = Deltas::new();
    for item in final_items.values() {
        if let RuleAssessment::Source { contribution, .. } = rules.assess(Some(item)) {
            totals.merge(&contribution);
        }
    }
    let mut expected: BTreeMap<(String, String), (String, BTreeMap<String, Number>)> = BTreeMap::new();
    for (key, field, amount) in totals.iter() {
        let kind = rules.aggregate(key.kind).name().to_owned();
        let entry = expected.entry((key.pk.clone(), key.sk.clone())).or_insert_with(|| (kind.clone(), BTreeMap::new()));
        if entry.0 != kind {
            problems.push(broken(
                "aggregate_kind",
                format!("aggregates `{}` and `{kind}` both add to {}", entry.0, show_key(&key.pk, &key.sk)),
            ));
        }
        entry.1.insert(rules.field_name(field).to_owned(), amount.clone());
    }
    let keys: BTreeSet<&(String, String)> = expected.keys().chain(stored_aggregates.keys()).collect();
    for key in keys {
        if excluded.contains(key) {
            continue;
        }
        exercised.aggregates_checked += 1;
        let want = expected.get(key).map(|(_, fields)| fields.clone()).unwrap_or_default();
        let (have, average_problems) = match stored_aggregates.get(key) {
            None => (BTreeMap::new(), Vec::new()),
            Some((kind, item)) => stored_fields(rules, kind, item),
        };
        let kind_of = |key: &(String, String)| {
            expected
                .get(key)
                .map(|(kind, _)| kind.clone())
                .or_else(|| stored_aggregates.get(key).map(|(kind, _)| kind.clone()))
                .unwrap_or_default()
        };
        if want != have {
            let show = |fields: &BTreeMap<String, Number>| {
                let parts: Vec<String> = fields.iter().map(|(field, amount)| format!("{field}={amount}")).collect();
                format!("{{{}}}", parts.join(", "))
            };
            problems.push(broken(
                "aggregate_drift",
                format!(
                    "aggregate {} ({}) holds {} but the application's items add up to {}",
                    show_key(&key.0, &key.1),
                    kind_of(key),
                    show(&have),
                    show(&want)
                ),
            ));
        }
        problems.extend(average_problems);
    }
    problems
}

/// A stored aggregate's non-zero counters and sums, and problems with its averages.
fn stored_fields(rules: &Rules, kind: &str, item: &SdkItem) -> (BTreeMap<String, Number>, Vec<Broken>) {
    let mut fields = BTreeMap::new();
    let mut problems = Vec::new();
    let Some(aggregate) = rules.aggregates().iter().find(|aggregate| aggregate.name() == kind) else { return (fields, problems) };
    let read = |name: &str| match item.get(name) {
        Some(SdkValue::N(text)) => text.parse::<Number>().ok(),
        _ => None,
    };
    for field in aggregate.fields() {
        let name = rules.field_name(field);
        match read(name) {
            Some(value) if !value.is_zero() => drop(fields.insert(name.to_owned(), value)),
            Some(_) => {}
            None if item.contains_key(name) => {
                problems.push(broken("aggregate_drift", format!("field `{name}` of a `{kind}` is not a number")))
            }
            None => {}
        }
    }
    for average in aggregate.averages() {
        let value = |field| read(rules.field_name(field)).unwrap_or_default();
        let want = average.value(&value(average.sum()), &value(average.count()));
        let have = read(average.name());
        if want != have {
            problems.push(broken(
                "aggregate_drift",
                format!("average `{}` of a `{kind}` is {have:?}, its fields give {want:?}", average.name()),
            ));
        }
    }
    (fields, problems)
}

// --- The suite --------------------------------------------------------------------------------

/// One generated case, reproducible from its number.
struct Case {
    number: usize,
    spec: FileSpec,
    ops: usize,
    history_seed: u64,
    delivery_seed: u64,
    expire: bool,
}

fn make_case(number: usize) -> Case {
    let (file_seed, history_seed, delivery_seed) = case_seeds(number);
    let spec = generated::generate(file_seed, Mode::of_case(number));
    let mut dice = Dice::new(delivery_seed ^ 1);
    Case { number, spec, ops: dice.between(20, 80), history_seed, delivery_seed, expire: dice.chance(50) }
}

fn run_in_memory(runtime: &tokio::runtime::Runtime, case: &Case, spec: &FileSpec, ops: usize) -> Option<(Exercised, Vec<Broken>)> {
    let Verdict::Accepted(rules) = check_file(spec) else { return None };
    let history = generated::history(spec, rules, case.history_seed, ops);
    let backend = Memory { engine: Engine::new(Arc::new(rules.clone()), Limited::new(rules)) };
    Some(runtime.block_on(run_case(&backend, rules, &history, case.delivery_seed, case.expire)))
}

/// Shrinks a failing file (and its history's length) while it is still accepted and still
/// breaks `kind`: pieces are dropped one at a time, greedily.
fn shrink(runtime: &tokio::runtime::Runtime, case: &Case, kind: &'static str, until: Instant) -> (FileSpec, usize) {
    let still_fails = |spec: &FileSpec, ops: usize| {
        run_in_memory(runtime, case, spec, ops).is_some_and(|(_, problems)| problems.iter().any(|problem| problem.kind == kind))
    };
    let (mut best, mut ops) = (case.spec.clone(), case.ops);
    let mut progress = true;
    while progress && Instant::now() < until {
        progress = false;
        let mut candidates: Vec<FileSpec> = Vec::new();
        // Halves and quarters of the aggregates first (a fan-out file has fifty).
        for parts in [2, 4] {
            let chunk = best.aggregates.len() / parts;
            for part in 0..parts {
                if chunk > 1 {
                    let mut spec = best.clone();
                    spec.aggregates.drain(part * chunk..(part + 1) * chunk);
                    candidates.push(spec);
                }
            }
        }
        for index in 0..best.entities.len() {
            let mut spec = best.clone();
            spec.entities.remove(index);
            candidates.push(spec);
        }
        for index in 0..best.aggregates.len() {
            let mut spec = best.clone();
            spec.aggregates.remove(index);
            candidates.push(spec);
        }
        for (entity, declared) in best.entities.iter().enumerate() {
            for index in 0..declared.contributions.len() {
                let mut spec = best.clone();
                spec.entities[entity].contributions.remove(index);
                candidates.push(spec);
                let mut spec = best.clone();
                let contribution = &mut spec.entities[entity].contributions[index];
                if contribution.present.take().is_some() || !std::mem::take(&mut contribution.equals).is_empty() {
                    candidates.push(spec);
                }
                if declared.contributions[index].add.len() > 1 {
                    let mut spec = best.clone();
                    spec.entities[entity].contributions[index].add.pop();
                    candidates.push(spec);
                }
            }
            for index in 0..declared.attributes.len() {
                let mut spec = best.clone();
                spec.entities[entity].attributes.remove(index);
                candidates.push(spec);
            }
        }
        for (aggregate, declared) in best.aggregates.iter().enumerate() {
            if !declared.averages.is_empty() {
                let mut spec = best.clone();
                spec.aggregates[aggregate].averages.clear();
                candidates.push(spec);
            }
            if declared.counters.len() + declared.sums.len() > 1 {
                for sums in [true, false] {
                    let mut spec = best.clone();
                    let fields = if sums { &mut spec.aggregates[aggregate].sums } else { &mut spec.aggregates[aggregate].counters };
                    if fields.pop().is_some() {
                        candidates.push(spec);
                    }
                }
            }
        }
        if !best.table.reserved.is_empty() || best.table.ttl.is_some() {
            let mut spec = best.clone();
            spec.table.reserved.clear();
            spec.table.ttl = None;
            candidates.push(spec);
        }
        for mut spec in candidates {
            spec.prune();
            if spec != best && still_fails(&spec, ops) {
                best = spec;
                progress = true;
                break;
            }
        }
        if !progress && ops > 1 {
            for fewer in [ops / 2, ops * 3 / 4, ops - 1] {
                if fewer >= 1 && fewer < ops && still_fails(&best, fewer) {
                    ops = fewer;
                    progress = true;
                    break;
                }
            }
        }
    }
    (best, ops)
}

#[derive(Default)]
struct Tallies {
    generated: usize,
    refused: BTreeMap<&'static str, usize>,
    refused_format: usize,
    accepted: usize,
    by_mode: BTreeMap<&'static str, (usize, usize)>,
    exercised: Exercised,
    failed_cases: Vec<(usize, Vec<Broken>)>,
    format_examples: Vec<String>,
}

#[test]
fn generated_rules_files_are_refused_or_keep_aggregates_exact() {
    let started = Instant::now();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let cases = cases();
    let mut tallies = Tallies::default();
    let mut cases_kept: BTreeMap<usize, Case> = BTreeMap::new();
    for number in 0..cases {
        let case = make_case(number);
        tallies.generated += 1;
        let mode = case.spec.mode.name();
        let by_mode = tallies.by_mode.entry(mode).or_default();
        by_mode.0 += 1;
        match check_file(&case.spec) {
            Verdict::Refused(reasons, errors) => {
                if reasons.is_empty() {
                    tallies.refused_format += 1;
                    if tallies.format_examples.len() < 3 {
                        tallies.format_examples.push(format!("case {number}: {errors}"));
                    }
                }
                for reason in reasons {
                    *tallies.refused.entry(reason).or_default() += 1;
                }
            }
            Verdict::Accepted(_) => {
                tallies.accepted += 1;
                by_mode.1 += 1;
                let (exercised, problems) = run_in_memory(&runtime, &case, &case.spec, case.ops).expect("accepted");
                tallies.exercised.add(&exercised);
                if !problems.is_empty() {
                    tallies.failed_cases.push((number, problems));
                    cases_kept.insert(number, case);
                }
            }
        }
    }
    let elapsed = started.elapsed();

    // The report.
    println!("rules_generated: {} files generated (seed {:#x}), {elapsed:.1?}", tallies.generated, base_seed());
    let refused: usize = tallies.generated - tallies.accepted;
    println!("  refused     {refused}");
    for reason in SAFETY_REASONS {
        println!("    {reason:<26} {}", tallies.refused.get(reason).copied().unwrap_or(0));
    }
    println!("    {:<26} {}", "format", tallies.refused_format);
    println!("  accepted and run  {}", tallies.accepted);
    for (mode, (generated, accepted)) in &tallies.by_mode {
        println!("    {mode:<26} {accepted} of {generated} accepted");
    }
    let exercised = &tallies.exercised;
    println!(
        "  records {}, deliveries {}, repeats {}, batches {}, applied {}, already applied {}, refused {}, expired ledgers {}, squatters {}, aggregates checked {}",
        exercised.records,
        exercised.deliveries,
        exercised.repeats,
        exercised.batches,
        exercised.applied,
        exercised.already_applied,
        exercised.refused_records,
        exercised.expired_ledgers,
        exercised.squatters,
        exercised.aggregates_checked
    );
    println!("  rejected images by reason: {:?}", exercised.rejected);
    for example in &tallies.format_examples {
        println!("  format refusal: {example}");
    }

    // Failures, by kind, with the first case of each kind shrunk.
    let mut by_kind: BTreeMap<&'static str, Vec<usize>> = BTreeMap::new();
    for (number, problems) in &tallies.failed_cases {
        let kinds: BTreeSet<&'static str> = problems.iter().map(|problem| problem.kind).collect();
        for kind in kinds {
            by_kind.entry(kind).or_default().push(*number);
        }
    }
    if !tallies.failed_cases.is_empty() {
        println!("\n{} of {} accepted files broke a property:", tallies.failed_cases.len(), tallies.accepted);
        for (kind, numbers) in &by_kind {
            println!("  {kind:<24} {} file(s): cases {:?}", numbers.len(), numbers.iter().take(12).collect::<Vec<_>>());
        }
        let shrinking_until = Instant::now() + Duration::from_secs(40);
        for (kind, numbers) in &by_kind {
            let case = &cases_kept[&numbers[0]];
            let problems = &tallies.failed_cases.iter().find(|(number, _)| *number == case.number).expect("kept").1;
            println!("\n--- {kind}: case {} ({} file), first problems:", case.number, case.spec.mode.name());
            for problem in problems.iter().filter(|problem| problem.kind == *kind).take(3) {
                println!("  {}", problem.detail);
            }
            // At most 10 s per kind, 40 s in all: a failing run stays bounded.
            let until = (Instant::now() + Duration::from_secs(10)).min(shrinking_until);
            let (spec, ops) = shrink(&runtime, case, kind, until);
            let (_, shrunk_problems) = run_in_memory(&runtime, case, &spec, ops).expect("the shrunk file is accepted");
            let rules = match check_file(&spec) {
                Verdict::Accepted(rules) => rules,
                Verdict::Refused(..) => unreachable!("the shrunk file was accepted"),
            };
            let history = generated::history(&spec, rules, case.history_seed, ops);
            let squatters: Vec<String> = history.squatters.iter().map(generated::describe_key).collect();
            println!("  shrunk to {ops} writes (squatters: {squatters:?}); then:");
            for problem in shrunk_problems.iter().filter(|problem| problem.kind == *kind).take(2) {
                println!("  {}", problem.detail);
            }
            println!("{}", spec.toml());
        }
    }

    assert!(
        tallies.failed_cases.is_empty(),
        "{} accepted file(s) broke a property ({:?}); see the report above",
        tallies.failed_cases.len(),
        by_kind.iter().map(|(kind, numbers)| (kind, numbers.len())).collect::<Vec<_>>()
    );
    assert!(
        tallies.accepted * 3 >= tallies.generated,
        "only {} of {} generated files were accepted: the generator must keep at least a third runnable",
        tallies.accepted,
        tallies.generated
    );
    if cases >= DEFAULT_CASES {
        let missed: Vec<&str> = SAFETY_REASONS.iter().copied().filter(|reason| !tallies.refused.contains_key(reason)).collect();
        assert!(missed.is_empty(), "no generated file was refused for {missed:?}: the generator must reach every safety reason");
    }
}

// --- A sample on DynamoDB Local ----------------------------------------------------------------

#[cfg(feature = "dynamodb-local")]
mod on_dynamodb_local {
    use super::*;
    use aws_sdk_dynamodb::Client as DynamoDbClient;
    use tally_engine::store::{connect, schema, DynamoTable};

    /// A table created from the generated rules, as `tally init` creates it.
    pub(super) struct Dynamo {
        pub engine: Engine<DynamoTable>,
        /// The application's own client, for its writes.
        client: DynamoDbClient,
    }

    impl Dynamo {
        fn table(&self) -> &DynamoTable {
            self.engine.store()
        }

        fn key(&self, key: &Key) -> HashMap<String, SdkValue> {
            let rules = self.engine.rules().table();
            HashMap::from([(rules.pk().to_owned(), SdkValue::S(key.0.clone())), (rules.sk().to_owned(), SdkValue::S(key.1.clone()))])
        }
    }

    impl Backend for Dynamo {
        type T = DynamoTable;

        fn engine(&self) -> &Engine<DynamoTable> {
            &self.engine
        }

        fn name(&self) -> &str {
            self.table().name()
        }

        async fn put(&self, _key: &Key, item: SdkItem) {
            let table = self.table();
            self.client.put_item().table_name(table.name()).set_item(Some(item)).send().await.expect("the application's put");
        }

        async fn delete(&self, key: &Key) {
            let table = self.table();
            let delete = self.client.delete_item().table_name(table.name()).set_key(Some(self.key(key)));
            delete.send().await.expect("the application's delete");
        }

        async fn expire_ledgers(&self) -> usize {
            let prefix = LEDGER.pk_prefix(self.engine.rules().table());
            let ledgers: Vec<Key> = self.items().await.into_keys().filter(|key| key.0.starts_with(&prefix)).collect();
            for key in &ledgers {
                self.delete(key).await;
            }
            ledgers.len()
        }

        async fn items(&self) -> HashMap<Key, SdkItem> {
            let table = self.table();
            let rules = self.engine.rules().table();
            let text = |item: &SdkItem, name: &str| match item.get(name) {
                Some(SdkValue::S(text)) => text.clone(),
                other => panic!("a table item's `{name}` is {other:?}"),
            };
            super::support::scan(&self.client, table.name())
                .await
                .into_iter()
                .map(|item| ((text(&item, rules.pk()), text(&item, rules.sk())), item))
                .collect()
        }
    }

    pub(super) async fn fresh(rules: &'static Rules) -> Dynamo {
        let name = format!("generated-{}", uuid::Uuid::new_v4().simple());
        let rules = Arc::new(rules.clone());
        let table = DynamoTable::new(connect(None, None).await, name, Arc::clone(&rules));
        schema::create_table(&table).await.expect("creating a table on DynamoDB Local (is it running? use `make test`)");
        Dynamo { engine: Engine::new(rules, table), client: support::client().await }
    }
}

/// The first accepted files of the in-memory run (every third one, for variety), on DynamoDB
/// Local: the same histories and deliveries, the same properties, on the real conditional
/// writes and limits.
#[cfg(feature = "dynamodb-local")]
#[test]
fn generated_rules_files_on_dynamodb_local_too() {
    let started = Instant::now();
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let sample: usize = env_number("TALLY_RULES_DDB_CASES").unwrap_or(6);
    let (mut run, mut accepted_seen, mut totals) = (0, 0, Exercised::default());
    let mut failures: Vec<String> = Vec::new();
    for number in 0..cases().max(sample * 10) {
        if run == sample {
            break;
        }
        let case = make_case(number);
        let Verdict::Accepted(rules) = check_file(&case.spec) else { continue };
        accepted_seen += 1;
        if accepted_seen % 3 != 1 {
            continue;
        }
        run += 1;
        let history = generated::history(&case.spec, rules, case.history_seed, case.ops);
        let (exercised, problems) = runtime.block_on(async {
            let backend = on_dynamodb_local::fresh(rules).await;
            let result = run_case(&backend, rules, &history, case.delivery_seed, case.expire).await;
            let table = backend.engine.store();
            support::client().await.delete_table().table_name(table.name()).send().await.expect("deleting the test table");
            result
        });
        totals.add(&exercised);
        for problem in problems {
            failures.push(format!("case {number} ({}): {}: {}", case.spec.mode.name(), problem.kind, problem.detail));
        }
    }
    println!(
        "rules_generated on DynamoDB Local: {run} accepted files run, {} records, {} deliveries ({} repeats), {} refused records, {} squatters, {} aggregates checked, {:.1?}",
        totals.records,
        totals.deliveries,
        totals.repeats,
        totals.refused_records,
        totals.squatters,
        totals.aggregates_checked,
        started.elapsed()
    );
    assert!(run > 0, "no accepted file to run");
    assert!(failures.is_empty(), "{} problem(s) on DynamoDB Local:\n{}", failures.len(), failures.join("\n"));
}
