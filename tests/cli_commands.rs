//! The `tally` binary end to end on DynamoDB Local: replay, verify, backfill, seed.
#![cfg(feature = "dynamodb-local")]

mod support;

use std::path::Path;

use aggregates::{KeyOwner, Rules};
use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::Value;
use support::cli::{consume, json, run, tally, unique_table};
use support::{aggregate, number, scan};
use tally_engine::store::{connect, DynamoTable};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures");

async fn table(name: &str) -> DynamoTable {
    DynamoTable::new(connect(None, None).await, name, support::university())
}

#[tokio::test]
async fn replaying_the_fixtures_gives_the_expected_aggregates_and_twice_changes_nothing() {
    // The fixtures are a capture of a table named `university`; records of any other table are
    // skipped, so they are replayed into a table of that name (this test binary's only user of it).
    let name = "university";
    json(tally(name).arg("init"));
    // The fixtures were captured on 2026-09-01: older than the stream's retention, so replay
    // refuses them unless told this table never saw them.
    let (code, _, stderr) = run(tally(name).args(["replay", &format!("{FIXTURES}/events")]));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("01-term-opens.json: record 0 (eventID `")
            && stderr.contains("was written at 2026-09-01T00:00:00Z")
            && stderr.contains("`tally backfill`")
            && stderr.contains("--allow-stale"),
        "{stderr}"
    );
    assert!(scan(&connect(None, None).await, name).await.is_empty(), "a refused replay writes nothing");
    let first = json(tally(name).args(["replay", "--allow-stale", &format!("{FIXTURES}/events")]));
    assert_eq!(first["by_class"]["applied"], 15, "{first}");
    assert_eq!(first["rejected"]["wrong_type"], 1);
    let second = json(tally(name).args([
        "replay",
        "--allow-stale",
        &format!("{FIXTURES}/events/01-term-opens.json"),
        &format!("{FIXTURES}/events/02-grading-and-expiry.json"),
    ]));
    assert!(second["by_class"].get("applied").is_none(), "{second}");
    assert_eq!(second["estimated_write_units"], 0);

    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(Path::new(FIXTURES).join("expected/university.json")).unwrap()).unwrap();
    let table = table(name).await;
    for want in expected["aggregates"].as_array().unwrap() {
        let (pk, sk) = (want["pk"].as_str().unwrap(), want["sk"].as_str().unwrap());
        let have = aggregate(&table, pk, sk).await;
        for (field, value) in want.as_object().unwrap().iter().filter(|(field, _)| !matches!(field.as_str(), "pk" | "sk" | "entityType")) {
            assert_eq!(number(&have, field).as_deref(), value.as_str(), "{pk} {sk} {field}");
        }
    }

    // `report` by the rules' names: per aggregate, its key parameters, fields and averages.
    let report = json(tally(name).args(["report", "--top", "1"]));
    let sections: Vec<&str> = report.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(sections.len(), 5, "one section per aggregate: {report}");
    let course = &report["stats"][0];
    assert_eq!((course["courseId"].as_str(), course["gradeAverage"].as_str()), (Some("c101"), Some("91.25")), "{report}");
    assert_eq!(course["enrollmentCount"], "1", "{report}");
    let days: Vec<&str> = report["daily_stats"].as_array().unwrap().iter().map(|row| row["day"].as_str().unwrap()).collect();
    assert!(days.len() > 1 && days.windows(2).all(|pair| pair[0] < pair[1]), "every day, in order: {days:?}");
    let only = json(tally(name).args(["report", "--aggregate", "order_stats"]));
    assert_eq!(only.as_object().unwrap().keys().collect::<Vec<_>>(), ["order_stats"]);
    let (code, _, stderr) = run(tally(name).args(["report", "--aggregate", "course_stats"]));
    assert_eq!(code, 2);
    assert!(stderr.contains("--aggregate `course_stats`: the rules (aggregates/rules/university.toml) have no such aggregate; they have stats, assignment_stats, academic_stats, order_stats, daily_stats"), "{stderr}");
}

