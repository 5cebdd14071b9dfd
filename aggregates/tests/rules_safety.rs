//! `rules check` refuses what would hurt the table, each refusal with its reason, line and
//! column; and what the file cannot show is enforced per image: a key tally would render must
//! read back as the values it is built from, and an image under a prefix only tally writes is
//! rejected. Each case here is one a rules file that loaded before did to a table.

use aggregates::rules::{RuleAssessment, Rules};
use serde_dynamo::{AttributeValue, Item};

/// A helpdesk table matched by keys: one conversation entity, messages, one aggregate.
const BASE: &str = r#"[table]
pk = "PK"
sk = "SK"
bookkeeping_prefix = "_tally#"

[aggregates.conversation_stats]
pk = "CONV#{conversationId}"
sk = "STATS"
counters = ["messages"]

[entities.conversation]
pk = "CONV#{conversationId}"
sk = "METADATA"

[entities.message]
pk = "CONV#{conversationId}"
sk = "MSG#{sentAt:datetime}"

[[entities.message.contributions]]
to = "conversation_stats"
key = { conversationId = "conversationId" }
add = { messages = 1 }
"#;

fn edited(edits: &[(&str, &str)]) -> String {
    let mut text = BASE.to_owned();
    for (from, to) in edits {
        assert_eq!(text.matches(from).count(), 1, "`{from}` occurs once in the base file");
        text = text.replace(from, to);
    }
    text
}

/// `(line:column: message, safety reason)` of each problem.
fn refusals(text: &str) -> Vec<(String, Option<&'static str>)> {
    match Rules::from_toml(text, "helpdesk.toml") {
        Ok(_) => vec![],
        Err(errors) => errors.errors.iter().map(|error| (error.to_string(), error.problem.safety_reason())).collect(),
    }
}

fn rules(text: &str) -> Rules {
    Rules::from_toml(text, "helpdesk.toml").unwrap_or_else(|errors| panic!("{errors}"))
}

fn image(attributes: &[(&str, &str)]) -> Item {
    let map: std::collections::HashMap<String, AttributeValue> =
        attributes.iter().map(|(name, value)| ((*name).to_owned(), AttributeValue::S((*value).to_owned()))).collect();
    Item::from(map)
}

fn reason(rules: &Rules, item: &Item) -> Option<String> {
    match rules.assess(Some(item)) {
        RuleAssessment::Rejected { violation, .. } => Some(violation.reason().to_owned()),
        RuleAssessment::Source { .. } => None,
        other => panic!("expected a source item, got {other:?}"),
    }
}

#[test]
fn the_base_file_loads() {
    assert_eq!(refusals(BASE), vec![]);
}

#[test]
fn two_aggregates_that_can_share_a_key_are_refused() {
    let twin = r#"
[aggregates.message_stats]
pk = "CONV#{conversationId}"
sk = "STATS"
counters = ["total"]

[[entities.message.contributions]]
to = "message_stats"
key = { conversationId = "conversationId" }
add = { total = 1 }
"#;
    let text = format!("{BASE}{twin}");
    assert_eq!(
        refusals(&text),
        vec![(
            "25:6: aggregates `conversation_stats` and `message_stats` can have the same key (as PK `CONV#x`, SK `STATS`): one \
             item would be read as two kinds and each write would drop the other's fields; give one of them a literal the other \
             cannot produce (`TAG#{tag}` beside `DAY#{day:date}`)"
                .to_owned(),
            Some("overlapping_aggregates")
        )]
    );
    // A tag beside a day under one literal: a tag can be a date.
    let text = edited(&[
        ("sk = \"STATS\"", "sk = \"STATS#{tag}\""),
        ("key = { conversationId = \"conversationId\" }", "key = { conversationId = \"conversationId\", tag = \"conversationId\" }"),
    ]);
    let by_day = r#"
[aggregates.daily]
pk = "CONV#{conversationId}"
sk = "STATS#{day:date}"
counters = ["daily"]

[[entities.message.contributions]]
to = "daily"
key = { conversationId = "conversationId", day = "sentAt" }
add = { daily = 1 }
"#;
    let found = refusals(&format!("{text}{by_day}"));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].0.contains("(as PK `CONV#x`, SK `STATS#1`)"), "{found:?}");
    assert_eq!(found[0].1, Some("overlapping_aggregates"));
    // Apart by a literal: accepted.
    assert_eq!(refusals(&format!("{text}{}", by_day.replace("STATS#{day:date}", "DAY#{day:date}"))), vec![]);
}

