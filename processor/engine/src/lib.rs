//! The tally engine: stream records in, exact aggregates out.
//!
//! - [`decode`] turns Lambda's records into classified [`decode::Change`]s;
//! - [`plan`] coalesces a batch per item and plans conditional transactions (pure);
//! - [`engine`] runs the read → plan → commit loop with exactly-once effect;
//! - [`store`] is the only module that talks to DynamoDB;
//! - [`registry`] names every item tally keeps in the table, and derives the stream filter;
//! - [`retry`] decides when to try again;
//! - [`rules_file`] loads the rules a process runs under (`TALLY_RULES`);
//! - [`telemetry`] holds logging and metric names;
//! - [`stream`] (feature `streams`) reads a table's stream outside Lambda.

#![forbid(unsafe_code)]
#![warn(missing_debug_implementations, rust_2018_idioms)]

pub mod decode;
pub mod engine;
pub mod plan;
pub mod registry;
pub mod retry;
pub mod rules_file;
pub mod sequence;
pub mod store;
#[cfg(feature = "streams")]
pub mod stream;
pub mod telemetry;

pub use engine::{BatchOutcome, Engine};
