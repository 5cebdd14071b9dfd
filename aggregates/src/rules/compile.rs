//! Checking a parsed rules file and compiling it into [`Rules`] in one pass, collecting every
//! problem with its place instead of stopping at the first.
//!
//! A part that does not check (a pattern that does not parse, an unknown name) is left out of
//! what is compiled, and the checks that depend on it are skipped, so one mistake gives one
//! error rather than a cascade.

use std::collections::{HashMap, HashSet};
use std::ops::Range;

use toml::Spanned;

use super::compiled::{
    Add, Aggregate, AggregateId, Amount, Attribute, Average, Condition, Digits, Entity, FieldId, Group, Index, Limits, Rules, Table,
};
use super::digest;
use super::errors::{Position, Problem, RuleError, RulesErrors};
use super::model::{
    AggregateDecl, AmountDecl, AttributeDecl, AttributeType, ContributionDecl, EntityDecl, LimitsDecl, MatchBy, RulesFile, TableDecl,
    Targets, Text, WhenDecl,
};
use super::pattern::{CaptureType, Pattern};
use super::safety::{self, Places};
use crate::keys::{
    attributes, LEDGER_PK_INFIX, MAX_PARTITION_KEY_BYTES, MAX_SOURCE_PK_BYTES, MAX_SOURCE_SK_BYTES, TALLY_TYPE_PREFIX, TYPE_ATTRIBUTE,
};
use crate::number::AVERAGE_SCALE;

/// Most digits, integer and fraction together, a summed attribute may allow: a sum of 10^10
/// values (the university contract's bound) then fits DynamoDB's 38.
const SUMMED_DIGITS: u64 = 28;

/// The reason of a negative value when `non_negative` names none.
const NEGATIVE_REASON: &str = "negative_number";
/// The TTL attribute of a table whose file names none (the university's).
const DEFAULT_TTL: &str = "ttl";

/// Parses, checks and compiles `text`.
pub(crate) fn compile(text: &str, source_name: &str) -> Result<Rules, RulesErrors> {
    let errors = |errors| RulesErrors { source_name: source_name.to_owned(), errors };
    let file: RulesFile = toml::from_str(text).map_err(|err| {
        let position = Position::of(text, err.span().map_or(0, |span| span.start));
        errors(vec![RuleError { position, problem: Problem::Toml(err.message().to_owned()) }])
    })?;
    let mut compiler = Compiler::new(text);
    let rules = compiler.rules(file, source_name);
    if compiler.errors.is_empty() {
        Ok(rules)
    } else {
        Err(errors(compiler.errors))
    }
}

struct Compiler<'t> {
    text: &'t str,
    errors: Vec<RuleError>,
    /// Field names interned so far; a [`FieldId`] indexes this.
    fields: Vec<String>,
    /// Each index's key attributes, by index name, to be checked once the fields are known.
    index_keys: Vec<(String, Text)>,
    /// Each sum field's widest summed values so far.
    field_digits: HashMap<FieldId, FieldDigits>,
    /// Where each entity's name and key patterns are written, in the file's order.
    entity_places: Vec<Places>,
    /// Each name in [`Compiler::fields`], with its index.
    field_ids: HashMap<String, usize>,
    /// Each aggregate's name, with its index (the first, were a name repeated), once the
    /// aggregates are compiled.
    aggregate_ids: HashMap<String, usize>,
    /// Where each line of the text ends, for errors' positions; computed at the first error.
    newlines: Option<Vec<usize>>,
}

/// An aggregate while entities are compiled against it.
struct AggregateInfo {
    name: String,
    places: Places,
    /// `None` if it did not parse.
    pk: Option<Pattern>,
    sk: Option<Pattern>,
    counters: Vec<FieldId>,
    sums: Vec<FieldId>,
    averages: Vec<Average>,
    /// What each name among its counters, sums and averages is ([`AggregateInfo::role`]).
    roles: HashMap<String, FieldRole>,
    fed: bool,
}

/// What a field name is on one aggregate.
#[derive(Clone, Copy)]
enum FieldRole {
    Counter(FieldId),
    Sum(FieldId),
    Average,
}

impl AggregateInfo {
    /// Key parameters, pk's captures then sk's; `None` if a pattern did not parse.
    fn params(&self) -> Option<impl Iterator<Item = (&str, CaptureType)>> {
        let (pk, sk) = (self.pk.as_ref()?, self.sk.as_ref()?);
        Some(pk.captures().iter().chain(sk.captures()).map(|capture| (capture.name.as_str(), capture.kind)))
    }

    /// What `name` is: a counter, else a sum, else an average, else none of its fields.
    fn role(&self, name: &str) -> Option<FieldRole> {
        self.roles.get(name).copied()
    }

