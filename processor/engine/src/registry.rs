//! Every item tally itself keeps in the application's table, in one place.
//!
//! Three things must agree on what is tally's and what is the application's: the decoder, which
//! skips tally's own items coming back on the stream; backfill and verify, which recompute from
//! the application's items and compare with tally's; and the event source mapping's
//! `FilterCriteria`, which keeps tally's own writes from invoking the function at all. All three
//! are derived from this registry and from the rules' aggregate and source entity types, so that
//! adding a kind of item is one entry here (or in the rules), not a hunt through the code.

use aggregates::keys::TYPE_ATTRIBUTE;
use aggregates::rules::{Aggregate, Rules, Table};
use aggregates::{AggregateKey, KeyOwner};
use serde_json::{json, Value};

use crate::items::ItemKey;

/// A kind of bookkeeping item: every one lives under the rules' bookkeeping prefix
/// (`tally#` for the university) and carries its own type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bookkeeping {
    /// The type it carries in the rules' type attribute (`tally_ledger`).
    pub entity_type: &'static str,
    /// The partition key after the bookkeeping prefix, or the start of it when the kind has
    /// many partitions.
    pub pk_after_prefix: &'static str,
}

impl Bookkeeping {
    /// The partition key (or its start) in a table with these rules: `tally#ledger#`.
    pub fn pk_prefix(self, table: &Table) -> String {
        format!("{}{}", table.bookkeeping_prefix(), self.pk_after_prefix)
    }
}

/// One per source item: the last sequence number applied and the contribution the aggregates
/// hold for it. `pk` = prefix + the item's pk, `sk` = the item's sk.
pub const LEDGER: Bookkeeping = Bookkeeping { entity_type: "tally_ledger", pk_after_prefix: aggregates::keys::LEDGER_PK_INFIX };
/// `tally consume`'s position in one shard: `pk` = prefix + stream ARN, `sk` = shard id.
pub const CHECKPOINT: Bookkeeping = Bookkeeping { entity_type: "tally_checkpoint", pk_after_prefix: "checkpoint#" };
/// One segmented-backfill worker's sums: `pk` = prefix + run id.
pub const BACKFILL_PARTIAL: Bookkeeping = Bookkeeping { entity_type: "tally_backfill_partial", pk_after_prefix: "backfill#" };
/// Stands while a backfill writes: `pk` is exactly this.
pub const BACKFILL_MARKER: Bookkeeping = Bookkeeping { entity_type: "tally_backfill_marker", pk_after_prefix: "backfill" };

/// Ledgers outlive the stream's 24 h retention with a margin for clock skew and lazy TTL.
pub const LEDGER_RETENTION: chrono::Duration = chrono::Duration::hours(48);

/// The key of the ledger of the source item at `item` in a table with these keys:
/// `tally#ledger#{pk}`, `sk`.
pub fn ledger_key(table: &Table, item: &ItemKey) -> ItemKey {
    ItemKey { pk: format!("{}{}", LEDGER.pk_prefix(table), item.pk), sk: item.sk.clone() }
}

/// Every kind of bookkeeping item.
pub const BOOKKEEPING: [Bookkeeping; 4] = [LEDGER, CHECKPOINT, BACKFILL_PARTIAL, BACKFILL_MARKER];

/// Whether `entity_type` is the type of one of tally's bookkeeping items: the application writes
/// nothing under the bookkeeping prefix, and an item there without one of these types is its.
pub fn is_bookkeeping_type(entity_type: &str) -> bool {
    BOOKKEEPING.iter().any(|bookkeeping| bookkeeping.entity_type == entity_type)
}

/// One of tally's own items, as [`own_item`] recognises it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnItem {
    /// The aggregate item at this key.
    Aggregate(AggregateKey),
    /// A bookkeeping item: a ledger, a checkpoint, a backfill partial or the backfill marker.
    Bookkeeping,
}

