//! Why a rules file does not load: every problem, each at its line and column.
//!
//! All of these are permanent: the file must be fixed. Messages are stable (tests assert them
//! word for word), lowercase, and name the file's own words in backticks.

use std::fmt;

use super::pattern::PatternError;

/// A place in a rules file: line and column, both from 1; the column counts characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub line: usize,
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
    pub position: Position,
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
    #[error("{0} must not be empty")]
    Empty(String),
    #[error("`table.pk` and `table.sk` are both `{0}`")]
    SameKeyAttributes(String),
    #[error("`table.entity_type` `{0}` is also a key attribute")]
    EntityTypeIsKey(String),
    #[error("`table.ttl` `{0}` is also a key, the type attribute or an attribute tally writes itself")]
    TtlTaken(String),
    #[error("index `{index}`: `{attribute}` is a number or a list tally writes on its own items, which DynamoDB refuses as a string key")]
    IndexOnTallyAttribute { index: String, attribute: String },
    #[error("index `{0}` is declared twice")]
    RepeatedIndex(String),
    #[error(
        "`table.bookkeeping_prefix` is {bytes} bytes: a ledger's key would then be up to {ledger_pk_bytes} bytes \
         (`limits.source_pk_bytes` = {source_pk_bytes}), over DynamoDB's 2048; shorten it or lower the limit"
    )]
    PrefixTooLong { bytes: usize, source_pk_bytes: usize, ledger_pk_bytes: usize },
    #[error("`limits.{name}` is {value}, over the {max} tally's bookkeeping leaves room for")]
    LimitTooHigh { name: &'static str, value: usize, max: usize },
    #[error("`limits.{0}` must be positive")]
    LimitZero(&'static str),
    #[error("pattern `{pattern}`: {problem}")]
    Pattern { pattern: String, problem: PatternError },
    #[error("pattern `{pattern}` starts with the bookkeeping prefix `{prefix}`")]
    BookkeepingPrefix { pattern: String, prefix: String },
    #[error("{owner}: capture `{capture}` appears twice")]
    RepeatedCapture { owner: String, capture: String },
    #[error("aggregate `{aggregate}`: key parameter `{parameter}` is a datetime; aggregate keys take `id` or `date`")]
    DateTimeParameter { aggregate: String, parameter: String },
    #[error("aggregate `{0}` has no counters or sums")]
    NoFields(String),
    #[error("aggregate `{aggregate}` declares `{field}` twice")]
    RepeatedField { aggregate: String, field: String },
    #[error("aggregate `{aggregate}`: `{field}` is an attribute tally writes itself")]
    ReservedField { aggregate: String, field: String },
    #[error("average `{average}`: `{sum}` is not a sum of `{aggregate}`")]
    NotASum { average: String, sum: String, aggregate: String },
    #[error("average `{average}`: `{count}` is not a counter of `{aggregate}`")]
    NotACounter { average: String, count: String, aggregate: String },
    #[error("average `{average}`: `places` is {places}, expected 0 to 4")]
    Places { average: String, places: u32 },
    #[error("`{0}` names both an entity and an aggregate")]
    NameClash(String),
    #[error("entity `{0}` is matched by type, but `table.entity_type` is not set")]
    NoEntityTypeAttribute(String),
    #[error("entity `{entity}`: `{attribute}` is a key or the entity-type attribute; describe keys with `pk` and `sk`")]
    KeyAttribute { entity: String, attribute: String },
    #[error("entity `{entity}`: `{name}` is both a capture and an attribute")]
    CaptureAndAttribute { entity: String, name: String },
    #[error("attribute `{attribute}`: `{constraint}` applies to numbers, not to `{kind}`")]
    NumberConstraint { attribute: String, constraint: &'static str, kind: &'static str },
    #[error("attribute `{0}`: `negative_reason` needs `non_negative = true`")]
    ReasonWithoutConstraint(String),
    #[error("attribute `{attribute}`: reason `{reason}` is not snake_case (a-z, 0-9 and `_`, starting with a letter)")]
    BadReason { attribute: String, reason: String },
    #[error("attribute `{attribute}`: `max_digits` allows {digits} digits, over 28 (a sum of 10^10 values must fit DynamoDB's 38)")]
    DigitBudget { attribute: String, digits: u64 },
    #[error("attribute `{attribute}` of entity `{entity}` is summed but has no `max_digits`")]
    UnboundedSum { attribute: String, entity: String },
    #[error("`to` names no aggregate")]
    NoTarget,
    #[error("unknown aggregate `{0}`")]
    UnknownAggregate(String),
    #[error("aggregate `{0}` is named twice in `to`")]
    RepeatedTarget(String),
    #[error("entity `{entity}` has no capture or attribute `{name}`")]
    UnknownValue { entity: String, name: String },
    #[error("entity `{entity}` has no attribute `{name}`")]
    UnknownAttribute { entity: String, name: String },
    #[error("no aggregate in `to` has the key parameter `{0}`")]
    UnusedParameter(String),
    #[error("aggregate `{aggregate}` needs its key parameter `{parameter}` bound in `key`")]
    UnboundParameter { aggregate: String, parameter: String },
    #[error("key parameter `{parameter}` takes {expected}; `{name}` is {found}")]
    ParameterType { parameter: String, expected: &'static str, name: String, found: &'static str },
    #[error("`equals` compares text; `{name}` is {found}")]
    EqualsType { name: String, found: &'static str },
    #[error("`add` adds to no field")]
    NoAmounts,
    #[error("aggregate `{aggregate}` has no field `{field}`")]
    UnknownField { aggregate: String, field: String },
    #[error("`{field}` of `{aggregate}` is an average, which tally derives")]
    AddToAverage { aggregate: String, field: String },
    #[error("`{field}` of `{aggregate}` is a counter: it adds 1")]
    CounterAddsOne { aggregate: String, field: String },
    #[error("`{field}` of `{aggregate}` is a sum: it adds a number attribute")]
    SumAddsAttribute { aggregate: String, field: String },
    #[error("`{name}` is {found}, not a number")]
    NotANumber { name: String, found: &'static str },
    #[error("no entity contributes to aggregate `{0}`")]
    Unfed(String),
    #[error("`{0}` starts with `tally_`, which names tally's own bookkeeping items (`tally_ledger`, ...); choose another name")]
    TallyTypeName(String),
    #[error("`table.reserved_prefixes` names `{0}` twice")]
    RepeatedReservedPrefix(String),
    #[error(
        "aggregates `{first}` and `{second}` can have the same key (as {pk_name} `{pk}`, {sk_name} `{sk}`): one item would be \
         read as two kinds and each write would drop the other's fields; give one of them a literal the other cannot \
         produce (`TAG#{{tag}}` beside `DAY#{{day:date}}`)"
    )]
    OverlappingAggregates { first: String, second: String, pk_name: String, pk: String, sk_name: String, sk: String },
    #[error(
        "aggregate `{aggregate}` can have the key of entity `{entity}` (as {pk_name} `{pk}`, {sk_name} `{sk}`): tally would \
         write over the application's item, so an aggregate needs keys no entity has: a sort key of its own (`STATS`), \
         or a partition key under `table.reserved_prefixes`"
    )]
    AggregateOnEntityKey { aggregate: String, entity: String, pk_name: String, pk: String, sk_name: String, sk: String },
    #[error(
        "aggregate `{aggregate}`: pk `{pattern}` can start with the bookkeeping prefix `{prefix}` (as `{key}`), where \
         tally keeps its ledgers; start it with a literal of its own (`ORG#{{orgId}}`)"
    )]
    AggregateInBookkeeping { aggregate: String, pattern: String, prefix: String, key: String },
    #[error(
        "`{field}` sums values of up to {integer} digits before the point (`{integer_from}`) and {fraction} after it \
         (`{fraction_from}`): {total} digits, over 28 (a sum of 10^10 values must fit DynamoDB's 38); lower their \
         `max_digits`"
    )]
    FieldDigitBudget { field: String, integer: u64, integer_from: String, fraction: u64, fraction_from: String, total: u64 },
    #[error(
        "entity `{entity}` adds to up to {items} aggregate items: a record that moves it can write its ledger and the \
         items of four images (its old and new, the ledger's, and a baseline a redrive corrects) in one transaction, \
         {actions} actions, over DynamoDB's 100; an entity may add to at most {max}"
    )]
    FanOut { entity: String, items: usize, actions: usize, max: usize },
    #[error(
        "pattern `{pattern}`: `{capture}` is followed by `{literal}`, which can occur inside a {kind}: the capture ends at \
         the literal's first occurrence, inside the value, so the pattern misses keys of its own shape; follow it with a \
         character no {kind} holds, such as `#`"
    )]
    CaptureSwallowsLiteral { pattern: String, capture: String, literal: String, kind: &'static str },
    #[error("pattern `{pattern}`: its shortest key is {bytes} bytes, over the {limit} a key may have here")]
    PatternTooLong { pattern: String, bytes: usize, limit: usize },
    #[error("entity `{entity}`: pk `{pattern}` starts with `{prefix}`, a prefix the application never writes")]
    EntityUnderReservedPrefix { entity: String, pattern: String, prefix: String },
    #[error("{count} {what}: `rules check` proves keys apart for at most {max}")]
    TooManyToCheck { what: &'static str, count: usize, max: usize },
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
