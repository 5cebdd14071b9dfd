//! The partial sums of a segmented backfill run, kept in the table between its workers and the
//! combine (why: `tally_jobs::backfill`).
//!
//! Bookkeeping items under `pk` = `tally#backfill#{run}`, which the engine skips on the stream:
//! - `sk` = `part#{segment:06}#{index:09}`: one aggregate's partial sums over one segment
//!   (`aggregatePk`, `aggregateSk`, `fields`, and `scannedVersion` from the one segment that
//!   holds the aggregate item);
//! - `sk` = `done#{segment:06}`: the segment's marker, `totalSegments`, and `entries` once
//!   every sum of the segment is written.
//!
//! They are written in transactions (authorised as `PutItem`) so that the operator policy needs
//! no `BatchWriteItem`, which would also allow deletes, and expire by TTL after
//! [`PARTIAL_RETENTION`].

use std::collections::HashMap;

use aggregates::{AggregateKey, FieldId, Number, NumberError};
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::Utc;

use crate::items::ItemKey;
use crate::registry::attributes::{AGGREGATE_PK, AGGREGATE_SK, ENTRIES, FIELDS, SCANNED_VERSION, TOTAL_SEGMENTS};
use crate::registry::BACKFILL_PARTIAL;
use crate::store::codec::{text, Codec, ConditionalPut, Expect};
use crate::store::error::{SdkItem, StoreError};
use crate::store::DynamoTable;
use aggregates::keys::MAX_TRANSACTION_ACTIONS;

const PART_PREFIX: &str = "part#";
const DONE_PREFIX: &str = "done#";

/// Partial results outlive any reasonable gap between the workers and the combine.
pub const PARTIAL_RETENTION: chrono::Duration = chrono::Duration::days(7);

/// Most sums one [`Partials::write_sums`] takes: they are written in one transaction.
pub const MAX_SUMS_PER_WRITE: usize = MAX_TRANSACTION_ACTIONS;

/// One segment's sums of one aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartialSum {
    /// The aggregate summed.
    pub aggregate: AggregateKey,
    /// The fields the segment counts something for; none for an aggregate nothing counts any
    /// more (the combine then zeroes it).
    pub fields: Vec<(FieldId, Number)>,
    /// The aggregate item's version, from the one segment whose scan found it: the combine
    /// tells from it whether anything wrote the aggregate since.
    pub scanned_version: Option<u64>,
}

/// A segment's marker as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentMark {
    /// The segment it marks.
    pub segment: u32,
    /// `None` when the attribute is missing or not a whole number.
    pub total_segments: Option<u64>,
    /// How many sums the segment wrote; `None` while it is writing them, or if it was killed
    /// doing so.
    pub entries: Option<u64>,
}

/// One stored sum, as far as it could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSum {
    /// The segment that wrote it.
    pub segment: u32,
    /// Its number among the segment's sums, from 0.
    pub index: u64,
    /// Its sort key, to name it in messages.
    pub name: String,
    /// A worker that ran twice may leave entries past its count, which the combine ignores
    /// without reading: a problem with one is reported only if it is wanted.
    pub sum: Result<PartialSum, Unreadable>,
}

/// Why a stored sum cannot be used. Permanent: only running the run's segments again rewrites it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unreadable {
    /// `aggregatePk` or `aggregateSk` is missing, or together they name no aggregate of the rules.
    #[error("names no aggregate")]
    NoAggregate,
    /// A field the rules do not have, named.
    #[error("has unknown field `{0}`")]
    UnknownField(String),
    /// A field, named, whose value is not a DynamoDB number.
    #[error("field `{0}` is not a number")]
    NotANumber(String),
    /// A field, named, whose value is not a number tally can hold, and why.
    #[error("field `{0}`: {1}")]
    BadNumber(String, NumberError),
}

/// Everything a run has stored so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunState {
    /// The segments' markers.
    pub marks: Vec<SegmentMark>,
    /// Every sum, as far as it could be read.
    pub sums: Vec<StoredSum>,
}

/// The partial sums of one segmented run.
#[derive(Debug, Clone)]
pub struct Partials<'a> {
    table: &'a DynamoTable,
    pk: String,
}