/// Which of tally's own items the item at `pk`/`sk` whose type attribute holds `found` is, or
/// `None` when it is the application's: the one place that decides it, for the decoder (a record
/// of tally's own write changes nothing) and for scans (tally's items are compared, the
/// application's recomputed from).
///
/// tally's own items are recognised by key and type together: only tally writes aggregate items,
/// each carrying its aggregate's name, and only tally writes under the bookkeeping prefix, each
/// item carrying a bookkeeping type. An item at such a key without that type is the
/// application's, whatever its key says: it is assessed by the rules like any other, never
/// skipped unseen. (The store's writes hold to the same rule: they replace only an item with the
/// type tally gives it.)
pub fn own_item(rules: &Rules, pk: &str, sk: &str, found: Option<&str>) -> Option<OwnItem> {
    match rules.owner(pk, sk) {
        KeyOwner::Application => None,
        KeyOwner::Aggregate => {
            rules.parse_key(pk, sk).filter(|key| found == Some(rules.aggregate(key.kind).name())).map(OwnItem::Aggregate)
        }
        KeyOwner::Bookkeeping => found.is_some_and(is_bookkeeping_type).then_some(OwnItem::Bookkeeping),
    }
}

/// Attributes tally adds to the items it writes, beyond the rules' names.
pub use aggregates::keys::attributes;

/// The event source mapping's `FilterCriteria` for the compiled-in university rules:
/// [`filter_criteria_for`] of [`Rules::university`], which `infra/template.yaml` carries.
pub fn filter_criteria() -> Value {
    filter_criteria_for(Rules::university())
}

/// The event source mapping's `FilterCriteria` for `rules`: a record reaches the function when
/// either image may be an application item, and tally's own writes (the rules' aggregates and
/// the [`BOOKKEEPING`]) do not invoke it. Filters are ORed; a rule on an absent field never
/// matches except `{"exists": false}`, INSERT has only a new image and REMOVE only an old one.
///
/// # Soundness
/// Dropping a source item's record would lose its contribution for good, while letting one of
/// tally's own through only costs an invocation (the decoder skips it by its keys, writing
/// nothing, so there is no loop). So every pattern is a necessary condition of an image being
/// a source item, never a sufficient one.
///
/// # With an entity-type attribute (`table.entity_type`)
/// 1. and 2. That image has a string entity type that is not one of tally's own. MODIFY passes
///    if either side is a source item, so an item retyped to or from an aggregate type still
///    has its old contribution retracted.
/// 3. and 4. That image has no string entity type (an entity matched by keys, or an item the
///    processor counts as unknown) and its pk has a source entity's prefix; the prefix rule
///    also makes the image required, so `{"exists": false}` cannot match the image an INSERT
///    or a REMOVE lacks. tally's aggregates and bookkeeping always carry their entity type, so
///    untyped `tally#` items stay out.
///
/// # Matched by keys only (no `table.entity_type`)
/// Nothing names an item's type, so the filter goes by keys: that image's pk has a source
/// entity's prefix (1. and 2., one per image). Aggregate items whose pk shares a source prefix
/// (`CONV#{id}` / `STATS`) pass, at the cost of an invocation each; filtering them by sort key
/// as well would need each entity's sk prefix, which the rules do not expose. The rules refuse
/// a source pattern that starts with the bookkeeping prefix, so a source prefix can admit
/// bookkeeping items only by being shorter than it (`t{tenant}`, or a pattern that starts with
/// a capture). Then the pk rule cannot tell them apart (Lambda's filters have no negated
/// prefix), but bookkeeping items carry their type in [`TYPE_ATTRIBUTE`] in such a table: each image
/// rule splits in two, no string `entityType` or one that is not a bookkeeping type (1. to 4.).
///
/// A source pattern that starts with a capture has no prefix: its pk rule is then that the pk
/// is a string at all (`{"exists": true}`), which still requires the image.
pub fn filter_criteria_for(rules: &Rules) -> Value {
    let table = rules.table();
    let pk = table.pk();
    let mut prefixes: Vec<&str> = Vec::new();
    for entity in rules.entities() {
        if !prefixes.contains(&entity.pk_prefix()) {
            prefixes.push(entity.pk_prefix());
        }
    }
    let pk_rule: Vec<Value> = if prefixes.contains(&"") {
        vec![json!({ "exists": true })]
    } else {
        prefixes.iter().map(|prefix| json!({ "prefix": prefix })).collect()
    };
    let bookkeeping: Vec<&str> = BOOKKEEPING.iter().map(|kind| kind.entity_type).collect();
    let sides = ["NewImage", "OldImage"];
    let patterns: Vec<Value> = match table.entity_type() {
        Some(entity_type) => {
            let own: Vec<&str> = rules.aggregates().iter().map(Aggregate::name).chain(bookkeeping).collect();
            let typed = |image: &str| json!({ "dynamodb": { image: { entity_type: { "S": [{ "anything-but": own }] } } } });
            let untyped =
                |image: &str| json!({ "dynamodb": { image: { entity_type: { "S": [{ "exists": false }] }, pk: { "S": pk_rule } } } });
            sides.map(typed).into_iter().chain(sides.map(untyped)).collect()
        }
        None if prefixes.iter().any(|prefix| table.bookkeeping_prefix().starts_with(prefix)) => {
            let untyped =
                |image: &str| json!({ "dynamodb": { image: { TYPE_ATTRIBUTE: { "S": [{ "exists": false }] }, pk: { "S": pk_rule } } } });
            let not_bookkeeping = |image: &str| json!({ "dynamodb": { image: { TYPE_ATTRIBUTE: { "S": [{ "anything-but": bookkeeping }] }, pk: { "S": pk_rule } } } });
            sides.map(untyped).into_iter().chain(sides.map(not_bookkeeping)).collect()
        }
        None => sides.map(|image| json!({ "dynamodb": { image: { pk: { "S": pk_rule } } } })).into(),
    };
    json!({ "Filters": patterns.iter().map(|pattern| json!({ "Pattern": pattern.to_string() })).collect::<Vec<_>>() })
}

