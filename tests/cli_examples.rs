//! The example rule sets through the real `tally` binary on DynamoDB Local, as a team would run
//! them: `tally --rules FILE init` creates the table the rules describe, `replay` applies the
//! example's fixtures exactly once, `report` and `verify` read the aggregates by the same rules.
#![cfg(feature = "dynamodb-local")]

#[path = "support/cli.rs"]
#[allow(dead_code)] // shared with the other CLI suites, which use the rest of it
mod cli;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_sdk_dynamodb::types::KeyType;
use serde_json::Value;
use tally_engine::rules_file;
use tally_engine::store::{connect, DynamoTable};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

struct Example {
    name: &'static str,
    /// Records applied, and those with no effect, of the fixtures' 11.
    applied: u64,
    no_effect: u64,
    rejected: &'static [(&'static str, u64)],
    /// `(aggregate, key parameter, its value, field, value)` from `tally report --json`.
    reported: &'static [(&'static str, &'static str, &'static str, &'static str, &'static str)],
    /// A change of the rules file (each `from` replaced by `to`) that moves what the stored
    /// ledgers and aggregates mean: a field renamed, an average's rounding.
    change: &'static [(&'static str, &'static str)],
    /// Whether the backfill after the change runs segmented (workers, then the combine).
    segmented: bool,
}

