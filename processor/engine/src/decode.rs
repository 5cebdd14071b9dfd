//! From Lambda's DynamoDB stream records to [`Change`]s the engine can plan with.
//!
//! A record that cannot be identified (no table keys, no sequence number) fails the whole batch
//! before anything is written: it has no stable identity to report or to skip safely. A record
//! whose images the rules reject is not malformed: its bad image simply contributes nothing.

use aggregates::{excerpt, KeyOwner, RuleAssessment, Rules, Violation};
use aws_lambda_events::event::dynamodb::EventRecord;
use serde_dynamo::{AttributeValue, Item};

use crate::items::ItemKey;
use crate::registry::own_item;
use crate::sequence::SequenceNumber;

/// A record tally cannot identify. Names the record by position and `eventID`, and what is wrong
/// with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("record {index} (eventID `{event_id}`): {kind}")]
pub struct DecodeError {
    /// Position in the batch.
    pub index: usize,
    /// The record's `eventID`, as delivered.
    pub event_id: String,
    /// What is wrong with it.
    pub kind: DecodeErrorKind,
}

/// What makes a record impossible to identify. Values are quoted as excerpts: a key's value may
/// be an application's data, but an identity cannot be reported without it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeErrorKind {
    /// `eventSourceARN` is not a DynamoDB stream's ARN.
    #[error("`eventSourceARN` `{0}` is not a DynamoDB stream ARN")]
    NotAStreamArn(String),
    /// `dynamodb.SequenceNumber` is missing.
    #[error("missing `dynamodb.SequenceNumber`")]
    MissingSequenceNumber,
    /// `dynamodb.SequenceNumber` is not a string of digits.
    #[error("`dynamodb.SequenceNumber` `{0}` is not a string of digits")]
    BadSequenceNumber(String),
    /// A key attribute of the table is missing from `dynamodb.Keys`.
    #[error("`dynamodb.Keys.{0}` is missing")]
    MissingKey(String),
    /// A key attribute in `dynamodb.Keys` is not a string.
    #[error("`dynamodb.Keys.{0}` is not a string")]
    KeyNotAString(String),
    /// An image's key attribute differs from `dynamodb.Keys`: which item the record is about is
    /// ambiguous.
    #[error("`dynamodb.{image}.{attribute}` differs from `dynamodb.Keys.{attribute}`")]
    KeyMismatch {
        /// `NewImage` or `OldImage`.
        image: &'static str,
        /// The key attribute.
        attribute: String,
    },
}

impl DecodeError {
    /// The `errorType` a Lambda function error reports for a batch with such a record, whatever
    /// the kind: what an alarm or a log query matches on.
    pub const ERROR_TYPE: &'static str = "tally.UnidentifiableRecord";

    /// Whether the record's source ARN is not a DynamoDB stream's.
    pub fn is_not_a_stream_arn(&self) -> bool {
        matches!(self.kind, DecodeErrorKind::NotAStreamArn(_))
    }

    /// Whether the record's sequence number is missing or not a sequence number.
    pub fn is_bad_sequence_number(&self) -> bool {
        matches!(self.kind, DecodeErrorKind::MissingSequenceNumber | DecodeErrorKind::BadSequenceNumber(_))
    }

    /// Whether a table key is missing from the record's `Keys`, or is not a string.
    pub fn is_bad_key(&self) -> bool {
        matches!(self.kind, DecodeErrorKind::MissingKey(_) | DecodeErrorKind::KeyNotAString(_))
    }

    /// Whether an image names another item than the record's `Keys`.
    pub fn is_key_mismatch(&self) -> bool {
        matches!(self.kind, DecodeErrorKind::KeyMismatch { .. })
    }
}

/// What a record is, for routing and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// An application item: goes through the rules.
    Source,
    /// An aggregate item tally wrote; coming back on the stream, it changes nothing.
    OwnAggregate,
    /// A ledger or checkpoint tally wrote.
    OwnBookkeeping,
    /// Neither image is an entity of the rules.
    Unknown,
    /// The record's source ARN names another table.
    OtherTable,
}