#[cfg(test)]
mod tests {
    use aggregates::KeyOwner;

    use super::*;

    #[test]
    fn bookkeeping_lives_under_the_prefix_the_decoder_skips() {
        let rules = Rules::university();
        for kind in BOOKKEEPING {
            let pk = kind.pk_prefix(rules.table());
            assert!(pk.starts_with("tally#"), "{kind:?}");
            assert_eq!(rules.owner(&pk, "x"), KeyOwner::Bookkeeping, "{kind:?}");
        }
    }

    #[test]
    fn bookkeeping_types_carry_the_prefix_rules_may_not_use() {
        assert!(BOOKKEEPING.iter().all(|kind| kind.entity_type.starts_with(aggregates::keys::TALLY_TYPE_PREFIX)));
    }

    #[test]
    fn own_entity_types_never_name_a_source_item() {
        let rules = Rules::university();
        let own = rules.aggregates().iter().map(Aggregate::name).chain(BOOKKEEPING.iter().map(|kind| kind.entity_type));
        for entity_type in own {
            assert!(rules.entity(entity_type).is_none(), "{entity_type}");
        }
    }

    /// The filter as it was derived from the hand-written rules, before rules were data: what
    /// `infra/template.yaml` has carried since.
    #[test]
    fn the_university_rules_give_the_hand_written_filter() {
        let own = [
            "stats",
            "assignment_stats",
            "academic_stats",
            "order_stats",
            "daily_stats",
            "tally_ledger",
            "tally_checkpoint",
            "tally_backfill_partial",
            "tally_backfill_marker",
        ];
        let prefixes = json!([{ "prefix": "course#" }, { "prefix": "user#" }, { "prefix": "session#" }]);
        let typed = |image: &str| json!({ "dynamodb": { image: { "entityType": { "S": [{ "anything-but": own }] } } } });
        let untyped =
            |image: &str| json!({ "dynamodb": { image: { "entityType": { "S": [{ "exists": false }] }, "pk": { "S": prefixes } } } });
        let patterns = [typed("NewImage"), typed("OldImage"), untyped("NewImage"), untyped("OldImage")];
        let expected = json!({ "Filters": patterns.iter().map(|pattern| json!({ "Pattern": pattern.to_string() })).collect::<Vec<_>>() });
        assert_eq!(filter_criteria(), expected);
    }

