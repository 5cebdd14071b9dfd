//! The mark a backfill keeps on the table while it writes (why: `tally_jobs::backfill::in_progress`).
//!
//! One bookkeeping item, `pk` = `tally#backfill`, `sk` = `in-progress`, which the engine skips on
//! the stream and scans count as [`TableItem::Other`](super::scan::TableItem::Other). `owner`
//! names the backfill that set it, `finished` says whether it has been cleared; `startedAt`, and
//! `run` for a segmented run, say whose it is to an operator.

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{SecondsFormat, Utc};

use crate::items::ItemKey;
use crate::registry::attributes::{FINISHED, OWNER, RUN, STARTED_AT};
use crate::registry::BACKFILL_MARKER;
use crate::store::error::{classify, SdkItem, StoreError};
use crate::store::DynamoTable;

const MARKER_SK: &str = "in-progress";

/// Who set the mark: only its owner clears it, so that a backfill finishing does not clear the
/// mark of another one still writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner<'a> {
    /// One whole-table backfill, by a token of its own.
    Invocation(&'a str),
    /// Every worker and the combine of a segmented run.
    Run(&'a str),
}

impl Owner<'_> {
    fn id(&self) -> String {
        match self {
            Owner::Invocation(token) => format!("invocation#{token}"),
            Owner::Run(run) => format!("run#{run}"),
        }
    }
}

/// The mark of a backfill that started and has not finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    /// When it was set (RFC 3339), if the item says.
    pub started_at: Option<String>,
    /// The segmented run it belongs to, if any.
    pub run: Option<String>,
}

/// What [`Marker::clear`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cleared {
    /// The mark was `owner`'s, and is cleared.
    Cleared,
    /// Another backfill set the mark since (or it is gone): it stays as it is.
    HeldByAnother,
}

/// The backfill mark of one table.
#[derive(Debug, Clone, Copy)]
pub struct Marker<'a> {
    table: &'a DynamoTable,
}

impl<'a> Marker<'a> {
    /// The backfill mark of `table`.
    pub fn new(table: &'a DynamoTable) -> Self {
        Marker { table }
    }

    fn key(&self) -> ItemKey {
        ItemKey { pk: BACKFILL_MARKER.pk_prefix(self.table.codec().rules().table()), sk: MARKER_SK.to_owned() }
    }

    fn item(&self, finished: bool, owner: Owner<'_>) -> SdkItem {
        let now = Utc::now();
        let mut item = self.table.codec().bookkeeping_item(BACKFILL_MARKER, &self.key(), now);
        item.extend([(FINISHED.to_owned(), AttributeValue::Bool(finished)), (OWNER.to_owned(), AttributeValue::S(owner.id()))]);
        if !finished {
            item.insert(STARTED_AT.to_owned(), AttributeValue::S(now.to_rfc3339_opts(SecondsFormat::Millis, true)));
        }
        if let Owner::Run(run) = owner {
            item.insert(RUN.to_owned(), AttributeValue::S(run.to_owned()));
        }
        item
    }

    /// Sets the mark for `owner`, whoever held it before: the latest backfill to start owns it.
    pub async fn set(&self, owner: Owner<'_>) -> Result<(), StoreError> {
        let put = self.table.client().put_item().table_name(self.table.name()).set_item(Some(self.item(false, owner)));
        put.send().await.map_err(|err| classify("PutItem", err))?;
        Ok(())
    }

    /// Clears the mark if `owner` still holds it.
    ///
    /// # Idempotency
    /// Sent again after a lost answer, the clear finds its own write, still `owner`'s, and holds.
    pub async fn clear(&self, owner: Owner<'_>) -> Result<Cleared, StoreError> {
        let result = self
            .table
            .client()
            .put_item()
            .table_name(self.table.name())
            .set_item(Some(self.item(true, owner)))
            .condition_expression("#owner = :owner")
            .expression_attribute_names("#owner", OWNER)
            .expression_attribute_values(":owner", AttributeValue::S(owner.id()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(Cleared::Cleared),
            Err(err) if err.as_service_error().is_some_and(|err| err.is_conditional_check_failed_exception()) => Ok(Cleared::HeldByAnother),
            Err(err) => Err(classify("PutItem", err)),
        }
    }

    /// The mark, if one is set and not cleared (consistent read).
    pub async fn read(&self) -> Result<Option<Mark>, StoreError> {
        let key = self.key();
        let Some(item) = self.table.read_items(std::slice::from_ref(&key)).await?.remove(&key) else { return Ok(None) };
        if matches!(item.get(FINISHED), Some(AttributeValue::Bool(true))) {
            return Ok(None);
        }
        let text = |name| match item.get(name) {
            Some(AttributeValue::S(value)) => Some(value.clone()),
            _ => None,
        };
        Ok(Some(Mark { started_at: text(STARTED_AT), run: text(RUN) }))
    }
}
