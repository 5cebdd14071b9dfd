//! A [`Table`] around the real one that fails on cue, for the failures SPEC says tally survives.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use tally_engine::decode::ItemKey;
use tally_engine::store::codec::ConditionalPut;
use tally_engine::store::{DynamoTable, SdkItem, StoreError, Table, Usage};

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

impl Table for FaultyTable {
    async fn read(&self, keys: &[ItemKey]) -> Result<HashMap<ItemKey, SdkItem>, StoreError> {
        self.inner.read(keys).await
    }

    async fn commit(&self, puts: &[ConditionalPut]) -> Result<(), StoreError> {
        let fault = self.script.lock().unwrap().pop_front().flatten();
        match fault {
            None => self.inner.commit(puts).await,
            Some(Fault::FailBefore) => {
                Err(StoreError::Transient { operation: "TransactWriteItems", message: "injected: connection reset".into() })
            }
            Some(Fault::LoseResponse) => {
                self.inner.commit(puts).await?;
                Err(StoreError::Transient { operation: "TransactWriteItems", message: "injected: response lost after the write".into() })
            }
            Some(Fault::Reject) => {
                Err(StoreError::Permanent { operation: "TransactWriteItems", message: "injected: table rejects writes".into() })
            }
        }
    }

    fn usage(&self) -> Usage {
        self.inner.usage()
    }
}