#[test]
fn an_aggregate_on_an_entitys_key_is_refused() {
    let text = edited(&[("sk = \"STATS\"", "sk = \"METADATA\"")]);
    assert_eq!(
        refusals(&text),
        vec![(
            "7:6: aggregate `conversation_stats` can have the key of entity `conversation` (as PK `CONV#x`, SK `METADATA`): tally \
             would write over the application's item, so an aggregate needs keys no entity has: a sort key of its own (`STATS`), \
             or a partition key under `table.reserved_prefixes`"
                .to_owned(),
            Some("aggregate_on_entity_key")
        )]
    );
    // An open entity key meets any aggregate key, unless the aggregate lives under a prefix the
    // application declares it never writes.
    let open = edited(&[("pk = \"CONV#{conversationId}\"\nsk = \"METADATA\"", "pk = \"{orgId}\"\nsk = \"{kind}\"")]);
    let found = refusals(&open);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].1, Some("aggregate_on_entity_key"));
    let reserved = open.replace("bookkeeping_prefix = \"_tally#\"", "bookkeeping_prefix = \"_tally#\"\nreserved_prefixes = [\"CONV#\"]");
    // The messages' own keys now lie under the reserved prefix: they can never be valid.
    let found = refusals(&reserved);
    assert!(found.iter().all(|(_, reason)| *reason == Some("never_matches")), "{found:?}");
    let moved = reserved.replace("pk = \"CONV#{conversationId}\"\nsk = \"MSG#", "pk = \"C#{conversationId}\"\nsk = \"MSG#");
    assert_eq!(refusals(&moved), vec![]);
    let rules = rules(&moved);
    let under_reserved = image(&[("PK", "CONV#c1"), ("SK", "anything")]);
    assert_eq!(reason(&rules, &under_reserved).as_deref(), Some("reserved_key"));
    // A constant pk is the aggregate's whole partition: an entity's key there is refused too.
    let partition = edited(&[
        ("pk = \"CONV#{conversationId}\"\nsk = \"STATS\"", "pk = \"STATS\"\nsk = \"C#{conversationId}\""),
        ("pk = \"CONV#{conversationId}\"\nsk = \"METADATA\"", "pk = \"{orgId}\"\nsk = \"PROFILE\""),
    ]);
    let found = refusals(&partition);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].0.contains("(as PK `STATS`, SK `PROFILE`)"), "{found:?}");
}

#[test]
fn an_aggregate_key_that_can_fall_in_tallys_bookkeeping_is_refused() {
    let text = edited(&[("pk = \"CONV#{conversationId}\"\nsk = \"STATS\"", "pk = \"{conversationId}\"\nsk = \"STATS\"")]);
    let found = refusals(&text);
    assert!(
        found.contains(&(
            "7:6: aggregate `conversation_stats`: pk `{conversationId}` can start with the bookkeeping prefix `_tally#` (as \
             `_tally#`), where tally keeps its ledgers; start it with a literal of its own (`ORG#{orgId}`)"
                .to_owned(),
            Some("bookkeeping_space")
        )),
        "{found:?}"
    );
    let partial = edited(&[("pk = \"CONV#{conversationId}\"\nsk = \"STATS\"", "pk = \"_t{conversationId}\"\nsk = \"STATS\"")]);
    assert!(refusals(&partial).iter().any(|(_, reason)| *reason == Some("bookkeeping_space")));
}