    fn rules(text: &str) -> Rules {
        Rules::from_toml(text, "test.toml").unwrap_or_else(|errors| panic!("{errors}"))
    }

    /// A table matched by keys: `PK`/`SK`, no entity-type attribute.
    fn chat(message_pk: &str) -> Rules {
        rules(&format!(
            r#"
[table]
pk = "PK"
sk = "SK"
bookkeeping_prefix = "tally#"

[aggregates.conversation_stats]
pk = "CONV#{{conversationId}}"
sk = "STATS"
counters = ["messages", "profiles"]

[entities.message]
pk = "{message_pk}"
sk = "MSG#{{sentAt:datetime}}"

[[entities.message.contributions]]
to = "conversation_stats"
key = {{ conversationId = "conversationId" }}
add = {{ messages = 1 }}

[entities.profile]
pk = "USER#{{userId}}"
sk = "PROFILE"

[[entities.profile.contributions]]
to = "conversation_stats"
key = {{ conversationId = "userId" }}
add = {{ profiles = 1 }}
"#
        ))
    }

    /// The filter's patterns, parsed.
    fn patterns(filter: &Value) -> Vec<Value> {
        let filters = filter["Filters"].as_array().expect("Filters is a list");
        filters.iter().map(|filter| serde_json::from_str(filter["Pattern"].as_str().expect("a string")).expect("JSON")).collect()
    }

    #[test]
    fn a_table_matched_by_keys_is_filtered_by_source_prefixes() {
        let prefixes = json!([{ "prefix": "CONV#" }, { "prefix": "USER#" }]);
        assert_eq!(
            patterns(&filter_criteria_for(&chat("CONV#{conversationId}"))),
            vec![
                json!({ "dynamodb": { "NewImage": { "PK": { "S": prefixes } } } }),
                json!({ "dynamodb": { "OldImage": { "PK": { "S": prefixes } } } }),
            ]
        );
    }

    #[test]
    fn a_source_prefix_shorter_than_the_bookkeeping_one_keeps_bookkeeping_out_by_type() {
        let bookkeeping: Vec<&str> = BOOKKEEPING.iter().map(|kind| kind.entity_type).collect();
        let filter = patterns(&filter_criteria_for(&chat("t{tenant}#CONV#{conversationId}")));
        let prefixes = json!([{ "prefix": "t" }, { "prefix": "USER#" }]);
        assert_eq!(
            filter,
            vec![
                json!({ "dynamodb": { "NewImage": { "entityType": { "S": [{ "exists": false }] }, "PK": { "S": prefixes } } } }),
                json!({ "dynamodb": { "OldImage": { "entityType": { "S": [{ "exists": false }] }, "PK": { "S": prefixes } } } }),
                json!({ "dynamodb": { "NewImage": { "entityType": { "S": [{ "anything-but": bookkeeping }] }, "PK": { "S": prefixes } } } }),
                json!({ "dynamodb": { "OldImage": { "entityType": { "S": [{ "anything-but": bookkeeping }] }, "PK": { "S": prefixes } } } }),
            ]
        );
        let filter = patterns(&filter_criteria_for(&chat("{tenant}#CONV#{conversationId}")));
        assert_eq!(filter[0]["dynamodb"]["NewImage"]["PK"], json!({ "S": [{ "exists": true }] }), "no prefix: any string pk");
    }