/// One stream record, decoded and classified.
#[derive(Debug, Clone)]
pub struct Change<'r> {
    /// Position in the batch.
    pub index: usize,
    /// The record's `eventID`, as delivered.
    pub event_id: String,
    /// The record's `dynamodb.SequenceNumber`; zero for another table's record without one.
    pub sequence: SequenceNumber,
    /// The table key of the item the record is about, from `dynamodb.Keys`; for another table's
    /// record, empty where its keys are not the rules' key attributes.
    pub key: ItemKey,
    /// Whose item it is: only a [`Origin::Source`] record is applied.
    pub origin: Origin,
    /// The old image as the rules assess it; absent on an INSERT and for another table's record.
    pub old: RuleAssessment<'r>,
    /// The new image as the rules assess it; absent on a REMOVE and for another table's record.
    pub new: RuleAssessment<'r>,
    /// A deletion by DynamoDB's TTL sweeper.
    pub ttl_deletion: bool,
}

impl<'r> Change<'r> {
    /// The rejections among this record's images, for counting.
    pub fn rejections(&self) -> impl Iterator<Item = &Violation<'r>> + '_ {
        [&self.old, &self.new].into_iter().filter_map(RuleAssessment::violation)
    }
}

const TTL_PRINCIPAL: &str = "dynamodb.amazonaws.com";

/// Decodes a whole batch by `rules`, or fails naming the first record that cannot be identified.
pub fn decode_batch<'r>(records: &[EventRecord], table_name: &str, rules: &'r Rules) -> Result<Vec<Change<'r>>, DecodeError> {
    records.iter().enumerate().map(|(index, record)| decode_record(index, record, table_name, rules)).collect()
}

fn decode_record<'r>(index: usize, record: &EventRecord, table_name: &str, rules: &'r Rules) -> Result<Change<'r>, DecodeError> {
    let (pk_name, sk_name) = (rules.table().pk(), rules.table().sk());
    let fail = |kind: DecodeErrorKind| DecodeError { index, event_id: record.event_id.clone(), kind };
    let stream = &record.change;
    // Another table's record is skipped whatever its keys are called, and never fails a batch
    // (the university contract, docs/university.md): so the table is judged before anything else
    // is read. A record without an ARN (a hand-written fixture) is taken as this table's.
    let other_table = match record.event_source_arn.as_deref() {
        None => false,
        Some(arn) => match table_of_stream(arn) {
            Some(name) => name != table_name,
            None => return Err(fail(DecodeErrorKind::NotAStreamArn(excerpt(arn)))),
        },
    };
    let sequence_text = stream.sequence_number.as_deref();
    let sequence = match (sequence_text.map(|text| (text, SequenceNumber::parse(text))), other_table) {
        (Some((_, Some(sequence))), _) => sequence,
        // Nothing is applied or reported by it: its position is moot.
        (_, true) => SequenceNumber::zero(),
        (None, false) => return Err(fail(DecodeErrorKind::MissingSequenceNumber)),
        (Some((text, None)), false) => return Err(fail(DecodeErrorKind::BadSequenceNumber(excerpt(text)))),
    };
    // Read the table keys by name: DynamoDB Local mixes GSI keys into `Keys` on TTL deletions.
    let key_attr = |name: &str| match stream.keys.get(name) {
        Some(AttributeValue::S(value)) => Ok(value.clone()),
        Some(_) => Err(fail(DecodeErrorKind::KeyNotAString(name.to_owned()))),
        None => Err(fail(DecodeErrorKind::MissingKey(name.to_owned()))),
    };
    let ttl_deletion =
        record.user_identity.as_ref().is_some_and(|identity| identity.type_ == "Service" && identity.principal_id == TTL_PRINCIPAL);
    if other_table {
        // Its images are not the application's: they are neither assessed nor counted as rejected.
        let key = ItemKey { pk: key_attr(pk_name).unwrap_or_default(), sk: key_attr(sk_name).unwrap_or_default() };
        let (old, new) = (RuleAssessment::Absent, RuleAssessment::Absent);
        return Ok(Change { index, event_id: record.event_id.clone(), sequence, key, origin: Origin::OtherTable, old, new, ttl_deletion });
    }
    let key = ItemKey { pk: key_attr(pk_name)?, sk: key_attr(sk_name)? };
    // Ledgers follow `Keys`, contributions the images: they must name the same item.
    for (image_name, image) in [("NewImage", &stream.new_image), ("OldImage", &stream.old_image)] {
        for (name, expected) in [(pk_name, &key.pk), (sk_name, &key.sk)] {
            if matches!(image.get(name), Some(AttributeValue::S(value)) if value != expected) {
                return Err(fail(DecodeErrorKind::KeyMismatch { image: image_name, attribute: name.to_owned() }));
            }
        }
    }
    let (old, new) = (rules.assess(image(&stream.old_image)), rules.assess(image(&stream.new_image)));
    // A record of tally's own write: at one of tally's keys, every image it has is tally's item
    // there, by key and type (a record of keys only goes by its key). An application's record,
    // the common case, is told by its key alone.
    let key_owner = rules.owner(&key.pk, &key.sk);
    let type_attribute = rules.table().type_attribute();
    let own = key_owner != KeyOwner::Application
        && [&stream.old_image, &stream.new_image].into_iter().filter(|image| !image.is_empty()).all(|image| {
            let found = match image.get(type_attribute) {
                Some(AttributeValue::S(kind)) => Some(kind.as_str()),
                _ => None,
            };
            own_item(rules, &key.pk, &key.sk, found).is_some()
        });
    let origin = match key_owner {
        KeyOwner::Aggregate if own => Origin::OwnAggregate,
        KeyOwner::Bookkeeping if own => Origin::OwnBookkeeping,
        _ if is_unknown(&old) && is_unknown(&new) => Origin::Unknown,
        _ => Origin::Source,
    };
    Ok(Change { index, event_id: record.event_id.clone(), sequence, key, origin, old, new, ttl_deletion })
}

