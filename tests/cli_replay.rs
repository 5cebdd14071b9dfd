//! `tally replay` of captures whose records name other tables, on DynamoDB Local: another table's
//! record is skipped before its age is judged, a run that would apply nothing fails, and
//! `--source-table` replays a capture into a table of another name.
#![cfg(feature = "dynamodb-local")]

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aggregates::{KeyOwner, Rules};
use serde_json::{json, Value};
use support::cli::{json, run, tally};
use support::{aggregate, number, scan};
use tally_engine::store::{connect, DynamoTable};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures");

/// The checked-in fixtures: a capture of a table named `university` (21 records) with one
/// record of a table named `library`, all written on 2026-09-01.
fn capture() -> String {
    format!("{FIXTURES}/events")
}

/// A fresh table of a name no capture names, created by `tally init`.
fn staging() -> String {
    let name = format!("staging-{}", uuid::Uuid::new_v4().simple());
    json(tally(&name).arg("init"));
    name
}

fn scratch(table: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tally-replay-{table}"));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    dir
}

fn records_of(path: &Path) -> Vec<Value> {
    let event: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("a fixture")).expect("a fixture is JSON");
    event["Records"].as_array().expect("Records").clone()
}

/// A record of a table `orders`, keyed on `id`, written in 2019: a real capture's other table.
fn old_record_of_orders() -> Value {
    json!({
        "eventID": "orders-2019-0001",
        "eventName": "INSERT",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "eu-west-1",
        "eventSourceARN": "arn:aws:dynamodb:eu-west-1:123456789012:table/orders/stream/2019-01-01T00:00:00.000",
        "dynamodb": {
            "ApproximateCreationDateTime": 1546300800.0,
            "Keys": {"id": {"N": "42"}},
            "NewImage": {"id": {"N": "42"}, "total": {"N": "10"}},
            "SequenceNumber": "100000000000000000001",
            "SizeBytes": 30,
            "StreamViewType": "NEW_AND_OLD_IMAGES"
        }
    })
}

#[tokio::test]
async fn an_old_record_of_another_table_does_not_make_a_fresh_file_stale() {
    let name = staging();
    // 01-term-opens.json as if `name`'s stream had just delivered it, after a 2019 record of
    // another table.
    let now = chrono::Utc::now().timestamp() as f64;
    let mut records = vec![old_record_of_orders()];
    for mut record in records_of(&Path::new(FIXTURES).join("events/01-term-opens.json")) {
        let arn = record["eventSourceARN"].as_str().unwrap().replace(":table/university/", &format!(":table/{name}/"));
        record["eventSourceARN"] = Value::from(arn);
        record["dynamodb"]["ApproximateCreationDateTime"] = Value::from(now);
        records.push(record);
    }
    let dir = scratch(&name);
    let fresh = dir.join("fresh.json");
    std::fs::write(&fresh, json!({ "Records": records }).to_string()).unwrap();
    let replayed = json(tally(&name).arg("replay").arg(&fresh));
    assert_eq!(replayed["records"], 13, "{replayed}");
    assert_eq!(replayed["by_class"]["other_table"], 1, "{replayed}");
    assert_eq!(replayed["by_class"]["applied"], 10, "{replayed}");

    // The table's own records are still judged: one of them old refuses the file, naming it.
    let mut own_old = records.clone();
    own_old[4]["dynamodb"]["ApproximateCreationDateTime"] = Value::from(1546300800.0);
    let event_id = own_old[4]["eventID"].as_str().unwrap().to_owned();
    let stale = dir.join("own-old.json");
    std::fs::write(&stale, json!({ "Records": own_old }).to_string()).unwrap();
    let (code, _, stderr) = run(tally(&name).arg("replay").arg(&stale));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(&format!("own-old.json: record 4 (eventID `{event_id}`) was written at 2019-01-01T00:00:00Z"))
            && stderr.contains("--allow-stale"),
        "{stderr}"
    );
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn a_capture_of_another_table_fails_naming_its_table_and_writes_nothing() {
    let name = staging();
    // Fresh or stale, the capture is refused for what it is of, not for its age.
    for stale in [&["--allow-stale"][..], &[]] {
        let (code, stdout, stderr) = run(tally(&name).arg("replay").args(stale).arg(capture()));
        assert_eq!(code, 2, "{stale:?}\nstdout: {stdout}\nstderr: {stderr}");
        assert!(
            stderr.contains(&format!("no record is of table `{name}`"))
                && stderr.contains("`university` (21 records; the first: ")
                && stderr.contains("01-term-opens.json record 0 (eventID `00000000000000056bc75e2d63100001`)")
                && stderr.contains("`library` (1 record; ")
                && stderr.contains("Nothing was written")
                && stderr.contains(&format!("To apply the capture of `university` to `{name}`, pass --source-table university")),
            "{stale:?}: {stderr}"
        );
    }
    assert!(scan(&connect(None, None).await, &name).await.is_empty(), "nothing was written");
}