const LEARNING: Example = Example {
    name: "learning",
    applied: 9,
    no_effect: 2,
    rejected: &[("key_shape", 1), ("negative_unread", 1)],
    reported: &[
        // The first message expired by TTL; the answer at 23:30 -02:00 is the next UTC day's.
        ("conversation_stats", "conversationId", "conv-1", "messages", "2"),
        ("conversation_stats", "conversationId", "conv-1", "tokens", "57"),
        ("conversation_stats", "conversationId", "conv-1", "tokensPerMessage", "28.5"),
        // conv-2 went negative (rejected): it no longer counts; conv-1 was read.
        ("user_stats", "userId", "user-123", "conversations", "1"),
        ("user_stats", "userId", "user-123", "unreadTotal", "0"),
        ("daily_messages", "day", "2025-12-21", "messages", "2"),
    ],
    // `tokens` becomes `tokenCount`: every ledger holding tokens names a field the new rules
    // do not have.
    change: &[
        (r#"sums = ["tokens"]"#, r#"sums = ["tokenCount"]"#),
        (r#"sum = "tokens""#, r#"sum = "tokenCount""#),
        (r#"add = { messages = 1, tokens = "tokens" }"#, r#"add = { messages = 1, tokenCount = "tokens" }"#),
    ],
    segmented: true,
};

const MARKETPLACE: Example = Example {
    name: "marketplace",
    applied: 8,
    no_effect: 2,
    rejected: &[("out_of_range", 1)],
    reported: &[
        // Order 321 was placed, then cancelled; 322 checked out after pending.
        ("VendorDailySales", "vendorId", "456", "orders", "1"),
        ("VendorDailySales", "vendorId", "456", "cancelledOrders", "1"),
        ("VendorDailySales", "vendorId", "456", "orderTotal", "5"),
        // The review was revised from 4 to 5; the half star is rejected.
        ("ProductStats", "productId", "789", "reviews", "1"),
        ("ProductStats", "productId", "789", "averageRating", "5"),
        ("CustomerStats", "customerId", "cust-1", "favourites", "0"),
    ],
    change: &[(
        "averages.averageRating = { sum = \"ratingSum\", count = \"reviews\", places = 2 }",
        "averages.averageRating = { sum = \"ratingSum\", count = \"reviews\", places = 1 }",
    )],
    segmented: false,
};

fn rules_path(example: &Example) -> PathBuf {
    Path::new(ROOT).join("examples/rules").join(format!("{}.toml", example.name))
}

/// The example's fixtures, captured from a table of the example's name, as from `table`: a
/// copy in a directory of their own, each record's `eventSourceARN` naming `table`.
fn fixtures_for(example: &Example, table: &str) -> (PathBuf, Vec<Value>) {
    let dir = std::env::temp_dir().join(format!("{table}-fixtures"));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let mut records = Vec::new();
    let source = Path::new(ROOT).join("fixtures/events").join(example.name);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&source).expect("the example's fixtures").map(|entry| entry.unwrap().path()).collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("a fixture");
        let captured = format!(":table/{}/stream/", example.name);
        let text = text.replace(&captured, &format!(":table/{table}/stream/"));
        let event: Value = serde_json::from_str(&text).expect("a fixture is JSON");
        records.extend(event["Records"].as_array().expect("Records").iter().cloned());
        std::fs::write(dir.join(file.file_name().unwrap()), text).expect("writing the copy");
    }
    (dir, records)
}

fn tally(example: &Example, table: &str) -> std::process::Command {
    let mut command = cli::tally(table);
    command.arg("--rules").arg(rules_path(example));
    command
}

async fn run(example: &Example) {
    let table = format!("{}-{}", example.name, uuid::Uuid::new_v4().simple());
    let rules = rules_file::load_for_process(Some(&rules_path(example))).expect("the example's rules load");

    // init: the table the rules describe.
    cli::json(tally(example, &table).arg("init"));
    let client = connect(None, None).await;
    let described = client.describe_table().table_name(&table).send().await.expect("the table exists").table.expect("a table");
    let keys: Vec<(String, KeyType)> =
        described.key_schema().iter().map(|key| (key.attribute_name().to_owned(), key.key_type().clone())).collect();
    assert_eq!(keys, [(rules.table().pk().to_owned(), KeyType::Hash), (rules.table().sk().to_owned(), KeyType::Range)]);
    let mut indexes: Vec<&str> = described.global_secondary_indexes().iter().filter_map(|index| index.index_name()).collect();
    indexes.sort_unstable();
    let mut declared: Vec<&str> = rules.table().indexes().iter().map(|index| index.name()).collect();
    declared.sort_unstable();
    assert_eq!(indexes, declared);
    let ttl = client.describe_time_to_live().table_name(&table).send().await.expect("TTL is described");
    assert_eq!(ttl.time_to_live_description().and_then(|ttl| ttl.attribute_name()), Some(rules.table().ttl()));

    // replay: once, then again without effect.
    let (fixtures, records) = fixtures_for(example, &table);
    let replayed = cli::json(tally(example, &table).arg("replay").arg("--allow-stale").arg(&fixtures));
    assert_eq!(replayed["records"], records.len() as u64, "{replayed}");
    assert_eq!(replayed["by_class"]["applied"], example.applied, "{replayed}");
    assert_eq!(replayed["by_class"]["no_effect"], example.no_effect, "{replayed}");
    for (reason, count) in example.rejected {
        assert_eq!(replayed["rejected"][reason], *count, "{reason}: {replayed}");
    }
    let again = cli::json(tally(example, &table).arg("replay").arg("--allow-stale").arg(&fixtures));
    assert_eq!(again["by_class"].get("applied"), None, "a redelivery applies nothing: {again}");

    // report: the aggregates by the rules' own names.
    let report = cli::json(tally(example, &table).arg("report"));
    for (aggregate, parameter, item, field, value) in example.reported {
        let rows = report[aggregate].as_array().unwrap_or_else(|| panic!("{aggregate} in {report}"));
        let row = rows.iter().find(|row| row[parameter] == *item).unwrap_or_else(|| panic!("{aggregate} {item} in {report}"));
        assert_eq!(row[field], *value, "{aggregate} {item} {field}: {row}");
    }

    // verify: with the application's final items in the table, a recompute by the rules is
    // what the aggregates hold.
    let mut last: BTreeMap<String, Option<Value>> = BTreeMap::new();
    for record in &records {
        last.insert(record["dynamodb"]["Keys"].to_string(), record["dynamodb"].get("NewImage").cloned());
    }
    let dynamo = DynamoTable::new(client.clone(), table.clone(), Arc::clone(&rules));
    for image in last.into_values().flatten() {
        dynamo.put_source(serde_json::from_value(image).expect("an image")).await.expect("writing a source item");
    }
    let (code, stdout, stderr) = cli::run(tally(example, &table).arg("verify"));
    assert_eq!(code, 0, "verify by the example's rules\nstdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("no drift"), "{stdout}");
    // Rules for another table are refused before anything is read, by init too.
    for command in ["verify", "init"] {
        let (code, _, stderr) = cli::run(cli::tally(&table).arg(command));
        assert_eq!(code, 2, "{command}: {stderr}");
        let refusal = format!("table `{table}` is keyed by `PK`/`SK`, but the rules (aggregates/rules/university.toml) name `pk`/`sk`");
        assert!(stderr.contains(&refusal), "{command}: {stderr}");
    }

    // A rules change: verify tells the items written under the old rules, backfill rewrites
    // them under the new ones, and verify is clean again.
    let mut changed = std::fs::read_to_string(rules_path(example)).expect("the rules file");
    for (from, to) in example.change {
        assert!(changed.contains(from), "{from}");
        changed = changed.replace(from, to);
    }
    let changed_path = fixtures.join("changed.toml");
    std::fs::write(&changed_path, changed).expect("writing the changed rules");
    let changed_rules = rules_file::load_for_process(Some(&changed_path)).expect("the changed rules load");
    let with_changed = |command: &str| {
        let mut tally = cli::tally(&table);
        tally.arg("--rules").arg(&changed_path).arg(command);
        tally
    };
    let (code, stdout, stderr) = cli::run(&mut with_changed("verify"));
    assert_eq!(code, 1, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains(&format!("were written under rules {}, not these", rules.digest())), "{stdout}");
    // No stream processor runs here: the replay just now is what wrote the ledgers.
    let (code, _, stderr) = cli::run(with_changed("backfill").arg("--force"));
    assert_eq!(code, 2, "without --rules-changed, items of other rules are not rewritten: {stderr}");
    assert!(stderr.contains("pass --rules-changed to rewrite them under these") && stderr.contains("Nothing was written"), "{stderr}");
    if example.segmented {
        // Each worker reads the ledgers of its items that another segment holds: those written
        // under the old rules are rewritten too.
        for segment in ["0", "1"] {
            let args = ["--force", "--rules-changed", "--segment", segment, "--total-segments", "2", "--run", "change"];
            cli::json(with_changed("backfill").args(args));
        }
        cli::json(with_changed("backfill").args(["--combine", "--total-segments", "2", "--run", "change"]));
    } else {
        let backfilled = cli::json(with_changed("backfill").args(["--force", "--rules-changed"]));
        assert!(backfilled["written_under_other_rules"][rules.digest()].as_u64().is_some_and(|items| items > 0), "{backfilled}");
    }
    let verified = cli::json(&mut with_changed("verify"));
    assert_eq!(verified["drift"], serde_json::json!([]), "{verified}");
    assert_eq!(verified["written_under_other_rules"], serde_json::json!({}), "{verified}");
    assert_eq!(verified["rules"]["digest"], changed_rules.digest());

    client.delete_table().table_name(&table).send().await.expect("deleting the test table");
    std::fs::remove_dir_all(fixtures).ok();
}

#[tokio::test]
async fn learning_runs_from_its_rules_file() {
    run(&LEARNING).await;
}

#[tokio::test]
async fn marketplace_runs_from_its_rules_file() {
    run(&MARKETPLACE).await;
}
