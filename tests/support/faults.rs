//! A [`Store`] around the real one (a [`DynamoTable`]) that fails on cue, for the failures the
//! university contract (docs/university.md) says tally survives.

use std::collections::VecDeque;
use std::sync::Mutex;

use aggregates::AggregateKey;
use tally_engine::items::ItemKey;
use tally_engine::store::error::Failure;
use tally_engine::store::{Commit, DynamoTable, Found, Store, StoreError, Usage};

/// What the next commit does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Fails before reaching DynamoDB, as a throttle or a reset connection does.
    FailBefore,
    /// Reaches DynamoDB and is applied, but the response is lost (a timeout after the write).
    LoseResponse,
    /// Rejected for good, as when the table is deleted or permissions are revoked.
    Reject,
}

#[derive(Debug)]
pub struct FaultyTable {
    inner: DynamoTable,
    /// One entry per upcoming commit; `None` lets it through. Past the end, everything passes.
    script: Mutex<VecDeque<Option<Fault>>>,
}

impl FaultyTable {
    pub fn new(inner: DynamoTable, script: impl IntoIterator<Item = Option<Fault>>) -> Self {
        FaultyTable { inner, script: Mutex::new(script.into_iter().collect()) }
    }

    /// Replaces what the next commits do.
    pub fn reset(&self, script: impl IntoIterator<Item = Option<Fault>>) {
        *self.script.lock().unwrap() = script.into_iter().collect();
    }

    /// Every commit from now on passes.
    pub fn heal(&self) {
        self.reset([]);
    }

    pub fn inner(&self) -> &DynamoTable {
        &self.inner
    }
}

impl Store for FaultyTable {
    async fn read(&self, sources: &[ItemKey], aggregates: &[AggregateKey]) -> Result<Found, StoreError> {
        self.inner.read(sources, aggregates).await
    }

    async fn commit(&self, commit: Commit<'_>) -> Result<(), StoreError> {
        let fault = self.script.lock().unwrap().pop_front().flatten();
        let injected = |message: &str| Failure::new("TransactWriteItems", format!("injected: {message}"));
        match fault {
            None => self.inner.commit(commit).await,
            Some(Fault::FailBefore) => Err(StoreError::Transient(injected("connection reset"))),
            Some(Fault::LoseResponse) => {
                self.inner.commit(commit).await?;
                Err(StoreError::Transient(injected("response lost after the write")))
            }
            Some(Fault::Reject) => Err(StoreError::Permanent(injected("table rejects writes"))),
        }
    }

    fn usage(&self) -> Usage {
        self.inner.usage()
    }

    fn table_name(&self) -> &str {
        self.inner.table_name()
    }
}