#[tokio::test]
async fn malformed_files_fail_naming_the_problem_and_write_nothing() {
    let name = unique_table();
    json(tally(&name).arg("init"));
    let dir = std::env::temp_dir().join(format!("tally-malformed-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    let good: Value = serde_json::from_str(&std::fs::read_to_string(format!("{FIXTURES}/events/01-term-opens.json")).unwrap()).unwrap();
    let mut cases: Vec<(&str, String, &str)> = vec![("not-json.json", "{\"Records\": [".into(), "not JSON")];
    let mut second = good.clone();
    second["Records"].as_array_mut().unwrap().truncate(1);
    cases.push(("two-events.json", format!("{good}\n{second}"), "more after the event, which must be the file's only JSON value"));
    let mut shape = good.clone();
    shape["Records"][2]["dynamodb"] = Value::from(5);
    cases.push(("wrong-shape.json", shape.to_string(), "not a Lambda DynamoDB event at `Records[2].dynamodb`"));
    let mut keyless = good.clone();
    keyless["Records"][3]["dynamodb"].as_object_mut().unwrap().remove("Keys");
    // Another table's record is skipped whatever its keys: this one must be the table's own.
    let arn = keyless["Records"][3]["eventSourceARN"].as_str().unwrap().replace("table/university/", &format!("table/{name}/"));
    keyless["Records"][3]["eventSourceARN"] = Value::from(arn);
    cases.push(("no-keys.json", keyless.to_string(), "record 3 (eventID"));
    let mut long = good.clone();
    long["Records"][8]["dynamodb"]["NewImage"]["amount"]["N"] = Value::from("1".repeat(39));
    cases.push((
        "39-digits.json",
        long.to_string(),
        "`dynamodb.NewImage.amount`: `111111111111111111111111111111111111111` has 39 significant digits",
    ));
    for (file, content, message) in cases {
        let path = dir.join(file);
        std::fs::write(&path, content).unwrap();
        // A good file listed first is not applied either: every file is checked before any write.
        let (code, _, stderr) =
            run(tally(&name).args(["replay", &format!("{FIXTURES}/events/01-term-opens.json"), path.to_str().unwrap()]));
        assert_eq!(code, 2, "{file}: {stderr}");
        assert!(stderr.contains(file) && stderr.contains(message), "{file}: {stderr}");
    }
    let client = connect(None, None).await;
    assert!(scan(&client, &name).await.is_empty(), "nothing was written");
}

#[tokio::test]
async fn seed_backfill_verify_and_repairing_a_corrupted_aggregate() {
    let name = unique_table();
    json(tally(&name).arg("init"));
    let seeded = json(tally(&name).args(["seed", "--ops", "300", "--seed", "11"]));
    assert!(seeded["writes"].as_u64().unwrap() > 300);
    // No stream processed yet: every aggregate is missing.
    let (code, stdout, _) = run(tally(&name).arg("verify"));
    assert_eq!(code, 1, "{stdout}");
    json(tally(&name).arg("backfill"));
    let (code, stdout, _) = run(tally(&name).arg("verify"));
    assert_eq!(code, 0, "{stdout}");

    let table = table(&name).await;
    let course = aggregate(&table, "course#c001", "stats").await.expect("c001 has stats");
    let enrolled = number(&Some(course), "enrollmentCount").unwrap();
    connect(None, None)
        .await
        .update_item()
        .table_name(&name)
        .key("pk", aws_sdk_dynamodb::types::AttributeValue::S("course#c001".into()))
        .key("sk", aws_sdk_dynamodb::types::AttributeValue::S("stats".into()))
        .update_expression("SET enrollmentCount = :wrong")
        .expression_attribute_values(":wrong", aws_sdk_dynamodb::types::AttributeValue::N("9999".into()))
        .send()
        .await
        .unwrap();
    let (code, stdout, _) = run(tally(&name).arg("verify"));
    assert_eq!(code, 1);
    assert!(stdout.contains(&format!("DRIFT pk=`course#c001` sk=`stats` enrollmentCount: stored 9999, expected {enrolled}")), "{stdout}");
    let dry = json(tally(&name).args(["backfill", "--dry-run"]));
    assert_eq!(dry["drift"].as_array().unwrap().len(), 1, "{dry}");
    json(tally(&name).arg("backfill"));
    assert_eq!(run(tally(&name).arg("verify")).0, 0);
    let again = json(tally(&name).arg("backfill"));
    assert_eq!(
        (again["aggregates_written"].as_u64(), again["ledgers_written"].as_u64()),
        (Some(0), Some(0)),
        "a second backfill writes nothing: {again}"
    );
}

#[tokio::test]
async fn an_unfinished_backfill_fails_verify_and_stops_the_commands_that_process_the_stream() {
    let name = unique_table();
    json(tally(&name).arg("init"));
    json(tally(&name).args(["seed", "--ops", "60", "--seed", "3"]));
    consume(&name);
    json(tally(&name).args(["seed", "--ops", "20", "--seed", "4"]));
    // What a backfill killed between its aggregate and its ledger writes leaves behind.
    let marked = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    connect(None, None)
        .await
        .put_item()
        .table_name(&name)
        .item("pk", aws_sdk_dynamodb::types::AttributeValue::S("tally#backfill".into()))
        .item("sk", aws_sdk_dynamodb::types::AttributeValue::S("in-progress".into()))
        .item("entityType", aws_sdk_dynamodb::types::AttributeValue::S("tally_backfill_marker".into()))
        .item("finished", aws_sdk_dynamodb::types::AttributeValue::Bool(false))
        .item("startedAt", aws_sdk_dynamodb::types::AttributeValue::S(marked.clone()))
        .send()
        .await
        .unwrap();
    let (code, stdout, _) = run(tally(&name).arg("verify"));
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains(&format!("UNFINISHED a backfill started at {marked} has not finished, or was interrupted")), "{stdout}");
    let log = support::cli::failure_log(&name);
    for args in [vec!["consume", "--until-caught-up", "--failure-log", log.to_str().unwrap()], vec!["redrive", "/nonexistent.json"]] {
        let (code, _, stderr) = run(tally(&name).args(&args));
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(
            stderr.contains("has not finished, or was interrupted") && stderr.contains("Run `tally backfill` again"),
            "{args:?}: {stderr}"
        );
    }
    // Finishing a backfill clears it, and the stream is processed exactly from there.
    json(tally(&name).args(["backfill", "--force"]));
    consume(&name);
    let (code, stdout, _) = run(tally(&name).arg("verify"));
    assert_eq!(code, 0, "{stdout}");
}

#[tokio::test]
async fn backfill_refuses_while_the_stream_processor_is_writing() {
    let name = unique_table();
    json(tally(&name).arg("init"));
    json(tally(&name).args(["seed", "--ops", "40"]));
    consume(&name);
    let (code, _, stderr) = run(tally(&name).arg("backfill"));
    assert_eq!(code, 2);
    assert!(stderr.contains("update-event-source-mapping") && stderr.contains("--force"), "{stderr}");
    json(tally(&name).args(["backfill", "--force"]));
    assert_eq!(run(tally(&name).arg("verify")).0, 0);
}

#[tokio::test]
async fn init_creates_the_table_spec_describes_and_can_run_again() {
    let name = unique_table();
    let first = json(tally(&name).arg("init"));
    assert_eq!(first["state"], "created");
    // DynamoDB Local does not implement UpdateContinuousBackups; the service does.
    assert_eq!(first["point_in_time_recovery"], "unsupported");
    assert_eq!(json(tally(&name).arg("init"))["state"], "exists");

    let client = connect(None, None).await;
    let table = client.describe_table().table_name(&name).send().await.unwrap().table.unwrap();
    let keys = |schema: &[aws_sdk_dynamodb::types::KeySchemaElement]| {
        schema.iter().map(|key| format!("{}:{}", key.attribute_name(), key.key_type().as_str())).collect::<Vec<_>>()
    };
    assert_eq!(keys(table.key_schema()), ["pk:HASH", "sk:RANGE"]);
    let mut indexes: Vec<(String, Vec<String>, String)> = table
        .global_secondary_indexes()
        .iter()
        .map(|index| {
            let projection = index.projection().and_then(|projection| projection.projection_type()).map(|kind| kind.as_str().to_owned());
            (index.index_name().unwrap().to_owned(), keys(index.key_schema()), projection.unwrap_or_default())
        })
        .collect();
    indexes.sort();
    assert_eq!(
        indexes,
        [
            ("entityType-courseDate-index".to_owned(), vec!["entityType:HASH".to_owned(), "courseDate:RANGE".to_owned()], "ALL".to_owned()),
            ("studentID-index".to_owned(), vec!["studentID:HASH".to_owned()], "ALL".to_owned()),
        ]
    );
    let stream = table.stream_specification().unwrap();
    assert_eq!((stream.stream_enabled(), stream.stream_view_type().map(|view| view.as_str())), (true, Some("NEW_AND_OLD_IMAGES")));
    assert_eq!(table.billing_mode_summary().and_then(|billing| billing.billing_mode()).map(|mode| mode.as_str()), Some("PAY_PER_REQUEST"));
    let ttl = client.describe_time_to_live().table_name(&name).send().await.unwrap().time_to_live_description.unwrap();
    assert_eq!((ttl.attribute_name(), ttl.time_to_live_status().map(|status| status.as_str())), (Some("ttl"), Some("ENABLED")));
}

#[tokio::test]
async fn backfill_counts_once_what_the_stream_still_holds_for_items_it_did_not_count() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let name = unique_table();
    json(tally(&name).arg("init"));
    json(tally(&name).args(["seed", "--ops", "200", "--seed", "31"]));
    consume(&name);
    let items = scan(&support::client().await, &name).await;
    let of_type = |entity_type: &str| {
        items
            .iter()
            .find(|item| item.get("entityType") == Some(&AttributeValue::S(entity_type.into())))
            .map(|item| (item["pk"].clone(), item["sk"].clone()))
            .unwrap()
    };
    let (enrollment, order) = (of_type("student"), of_type("order"));
    // Both items were last written more than 48 h ago, as if: their ledgers have expired.
    for (pk, sk) in [&enrollment, &order] {
        let AttributeValue::S(pk) = pk else { unreachable!() };
        let ledger_pk = AttributeValue::S(format!("tally#ledger#{pk}"));
        support::client().await.delete_item().table_name(&name).key("pk", ledger_pk).key("sk", sk.clone()).send().await.unwrap();
    }
    // With the processor paused, the enrollment expires and the order loses its entityType; both
    // records wait on the stream while backfill counts neither item.
    support::client()
        .await
        .delete_item()
        .table_name(&name)
        .key("pk", enrollment.0.clone())
        .key("sk", enrollment.1.clone())
        .send()
        .await
        .unwrap();
    connect(None, None)
        .await
        .update_item()
        .table_name(&name)
        .key("pk", order.0.clone())
        .key("sk", order.1.clone())
        .update_expression("REMOVE entityType")
        .send()
        .await
        .unwrap();
    let backfilled = json(tally(&name).args(["backfill", "--force"]));
    assert!(backfilled["note"].as_str().unwrap().starts_with("2 ledger(s) written for uncounted items"), "{backfilled}");
    assert_eq!(run(tally(&name).arg("verify")).0, 0);
    // The processor resumes: the pending records must not take the items off a second time.
    consume(&name);
    let (code, stdout, _) = run(tally(&name).arg("verify"));
    assert_eq!(code, 0, "{stdout}");
}