    /// Records a field's role; a name known already keeps its first (counters come before sums,
    /// sums before averages, as [`AggregateInfo::role`] looks).
    fn add_role(&mut self, name: &str, role: FieldRole) {
        if !self.roles.contains_key(name) {
            self.roles.insert(name.to_owned(), role);
        }
    }
}

/// The kind of value in an entity's slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ValueKind {
    Id,
    Text,
    Number,
    Date,
    DateTime,
    Any,
}

impl ValueKind {
    fn of_capture(kind: CaptureType) -> ValueKind {
        match kind {
            CaptureType::Id => ValueKind::Id,
            CaptureType::Date => ValueKind::Date,
            CaptureType::DateTime => ValueKind::DateTime,
        }
    }

    fn of_attribute(kind: AttributeType) -> ValueKind {
        match kind {
            AttributeType::Id => ValueKind::Id,
            AttributeType::String => ValueKind::Text,
            AttributeType::Number => ValueKind::Number,
            AttributeType::Date => ValueKind::Date,
            AttributeType::Datetime => ValueKind::DateTime,
            AttributeType::Any => ValueKind::Any,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            ValueKind::Id => "an id",
            ValueKind::Text => "a string",
            ValueKind::Number => "a number",
            ValueKind::Date => "a date",
            ValueKind::DateTime => "a date-time",
            ValueKind::Any => "of any type",
        }
    }
}

/// One capture or attribute of the entity being compiled.
struct Slot {
    name: String,
    kind: ValueKind,
    attribute: bool,
    /// A number attribute's `max_digits`.
    digits: Option<Digits>,
}

/// `key = { PARAM = VALUE }`: a key parameter bound to a capture or attribute (its slot, if known).
struct Binding<'d> {
    param: &'d Text,
    value: &'d Text,
    slot: Option<usize>,
}

/// `add = { FIELD = AMOUNT }`: what it adds, checked apart from the targets (`None` if unusable).
struct Amounted<'d> {
    field: &'d Text,
    decl: &'d Spanned<AmountDecl>,
    amount: Option<Amount>,
    /// The attribute's `max_digits` and its name as `entity.attribute`, for a summed one.
    digits: Option<(Digits, String)>,
}

/// The widest values summed into one field so far, each with the attribute it comes from: the
/// field's sum must fit DynamoDB's 38 digits whichever attributes feed it.
struct FieldDigits {
    integer: (u64, String),
    fraction: (u64, String),
    reported: bool,
}

/// The entity being compiled.
struct Scope {
    name: String,
    slots: Vec<Slot>,
    /// The slots of each name, in order (a name is in two only in a file that does not load).
    by_name: HashMap<String, Vec<usize>>,
    /// False if a pattern did not parse: its captures are unknown, so unknown names are not
    /// reported.
    complete: bool,
}

impl Scope {
    fn push(&mut self, slot: Slot) {
        self.by_name.entry(slot.name.clone()).or_default().push(self.slots.len());
        self.slots.push(slot);
    }

    /// The first slot named `name` that `fits`.
    fn find(&self, name: &str, fits: impl Fn(&Slot) -> bool) -> Option<usize> {
        self.by_name.get(name)?.iter().copied().find(|&slot| fits(&self.slots[slot]))
    }
}

/// An entity's groups, each found by its aggregate and key parameters' slots.
#[derive(Default)]
struct Groups {
    list: Vec<Group>,
    index: HashMap<(AggregateId, Vec<usize>), usize>,
}

impl<'t> Compiler<'t> {
    fn new(text: &'t str) -> Self {
        Compiler {
            text,
            errors: Vec::new(),
            fields: Vec::new(),
            index_keys: Vec::new(),
            field_digits: HashMap::new(),
            entity_places: Vec::new(),
            field_ids: HashMap::new(),
            aggregate_ids: HashMap::new(),
            newlines: None,
        }
    }
}

