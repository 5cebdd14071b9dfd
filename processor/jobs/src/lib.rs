//! The long jobs over a tally table: verify, backfill and consume, as a library that the `tally`
//! command line and a Lambda can both run.
//!
//! - [`audit`] scans the table into what it holds against what it should hold;
//! - [`verify`] reports the drift an audit finds, and a backfill left unfinished;
//! - [`backfill`] writes what an audit plans: a whole table at once, or a segmented run's slices
//!   and their combine;
//! - [`consume`] reads a table's stream like Lambda's event source mapping and applies it;
//! - [`error`] says why a job stopped.
//!
//! The jobs print nothing: each returns what it did, and reports how far it is through
//! [`Progress`]. They reach DynamoDB through `tally_engine::store` and its stream through
//! `tally_engine::stream` only.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(missing_debug_implementations, rust_2018_idioms)]

pub mod audit;
pub mod backfill;
pub mod consume;
pub mod error;
pub mod verify;

pub use error::{BackfillError, ConsumeError, MarkError, ScanError, VerifyError};

/// How far a job is, for whoever shows it. A job runs in stages (its scan, its writes), each
/// begun, advanced and finished in turn; a stage that fails is not finished. `()` shows nothing.
pub trait Progress: Sync {
    /// A stage begins: `total` steps (0 when unknown), each one `unit` ("items scanned", "writes").
    fn begin(&self, total: u64, unit: &'static str);
    /// `steps` more steps of the current stage are done.
    fn advance(&self, steps: u64);
    /// The current stage is done.
    fn finish(&self);
}

impl Progress for () {
    fn begin(&self, _total: u64, _unit: &'static str) {}
    fn advance(&self, _steps: u64) {}
    fn finish(&self) {}
}
