//! The only module that talks to DynamoDB.
//!
//! [`Store`] is the engine's whole view of the database, in its own terms: a consistent read of
//! ledgers and aggregates, and an all-or-nothing commit of new ones, each conditioned on the
//! version that was read. [`DynamoTable`] implements it with `BatchGetItem` and
//! `TransactWriteItems` (and serves the jobs' scans, checkpoints and bookkeeping besides);
//! `MemoryTable` (feature `test-util`) evaluates the same conditions in memory, for engine tests
//! that need no server.
//! How tally's items look as DynamoDB attributes is the private `codec`'s business alone: both
//! stores encode by the rules they were built with.

pub mod capacity;
pub mod checkpoints;
mod codec;
mod connect;
mod dynamo;
pub mod error;
pub mod marker;
#[cfg(any(test, feature = "test-util"))]
pub mod memory;
pub mod partials;
pub mod scan;
pub mod schema;
mod source;

use std::collections::HashMap;
use std::future::Future;

use aggregates::AggregateKey;

pub use codec::Writer;
pub use connect::{connect, sdk_config};
pub use dynamo::DynamoTable;
pub use error::{Current, SdkItem, StoreError, Verdict};
#[cfg(any(test, feature = "test-util"))]
pub use memory::MemoryTable;

use crate::items::{AggregateWrite, ItemKey, Ledger, LedgerWrite, StoredAggregate};

/// DynamoDB work done: requests, and capacity both as reported and as DynamoDB's sizing rules give it
/// (DynamoDB Local does not report it faithfully).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    /// Requests sent.
    pub requests: u64,
    /// Read capacity as the responses report it.
    pub read_units: f64,
    /// Write capacity as the responses report it.
    pub write_units: f64,
    /// Read capacity from DynamoDB's documented sizing rules ([`capacity`]).
    pub estimated_read_units: u64,
    /// Write capacity from DynamoDB's documented sizing rules ([`capacity`]).
    pub estimated_write_units: u64,
}

impl std::ops::Sub for Usage {
    type Output = Usage;
    fn sub(self, rhs: Usage) -> Usage {
        Usage {
            requests: self.requests - rhs.requests,
            read_units: self.read_units - rhs.read_units,
            write_units: self.write_units - rhs.write_units,
            estimated_read_units: self.estimated_read_units - rhs.estimated_read_units,
            estimated_write_units: self.estimated_write_units - rhs.estimated_write_units,
        }
    }
}

/// What a [`Store::read`] found. Items that do not exist are absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Found {
    /// Ledgers, by the source item they belong to.
    pub ledgers: HashMap<ItemKey, Ledger>,
    /// Aggregates, by key.
    pub aggregates: HashMap<AggregateKey, StoredAggregate>,
}

/// One all-or-nothing write: every ledger and aggregate lands, each only if it is still at the
/// version it was read at, or none does.
#[derive(Debug, Clone, Copy)]
pub struct Commit<'a> {
    /// The ledgers to write.
    pub ledgers: &'a [LedgerWrite],
    /// The aggregates to write.
    pub aggregates: &'a [AggregateWrite],
    /// Recorded on the ledgers: the next backfill must tell its own writes from the stream's.
    pub writer: Writer<'a>,
}

impl<'a> Commit<'a> {
    /// The stream's writes, as the engine commits them.
    pub fn stream(ledgers: &'a [LedgerWrite], aggregates: &'a [AggregateWrite]) -> Self {
        Commit { ledgers, aggregates, writer: Writer::Stream }
    }
}

/// The engine's view of the table.
pub trait Store: Send + Sync {
    /// The name of the table: records of other tables' streams are not its.
    fn table_name(&self) -> &str;

    /// Reads, with strong consistency, the ledgers of the source items `sources` and the
    /// aggregates `aggregates`.
    fn read(&self, sources: &[ItemKey], aggregates: &[AggregateKey]) -> impl Future<Output = Result<Found, StoreError>> + Send;

    /// Writes every item of `commit` or none. A failed condition is [`StoreError::Changed`], with
    /// the current state of the items that moved.
    fn commit(&self, commit: Commit<'_>) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Work done so far by this table handle.
    fn usage(&self) -> Usage;
}

/// A shared handle, for several engines over one table: concurrent invocations, two writers.
impl<T: Store> Store for std::sync::Arc<T> {
    fn table_name(&self) -> &str {
        T::table_name(self)
    }

    async fn read(&self, sources: &[ItemKey], aggregates: &[AggregateKey]) -> Result<Found, StoreError> {
        T::read(self, sources, aggregates).await
    }

    async fn commit(&self, commit: Commit<'_>) -> Result<(), StoreError> {
        T::commit(self, commit).await
    }

    fn usage(&self) -> Usage {
        T::usage(self)
    }
}
