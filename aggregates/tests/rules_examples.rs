//! The example rule sets, `examples/rules/learning.toml` (a chat table matched by key
//! patterns) and `examples/rules/marketplace.toml` (a table with a `Type` attribute, one entity
//! matched by keys): they load, hand-written images add exactly what the files say or are
//! rejected with their reasons, and over seed-style workloads delivered at least once (records
//! repeated, batches retried whole or from a failure point or bisected, stale batches arriving
//! after newer records, items interleaved at random but each in order) tally's ledger
//! bookkeeping ends with exactly what a recompute from the final table gives, while applying
//! every delivery does not.
//!
//! No server: the oracle models the engine's bookkeeping purely (`examples_support::oracle`).

mod examples_support;

use std::collections::{BTreeMap, BTreeSet};

use aggregates::rules::{RuleAssessment, Rules};
use aggregates::{AggregateKey, KeyOwner};
use examples_support::delivery::{schedule, Faults};
use examples_support::dice::Dice;
use examples_support::oracle::{add, assess_all, naive, recompute, show, touched, Assessed, Counts, Tally, Totals};
use examples_support::workload::{Event, Workload};
use examples_support::{image, learning, marketplace, outcome, LEARNING_SOURCE, MARKETPLACE_SOURCE};
use proptest::prelude::*;

// --- The files.

#[test]
fn both_files_load_with_their_entities_and_aggregates() {
    let summary = |rules: &Rules| {
        let entities: Vec<String> = rules
            .entities()
            .iter()
            .map(|entity| {
                let by = if entity.matched_by_keys() { "keys" } else { "type" };
                format!("{} by {by}{}", entity.name(), if entity.contributes() { "" } else { ", adds nothing" })
            })
            .collect();
        let aggregates: Vec<String> = rules
            .aggregates()
            .iter()
            .map(|aggregate| {
                let fields: Vec<&str> = aggregate.fields().map(|field| rules.field_name(field)).collect();
                let averages: Vec<String> = aggregate
                    .averages()
                    .iter()
                    .map(|average| {
                        format!(
                            " {}={}/{}@{}",
                            average.name(),
                            rules.field_name(average.sum()),
                            rules.field_name(average.count()),
                            average.places()
                        )
                    })
                    .collect();
                format!("{} [{}]{}", aggregate.name(), fields.join(" "), averages.concat())
            })
            .collect();
        (entities, aggregates)
    };

    let rules = learning();
    assert_eq!(rules.source_name(), LEARNING_SOURCE);
    assert_eq!((rules.table().pk(), rules.table().sk(), rules.table().entity_type()), ("PK", "SK", None));
    assert_eq!(rules.table().bookkeeping_prefix(), "_tally#");
    assert_eq!(
        summary(rules),
        (
            vec!["profile by keys, adds nothing".to_owned(), "conversation by keys".to_owned(), "message by keys".to_owned()],
            vec![
                "conversation_stats [messages userMessages assistantMessages meteredMessages tokens] tokensPerMessage=tokens/meteredMessages@1"
                    .to_owned(),
                "user_stats [conversations messages unreadTotal]".to_owned(),
                "daily_messages [messages userMessages assistantMessages tokens]".to_owned(),
            ]
        )
    );

    let rules = marketplace();
    assert_eq!(rules.source_name(), MARKETPLACE_SOURCE);
    assert_eq!((rules.table().pk(), rules.table().sk(), rules.table().entity_type()), ("PK", "SK", Some("Type")));
    assert_eq!(rules.table().bookkeeping_prefix(), "_tally#");
    assert_eq!((rules.limits().source_pk_bytes, rules.limits().source_sk_bytes), (512, 512));
    assert_eq!(
        summary(rules),
        (
            vec![
                "Vendor by type, adds nothing".to_owned(),
                "Product by type".to_owned(),
                "Order by type".to_owned(),
                "Review by type".to_owned(),
                "Favourite by keys".to_owned(),
            ],
            vec![
                "VendorStats [products activeProducts]".to_owned(),
                "VendorDailySales [orders cancelledOrders orderTotal] averageOrderValue=orderTotal/orders@2".to_owned(),
                "ProductStats [reviews favourites ratingSum] averageRating=ratingSum/reviews@2".to_owned(),
                "CustomerStats [orders favourites orderTotal]".to_owned(),
            ]
        )
    );
}

// --- Hand-written images: what each entity adds, and why an image is rejected.