#[test]
fn an_entity_image_under_the_bookkeeping_prefix_is_rejected_not_counted() {
    let text = edited(&[("pk = \"CONV#{conversationId}\"\nsk = \"MSG#", "pk = \"{tenant}#CONV#{conversationId}\"\nsk = \"MSG#")]);
    let text = text.replace("pk = \"CONV#{conversationId}\"\nsk = \"STATS\"", "pk = \"STATS#{conversationId}\"\nsk = \"STATS\"");
    assert_eq!(refusals(&text), vec![]);
    let rules = rules(&text);
    let tenant = |tenant: &str| image(&[("PK", &format!("{tenant}#CONV#c1")), ("SK", "MSG#2026-03-01T10:00:00Z")]);
    assert_eq!(reason(&rules, &tenant("acme")), None);
    assert_eq!(reason(&rules, &tenant("_tally")).as_deref(), Some("reserved_key"));
}

#[test]
fn a_value_holding_the_next_literal_is_rejected_before_its_key_is_written() {
    let text = r#"[table]
pk = "PK"
sk = "SK"
entity_type = "Type"
bookkeeping_prefix = "_tally#"

[aggregates.daily_sales]
pk = "SALES#{category}#{day:date}"
sk = "TOTAL"
counters = ["orders"]

[entities.order]
pk = "ORDER#{orderId}"
sk = "METADATA"

[entities.order.attributes]
category = { type = "id" }
orderedAt = { type = "datetime" }

[[entities.order.contributions]]
to = "daily_sales"
key = { category = "category", day = "orderedAt" }
add = { orders = 1 }
"#;
    let rules = rules(text);
    let order = |category: &str| {
        image(&[("PK", "ORDER#o1"), ("SK", "METADATA"), ("Type", "order"), ("category", category), ("orderedAt", "2026-03-01")])
    };
    assert_eq!(reason(&rules, &order("Garden")), None);
    assert_eq!(reason(&rules, &order("Home#Garden")).as_deref(), Some("ambiguous_key"));
    match rules.assess(Some(&order("Home#Garden"))) {
        RuleAssessment::Rejected { violation, .. } => assert_eq!(
            violation.to_string(),
            "the `daily_sales` item's `PK` would not read back as the values it is built from (a value holds the literal after it)"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_sum_fed_by_attributes_whose_digits_together_pass_38_is_refused() {
    let text = r#"[table]
pk = "PK"
sk = "SK"
entity_type = "Type"
bookkeeping_prefix = "_tally#"

[aggregates.balance]
pk = "ACCOUNT#{accountId}"
sk = "BALANCE"
sums = ["amount"]

[entities.Deposit]
pk = "ACCOUNT#{accountId}"
sk = "DEPOSIT#{id}"
attributes.amount = { type = "number", max_digits = { integer = 28, fraction = 0 } }

[[entities.Deposit.contributions]]
to = "balance"
key = { accountId = "accountId" }
add = { amount = "amount" }

[entities.Accrual]
pk = "ACCOUNT#{accountId}"
sk = "ACCRUAL#{id}"
attributes.amount = { type = "number", max_digits = { integer = 0, fraction = 28 } }

[[entities.Accrual.contributions]]
to = "balance"
key = { accountId = "accountId" }
add = { amount = "amount" }
"#;
    assert_eq!(
        refusals(text),
        vec![(
            "30:18: `amount` sums values of up to 28 digits before the point (`Deposit.amount`) and 28 after it \
             (`Accrual.amount`): 56 digits, over 28 (a sum of 10^10 values must fit DynamoDB's 38); lower their `max_digits`"
                .to_owned(),
            Some("field_digit_budget")
        )]
    );
    assert_eq!(
        refusals(
            &text
                .replace("integer = 0, fraction = 28", "integer = 20, fraction = 8")
                .replace("integer = 28, fraction = 0", "integer = 20, fraction = 0")
        ),
        vec![]
    );
}

/// A file whose one entity adds to `items` aggregate items.
fn fan_out(items: usize) -> String {
    let mut text = String::from("[table]\npk = \"PK\"\nsk = \"SK\"\nbookkeeping_prefix = \"_tally#\"\n");
    let names: Vec<String> = (0..items).map(|index| format!("a{index}")).collect();
    for name in &names {
        text.push_str(&format!("\n[aggregates.{name}]\npk = \"{name}#{{id}}\"\nsk = \"STATS\"\ncounters = [\"n\"]\n"));
    }
    let to: Vec<String> = names.iter().map(|name| format!("\"{name}\"")).collect();
    text.push_str(&format!(
        "\n[entities.item]\npk = \"ITEM#{{id}}\"\nsk = \"METADATA\"\n\n[[entities.item.contributions]]\nto = [{}]\nkey = {{ id = \"id\" }}\nadd = {{ n = 1 }}\n",
        to.join(", ")
    ));
    text
}

#[test]
fn an_entity_whose_worst_commit_passes_a_transaction_is_refused() {
    assert_eq!(refusals(&fan_out(24)), vec![]);
    let found = refusals(&fan_out(50));
    assert_eq!(
        found,
        vec![(
            format!(
                "{}:11: entity `item` adds to up to 50 aggregate items: a record that moves it can write its ledger and the items of \
                 four images (its old and new, the ledger's, and a baseline a redrive corrects) in one transaction, 201 actions, \
                 over DynamoDB's 100; an entity may add to at most 24",
                6 + 5 * 50
            ),
            Some("fan_out")
        )]
    );
}

#[test]
fn a_capture_followed_by_a_literal_its_values_hold_is_refused() {
    let text = edited(&[("sk = \"MSG#{sentAt:datetime}\"", "sk = \"MSG#{sentAt:datetime}-{messageId}\"")]);
    assert_eq!(
        refusals(&text),
        vec![(
            "17:6: pattern `MSG#{sentAt:datetime}-{messageId}`: `{sentAt}` is followed by `-`, which can occur inside a \
             date-time: the capture ends at the literal's first occurrence, inside the value, so the pattern misses keys of its \
             own shape; follow it with a character no date-time holds, such as `#`"
                .to_owned(),
            Some("never_matches")
        )]
    );
    assert_eq!(refusals(&edited(&[("sk = \"MSG#{sentAt:datetime}\"", "sk = \"MSG#{sentAt:datetime}#{messageId}\"")])), vec![]);
    // A pattern whose shortest key is past the limits can match no key.
    let long = format!("sk = \"MSG#{}{{sentAt:datetime}}\"", "x".repeat(1000));
    let found = refusals(&edited(&[("sk = \"MSG#{sentAt:datetime}\"", &long)]));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].0.contains("its shortest key is 1014 bytes, over the 960 a key may have here"), "{found:?}");
}

#[test]
fn the_repository_rule_sets_are_safe() {
    for path in
        ["rules/university.toml", "../examples/rules/learning.toml", "../examples/rules/marketplace.toml", "../fixtures/rules/chat.toml"]
    {
        let text = std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).expect("the rules file");
        assert_eq!(refusals(&text), vec![], "{path}");
    }
}

#[test]
fn a_name_tallys_bookkeeping_types_use_is_refused() {
    let text = edited(&[("[entities.conversation]", "[entities.tally_ledger]")]);
    assert_eq!(
        refusals(&text),
        vec![(
            "11:11: `tally_ledger` starts with `tally_`, which names tally's own bookkeeping items (`tally_ledger`, ...); choose \
             another name"
                .to_owned(),
            Some("bookkeeping_space")
        )]
    );
}

#[test]
fn a_literal_a_value_cannot_hold_may_follow_a_date_capture() {
    for sk in ["MSG#{sentAt:datetime}Z#{messageId}", "MSG#{sentAt:datetime}#{messageId}"] {
        assert_eq!(refusals(&edited(&[("sk = \"MSG#{sentAt:datetime}\"", &format!("sk = \"{sk}\""))])), vec![], "{sk}");
    }
    let found = refusals(&edited(&[("sk = \"MSG#{sentAt:datetime}\"", "sk = \"MSG#{sentAt:datetime}:{messageId}\"")]));
    assert_eq!(found.iter().map(|(_, reason)| *reason).collect::<Vec<_>>(), vec![Some("never_matches")]);
}
