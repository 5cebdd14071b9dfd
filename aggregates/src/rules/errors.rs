//! Why a rules file does not load: every problem, each at its line and column.
//!
//! All of these are permanent: the file must be fixed. Messages are stable (tests assert them
//! word for word), lowercase, and name the file's own words in backticks.

use std::fmt;

use super::pattern::PatternError;

/// A place in a rules file: line and column, both from 1; the column counts characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// The line, from 1.
    pub line: usize,
    /// The column, from 1, in characters.
    pub column: usize,
}

impl Position {
    /// The position of byte `offset` of `text` (clamped to the text).
    pub(crate) fn of(text: &str, offset: usize) -> Position {
        let mut end = offset.min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let before = &text[..end];
        let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
        Position { line: before.matches('\n').count() + 1, column: before[line_start..].chars().count() + 1 }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// One problem in a rules file, where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{position}: {problem}")]
pub struct RuleError {
    /// Where the problem is.
    pub position: Position,
    /// What is wrong there.
    pub problem: Problem,
}

/// Every problem a rules file has; it loads only with none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulesErrors {
    /// The name the file was loaded under, as given to [`super::Rules::from_toml`].
    pub source_name: String,
    /// In the order they were found: the file's order, mostly (the checks that keep the table
    /// safe run last).
    pub errors: Vec<RuleError>,
}

impl fmt::Display for RulesErrors {
    /// One line per problem, `{source}:{line}:{column}: {problem}`, as compilers write them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.errors.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{}:{error}", self.source_name)?;
        }
        Ok(())
    }
}

impl std::error::Error for RulesErrors {}

