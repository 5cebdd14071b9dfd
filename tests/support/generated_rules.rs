//! Random rules files within the format, and random application histories for them: the
//! generator of `tests/rules_generated.rs`.
//!
//! A file is a [`FileSpec`] (rendered to TOML by [`FileSpec::toml`]) so that a failing one can be
//! shrunk piece by piece. Each file is built in one of three modes:
//!
//! - **clean**: templates disjoint by construction (every aggregate's sk starts with its own
//!   literal head, every entity's sk with one no aggregate uses, every pk with a literal), one
//!   digit budget per summed field, few aggregate items per entity. The checker should accept it;
//!   its histories still carry every hostile value (ids holding the templates' literals, the
//!   bookkeeping prefix, reserved prefixes, dates, long values, invalid values);
//! - **hazard**: a clean file plus one of the table-safety hazards `rules check` must refuse
//!   (overlapping aggregates, an aggregate on an entity's key, a capture that can fill the
//!   bookkeeping space, a field's digit budget split across attributes, an entity feeding 50+
//!   aggregate items, an entity that never matches), chosen in turn;
//! - **random**: templates drawn from the union of both pools, so overlaps happen by chance.
//!
//! Histories are the application's writes (whole puts, partial updates, deletes, TTL deletes) to
//! a few items per entity, some unknown items, and sometimes *squatters*: unknown application
//! items the application wrote, before anything else, at keys an aggregate's templates fit. The
//! [`Writer`] keeps the authoritative model of the application's items.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use aggregates::rules::{RuleAssessment, Rules};
use aggregates::KeyOwner;
use serde_dynamo::{AttributeValue, Item};

use crate::examples_support::dice::Dice;
use crate::examples_support::workload::{Key, Workload, Writer};

/// The refusals that exist for table safety (`Problem::safety_reason`).
pub const SAFETY_REASONS: [&str; 6] =
    ["overlapping_aggregates", "aggregate_on_entity_key", "bookkeeping_space", "field_digit_budget", "fan_out", "never_matches"];

/// What a hazard file was built to hold (the checker's reasons are what is counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Clean,
    Hazard(usize),
    Random,
}

