//! The pure rules of tally: an item image in, aggregate deltas out.
//!
//! Nothing here does I/O, reads a clock or knows the AWS SDK, so every rule is testable in
//! isolation and the stream path, backfill and verify all share one definition of "correct".
//!
//! - [`rules`] loads a rules file (the university's, docs/university.md, is embedded) and evaluates images:
//!   what an image is, why it is invalid, what it contributes;
//! - [`deltas`] holds signed amounts per aggregate item and field: a contribution, a record's
//!   change ([`Deltas::between`]), a batch's sum;
//! - [`recompute`] sums contributions over a set of items (the oracle, and backfill);
//! - [`keys`] names aggregate items and who owns a key, and DynamoDB's key limits;
//! - [`number`] is exact decimal arithmetic with DynamoDB's limits;
//! - [`dates`] reads the dates source items carry.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(missing_debug_implementations, rust_2018_idioms)]

pub mod dates;
pub mod deltas;
pub mod keys;
pub mod number;
pub mod recompute;
pub mod rules;

pub use deltas::Deltas;
pub use keys::{AggregateKey, KeyOwner};
pub use number::{excerpt, Number, NumberError};
pub use recompute::{AggregateValues, Recompute};
pub use rules::{AggregateId, FieldId, RuleAssessment, Rules, Violation};