impl Compiler<'_> {
    fn error(&mut self, span: Range<usize>, problem: Problem) {
        let position = self.position(span.start);
        self.errors.push(RuleError { position, problem });
    }

    /// [`Position::of`] the text's byte `offset`, without counting the lines before it again for
    /// every error.
    fn position(&mut self, offset: usize) -> Position {
        let text = self.text;
        let newlines =
            self.newlines.get_or_insert_with(|| text.bytes().enumerate().filter(|(_, byte)| *byte == b'\n').map(|(at, _)| at).collect());
        let mut end = offset.min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let line = newlines.partition_point(|&newline| newline < end);
        let line_start = if line == 0 { 0 } else { newlines[line - 1] + 1 };
        Position { line: line + 1, column: text[line_start..end].chars().count() + 1 }
    }

    fn rules(&mut self, file: RulesFile, source_name: &str) -> Rules {
        let prefix_span = file.table.bookkeeping_prefix.span();
        let table = self.table(file.table);
        let limits = self.limits(file.limits);
        // A valid item's ledger key must be one DynamoDB can store (a limit past its own maximum
        // is reported already).
        let ledger_pk_bytes = table.bookkeeping_prefix.len() + LEDGER_PK_INFIX.len() + limits.source_pk_bytes;
        if ledger_pk_bytes > MAX_PARTITION_KEY_BYTES && limits.source_pk_bytes <= MAX_SOURCE_PK_BYTES {
            let problem =
                Problem::PrefixTooLong { bytes: table.bookkeeping_prefix.len(), source_pk_bytes: limits.source_pk_bytes, ledger_pk_bytes };
            self.error(prefix_span, problem);
        }
        let mut aggregates: Vec<AggregateInfo> =
            file.aggregates.0.into_iter().map(|(name, decl)| self.aggregate(&table, name, decl)).collect();
        for (index, aggregate) in aggregates.iter().enumerate() {
            self.aggregate_ids.entry(aggregate.name.clone()).or_insert(index);
        }
        let entities: Vec<Entity> =
            file.entities.0.into_iter().map(|(name, decl)| self.entity(&table, &mut aggregates, name, decl)).collect();
        for aggregate in &aggregates {
            if !aggregate.fed {
                self.error(aggregate.places.name.clone(), Problem::Unfed(aggregate.name.clone()));
            }
        }
        let aggregate_places: Vec<Places> = aggregates.iter().map(|info| info.places.clone()).collect();
        let aggregates: Vec<Aggregate> = aggregates
            .into_iter()
            .map(|info| Aggregate {
                name: info.name,
                pk: info.pk.unwrap_or_default(),
                sk: info.sk.unwrap_or_default(),
                counters: info.counters,
                sums: info.sums,
                averages: info.averages,
            })
            .collect();
        let entity_places = std::mem::take(&mut self.entity_places);
        safety::check(&table, limits, (&aggregates, &aggregate_places), (&entities, &entity_places), &mut |span, problem| {
            self.error(span, problem)
        });
        // tally's own items land in an index keyed on one of their attributes: a number or a list
        // there is a write DynamoDB refuses.
        let averages = aggregates.iter().flat_map(|aggregate| aggregate.averages.iter().map(|average| average.name.clone()));
        let numeric: HashSet<String> = self.fields.iter().cloned().chain(averages).collect();
        for (index, key) in std::mem::take(&mut self.index_keys) {
            let name = key.get_ref().as_str();
            let string_of_tally = [attributes::UPDATED_AT, attributes::RULES_DIGEST, attributes::WRITTEN_BY, attributes::BACKFILL_RUN];
            let tally_writes = attributes::ALL.contains(&name) && !string_of_tally.contains(&name);
            if numeric.contains(name) || name == table.ttl || tally_writes {
                self.error(key.span(), Problem::IndexOnTallyAttribute { index, attribute: name.to_owned() });
            }
        }
        let fields = std::mem::take(&mut self.fields);
        let mut rules = Rules { source_name: source_name.to_owned(), digest: String::new(), table, limits, entities, aggregates, fields };
        rules.digest = digest::digest(&rules);
        rules
    }

    fn non_empty(&mut self, text: &Text, what: &str) {
        if text.get_ref().is_empty() {
            self.error(text.span(), Problem::Empty(what.to_owned()));
        }
    }

    fn table(&mut self, decl: TableDecl) -> Table {
        self.non_empty(&decl.pk, "`table.pk`");
        self.non_empty(&decl.sk, "`table.sk`");
        self.non_empty(&decl.bookkeeping_prefix, "`table.bookkeeping_prefix`");
        if decl.pk.get_ref() == decl.sk.get_ref() {
            self.error(decl.sk.span(), Problem::SameKeyAttributes(decl.sk.get_ref().clone()));
        }
        if let Some(entity_type) = &decl.entity_type {
            self.non_empty(entity_type, "`table.entity_type`");
            if entity_type.get_ref() == decl.pk.get_ref() || entity_type.get_ref() == decl.sk.get_ref() {
                self.error(entity_type.span(), Problem::EntityTypeIsKey(entity_type.get_ref().clone()));
            }
        }
        if let Some(ttl) = &decl.ttl {
            self.non_empty(ttl, "`table.ttl`");
            let type_attribute = decl.entity_type.as_ref().map_or(TYPE_ATTRIBUTE, |attribute| attribute.get_ref().as_str());
            let taken = [decl.pk.get_ref().as_str(), decl.sk.get_ref().as_str(), type_attribute];
            if taken.contains(&ttl.get_ref().as_str()) || attributes::ALL.contains(&ttl.get_ref().as_str()) {
                self.error(ttl.span(), Problem::TtlTaken(ttl.get_ref().clone()));
            }
        }
        let mut indexes: Vec<Index> = Vec::new();
        let mut index_names: HashSet<String> = HashSet::new();
        for index in decl.indexes {
            self.non_empty(&index.name, "an index's `name`");
            self.non_empty(&index.pk, "an index's `pk`");
            if let Some(sk) = &index.sk {
                self.non_empty(sk, "an index's `sk`");
            }
            if !index_names.insert(index.name.get_ref().clone()) {
                self.error(index.name.span(), Problem::RepeatedIndex(index.name.get_ref().clone()));
                continue;
            }
            self.index_keys.extend(std::iter::once(&index.pk).chain(&index.sk).map(|key| (index.name.get_ref().clone(), key.clone())));
            indexes.push(Index { name: index.name.into_inner(), pk: index.pk.into_inner(), sk: index.sk.map(Spanned::into_inner) });
        }
        let mut reserved_prefixes: Vec<String> = Vec::new();
        let mut reserved: HashSet<String> = HashSet::new();
        for prefix in decl.reserved_prefixes {
            self.non_empty(&prefix, "a reserved prefix");
            if !reserved.insert(prefix.get_ref().clone()) {
                self.error(prefix.span(), Problem::RepeatedReservedPrefix(prefix.get_ref().clone()));
                continue;
            }
            reserved_prefixes.push(prefix.into_inner());
        }
        Table {
            indexes,
            reserved_prefixes,
            pk: decl.pk.into_inner(),
            sk: decl.sk.into_inner(),
            entity_type: decl.entity_type.map(Spanned::into_inner),
            bookkeeping_prefix: decl.bookkeeping_prefix.into_inner(),
            ttl: decl.ttl.map_or_else(|| DEFAULT_TTL.to_owned(), Spanned::into_inner),
        }
    }

    fn limits(&mut self, decl: LimitsDecl) -> Limits {
        Limits {
            source_pk_bytes: self.limit("source_pk_bytes", decl.source_pk_bytes, MAX_SOURCE_PK_BYTES),
            source_sk_bytes: self.limit("source_sk_bytes", decl.source_sk_bytes, MAX_SOURCE_SK_BYTES),
        }
    }

    fn limit(&mut self, name: &'static str, value: Option<Spanned<usize>>, max: usize) -> usize {
        let Some(value) = value else { return max };
        if *value.get_ref() == 0 {
            self.error(value.span(), Problem::LimitZero(name));
        } else if *value.get_ref() > max {
            self.error(value.span(), Problem::LimitTooHigh { name, value: *value.get_ref(), max });
        }
        value.into_inner()
    }

    /// Parses a pattern; a partition key's (`bookkeeping` given) must not start with the
    /// bookkeeping prefix, or its items would be taken for tally's own.
    fn pattern(&mut self, text: &Text, bookkeeping: Option<&str>) -> Option<Pattern> {
        match Pattern::parse(text.get_ref()) {
            Err(problem) => {
                self.error(text.span(), Problem::Pattern { pattern: text.get_ref().clone(), problem });
                None
            }
            Ok(pattern) => {
                if let Some(prefix) = bookkeeping.filter(|prefix| !prefix.is_empty() && pattern.prefix().starts_with(prefix)) {
                    self.error(text.span(), Problem::BookkeepingPrefix { pattern: text.get_ref().clone(), prefix: prefix.to_owned() });
                }
                Some(pattern)
            }
        }
    }

    /// Reports a capture name used twice across a pk and an sk pattern.
    fn repeated_captures(&mut self, owner: &str, sk_text: &Text, pk: Option<&Pattern>, sk: Option<&Pattern>) {
        let mut seen: HashSet<&str> = HashSet::new();
        for name in pk.into_iter().chain(sk).flat_map(|pattern| pattern.captures()).map(|capture| capture.name.as_str()) {
            if !seen.insert(name) {
                self.error(sk_text.span(), Problem::RepeatedCapture { owner: owner.to_owned(), capture: name.to_owned() });
            }
        }
    }

    fn aggregate(&mut self, table: &Table, name: Text, decl: AggregateDecl) -> AggregateInfo {
        self.non_empty(&name, "an aggregate's name");
        if name.get_ref().starts_with(TALLY_TYPE_PREFIX) {
            self.error(name.span(), Problem::TallyTypeName(name.get_ref().clone()));
        }
        let pk = self.pattern(&decl.pk, Some(&table.bookkeeping_prefix));
        let sk = self.pattern(&decl.sk, None);
        self.repeated_captures(&format!("aggregate `{}`", name.get_ref()), &decl.sk, pk.as_ref(), sk.as_ref());
        for (text, pattern) in [(&decl.pk, &pk), (&decl.sk, &sk)] {
            for capture in pattern.iter().flat_map(Pattern::captures).filter(|capture| capture.kind == CaptureType::DateTime) {
                let problem = Problem::DateTimeParameter { aggregate: name.get_ref().clone(), parameter: capture.name.clone() };
                self.error(text.span(), problem);
            }
        }
        if decl.counters.is_empty() && decl.sums.is_empty() {
            self.error(name.span(), Problem::NoFields(name.get_ref().clone()));
        }
        let places = Places { name: name.span(), pk: decl.pk.span(), sk: decl.sk.span() };
        let mut declared: HashSet<String> = HashSet::new();
        let counters: Vec<FieldId> =
            decl.counters.iter().filter_map(|field| self.field(table, name.get_ref(), &mut declared, field)).collect();
        let sums: Vec<FieldId> = decl.sums.iter().filter_map(|field| self.field(table, name.get_ref(), &mut declared, field)).collect();
        let mut roles: HashMap<String, FieldRole> = HashMap::with_capacity(counters.len() + sums.len());
        let fields = counters.iter().map(|&id| (id, FieldRole::Counter(id))).chain(sums.iter().map(|&id| (id, FieldRole::Sum(id))));
        for (id, role) in fields {
            roles.entry(self.fields[id.0].clone()).or_insert(role);
        }
        let mut info =
            AggregateInfo { name: name.get_ref().clone(), places, pk, sk, counters, sums, averages: Vec::new(), roles, fed: false };
        for (average, decl) in decl.averages.0 {
            let named = self.field_name(table, name.get_ref(), &mut declared, &average);
            let sum = match info.role(decl.sum.get_ref()) {
                Some(FieldRole::Sum(id)) => Some(id),
                _ => {
                    let problem = Problem::NotASum {
                        average: average.get_ref().clone(),
                        sum: decl.sum.get_ref().clone(),
                        aggregate: info.name.clone(),
                    };
                    self.error(decl.sum.span(), problem);
                    None
                }
            };
            let count = match info.role(decl.count.get_ref()) {
                Some(FieldRole::Counter(id)) => Some(id),
                _ => {
                    let problem = Problem::NotACounter {
                        average: average.get_ref().clone(),
                        count: decl.count.get_ref().clone(),
                        aggregate: info.name.clone(),
                    };
                    self.error(decl.count.span(), problem);
                    None
                }
            };
            let places = *decl.places.get_ref();
            if i64::from(places) > AVERAGE_SCALE {
                self.error(decl.places.span(), Problem::Places { average: average.get_ref().clone(), places });
            }
            if let (true, Some(sum), Some(count)) = (named, sum, count) {
                info.add_role(average.get_ref(), FieldRole::Average);
                info.averages.push(Average { name: average.into_inner(), sum, count, places });
            }
        }
        info
    }

    /// Checks one counter's or sum's name and interns it; `None` if it is unusable.
    fn field(&mut self, table: &Table, aggregate: &str, declared: &mut HashSet<String>, field: &Text) -> Option<FieldId> {
        if !self.field_name(table, aggregate, declared, field) {
            return None;
        }
        let name = field.get_ref();
        let index = match self.field_ids.get(name) {
            Some(index) => *index,
            None => {
                self.fields.push(name.clone());
                self.field_ids.insert(name.clone(), self.fields.len() - 1);
                self.fields.len() - 1
            }
        };
        Some(FieldId(index))
    }

    /// Checks the name of a field of `aggregate` (counter, sum or average): not empty, not an
    /// attribute tally writes, not declared before (`declared`, which it joins).
    fn field_name(&mut self, table: &Table, aggregate: &str, declared: &mut HashSet<String>, field: &Text) -> bool {
        let name = field.get_ref();
        if name.is_empty() {
            self.error(field.span(), Problem::Empty("a field name".to_owned()));
            return false;
        }
        let written_by_tally = [table.pk(), table.sk(), table.type_attribute(), table.ttl()];
        if written_by_tally.contains(&name.as_str()) || attributes::ALL.contains(&name.as_str()) {
            self.error(field.span(), Problem::ReservedField { aggregate: aggregate.to_owned(), field: name.clone() });
            return false;
        }
        if declared.contains(name) {
            self.error(field.span(), Problem::RepeatedField { aggregate: aggregate.to_owned(), field: name.clone() });
            return false;
        }
        declared.insert(name.clone());
        true
    }

    fn entity(&mut self, table: &Table, aggregates: &mut [AggregateInfo], name: Text, decl: EntityDecl) -> Entity {
        self.non_empty(&name, "an entity's name");
        if name.get_ref().starts_with(TALLY_TYPE_PREFIX) {
            self.error(name.span(), Problem::TallyTypeName(name.get_ref().clone()));
        }
        self.entity_places.push(Places { name: name.span(), pk: decl.pk.span(), sk: decl.sk.span() });
        if self.aggregate_ids.contains_key(name.get_ref()) {
            self.error(name.span(), Problem::NameClash(name.get_ref().clone()));
        }
        let by_keys = match decl.matched_by {
            Some(matched_by) => {
                if *matched_by.get_ref() == MatchBy::Type && table.entity_type.is_none() {
                    self.error(matched_by.span(), Problem::NoEntityTypeAttribute(name.get_ref().clone()));
                }
                *matched_by.get_ref() == MatchBy::Keys
            }
            None => table.entity_type.is_none(),
        };
        let pk = self.pattern(&decl.pk, Some(&table.bookkeeping_prefix));
        let sk = self.pattern(&decl.sk, None);
        self.repeated_captures(&format!("entity `{}`", name.get_ref()), &decl.sk, pk.as_ref(), sk.as_ref());
        let mut scope =
            Scope { name: name.get_ref().clone(), slots: Vec::new(), by_name: HashMap::new(), complete: pk.is_some() && sk.is_some() };
        for capture in pk.iter().chain(&sk).flat_map(Pattern::captures) {
            scope.push(Slot { name: capture.name.clone(), kind: ValueKind::of_capture(capture.kind), attribute: false, digits: None });
        }
        let attributes =
            decl.attributes.0.into_iter().map(|(attribute, decl)| self.attribute(table, &mut scope, attribute, decl)).collect();
        let mut groups = Groups::default();
        for contribution in decl.contributions {
            self.contribution(&scope, aggregates, contribution, &mut groups);
        }
        Entity { name: name.into_inner(), by_keys, pk: pk.unwrap_or_default(), sk: sk.unwrap_or_default(), attributes, groups: groups.list }
    }

    fn attribute(&mut self, table: &Table, scope: &mut Scope, name: Text, decl: AttributeDecl) -> Attribute {
        let attribute = name.get_ref().clone();
        self.non_empty(&name, "an attribute's name");
        if attribute == table.pk || attribute == table.sk || table.entity_type.as_deref() == Some(&attribute) {
            self.error(name.span(), Problem::KeyAttribute { entity: scope.name.clone(), attribute: attribute.clone() });
        }
        if scope.find(&attribute, |slot| !slot.attribute).is_some() {
            self.error(name.span(), Problem::CaptureAndAttribute { entity: scope.name.clone(), name: attribute.clone() });
        }
        let kind = *decl.kind.get_ref();
        let number = kind == AttributeType::Number;
        let not_for_numbers = |compiler: &mut Self, span: Range<usize>, constraint: &'static str| {
            if !number {
                compiler.error(span, Problem::NumberConstraint { attribute: attribute.clone(), constraint, kind: kind.name() });
            }
        };
        let non_negative = decl.non_negative.as_ref().is_some_and(|flag| *flag.get_ref());
        if let Some(flag) = &decl.non_negative {
            not_for_numbers(self, flag.span(), "non_negative");
        }
        if let Some(reason) = &decl.negative_reason {
            if !non_negative {
                self.error(reason.span(), Problem::ReasonWithoutConstraint(attribute.clone()));
            } else if !is_snake_case(reason.get_ref()) {
                self.error(reason.span(), Problem::BadReason { attribute: attribute.clone(), reason: reason.get_ref().clone() });
            }
        }
        let max_digits = decl.max_digits.map(|digits| {
            not_for_numbers(self, digits.span(), "max_digits");
            let total = digits.get_ref().integer.saturating_add(digits.get_ref().fraction);
            if total > SUMMED_DIGITS {
                self.error(digits.span(), Problem::DigitBudget { attribute: attribute.clone(), digits: total });
            }
            Digits { integer: digits.get_ref().integer, fraction: digits.get_ref().fraction }
        });
        scope.push(Slot { name: attribute.clone(), kind: ValueKind::of_attribute(kind), attribute: true, digits: max_digits });
        Attribute {
            name: attribute,
            kind,
            required: !decl.optional,
            negative_reason: non_negative.then(|| decl.negative_reason.map_or_else(|| NEGATIVE_REASON.to_owned(), Spanned::into_inner)),
            max_digits,
        }
    }

    /// The slot `name` names in `scope` (only an attribute's, if `attributes_only`); reports it
    /// unknown unless the scope is incomplete.
    fn slot(&mut self, scope: &Scope, name: &Text, attributes_only: bool) -> Option<usize> {
        let found = scope.find(name.get_ref(), |slot| slot.attribute || !attributes_only);
        if found.is_none() && scope.complete {
            let (entity, name_text) = (scope.name.clone(), name.get_ref().clone());
            let problem = if attributes_only {
                Problem::UnknownAttribute { entity, name: name_text }
            } else {
                Problem::UnknownValue { entity, name: name_text }
            };
            self.error(name.span(), problem);
        }
        found
    }

    /// Compiles one contribution into the entity's groups (one per aggregate item it adds to).
    fn contribution(&mut self, scope: &Scope, aggregates: &mut [AggregateInfo], decl: ContributionDecl, groups: &mut Groups) {
        let (targets, all_known) = self.targets(&decl.to);
        let bindings: Vec<Binding<'_>> =
            decl.key.0.iter().map(|(param, value)| Binding { param, value, slot: self.slot(scope, value, false) }).collect();
        if all_known {
            self.unused_parameters(aggregates, &targets, &bindings);
        }
        let conditions = self.conditions(scope, &decl.when);
        let amounts: Vec<Amounted<'_>> = decl.add.get_ref().0.iter().map(|(field, decl)| self.amounted(scope, field, decl)).collect();
        if amounts.is_empty() {
            self.error(decl.add.span(), Problem::NoAmounts);
        }
        for (aggregate, target_span) in targets {
            let params = self.params(scope, &aggregates[aggregate.0], &target_span, &bindings);
            let adds = self.adds(&aggregates[aggregate.0], &amounts, &conditions);
            aggregates[aggregate.0].fed = true;
            let Some(params) = params else { continue };
            match groups.index.get(&(aggregate, params.clone())) {
                Some(&group) => groups.list[group].adds.extend(adds),
                None => {
                    groups.index.insert((aggregate, params.clone()), groups.list.len());
                    groups.list.push(Group { aggregate, params, adds });
                }
            }
        }
    }

    /// Reports a binding no target has the parameter of (when every target's keys are known).
    fn unused_parameters(&mut self, aggregates: &[AggregateInfo], targets: &[(AggregateId, Range<usize>)], bindings: &[Binding<'_>]) {
        if targets.iter().any(|(target, _)| aggregates[target.0].params().is_none()) {
            return;
        }
        let params: HashSet<&str> =
            targets.iter().filter_map(|(target, _)| aggregates[target.0].params()).flatten().map(|(name, _)| name).collect();
        for Binding { param, .. } in bindings {
            let used = params.contains(param.get_ref().as_str());
            if !used {
                self.error(param.span(), Problem::UnusedParameter(param.get_ref().clone()));
            }
        }
    }

    fn conditions(&mut self, scope: &Scope, when: &WhenDecl) -> Vec<Condition> {
        let mut conditions = Vec::new();
        if let Some(present) = &when.present {
            conditions.extend(self.slot(scope, present, true).map(Condition::Present));
        }
        for (name, value) in &when.equals.0 {
            let Some(slot) = self.slot(scope, name, false) else { continue };
            let kind = scope.slots[slot].kind;
            if kind == ValueKind::Id || kind == ValueKind::Text {
                conditions.push(Condition::Equals(slot, value.get_ref().clone()));
            } else {
                self.error(name.span(), Problem::EqualsType { name: name.get_ref().clone(), found: kind.describe() });
            }
        }
        conditions
    }

    /// What `amounts` add to one target, each checked against the field's role there.
    fn adds(&mut self, info: &AggregateInfo, amounts: &[Amounted<'_>], conditions: &[Condition]) -> Vec<Add> {
        let mut adds = Vec::new();
        for Amounted { field, decl, amount, digits } in amounts {
            let (field_name, aggregate) = (field.get_ref().clone(), info.name.clone());
            let add = |field, amount| Add { conditions: conditions.to_vec(), field, amount };
            match (info.role(field.get_ref()), decl.get_ref()) {
                (None, _) => self.error(field.span(), Problem::UnknownField { aggregate, field: field_name }),
                (Some(FieldRole::Average), _) => self.error(field.span(), Problem::AddToAverage { aggregate, field: field_name }),
                (Some(FieldRole::Counter(id)), AmountDecl::Integer(1)) => adds.push(add(id, Amount::One)),
                (Some(FieldRole::Counter(_)), _) => self.error(decl.span(), Problem::CounterAddsOne { aggregate, field: field_name }),
                (Some(FieldRole::Sum(id)), AmountDecl::Attribute(_)) => {
                    if let Some(digits) = digits {
                        self.sum_digits(id, digits, decl.span());
                    }
                    adds.extend(amount.clone().map(|amount| add(id, amount)));
                }
                (Some(FieldRole::Sum(_)), AmountDecl::Integer(_)) => {
                    self.error(decl.span(), Problem::SumAddsAttribute { aggregate, field: field_name });
                }
            }
        }
        adds
    }

    /// The aggregates `to` names, each with where it is named; and whether `to` names at least
    /// one and knows them all.
    fn targets(&mut self, to: &Spanned<Targets>) -> (Vec<(AggregateId, Range<usize>)>, bool) {
        let named: Vec<(&str, Range<usize>)> = match to.get_ref() {
            Targets::One(name) => vec![(name.as_str(), to.span())],
            Targets::Many(names) => names.iter().map(|name| (name.get_ref().as_str(), name.span())).collect(),
        };
        if named.is_empty() {
            self.error(to.span(), Problem::NoTarget);
        }
        let mut all_known = !named.is_empty();
        let mut targets: Vec<(AggregateId, Range<usize>)> = Vec::new();
        let mut known: HashSet<usize> = HashSet::new();
        for (name, span) in named {
            match self.aggregate_ids.get(name).copied() {
                None => {
                    self.error(span, Problem::UnknownAggregate(name.to_owned()));
                    all_known = false;
                }
                Some(index) if !known.insert(index) => {
                    self.error(span, Problem::RepeatedTarget(name.to_owned()));
                }
                Some(index) => targets.push((AggregateId(index), span)),
            }
        }
        (targets, all_known)
    }

    fn amounted<'d>(&mut self, scope: &Scope, field: &'d Text, decl: &'d Spanned<AmountDecl>) -> Amounted<'d> {
        let amount = self.amount(scope, decl);
        let digits = match amount {
            Some(Amount::Attribute(slot)) => {
                let slot = &scope.slots[slot];
                slot.digits.map(|digits| (digits, format!("{}.{}", scope.name, slot.name)))
            }
            _ => None,
        };
        Amounted { field, decl, amount, digits }
    }

    /// Widens `field`'s digit budget by one more attribute summed into it; reports the field
    /// once, where its budget first passes [`SUMMED_DIGITS`].
    fn sum_digits(&mut self, field: FieldId, (digits, from): &(Digits, String), span: Range<usize>) {
        let budget = self.field_digits.entry(field).or_insert_with(|| FieldDigits {
            integer: (digits.integer, from.clone()),
            fraction: (digits.fraction, from.clone()),
            reported: false,
        });
        if digits.integer > budget.integer.0 {
            budget.integer = (digits.integer, from.clone());
        }
        if digits.fraction > budget.fraction.0 {
            budget.fraction = (digits.fraction, from.clone());
        }
        let total = budget.integer.0.saturating_add(budget.fraction.0);
        // One attribute over the budget alone is [`Problem::DigitBudget`], reported already.
        if total > SUMMED_DIGITS && !budget.reported && budget.integer.1 != budget.fraction.1 {
            budget.reported = true;
            let problem = Problem::FieldDigitBudget {
                field: self.fields[field.0].clone(),
                integer: budget.integer.0,
                integer_from: budget.integer.1.clone(),
                fraction: budget.fraction.0,
                fraction_from: budget.fraction.1.clone(),
                total,
            };
            self.error(span, problem);
        }
    }

    /// What one `add` value adds, checked apart from the fields it goes to.
    fn amount(&mut self, scope: &Scope, amount: &Spanned<AmountDecl>) -> Option<Amount> {
        let AmountDecl::Attribute(name) = amount.get_ref() else { return None };
        let slot = self.slot(scope, &Spanned::new(amount.span(), name.clone()), true)?;
        let found = &scope.slots[slot];
        if found.kind != ValueKind::Number {
            self.error(amount.span(), Problem::NotANumber { name: name.clone(), found: found.kind.describe() });
            return None;
        }
        if found.digits.is_none() {
            self.error(amount.span(), Problem::UnboundedSum { attribute: name.clone(), entity: scope.name.clone() });
        }
        Some(Amount::Attribute(slot))
    }

    /// The slot each key parameter of `aggregate` is bound to; `None` if one is not bound, or
    /// the aggregate's keys did not parse.
    fn params(&mut self, scope: &Scope, aggregate: &AggregateInfo, target: &Range<usize>, bindings: &[Binding<'_>]) -> Option<Vec<usize>> {
        let params: Vec<(String, CaptureType)> = aggregate.params()?.map(|(name, kind)| (name.to_owned(), kind)).collect();
        let mut by_param: HashMap<&str, &Binding<'_>> = HashMap::with_capacity(bindings.len());
        for binding in bindings {
            by_param.entry(binding.param.get_ref().as_str()).or_insert(binding);
        }
        let mut slots = Some(Vec::with_capacity(params.len()));
        for (param, kind) in params {
            let Some(binding) = by_param.get(param.as_str()).copied() else {
                self.error(target.clone(), Problem::UnboundParameter { aggregate: aggregate.name.clone(), parameter: param });
                slots = None;
                continue;
            };
            let Some(slot) = binding.slot else {
                slots = None;
                continue;
            };
            let found = scope.slots[slot].kind;
            let (fits, expected) = match kind {
                CaptureType::Id => (found == ValueKind::Id, "an id"),
                _ => (found == ValueKind::Date || found == ValueKind::DateTime, "a date or date-time"),
            };
            if !fits {
                let problem =
                    Problem::ParameterType { parameter: param, expected, name: scope.slots[slot].name.clone(), found: found.describe() };
                self.error(binding.value.span(), problem);
                slots = None;
                continue;
            }
            if let Some(slots) = &mut slots {
                slots.push(slot);
            }
        }
        slots
    }
}

fn is_snake_case(text: &str) -> bool {
    text.bytes().next().is_some_and(|first| first.is_ascii_lowercase())
        && text.bytes().all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_positions_are_those_position_of_gives() {
        let text = "a = 1\nbé = 2\n\n[x]\r\nλ = \"é\"";
        let mut compiler = Compiler::new(text);
        for offset in 0..text.len() + 3 {
            assert_eq!(compiler.position(offset), Position::of(text, offset), "{offset}");
        }
    }
}
