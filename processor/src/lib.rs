//! The tally engine: stream records in, exact aggregates out.
//!
//! - [`decode`] turns Lambda's records into classified [`decode::Change`]s;
//! - [`plan`] coalesces a batch per item and plans conditional transactions (pure);
//! - [`engine`] runs the read → plan → commit loop with exactly-once effect;
//! - [`store`] is the only module that talks to DynamoDB;
//! - [`retry`] decides when to try again; [`handler`] is the Lambda function;
//! - [`telemetry`] holds logging and metric names;
//! - [`stream`], [`consume`] and [`failure_queue`] bring records to the engine outside Lambda
//!   (`tally consume`, `tally redrive`); [`audit`] compares the table with a recompute.

#![forbid(unsafe_code)]
#![warn(missing_debug_implementations, rust_2018_idioms)]

pub mod audit;
pub mod cli;
pub mod consume;
pub mod decode;
pub mod engine;
pub mod failure_queue;
pub mod handler;
pub mod plan;
pub mod retry;
pub mod sequence;
pub mod store;
pub mod stream;
pub mod telemetry;

pub use engine::{BatchOutcome, Engine};