#[tokio::test]
async fn source_table_replays_a_capture_into_a_table_of_another_name() {
    let name = staging();
    let replay = || {
        let mut command = tally(&name);
        command.args(["replay", "--allow-stale", "--source-table", "university", &capture()]);
        command
    };
    let first = json(&mut replay());
    assert_eq!(first["records"], 22, "{first}");
    assert_eq!(first["by_class"]["applied"], 15, "{first}");
    assert_eq!(first["by_class"]["other_table"], 1, "the `library` record is still skipped: {first}");
    assert_eq!(first["rejected"]["wrong_type"], 1, "{first}");
    let second = json(&mut replay());
    assert!(second["by_class"].get("applied").is_none(), "a second replay applies nothing: {second}");

    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(Path::new(FIXTURES).join("expected/university.json")).unwrap()).unwrap();
    let table = DynamoTable::new(connect(None, None).await, &name, support::university());
    for want in expected["aggregates"].as_array().unwrap() {
        let (pk, sk) = (want["pk"].as_str().unwrap(), want["sk"].as_str().unwrap());
        let have = aggregate(&table, pk, sk).await;
        for (field, value) in want.as_object().unwrap().iter().filter(|(field, _)| !matches!(field.as_str(), "pk" | "sk" | "entityType")) {
            assert_eq!(number(&have, field).as_deref(), value.as_str(), "{pk} {sk} {field}");
        }
    }

    // With the captured table's final application items written to this one, a recompute
    // finds what the replay wrote.
    let mut last: BTreeMap<String, Option<Value>> = BTreeMap::new();
    let files = ["01-term-opens.json", "02-grading-and-expiry.json"];
    for record in files.iter().flat_map(|file| records_of(&Path::new(FIXTURES).join("events").join(file))) {
        let keys = &record["dynamodb"]["Keys"];
        let application = match (keys["pk"]["S"].as_str(), keys["sk"]["S"].as_str()) {
            (Some(pk), Some(sk)) => Rules::university().owner(pk, sk) == KeyOwner::Application,
            _ => false,
        };
        if application && record["eventSourceARN"].as_str().is_some_and(|arn| arn.contains(":table/university/")) {
            last.insert(keys.to_string(), record["dynamodb"].get("NewImage").cloned());
        }
    }
    for image in last.into_values().flatten() {
        table.put_source(serde_json::from_value(image).expect("an image")).await.expect("writing a source item");
    }
    let (code, stdout, stderr) = run(tally(&name).arg("verify"));
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.contains("no drift"), "{stdout}");
}

#[tokio::test]
async fn a_source_table_no_record_is_of_fails_and_writes_nothing() {
    let name = staging();
    let (code, stdout, stderr) = run(tally(&name).args(["replay", "--allow-stale", "--source-table", "production", &capture()]));
    assert_eq!(code, 2, "stdout: {stdout}\nstderr: {stderr}");
    assert!(
        stderr.contains("no record's `eventSourceARN` names --source-table `production`")
            && stderr.contains("`university` (21 records; ")
            && stderr.contains("`library` (1 record; ")
            && stderr.contains("Nothing was written")
            && stderr.contains("--source-table university"),
        "{stderr}"
    );
    // A capture of --table itself, with --source-table naming another: its records are skipped
    // too, and the error says to leave the option out.
    let dir = scratch(&name);
    let mut records = records_of(&Path::new(FIXTURES).join("events/01-term-opens.json"));
    for record in &mut records {
        let arn = record["eventSourceARN"].as_str().unwrap().replace(":table/university/", &format!(":table/{name}/"));
        record["eventSourceARN"] = Value::from(arn);
    }
    let own = dir.join("own.json");
    std::fs::write(&own, json!({ "Records": records }).to_string()).unwrap();
    let (code, _, stderr) = run(tally(&name).args(["replay", "--allow-stale", "--source-table", "university"]).arg(&own));
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("no record's `eventSourceARN` names --source-table `university`")
            && stderr.contains(&format!("`{name}` (12 records; "))
            && stderr.contains("leave out --source-table"),
        "{stderr}"
    );
    assert!(scan(&connect(None, None).await, &name).await.is_empty(), "nothing was written");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn the_help_explains_source_table() {
    let (code, stdout, _) = run(tally("unused").args(["replay", "--help"]));
    assert_eq!(code, 0);
    assert!(stdout.contains("--source-table <NAME>") && stdout.contains("captured from"), "{stdout}");
}