impl<'a> Partials<'a> {
    /// The partial sums of the run `run` in `table`.
    pub fn new(table: &'a DynamoTable, run: &str) -> Self {
        Partials { table, pk: format!("{}{run}", BACKFILL_PARTIAL.pk_prefix(table.codec().rules().table())) }
    }

    /// Marks `segment` as writing: a re-run worker first takes back its earlier done marker, so
    /// that killed half-way it leaves no entry count over a mix of old and new sums.
    pub async fn begin_segment(&self, segment: u32, total: u32) -> Result<(), StoreError> {
        self.table.commit_puts(&[segment_mark(self.table.codec(), &self.pk, segment, total, None)]).await
    }

    /// Writes `sums`, numbered from `first`, in one transaction; at most [`MAX_SUMS_PER_WRITE`]
    /// (DynamoDB refuses a longer one). Rewrites whatever a former run of the segment left.
    pub async fn write_sums(&self, segment: u32, first: usize, sums: &[PartialSum]) -> Result<(), StoreError> {
        let ttl = AttributeValue::N((Utc::now() + PARTIAL_RETENTION).timestamp().to_string());
        let puts: Vec<ConditionalPut> = sums
            .iter()
            .enumerate()
            .map(|(offset, sum)| sum_item(self.table.codec(), &self.pk, segment, first + offset, sum, &ttl))
            .collect();
        self.table.commit_puts(&puts).await
    }

    /// Marks `segment` done, with the number of sums it wrote.
    pub async fn finish_segment(&self, segment: u32, total: u32, entries: usize) -> Result<(), StoreError> {
        self.table.commit_puts(&[segment_mark(self.table.codec(), &self.pk, segment, total, Some(entries))]).await
    }

    /// Every marker and sum of the run (consistent reads).
    pub async fn load(&self) -> Result<RunState, StoreError> {
        let mut state = RunState::default();
        let codec = self.table.codec();
        self.table
            .for_each_in_partition(&self.pk, |item| {
                let Some(sk) = text(&item, codec.rules().table().sk()) else { return Ok(()) };
                if let Some(segment) = sk.strip_prefix(DONE_PREFIX).and_then(|segment| segment.parse().ok()) {
                    let mark = SegmentMark { segment, total_segments: whole(&item, TOTAL_SEGMENTS), entries: whole(&item, ENTRIES) };
                    state.marks.push(mark);
                } else if let Some((segment, index)) = sk.strip_prefix(PART_PREFIX).and_then(|rest| rest.split_once('#')) {
                    let (Ok(segment), Ok(index)) = (segment.parse(), index.parse()) else { return Ok(()) };
                    state.sums.push(StoredSum { segment, index, name: sk.to_owned(), sum: decode_sum(codec, &item) });
                }
                Ok(())
            })
            .await?;
        Ok(state)
    }
}

/// A rewrite of the whole item, whatever was there: a re-run segment replaces its own items.
fn unconditional(codec: &Codec, key: ItemKey, attributes: SdkItem) -> ConditionalPut {
    let mut item = codec.bookkeeping_item(BACKFILL_PARTIAL, &key, Utc::now());
    item.extend(attributes);
    ConditionalPut { key, item, expect: Expect::Anything }
}

fn sum_item(codec: &Codec, pk: &str, segment: u32, index: usize, sum: &PartialSum, ttl: &AttributeValue) -> ConditionalPut {
    let key = ItemKey { pk: pk.to_owned(), sk: format!("{PART_PREFIX}{segment:06}#{index:09}") };
    let mut item = HashMap::from([
        (AGGREGATE_PK.to_owned(), AttributeValue::S(sum.aggregate.pk.clone())),
        (AGGREGATE_SK.to_owned(), AttributeValue::S(sum.aggregate.sk.clone())),
        (codec.rules().table().ttl().to_owned(), ttl.clone()),
    ]);
    // An aggregate nothing counts any more has no fields. The attribute is left out rather
    // than an empty map: DynamoDB Local's stream renders `{"M": {}}` as `{}`, which no SDK
    // can parse, and `tally consume` would stop at it.
    if !sum.fields.is_empty() {
        let fields = sum
            .fields
            .iter()
            .map(|(field, amount)| (codec.rules().field_name(*field).to_owned(), AttributeValue::N(amount.to_string())))
            .collect();
        item.insert(FIELDS.to_owned(), AttributeValue::M(fields));
    }
    if let Some(version) = sum.scanned_version {
        item.insert(SCANNED_VERSION.to_owned(), AttributeValue::N(version.to_string()));
    }
    unconditional(codec, key, item)
}