fn check_cases(rules: &Rules, cases: &[(&[(&str, &str)], &str)]) {
    let mut failures = Vec::new();
    for (attrs, expected) in cases {
        let got = outcome(rules, &image(attrs));
        if got != *expected {
            failures.push(format!("{attrs:?}\n  expected {expected}\n       got {got}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn learning_images_add_what_the_file_says() {
    check_cases(
        learning(),
        &[
            (
                &[
                    ("PK", "CONV#conv-1"),
                    ("SK", "MSG#2025-12-20T10:30:00.000Z"),
                    ("role", "user"),
                    ("tokens", "N:12"),
                    ("userId", "user-123"),
                    ("GSI1PK", "DATE#2025-12-20"),
                    ("expiresAt", "N:1768900000"),
                ],
                "message: conversation_stats CONV#conv-1 STATS messages 1; conversation_stats CONV#conv-1 STATS userMessages 1; \
                 conversation_stats CONV#conv-1 STATS meteredMessages 1; conversation_stats CONV#conv-1 STATS tokens 12; \
                 user_stats USER#user-123 STATS messages 1; daily_messages STATS#MESSAGES DAY#2025-12-20 messages 1; \
                 daily_messages STATS#MESSAGES DAY#2025-12-20 userMessages 1; daily_messages STATS#MESSAGES DAY#2025-12-20 tokens 12",
            ),
            // 23:30 at -02:00 is the next UTC day. No tokens: not metered. No userId: no user_stats.
            (
                &[("PK", "CONV#conv-1"), ("SK", "MSG#2025-12-20T23:30:00-02:00"), ("role", "assistant")],
                "message: conversation_stats CONV#conv-1 STATS messages 1; conversation_stats CONV#conv-1 STATS assistantMessages 1; \
                 daily_messages STATS#MESSAGES DAY#2025-12-21 messages 1; daily_messages STATS#MESSAGES DAY#2025-12-21 assistantMessages 1",
            ),
            // A role the file does not name: a message of neither role. No offset: UTC.
            (
                &[("PK", "CONV#conv-1"), ("SK", "MSG#2025-12-20T00:10:00"), ("role", "system")],
                "message: conversation_stats CONV#conv-1 STATS messages 1; daily_messages STATS#MESSAGES DAY#2025-12-20 messages 1",
            ),
            (
                &[("PK", "USER#user-123"), ("SK", "CONV#conv-1"), ("unreadCount", "N:3"), ("title", "Fractions")],
                "conversation: user_stats USER#user-123 STATS conversations 1; user_stats USER#user-123 STATS unreadTotal 3",
            ),
            // Nothing unread yet: still a conversation (a zero adds nothing).
            (&[("PK", "USER#user-123"), ("SK", "CONV#conv-2")], "conversation: user_stats USER#user-123 STATS conversations 1"),
            (
                &[("PK", "USER#user-123"), ("SK", "CONV#conv-2"), ("unreadCount", "N:0")],
                "conversation: user_stats USER#user-123 STATS conversations 1",
            ),
            (&[("PK", "USER#user-123"), ("SK", "PROFILE"), ("createdAt", "2025-12-01T09:00:00Z")], "profile: "),
        ],
    );
}

#[test]
fn learning_images_are_rejected_with_their_reasons() {
    let long_user = "u".repeat(2_044);
    let long_conversation = format!("CONV#{}", "c".repeat(2_000));
    let message = |extra: &[(&'static str, &'static str)]| {
        let mut attrs = vec![("PK", "CONV#conv-1"), ("SK", "MSG#2025-12-20T10:30:00.000Z"), ("role", "user")];
        for (name, value) in extra {
            attrs.retain(|(known, _)| known != name);
            attrs.push((name, value));
        }
        attrs
    };
    let rules = learning();
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![("PK", "CONV#conv-1"), ("SK", "MSG#2025-12-20T10:30:00.000Z")],
            "message rejected missing_attribute: attribute `role` is missing",
        ),
        (message(&[("role", "N:1")]), "message rejected wrong_type: attribute `role` has type N, expected S"),
        (message(&[("role", "")]), "message rejected empty_attribute: attribute `role` is empty"),
        (message(&[("tokens", "N:-5")]), "message rejected negative_tokens: attribute `tokens` is negative"),
        (
            message(&[("tokens", "N:1.5")]),
            "message rejected out_of_range: attribute `tokens` has more than 9 digits before the decimal point or 0 after it",
        ),
        (message(&[("tokens", "12")]), "message rejected wrong_type: attribute `tokens` has type S, expected N"),
        (message(&[("userId", "")]), "message rejected empty_attribute: attribute `userId` is empty"),
        // Of a message's form but not ISO 8601: a message, rejected (not an unknown item).
        (message(&[("SK", "MSG#yesterday")]), "message rejected key_shape: key `SK` does not have the shape `MSG#{ISO 8601 date-time}`"),
        (
            message(&[("SK", "MSG#2025-12-20 10:30")]),
            "message rejected key_shape: key `SK` does not have the shape `MSG#{ISO 8601 date-time}`",
        ),
        (
            vec![("PK", "USER#user-123"), ("SK", "CONV#conv-1"), ("unreadCount", "N:-1")],
            "conversation rejected negative_unread: attribute `unreadCount` is negative",
        ),
        (
            vec![("PK", "USER#user-123"), ("SK", "CONV#conv-1"), ("unreadCount", "N:2.5")],
            "conversation rejected out_of_range: attribute `unreadCount` has more than 9 digits before the decimal point or 0 after it",
        ),
        (
            vec![("PK", "USER#user-123"), ("SK", "PROFILE"), ("createdAt", "last spring")],
            "profile rejected bad_date: attribute `createdAt` is not an ISO 8601 date or date-time",
        ),
        // Items the file does not know, and tally's own aggregate items: of no entity's form.
        (vec![("PK", "USER#user-123"), ("SK", "SETTINGS")], "unknown"),
        (vec![("PK", "USER#user-123"), ("SK", "CONV#")], "unknown"),
        (vec![("PK", "CONV#conv-1"), ("SK", "STATS"), ("messages", "N:4")], "unknown"),
        (vec![("PK", "STATS#MESSAGES"), ("SK", "DAY#2025-12-20"), ("messages", "N:4")], "unknown"),
    ];
    let mut failures = Vec::new();
    for (attrs, expected) in &cases {
        let got = outcome(rules, &image(attrs));
        if got != *expected {
            failures.push(format!("{attrs:?}\n  expected {expected}\n       got {got}"));
        }
    }
    // Key lengths: the message's own PK past tally's 1,984 bytes; an aggregate PK past 2,048.
    let too_long = [
        (
            image(&[("PK", &long_conversation), ("SK", "MSG#2025-12-20T10:30:00.000Z"), ("role", "user")]),
            "message rejected key_too_long: key `PK` is 2005 bytes, over the 1984 tally accepts",
        ),
        (
            image(&[("PK", "CONV#conv-1"), ("SK", "MSG#2025-12-20T10:30:00.000Z"), ("role", "user"), ("userId", &long_user)]),
            "message rejected key_too_long: the `user_stats` item's `PK` would be 2049 bytes, over DynamoDB's 2048",
        ),
        (
            image(&[
                ("PK", "CONV#conv-1"),
                ("SK", "MSG#2025-12-20T10:30:00.000Z"),
                ("role", "user"),
                ("tokens", &format!("N:{}", "9".repeat(39))),
            ]),
            "message rejected number_too_precise: attribute `tokens` is not a DynamoDB number: more than 38 significant digits",
        ),
    ];
    for (image, expected) in &too_long {
        let got = outcome(rules, image);
        if got != *expected {
            failures.push(format!("  expected {expected}\n       got {got}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn marketplace_images_add_what_the_file_says() {
    let order = |status: &'static str, at: &'static str| {
        vec![
            ("PK", "ORDER#321"),
            ("SK", "METADATA"),
            ("Type", "Order"),
            ("vendorId", "456"),
            ("customerId", "cust-1"),
            ("amount", "N:19.99"),
            ("orderedAt", at),
            ("status", status),
            ("GSI1PK", "CUSTOMER#cust-1"),
            ("GSI2PK", "VENDOR#456"),
        ]
    };
    let placed = order("placed", "2025-12-20T10:30:00.000Z");
    let delivered = order("delivered", "2025-12-20T23:30:00-05:00");
    let cancelled = order("cancelled", "2025-12-20T10:30:00.000Z");
    let mut pending = order("pending", "2025-12-20T10:30:00.000Z");
    pending.push(("ttl", "N:1766230200"));
    check_cases(
        marketplace(),
        &[
            (
                &placed,
                "Order: VendorDailySales VENDOR#456 SALES#2025-12-20 orders 1; VendorDailySales VENDOR#456 SALES#2025-12-20 orderTotal 19.99; \
                 CustomerStats CUSTOMER#cust-1 STATS orders 1; CustomerStats CUSTOMER#cust-1 STATS orderTotal 19.99",
            ),
            // 23:30 at -05:00 is the next UTC day.
            (
                &delivered,
                "Order: VendorDailySales VENDOR#456 SALES#2025-12-21 orders 1; VendorDailySales VENDOR#456 SALES#2025-12-21 orderTotal 19.99; \
                 CustomerStats CUSTOMER#cust-1 STATS orders 1; CustomerStats CUSTOMER#cust-1 STATS orderTotal 19.99",
            ),
            (&cancelled, "Order: VendorDailySales VENDOR#456 SALES#2025-12-20 cancelledOrders 1"),
            // A checkout in progress adds nothing (and when TTL deletes it, nothing is retracted).
            (&pending, "Order: "),
            (
                &[("PK", "VENDOR#456"), ("SK", "PRODUCT#789"), ("Type", "Product"), ("status", "active"), ("price", "N:25.00")],
                "Product: VendorStats VENDOR#456 STATS products 1; VendorStats VENDOR#456 STATS activeProducts 1",
            ),
            (
                &[("PK", "VENDOR#456"), ("SK", "PRODUCT#790"), ("Type", "Product"), ("status", "draft"), ("price", "N:0")],
                "Product: VendorStats VENDOR#456 STATS products 1",
            ),
            (
                &[("PK", "PRODUCT#789"), ("SK", "REVIEW#rev-1"), ("Type", "Review"), ("rating", "N:4"), ("customerId", "cust-1")],
                "Review: ProductStats PRODUCT#789 STATS reviews 1; ProductStats PRODUCT#789 STATS ratingSum 4",
            ),
            // No upper bound in the format: seven stars are accepted.
            (
                &[("PK", "PRODUCT#789"), ("SK", "REVIEW#rev-2"), ("Type", "Review"), ("rating", "N:7"), ("customerId", "cust-2")],
                "Review: ProductStats PRODUCT#789 STATS reviews 1; ProductStats PRODUCT#789 STATS ratingSum 7",
            ),
            // Matched by keys: no `Type`, or a `Type` no entity matched by type has.
            (
                &[("PK", "CUSTOMER#cust-1"), ("SK", "FAV#789"), ("addedAt", "2025-12-20T10:30:00Z")],
                "Favourite: ProductStats PRODUCT#789 STATS favourites 1; CustomerStats CUSTOMER#cust-1 STATS favourites 1",
            ),
            (
                &[("PK", "CUSTOMER#cust-1"), ("SK", "FAV#789"), ("Type", "Favourite")],
                "Favourite: ProductStats PRODUCT#789 STATS favourites 1; CustomerStats CUSTOMER#cust-1 STATS favourites 1",
            ),
            (&[("PK", "VENDOR#456"), ("SK", "METADATA"), ("Type", "Vendor"), ("name", "Acme")], "Vendor: "),
        ],
    );
}

#[test]
fn marketplace_images_are_rejected_with_their_reasons() {
    let order = |change: (&'static str, &'static str)| {
        let mut attrs = vec![
            ("PK", "ORDER#321"),
            ("SK", "METADATA"),
            ("Type", "Order"),
            ("vendorId", "456"),
            ("customerId", "cust-1"),
            ("amount", "N:19.99"),
            ("orderedAt", "2025-12-20T10:30:00.000Z"),
            ("status", "placed"),
        ];
        attrs.retain(|(name, _)| *name != change.0);
        if !change.1.is_empty() || change.0 == "customerId" {
            attrs.push(change);
        }
        attrs
    };
    let review = |rating: &'static str| {
        vec![("PK", "PRODUCT#789"), ("SK", "REVIEW#rev-1"), ("Type", "Review"), ("rating", rating), ("customerId", "cust-1")]
    };
    let long_product = format!("PRODUCT#{}", "p".repeat(600));
    let rules = marketplace();
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (order(("amount", "19.99")), "Order rejected wrong_type: attribute `amount` has type S, expected N"),
        (
            order(("amount", "N:19.999")),
            "Order rejected out_of_range: attribute `amount` has more than 10 digits before the decimal point or 2 after it",
        ),
        (order(("amount", "N:-5")), "Order rejected negative_amount: attribute `amount` is negative"),
        (order(("orderedAt", "last week")), "Order rejected bad_date: attribute `orderedAt` is not an ISO 8601 date or date-time"),
        // Removed: the value is empty, so the attribute is left out.
        (order(("vendorId", "")), "Order rejected missing_attribute: attribute `vendorId` is missing"),
        (order(("customerId", "")), "Order rejected empty_attribute: attribute `customerId` is empty"),
        (order(("SK", "META")), "Order rejected key_shape: key `SK` does not have the shape `METADATA`"),
        (order(("Type", "N:3")), "- rejected wrong_type: attribute `Type` has type N, expected S"),
        // The type wins over the keys: a favourite's keys with `Type = "Product"` is a product, rejected.
        (
            vec![("PK", "CUSTOMER#cust-1"), ("SK", "FAV#789"), ("Type", "Product")],
            "Product rejected key_shape: key `PK` does not have the shape `VENDOR#{vendorId}`",
        ),
        (review("N:4.5"), "Review rejected out_of_range: attribute `rating` has more than 1 digits before the decimal point or 0 after it"),
        (review("5"), "Review rejected wrong_type: attribute `rating` has type S, expected N"),
        (review("N:-1"), "Review rejected negative_rating: attribute `rating` is negative"),
        (
            vec![("PK", "VENDOR#456"), ("SK", "PRODUCT#789"), ("Type", "Product"), ("status", "active"), ("price", "N:-1.00")],
            "Product rejected negative_price: attribute `price` is negative",
        ),
        (
            vec![("PK", "VENDOR#456"), ("SK", "PRODUCT#789"), ("Type", "Product"), ("price", "N:1.00")],
            "Product rejected missing_attribute: attribute `status` is missing",
        ),
        // The file's own limit, 512 bytes.
        (
            vec![("PK", &long_product), ("SK", "REVIEW#rev-1"), ("Type", "Review"), ("rating", "N:5"), ("customerId", "cust-1")],
            "Review rejected key_too_long: key `PK` is 608 bytes, over the 512 tally accepts",
        ),
        // Unknown: an order without `Type` (a legacy writer), a type the file does not declare,
        // a favourite's form with an empty id, and tally's own items.
        (order(("Type", "")), "unknown"),
        (vec![("PK", "COUPON#xmas"), ("SK", "METADATA"), ("Type", "Coupon")], "unknown"),
        (vec![("PK", "CUSTOMER#cust-1"), ("SK", "FAV#")], "unknown"),
        (vec![("PK", "PRODUCT#789"), ("SK", "STATS"), ("Type", "ProductStats"), ("reviews", "N:3")], "unknown"),
    ];
    let mut failures = Vec::new();
    for (attrs, expected) in &cases {
        let got = outcome(rules, &image(attrs));
        if got != *expected {
            failures.push(format!("{attrs:?}\n  expected {expected}\n       got {got}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The images under `examples/images/` (for `tally rules explain`, as examples/README.md shows)
/// say what the README says they do; every file there has its expectation here.
#[test]
fn the_example_images_are_what_the_readme_says() {
    /// A table's directory under examples/images, its rules, and each file's outcome.
    type Images<'a> = (&'a str, &'a Rules, &'a [(&'a str, &'a str)]);
    let expected: [Images<'_>; 2] = [
        (
            "learning",
            learning(),
            &[
                (
                    "answer-after-midnight-utc.json",
                    "message: conversation_stats CONV#conv-1 STATS messages 1; conversation_stats CONV#conv-1 STATS assistantMessages 1; \
                     conversation_stats CONV#conv-1 STATS meteredMessages 1; conversation_stats CONV#conv-1 STATS tokens 48; \
                     user_stats USER#user-123 STATS messages 1; daily_messages STATS#MESSAGES DAY#2025-12-21 messages 1; \
                     daily_messages STATS#MESSAGES DAY#2025-12-21 assistantMessages 1; daily_messages STATS#MESSAGES DAY#2025-12-21 tokens 48",
                ),
                ("conversation-negative-unread.json", "conversation rejected negative_unread: attribute `unreadCount` is negative"),
                ("conversation.json", "conversation: user_stats USER#user-123 STATS conversations 1; user_stats USER#user-123 STATS unreadTotal 2"),
                (
                    "message-bad-timestamp.json",
                    "message rejected key_shape: key `SK` does not have the shape `MSG#{ISO 8601 date-time}`",
                ),
                (
                    "message.json",
                    "message: conversation_stats CONV#conv-1 STATS messages 1; conversation_stats CONV#conv-1 STATS userMessages 1; \
                     conversation_stats CONV#conv-1 STATS meteredMessages 1; conversation_stats CONV#conv-1 STATS tokens 12; \
                     user_stats USER#user-123 STATS messages 1; daily_messages STATS#MESSAGES DAY#2025-12-20 messages 1; \
                     daily_messages STATS#MESSAGES DAY#2025-12-20 userMessages 1; daily_messages STATS#MESSAGES DAY#2025-12-20 tokens 12",
                ),
                ("profile.json", "profile: "),
            ],
        ),
        (
            "marketplace",
            marketplace(),
            &[
                ("favourite.json", "Favourite: ProductStats PRODUCT#789 STATS favourites 1; CustomerStats CUSTOMER#cust-1 STATS favourites 1"),
                ("order-pending.json", "Order: "),
                (
                    "order-placed.json",
                    "Order: VendorDailySales VENDOR#456 SALES#2025-12-20 orders 1; VendorDailySales VENDOR#456 SALES#2025-12-20 orderTotal 19.99; \
                     CustomerStats CUSTOMER#cust-1 STATS orders 1; CustomerStats CUSTOMER#cust-1 STATS orderTotal 19.99",
                ),
                ("order-without-type.json", "unknown"),
                ("product.json", "Product: VendorStats VENDOR#456 STATS products 1; VendorStats VENDOR#456 STATS activeProducts 1"),
                (
                    "review-half-star.json",
                    "Review rejected out_of_range: attribute `rating` has more than 1 digits before the decimal point or 0 after it",
                ),
                ("review.json", "Review: ProductStats PRODUCT#789 STATS reviews 1; ProductStats PRODUCT#789 STATS ratingSum 4"),
            ],
        ),
    ];
    for (table, rules, cases) in expected {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/images").join(table);
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap_or_else(|err| panic!("{}: {err}", dir.display()))
            .map(|entry| entry.expect("a directory entry").file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        let named: Vec<&str> = cases.iter().map(|(file, _)| *file).collect();
        assert_eq!(files, named, "{table}: every image has an expectation, and every expectation an image");
        for (file, expected) in cases {
            let path = dir.join(file);
            let text = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
            let item: serde_dynamo::Item = serde_json::from_str(&text).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
            assert_eq!(outcome(rules, &item), *expected, "{}", path.display());
        }
    }
}

#[test]
fn keys_tell_tally_s_items_from_the_application_s() {
    type Owners<'a> = &'a [(&'a str, &'a str, KeyOwner)];
    let cases: [(&Rules, Owners<'_>); 2] = [
        (
            learning(),
            &[
                ("CONV#conv-1", "STATS", KeyOwner::Aggregate),
                ("USER#user-123", "STATS", KeyOwner::Aggregate),
                ("STATS#MESSAGES", "DAY#2025-12-20", KeyOwner::Aggregate),
                // A constant partition key: the whole partition is tally's.
                ("STATS#MESSAGES", "anything", KeyOwner::Aggregate),
                ("USER#user-123", "PROFILE", KeyOwner::Application),
                ("USER#user-123", "CONV#conv-1", KeyOwner::Application),
                ("CONV#conv-1", "MSG#2025-12-20T10:30:00.000Z", KeyOwner::Application),
                ("USER#user-123", "SETTINGS", KeyOwner::Application),
                ("_tally#ledger#CONV#conv-1", "MSG#2025-12-20T10:30:00.000Z", KeyOwner::Bookkeeping),
                // The university's prefix is not this table's.
                ("tally#ledger#CONV#conv-1", "MSG#2025-12-20T10:30:00.000Z", KeyOwner::Application),
            ],
        ),
        (
            marketplace(),
            &[
                ("VENDOR#456", "STATS", KeyOwner::Aggregate),
                ("VENDOR#456", "SALES#2025-12-20", KeyOwner::Aggregate),
                // A day only as tally writes it.
                ("VENDOR#456", "SALES#20-12-2025", KeyOwner::Application),
                ("PRODUCT#789", "STATS", KeyOwner::Aggregate),
                ("CUSTOMER#cust-1", "STATS", KeyOwner::Aggregate),
                ("VENDOR#456", "METADATA", KeyOwner::Application),
                ("VENDOR#456", "PRODUCT#789", KeyOwner::Application),
                ("ORDER#321", "METADATA", KeyOwner::Application),
                ("PRODUCT#789", "REVIEW#rev-1", KeyOwner::Application),
                ("CUSTOMER#cust-1", "FAV#789", KeyOwner::Application),
                ("_tally#ledger#ORDER#321", "METADATA", KeyOwner::Bookkeeping),
            ],
        ),
    ];
    for (rules, keys) in cases {
        for (pk, sk, owner) in keys {
            assert_eq!(rules.owner(pk, sk), *owner, "{} {pk} {sk}", rules.source_name());
        }
    }
    let key = marketplace().parse_key("VENDOR#456", "SALES#2025-12-20").expect("an aggregate's key");
    assert_eq!(marketplace().aggregate(key.kind).name(), "VendorDailySales");
    assert_eq!(marketplace().parse_key("VENDOR#456", "PRODUCT#789"), None);
    let key = learning().parse_key("STATS#MESSAGES", "DAY#2025-12-20").expect("an aggregate's key");
    assert_eq!(learning().aggregate(key.kind).name(), "daily_messages");
}

#[test]
fn averages_are_derived_from_their_sum_and_count() {
    let apply_all = |rules: &'static Rules, images: &[Vec<(&str, &str)>]| {
        let mut tally = Tally::new(rules);
        for attrs in images {
            let contribution = examples_support::oracle::contribution(rules, Some(&image(attrs)));
            add(&mut tally.totals, &contribution, false);
        }
        tally
    };
    let number = |item: &serde_dynamo::Item, name: &str| match item.get(name) {
        Some(serde_dynamo::AttributeValue::N(number)) => Some(number.clone()),
        _ => None,
    };

    let review = |id: &'static str, rating: &'static str| {
        vec![("PK", "PRODUCT#789"), ("SK", id), ("Type", "Review"), ("rating", rating), ("customerId", "cust-1")]
    };
    let tally = apply_all(marketplace(), &[review("REVIEW#1", "N:5"), review("REVIEW#2", "N:4"), review("REVIEW#3", "N:4")]);
    let stats = marketplace().parse_key("PRODUCT#789", "STATS").unwrap();
    let item = tally.aggregate_image(&stats);
    assert_eq!((number(&item, "reviews"), number(&item, "ratingSum")), (Some("3".into()), Some("13".into())));
    assert_eq!(number(&item, "averageRating").as_deref(), Some("4.33"));
    assert_eq!(number(&item, "favourites").as_deref(), Some("0"), "every field is written, zeros too");

    let order = |id: &'static str, amount: &'static str| {
        vec![
            ("PK", id),
            ("SK", "METADATA"),
            ("Type", "Order"),
            ("vendorId", "456"),
            ("customerId", "cust-1"),
            ("amount", amount),
            ("orderedAt", "2025-12-20T10:30:00.000Z"),
            ("status", "shipped"),
        ]
    };
    let tally = apply_all(marketplace(), &[order("ORDER#1", "N:19.99"), order("ORDER#2", "N:5.00"), order("ORDER#3", "N:0.01")]);
    let item = tally.aggregate_image(&marketplace().parse_key("VENDOR#456", "SALES#2025-12-20").unwrap());
    // 25.00 / 3 = 8.333…, to 2 places.
    assert_eq!((number(&item, "orderTotal").as_deref(), number(&item, "averageOrderValue").as_deref()), (Some("25"), Some("8.33")));

    // Tokens are averaged over the metered messages only.
    let message = |sk: &'static str, tokens: Option<&'static str>| {
        let mut attrs = vec![("PK", "CONV#conv-1"), ("SK", sk), ("role", "assistant")];
        attrs.extend(tokens.map(|tokens| ("tokens", tokens)));
        attrs
    };
    let tally = apply_all(
        learning(),
        &[
            message("MSG#2025-12-20T10:30:00Z", Some("N:10")),
            message("MSG#2025-12-20T10:31:00Z", Some("N:15")),
            message("MSG#2025-12-20T10:32:00Z", None),
        ],
    );
    let item = tally.aggregate_image(&learning().parse_key("CONV#conv-1", "STATS").unwrap());
    assert_eq!((number(&item, "messages").as_deref(), number(&item, "tokensPerMessage").as_deref()), (Some("3"), Some("12.5")));
    // No metered message: no average.
    let tally = apply_all(learning(), &[message("MSG#2025-12-20T10:32:00Z", None)]);
    let item = tally.aggregate_image(&learning().parse_key("CONV#conv-1", "STATS").unwrap());
    assert_eq!(number(&item, "tokensPerMessage"), None);
}

// --- Workloads and at-least-once delivery.

/// A table: its name, its rules, its workload generator (from a seed, of so many operations).
type Table = (&'static str, fn() -> &'static Rules, fn(u64, usize) -> Workload);

const TABLES: [Table; 2] =
    [("learning", learning, examples_support::learning::workload), ("marketplace", marketplace, examples_support::marketplace::workload)];

/// What one oracle run exercised.
#[derive(Debug, Default, Clone, Copy)]
struct Run {
    records: usize,
    deliveries: usize,
    faults: Faults,
    counts: Counts,
    echoes: usize,
    naive_differs: bool,
}

/// Delivers `workload` at least once, as `delivery_seed` says, to the model of tally and to the
/// naive processor, and checks both against a recompute from the final table.
fn run(rules: &Rules, workload: &Workload, delivery_seed: u64, expire_ledgers: bool) -> Result<Run, TestCaseError> {
    let assessed = assess_all(rules, &workload.records);
    let mut tally = Tally::new(rules);
    let mut dice = Dice::new(delivery_seed);
    let (mut naive_totals, mut repeated) = (Totals::new(), Totals::new());
    let mut result = Run { records: workload.records.len(), ..Run::default() };
    let mut offset = 0;
    for (epoch, records) in workload.epochs().into_iter().enumerate() {
        if epoch == 1 && expire_ledgers {
            tally.expire_ledgers();
        }
        let assessed: &[Assessed] = &assessed[offset..offset + records.len()];
        let schedule = schedule(records, &mut dice);
        for &index in &schedule.deliveries {
            tally.deliver(&records[index], &assessed[index]);
            if dice.chance(10) {
                result.echoes += tally.deliver_echoes();
            }
        }
        result.echoes += tally.deliver_echoes();
        naive(assessed, &schedule.deliveries, &mut naive_totals);
        for (&index, repeat) in schedule.deliveries.iter().zip(schedule.repeats()) {
            if repeat {
                add(&mut repeated, &assessed[index].old, true);
                add(&mut repeated, &assessed[index].new, false);
            }
        }
        result.deliveries += schedule.deliveries.len();
        result.faults += schedule.faults;
        offset += records.len();
    }
    result.counts = tally.counts;

    // Every record that can change an aggregate applied exactly once, every other delivery of
    // it recognised as applied already; the others write nothing, however often they come.
    let counting = assessed.iter().filter(|assessed| !assessed.old.is_empty() || !assessed.new.is_empty()).count();
    prop_assert_eq!(tally.counts.applied as usize, counting);
    prop_assert_eq!((tally.counts.already_applied + tally.counts.no_effect) as usize, result.deliveries - counting);
    prop_assert_eq!(tally.counts.own as usize, result.echoes, "every record of tally's own writes is skipped");

    // The oracle: what the aggregates hold is what a recompute from the final items gives.
    let expected = recompute(rules, workload.items.values());
    prop_assert_eq!(show(rules, &tally.totals), show(rules, &expected.totals));
    // A scan of the whole table recomputes the same: tally's own items (its aggregate items and
    // ledgers, as they stand at the end) are all told from the application's by their keys, so
    // they add nothing (a recompute is a sum: the scan is the source items' plus these).
    let own = tally.own_items(&touched(&assessed));
    let scan = recompute(rules, &own);
    prop_assert_eq!((scan.own as usize, scan.sources, scan.unknown, scan.rejected.len()), (own.len(), 0, 0, 0));
    // Each ledger holds the sequence number of its item's last record that could count, and
    // what the item's final image adds (the new image of its last record).
    let mut last = BTreeMap::new();
    let mut last_counting = BTreeMap::new();
    for (index, record) in workload.records.iter().enumerate() {
        last.insert(&record.key, index);
        if !assessed[index].old.is_empty() || !assessed[index].new.is_empty() {
            last_counting.insert(&record.key, index);
        }
    }
    for (key, &index) in &last {
        prop_assert_eq!(workload.items.get(*key), workload.records[index].new.as_ref(), "the generator's final item {:?}", key);
        match (tally.ledgers.get(*key), last_counting.get(key)) {
            (Some(ledger), Some(&counting)) => {
                prop_assert_eq!(&ledger.seq, &workload.records[counting].seq);
                prop_assert_eq!(&ledger.held, &assessed[index].new, "{:?}", key);
            }
            (None, None) => {}
            (None, Some(&counting)) => {
                prop_assert!(expire_ledgers && counting < workload.second_epoch, "only an expired ledger is missing: {:?}", key);
            }
            (Some(_), None) => prop_assert!(false, "a ledger for an item that never counted: {:?}", key),
        }
    }
    prop_assert_eq!(workload.items.len(), last.values().filter(|&&index| workload.records[index].new.is_some()).count());

    // The naive processor is off by exactly what the repeated deliveries add.
    let mut naive_expected = expected.totals.clone();
    merge(&mut naive_expected, &repeated);
    prop_assert_eq!(show(rules, &naive_totals), show(rules, &naive_expected));
    result.naive_differs = naive_totals != expected.totals;
    Ok(result)
}

fn merge(totals: &mut Totals, other: &Totals) {
    for (aggregate, fields) in other {
        for (field, amount) in fields {
            let into = totals.entry(aggregate.clone()).or_default();
            let value = into.entry(*field).or_default();
            *value += amount;
            if value.is_zero() {
                into.remove(field);
            }
            if into.is_empty() {
                totals.remove(aggregate);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn learning_aggregates_are_exact_under_at_least_once_delivery(
        seed in any::<u64>(), ops in 1usize..120, delivery_seed in any::<u64>(), expire_ledgers in any::<bool>(),
    ) {
        run(learning(), &examples_support::learning::workload(seed, ops), delivery_seed, expire_ledgers)?;
    }

    #[test]
    fn marketplace_aggregates_are_exact_under_at_least_once_delivery(
        seed in any::<u64>(), ops in 1usize..120, delivery_seed in any::<u64>(), expire_ledgers in any::<bool>(),
    ) {
        run(marketplace(), &examples_support::marketplace::workload(seed, ops), delivery_seed, expire_ledgers)?;
    }
}

#[test]
fn applying_every_delivery_double_counts() {
    // One message, its INSERT delivered twice: tally counts it once, the naive processor twice.
    let rules = learning();
    let mut writer = examples_support::workload::Writer::new("PK", "SK", "1", 20, 7);
    writer.put(image(&[("PK", "CONV#conv-1"), ("SK", "MSG#2025-12-20T10:30:00.000Z"), ("role", "user")]));
    let workload = writer.finish(1);
    let assessed = assess_all(rules, &workload.records);
    let mut tally = Tally::new(rules);
    let mut naive_totals = Totals::new();
    for _ in 0..2 {
        tally.deliver(&workload.records[0], &assessed[0]);
    }
    naive(&assessed, &[0, 0], &mut naive_totals);
    let messages = |totals: &Totals| show(rules, totals).into_iter().filter(|line| line.contains(" messages ")).collect::<Vec<_>>();
    assert_eq!(
        messages(&tally.totals),
        ["conversation_stats CONV#conv-1 STATS messages 1", "daily_messages STATS#MESSAGES DAY#2025-12-20 messages 1"]
    );
    assert_eq!(
        messages(&naive_totals),
        ["conversation_stats CONV#conv-1 STATS messages 2", "daily_messages STATS#MESSAGES DAY#2025-12-20 messages 2"]
    );
}

/// Over fixed seeds, the generators and deliveries exercise what they claim: every rejection
/// reason, moves between aggregates, TTL deletions, unknown items, every fault, ledgers
/// expiring between epochs; and the naive processor is wrong in most runs.
#[test]
fn the_workloads_exercise_every_rule_and_fault() {
    let expected_reasons: [(&str, &[&str]); 2] = [
        (
            "learning",
            &[
                "bad_date",
                "empty_attribute",
                "key_shape",
                "key_too_long",
                "missing_attribute",
                "negative_tokens",
                "negative_unread",
                "number_too_precise",
                "out_of_range",
                "wrong_type",
            ],
        ),
        (
            "marketplace",
            &[
                "bad_date",
                "empty_attribute",
                "key_shape",
                "key_too_long",
                "missing_attribute",
                "negative_amount",
                "negative_price",
                "negative_rating",
                "out_of_range",
                "wrong_type",
            ],
        ),
    ];
    const SEEDS: u64 = 24;
    for ((name, rules, generate), (_, reasons)) in TABLES.into_iter().zip(expected_reasons) {
        let rules = rules();
        let mut seen_reasons = BTreeSet::new();
        let (mut moves, mut invalidated, mut unknown, mut ttl, mut removes) = (0, 0, 0, 0, 0);
        let mut total = Run::default();
        let mut naive_wrong = 0;
        let mut per_entity: BTreeMap<String, usize> = BTreeMap::new();
        for seed in 0..SEEDS {
            let workload = generate(seed, 120);
            assert_eq!(workload, generate(seed, 120), "{name}: a seed gives one workload");
            for record in &workload.records {
                let old = rules.assess(record.old.as_ref());
                let new = rules.assess(record.new.as_ref());
                match &new {
                    RuleAssessment::Rejected { violation, .. } => {
                        seen_reasons.insert(violation.reason().to_owned());
                    }
                    RuleAssessment::Unknown => unknown += 1,
                    RuleAssessment::Source { entity, .. } => *per_entity.entry(entity.name().to_owned()).or_default() += 1,
                    RuleAssessment::Absent => {}
                }
                let keys = |assessment: &RuleAssessment<'_>| -> Option<Vec<AggregateKey>> {
                    match assessment {
                        RuleAssessment::Source { contribution, .. } => Some(contribution.keys().cloned().collect()),
                        _ => None,
                    }
                };
                match (keys(&old), keys(&new)) {
                    (Some(before), Some(after)) if !before.is_empty() && !after.is_empty() && before != after => moves += 1,
                    (Some(before), None) if !before.is_empty() && record.event == Event::Modify => invalidated += 1,
                    _ => {}
                }
                if record.event == Event::Remove {
                    removes += 1;
                    if record.ttl_deletion {
                        ttl += 1;
                    }
                }
            }
            let outcome =
                run(rules, &workload, seed.wrapping_mul(31), seed % 2 == 0).unwrap_or_else(|err| panic!("{name} seed {seed}: {err}"));
            naive_wrong += usize::from(outcome.naive_differs);
            total.records += outcome.records;
            total.deliveries += outcome.deliveries;
            total.faults += outcome.faults;
            total.echoes += outcome.echoes;
            total.counts.trusted_old_image += outcome.counts.trusted_old_image;
            total.counts.ttl_deletions += outcome.counts.ttl_deletions;
        }
        eprintln!(
            "{name}: {SEEDS} seeds, {} records ({removes} removes, {ttl} by TTL, {moves} moves between aggregates, {invalidated} valid items made invalid, {unknown} unknown), \
             valid images by entity {per_entity:?}, rejections {seen_reasons:?}; {} deliveries, {:?}, {} of tally's own writes skipped, \
             {} records measured from a trusted old image; the naive processor wrong in {naive_wrong} of {SEEDS}",
            total.records, total.deliveries, total.faults, total.echoes, total.counts.trusted_old_image,
        );
        let reasons: BTreeSet<String> = reasons.iter().map(|reason| (*reason).to_owned()).collect();
        assert_eq!(seen_reasons, reasons, "{name}: the rejection reasons the workload produces");
        assert!(moves > 0 && invalidated > 0 && unknown > 0 && ttl > 0 && removes > ttl, "{name}");
        assert_eq!(per_entity.len(), rules.entities().len(), "{name}: every entity appears valid: {per_entity:?}");
        let faults = total.faults;
        assert!(
            faults.failure_point_retries > 0
                && faults.whole_retries > 0
                && faults.bisections > 0
                && faults.stale_batches > 0
                && faults.stale_records > 0,
            "{name}: {faults:?}"
        );
        assert!(total.counts.trusted_old_image > 0 && total.counts.ttl_deletions > 0 && total.echoes > 0, "{name}");
        assert!(naive_wrong * 2 > SEEDS as usize, "{name}: the naive processor is wrong in most runs, not only {naive_wrong}");
    }
}