    /// Whether a stream record passes `FilterCriteria`, for the operators the filters use:
    /// a pattern is ANDed over its fields, a field's list is ORed.
    fn passes(filter: &Value, record: &Value) -> bool {
        fn leaf(rule: &Value, value: Option<&Value>) -> bool {
            match (rule.get("exists"), rule.get("prefix"), rule.get("anything-but")) {
                (Some(exists), _, _) => exists.as_bool() == Some(value.is_some()),
                (_, Some(prefix), _) => value.and_then(Value::as_str).is_some_and(|text| text.starts_with(prefix.as_str().unwrap())),
                (_, _, Some(Value::Array(list))) => value.and_then(Value::as_str).is_some_and(|text| !list.iter().any(|own| own == text)),
                _ => panic!("operator not modelled: {rule}"),
            }
        }
        fn matches(pattern: &Value, value: Option<&Value>) -> bool {
            pattern.as_object().expect("a pattern is an object").iter().all(|(name, rule)| {
                let inner = value.and_then(|value| value.get(name));
                match rule {
                    Value::Array(rules) => rules.iter().any(|rule| leaf(rule, inner)),
                    nested => matches(nested, inner),
                }
            })
        }
        patterns(filter).iter().any(|pattern| matches(pattern, Some(record)))
    }

    fn record(new: Option<Value>, old: Option<Value>) -> Value {
        let mut change = serde_json::Map::new();
        change.extend(new.map(|image| ("NewImage".to_owned(), image)));
        change.extend(old.map(|image| ("OldImage".to_owned(), image)));
        json!({ "eventName": "MODIFY", "dynamodb": change })
    }

    fn image(attributes: &[(&str, &str)]) -> Value {
        Value::Object(attributes.iter().map(|(name, text)| ((*name).to_owned(), json!({ "S": text }))).collect())
    }

    #[test]
    fn source_items_pass_and_tallys_own_do_not() {
        let university = filter_criteria();
        let submission = image(&[("pk", "course#c1"), ("sk", "submission#a1#s1"), ("entityType", "submission")]);
        let stats = image(&[("pk", "course#c1"), ("sk", "stats"), ("entityType", "stats")]);
        let ledger = image(&[("pk", "tally#ledger#course#c1"), ("sk", "submission#a1#s1"), ("entityType", "tally_ledger")]);
        let untyped = image(&[("pk", "course#c1"), ("sk", "note#1")]);
        let stray = image(&[("pk", "tally#x"), ("sk", "x")]);
        for (new, old, expected) in [
            (Some(&submission), None, true),
            (None, Some(&submission), true),
            (Some(&stats), Some(&submission), true),
            (Some(&untyped), None, true),
            (Some(&stats), None, false),
            (Some(&stats), Some(&stats), false),
            (Some(&ledger), None, false),
            (None, Some(&ledger), false),
            (Some(&stray), None, false),
        ] {
            assert_eq!(passes(&university, &record(new.cloned(), old.cloned())), expected, "{new:?} {old:?}");
        }

        // A message's pk under each pattern; an item under no source prefix passes only when a
        // pattern has no prefix at all.
        for (message_pk, pk) in [
            ("CONV#{conversationId}", "CONV#c1"),
            ("t{tenant}#CONV#{conversationId}", "tacme#CONV#c1"),
            ("{tenant}#CONV#{conversationId}", "acme#CONV#c1"),
        ] {
            let chat = filter_criteria_for(&chat(message_pk));
            let message = image(&[("PK", pk), ("SK", "MSG#2026-03-01")]);
            let ledger = image(&[("PK", &format!("tally#ledger#{pk}")), ("SK", "MSG#2026-03-01"), ("entityType", "tally_ledger")]);
            let checkpoint = image(&[("PK", "tally#checkpoint#arn"), ("SK", "shard-1"), ("entityType", "tally_checkpoint")]);
            let other = image(&[("PK", "ROOM#r1"), ("SK", "META")]);
            assert!(passes(&chat, &record(Some(message.clone()), None)), "{message_pk}");
            assert!(passes(&chat, &record(None, Some(message))), "{message_pk}");
            assert!(!passes(&chat, &record(Some(ledger), None)), "{message_pk}");
            assert!(!passes(&chat, &record(None, Some(checkpoint))), "{message_pk}");
            assert_eq!(passes(&chat, &record(Some(other), None)), message_pk.starts_with('{'), "{message_pk}");
        }
    }
}
