//! Reading the table whole, for `tally verify`, `tally backfill` and `tally report`.
//!
//! Every item comes back decoded by whose it is, judged from its key as the engine judges
//! records: tally's own items in domain types, the application's as the image the rules assess.
//! Callers recompute and compare without knowing how anything is stored.

use std::collections::HashMap;

use aggregates::keys::UPDATED_AT;
use aggregates::{AggregateId, AggregateKey, Rules};
use aws_sdk_dynamodb::types::AttributeValue;

use crate::items::ItemKey;
use crate::items::{Ledger, StoredAggregate};
use crate::registry::attributes::{BACKFILL_RUN, RULES_DIGEST, WRITTEN_BY};
use crate::registry::{own_item, OwnItem};
use crate::store::codec::{text, Codec, Writer};
use crate::store::error::{classify, SdkItem, StoreError};
use crate::store::DynamoTable;

/// One item of the table, decoded by whose it is.
#[derive(Debug, Clone, PartialEq)]
pub enum TableItem {
    /// The application's item, or one whose `pk` and `sk` are not both strings (the rules then
    /// judge it, and find it unknown): its image, as the rules assess it.
    Source {
        /// Its key; `None` when `pk` and `sk` are not both strings.
        key: Option<ItemKey>,
        /// The item whole.
        image: serde_dynamo::Item,
    },
    /// One of tally's aggregate items.
    Aggregate {
        /// The aggregate.
        key: AggregateKey,
        /// Its values and version.
        stored: StoredAggregate,
        /// Each of its kind's averages (`gradeAverage`), in the rules' order: the attribute's
        /// text as stored, if it is a number. Readers see it, so a drifted one is drift even
        /// when the sums agree.
        averages: Vec<Option<String>>,
        /// The digest of the rules it was written under; the university rules' for an item
        /// without one. Compare it with [`Rules::wrote`], never with `==`.
        rules_digest: String,
    },
    /// A ledger.
    Ledger(ScannedLedger),
    /// tally's other bookkeeping (checkpoints, the backfill marker, partial sums), or a key in
    /// the aggregates' space that names no aggregate: counted, nothing more.
    Other,
}

/// A ledger as scanned, with what tells the stream's writes from backfill's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannedLedger {
    /// The source item it belongs to.
    pub source: ItemKey,
    /// The ledger; one written under other rules holds its version and position only, no
    /// contribution.
    pub ledger: Ledger,
    /// Whether backfill wrote it last; a ledger without a writer is the stream's.
    pub by_backfill: bool,
    /// The segmented backfill run that last reset it.
    pub backfill_run: Option<String>,
    /// When it was last written (`updatedAt`, RFC 3339).
    pub updated_at: Option<String>,
    /// The digest of the rules it was written under; the university rules' for a ledger without
    /// one. Compare it with [`Rules::wrote`], never with `==`.
    pub rules_digest: String,
}

/// The digest of the rules an item of tally's was written under. Releases before tally wrote
/// digests knew the university rules alone, so an item without one was written under those
/// (as [`Rules::wrote`] takes `None`). Compare it with [`Rules::wrote`], never with `==`: a
/// digest written before the canonical encoding stands for its rule set's current one.
fn written_under(item: &SdkItem) -> String {
    text(item, RULES_DIGEST).unwrap_or_else(|| Rules::university().digest()).to_owned()
}

/// Decodes one item; an item tally owns that does not have the shape tally writes is
/// [`StoreError::Corrupt`].
fn read_item(codec: &Codec, item: SdkItem) -> Result<TableItem, StoreError> {
    let rules = codec.rules();
    let Some(key) = codec.item_key(&item) else { return Ok(TableItem::Source { key: None, image: item.into() }) };
    // The application's item, wherever its key is (at an aggregate's, under the bookkeeping
    // prefix), is read as the stream reads its records.
    Ok(match own_item(rules, &key.pk, &key.sk, text(&item, rules.table().type_attribute())) {
        None => TableItem::Source { key: Some(key), image: item.into() },
        Some(OwnItem::Aggregate(aggregate)) => {
            let stored = codec.read_aggregate(&aggregate, &item)?;
            let average = |name: &str| match item.get(name) {
                Some(AttributeValue::N(text)) => Some(text.clone()),
                _ => None,
            };
            let averages = rules.aggregate(aggregate.kind).averages().iter().map(|declared| average(declared.name())).collect();
            TableItem::Aggregate { key: aggregate, stored, averages, rules_digest: written_under(&item) }
        }
        Some(OwnItem::Bookkeeping) => match codec.source_of_ledger(&key) {
            Some(source) => {
                let rules_digest = written_under(&item);
                let ledger = match codec.decode_ledger(&key, &item) {
                    Ok(ledger) => ledger,
                    // Written under rules with aggregates or fields these do not have (renamed,
                    // dropped): what it holds means nothing under these rules, and backfill
                    // rewrites it whole, so it must not stop the scan that lets backfill do so.
                    Err(StoreError::Corrupt { .. }) if !rules.wrote(Some(&rules_digest)) => codec.decode_foreign_ledger(&key, &item)?,
                    Err(err) => return Err(err),
                };
                TableItem::Ledger(ScannedLedger {
                    ledger,
                    source,
                    by_backfill: text(&item, WRITTEN_BY) == Some(Writer::Backfill { run: None }.as_str()),
                    backfill_run: text(&item, BACKFILL_RUN).map(str::to_owned),
                    updated_at: text(&item, UPDATED_AT).map(str::to_owned),
                    rules_digest,
                })
            }
            // A checkpoint, a backfill partial or the marker: not compared with anything.
            None => TableItem::Other,
        },
    })
}

