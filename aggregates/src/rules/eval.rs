//! Evaluating images, and reading table keys, with compiled [`Rules`].
//!
//! Per image this allocates no more than hand-written rules would: one `Vec` of the values read
//! (they borrow the image), the rendered keys of the aggregate items touched and their amounts
//! (a [`Number`] allocates), and a message's parts only as borrowed names. Patterns are split in
//! place; no regex, no formatting but the aggregate keys.

use chrono::NaiveDate;
use serde_dynamo::{AttributeValue, Item};

use super::assessment::{NumberProblem, RuleAssessment, Violation};
use super::compiled::{Add, Aggregate, AggregateId, Amount, Attribute, Condition, Entity, Group, Rules};
use super::model::AttributeType;
use super::pattern::{Capture, CaptureType, KeyPart, Pattern, DAY_FORMAT};
use crate::dates::{calendar_date, utc_day};
use crate::deltas::Deltas;
use crate::keys::{AggregateKey, KeyOwner, MAX_PARTITION_KEY_BYTES, MAX_SORT_KEY_BYTES};
use crate::number::{Number, NumberError};

/// A value an entity read from an image, in its slot.
#[derive(Debug, Clone)]
enum Value<'a> {
    /// An optional attribute the image does not have.
    Absent,
    Text(&'a str),
    /// A date, or a date-time's UTC day.
    Day(NaiveDate),
    Number(Number),
    /// An attribute of type `any`.
    Present,
}