impl Mode {
    /// Six files in ten clean, two a hazard (in turn), two random.
    pub fn of_case(case: usize) -> Mode {
        match case % 10 {
            0..=5 => Mode::Clean,
            6 | 8 => Mode::Hazard((case / 10 * 2 + usize::from(case % 10 == 8)) % SAFETY_REASONS.len()),
            _ => Mode::Random,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Clean => "clean",
            Mode::Hazard(index) => SAFETY_REASONS[index],
            Mode::Random => "random",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    pub pk: &'static str,
    pub sk: &'static str,
    pub entity_type: Option<&'static str>,
    pub prefix: &'static str,
    pub ttl: Option<&'static str>,
    pub reserved: Vec<&'static str>,
}

impl TableSpec {
    fn type_attribute(&self) -> &'static str {
        self.entity_type.unwrap_or("entityType")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AverageSpec {
    pub name: String,
    pub sum: String,
    pub count: String,
    pub places: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggregateSpec {
    pub name: String,
    pub pk: String,
    pub sk: String,
    pub counters: Vec<String>,
    pub sums: Vec<String>,
    pub averages: Vec<AverageSpec>,
}

impl AggregateSpec {
    fn params(&self) -> Vec<(String, Capture)> {
        captures(&self.pk).into_iter().chain(captures(&self.sk)).collect()
    }

    fn fields(&self) -> impl Iterator<Item = &String> {
        self.counters.iter().chain(&self.sums)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrKind {
    Id,
    Text,
    Number { integer: u64, fraction: u64, non_negative: bool },
    Date,
    DateTime,
    Any,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrSpec {
    pub name: String,
    pub kind: AttrKind,
    pub optional: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContributionSpec {
    pub to: Vec<String>,
    pub key: Vec<(String, String)>,
    pub present: Option<String>,
    pub equals: Vec<(String, String)>,
    /// Field, and the attribute it adds (`None`: 1).
    pub add: Vec<(String, Option<String>)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntitySpec {
    pub name: String,
    pub by_keys: bool,
    /// Whether `match` is written (it has a default).
    pub explicit_match: bool,
    pub pk: String,
    pub sk: String,
    pub attributes: Vec<AttrSpec>,
    pub contributions: Vec<ContributionSpec>,
}

/// A capture's type in a pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capture {
    Id,
    Date,
    DateTime,
}

/// The captures of a pattern, by name (patterns here have no literal braces).
pub fn captures(pattern: &str) -> Vec<(String, Capture)> {
    let mut found = Vec::new();
    let mut rest = pattern;
    while let Some(start) = rest.find('{') {
        let end = rest[start..].find('}').map_or(rest.len(), |end| start + end);
        let inner = &rest[start + 1..end];
        let (name, kind) = inner.split_once(':').unwrap_or((inner, "id"));
        let kind = match kind {
            "date" => Capture::Date,
            "datetime" => Capture::DateTime,
            _ => Capture::Id,
        };
        found.push((name.to_owned(), kind));
        rest = &rest[(end + 1).min(rest.len())..];
    }
    found
}

/// A pattern with each capture replaced by `value(name, kind)`.
pub fn render(pattern: &str, mut value: impl FnMut(&str, Capture) -> String) -> String {
    let mut out = String::new();
    let mut rest = pattern;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = start + rest[start..].find('}').expect("generated patterns close their captures");
        let inner = &rest[start + 1..end];
        let (name, kind) = inner.split_once(':').unwrap_or((inner, "id"));
        let kind = match kind {
            "date" => Capture::Date,
            "datetime" => Capture::DateTime,
            _ => Capture::Id,
        };
        out.push_str(&value(name, kind));
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    pub mode: Mode,
    pub table: TableSpec,
    pub aggregates: Vec<AggregateSpec>,
    pub entities: Vec<EntitySpec>,
}

fn list(items: impl IntoIterator<Item = impl AsRef<str>>) -> String {
    let quoted: Vec<String> = items.into_iter().map(|item| format!("\"{}\"", item.as_ref())).collect();
    format!("[{}]", quoted.join(", "))
}

impl FileSpec {
    /// The rules file.
    pub fn toml(&self) -> String {
        let mut out = String::new();
        let table = &self.table;
        let _ = writeln!(out, "[table]\npk = \"{}\"\nsk = \"{}\"", table.pk, table.sk);
        if let Some(entity_type) = table.entity_type {
            let _ = writeln!(out, "entity_type = \"{entity_type}\"");
        }
        let _ = writeln!(out, "bookkeeping_prefix = \"{}\"", table.prefix);
        if let Some(ttl) = table.ttl {
            let _ = writeln!(out, "ttl = \"{ttl}\"");
        }
        if !table.reserved.is_empty() {
            let _ = writeln!(out, "reserved_prefixes = {}", list(&table.reserved));
        }
        for aggregate in &self.aggregates {
            let _ = writeln!(out, "\n[aggregates.{}]\npk = \"{}\"\nsk = \"{}\"", aggregate.name, aggregate.pk, aggregate.sk);
            if !aggregate.counters.is_empty() {
                let _ = writeln!(out, "counters = {}", list(&aggregate.counters));
            }
            if !aggregate.sums.is_empty() {
                let _ = writeln!(out, "sums = {}", list(&aggregate.sums));
            }
            for average in &aggregate.averages {
                let _ = writeln!(
                    out,
                    "averages.{} = {{ sum = \"{}\", count = \"{}\", places = {} }}",
                    average.name, average.sum, average.count, average.places
                );
            }
        }
        for entity in &self.entities {
            let _ = writeln!(out, "\n[entities.{}]", entity.name);
            if entity.explicit_match {
                let _ = writeln!(out, "match = \"{}\"", if entity.by_keys { "keys" } else { "type" });
            }
            let _ = writeln!(out, "pk = \"{}\"\nsk = \"{}\"", entity.pk, entity.sk);
            if !entity.attributes.is_empty() {
                let _ = writeln!(out, "\n[entities.{}.attributes]", entity.name);
                for attribute in &entity.attributes {
                    let mut fields = vec![format!(
                        "type = \"{}\"",
                        match attribute.kind {
                            AttrKind::Id => "id",
                            AttrKind::Text => "string",
                            AttrKind::Number { .. } => "number",
                            AttrKind::Date => "date",
                            AttrKind::DateTime => "datetime",
                            AttrKind::Any => "any",
                        }
                    )];
                    if attribute.optional {
                        fields.push("optional = true".into());
                    }
                    if let AttrKind::Number { integer, fraction, non_negative } = attribute.kind {
                        if non_negative {
                            fields.push("non_negative = true".into());
                        }
                        fields.push(format!("max_digits = {{ integer = {integer}, fraction = {fraction} }}"));
                    }
                    let _ = writeln!(out, "{} = {{ {} }}", attribute.name, fields.join(", "));
                }
            }
            for contribution in &entity.contributions {
                let _ = writeln!(out, "\n[[entities.{}.contributions]]\nto = {}", entity.name, list(&contribution.to));
                if !contribution.key.is_empty() {
                    let pairs: Vec<String> = contribution.key.iter().map(|(param, value)| format!("{param} = \"{value}\"")).collect();
                    let _ = writeln!(out, "key = {{ {} }}", pairs.join(", "));
                }
                let mut when = Vec::new();
                if let Some(present) = &contribution.present {
                    when.push(format!("present = \"{present}\""));
                }
                if !contribution.equals.is_empty() {
                    let pairs: Vec<String> = contribution.equals.iter().map(|(name, value)| format!("{name} = \"{value}\"")).collect();
                    when.push(format!("equals = {{ {} }}", pairs.join(", ")));
                }
                if !when.is_empty() {
                    let _ = writeln!(out, "when = {{ {} }}", when.join(", "));
                }
                let adds: Vec<String> = contribution
                    .add
                    .iter()
                    .map(|(field, amount)| match amount {
                        None => format!("{field} = 1"),
                        Some(attribute) => format!("{field} = \"{attribute}\""),
                    })
                    .collect();
                let _ = writeln!(out, "add = {{ {} }}", adds.join(", "));
            }
        }
        out
    }

    /// Drops what refers to aggregates, fields or attributes that are gone (after a shrink
    /// step), so that the file stays well-formed where it can.
    pub fn prune(&mut self) {
        let aggregates = self.aggregates.clone();
        for entity in &mut self.entities {
            let slots: BTreeSet<String> = captures(&entity.pk)
                .into_iter()
                .chain(captures(&entity.sk))
                .map(|(name, _)| name)
                .chain(entity.attributes.iter().map(|attribute| attribute.name.clone()))
                .collect();
            let attributes: BTreeSet<String> = entity.attributes.iter().map(|attribute| attribute.name.clone()).collect();
            entity.contributions.retain_mut(|contribution| {
                contribution.to.retain(|name| aggregates.iter().any(|aggregate| aggregate.name == *name));
                let targets: Vec<&AggregateSpec> =
                    contribution.to.iter().filter_map(|name| aggregates.iter().find(|aggregate| aggregate.name == *name)).collect();
                let params: BTreeSet<String> = targets.iter().flat_map(|target| target.params()).map(|(name, _)| name).collect();
                contribution.key.retain(|(param, _)| params.contains(param));
                if contribution.key.iter().any(|(_, value)| !slots.contains(value)) || contribution.key.len() < params.len() {
                    return false;
                }
                if contribution.present.as_ref().is_some_and(|present| !attributes.contains(present)) {
                    contribution.present = None;
                }
                contribution.equals.retain(|(name, _)| slots.contains(name));
                contribution.add.retain(|(field, amount)| {
                    targets.iter().all(|target| target.fields().any(|known| known == field))
                        && amount.as_ref().is_none_or(|attribute| attributes.contains(attribute))
                });
                !contribution.to.is_empty() && !contribution.add.is_empty()
            });
        }
        for aggregate in &mut self.aggregates {
            let fields: Vec<String> = aggregate.fields().cloned().collect();
            let (counters, sums) = (aggregate.counters.clone(), aggregate.sums.clone());
            aggregate.averages.retain(|average| sums.contains(&average.sum) && counters.contains(&average.count));
            let _ = fields;
        }
    }
}

// --- Pools -----------------------------------------------------------------------------------

const COUNTERS: [&str; 4] = ["count", "hits", "visits", "events"];
const SUMS: [&str; 4] = ["total", "tokens", "spent", "score"];
/// Each summed field's digit budget (integer, fraction), at most 28 together.
const SUM_BUDGETS: [(u64, u64); 4] = [(20, 8), (12, 2), (28, 0), (6, 0)];

/// Clean aggregate templates: any pk, and an sk whose literal head no other aggregate or entity
/// sk starts with.
const AGG_PKS: [&str; 6] = ["USER#{u}", "ORG#{o}", "CONV#{c}", "STATS#{s}", "STATS#ALL", "ORG#{o}#TEAM#{t}"];
const AGG_SKS: [&str; 6] = ["TOTAL", "ALL", "DAY#{d:date}", "CAT#{k}", "BY#{k}#DAY#{d:date}", "SUM"];
/// Templates that overlap others, or start with a capture.
const AGG_PKS_WILD: [&str; 4] = ["{o}", "{o}#STATS", "STATS#{sd:date}", "USER#{u}#{v}"];
const AGG_SKS_WILD: [&str; 5] = ["{k}", "CAT#{kd:date}", "{k}#{d:date}", "ITEM#TOTAL", "META"];

const ENT_PKS: [&str; 4] = ["USER#{u}", "ORG#{o}", "CONV#{c}", "ORG#{o}#USER#{u}"];
const ENT_SKS: [&str; 6] = ["PROFILE", "META", "MSG#{ts:datetime}", "ORDER#{d:date}#{x}", "ITEM#{x}", "PART#{x}-{y}"];
const ENT_PKS_WILD: [&str; 3] = ["{t}#USER#{u}", "STATS#{s}", "{o}"];
const ENT_SKS_WILD: [&str; 4] = ["{d:date}#ORDER#{x}", "TOTAL", "MSG#{ts:datetime}-{m}", "DAY#{d:date}-{x}"];

const EQUALS_VALUES: [&str; 4] = ["user", "assistant", "active", "a#b"];

/// A builder of one file.
struct Gen<'d> {
    dice: &'d mut Dice,
    spec: FileSpec,
    /// Each summed field's digit budget.
    budgets: BTreeMap<String, (u64, u64)>,
    next_attribute: usize,
}

/// Generates the rules file of one case.
pub fn generate(seed: u64, mode: Mode) -> FileSpec {
    let mut dice = Dice::new(seed);
    let (pk, sk) = *dice.pick(&[("pk", "sk"), ("PK", "SK")]);
    let entity_type = match dice.below(3) {
        0 => None,
        1 => Some("entityType"),
        _ => Some("Type"),
    };
    let prefix = *dice.pick(&["tally#", "_tally#"]);
    let ttl = dice.chance(30).then_some("expiresAt");
    let reserved = if dice.chance(35) {
        if dice.chance(30) {
            vec!["STATS#", "FAN#"]
        } else {
            vec!["STATS#"]
        }
    } else {
        Vec::new()
    };
    let table = TableSpec { pk, sk, entity_type, prefix, ttl, reserved };
    let spec = FileSpec { mode, table, aggregates: Vec::new(), entities: Vec::new() };
    let mut generator = Gen { dice: &mut dice, spec, budgets: BTreeMap::new(), next_attribute: 0 };
    generator.build(mode);
    generator.spec
}

impl Gen<'_> {
    fn build(&mut self, mode: Mode) {
        let wild = mode == Mode::Random;
        // Aggregates.
        let count = *self.dice.pick(&[1, 1, 1, 2, 2, 2, 3, 3, 4]);
        let mut sk_heads: Vec<&str> = AGG_SKS.to_vec();
        for index in 0..count {
            let pk = if wild && self.dice.chance(40) { *self.dice.pick(&AGG_PKS_WILD) } else { *self.dice.pick(&AGG_PKS) };
            let sk = if wild && self.dice.chance(40) {
                *self.dice.pick(&AGG_SKS_WILD)
            } else if sk_heads.is_empty() {
                *self.dice.pick(&AGG_SKS)
            } else {
                sk_heads.remove(self.dice.below(sk_heads.len()))
            };
            self.aggregate(&format!("agg_{index}"), pk, sk);
        }
        // Entities.
        let count = *self.dice.pick(&[1, 1, 2, 2, 2, 3, 3, 4]);
        let mut by_keys_sks: Vec<&str> = ENT_SKS.to_vec();
        for index in 0..count {
            let by_keys = self.spec.table.entity_type.is_none() || self.dice.chance(30);
            let pk = if wild && self.dice.chance(35) { *self.dice.pick(&ENT_PKS_WILD) } else { *self.dice.pick(&ENT_PKS) };
            let sk = if wild && self.dice.chance(35) {
                *self.dice.pick(&ENT_SKS_WILD)
            } else if by_keys && !by_keys_sks.is_empty() {
                // Entities matched by keys get sk heads of their own: none shadows another.
                by_keys_sks.remove(self.dice.below(by_keys_sks.len()))
            } else {
                *self.dice.pick(&ENT_SKS)
            };
            self.entity(&format!("ent_{index}"), by_keys, pk, sk);
        }
        for entity in 0..self.spec.entities.len() {
            for _ in 0..self.dice.below(3) {
                let target = self.dice.below(self.spec.aggregates.len());
                let pair = self.dice.chance(25);
                self.contribution(entity, target, pair);
            }
        }
        self.feed_all();
        if let Mode::Hazard(hazard) = mode {
            self.hazard(hazard);
        }
    }

    fn aggregate(&mut self, name: &str, pk: &str, sk: &str) -> usize {
        let mut counters: Vec<String> = Vec::new();
        let mut sums: Vec<String> = Vec::new();
        for _ in 0..self.dice.between(0, 2) {
            let field = self.dice.pick(&COUNTERS).to_string();
            if !counters.contains(&field) {
                counters.push(field);
            }
        }
        for _ in 0..self.dice.between(0, 2) {
            let field = self.dice.pick(&SUMS).to_string();
            if !sums.contains(&field) {
                sums.push(field);
            }
        }
        if counters.is_empty() && sums.is_empty() {
            counters.push(self.dice.pick(&COUNTERS).to_string());
        }
        for sum in &sums {
            if !self.budgets.contains_key(sum) {
                let budget = *self.dice.pick(&SUM_BUDGETS);
                self.budgets.insert(sum.clone(), budget);
            }
        }
        let mut averages = Vec::new();
        if !sums.is_empty() && !counters.is_empty() && self.dice.chance(40) {
            let index = self.spec.aggregates.len();
            averages.push(AverageSpec {
                name: format!("mean_{index}"),
                sum: self.dice.pick(&sums).clone(),
                count: self.dice.pick(&counters).clone(),
                places: self.dice.below(5) as u32,
            });
        }
        self.spec.aggregates.push(AggregateSpec { name: name.into(), pk: pk.into(), sk: sk.into(), counters, sums, averages });
        self.spec.aggregates.len() - 1
    }

    fn entity(&mut self, name: &str, by_keys: bool, pk: &str, sk: &str) -> usize {
        let explicit_match = if self.spec.table.entity_type.is_some() { by_keys || self.dice.chance(30) } else { self.dice.chance(30) };
        let mut entity = EntitySpec {
            name: name.into(),
            by_keys,
            explicit_match,
            pk: pk.into(),
            sk: sk.into(),
            attributes: Vec::new(),
            contributions: Vec::new(),
        };
        // A few attributes of every type, read whether or not anything is added from them.
        let pool: [(&str, AttrKind); 6] = [
            ("role", AttrKind::Text),
            ("status", AttrKind::Id),
            ("category", AttrKind::Id),
            ("day", AttrKind::Date),
            ("at", AttrKind::DateTime),
            ("flag", AttrKind::Any),
        ];
        for _ in 0..self.dice.between(0, 3) {
            let (attribute, kind) = *self.dice.pick(&pool);
            if !entity.attributes.iter().any(|known| known.name == attribute) {
                let optional = self.dice.chance(50);
                entity.attributes.push(AttrSpec { name: attribute.into(), kind, optional });
            }
        }
        self.spec.entities.push(entity);
        self.spec.entities.len() - 1
    }

    /// The slots of an entity: its captures, then its attributes, with their kinds.
    fn slots(&self, entity: usize) -> Vec<(String, AttrKind)> {
        let entity = &self.spec.entities[entity];
        let capture = |(name, kind): (String, Capture)| {
            let kind = match kind {
                Capture::Id => AttrKind::Id,
                Capture::Date => AttrKind::Date,
                Capture::DateTime => AttrKind::DateTime,
            };
            (name, kind)
        };
        captures(&entity.pk)
            .into_iter()
            .chain(captures(&entity.sk))
            .map(capture)
            .chain(entity.attributes.iter().map(|attribute| (attribute.name.clone(), attribute.kind)))
            .collect()
    }

    fn add_attribute(&mut self, entity: usize, name: String, kind: AttrKind, optional: bool) -> String {
        let entity = &mut self.spec.entities[entity];
        if !entity.attributes.iter().any(|known| known.name == name) {
            entity.attributes.push(AttrSpec { name: name.clone(), kind, optional });
        }
        name
    }

    /// A slot of `entity` a key parameter of type `capture` can be bound to; one is added if
    /// there is none.
    fn bind(&mut self, entity: usize, param: &str, capture: Capture) -> String {
        let slots = self.slots(entity);
        let fits = |kind: AttrKind| match capture {
            Capture::Id => kind == AttrKind::Id,
            _ => kind == AttrKind::Date || kind == AttrKind::DateTime,
        };
        if let Some((name, _)) = slots.iter().find(|(name, kind)| name == param && fits(*kind)) {
            if self.dice.chance(70) {
                return name.clone();
            }
        }
        let candidates: Vec<&(String, AttrKind)> = slots.iter().filter(|(_, kind)| fits(*kind)).collect();
        if !candidates.is_empty() && self.dice.chance(80) {
            return self.dice.pick(&candidates).0.clone();
        }
        let optional = self.dice.chance(30);
        match capture {
            Capture::Id => self.add_attribute(entity, format!("ref_{param}"), AttrKind::Id, optional),
            _ if self.dice.chance(50) => self.add_attribute(entity, "day".into(), AttrKind::Date, optional),
            _ => self.add_attribute(entity, "at".into(), AttrKind::DateTime, optional),
        }
    }

    /// A number attribute of `entity` within `field`'s digit budget.
    fn amount(&mut self, entity: usize, field: &str) -> String {
        let (integer, fraction) = self.budgets.get(field).copied().unwrap_or((12, 2));
        let fitting: Vec<String> = self.spec.entities[entity]
            .attributes
            .iter()
            .filter(|attribute| matches!(attribute.kind, AttrKind::Number { integer: i, fraction: f, .. } if i <= integer && f <= fraction))
            .map(|attribute| attribute.name.clone())
            .collect();
        if !fitting.is_empty() && self.dice.chance(70) {
            return self.dice.pick(&fitting).clone();
        }
        self.next_attribute += 1;
        let digits = AttrKind::Number {
            integer: self.dice.between(integer.min(1) as usize, integer as usize) as u64,
            fraction: self.dice.between(0, fraction as usize) as u64,
            non_negative: self.dice.chance(40),
        };
        let optional = self.dice.chance(40);
        self.add_attribute(entity, format!("amount{}", self.next_attribute), digits, optional)
    }

    /// A contribution of `entity` to `target` (and, if `pair`, to another aggregate sharing a
    /// field with it).
    fn contribution(&mut self, entity: usize, target: usize, pair: bool) {
        let mut targets = vec![target];
        if pair && self.spec.aggregates.len() > 1 {
            let other = self.dice.below(self.spec.aggregates.len());
            let shared = self.spec.aggregates[target].fields().any(|field| self.spec.aggregates[other].fields().any(|f| f == field));
            if other != target && shared {
                targets.push(other);
            }
        }
        let mut key: Vec<(String, String)> = Vec::new();
        for &target in &targets {
            for (param, capture) in self.spec.aggregates[target].params() {
                if !key.iter().any(|(known, _)| *known == param) {
                    let slot = self.bind(entity, &param, capture);
                    key.push((param, slot));
                }
            }
        }
        let shared: Vec<String> = self.spec.aggregates[targets[0]]
            .fields()
            .filter(|field| targets.iter().all(|&target| self.spec.aggregates[target].fields().any(|f| f == *field)))
            .cloned()
            .collect();
        let mut add = Vec::new();
        for field in &shared {
            if add.is_empty() || self.dice.chance(50) {
                let amount = if self.spec.aggregates[targets[0]].sums.contains(field) { Some(self.amount(entity, field)) } else { None };
                add.push((field.clone(), amount));
            }
        }
        let mut present = None;
        let mut equals = Vec::new();
        if self.dice.chance(25) {
            let attributes: Vec<String> = self.spec.entities[entity].attributes.iter().map(|attribute| attribute.name.clone()).collect();
            if !attributes.is_empty() {
                present = Some(self.dice.pick(&attributes).clone());
            }
        }
        if self.dice.chance(20) {
            let texts: Vec<String> = self
                .slots(entity)
                .into_iter()
                .filter(|(_, kind)| *kind == AttrKind::Id || *kind == AttrKind::Text)
                .map(|(name, _)| name)
                .collect();
            if !texts.is_empty() {
                equals.push((self.dice.pick(&texts).clone(), self.dice.pick(&EQUALS_VALUES).to_string()));
            }
        }
        let to = targets.iter().map(|&target| self.spec.aggregates[target].name.clone()).collect();
        self.spec.entities[entity].contributions.push(ContributionSpec { to, key, present, equals, add });
    }

    fn fed(&self, aggregate: &str) -> bool {
        self.spec
            .entities
            .iter()
            .flat_map(|entity| &entity.contributions)
            .any(|contribution| contribution.to.iter().any(|to| to == aggregate))
    }

    /// Every aggregate fed by some entity.
    fn feed_all(&mut self) {
        for target in 0..self.spec.aggregates.len() {
            if !self.fed(&self.spec.aggregates[target].name.clone()) {
                let entity = self.dice.below(self.spec.entities.len());
                self.contribution(entity, target, false);
            }
        }
    }

    fn hazard(&mut self, hazard: usize) {
        match SAFETY_REASONS[hazard] {
            "overlapping_aggregates" => {
                let (pk, sk) = match self.dice.below(3) {
                    0 => {
                        let copy = self.dice.pick(&self.spec.aggregates).clone();
                        (copy.pk, copy.sk)
                    }
                    1 => {
                        self.added_aggregate("STATS#{s}", "TOTAL");
                        ("STATS#{sd:date}".into(), "TOTAL".into())
                    }
                    _ => {
                        self.added_aggregate("USER#{u}", "CAT#{k}");
                        ("USER#{u}".into(), "CAT#{kd:date}".into())
                    }
                };
                self.added_aggregate(&pk, &sk);
            }
            "aggregate_on_entity_key" => {
                if self.dice.chance(50) {
                    let entity = self.dice.below(self.spec.entities.len());
                    let (pk, sk) = (self.spec.entities[entity].pk.clone(), self.spec.entities[entity].sk.clone());
                    self.added_aggregate(&pk.replace(":datetime", ":date"), &sk.replace(":datetime", ":date"));
                } else {
                    let by_keys = self.spec.table.entity_type.is_none() || self.dice.chance(50);
                    let entity = self.entity("ent_item", by_keys, "CONV#{c}", "ITEM#{x}");
                    let aggregate = self.added_aggregate("CONV#{c}", "ITEM#TOTAL");
                    self.contribution(entity, aggregate, false);
                }
            }
            "bookkeeping_space" => match self.dice.below(3) {
                0 => drop(self.added_aggregate("{o}", "ORGSTATS")),
                1 => drop(self.added_aggregate("{o}#STATS", "ORGSTATS")),
                _ => {
                    let by_keys = self.spec.table.entity_type.is_none() || self.dice.chance(50);
                    let entity = self.entity("ent_tenant", by_keys, "{t}#USER#{u}", "PROFILE");
                    let target = self.dice.below(self.spec.aggregates.len());
                    self.contribution(entity, target, false);
                }
            },
            "field_digit_budget" => {
                let aggregate = self.added_aggregate("USER#{u}", "DIGITS");
                let field = self.spec.aggregates[aggregate].sums.first().cloned().unwrap_or_else(|| "total".into());
                if !self.spec.aggregates[aggregate].sums.contains(&field) {
                    self.spec.aggregates[aggregate].sums.push(field.clone());
                }
                let ((i1, f1), (i2, f2)) = if self.dice.chance(50) { ((28, 0), (0, 28)) } else { ((20, 8), (8, 20)) };
                let entity = self.dice.below(self.spec.entities.len());
                for (name, integer, fraction) in [("wide", i1, f1), ("fine", i2, f2)] {
                    let kind = AttrKind::Number { integer, fraction, non_negative: false };
                    let attribute = self.add_attribute(entity, name.into(), kind, true);
                    let key = vec![("u".to_string(), self.bind(entity, "u", Capture::Id))];
                    let to = vec![self.spec.aggregates[aggregate].name.clone()];
                    let add = vec![(field.clone(), Some(attribute))];
                    self.spec.entities[entity].contributions.push(ContributionSpec { to, key, present: None, equals: vec![], add });
                }
            }
            "fan_out" => {
                let entity = self.dice.below(self.spec.entities.len());
                let group = self.add_attribute(entity, "group".into(), AttrKind::Id, false);
                let mut to = Vec::new();
                for index in 0..self.dice.between(50, 56) {
                    let name = format!("fan_{index:02}");
                    let aggregate = AggregateSpec {
                        name: name.clone(),
                        pk: "FAN#{g}".into(),
                        sk: format!("F{index:02}"),
                        counters: vec!["count".into()],
                        sums: vec![],
                        averages: vec![],
                    };
                    self.spec.aggregates.push(aggregate);
                    to.push(name);
                }
                let key = vec![("g".to_string(), group)];
                self.spec.entities[entity].contributions.push(ContributionSpec {
                    to,
                    key,
                    present: None,
                    equals: vec![],
                    add: vec![("count".into(), None)],
                });
            }
            _ => {
                // never_matches: a datetime (or date) followed by `-`, which it contains.
                let by_keys = self.spec.table.entity_type.is_none() || self.dice.chance(50);
                let sk = *self.dice.pick(&["MSG#{ts:datetime}-{m}", "DAY#{d:date}-{x}"]);
                let entity = self.entity("ent_never", by_keys, "CONV#{c}", sk);
                if self.dice.chance(70) {
                    let target = self.dice.below(self.spec.aggregates.len());
                    self.contribution(entity, target, false);
                }
            }
        }
    }

    /// A new aggregate, fed by some entity.
    fn added_aggregate(&mut self, pk: &str, sk: &str) -> usize {
        let index = self.spec.aggregates.len();
        let aggregate = self.aggregate(&format!("agg_{index}"), pk, sk);
        let entity = self.dice.below(self.spec.entities.len());
        self.contribution(entity, aggregate, false);
        aggregate
    }
}

// --- Histories -------------------------------------------------------------------------------

/// One item the application writes.
#[derive(Debug, Clone)]
struct Slot {
    key: Key,
    /// The entity whose shape it has (`None`: an item of no entity).
    entity: Option<usize>,
}

/// A generated history and what it holds.
#[derive(Debug, Clone)]
pub struct History {
    pub workload: Workload,
    /// Keys of squatters: unknown application items at aggregate keys, written first, never
    /// changed.
    pub squatters: Vec<Key>,
}

struct Values<'d> {
    dice: &'d mut Dice,
    prefix: &'static str,
}

impl Values<'_> {
    fn id(&mut self) -> String {
        if self.dice.chance(65) {
            return self.dice.pick(&["u1", "u2", "u3"]).to_string();
        }
        match self.dice.below(19) {
            0 => "a#b".into(),
            1 => "x-y".into(),
            2 => "Home#Garden".into(),
            3 => "TOTAL".into(),
            4 => "META".into(),
            5 => "ALL".into(),
            6 => "DAY#2024-03-01".into(),
            7 => "2024-03-01".into(),
            8 => "#".into(),
            9 => "-".into(),
            10 => "u1#DAY#2024-03-02".into(),
            11 => format!("{}x", self.prefix),
            12 => format!("{}ledger#USER#u1", self.prefix),
            13 => "STATS#1".into(),
            14 => "STATS".into(),
            15 => "FAN#u1".into(),
            16 => "L".repeat(self.dice.between(900, 1100)),
            17 => "M".repeat(self.dice.between(2000, 2100)),
            _ => String::new(),
        }
    }

    fn date(&mut self) -> String {
        if self.dice.chance(70) {
            return self.dice.pick(&["2024-03-01", "2024-03-02"]).to_string();
        }
        self.dice.pick(&["2024-02-29", "2023-02-29", "2024-3-1", "9999-12-31", "yesterday"]).to_string()
    }

    fn datetime(&mut self) -> String {
        if self.dice.chance(60) {
            return self.dice.pick(&["2024-03-01T10:00:00Z", "2024-03-01T23:30:00-02:00", "2024-03-02"]).to_string();
        }
        // The last two fall on UTC days outside years 0 to 9999: keys render them `-0001-12-31`
        // and `+10000-01-01`.
        self.dice
            .pick(&[
                "2024-03-01T00:00:00",
                "2024-03-01T10:00:00.123+05:30",
                "2024-13-01T00:00:00Z",
                "soon",
                "0000-01-01T00:00+01:00",
                "9999-12-31T23:30-01:00",
            ])
            .to_string()
    }

    fn text(&mut self) -> String {
        self.dice.pick(&["user", "assistant", "active", "", "Home#Garden", "a#b"]).to_string()
    }

    fn number(&mut self, integer: u64, fraction: u64, non_negative: bool) -> AttributeValue {
        let digits = |dice: &mut Dice, count: u64| (0..count).map(|_| char::from(b'0' + dice.below(10) as u8)).collect::<String>();
        let text = if self.dice.chance(75) {
            let whole = if integer == 0 { "0".to_string() } else { self.dice.between(0, 10usize.pow(integer.min(3) as u32)).to_string() };
            let part = digits(self.dice, fraction.min(2));
            let sign = if !non_negative && self.dice.chance(20) { "-" } else { "" };
            if part.is_empty() {
                format!("{sign}{whole}")
            } else {
                format!("{sign}{whole}.{part}")
            }
        } else {
            match self.dice.below(6) {
                // At the bounds, and just past them.
                0 if integer > 0 => {
                    let nines = "9".repeat(integer as usize);
                    if fraction > 0 {
                        format!("{nines}.{}", "9".repeat(fraction as usize))
                    } else {
                        nines
                    }
                }
                1 => format!("1{}", "0".repeat(integer as usize)),
                2 => format!("0.{}1", "0".repeat(fraction as usize)),
                3 => "-5".into(),
                4 => return AttributeValue::S("12".into()),
                _ => "1E+3".into(),
            }
        };
        AttributeValue::N(text)
    }
}

/// DynamoDB's own key limits: the application cannot write an item over them.
fn writable(key: &Key) -> bool {
    !key.0.is_empty() && !key.1.is_empty() && key.0.len() <= 2048 && key.1.len() <= 1024
}

/// Generates the application's writes for `spec` (compiled to `rules`).
pub fn history(spec: &FileSpec, rules: &'static Rules, seed: u64, ops: usize) -> History {
    let mut dice = Dice::new(seed ^ 0x5EED_0FA1_1000);
    let table = rules.table();
    let (pk_name, sk_name) = (table.pk(), table.sk());
    let mut writer = Writer::new(pk_name, sk_name, "4", 20, seed);
    let prefix = spec.table.prefix;
    let reserved = |key: &Key| spec.table.reserved.iter().any(|reserved| key.0.starts_with(reserved));
    let tallys = |key: &Key| rules.owner(&key.0, &key.1) != KeyOwner::Application || rules.parse_key(&key.0, &key.1).is_some();
    let mut slots: Vec<Slot> = Vec::new();
    let mut values = Values { dice: &mut dice, prefix };
    for (index, entity) in spec.entities.iter().enumerate() {
        for _ in 0..values.dice.between(1, 4) {
            let render_key = |pattern: &str, values: &mut Values<'_>| {
                render(pattern, |_, capture| match capture {
                    Capture::Id => values.id(),
                    Capture::Date => values.date(),
                    Capture::DateTime => values.datetime(),
                })
            };
            let key = (render_key(&entity.pk, &mut values), render_key(&entity.sk, &mut values));
            // The application never writes under a reserved prefix anything tally keeps there.
            if writable(&key) && !(reserved(&key) && tallys(&key)) && !slots.iter().any(|slot| slot.key == key) {
                slots.push(Slot { key, entity: Some(index) });
            }
        }
    }
    // Items of no entity, away from tally's keys.
    for index in 0..values.dice.below(3) {
        let key = (format!("NOTE#n{index}"), values.dice.pick(&["N", "TOTAL", "ITEM#u1", "PROFILE"]).to_string());
        if !tallys(&key) && !reserved(&key) {
            slots.push(Slot { key, entity: None });
        }
    }
    // Squatters: unknown application items at aggregate keys, written before anything else.
    let mut squatters = Vec::new();
    if values.dice.chance(35) && !spec.aggregates.is_empty() {
        for _ in 0..values.dice.between(1, 2) {
            let aggregate = values.dice.pick(&spec.aggregates).clone();
            let common = |capture: Capture| match capture {
                Capture::Id => "u1".to_string(),
                _ => "2024-03-01".to_string(),
            };
            let key = (render(&aggregate.pk, |_, capture| common(capture)), render(&aggregate.sk, |_, capture| common(capture)));
            let image = unknown_image(table, &key, "squatter");
            let unknown = matches!(rules.assess(Some(&image)), RuleAssessment::Unknown);
            if rules.parse_key(&key.0, &key.1).is_some() && unknown && !reserved(&key) && !squatters.contains(&key) {
                writer.put(image);
                squatters.push(key);
            }
        }
    }
    slots.retain(|slot| !squatters.contains(&slot.key));
    let first_epoch_at = |writer: &Writer| writer.len();
    let squatter_records = first_epoch_at(&writer);
    if slots.is_empty() {
        return History { workload: writer.finish(squatter_records), squatters };
    }
    let mut current: BTreeMap<Key, Item> = BTreeMap::new();
    let mut second_epoch = None;
    for op in 0..ops {
        if op == ops / 2 {
            second_epoch = Some(writer.len());
        }
        let slot = values.dice.pick(&slots).clone();
        let exists = current.contains_key(&slot.key);
        let action = values.dice.below(100);
        if exists && action < 12 {
            writer.delete(&slot.key, false);
            current.remove(&slot.key);
        } else if exists && action < 20 {
            writer.delete(&slot.key, true);
            current.remove(&slot.key);
        } else if exists && action < 50 && slot.entity.is_some() {
            // An update of a few attributes.
            let mut image = current[&slot.key].clone();
            let entity = &spec.entities[slot.entity.unwrap_or_default()];
            for _ in 0..values.dice.between(1, 2) {
                if entity.attributes.is_empty() {
                    break;
                }
                let attribute = values.dice.pick(&entity.attributes).clone();
                if attribute.optional && values.dice.chance(25) {
                    image.remove(&attribute.name);
                } else {
                    image.insert(attribute.name.clone(), attribute_value(&mut values, attribute.kind));
                }
            }
            writer.put(image.clone());
            current.insert(slot.key.clone(), image);
        } else {
            let image = match slot.entity {
                Some(entity) => entity_image(&mut values, spec, table, entity, &slot.key),
                None => unknown_image(table, &slot.key, &values.id()),
            };
            writer.put(image.clone());
            current.insert(slot.key.clone(), image);
        }
    }
    let second_epoch = second_epoch.unwrap_or(writer.len()).max(squatter_records);
    History { workload: writer.finish(second_epoch), squatters }
}

fn unknown_image(table: &aggregates::rules::Table, key: &Key, note: &str) -> Item {
    let mut image = Item::from(std::collections::HashMap::from([
        (table.pk().to_owned(), AttributeValue::S(key.0.clone())),
        (table.sk().to_owned(), AttributeValue::S(key.1.clone())),
        ("note".to_owned(), AttributeValue::S(note.to_owned())),
    ]));
    if let Some(entity_type) = table.entity_type() {
        image.insert(entity_type.to_owned(), AttributeValue::S("note".into()));
    }
    image
}

fn attribute_value(values: &mut Values<'_>, kind: AttrKind) -> AttributeValue {
    if values.dice.chance(4) {
        // The wrong type.
        return match kind {
            AttrKind::Number { .. } => AttributeValue::S("7".into()),
            _ => AttributeValue::N("7".into()),
        };
    }
    match kind {
        AttrKind::Id => AttributeValue::S(values.id()),
        AttrKind::Text => AttributeValue::S(values.text()),
        AttrKind::Number { integer, fraction, non_negative } => values.number(integer, fraction, non_negative),
        AttrKind::Date => AttributeValue::S(values.date()),
        AttrKind::DateTime => AttributeValue::S(values.datetime()),
        AttrKind::Any => AttributeValue::Bool(true),
    }
}

fn entity_image(values: &mut Values<'_>, spec: &FileSpec, table: &aggregates::rules::Table, entity: usize, key: &Key) -> Item {
    let entity = &spec.entities[entity];
    let mut image = Item::from(std::collections::HashMap::from([
        (table.pk().to_owned(), AttributeValue::S(key.0.clone())),
        (table.sk().to_owned(), AttributeValue::S(key.1.clone())),
    ]));
    let type_attribute = spec.table.type_attribute();
    let typed = spec.table.entity_type.is_some();
    match values.dice.below(100) {
        0..=4 if typed => {}
        5..=7 if typed => drop(image.insert(type_attribute.to_owned(), AttributeValue::N("1".into()))),
        _ if typed && (!entity.by_keys || values.dice.chance(50)) => {
            image.insert(type_attribute.to_owned(), AttributeValue::S(entity.name.clone()));
        }
        _ => {}
    }
    for attribute in &entity.attributes {
        let absent = if attribute.optional { values.dice.chance(25) } else { values.dice.chance(3) };
        if !absent {
            image.insert(attribute.name.clone(), attribute_value(values, attribute.kind));
        }
    }
    if values.dice.chance(15) {
        image.insert(spec.table.ttl.unwrap_or("ttl").to_owned(), AttributeValue::N("1763769600".into()));
    }
    image
}

/// The table keys a file's squatters and items hold, for the report.
pub fn describe_key(key: &Key) -> String {
    let short =
        |text: &str| if text.len() > 40 { format!("{}…({} bytes)", &text[..20.min(text.len())], text.len()) } else { text.to_owned() };
    format!("`{}` / `{}`", short(&key.0), short(&key.1))
}