fn segment_mark(codec: &Codec, pk: &str, segment: u32, total: u32, entries: Option<usize>) -> ConditionalPut {
    let key = ItemKey { pk: pk.to_owned(), sk: format!("{DONE_PREFIX}{segment:06}") };
    let mut mark = HashMap::from([
        (TOTAL_SEGMENTS.to_owned(), AttributeValue::N(total.to_string())),
        (codec.rules().table().ttl().to_owned(), AttributeValue::N((Utc::now() + PARTIAL_RETENTION).timestamp().to_string())),
    ]);
    if let Some(entries) = entries {
        mark.insert(ENTRIES.to_owned(), AttributeValue::N(entries.to_string()));
    }
    unconditional(codec, key, mark)
}

fn whole(item: &SdkItem, name: &str) -> Option<u64> {
    match item.get(name) {
        Some(AttributeValue::N(value)) => value.parse().ok(),
        _ => None,
    }
}

fn decode_sum(codec: &Codec, item: &SdkItem) -> Result<PartialSum, Unreadable> {
    let (Some(pk), Some(sk)) = (text(item, AGGREGATE_PK), text(item, AGGREGATE_SK)) else { return Err(Unreadable::NoAggregate) };
    let aggregate = codec.rules().parse_key(pk, sk).ok_or(Unreadable::NoAggregate)?;
    let mut fields = Vec::new();
    if let Some(AttributeValue::M(stored)) = item.get(FIELDS) {
        for (name, value) in stored {
            let field = codec.rules().field(name).ok_or_else(|| Unreadable::UnknownField(name.clone()))?;
            let AttributeValue::N(text) = value else { return Err(Unreadable::NotANumber(name.clone())) };
            let amount: Number = text.parse().map_err(|err| Unreadable::BadNumber(name.clone(), err))?;
            fields.push((field, amount));
        }
    }
    Ok(PartialSum { aggregate, fields, scanned_version: whole(item, SCANNED_VERSION) })
}

#[cfg(test)]
mod tests {
    use aggregates::Rules;

    use super::*;

    #[test]
    fn a_sum_reads_back_as_written() {
        let (codec, rules) = (Codec::new(std::sync::Arc::new(Rules::university().clone())), Rules::university());
        let sum = PartialSum {
            aggregate: rules.parse_key("course#c1", "stats").unwrap(),
            fields: vec![(rules.field("gradeSum").unwrap(), "91.5".parse().unwrap())],
            scanned_version: Some(3),
        };
        let put = sum_item(&codec, "tally#backfill#r1", 2, 7, &sum, &AttributeValue::N("0".into()));
        assert_eq!(text(&put.item, "sk"), Some("part#000002#000000007"));
        assert_eq!(decode_sum(&codec, &put.item), Ok(sum));
    }

    #[test]
    fn unreadable_sums_say_why() {
        let codec = Codec::new(std::sync::Arc::new(Rules::university().clone()));
        let mut item: SdkItem = HashMap::from([
            (AGGREGATE_PK.to_owned(), AttributeValue::S("course#c1".into())),
            (AGGREGATE_SK.to_owned(), AttributeValue::S("stats".into())),
            (FIELDS.to_owned(), AttributeValue::M(HashMap::from([("bogus".to_owned(), AttributeValue::N("1".into()))]))),
        ]);
        assert_eq!(decode_sum(&codec, &item).unwrap_err().to_string(), "has unknown field `bogus`");
        item.insert(FIELDS.to_owned(), AttributeValue::M(HashMap::from([("gradeSum".to_owned(), AttributeValue::S("1".into()))])));
        assert_eq!(decode_sum(&codec, &item).unwrap_err().to_string(), "field `gradeSum` is not a number");
        item.remove(AGGREGATE_SK);
        assert_eq!(decode_sum(&codec, &item), Err(Unreadable::NoAggregate));
    }
}
