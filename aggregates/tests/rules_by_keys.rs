//! A table with no entity-type attribute: entities are matched by key patterns, with upper-case
//! key names, a date-time capture, conditions and an optional key parameter.

use std::collections::HashMap;

use aggregates::rules::{RuleAssessment, Rules};
use aggregates::KeyOwner;
use serde_dynamo::{AttributeValue, Item};

const CHAT: &str = r#"
[table]
pk = "PK"
sk = "SK"
bookkeeping_prefix = "tally#"

[aggregates.conversation_stats]
pk = "CONV#{conversationId}"
sk = "STATS"
counters = ["messages", "reactions", "pinned"]
sums = ["bytes"]
averages.meanBytes = { sum = "bytes", count = "messages", places = 2 }

[aggregates.author_stats]
pk = "USER#{userId}"
sk = "DAY#{day:date}"
counters = ["messages"]

[entities.message]
pk = "CONV#{conversationId}"
sk = "MSG#{sentAt:datetime}"

[entities.message.attributes]
size = { type = "number", non_negative = true, negative_reason = "negative_size", max_digits = { integer = 12, fraction = 0 } }
author = { type = "id", optional = true }
state = { type = "string", optional = true }

[[entities.message.contributions]]
to = "conversation_stats"
key = { conversationId = "conversationId" }
add = { messages = 1, bytes = "size" }

[[entities.message.contributions]]
to = "conversation_stats"
key = { conversationId = "conversationId" }
when = { equals = { state = "pinned" } }
add = { pinned = 1 }

# No author, no author_stats.
[[entities.message.contributions]]
to = "author_stats"
key = { userId = "author", day = "sentAt" }
add = { messages = 1 }

[entities.reaction]
pk = "CONV#{conversationId}"
sk = "REACT#{messageAt:datetime}#{userId}"

[[entities.reaction.contributions]]
to = "conversation_stats"
key = { conversationId = "conversationId" }
add = { reactions = 1 }
"#;

fn rules() -> Rules {
    match Rules::from_toml(CHAT, "chat.toml") {
        Ok(rules) => rules,
        Err(errors) => panic!("{errors}"),
    }
}

fn item(attrs: &[(&str, &str)]) -> Item {
    let value = |text: &str| match text.strip_prefix("N:") {
        Some(number) => AttributeValue::N(number.to_owned()),
        None => AttributeValue::S(text.to_owned()),
    };
    Item::from(attrs.iter().map(|(name, text)| ((*name).to_owned(), value(text))).collect::<HashMap<_, _>>())
}

/// `entity: aggregate pk sk field amount; ...`, or the rejection, or `unknown`.
fn outcome(rules: &Rules, image: &Item) -> String {
    match rules.assess(Some(image)) {
        RuleAssessment::Source { entity, contribution } => {
            let amounts: Vec<String> = contribution
                .iter()
                .map(|(aggregate, field, amount)| {
                    format!(
                        "{} {} {} {} {amount}",
                        rules.aggregate(aggregate.kind).name(),
                        aggregate.pk,
                        aggregate.sk,
                        rules.field_name(field)
                    )
                })
                .collect();
            format!("{}: {}", entity.name(), amounts.join("; "))
        }
        RuleAssessment::Rejected { entity, violation } => {
            format!("{} rejected {}: {violation}", entity.map_or("-", |entity| entity.name()), violation.reason())
        }
        RuleAssessment::Unknown => "unknown".to_owned(),
        RuleAssessment::Absent => "absent".to_owned(),
    }
}