/// What is wrong at a [`Position`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// Not TOML, or not of the rules file's shape (an unknown key, a string for a number, ...).
    /// This stops the load: only the first such problem is reported.
    #[error("{0}")]
    Toml(String),
    /// A name or value that must not be empty is `""`: `table.pk`, an entity's name, a field
    /// name, a reserved prefix, ... Holds what it is, as the message names it.
    #[error("{0} must not be empty")]
    Empty(String),
    /// `table.pk` and `table.sk` name the same attribute (given).
    #[error("`table.pk` and `table.sk` are both `{0}`")]
    SameKeyAttributes(String),
    /// `table.entity_type` names a key attribute (given).
    #[error("`table.entity_type` `{0}` is also a key attribute")]
    EntityTypeIsKey(String),
    /// `table.ttl` names a key, the type attribute or an attribute tally writes on its own items
    /// (given).
    #[error("`table.ttl` `{0}` is also a key, the type attribute or an attribute tally writes itself")]
    TtlTaken(String),
    /// An index's key is an attribute tally writes on its own items as a number or a list (a
    /// field, an average, the TTL attribute, `version`, ...): DynamoDB would refuse those writes,
    /// since index keys are strings.
    #[error("index `{index}`: `{attribute}` is a number or a list tally writes on its own items, which DynamoDB refuses as a string key")]
    IndexOnTallyAttribute {
        /// The index's name.
        index: String,
        /// The key attribute.
        attribute: String,
    },
    /// Two indexes have the same name (given).
    #[error("index `{0}` is declared twice")]
    RepeatedIndex(String),
    /// `table.bookkeeping_prefix` is so long that a ledger's partition key (the prefix,
    /// `ledger#` and the source item's own pk) could pass DynamoDB's 2,048 bytes.
    #[error(
        "`table.bookkeeping_prefix` is {bytes} bytes: a ledger's key would then be up to {ledger_pk_bytes} bytes \
         (`limits.source_pk_bytes` = {source_pk_bytes}), over DynamoDB's 2048; shorten it or lower the limit"
    )]
    PrefixTooLong {
        /// The prefix's length in UTF-8 bytes.
        bytes: usize,
        /// The longest own pk the limits allow a source item.
        source_pk_bytes: usize,
        /// The longest ledger partition key that gives, in UTF-8 bytes.
        ledger_pk_bytes: usize,
    },
    /// A `[limits]` value is over its default, the most tally's bookkeeping leaves room for.
    #[error("`limits.{name}` is {value}, over the {max} tally's bookkeeping leaves room for")]
    LimitTooHigh {
        /// The limit: `source_pk_bytes` or `source_sk_bytes`.
        name: &'static str,
        /// Its value in the file.
        value: usize,
        /// The most it may be.
        max: usize,
    },
    /// A `[limits]` value (named) is 0.
    #[error("`limits.{0}` must be positive")]
    LimitZero(&'static str),
    /// A key pattern does not parse.
    #[error("pattern `{pattern}`: {problem}")]
    Pattern {
        /// The pattern as written.
        pattern: String,
        /// Why it does not parse.
        problem: PatternError,
    },
    /// An entity's or aggregate's pk pattern starts with the bookkeeping prefix in its literal
    /// text: its items would be taken for tally's own (`bookkeeping_space`).
    #[error("pattern `{pattern}` starts with the bookkeeping prefix `{prefix}`")]
    BookkeepingPrefix {
        /// The pattern as written.
        pattern: String,
        /// The bookkeeping prefix.
        prefix: String,
    },
    /// A capture name appears twice across an entity's or an aggregate's pk and sk patterns.
    #[error("{owner}: capture `{capture}` appears twice")]
    RepeatedCapture {
        /// The entity or aggregate, as the message names it (``entity `order` ``).
        owner: String,
        /// The capture's name.
        capture: String,
    },
    /// An aggregate's key template has a `datetime` parameter: aggregate keys take `id` or
    /// `date`.
    #[error("aggregate `{aggregate}`: key parameter `{parameter}` is a datetime; aggregate keys take `id` or `date`")]
    DateTimeParameter {
        /// The aggregate's name.
        aggregate: String,
        /// The parameter's name.
        parameter: String,
    },
    /// An aggregate (named) has no counter and no sum.
    #[error("aggregate `{0}` has no counters or sums")]
    NoFields(String),
    /// A field name is declared twice on one aggregate, counters, sums and averages together.
    #[error("aggregate `{aggregate}` declares `{field}` twice")]
    RepeatedField {
        /// The aggregate's name.
        aggregate: String,
        /// The field's name.
        field: String,
    },
    /// A counter, sum or average is named like the table's pk, sk, type attribute or TTL
    /// attribute, or like an attribute tally writes on its own items
    /// ([`crate::keys::attributes::ALL`]).
    #[error("aggregate `{aggregate}`: `{field}` is an attribute tally writes itself")]
    ReservedField {
        /// The aggregate's name.
        aggregate: String,
        /// The field's name.
        field: String,
    },
    /// An average's `sum` is not a sum of its aggregate.
    #[error("average `{average}`: `{sum}` is not a sum of `{aggregate}`")]
    NotASum {
        /// The average's name.
        average: String,
        /// The name its `sum` gives.
        sum: String,
        /// The aggregate's name.
        aggregate: String,
    },
    /// An average's `count` is not a counter of its aggregate.
    #[error("average `{average}`: `{count}` is not a counter of `{aggregate}`")]
    NotACounter {
        /// The average's name.
        average: String,
        /// The name its `count` gives.
        count: String,
        /// The aggregate's name.
        aggregate: String,
    },
    /// An average's `places` is over 4.
    #[error("average `{average}`: `places` is {places}, expected 0 to 4")]
    Places {
        /// The average's name.
        average: String,
        /// The `places` given.
        places: u32,
    },
    /// An entity has the name (given) of an aggregate.
    #[error("`{0}` names both an entity and an aggregate")]
    NameClash(String),
    /// An entity (named) has `match = "type"`, but `table.entity_type` is not set.
    #[error("entity `{0}` is matched by type, but `table.entity_type` is not set")]
    NoEntityTypeAttribute(String),
    /// An entity declares a key or the entity-type attribute among its attributes: keys are
    /// described with patterns.
    #[error("entity `{entity}`: `{attribute}` is a key or the entity-type attribute; describe keys with `pk` and `sk`")]
    KeyAttribute {
        /// The entity's name.
        entity: String,
        /// The attribute's name.
        attribute: String,
    },
    /// An entity has a capture and an attribute of one name.
    #[error("entity `{entity}`: `{name}` is both a capture and an attribute")]
    CaptureAndAttribute {
        /// The entity's name.
        entity: String,
        /// The name they share.
        name: String,
    },
    /// `non_negative` or `max_digits` is set on an attribute whose type is not `number`.
    #[error("attribute `{attribute}`: `{constraint}` applies to numbers, not to `{kind}`")]
    NumberConstraint {
        /// The attribute's name.
        attribute: String,
        /// The option: `non_negative` or `max_digits`.
        constraint: &'static str,
        /// The attribute's `type`, as the file writes it.
        kind: &'static str,
    },
    /// An attribute (named) has a `negative_reason` without `non_negative = true`.
    #[error("attribute `{0}`: `negative_reason` needs `non_negative = true`")]
    ReasonWithoutConstraint(String),
    /// An attribute's `negative_reason` is not snake_case.
    #[error("attribute `{attribute}`: reason `{reason}` is not snake_case (a-z, 0-9 and `_`, starting with a letter)")]
    BadReason {
        /// The attribute's name.
        attribute: String,
        /// The reason as written.
        reason: String,
    },
    /// An attribute's `max_digits` allows more than 28 digits, integer and fraction together:
    /// a sum of 10^10 of its values could pass DynamoDB's 38 (`field_digit_budget`).
    #[error("attribute `{attribute}`: `max_digits` allows {digits} digits, over 28 (a sum of 10^10 values must fit DynamoDB's 38)")]
    DigitBudget {
        /// The attribute's name.
        attribute: String,
        /// The digits it allows, integer and fraction together.
        digits: u64,
    },
    /// A sum adds an attribute that has no `max_digits`.
    #[error("attribute `{attribute}` of entity `{entity}` is summed but has no `max_digits`")]
    UnboundedSum {
        /// The attribute's name.
        attribute: String,
        /// The entity's name.
        entity: String,
    },
    /// A contribution's `to` is an empty list.
    #[error("`to` names no aggregate")]
    NoTarget,
    /// A contribution's `to` names an aggregate (given) the file does not declare.
    #[error("unknown aggregate `{0}`")]
    UnknownAggregate(String),
    /// A contribution's `to` names an aggregate (given) twice.
    #[error("aggregate `{0}` is named twice in `to`")]
    RepeatedTarget(String),
    /// A contribution's `key` or `when.equals` names neither a capture nor an attribute of its
    /// entity.
    #[error("entity `{entity}` has no capture or attribute `{name}`")]
    UnknownValue {
        /// The entity's name.
        entity: String,
        /// The name given.
        name: String,
    },
    /// A contribution's `when.present`, or an amount in its `add`, names no attribute of its
    /// entity.
    #[error("entity `{entity}` has no attribute `{name}`")]
    UnknownAttribute {
        /// The entity's name.
        entity: String,
        /// The name given.
        name: String,
    },
    /// A contribution's `key` binds a parameter (given) that no aggregate in its `to` has.
    #[error("no aggregate in `to` has the key parameter `{0}`")]
    UnusedParameter(String),
    /// A key parameter of an aggregate in a contribution's `to` is not bound in its `key`.
    #[error("aggregate `{aggregate}` needs its key parameter `{parameter}` bound in `key`")]
    UnboundParameter {
        /// The aggregate's name.
        aggregate: String,
        /// The parameter's name.
        parameter: String,
    },
    /// A key parameter is bound to a value of the wrong kind: an `id` parameter takes an id, a
    /// `date` parameter a date or a date-time.
    #[error("key parameter `{parameter}` takes {expected}; `{name}` is {found}")]
    ParameterType {
        /// The parameter's name.
        parameter: String,
        /// What it takes, as the message says it (`an id`).
        expected: &'static str,
        /// The capture or attribute bound to it.
        name: String,
        /// What that is, as the message says it (`a number`).
        found: &'static str,
    },
    /// `when.equals` compares a value that is neither an id nor a string.
    #[error("`equals` compares text; `{name}` is {found}")]
    EqualsType {
        /// The capture or attribute compared.
        name: String,
        /// What it is, as the message says it (`a number`).
        found: &'static str,
    },
    /// A contribution's `add` is empty.
    #[error("`add` adds to no field")]
    NoAmounts,
    /// `add` names a field that an aggregate in `to` does not have.
    #[error("aggregate `{aggregate}` has no field `{field}`")]
    UnknownField {
        /// The aggregate's name.
        aggregate: String,
        /// The field's name.
        field: String,
    },
    /// `add` adds to an average, which tally derives.
    #[error("`{field}` of `{aggregate}` is an average, which tally derives")]
    AddToAverage {
        /// The aggregate's name.
        aggregate: String,
        /// The average's name.
        field: String,
    },
    /// `add` gives a counter something other than `1`.
    #[error("`{field}` of `{aggregate}` is a counter: it adds 1")]
    CounterAddsOne {
        /// The aggregate's name.
        aggregate: String,
        /// The counter's name.
        field: String,
    },
    /// `add` gives a sum a number, not the name of a number attribute.
    #[error("`{field}` of `{aggregate}` is a sum: it adds a number attribute")]
    SumAddsAttribute {
        /// The aggregate's name.
        aggregate: String,
        /// The sum's name.
        field: String,
    },
    /// `add` sums an attribute whose type is not `number`.
    #[error("`{name}` is {found}, not a number")]
    NotANumber {
        /// The attribute's name.
        name: String,
        /// What it is, as the message says it (`an id`).
        found: &'static str,
    },
    /// No contribution adds to an aggregate (named).
    #[error("no entity contributes to aggregate `{0}`")]
    Unfed(String),
    /// An entity or an aggregate has a name (given) that starts with `tally_`, as the types of
    /// tally's bookkeeping items do (`bookkeeping_space`).
    #[error("`{0}` starts with `tally_`, which names tally's own bookkeeping items (`tally_ledger`, ...); choose another name")]
    TallyTypeName(String),
    /// `table.reserved_prefixes` names a prefix (given) twice.
    #[error("`table.reserved_prefixes` names `{0}` twice")]
    RepeatedReservedPrefix(String),
    /// Two aggregates' templates can produce one key (`overlapping_aggregates`): one item would
    /// be read as two kinds.
    #[error(
        "aggregates `{first}` and `{second}` can have the same key (as {pk_name} `{pk}`, {sk_name} `{sk}`): one item would be \
         read as two kinds and each write would drop the other's fields; give one of them a literal the other cannot \
         produce (`TAG#{{tag}}` beside `DAY#{{day:date}}`)"
    )]
    OverlappingAggregates {
        /// The aggregate declared first.
        first: String,
        /// The aggregate declared later.
        second: String,
        /// The table's partition key attribute.
        pk_name: String,
        /// A partition key both can produce.
        pk: String,
        /// The table's sort key attribute.
        sk_name: String,
        /// A sort key both can produce with `pk`.
        sk: String,
    },
    /// An aggregate's templates can produce a key an entity's items can have, or its constant
    /// pk can be an entity's pk (`aggregate_on_entity_key`): tally would write over the
    /// application's item.
    #[error(
        "aggregate `{aggregate}` can have the key of entity `{entity}` (as {pk_name} `{pk}`, {sk_name} `{sk}`): tally would \
         write over the application's item, so an aggregate needs keys no entity has: a sort key of its own (`STATS`), \
         or a partition key under `table.reserved_prefixes`"
    )]
    AggregateOnEntityKey {
        /// The aggregate's name.
        aggregate: String,
        /// The entity's name.
        entity: String,
        /// The table's partition key attribute.
        pk_name: String,
        /// A partition key both can have.
        pk: String,
        /// The table's sort key attribute.
        sk_name: String,
        /// A sort key both can have with `pk`.
        sk: String,
    },
    /// An aggregate's pk can start with the bookkeeping prefix through a capture
    /// (`bookkeeping_space`): `{orgId}` can be `tally#ledger#x`.
    #[error(
        "aggregate `{aggregate}`: pk `{pattern}` can start with the bookkeeping prefix `{prefix}` (as `{key}`), where \
         tally keeps its ledgers; start it with a literal of its own (`ORG#{{orgId}}`)"
    )]
    AggregateInBookkeeping {
        /// The aggregate's name.
        aggregate: String,
        /// Its pk pattern, as written.
        pattern: String,
        /// The bookkeeping prefix.
        prefix: String,
        /// A pk of the aggregate that starts with the prefix.
        key: String,
    },
    /// The attributes summed into one field allow more than 28 digits together: the widest
    /// integer part of any of them plus the widest fraction part (`field_digit_budget`).
    #[error(
        "`{field}` sums values of up to {integer} digits before the point (`{integer_from}`) and {fraction} after it \
         (`{fraction_from}`): {total} digits, over 28 (a sum of 10^10 values must fit DynamoDB's 38); lower their \
         `max_digits`"
    )]
    FieldDigitBudget {
        /// The field's name.
        field: String,
        /// The most digits before the point any summed attribute allows.
        integer: u64,
        /// The attribute that allows them, as `entity.attribute`.
        integer_from: String,
        /// The most digits after the point any summed attribute allows.
        fraction: u64,
        /// The attribute that allows them, as `entity.attribute`.
        fraction_from: String,
        /// `integer + fraction`.
        total: u64,
    },
    /// An entity adds to more aggregate items than one transaction can hold in its worst case
    /// (`fan_out`): its ledger and the aggregate items of four images, within DynamoDB's 100
    /// actions.
    #[error(
        "entity `{entity}` adds to up to {items} aggregate items: a record that moves it can write its ledger and the \
         items of four images (its old and new, the ledger's, and a baseline a redrive corrects) in one transaction, \
         {actions} actions, over DynamoDB's 100; an entity may add to at most {max}"
    )]
    FanOut {
        /// The entity's name.
        entity: String,
        /// The most aggregate items one of its images adds to.
        items: usize,
        /// The actions of its worst-case transaction.
        actions: usize,
        /// The most aggregate items an entity may add to.
        max: usize,
    },
    /// A `date` or `datetime` capture is followed by a literal that can occur inside its values:
    /// the capture ends inside the value, and the pattern misses keys of its own shape
    /// (`never_matches`).
    #[error(
        "pattern `{pattern}`: `{capture}` is followed by `{literal}`, which can occur inside a {kind}: the capture ends at \
         the literal's first occurrence, inside the value, so the pattern misses keys of its own shape; follow it with a \
         character no {kind} holds, such as `#`"
    )]
    CaptureSwallowsLiteral {
        /// The pattern, as written.
        pattern: String,
        /// The capture, as `{name}`.
        capture: String,
        /// The literal after it.
        literal: String,
        /// What the capture holds: `date` or `date-time`.
        kind: &'static str,
    },
    /// A pattern's shortest key is over the limit on its key (`never_matches`).
    #[error("pattern `{pattern}`: its shortest key is {bytes} bytes, over the {limit} a key may have here")]
    PatternTooLong {
        /// The pattern, as written.
        pattern: String,
        /// Its shortest key's length in UTF-8 bytes.
        bytes: usize,
        /// The most bytes that key may have: `[limits]` for an entity's, DynamoDB's for an
        /// aggregate's.
        limit: usize,
    },
    /// An entity's pk pattern starts with a reserved prefix, under which the application writes
    /// nothing (`never_matches`).
    #[error("entity `{entity}`: pk `{pattern}` starts with `{prefix}`, a prefix the application never writes")]
    EntityUnderReservedPrefix {
        /// The entity's name.
        entity: String,
        /// Its pk pattern, as written.
        pattern: String,
        /// The reserved prefix.
        prefix: String,
    },
    /// The file has more aggregates, or more entities, than `rules check` proves apart pair by
    /// pair.
    #[error("{count} {what}: `rules check` proves keys apart for at most {max}")]
    TooManyToCheck {
        /// `aggregates` or `entities`.
        what: &'static str,
        /// How many the file has.
        count: usize,
        /// The most it may have.
        max: usize,
    },
}