#[test]
fn every_command_has_help() {
    for command in ["init", "replay", "verify", "backfill", "seed", "consume", "redrive", "report"] {
        let (code, stdout, _) = run(tally("unused").args([command, "--help"]));
        assert_eq!(code, 0, "{command}");
        assert!(stdout.contains("--table") && stdout.contains("--json"), "{command}: {stdout}");
    }
}

#[tokio::test]
async fn a_backfill_over_four_segments_equals_a_single_one() {
    let (single, segmented) = (unique_table(), unique_table());
    for name in [&single, &segmented] {
        json(tally(name).arg("init"));
        json(tally(name).args(["seed", "--ops", "300", "--seed", "21"]));
        // The stream processor has been at work (ledgers exist), then writes went unprocessed.
        consume(name);
        json(tally(name).args(["seed", "--ops", "100", "--seed", "22"]));
    }
    assert_eq!(run(tally(&single).arg("verify")).0, 1, "the last writes are not in the aggregates");
    json(tally(&single).args(["backfill", "--force"]));

    let segment = |index: u32, run_id: &str| {
        run(tally(&segmented).args(["backfill", "--force", "--segment", &index.to_string(), "--total-segments", "4", "--run", run_id]))
    };
    for index in [0, 1, 3] {
        let (code, stdout, stderr) = segment(index, "r1");
        assert_eq!(code, 0, "segment {index}\n{stdout}\n{stderr}");
    }
    let (code, _, stderr) = run(tally(&segmented).args(["backfill", "--combine", "--total-segments", "4", "--run", "r1"]));
    assert_eq!(code, 2, "a combine before every slice is done must fail");
    assert!(stderr.contains("segment(s) 2 of 4 have not finished"), "{stderr}");
    assert_eq!(segment(2, "r1").0, 0);
    json(tally(&segmented).args(["backfill", "--combine", "--total-segments", "4", "--run", "r1"]));
    let (code, stdout, _) = run(tally(&segmented).arg("verify"));
    assert_eq!(code, 0, "{stdout}");
    let client = connect(None, None).await;
    let aggregates = |items: Vec<tally_engine::store::SdkItem>| {
        items
            .into_iter()
            .filter(|item| match (item.get("pk"), item.get("sk")) {
                (Some(AttributeValue::S(pk)), Some(AttributeValue::S(sk))) => Rules::university().owner(pk, sk) == KeyOwner::Aggregate,
                _ => false,
            })
            .map(|mut item| {
                item.remove("updatedAt");
                item.remove("version");
                let key = format!("{:?}|{:?}", item["pk"], item["sk"]);
                let fields: std::collections::BTreeMap<String, String> =
                    item.iter().map(|(name, value)| (name.clone(), format!("{value:?}"))).collect();
                (key, fields)
            })
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let (one, four) = (aggregates(scan(&client, &single).await), aggregates(scan(&client, &segmented).await));
    assert!(!one.is_empty());
    assert_eq!(one, four);

    // Between the workers and the combine, the stream must not be processed: `consume` refuses.
    for index in 0..4 {
        assert_eq!(segment(index, "r2").0, 0);
    }
    json(tally(&segmented).args(["seed", "--ops", "60", "--seed", "23"]));
    let log = support::cli::failure_log(&segmented);
    let (code, _, stderr) = run(tally(&segmented).args(["consume", "--until-caught-up", "--failure-log", log.to_str().unwrap()]));
    assert!(code == 2 && stderr.contains("(segmented run `r2`) has not finished"), "{stderr}");
    // The Lambda does not check the mark: if it writes an aggregate meanwhile, the combine must not
    // overwrite what it applied.
    let bump = || {
        client
            .update_item()
            .table_name(&segmented)
            .key("pk", aws_sdk_dynamodb::types::AttributeValue::S("course#c001".into()))
            .key("sk", aws_sdk_dynamodb::types::AttributeValue::S("stats".into()))
            .update_expression("SET version = version + :one")
            .expression_attribute_values(":one", aws_sdk_dynamodb::types::AttributeValue::N("1".into()))
            .send()
    };
    bump().await.unwrap();
    let (code, _, stderr) = run(tally(&segmented).args(["backfill", "--combine", "--total-segments", "4", "--run", "r2"]));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("changed after the workers scanned them") && stderr.contains("nothing was written"), "{stderr}");
    assert_eq!(run(tally(&segmented).arg("verify")).0, 1, "the run has not finished");

    // Partial sums TTL deleted before the combine: it refuses rather than write short sums.
    for index in 0..4 {
        assert_eq!(segment(index, "r3").0, 0);
    }
    client
        .delete_item()
        .table_name(&segmented)
        .key("pk", aws_sdk_dynamodb::types::AttributeValue::S("tally#backfill#r3".into()))
        .key("sk", aws_sdk_dynamodb::types::AttributeValue::S("part#000001#000000000".into()))
        .send()
        .await
        .unwrap();
    let (code, _, stderr) = run(tally(&segmented).args(["backfill", "--combine", "--total-segments", "4", "--run", "r3"]));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("partial sums are missing (segment 1: ") && stderr.contains("nothing was written"), "{stderr}");
    // A worker re-run and killed while writing leaves its marker without a count: unfinished.
    client
        .put_item()
        .table_name(&segmented)
        .item("pk", aws_sdk_dynamodb::types::AttributeValue::S("tally#backfill#r3".into()))
        .item("sk", aws_sdk_dynamodb::types::AttributeValue::S("done#000001".into()))
        .item("totalSegments", aws_sdk_dynamodb::types::AttributeValue::N("4".into()))
        .send()
        .await
        .unwrap();
    let (code, _, stderr) = run(tally(&segmented).args(["backfill", "--combine", "--total-segments", "4", "--run", "r3"]));
    assert!(code == 2 && stderr.contains("segment(s) 1 of 4 have not finished"), "{stderr}");
    assert_eq!(segment(1, "r3").0, 0);
    json(tally(&segmented).args(["backfill", "--combine", "--total-segments", "4", "--run", "r3"]));
    consume(&segmented);
    let (code, stdout, _) = run(tally(&segmented).arg("verify"));
    assert_eq!(code, 0, "{stdout}");
}

#[test]
fn backfill_refuses_flag_combinations_it_would_ignore() {
    for args in [
        &["--total-segments", "4", "--run", "r9"][..],
        &["--combine", "--total-segments", "4", "--run", "r9", "--segments", "8"],
        &["--combine", "--total-segments", "4", "--run", "r9", "--force"],
        &["--segment", "0", "--total-segments", "0", "--run", "r9"],
    ] {
        let (code, _, stderr) = run(tally("unused").arg("backfill").args(args));
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains("error:"), "{args:?}: {stderr}");
    }
}