/// A record's image; an INSERT's old image and a REMOVE's new one arrive empty.
fn image(item: &Item) -> Option<&Item> {
    (!item.is_empty()).then_some(item)
}

fn is_unknown(assessment: &RuleAssessment<'_>) -> bool {
    matches!(assessment, RuleAssessment::Unknown | RuleAssessment::Absent)
}

/// The table a stream ARN (`arn:aws:dynamodb:REGION:ACCOUNT:table/NAME/stream/LABEL`) belongs to.
pub fn table_of_stream(arn: &str) -> Option<&str> {
    arn.split_once(":table/").and_then(|(_, rest)| rest.split('/').next())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(value: serde_json::Value) -> EventRecord {
        serde_json::from_value(value).unwrap()
    }

    fn base(keys: serde_json::Value, new_image: serde_json::Value) -> serde_json::Value {
        json!({
            "eventID": "e1", "eventName": "INSERT", "awsRegion": "eu-west-1",
            "eventSourceARN": "arn:aws:dynamodb:eu-west-1:123456789012:table/university/stream/2026-01-01T00:00:00.000",
            "dynamodb": { "Keys": keys, "NewImage": new_image, "SequenceNumber": "000111", "SizeBytes": 64, "StreamViewType": "NEW_AND_OLD_IMAGES" }
        })
    }

    #[test]
    fn classifies_by_key_table_and_entity() {
        let keys = json!({"pk": {"S": "course#c1"}, "sk": {"S": "instructor#i1"}});
        let image =
            json!({"pk": {"S": "course#c1"}, "sk": {"S": "instructor#i1"}, "entityType": {"S": "instructor"}, "instructorID": {"S": "i1"}});
        let change = decode_record(0, &record(base(keys.clone(), image.clone())), "university", Rules::university()).unwrap();
        assert_eq!(change.origin, Origin::Source);
        assert_eq!(change.sequence.as_str(), "111");
        assert_eq!(change.old, RuleAssessment::Absent);

        assert_eq!(
            decode_record(0, &record(base(keys.clone(), image.clone())), "other", Rules::university()).unwrap().origin,
            Origin::OtherTable
        );

        let stats_keys = json!({"pk": {"S": "course#c1"}, "sk": {"S": "stats"}});
        let stats = json!({"pk": {"S": "course#c1"}, "sk": {"S": "stats"}, "entityType": {"S": "stats"}});
        assert_eq!(
            decode_record(0, &record(base(stats_keys.clone(), stats)), "university", Rules::university()).unwrap().origin,
            Origin::OwnAggregate
        );
        // The application's item at an aggregate's key is assessed, never skipped as tally's.
        let note = json!({"pk": {"S": "course#c1"}, "sk": {"S": "stats"}, "entityType": {"S": "note"}});
        assert_eq!(decode_record(0, &record(base(stats_keys, note)), "university", Rules::university()).unwrap().origin, Origin::Unknown);

        let keys = json!({"pk": {"S": "tally#ledger#course#c1"}, "sk": {"S": "instructor#i1"}});
        let ledger = json!({"pk": {"S": "tally#ledger#course#c1"}, "sk": {"S": "instructor#i1"}, "entityType": {"S": "tally_ledger"}});
        assert_eq!(
            decode_record(0, &record(base(keys.clone(), ledger)), "university", Rules::university()).unwrap().origin,
            Origin::OwnBookkeeping
        );
        // The application's item under the bookkeeping prefix is assessed, and rejected: never
        // skipped unseen as tally's.
        let squatter = json!({"pk": {"S": "tally#ledger#course#c1"}, "sk": {"S": "instructor#i1"}, "entityType": {"S": "instructor"}, "instructorID": {"S": "i1"}});
        let change = decode_record(0, &record(base(keys, squatter)), "university", Rules::university()).unwrap();
        assert_eq!(change.origin, Origin::Source);
        assert_eq!(change.rejections().map(Violation::reason).collect::<Vec<_>>(), vec!["key_shape"]);

        let unknown = json!({"pk": {"S": "course#c1"}, "sk": {"S": "note#1"}, "entityType": {"S": "note"}});
        let note = json!({"pk": {"S": "course#c1"}, "sk": {"S": "note#1"}});
        assert_eq!(decode_record(0, &record(base(note, unknown)), "university", Rules::university()).unwrap().origin, Origin::Unknown);
    }

    #[test]
    fn an_application_image_under_the_bookkeeping_prefix_is_rejected_not_skipped() {
        const TENANTS: &str = r#"
            [table]
            pk = "PK"
            sk = "SK"
            bookkeeping_prefix = "_tally#"
            [aggregates.tenant_stats]
            pk = "STATS#{tenant}"
            sk = "USERS"
            counters = ["users"]
            [entities.user]
            pk = "{tenant}#USER#{userId}"
            sk = "PROFILE"
            [[entities.user.contributions]]
            to = "tenant_stats"
            key = { tenant = "tenant" }
            add = { users = 1 }
        "#;
        let rules = &Rules::from_toml(TENANTS, "tenants.toml").expect("the rules load");
        let user = |tenant: &str| {
            let keys = json!({"PK": {"S": format!("{tenant}#USER#u1")}, "SK": {"S": "PROFILE"}});
            decode_record(0, &record(base(keys.clone(), keys)), "university", rules).expect("decodes")
        };
        let acme = user("acme");
        assert_eq!((acme.origin, acme.rejections().count()), (Origin::Source, 0));
        // Tenant `_tally` puts the item's key under the bookkeeping prefix: counted as rejected,
        // where it was skipped as a ledger of tally's.
        let squatter = user("_tally");
        assert_eq!(squatter.origin, Origin::Source);
        assert_eq!(squatter.rejections().map(Violation::reason).collect::<Vec<_>>(), vec!["reserved_key"]);
    }

    #[test]
    fn an_entity_image_at_an_aggregate_key_under_a_reserved_prefix_is_rejected_not_skipped() {
        const ORGS: &str = r#"
            [table]
            pk = "PK"
            sk = "SK"
            bookkeeping_prefix = "_tally#"
            reserved_prefixes = ["STATS#"]
            [aggregates.org_stats]
            pk = "STATS#{org}"
            sk = "TOTAL"
            counters = ["users"]
            [entities.user]
            pk = "{org}"
            sk = "{userId}"
            [[entities.user.contributions]]
            to = "org_stats"
            key = { org = "org" }
            add = { users = 1 }
        "#;
        let rules = &Rules::from_toml(ORGS, "orgs.toml").expect("the rules load");
        let keys = json!({"PK": {"S": "STATS#acme"}, "SK": {"S": "TOTAL"}});
        let change = decode_record(0, &record(base(keys.clone(), keys)), "university", rules).expect("decodes");
        assert_eq!(change.origin, Origin::Source);
        assert_eq!(change.rejections().map(Violation::reason).collect::<Vec<_>>(), vec!["reserved_key"]);
    }

    #[test]
    fn another_tables_record_is_skipped_whatever_its_keys_are_called() {
        // A real capture of another table, whose key is `id`.
        let mut value = base(json!({"id": {"N": "42"}}), json!({"id": {"N": "42"}, "entityType": {"S": "student"}}));
        value["eventSourceARN"] = json!("arn:aws:dynamodb:eu-west-1:123456789012:table/orders/stream/2026-01-01T00:00:00.000");
        let change = decode_record(0, &record(value), "university", Rules::university()).unwrap();
        assert_eq!(change.origin, Origin::OtherTable);
        assert_eq!(change.rejections().count(), 0);
    }

    #[test]
    fn a_malformed_arn_or_keys_that_disagree_with_the_image_fail_naming_the_record() {
        let keys = json!({"pk": {"S": "course#c1"}, "sk": {"S": "instructor#i1"}});
        let image =
            json!({"pk": {"S": "course#c2"}, "sk": {"S": "instructor#i1"}, "entityType": {"S": "instructor"}, "instructorID": {"S": "i1"}});
        let err = decode_record(2, &record(base(keys.clone(), image)), "university", Rules::university()).unwrap_err();
        assert_eq!(err.to_string(), "record 2 (eventID `e1`): `dynamodb.NewImage.pk` differs from `dynamodb.Keys.pk`");
        let mut value = base(keys.clone(), json!(null));
        value["eventSourceARN"] = json!("university");
        let err = decode_record(0, &record(value), "university", Rules::university()).unwrap_err();
        assert_eq!(err.to_string(), "record 0 (eventID `e1`): `eventSourceARN` `university` is not a DynamoDB stream ARN");
        // Another table's record never fails the batch, even without a sequence number.
        let mut value = base(keys, json!(null));
        value["eventSourceARN"] = json!("arn:aws:dynamodb:eu-west-1:123456789012:table/orders/stream/2026-01-01T00:00:00.000");
        value["dynamodb"].as_object_mut().unwrap().remove("SequenceNumber");
        assert_eq!(decode_record(0, &record(value), "university", Rules::university()).unwrap().origin, Origin::OtherTable);
    }

    #[test]
    fn ttl_removal_is_recognised_by_the_service_identity() {
        let mut value = base(json!({"pk": {"S": "session#1"}, "sk": {"S": "session"}}), json!(null));
        value["eventName"] = json!("REMOVE");
        value["userIdentity"] = json!({"type": "Service", "principalId": "dynamodb.amazonaws.com"});
        assert!(decode_record(0, &record(value), "university", Rules::university()).unwrap().ttl_deletion);
    }

    #[test]
    fn unidentifiable_records_name_what_is_missing() {
        let mut value = base(json!({"pk": {"S": "course#c1"}}), json!(null));
        let err = decode_record(3, &record(value.clone()), "university", Rules::university()).unwrap_err();
        assert_eq!(err.to_string(), "record 3 (eventID `e1`): `dynamodb.Keys.sk` is missing");
        assert!(err.is_bad_key() && !err.is_bad_sequence_number(), "{err:?}");
        value["dynamodb"]["Keys"]["sk"] = json!({"S": "x"});
        value["dynamodb"]["SequenceNumber"] = json!("12x");
        let err = decode_record(0, &record(value), "university", Rules::university()).unwrap_err();
        assert!(err.is_bad_sequence_number(), "{err:?}");
        assert_eq!(err.kind, DecodeErrorKind::BadSequenceNumber("12x".to_owned()));
    }

    #[test]
    fn a_record_naming_two_items_or_another_service_is_not_identified() {
        let keys = json!({"pk": {"S": "course#c1"}, "sk": {"S": "student#s1"}});
        let mut value = base(keys, json!({"pk": {"S": "course#c2"}, "sk": {"S": "student#s1"}}));
        let err = decode_record(0, &record(value.clone()), "university", Rules::university()).unwrap_err();
        assert!(err.is_key_mismatch(), "{err:?}");
        assert_eq!(err.to_string(), "record 0 (eventID `e1`): `dynamodb.NewImage.pk` differs from `dynamodb.Keys.pk`");
        value["eventSourceARN"] = json!("arn:aws:kinesis:us-east-1:000000000000:stream/orders");
        let err = decode_record(0, &record(value), "university", Rules::university()).unwrap_err();
        assert!(err.is_not_a_stream_arn() && !err.is_key_mismatch(), "{err:?}");
    }

    #[test]
    fn a_record_of_keys_only_is_classified_by_its_key() {
        let at = |pk: &str, sk: &str| {
            let value = base(json!({"pk": {"S": pk}, "sk": {"S": sk}}), json!(null));
            decode_record(0, &record(value), "university", Rules::university()).expect("decodes").origin
        };
        assert_eq!(at("course#c1", "stats"), Origin::OwnAggregate);
        assert_eq!(at("stats#university", "anything"), Origin::OwnAggregate, "in the aggregates' key space, as before");
        assert_eq!(at("tally#ledger#course#c1", "student#s1"), Origin::OwnBookkeeping);
        assert_eq!(at("course#c1", "student#s1"), Origin::Unknown);
    }
}