impl Problem {
    /// The reason a file is refused to keep a table safe, for problems that are not about the
    /// format itself: two aggregates sharing keys, an aggregate on an application item's key or
    /// in tally's bookkeeping, sums that can pass DynamoDB's 38 digits, an entity whose writes
    /// cannot fit one transaction, a pattern that never matches. `None` for the rest.
    pub fn safety_reason(&self) -> Option<&'static str> {
        Some(match self {
            Problem::OverlappingAggregates { .. } => "overlapping_aggregates",
            Problem::AggregateOnEntityKey { .. } => "aggregate_on_entity_key",
            Problem::AggregateInBookkeeping { .. } | Problem::BookkeepingPrefix { .. } | Problem::TallyTypeName(_) => "bookkeeping_space",
            Problem::FieldDigitBudget { .. } | Problem::DigitBudget { .. } => "field_digit_budget",
            Problem::FanOut { .. } => "fan_out",
            Problem::CaptureSwallowsLiteral { .. } | Problem::PatternTooLong { .. } | Problem::EntityUnderReservedPrefix { .. } => {
                "never_matches"
            }
            _ => return None,
        })
    }

    /// Whether the file is refused to keep a table safe rather than for its form
    /// ([`Problem::safety_reason`]).
    pub fn is_safety(&self) -> bool {
        self.safety_reason().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_lines_and_characters_from_one() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(Position::of(text, 0), Position { line: 1, column: 1 });
        assert_eq!(Position::of(text, 6), Position { line: 2, column: 1 });
        // `é` is two bytes but one column.
        assert_eq!(Position::of(text, 9), Position { line: 2, column: 3 });
        assert_eq!(Position::of(text, 8), Position { line: 2, column: 2 }, "inside a character: its start");
        assert_eq!(Position::of(text, 999), Position { line: 3, column: 1 });
    }

    #[test]
    fn every_problem_is_one_line_naming_the_file() {
        let errors = RulesErrors {
            source_name: "chat.toml".into(),
            errors: vec![
                RuleError { position: Position { line: 3, column: 7 }, problem: Problem::UnknownAggregate("stat".into()) },
                RuleError { position: Position { line: 9, column: 1 }, problem: Problem::Unfed("daily".into()) },
            ],
        };
        assert_eq!(
            errors.to_string(),
            "chat.toml:3:7: unknown aggregate `stat`\nchat.toml:9:1: no entity contributes to aggregate `daily`"
        );
    }
}