impl DynamoTable {
    /// Scans segment `segment` of `total` with consistent reads, handing each page's items,
    /// decoded, to `page`. Segments of one table are disjoint and together cover it.
    pub async fn scan_segment(&self, segment: u32, total: u32, mut page: impl FnMut(Vec<TableItem>)) -> Result<(), StoreError> {
        let mut pages = self
            .client()
            .scan()
            .table_name(self.name())
            .consistent_read(true)
            .segment(segment as i32)
            .total_segments(total as i32)
            .into_paginator()
            .send();
        while let Some(output) = pages.next().await {
            let output = output.map_err(|err| classify("Scan", err))?;
            page(output.items.unwrap_or_default().into_iter().map(|item| read_item(self.codec(), item)).collect::<Result<_, _>>()?);
        }
        Ok(())
    }

    /// Reads items by key (consistently) and decodes them as a scan does: for what a scan of one
    /// segment could not see, such as the items of another segment. Absent items are absent.
    pub async fn read_decoded(&self, keys: &[ItemKey]) -> Result<HashMap<ItemKey, TableItem>, StoreError> {
        self.read_items(keys).await?.into_iter().map(|(key, item)| Ok((key, read_item(self.codec(), item)?))).collect()
    }

    /// Every aggregate of the given kinds (eventually consistent: for a display, not a
    /// recompute).
    pub async fn scan_aggregates(&self, kinds: &[AggregateId]) -> Result<Vec<(AggregateKey, StoredAggregate)>, StoreError> {
        if kinds.is_empty() {
            return Ok(Vec::new());
        }
        let rules = self.codec().rules();
        let placeholders: Vec<String> = (0..kinds.len()).map(|index| format!(":kind{index}")).collect();
        let mut scan = self
            .client()
            .scan()
            .table_name(self.name())
            .filter_expression(format!("#type IN ({})", placeholders.join(", ")))
            .expression_attribute_names("#type", rules.table().type_attribute());
        for (placeholder, kind) in placeholders.iter().zip(kinds) {
            scan = scan.expression_attribute_values(placeholder, AttributeValue::S(rules.aggregate(*kind).name().to_owned()));
        }
        let mut items = scan.into_paginator().items().send();
        let mut found = Vec::new();
        while let Some(item) = items.next().await {
            let item = item.map_err(|err| classify("Scan", err))?;
            let Some(key) = self.codec().item_key(&item) else { continue };
            let Some(key) = rules.parse_key(&key.pk, &key.sk) else { continue };
            match self.codec().read_aggregate(&key, &item) {
                Ok(stored) => found.push((key, stored)),
                // Another aggregate's type at this key: not this aggregate's item.
                Err(StoreError::NotOwned { .. }) => {}
                Err(err) => return Err(err),
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_item(item: SdkItem) -> Result<TableItem, StoreError> {
        super::read_item(&Codec::new(std::sync::Arc::new(Rules::university().clone())), item)
    }

    fn item(pairs: &[(&str, AttributeValue)]) -> SdkItem {
        pairs.iter().map(|(name, value)| ((*name).to_owned(), value.clone())).collect()
    }

    fn s(value: &str) -> AttributeValue {
        AttributeValue::S(value.to_owned())
    }

    #[test]
    fn items_are_told_apart_by_their_keys() {
        let enrollment = item(&[("pk", s("course#c1")), ("sk", s("student#s1")), ("entityType", s("student"))]);
        assert!(matches!(read_item(enrollment).unwrap(), TableItem::Source { key: Some(_), .. }));
        assert!(matches!(read_item(item(&[("pk", AttributeValue::N("1".into()))])).unwrap(), TableItem::Source { key: None, .. }));
        let course = item(&[
            ("pk", s("course#c1")),
            ("sk", s("stats")),
            ("entityType", s("stats")),
            ("gradeAverage", AttributeValue::N("91.50".into())),
        ]);
        match read_item(course).unwrap() {
            TableItem::Aggregate { key, averages, .. } => {
                let course = Rules::university().parse_key("course#c1", "stats").unwrap();
                assert_eq!((key, averages), (course, vec![Some("91.50".to_owned())]));
            }
            other => panic!("expected an aggregate, got {other:?}"),
        }
        // Not an aggregate's key, though its pk is one: the application's, as the stream reads it.
        let beside = item(&[("pk", s("stats#university")), ("sk", s("anything"))]);
        assert!(matches!(read_item(beside).unwrap(), TableItem::Source { key: Some(_), .. }));
        let marker = item(&[("pk", s("tally#backfill")), ("sk", s("in-progress")), ("entityType", s("tally_backfill_marker"))]);
        assert_eq!(read_item(marker).unwrap(), TableItem::Other);
    }

    #[test]
    fn an_application_item_in_tallys_key_space_is_the_applications() {
        let note = item(&[("pk", s("course#c1")), ("sk", s("stats")), ("entityType", s("note")), ("enrollmentCount", s("many"))]);
        assert!(matches!(read_item(note).unwrap(), TableItem::Source { key: Some(_), .. }));
        let untyped = item(&[("pk", s("tally#ledger#course#c1")), ("sk", s("student#s1"))]);
        assert!(matches!(read_item(untyped).unwrap(), TableItem::Source { key: Some(_), .. }));
    }

    #[test]
    fn a_corrupt_ledger_fails_the_scan() {
        let ledger = item(&[("pk", s("tally#ledger#course#c1")), ("sk", s("student#s1")), ("entityType", s("tally_ledger"))]);
        assert!(matches!(read_item(ledger), Err(StoreError::Corrupt { .. })));
    }
}
