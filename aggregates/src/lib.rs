//! The pure rules of tally: an item image in, aggregate deltas out.
//!
//! Nothing here does I/O, reads a clock or knows the AWS SDK, so every rule of SPEC is testable
//! in isolation and the stream path, backfill and verify all share one definition of "correct".
//!
//! - [`source`] parses and validates an image into a typed [`SourceItem`];
//! - [`deltas`] holds the rules: [`contribution`] of an item and [`Deltas::between`] of a record;
//! - [`recompute`] sums contributions over a set of items (the oracle, and backfill);
//! - [`keys`] names the aggregate items and tells tally's own items from the application's;
//! - [`number`] is exact decimal arithmetic with DynamoDB's limits.

#![forbid(unsafe_code)]
#![warn(missing_debug_implementations, rust_2018_idioms)]

pub mod deltas;
pub mod keys;
pub mod number;
pub mod recompute;
pub mod rules;
pub mod source;

pub use deltas::{assess, contribution, Assessment, Deltas};
pub use keys::{AggregateKey, AggregateKind, Field, KeyOwner};
pub use number::{excerpt, Number, NumberError};
pub use recompute::{AggregateValues, Recompute};
pub use source::{parse, Decoded, Rejection, SourceItem};
