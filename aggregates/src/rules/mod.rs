//! Rules as data: a single-table design's entities and aggregates, declared in a TOML file,
//! checked and compiled once, then evaluated per image with exactly the semantics the university
//! contract (docs/university.md) states for its table.
//!
//! # The file
//!
//! ```toml
//! [table]                                # how the table names things
//! pk = "pk"
//! sk = "sk"
//! entity_type = "entityType"             # optional: without it, entities are matched by keys
//! bookkeeping_prefix = "tally#"
//!
//! [aggregates.order_stats]               # the name is the items' entityType
//! pk = "user#{userId}"                   # key templates: literals and typed parameters
//! sk = "order_stats"
//! counters = ["orderCount"]              # +1 per item
//! sums = ["orderTotal"]                  # +an attribute
//! # averages.avgOrder = { sum = "orderTotal", count = "orderCount", places = 4 }
//!
//! [entities.order]                       # matched by entityType = "order"
//! pk = "user#{userId}"                   # key patterns; captures are `id`, `date` or `datetime`
//! sk = "{day:date}#order#{orderId}"
//!
//! [entities.order.attributes]            # checked in this order; the first failure is the reason
//! amount = { type = "number", max_digits = { integer = 20, fraction = 8 } }
//!
//! [[entities.order.contributions]]
//! to = "order_stats"                     # or a list of aggregates
//! key = { userId = "userId" }            # every key parameter, from a capture or an attribute
//! add = { orderCount = 1, orderTotal = "amount" }
//! # when = { present = "coupon", equals = { status = "paid" } }
//! ```
//!
//! [`UNIVERSITY`] (`aggregates/rules/university.toml`) is the university contract's table, and
//! `aggregates/rules/rules.schema.json` a JSON Schema of the format for editors.
//!
//! Why TOML: it has comments (a rules file explains itself, as `university.toml` does), no
//! indentation to get wrong, and one obvious way to write nested tables; the `toml` crate gives
//! each value's place ([`toml::Spanned`]), so every [`Problem`] is reported at its line and
//! column. YAML's implicit typing (`no` as false, `1.10` as a float) is a trap for key
//! templates and ids; JSON has no comments.
//!
//! # Semantics
//!
//! - An image whose entity-type attribute names an entity matched by type is that entity (a
//!   non-string one is `wrong_type`); otherwise the first entity matched by keys (`match = "keys"`) whose key
//!   patterns fit; otherwise it is unknown.
//! - A capture runs to the leftmost occurrence of the literal after it, or to the end; it must
//!   not be empty. `date` is `YYYY-MM-DD` exactly; `datetime` is ISO 8601 (a date or a
//!   date-time, UTC without an offset) and stands for its UTC day.
//! - Attribute types: `id` (non-empty string), `string`, `number`, `date`, `datetime`, `any`.
//!   A number is checked for DynamoDB's limits, then `non_negative` (reason `negative_reason`,
//!   default `negative_number`), then `max_digits` (`out_of_range`).
//! - A contribution adds to each aggregate in `to`, when `when` holds: `1` to a counter, an
//!   attribute to a sum. A key parameter bound to an absent optional attribute adds nothing to
//!   that aggregate; an absent amount adds nothing to its field.
//! - The image is invalid if any aggregate item it adds to would have a key over DynamoDB's
//!   limits (`key_too_long`), or its own keys are over [`Limits`].
//!

mod assessment;
mod compile;
mod compiled;
mod digest;
mod errors;
mod eval;
mod language;
mod model;
mod pattern;
mod safety;

use std::sync::OnceLock;

pub use assessment::{NumberProblem, RuleAssessment, Violation};
pub use compiled::{Aggregate, AggregateId, Average, Entity, FieldId, Index, Limits, Rules, Table};
pub use errors::{Position, Problem, RuleError, RulesErrors};
pub use pattern::PatternError;

/// The university table of the university contract (docs/university.md), as rules: the
/// default.
pub const UNIVERSITY: &str = include_str!("../../rules/university.toml");

/// The name [`Rules::university`] is loaded under, as errors and [`Rules::source_name`] show it.
pub const UNIVERSITY_SOURCE: &str = "aggregates/rules/university.toml";

impl Rules {
    /// Loads rules from a TOML file's text. `source_name` (a path, usually) prefixes every
    /// error.
    ///
    /// # Errors
    /// Every problem the file has, each at its line and column: a file that is not TOML or not
    /// of this shape stops at its first problem; otherwise all are collected (unknown names,
    /// aggregates no entity feeds, template parameters no capture binds, duplicates, types).
    pub fn from_toml(text: &str, source_name: &str) -> Result<Rules, RulesErrors> {
        compile::compile(text, source_name)
    }

    /// The university rules ([`UNIVERSITY`]), compiled once.
    pub fn university() -> &'static Rules {
        static UNIVERSITY_RULES: OnceLock<Rules> = OnceLock::new();
        UNIVERSITY_RULES.get_or_init(|| match Rules::from_toml(UNIVERSITY, UNIVERSITY_SOURCE) {
            Ok(rules) => rules,
            // The file is part of this crate and a test loads it: this cannot happen at run time.
            Err(errors) => panic!("the embedded university rules do not load:\n{errors}"),
        })
    }
}