impl Rules {
    /// Decodes, validates and evaluates one image.
    ///
    /// An image whose entity-type attribute names an entity is that entity; one without (or
    /// naming none) is the first entity matched by keys whose patterns its keys fit, else
    /// unknown. Checks run in this order, the first failure being the reason: the own keys'
    /// lengths, the pk pattern, the sk pattern, a pk under a prefix only tally writes
    /// (`reserved_key`), the attributes in the file's order, then the aggregate keys: too long,
    /// or not reading back as the values they are built from (`ambiguous_key`), the first in
    /// aggregate then key order.
    pub fn assess(&self, image: Option<&Item>) -> RuleAssessment<'_> {
        let Some(image) = image else { return RuleAssessment::Absent };
        let mut entity = None;
        if let Some(attribute) = &self.table.entity_type {
            match image.get(attribute.as_str()) {
                None => {}
                Some(AttributeValue::S(value)) => entity = self.entities.iter().find(|entity| !entity.by_keys && entity.name == *value),
                Some(other) => return RuleAssessment::Rejected { entity: None, violation: wrong_type(attribute, "S", other) },
            }
        }
        let Some(entity) = entity.or_else(|| self.matched_by_keys(image)) else { return RuleAssessment::Unknown };
        match self.evaluate(entity, image) {
            Ok(contribution) => RuleAssessment::Source { entity, contribution },
            Err(violation) => RuleAssessment::Rejected { entity: Some(entity), violation },
        }
    }

    /// The first entity matched by keys whose patterns' literals the image's keys fit (typed
    /// captures are checked later: a key of the right form but a bad date is that entity's,
    /// rejected).
    fn matched_by_keys(&self, image: &Item) -> Option<&Entity> {
        let (Some(AttributeValue::S(pk)), Some(AttributeValue::S(sk))) =
            (image.get(self.table.pk.as_str()), image.get(self.table.sk.as_str()))
        else {
            return None;
        };
        let fits = |pattern: &Pattern, key: &str| pattern.split(key, false, |_, _, _| true);
        self.entities.iter().filter(|entity| entity.by_keys).find(|entity| fits(&entity.pk, pk) && fits(&entity.sk, sk))
    }

    fn evaluate<'r>(&'r self, entity: &'r Entity, image: &Item) -> Result<Deltas, Violation<'r>> {
        within(image, &self.table.pk, self.limits.source_pk_bytes)?;
        within(image, &self.table.sk, self.limits.source_sk_bytes)?;
        let mut values = vec![Value::Absent; entity.slots()];
        let (captures, attributes) = values.split_at_mut(entity.first_attribute_slot());
        let (pk_captures, sk_captures) = captures.split_at_mut(entity.pk.captures().len());
        let pk = read_key(image, &self.table.pk, &entity.pk, pk_captures)?;
        read_key(image, &self.table.sk, &entity.sk, sk_captures)?;
        // The application promised never to write there: tally's own items live there.
        if let Some(prefix) = self.table.reserved_prefix_of(pk) {
            return Err(Violation::ReservedKey { key: &self.table.pk, prefix });
        }
        for (value, attribute) in attributes.iter_mut().zip(&entity.attributes) {
            *value = attribute.read(image)?;
        }
        self.contribution(entity, &values)
    }

    fn contribution<'r>(&'r self, entity: &'r Entity, values: &[Value<'_>]) -> Result<Deltas, Violation<'r>> {
        let mut contribution = Deltas::new();
        let one = Number::one();
        let mut unwritable: Option<(AggregateKey, Violation<'r>)> = None;
        for group in &entity.groups {
            let holds = |add: &&Add| conditions_hold(add, values);
            if !group.adds.iter().any(|add| conditions_hold(add, values)) {
                continue;
            }
            let aggregate = &self.aggregates[group.aggregate.0];
            // A key parameter bound to an absent attribute: nothing to add there (the university
            // contract: "an item without a date adds nothing there").
            let Some(key) = render(aggregate, group, values) else { continue };
            if let Some(violation) = self.oversized(aggregate, &key).or_else(|| self.ambiguous(aggregate, group, values, &key)) {
                if unwritable.as_ref().is_none_or(|(first, _)| key < *first) {
                    unwritable = Some((key, violation));
                }
                continue;
            }
            if unwritable.is_some() {
                // Invalid already: its amounts are not needed.
                continue;
            }
            let amounts = group.adds.iter().filter(holds).filter_map(|add| match add.amount {
                Amount::One => Some((add.field, &one)),
                Amount::Attribute(slot) => match &values[slot] {
                    Value::Number(amount) => Some((add.field, amount)),
                    _ => None,
                },
            });
            contribution.add_to(key, amounts);
        }
        match unwritable {
            Some((_, violation)) => Err(violation),
            None => Ok(contribution),
        }
    }

    /// Whether DynamoDB could not store an aggregate item under `key`; pk is checked first.
    fn oversized<'r>(&'r self, aggregate: &'r Aggregate, key: &AggregateKey) -> Option<Violation<'r>> {
        let too_long = |name: &'r str, bytes: usize, limit: usize| {
            (bytes > limit).then_some(Violation::AggregateKeyTooLong { aggregate: &aggregate.name, key: name, bytes, limit })
        };
        too_long(&self.table.pk, key.pk.len(), MAX_PARTITION_KEY_BYTES)
            .or_else(|| too_long(&self.table.sk, key.sk.len(), MAX_SORT_KEY_BYTES))
    }

    /// Whether `key`, rendered from `values`, would read back as other values: a value holding
    /// the literal that follows it in the template moves the split, and the key could then name
    /// another item of the aggregate. (`rules check` proves different aggregates' keys apart.)
    fn ambiguous<'r>(&'r self, aggregate: &'r Aggregate, group: &Group, values: &[Value<'_>], key: &AggregateKey) -> Option<Violation<'r>> {
        let sk_params = aggregate.pk.captures().len();
        let reads_back = |pattern: &Pattern, text: &str, first: usize| {
            pattern.split(text, false, |index, _, part| match &values[group.params[first + index]] {
                Value::Text(value) => *value == part,
                Value::Day(day) => canonical_day(part) == Some(*day),
                _ => false,
            })
        };
        if !reads_back(&aggregate.pk, &key.pk, 0) {
            Some(Violation::AmbiguousKey { aggregate: &aggregate.name, key: &self.table.pk })
        } else if !reads_back(&aggregate.sk, &key.sk, sk_params) {
            Some(Violation::AmbiguousKey { aggregate: &aggregate.name, key: &self.table.sk })
        } else {
            None
        }
    }

    /// The aggregate item a table key names, if it names one: only keys as tally writes them
    /// (`day#2026-3-1` names none).
    pub fn parse_key(&self, pk: &str, sk: &str) -> Option<AggregateKey> {
        let kind = self.aggregate_of(pk, sk)?;
        Some(AggregateKey { kind, pk: pk.to_owned(), sk: sk.to_owned() })
    }

    /// Who an item belongs to, judged from its table key alone (a REMOVE carries no new image).
    /// The bookkeeping prefix marks tally's own items; an aggregate's
    /// key templates mark its items, an empty id included; a partition key with no parameter
    /// (`stats#university`) is the aggregate's whole partition.
    pub fn owner(&self, pk: &str, sk: &str) -> KeyOwner {
        if pk.starts_with(self.table.bookkeeping_prefix.as_str()) {
            KeyOwner::Bookkeeping
        } else if self.aggregates.iter().any(|aggregate| aggregate.pk.constant() == Some(pk)) || self.aggregate_of(pk, sk).is_some() {
            KeyOwner::Aggregate
        } else {
            KeyOwner::Application
        }
    }

    fn aggregate_of(&self, pk: &str, sk: &str) -> Option<AggregateId> {
        let reads = |pattern: &Pattern, key: &str| {
            pattern.split(key, true, |_, capture, text| capture.kind == CaptureType::Id || canonical_day(text).is_some())
        };
        self.aggregates.iter().position(|aggregate| reads(&aggregate.pk, pk) && reads(&aggregate.sk, sk)).map(AggregateId)
    }
}

/// A key attribute that is a string must be at most `limit` bytes (UTF-8).
fn within<'r>(image: &Item, key: &'r str, limit: usize) -> Result<(), Violation<'r>> {
    match image.get(key) {
        Some(AttributeValue::S(value)) if value.len() > limit => Err(Violation::KeyTooLong { key, bytes: value.len(), limit }),
        _ => Ok(()),
    }
}