#[test]
fn items_are_matched_by_their_keys() {
    let rules = rules();
    let cases = [
        (
            item(&[("PK", "CONV#c1"), ("SK", "MSG#2026-03-01T23:30:00-01:00"), ("size", "N:120"), ("author", "u1"), ("state", "pinned")]),
            "message: conversation_stats CONV#c1 STATS messages 1; conversation_stats CONV#c1 STATS pinned 1; \
             conversation_stats CONV#c1 STATS bytes 120; author_stats USER#u1 DAY#2026-03-02 messages 1",
        ),
        (
            item(&[("PK", "CONV#c1"), ("SK", "MSG#2026-03-01T10:00:00Z"), ("size", "N:0"), ("state", "draft")]),
            "message: conversation_stats CONV#c1 STATS messages 1",
        ),
        (item(&[("PK", "CONV#c1"), ("SK", "REACT#2026-03-01T10:00:00Z#u2")]), "reaction: conversation_stats CONV#c1 STATS reactions 1"),
        // Of a message's form, but not a date-time: the message's, rejected.
        (
            item(&[("PK", "CONV#c1"), ("SK", "MSG#yesterday"), ("size", "N:1")]),
            "message rejected key_shape: key `SK` does not have the shape `MSG#{ISO 8601 date-time}`",
        ),
        (
            item(&[("PK", "CONV#c1"), ("SK", "MSG#2026-03-01"), ("size", "N:-1")]),
            "message rejected negative_size: attribute `size` is negative",
        ),
        (
            item(&[("PK", "CONV#c1"), ("SK", "MSG#2026-03-01"), ("size", "N:1.5")]),
            "message rejected out_of_range: attribute `size` has more than 12 digits before the decimal point or 0 after it",
        ),
        (item(&[("PK", "CONV#c1"), ("SK", "MSG#2026-03-01")]), "message rejected missing_attribute: attribute `size` is missing"),
        (
            item(&[("PK", "CONV#c1"), ("SK", "MSG#2026-03-01"), ("size", "N:1"), ("author", "")]),
            "message rejected empty_attribute: attribute `author` is empty",
        ),
        (item(&[("PK", "CONV#c1"), ("SK", "NOTE#1")]), "unknown"),
        (item(&[("PK", "CONV#c1")]), "unknown"),
        // Keys of no entity's form are unknown, even when long.
        (item(&[("PK", &"x".repeat(3000)), ("SK", "MSG#2026-03-01")]), "unknown"),
        (
            item(&[("PK", &format!("CONV#{}", "c".repeat(2000))), ("SK", "MSG#2026-03-01"), ("size", "N:1")]),
            "message rejected key_too_long: key `PK` is 2005 bytes, over the 1984 tally accepts",
        ),
        (
            item(&[("PK", "CONV#c1"), ("SK", "MSG#2026-03-01"), ("size", "N:1"), ("author", &"u".repeat(2044))]),
            "message rejected key_too_long: the `author_stats` item's `PK` would be 2049 bytes, over DynamoDB's 2048",
        ),
    ];
    for (image, expected) in cases {
        assert_eq!(outcome(&rules, &image), expected, "{image:?}");
    }
}

#[test]
fn keys_tell_tally_s_items_from_the_application_s() {
    let rules = rules();
    for (pk, sk, owner) in [
        ("CONV#c1", "STATS", KeyOwner::Aggregate),
        ("USER#u1", "DAY#2026-03-01", KeyOwner::Aggregate),
        ("USER#u1", "DAY#2026-3-1", KeyOwner::Application),
        ("USER#u1", "PROFILE", KeyOwner::Application),
        ("CONV#c1", "MSG#2026-03-01", KeyOwner::Application),
        ("tally#ledger#CONV#c1", "MSG#2026-03-01", KeyOwner::Bookkeeping),
    ] {
        assert_eq!(rules.owner(pk, sk), owner, "{pk} {sk}");
    }
    let key = rules.parse_key("USER#u1", "DAY#2026-03-01").unwrap();
    assert_eq!((rules.aggregate(key.kind).name(), key.pk.as_str(), key.sk.as_str()), ("author_stats", "USER#u1", "DAY#2026-03-01"));
    assert_eq!(rules.parse_key("USER#u1", "DAY#2026-3-1"), None);
}

#[test]
fn averages_round_half_even_to_their_places() {
    let rules = rules();
    let average = &rules.aggregates()[0].averages()[0];
    let n = |text: &str| text.parse::<aggregates::Number>().unwrap();
    assert_eq!(average.name(), "meanBytes");
    for (sum, count, expected) in
        [("10", "3", Some("3.33")), ("20", "3", Some("6.67")), ("0.125", "1", Some("0.12")), ("0.135", "1", Some("0.14")), ("5", "0", None)]
    {
        assert_eq!(average.value(&n(sum), &n(count)).map(|value| value.to_string()), expected.map(str::to_owned), "{sum}/{count}");
    }
}
