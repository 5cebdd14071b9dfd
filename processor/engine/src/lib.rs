//! The tally engine: stream records in, exact aggregates out.
//!
//! Data flows one way, down these modules:
//! - [`decode`] turns Lambda's records into classified [`decode::Change`]s, assessed by the rules;
//! - [`plan`] coalesces a batch per item and plans conditional transactions (pure);
//! - [`Engine`] runs the read → plan → commit loop with exactly-once effect, and says what
//!   became of each record ([`outcome`]);
//! - [`store`] is the only module that talks to DynamoDB; [`items`] are what it reads and writes;
//! - [`registry`] names every item tally keeps in the table, and derives the stream filter;
//! - [`retry`] decides when to try again;
//! - [`rules_file`] loads the rules a process runs under (`TALLY_RULES`);
//! - [`telemetry`] holds logging and metric names;
//! - `stream` (feature `streams`) reads a table's stream outside Lambda.
//!
//! A team's own Lambda handler builds one [`Engine`] at init, from its rules and a
//! [`store::DynamoTable`], and calls [`Engine::apply`] with each batch.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(missing_debug_implementations, rust_2018_idioms)]

mod batch;
pub mod decode;
pub mod items;
pub mod outcome;
pub mod plan;
pub mod registry;
pub mod retry;
pub mod rules_file;
pub mod sequence;
pub mod store;
#[cfg(feature = "streams")]
pub mod stream;
pub mod telemetry;

pub use batch::Engine;
pub use outcome::BatchOutcome;