/// Reads a key attribute by its pattern, its captures into `values`; returns the key.
fn read_key<'a, 'r>(image: &'a Item, attribute: &'r str, pattern: &'r Pattern, values: &mut [Value<'a>]) -> Result<&'a str, Violation<'r>> {
    let key = match image.get(attribute) {
        None => return Err(Violation::Missing(attribute)),
        Some(AttributeValue::S(key)) => key.as_str(),
        Some(other) => return Err(wrong_type(attribute, "S", other)),
    };
    let fits = pattern.split(key, false, |index, capture, text| match capture_value(capture, text) {
        Some(value) => {
            values[index] = value;
            true
        }
        None => false,
    });
    if fits {
        Ok(key)
    } else {
        Err(Violation::KeyShape { attribute, shape: pattern.shape() })
    }
}

fn capture_value<'a>(capture: &Capture, text: &'a str) -> Option<Value<'a>> {
    match capture.kind {
        CaptureType::Id => Some(Value::Text(text)),
        CaptureType::Date => calendar_date(text).map(Value::Day),
        CaptureType::DateTime => utc_day(text).map(Value::Day),
    }
}

impl Attribute {
    /// Reads and validates this attribute of `image`: type, then the value's own checks.
    fn read<'a>(&self, image: &'a Item) -> Result<Value<'a>, Violation<'_>> {
        let name = self.name.as_str();
        let Some(value) = image.get(name) else {
            return if self.required { Err(Violation::Missing(name)) } else { Ok(Value::Absent) };
        };
        let text = || match value {
            AttributeValue::S(text) => Ok(text.as_str()),
            other => Err(wrong_type(name, "S", other)),
        };
        match self.kind {
            AttributeType::Any => Ok(Value::Present),
            AttributeType::String => text().map(Value::Text),
            AttributeType::Id => match text()? {
                "" => Err(Violation::Empty(name)),
                id => Ok(Value::Text(id)),
            },
            AttributeType::Date => calendar_date(text()?).map(Value::Day).ok_or(Violation::BadDate(name)),
            AttributeType::Datetime => utc_day(text()?).map(Value::Day).ok_or(Violation::BadDate(name)),
            AttributeType::Number => self.number(value).map(Value::Number),
        }
    }

    /// A number attribute: a DynamoDB number, then its sign, then its digits.
    fn number(&self, value: &AttributeValue) -> Result<Number, Violation<'_>> {
        let attribute = self.name.as_str();
        let AttributeValue::N(text) = value else { return Err(wrong_type(attribute, "N", value)) };
        let number: Number = text.parse().map_err(|err| Violation::BadNumber {
            attribute,
            problem: match err {
                NumberError::NotANumber(_) => NumberProblem::NotANumber,
                NumberError::TooPrecise { .. } => NumberProblem::TooPrecise,
                NumberError::OutOfRange(_) => NumberProblem::OutOfRange,
            },
        })?;
        if let Some(reason) = self.negative_reason.as_deref().filter(|_| number.is_negative()) {
            return Err(Violation::Negative { attribute, reason });
        }
        match self.max_digits {
            Some(digits) if number.integer_digits() > digits.integer || number.fraction_digits() > digits.fraction => {
                Err(Violation::OutOfRange { attribute, integer: digits.integer, fraction: digits.fraction })
            }
            _ => Ok(number),
        }
    }
}

fn wrong_type<'r>(attribute: &'r str, expected: &'static str, found: &AttributeValue) -> Violation<'r> {
    Violation::WrongType { attribute, expected, found: type_name(found) }
}

fn conditions_hold(add: &Add, values: &[Value<'_>]) -> bool {
    add.conditions.iter().all(|condition| match condition {
        Condition::Present(slot) => !matches!(values[*slot], Value::Absent),
        Condition::Equals(slot, expected) => matches!(&values[*slot], Value::Text(text) if text == expected),
    })
}

/// The key of the aggregate item `group` adds to; `None` if a parameter's value is absent.
fn render(aggregate: &Aggregate, group: &Group, values: &[Value<'_>]) -> Option<AggregateKey> {
    let part = |param: usize| match &values[group.params[param]] {
        Value::Text(text) => Some(KeyPart::Text(text)),
        Value::Day(day) => Some(KeyPart::Day(*day)),
        _ => None,
    };
    let sk_params = aggregate.pk.captures().len();
    Some(AggregateKey { kind: group.aggregate, pk: aggregate.pk.render(part)?, sk: aggregate.sk.render(|param| part(sk_params + param))? })
}

/// A day in an aggregate key, only as tally writes it.
fn canonical_day(text: &str) -> Option<NaiveDate> {
    calendar_date(text).or_else(|| {
        let day = NaiveDate::parse_from_str(text, DAY_FORMAT).ok()?;
        (day.format(DAY_FORMAT).to_string() == text).then_some(day)
    })
}

fn type_name(value: &AttributeValue) -> &'static str {
    match value {
        AttributeValue::N(_) => "N",
        AttributeValue::S(_) => "S",
        AttributeValue::Bool(_) => "BOOL",
        AttributeValue::B(_) => "B",
        AttributeValue::Null(_) => "NULL",
        AttributeValue::M(_) => "M",
        AttributeValue::L(_) => "L",
        AttributeValue::Ss(_) => "SS",
        AttributeValue::Ns(_) => "NS",
        AttributeValue::Bs(_) => "BS",
    }
}
